"""Byte builders for capture tests: packets (IPv4/IPv6 + TCP, link headers) and files
(pcap in any magic/byte order, pcapng blocks), written with `struct` so that no binary
fixture needs committing. Deliberately independent of `tcplife.capture`: checksums here
use the textbook RFC 1071 word sum, not the decoder's big-int shortcut.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Sequence

from tcplife.core.segment import ACK

# --- packets ------------------------------------------------------------------------


def inet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement checksum of `data`."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_segment(
    src: bytes,
    dst: bytes,
    sport: int = 40000,
    dport: int = 80,
    seq: int = 1000,
    ack: int = 0,
    flags: int = ACK,
    window: int = 65535,
    options: bytes = b"",
    payload: bytes = b"",
    bad_checksum: bool = False,
) -> bytes:
    """A TCP header + payload with a correct checksum for the packed addresses."""
    options += b"\0" * (-len(options) % 4)
    offset = (20 + len(options)) // 4
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, offset << 4, flags, window, 0, 0)
    segment = header + options + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(segment)) if len(src) == 4 else (
        src + dst + struct.pack("!IxxxB", len(segment), 6)
    )
    checksum = inet_checksum(pseudo + segment)
    if bad_checksum:
        checksum ^= 0x5A5A
    return segment[:16] + struct.pack("!H", checksum) + segment[18:]


def ipv4(
    payload: bytes,
    src: str = "10.0.0.1",
    dst: str = "10.0.0.2",
    proto: int = 6,
    options: bytes = b"",
    frag: int = 0,
    total_length: int | None = None,
) -> bytes:
    options += b"\0" * (-len(options) % 4)
    ihl = 5 + len(options) // 4
    length = 20 + len(options) + len(payload) if total_length is None else total_length
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, length, 1, frag, 64, proto, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )
    return header + options + payload


def ipv4_tcp(
    src: str = "10.0.0.1",
    dst: str = "10.0.0.2",
    ip_options: bytes = b"",
    frag: int = 0,
    total_length: int | None = None,
    **tcp: object,
) -> bytes:
    """An IPv4 packet carrying a TCP segment (keyword arguments go to `tcp_segment`)."""
    segment = tcp_segment(socket.inet_aton(src), socket.inet_aton(dst), **tcp)  # type: ignore[arg-type]
    return ipv4(segment, src, dst, 6, ip_options, frag, total_length)


def ipv6(
    payload: bytes,
    src: str = "2001:db8::1",
    dst: str = "2001:db8::2",
    next_header: int = 6,
    payload_length: int | None = None,
) -> bytes:
    length = len(payload) if payload_length is None else payload_length
    return struct.pack(
        "!IHBB16s16s", 0x60000000, length, next_header, 64,
        socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst),
    ) + payload


def ipv6_ext(next_header: int, body: bytes = b"\0" * 6) -> bytes:
    """A hop-by-hop / routing / destination-options style header (len in 8-octet units)."""
    body += b"\0" * (-(len(body) + 2) % 8)
    return bytes([next_header, (len(body) + 2) // 8 - 1]) + body


def ipv6_fragment(next_header: int, offset: int = 0, more: bool = False) -> bytes:
    return struct.pack("!BBHI", next_header, 0, (offset << 3) | int(more), 0x1234)


def ipv6_tcp(
    src: str = "2001:db8::1",
    dst: str = "2001:db8::2",
    ext: Sequence[tuple[int, bytes]] = (),
    payload_length: int | None = None,
    **tcp: object,
) -> bytes:
    """IPv6 + extension headers + TCP. `ext` is [(header type, header bytes without the
    next-header chaining, built by this function)]: pass (0, ipv6_ext(...)) style tuples
    whose first byte is overwritten with the right next header."""
    segment = tcp_segment(
        socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst),
        **tcp,  # type: ignore[arg-type]
    )
    chain = b""
    types = [t for t, _ in ext] + [6]
    for (_, header), following in zip(ext, types[1:], strict=True):
        chain += bytes([following]) + header[1:]
    return ipv6(chain + segment, src, dst, types[0], payload_length)


# --- link layers --------------------------------------------------------------------

ETH_SRC = bytes.fromhex("020000000001")
ETH_DST = bytes.fromhex("020000000002")


def ethernet(payload: bytes, ethertype: int = 0x0800, tags: Iterable[int] = ()) -> bytes:
    """Ethernet II; `tags` are TPIDs (0x8100, 0x88a8, 0x9100) pushed outermost first."""
    header = ETH_DST + ETH_SRC
    for vid, tpid in enumerate(tags, start=100):
        header += struct.pack("!HH", tpid, vid)
    return header + struct.pack("!H", ethertype) + payload


def linux_sll(payload: bytes, protocol: int = 0x0800) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, ETH_SRC + b"\0\0", protocol) + payload


def linux_sll2(payload: bytes, protocol: int = 0x0800) -> bytes:
    return struct.pack("!HHIHBB8s", protocol, 0, 2, 1, 0, 6, ETH_SRC + b"\0\0") + payload


def bsd_null(payload: bytes, family: int, byteorder: str = "<") -> bytes:
    return struct.pack(byteorder + "I", family) + payload


# --- pcap -----------------------------------------------------------------------------

PCAP_USEC = 0xA1B2C3D4
PCAP_NSEC = 0xA1B23C4D


def pcap_record(
    sec: int, frac: int, data: bytes, wire_len: int | None = None, endian: str = "<"
) -> bytes:
    wire = len(data) if wire_len is None else wire_len
    return struct.pack(endian + "IIII", sec, frac, len(data), wire) + data


def pcap_file(
    packets: Iterable[bytes | tuple[int, int, bytes] | tuple[int, int, bytes, int]],
    linktype: int = 1,
    endian: str = "<",
    nano: bool = False,
    snaplen: int = 65535,
) -> bytes:
    """A classic pcap. Each packet is bytes (timestamps 1.000001 s, 2.000002 s, ...) or
    (sec, frac, data) or (sec, frac, data, wire_len)."""
    magic = PCAP_NSEC if nano else PCAP_USEC
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for i, packet in enumerate(packets, start=1):
        if isinstance(packet, bytes):
            packet = (i, i, packet)
        out.append(pcap_record(*packet, endian=endian))  # type: ignore[misc]
    return b"".join(out)


# --- pcapng ---------------------------------------------------------------------------


def block(block_type: int, body: bytes, endian: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(endian + "II", block_type, length) + body + struct.pack(
        endian + "I", length
    )


def option(code: int, value: bytes, endian: str = "<") -> bytes:
    return struct.pack(endian + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(endian: str = "<", major: int = 1) -> bytes:
    body = struct.pack(endian + "IHHq", 0x1A2B3C4D, major, 0, -1)
    body += option(3, b"tcplife tests", endian) + option(0, b"", endian)
    return block(0x0A0D0D0A, body, endian)


def idb(
    linktype: int,
    tsresol: int | None = None,
    tsoffset: int | None = None,
    snaplen: int = 0,
    endian: str = "<",
) -> bytes:
    body = struct.pack(endian + "HHI", linktype, 0, snaplen)
    opts = option(2, b"eth0", endian)
    if tsresol is not None:
        opts += option(9, bytes([tsresol]), endian)
    if tsoffset is not None:
        opts += option(14, struct.pack(endian + "q", tsoffset), endian)
    return block(1, body + opts + option(0, b"", endian), endian)


def epb(
    interface: int, ts_units: int, data: bytes, wire_len: int | None = None, endian: str = "<"
) -> bytes:
    wire = len(data) if wire_len is None else wire_len
    body = struct.pack(
        endian + "IIIII", interface, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), wire
    )
    return block(6, body + data + b"\0" * (-len(data) % 4) + option(1, b"hi", endian), endian)


def spb(data: bytes, wire_len: int | None = None, endian: str = "<") -> bytes:
    wire = len(data) if wire_len is None else wire_len
    return block(3, struct.pack(endian + "I", wire) + data, endian)


def packet_block(interface: int, ts_units: int, data: bytes, endian: str = "<") -> bytes:
    """The obsolete Packet Block (type 2)."""
    body = struct.pack(
        endian + "HHIIII", interface, 0, ts_units >> 32, ts_units & 0xFFFFFFFF,
        len(data), len(data),
    )
    return block(2, body + data, endian)


def isb(interface: int, endian: str = "<") -> bytes:
    """An Interface Statistics Block (not a packet: must be skipped)."""
    return block(5, struct.pack(endian + "III", interface, 0, 0), endian)
