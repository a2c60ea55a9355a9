"""Frame decoding: link layer -> IPv4/IPv6 -> TCP header -> `Segment`.

Owns: the link-type table (linktype number -> function finding the IP header), IPv4
options and fragments, IPv6 extension headers, the TCP header fields tcplife needs, the
window-scale option on SYNs, the timestamp option on every segment, and TCP checksum
verification. Every failure becomes a count
in `ReadStats` (and, for an unknown link type, one warning); no exception escapes.
Must not know about file formats (it gets captured bytes and a link type) or connection
state. Only the outermost IP header is decoded: TCP inside tunnels (IP-in-IP, GRE, VXLAN)
or quoted inside ICMP errors is not a segment of a connection this host saw.

Why `struct.unpack_from` and not dpkt's protocol classes: dpkt builds an object per layer
and parses every field and option (several microseconds per packet), and a failed inner
decode silently leaves raw bytes. Here each header is one ``unpack_from`` at an offset into
the captured bytes, with explicit length checks, so a frame costs about a microsecond.

Lengths come from the headers, not from the captured byte count: ``payload_len`` is the
IPv4 total length (IPv6 payload length) minus IP, extension and TCP headers, so a frame cut
by the snap length still reports its true payload (and counts as ``truncated``), and
Ethernet padding or a trailing FCS beyond the IP length is ignored. An IP length of 0
(TSO/GSO send-side captures, IPv6 jumbograms) falls back to the frame's length on the wire.

Checksum cost: ``int.from_bytes(words, "big") % 0xFFFF`` equals the one's-complement sum
of the 16-bit words (2**16 == 1 mod 0xFFFF), and the addresses sit just before the TCP
header when there are no IP options / extension headers, so verifying is one slice, one
big-int conversion and one modulo, all in C: about 2 us for a 1460-byte segment and
0.15 us for a bare header, 3-5x cheaper than ``sum(array("H", ...))`` or
``sum(struct.unpack(...))``. On bulk transfers that is still half the decode time, so
``verify_checksums=False`` skips it. A mismatch is only counted: offload leaves the
capturing host's own packets with wrong checksums. Not verified (counted in
``unverified_checksums``): truncated segments, first fragments of fragmented datagrams,
IP length 0, and IPv6 routing headers with segments left (the pseudo-header would need the
final destination). IPv4 source-route options are not looked at.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from socket import AF_INET, AF_INET6, inet_ntop

from tcplife.core.segment import SYN, Segment

from .stats import MAX_SIMILAR_WARNINGS, ReadStats

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
_SHORT = (-1, 0)  # link header missing or unusable: the frame is undecodable
_OTHER = (0, 0)  # a protocol that is not IP: the frame is non-TCP
_V4 = (ETH_IPV4, 0)
_V6 = (ETH_IPV6, 0)
_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
_AF_INET6 = frozenset((10, 24, 28, 30))  # Linux, Net/OpenBSD, FreeBSD, macOS
#: IPv6 extension headers laid out as (next header, length in 8-octet units - 1, ...)
_IPV6_EXT_8 = frozenset((0, 43, 60, 135, 139, 140))
_IPV6_FRAGMENT = 44
_IPV6_AH = 51
_TCP = 6

#: (ethertype or -1 / 0, offset of the IP header)
LinkResult = tuple[int, int]
LinkDecoder = Callable[[bytes], LinkResult]


def _ethernet(data: bytes) -> LinkResult:
    """DIX Ethernet, with any depth of 802.1Q / 802.1ad / QinQ tags."""
    if len(data) < 14:
        return _SHORT
    ethertype = (data[12] << 8) | data[13]
    offset = 14
    while ethertype in _VLAN_TPIDS:
        if len(data) < offset + 4:
            return _SHORT
        ethertype = (data[offset + 2] << 8) | data[offset + 3]
        offset += 4
    return ethertype, offset


def _linux_sll(data: bytes) -> LinkResult:
    """Linux cooked capture v1: 16-byte header, protocol in the last two bytes."""
    if len(data) < 16:
        return _SHORT
    return (data[14] << 8) | data[15], 16


def _linux_sll2(data: bytes) -> LinkResult:
    """Linux cooked capture v2: 20-byte header, protocol in the first two bytes."""
    if len(data) < 20:
        return _SHORT
    return (data[0] << 8) | data[1], 20


def _null(data: bytes) -> LinkResult:
    """BSD loopback (NULL, LOOP): 4-byte address family, host or network byte order."""
    if len(data) < 4:
        return _SHORT
    family = data[0] or data[3]  # families are < 256: one end of the word is the value
    if family == 2:
        return ETH_IPV4, 4
    if family in _AF_INET6:
        return ETH_IPV6, 4
    return _OTHER


def _raw_ip(data: bytes) -> LinkResult:
    """Raw IP: the version nibble decides."""
    if not data:
        return _SHORT
    version = data[0] >> 4
    if version == 4:
        return _V4
    if version == 6:
        return _V6
    return _SHORT


def _raw_ipv4(data: bytes) -> LinkResult:
    return _V4


def _raw_ipv6(data: bytes) -> LinkResult:
    return _V6


#: pcap/pcapng LINKTYPE_* number -> decoder (numbers as stored in files, not DLT_* values)
LINK_DECODERS: dict[int, LinkDecoder] = {
    0: _null,  # LINKTYPE_NULL
    1: _ethernet,  # LINKTYPE_ETHERNET
    12: _raw_ip,  # DLT_RAW on most BSDs
    14: _raw_ip,  # DLT_RAW on OpenBSD
    101: _raw_ip,  # LINKTYPE_RAW
    108: _null,  # LINKTYPE_LOOP (OpenBSD, network byte order)
    113: _linux_sll,  # LINKTYPE_LINUX_SLL
    228: _raw_ipv4,  # LINKTYPE_IPV4
    229: _raw_ipv6,  # LINKTYPE_IPV6
    276: _linux_sll2,  # LINKTYPE_LINUX_SLL2
}

_IPV4 = struct.Struct("!BxHxxHxBxx4s4s").unpack_from  # vhl, total, frag, proto, src, dst
_IPV6 = struct.Struct("!4xHBx16s16s").unpack_from  # payload len, next header, src, dst
_TCPH = struct.Struct("!HHIIBBH").unpack_from  # ports, seq, ack, offset, flags, window
_U16 = struct.Struct("!H").unpack_from
_ADDR_CACHE_MAX = 1 << 16


def window_scale(data: bytes, start: int, end: int) -> int:
    """The shift count of the window-scale option (kind 3) in data[start:end], or -1."""
    p = start
    while p < end:
        kind = data[p]
        if kind == 0:
            break
        if kind == 1:
            p += 1
            continue
        if p + 1 >= end:
            break
        length = data[p + 1]
        if kind == 3:
            return data[p + 2] if length == 3 and p + 2 < end else -1
        if length < 2:
            break
        p += length
    return -1


_TS = struct.Struct("!II").unpack_from
_NO_TS = (-1, -1)
_NONE = (-1, -1, -1)  # no options: (wscale, TSval, TSecr)


def timestamps(data: bytes, start: int, end: int) -> tuple[int, int]:
    """(TSval, TSecr) of the timestamp option (kind 8, length 10) in data[start:end], or
    (-1, -1). The walk is Linux's tcp_parse_options: EOL ends it, NOP is one byte, any other
    option needs its length byte, a length below 2 or beyond the area (an option cut by the
    header or by the snap length) ends it, a timestamp option of another length is skipped,
    and a later timestamp option replaces an earlier one."""
    found = _NO_TS
    p = start
    while p < end:
        kind = data[p]
        if kind == 0:
            break
        if kind == 1:
            p += 1
            continue
        if p + 1 >= end:
            break
        length = data[p + 1]
        if length < 2 or p + length > end:
            break
        if kind == 8 and length == 10:
            found = _TS(data, p + 2)
        p += length
    return found


def _options(data: bytes, tcp: int, tcp_header: int, size: int, flags: int
             ) -> tuple[int, int, int]:
    """(wscale, TSval, TSecr) of the options of the TCP header at ``tcp``."""
    end = min(tcp + tcp_header, size)
    wscale = window_scale(data, tcp + 20, end) if flags & SYN else -1
    if end == tcp + 32 and data[tcp + 20 : tcp + 24] == b"\x01\x01\x08\x0a":
        return (wscale, *_TS(data, tcp + 24))  # Linux's layout after the handshake
    return (wscale, *timestamps(data, tcp + 20, end))


class Decoder:
    """Decodes captured frames of one read into Segments, counting into `stats`."""

    def __init__(
        self, stats: ReadStats, name: str = "<capture>", verify_checksums: bool = True
    ) -> None:
        self.stats = stats
        self.name = name
        self.verify_checksums = verify_checksums
        self._v4_names: dict[bytes, str] = {}
        self._v6_names: dict[bytes, str] = {}
        self._unknown_links: set[int] = set()

    def decode(
        self, frame: int, ts_ns: int, linktype: int, wire_len: int, data: bytes
    ) -> Segment | None:
        """One frame -> a Segment, or None (and a count) if it is not a usable TCP segment."""
        link = LINK_DECODERS.get(linktype)
        if link is None:
            self._unknown_link(frame, linktype)
            return None
        ethertype, offset = link(data)
        if ethertype == ETH_IPV4:
            return self._ipv4(frame, ts_ns, wire_len, data, offset)
        if ethertype == ETH_IPV6:
            return self._ipv6(frame, ts_ns, wire_len, data, offset)
        if ethertype < 0:
            self.stats.undecodable += 1
        else:
            self.stats.non_tcp += 1
        return None

    def _unknown_link(self, frame: int, linktype: int) -> None:
        self.stats.undecodable += 1
        if linktype not in self._unknown_links:
            self._unknown_links.add(linktype)
            count = len(self._unknown_links)
            if count <= MAX_SIMILAR_WARNINGS:
                self.stats.warnings.append(
                    f"{self.name}: unsupported link type {linktype} (first at frame {frame}): "
                    "its frames are counted as undecodable"
                    + ("; further such warnings are not shown"
                       if count == MAX_SIMILAR_WARNINGS else ""))

    def _ipv4(
        self, frame: int, ts_ns: int, wire_len: int, data: bytes, ip: int
    ) -> Segment | None:
        stats = self.stats
        size = len(data)
        if size < ip + 20:
            stats.undecodable += 1
            return None
        vhl, total, frag, proto, src, dst = _IPV4(data, ip)
        ihl = (vhl & 0x0F) << 2
        if vhl >> 4 != 4 or ihl < 20:
            stats.undecodable += 1
            return None
        if frag & 0x1FFF:  # not the first fragment: no TCP header here
            stats.fragments += 1
            return None
        if proto != _TCP:
            stats.non_tcp += 1
            return None
        # a first fragment holds only part of the segment
        verify = self.verify_checksums and not frag & 0x2000
        if total == 0:  # TSO: the stack had not filled in the length yet
            total = max(size, wire_len) - ip
            verify = False
        tcp = ip + ihl
        if size < tcp + 20 or total < ihl + 20:
            stats.undecodable += 1
            return None
        sport, dport, seq, ack, offset_byte, flags, window = _TCPH(data, tcp)
        tcp_header = (offset_byte >> 4) << 2
        payload_len = total - ihl - tcp_header
        if tcp_header < 20 or payload_len < 0:
            stats.undecodable += 1
            return None
        end = ip + total
        if end <= size and verify:  # the common case, inline
            length = end - tcp
            # pseudo-header addresses + segment in one integer (see the module docstring)
            acc = int.from_bytes(data[ip + 12 : end] if ihl == 20 else src + dst + data[tcp:end],
                                 "big")
            if length & 1:
                acc <<= 8
            if (acc + _TCP + length) % 0xFFFF:
                self._bad_checksum(src)
        elif end > size or self.verify_checksums:
            payload_len = self._irregular(data, tcp, tcp_header, end, wire_len, src, dst,
                                          verify, payload_len)
        opts = _options(data, tcp, tcp_header, size, flags) if tcp_header > 20 else _NONE
        stats.tcp_segments += 1
        return self._segment(self._v4_names, AF_INET, frame, ts_ns, 4, src, sport, dst, dport,
                             (seq, ack, flags, payload_len, window, *opts))

    def _ipv6(
        self, frame: int, ts_ns: int, wire_len: int, data: bytes, ip: int
    ) -> Segment | None:
        stats = self.stats
        size = len(data)
        if size < ip + 40:
            stats.undecodable += 1
            return None
        if data[ip] >> 4 != 6:
            stats.undecodable += 1
            return None
        total, next_header, src, dst = _IPV6(data, ip)
        verify = self.verify_checksums
        if total == 0:  # jumbogram or TSO: take the length on the wire
            total = max(size, wire_len) - ip - 40
            verify = False
        tcp = ip + 40
        while next_header != _TCP:
            if next_header in _IPV6_EXT_8:
                if size < tcp + 8:
                    stats.undecodable += 1
                    return None
                if next_header == 43 and data[tcp + 3]:  # routing, segments left > 0
                    verify = False
                next_header = data[tcp]
                tcp += (data[tcp + 1] + 1) << 3
            elif next_header == _IPV6_FRAGMENT:
                if size < tcp + 8:
                    stats.undecodable += 1
                    return None
                offset_flags = _U16(data, tcp + 2)[0]
                if offset_flags & 0xFFF8:  # not the first fragment: no TCP header here
                    stats.fragments += 1
                    return None
                if offset_flags & 1:  # more fragments follow: only part of the segment
                    verify = False
                next_header = data[tcp]
                tcp += 8
            elif next_header == _IPV6_AH:
                if size < tcp + 8:
                    stats.undecodable += 1
                    return None
                next_header = data[tcp]
                tcp += (data[tcp + 1] + 2) << 2
            else:  # 59 no next header, UDP, ICMPv6, ESP, ...
                stats.non_tcp += 1
                return None
        segment_len = total - (tcp - ip - 40)
        if size < tcp + 20 or segment_len < 20:
            stats.undecodable += 1
            return None
        sport, dport, seq, ack, offset_byte, flags, window = _TCPH(data, tcp)
        tcp_header = (offset_byte >> 4) << 2
        payload_len = segment_len - tcp_header
        if tcp_header < 20 or payload_len < 0:
            stats.undecodable += 1
            return None
        end = tcp + segment_len
        if end <= size and verify:  # the common case, inline
            acc = int.from_bytes(
                data[ip + 8 : end] if tcp == ip + 40 else src + dst + data[tcp:end], "big")
            if segment_len & 1:
                acc <<= 8
            if (acc + _TCP + segment_len) % 0xFFFF:
                self._bad_checksum(src)
        elif end > size or self.verify_checksums:
            payload_len = self._irregular(data, tcp, tcp_header, end, wire_len, src, dst,
                                          verify, payload_len)
        opts = _options(data, tcp, tcp_header, size, flags) if tcp_header > 20 else _NONE
        stats.tcp_segments += 1
        return self._segment(self._v6_names, AF_INET6, frame, ts_ns, 6, src, sport, dst, dport,
                             (seq, ack, flags, payload_len, window, *opts))

    def _segment(self, names: dict[bytes, str], family: int, frame: int, ts_ns: int,
                 version: int, src: bytes, sport: int, dst: bytes, dport: int,
                 rest: tuple[int, ...]) -> Segment:
        """Build the Segment, with the addresses' text from the per-family cache."""
        src_name = names.get(src)
        if src_name is None:
            src_name = self._name(names, family, src)
        dst_name = names.get(dst)
        if dst_name is None:
            dst_name = self._name(names, family, dst)
        return _new_segment(Segment, (frame, ts_ns, version, src_name, sport, dst_name, dport,
                                      *rest))

    def _irregular(
        self, data: bytes, tcp: int, tcp_header: int, end: int, wire_len: int,
        src: bytes, dst: bytes, verify: bool, payload_len: int,
    ) -> int:
        """Segment data[tcp:end] not wholly captured, or not verifiable: returns payload_len.

        Cut by the snap length (the frame was longer on the wire): the header length
        stands, counted as truncated. Shorter on the wire than its IP length claims (a
        malformed packet the receiver's kernel would drop): the payload is clamped to the
        bytes the frame carried, as Wireshark does, counted in `short_frames`.
        """
        stats = self.stats
        size = len(data)
        if end > size:
            on_wire = wire_len if wire_len > size else size
            if end > on_wire:
                stats.short_frames += 1
                end = on_wire
                payload_len = max(0, end - tcp - tcp_header)
            if end > size:
                stats.truncated += 1
                if self.verify_checksums:
                    stats.unverified_checksums += 1
                return payload_len
        if not verify:
            if self.verify_checksums:
                stats.unverified_checksums += 1
            return payload_len
        length = end - tcp
        acc = int.from_bytes(src + dst + data[tcp:end], "big")
        if length & 1:
            acc <<= 8
        if (acc + _TCP + length) % 0xFFFF:
            self._bad_checksum(src)
        return payload_len

    def _bad_checksum(self, src: bytes) -> None:
        """Count a segment whose TCP checksum is wrong, by its sender."""
        self.stats.bad_checksums += 1
        names, family = ((self._v4_names, AF_INET) if len(src) == 4
                         else (self._v6_names, AF_INET6))
        self.stats.bad_checksum_senders[names.get(src) or self._name(names, family, src)] += 1

    @staticmethod
    def _name(cache: dict[bytes, str], family: int, packed: bytes) -> str:
        if len(cache) >= _ADDR_CACHE_MAX:  # a scan can show millions of addresses
            cache.clear()
        name = cache[packed] = inet_ntop(family, packed)
        return name


#: builds the NamedTuple without its Python-level __new__ (about 3x cheaper)
_new_segment = tuple.__new__
