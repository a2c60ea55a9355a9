"""A tiny classic-pcap writer for tests: Ethernet / IPv4 / TCP frames with real checksums.

Owns: turning a scripted list of TCP segments into the bytes of a pcap file, and one
scripted conversation (`orderly_close`) whose states at every instant are worked out by
hand in its docstring. Knows nothing of tcplife: tests compare tcplife against this.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

T0_US = 1_700_000_000_000_000  #: 2023-11-14T22:13:20Z, in microseconds
CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 80)
FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10}


@dataclass(frozen=True)
class Seg:
    """One captured TCP segment; ``flags`` as letters (``"SA"``, ``"PA"``, ``"FA"``)."""

    ts_us: int
    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    ack: int
    flags: str
    payload: bytes = b""


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(seg: Seg, ip_id: int = 1) -> bytes:
    """Ethernet + IPv4 (DF, TTL 64) + a 20-byte TCP header + payload."""
    src, dst = socket.inet_aton(seg.src[0]), socket.inet_aton(seg.dst[0])
    flags = sum(FLAG_BITS[c] for c in seg.flags)
    tcp = struct.pack("!HHIIBBHHH", seg.src[1], seg.dst[1], seg.seq, seg.ack, 5 << 4, flags,
                      65535, 0, 0) + seg.payload
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ip_id, 0x4000, 64,
                     socket.IPPROTO_TCP, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    ether = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return ether + ip + tcp


def pcap_bytes(segments: Iterable[Seg]) -> bytes:
    """A classic little-endian microsecond pcap, link type 1 (Ethernet)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, seg in enumerate(segments, start=1):
        data = frame(seg, ip_id=i)
        seconds, micros = divmod(seg.ts_us, 1_000_000)
        out.append(struct.pack("<IIII", seconds, micros, len(data), len(data)) + data)
    return b"".join(out)


def write_pcap(path: Path, segments: Iterable[Seg]) -> Path:
    path.write_bytes(pcap_bytes(segments))
    return path


def orderly_close(t0_us: int = T0_US, client: tuple[str, int] = CLIENT,
                  server: tuple[str, int] = SERVER) -> list[Seg]:
    """Handshake, 100 bytes up and 300 down, client closes first, server 2 s later.

    ==  ========  ======  ===================  ===============  ===========================
    #   t0 +      dir     seq / ack            flags, data      client / server after it
    ==  ========  ======  ===================  ===============  ===========================
    1   0.000     c->s    1000 / 0             SYN              SYN_SENT / LISTEN
    2   0.010     s->c    5000 / 1001          SYN-ACK          ESTABLISHED / SYN_RECEIVED
    3   0.020     c->s    1001 / 5001          ACK              ESTABLISHED / ESTABLISHED
    4   0.030     c->s    1001 / 5001          PSH-ACK 100 B
    5   0.040     s->c    5001 / 1101          PSH-ACK 300 B
    6   0.050     c->s    1101 / 5301          ACK
    7   1.000     c->s    1101 / 5301          FIN-ACK          FIN_WAIT_1 / CLOSE_WAIT
    8   1.010     s->c    5301 / 1102          ACK              FIN_WAIT_2 / CLOSE_WAIT
    9   3.000     s->c    5301 / 1102          FIN-ACK          TIME_WAIT / LAST_ACK
    10  3.010     c->s    1102 / 5302          ACK              TIME_WAIT / CLOSED
    ==  ========  ======  ===================  ===============  ===========================

    The client then stays in TIME_WAIT for ``time_wait`` seconds after frame 9.
    """
    c, s = client, server
    script = [
        (0, c, s, 1000, 0, "S", 0), (10_000, s, c, 5000, 1001, "SA", 0),
        (20_000, c, s, 1001, 5001, "A", 0), (30_000, c, s, 1001, 5001, "PA", 100),
        (40_000, s, c, 5001, 1101, "PA", 300), (50_000, c, s, 1101, 5301, "A", 0),
        (1_000_000, c, s, 1101, 5301, "FA", 0), (1_010_000, s, c, 5301, 1102, "A", 0),
        (3_000_000, s, c, 5301, 1102, "FA", 0), (3_010_000, c, s, 1102, 5302, "A", 0),
    ]
    return [Seg(t0_us + dt, src, dst, seq, ack, flags, b"x" * size)
            for dt, src, dst, seq, ack, flags, size in script]
