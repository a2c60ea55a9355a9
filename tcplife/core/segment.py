"""The decoded TCP segment: the one record that crosses from the capture layer into the core.

Owns: the `Segment` tuple and the TCP flag bits. Knows nothing of files, dpkt, or pandas;
the capture layer builds Segments, the tracker consumes them. Timestamps are integer
nanoseconds since the Unix epoch; addresses are text (``"10.0.0.1"``, ``"fe80::1"``).
"""

from __future__ import annotations

from typing import NamedTuple

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

_FLAG_LETTERS = ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "."), (URG, "U"),
                 (ECE, "E"), (CWR, "W"))


class Segment(NamedTuple):
    """One TCP segment as it passed the capture point."""

    frame: int  #: 1-based frame number in capture order (Wireshark's frame.number)
    ts_ns: int  #: capture timestamp, integer nanoseconds since the Unix epoch
    ip_version: int  #: 4 or 6
    src: str  #: source address, text form
    sport: int
    dst: str  #: destination address, text form
    dport: int
    seq: int  #: raw 32-bit sequence number
    ack: int  #: raw 32-bit acknowledgment number (meaningful only with the ACK flag)
    flags: int  #: TCP flag bits (FIN=0x01 ... CWR=0x80)
    payload_len: int  #: payload length from the IP length, even when the snap length cut it
    window: int = 65535  #: raw (unscaled) window field
    wscale: int = -1  #: window-scale option shift count, -1 when absent (only on SYNs)
    #: TCP timestamp option (kind 8, RFC 7323): the sender's clock (TSval) and the latest
    #: TSval it had taken from its peer (TSecr), raw 32-bit values; -1 when absent
    tsval: int = -1
    tsecr: int = -1


def flag_string(flags: int) -> str:
    """tcpdump-style flag letters, e.g. ``S.`` for SYN-ACK."""
    return "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit) or "none"
