"""Frame decoding: every link type, VLAN stacks, IPv4 options and fragments, IPv6
extension headers, snap-length truncation, padding, TSO lengths, checksums, window scale,
and that nothing a frame contains can raise."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcplife.capture import ReadStats, read_segments
from tcplife.capture.decode import LINK_DECODERS, Decoder, window_scale
from tcplife.core.segment import ACK, FIN, PSH, SYN, Segment

from capture_builders import (
    bsd_null,
    epb,
    ethernet,
    idb,
    ipv4,
    ipv4_tcp,
    ipv6,
    ipv6_ext,
    ipv6_fragment,
    ipv6_tcp,
    linux_sll,
    linux_sll2,
    pcap_file,
    shb,
    tcp_segment,
)

V4 = ipv4_tcp(src="192.0.2.1", dst="198.51.100.7", sport=1234, dport=443, seq=0xFFFFFFF0,
              ack=99, flags=PSH | ACK, window=512, payload=b"hello")
V6 = ipv6_tcp(src="2001:db8::1", dst="fe80::2", sport=5555, dport=22, seq=1, ack=2,
              flags=ACK, payload=b"abc")
EXPECT_V4 = Segment(1, 0, 4, "192.0.2.1", 1234, "198.51.100.7", 443, 0xFFFFFFF0, 99,
                    PSH | ACK, 5, 512, -1)
EXPECT_V6 = Segment(1, 0, 6, "2001:db8::1", 5555, "fe80::2", 22, 1, 2, ACK, 3, 65535, -1)


def decode(
    data: bytes, linktype: int = 101, wire_len: int | None = None
) -> tuple[Segment | None, ReadStats]:
    stats = ReadStats()
    wire = len(data) if wire_len is None else wire_len
    return Decoder(stats, "t.pcap").decode(1, 0, linktype, wire, data), stats


# --- link types -------------------------------------------------------------------------

LINK_CASES = {
    "ethernet": (1, ethernet(V4), ethernet(V6, 0x86DD)),
    "vlan": (1, ethernet(V4, tags=[0x8100]), ethernet(V6, 0x86DD, tags=[0x8100])),
    "qinq-88a8": (1, ethernet(V4, tags=[0x88A8, 0x8100]),
                  ethernet(V6, 0x86DD, tags=[0x88A8, 0x8100])),
    "qinq-9100-deep": (1, ethernet(V4, tags=[0x9100, 0x88A8, 0x8100, 0x8100]),
                       ethernet(V6, 0x86DD, tags=[0x9100, 0x8100])),
    "sll": (113, linux_sll(V4), linux_sll(V6, 0x86DD)),
    "sll2": (276, linux_sll2(V4), linux_sll2(V6, 0x86DD)),
    "null-host-order": (0, bsd_null(V4, 2, "<"), bsd_null(V6, 30, "<")),
    "null-network-order": (0, bsd_null(V4, 2, ">"), bsd_null(V6, 24, ">")),
    "loop": (108, bsd_null(V4, 2, ">"), bsd_null(V6, 28, ">")),
    "loop-linux-af": (108, bsd_null(V4, 2, ">"), bsd_null(V6, 10, ">")),
    "raw-12": (12, V4, V6),
    "raw-14": (14, V4, V6),
    "raw-101": (101, V4, V6),
    "ipv4/ipv6": (228, V4, None),
    "ipv6": (229, None, V6),
}


@pytest.mark.parametrize("case", LINK_CASES)
def test_every_link_type(case: str) -> None:
    linktype, v4, v6 = LINK_CASES[case]
    if v4 is not None:
        segment, stats = decode(v4, linktype)
        assert segment == EXPECT_V4
        assert stats.bad_checksums == 0 and stats.tcp_segments == 1
    if v6 is not None:
        segment, stats = decode(v6, linktype)
        assert segment == EXPECT_V6
        assert stats.bad_checksums == 0 and stats.tcp_segments == 1


def test_link_table_covers_the_promised_types() -> None:
    assert set(LINK_DECODERS) == {0, 1, 12, 14, 101, 108, 113, 228, 229, 276}


def test_link_types_through_files(tmp_path: Path) -> None:
    """Each link type in a real file, and mixed in one pcapng."""
    blocks = [shb()]
    for i, (linktype, v4, v6) in enumerate(LINK_CASES.values()):
        path = tmp_path / f"{linktype}-{i}.pcap"
        path.write_bytes(pcap_file([p for p in (v4, v6) if p is not None], linktype=linktype))
        segments = list(read_segments(path))
        assert [s.ip_version for s in segments] == [v for v, p in ((4, v4), (6, v6)) if p]
        blocks.append(idb(linktype))
        blocks += [epb(i, 1, p) for p in (v4, v6) if p is not None]
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(b"".join(blocks))
    stats = ReadStats()
    assert len(list(read_segments(path, stats))) == stats.frames == 28
    assert stats.warnings == [] and stats.undecodable == 0


def test_unknown_link_type_warns_once(tmp_path: Path) -> None:
    path = tmp_path / "odd.pcap"
    path.write_bytes(pcap_file([V4, V4, V4], linktype=147))
    stats = ReadStats()
    assert list(read_segments(path, stats)) == []
    assert stats.undecodable == 3 and stats.frames == 3
    assert stats.warnings == [
        f"{path}: unsupported link type 147 (first at frame 1): its frames are counted "
        "as undecodable"
    ]


def test_non_ip_and_non_tcp_frames_are_counted_and_frame_numbers_advance(
    tmp_path: Path,
) -> None:
    arp = ethernet(b"\0" * 28, 0x0806)
    udp = ethernet(ipv4(b"\0" * 8 + b"dns", proto=17))
    icmp6 = ethernet(ipv6(b"\x80\0\0\0\0\0\0\0", next_header=58), 0x86DD)
    llc = ethernet(b"\xaa" * 40, 46)  # 802.3 length field
    path = tmp_path / "mixed.pcap"
    path.write_bytes(pcap_file([arp, ethernet(V4), udp, icmp6, llc, ethernet(V6, 0x86DD)]))
    stats = ReadStats()
    segments = list(read_segments(path, stats))
    assert [s.frame for s in segments] == [2, 6]
    assert (stats.frames, stats.tcp_segments, stats.non_tcp, stats.undecodable) == (6, 2, 4, 0)


def test_tcp_in_tunnels_and_icmp_errors_is_not_a_segment() -> None:
    inner = ipv4_tcp()
    icmp_error = ipv4(b"\x03\x03\0\0\0\0\0\0" + inner, proto=1)
    ip_in_ip = ipv4(inner, proto=4)
    v6_in_v4 = ipv4(V6, proto=41)
    gre = ipv4(b"\0\0\x08\0" + inner, proto=47)
    for packet in (icmp_error, ip_in_ip, v6_in_v4, gre):
        segment, stats = decode(packet)
        assert segment is None and stats.non_tcp == 1


def test_too_short_link_headers_are_undecodable() -> None:
    for linktype, data in [(1, b"\0" * 13), (1, ethernet(b"", tags=[0x8100])[:15]),
                           (113, b"\0" * 15), (276, b"\0" * 19), (0, b"\0\0"), (101, b""),
                           (101, b"\x50" + V4[1:])]:
        segment, stats = decode(data, linktype)
        assert segment is None and stats.undecodable == 1, (linktype, data)


# --- IPv4 -----------------------------------------------------------------------------


def test_ipv4_options_use_ihl() -> None:
    options = b"\x94\x04\0\0" + b"\x01" * 8  # router alert + NOPs
    packet = ipv4_tcp(ip_options=options, seq=42, payload=b"x" * 10)
    segment, stats = decode(packet)
    assert segment is not None and segment.seq == 42 and segment.payload_len == 10
    assert stats.bad_checksums == 0


def test_ipv4_fragments() -> None:
    whole = tcp_segment(socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2"),
                        payload=b"y" * 64)
    first = ipv4(whole[:48], frag=0x2000, total_length=20 + 48)  # MF, offset 0
    rest = ipv4(whole[48:], frag=48 // 8)
    segment, stats = decode(first)
    assert segment is not None and segment.payload_len == 28  # what this fragment carries
    assert stats.unverified_checksums == 1 and stats.bad_checksums == 0
    segment, stats = decode(rest)
    assert segment is None and stats.fragments == 1 and stats.non_tcp == 0


def test_ipv4_bad_headers_are_undecodable() -> None:
    bad_version = b"\x65" + V4[1:]
    short_ihl = b"\x44" + V4[1:]
    tcp_cut = V4[:20 + 19]
    bad_offset = bytearray(V4)
    bad_offset[20 + 12] = 0x40  # data offset 4 words
    tiny_total = bytearray(V4)
    tiny_total[2:4] = struct.pack("!H", 30)
    for data in (bad_version, short_ihl, tcp_cut, bytes(bad_offset), bytes(tiny_total), V4[:19]):
        segment, stats = decode(data)
        assert segment is None and stats.undecodable == 1


def test_ethernet_padding_is_not_payload() -> None:
    syn = ipv4_tcp(flags=SYN)  # 40 bytes: Ethernet pads the frame to 60
    frame = ethernet(syn) + b"\0" * 6 + b"FCS!"
    segment, stats = decode(frame, 1)
    assert segment is not None and segment.payload_len == 0
    assert stats.bad_checksums == 0 and stats.truncated == 0


def test_snap_length_truncation_keeps_header_lengths() -> None:
    full = ethernet(ipv4_tcp(payload=b"z" * 1000))
    segment, stats = decode(full[:54 + 10], 1, wire_len=len(full))
    assert segment is not None and segment.payload_len == 1000
    assert (stats.truncated, stats.unverified_checksums, stats.bad_checksums) == (1, 1, 0)


def test_missing_tcp_header_is_undecodable_even_if_snapped() -> None:
    full = ethernet(ipv4_tcp(payload=b"z" * 100))
    segment, stats = decode(full[:14 + 20 + 12], 1, wire_len=len(full))
    assert segment is None and stats.undecodable == 1 and stats.truncated == 0


def test_frame_shorter_on_the_wire_than_its_ip_length() -> None:
    """Wireshark clamps the payload to the bytes present; so do we (and count it)."""
    packet = ipv4_tcp(payload=b"q" * 108)[:-8]
    segment, stats = decode(packet)  # captured == wire == 140, IP says 148
    assert segment is not None and segment.payload_len == 100
    assert stats.short_frames == 1 and stats.truncated == 0
    assert stats.bad_checksums == 1  # the sender's checksum covered 108 bytes


def test_tso_zero_total_length_falls_back_to_the_frame() -> None:
    packet = ipv4_tcp(payload=b"t" * 3000, total_length=0)
    segment, stats = decode(ethernet(packet), 1)
    assert segment is not None and segment.payload_len == 3000
    assert stats.truncated == 0 and stats.bad_checksums == 0
    assert stats.unverified_checksums == 1
    # ... and snapped as well: the length on the wire still gives the payload
    segment, stats = decode(ethernet(packet)[:200], 1, wire_len=14 + len(packet))
    assert segment is not None and segment.payload_len == 3000 and stats.truncated == 1


# --- IPv6 -----------------------------------------------------------------------------


def test_ipv6_extension_headers_hop_by_hop_and_first_fragment() -> None:
    packet = ipv6_tcp(ext=[(0, ipv6_ext(0)), (44, ipv6_fragment(0)), (60, ipv6_ext(0))],
                      payload=b"p" * 9, seq=77)
    segment, stats = decode(packet)
    assert segment is not None and segment.seq == 77 and segment.payload_len == 9
    assert stats.bad_checksums == 0 and stats.unverified_checksums == 0


def test_ipv6_routing_and_ah_headers() -> None:
    routing = ipv6_ext(0, bytes([0, 0]) + b"\0" * 4)  # type 0, segments left 0
    ah = bytes([0, 4]) + b"\0" * 22  # (4 + 2) * 4 = 24 bytes
    packet = ipv6_tcp(ext=[(43, routing), (51, ah)], payload=b"r" * 3)
    segment, stats = decode(packet)
    assert segment is not None and segment.payload_len == 3 and stats.bad_checksums == 0
    routing_left = ipv6_ext(0, bytes([0, 2]) + b"\0" * 4)  # segments left: final dst elsewhere
    segment, stats = decode(ipv6_tcp(ext=[(43, routing_left)]))
    assert segment is not None and stats.unverified_checksums == 1


def test_ipv6_later_fragments_and_no_next_header() -> None:
    packet = ipv6_tcp(ext=[(44, ipv6_fragment(0, offset=100))])
    segment, stats = decode(packet)
    assert segment is None and stats.fragments == 1
    segment, stats = decode(ipv6(b"", next_header=59))
    assert segment is None and stats.non_tcp == 1
    segment, stats = decode(ipv6_tcp(ext=[(44, ipv6_fragment(0, more=True))]))
    assert segment is not None and stats.unverified_checksums == 1


def test_ipv6_truncated_extension_chain_is_undecodable() -> None:
    packet = ipv6_tcp(ext=[(0, ipv6_ext(0, b"\0" * 30))])
    segment, stats = decode(packet[:40 + 16])
    assert segment is None and stats.undecodable == 1


def test_ipv6_snap_truncation() -> None:
    packet = ethernet(ipv6_tcp(payload=b"s" * 500), 0x86DD)
    segment, stats = decode(packet[:14 + 40 + 20], 1, wire_len=len(packet))
    assert segment is not None and segment.payload_len == 500 and stats.truncated == 1


# --- TCP header -------------------------------------------------------------------------


def test_bad_checksum_is_counted_and_the_segment_still_yielded(tmp_path: Path) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(pcap_file([ethernet(ipv4_tcp(bad_checksum=True, payload=b"odd")),
                                ethernet(ipv6_tcp(bad_checksum=True), 0x86DD),
                                ethernet(ipv4_tcp(payload=b"odd"))]))
    stats = ReadStats()
    assert len(list(read_segments(path, stats))) == 3
    assert stats.bad_checksums == 2


def test_checksum_verification_can_be_turned_off(tmp_path: Path) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(pcap_file([ethernet(ipv4_tcp(bad_checksum=True))]))
    stats = ReadStats()
    assert len(list(read_segments(path, stats, verify_checksums=False))) == 1
    assert stats.bad_checksums == 0 and stats.unverified_checksums == 0


@given(payload=st.binary(max_size=300), seq=st.integers(0, 2**32 - 1),
       v6=st.booleans())
@settings(max_examples=200, deadline=None)
def test_checksum_agrees_with_rfc1071(payload: bytes, seq: int, v6: bool) -> None:
    good = ipv6_tcp(payload=payload, seq=seq) if v6 else ipv4_tcp(payload=payload, seq=seq)
    _, stats = decode(good)
    assert stats.bad_checksums == 0
    bad = ipv6_tcp(payload=payload, seq=seq, bad_checksum=True) if v6 else ipv4_tcp(
        payload=payload, seq=seq, bad_checksum=True)
    _, stats = decode(bad)
    assert stats.bad_checksums == 1


def test_window_scale_only_on_syn() -> None:
    options = b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + b"\0" * 8 + b"\x01\x03\x03\x07"
    segment, _ = decode(ipv4_tcp(flags=SYN, options=options))
    assert segment is not None and segment.wscale == 7
    segment, _ = decode(ipv4_tcp(flags=SYN | ACK, options=b"\x03\x03\x0e"))
    assert segment is not None and segment.wscale == 14
    segment, _ = decode(ipv6_tcp(flags=SYN, options=b"\x01\x03\x03\x02"))
    assert segment is not None and segment.wscale == 2
    segment, _ = decode(ipv4_tcp(flags=ACK, options=b"\x03\x03\x07"))
    assert segment is not None and segment.wscale == -1
    segment, _ = decode(ipv4_tcp(flags=SYN, options=b"\x02\x04\x05\xb4"))
    assert segment is not None and segment.wscale == -1


@pytest.mark.parametrize(
    ("options", "expected"),
    [(b"", -1), (b"\x00\x03\x03\x07", -1), (b"\x01\x01\x03\x03\x09", 9),
     (b"\x03\x03", -1), (b"\x03\x02\x07", -1), (b"\x02\x00\x03\x03\x07", -1),
     (b"\x08\x0a" + b"\x03" * 8 + b"\x03\x03\x05", 5), (b"\x02", -1)],
)
def test_window_scale_option_walk(options: bytes, expected: int) -> None:
    assert window_scale(options, 0, len(options)) == expected


def test_flags_all_eight_bits() -> None:
    segment, _ = decode(ipv4_tcp(flags=0xFF))
    assert segment is not None and segment.flags == 0xFF
    segment, _ = decode(ipv4_tcp(flags=FIN))
    assert segment is not None and segment.flags == FIN


# --- robustness -----------------------------------------------------------------------


@given(linktype=st.sampled_from(sorted(LINK_DECODERS) + [999]), data=st.binary(max_size=120))
@settings(max_examples=500, deadline=None)
def test_random_bytes_never_raise(linktype: int, data: bytes) -> None:
    stats = ReadStats()
    Decoder(stats).decode(1, 0, linktype, len(data), data)
    assert stats.tcp_segments + stats.non_tcp + stats.undecodable + stats.fragments == 1


@given(cut=st.integers(0, 120), flip=st.integers(0, 119), value=st.integers(0, 255),
       v6=st.booleans())
@settings(max_examples=500, deadline=None)
def test_damaged_tcp_frames_never_raise(cut: int, flip: int, value: int, v6: bool) -> None:
    packet = bytearray(ethernet(V6, 0x86DD) if v6 else ethernet(V4))
    if flip < len(packet):
        packet[flip] = value
    data = bytes(packet[:cut])
    stats = ReadStats()
    Decoder(stats).decode(1, 0, 1, len(packet), data)
    assert stats.tcp_segments + stats.non_tcp + stats.undecodable + stats.fragments == 1


@given(data=st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_random_files_never_raise_past_the_header(tmp_path_factory: pytest.TempPathFactory,
                                                  data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.pcapng"
    for head in (pcap_file([V4]), shb() + idb(101)):
        path.write_bytes(head + data)
        stats = ReadStats()
        segments = list(read_segments(path, stats))
        assert len(segments) == stats.tcp_segments
