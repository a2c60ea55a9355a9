"""Capture file formats: pcap magics and precision, pcapng interfaces/sections/blocks,
gzip, stdin and non-seekable streams, damage and unreadable inputs."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tcplife.capture import CaptureError, ReadStats, read_segments

from capture_builders import (
    epb,
    ethernet,
    idb,
    ipv4_tcp,
    isb,
    packet_block,
    pcap_file,
    shb,
    spb,
)

PACKET = ethernet(ipv4_tcp(seq=7))
RAW = ipv4_tcp(seq=8)


def read(data: bytes, tmp_path: Path, name: str = "cap.pcap") -> tuple[list, ReadStats]:
    path = tmp_path / name
    path.write_bytes(data)
    stats = ReadStats()
    return list(read_segments(path, stats)), stats


# --- classic pcap ---------------------------------------------------------------------


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_magics_keep_exact_nanoseconds(tmp_path: Path, endian: str, nano: bool) -> None:
    sec = 1_700_000_000
    frac = 123_456_789 if nano else 999_999
    data = pcap_file([(sec, frac, PACKET), (sec + 1, 1, PACKET)], endian=endian, nano=nano)
    segments, stats = read(data, tmp_path)
    scale = 1 if nano else 1000
    assert [s.ts_ns for s in segments] == [sec * 10**9 + frac * scale,
                                           (sec + 1) * 10**9 + scale]
    assert [s.frame for s in segments] == [1, 2]
    assert segments[0].seq == 7
    assert stats.first_ts_ns == segments[0].ts_ns and stats.last_ts_ns == segments[1].ts_ns
    assert stats.link_types == {1: 2} and stats.warnings == []


def test_pcap_with_only_a_header_is_empty_without_error(tmp_path: Path) -> None:
    segments, stats = read(pcap_file([]), tmp_path)
    assert segments == [] and stats.frames == 0 and stats.warnings == []
    assert stats.first_ts_ns is None


def test_truncated_last_record_stops_with_offset_and_keeps_earlier_frames(
    tmp_path: Path,
) -> None:
    data = pcap_file([PACKET, PACKET, PACKET])
    cut = len(data) - 10
    segments, stats = read(data[:cut], tmp_path)
    assert [s.frame for s in segments] == [1, 2]
    offset = 24 + 2 * (16 + len(PACKET))
    [warning] = stats.warnings
    assert warning.startswith(f"{tmp_path / 'cap.pcap'}: truncated record at byte offset {offset}")
    assert "(frame 3)" in warning and "analysed up to frame 2" in warning


def test_truncated_record_header(tmp_path: Path) -> None:
    data = pcap_file([PACKET, PACKET])
    segments, stats = read(data + b"\x01\x02\x03", tmp_path)
    assert len(segments) == 2
    assert "truncated record header at byte offset" in stats.warnings[0]
    assert "(frame 3)" in stats.warnings[0]


def test_absurd_captured_length_is_corruption(tmp_path: Path) -> None:
    data = pcap_file([PACKET]) + b"\0" * 8 + (10**9).to_bytes(4, "little") + b"\0" * 40
    segments, stats = read(data, tmp_path)
    assert len(segments) == 1
    assert "corrupt record header" in stats.warnings[0]


def test_pcap_link_type_field_fcs_bits_are_masked(tmp_path: Path) -> None:
    data = bytearray(pcap_file([PACKET]))
    data[20:24] = (1 | 0x1 << 28 | 0x2 << 26).to_bytes(4, "little")  # F bit + FCS length
    segments, stats = read(bytes(data), tmp_path)
    assert len(segments) == 1 and stats.link_types == {1: 1}


# --- pcapng ---------------------------------------------------------------------------


def test_pcapng_honours_every_interface(tmp_path: Path) -> None:
    base = 1_700_000_000
    data = b"".join([
        shb(),
        idb(1),  # Ethernet, default 10^-6
        idb(101, tsresol=9),  # raw IP, 10^-9
        idb(1, tsresol=0x80 | 20),  # Ethernet, 2^-20 s
        idb(228, tsresol=3, tsoffset=base),  # raw IPv4, ms, offset in seconds
        epb(0, base * 10**6 + 1, PACKET),
        epb(1, base * 10**9 + 123_456_789, RAW),
        epb(2, (base << 20) + (1 << 19), PACKET),  # + 0.5 s
        epb(3, 1_250, RAW),  # base + 1.25 s
        isb(0),
    ])
    segments, stats = read(data, tmp_path, "two.pcapng")
    assert [s.ts_ns for s in segments] == [
        base * 10**9 + 1_000,
        base * 10**9 + 123_456_789,
        base * 10**9 + 500_000_000,
        base * 10**9 + 1_250_000_000,
    ]
    assert [s.seq for s in segments] == [7, 8, 7, 8]
    assert stats.link_types == {1: 2, 101: 1, 228: 1}
    assert stats.warnings == []


def test_pcapng_two_power_resolution_floors_to_whole_ns(tmp_path: Path) -> None:
    data = shb() + idb(1, tsresol=0x80 | 30) + epb(0, 3, PACKET)
    [segment], _ = read(data, tmp_path, "a.pcapng")
    assert segment.ts_ns == 3 * 10**9 // 2**30  # 2.79 ns -> 2


def test_pcapng_multiple_sections_reset_interfaces_and_switch_byte_order(
    tmp_path: Path,
) -> None:
    data = b"".join([
        shb("<"), idb(1, endian="<"), epb(0, 5_000_000, PACKET, endian="<"),
        shb(">"), idb(101, tsresol=9, endian=">"), epb(0, 7, RAW, endian=">"),
        epb(1, 8, RAW, endian=">"),  # interface 1 belonged to no section here: skipped
        shb("<"), idb(228, endian="<"), epb(0, 9, RAW, endian="<"),
    ])
    segments, stats = read(data, tmp_path, "s.pcapng")
    assert [(s.frame, s.ts_ns) for s in segments] == [(1, 5 * 10**9), (2, 7), (3, 9000)]
    assert stats.link_types == {1: 1, 101: 1, 228: 1}
    [warning] = stats.warnings
    assert "names interface 1" in warning


def test_pcapng_simple_and_obsolete_packet_blocks(tmp_path: Path) -> None:
    data = b"".join([
        shb(), idb(1, snaplen=0),
        epb(0, 2_000_000, PACKET),
        spb(PACKET),  # no timestamp: takes the previous one
        packet_block(0, 3_000_000, PACKET),
        spb(PACKET + b"\0\0\0"),  # padding bytes beyond the packet are not data
    ])
    segments, stats = read(data, tmp_path, "spb.pcapng")
    assert [(s.frame, s.ts_ns) for s in segments] == [
        (1, 2 * 10**9), (2, 2 * 10**9), (3, 3 * 10**9), (4, 3 * 10**9)]
    assert stats.frames == 4 and stats.tcp_segments == 4


def test_pcapng_spb_respects_interface_snaplen(tmp_path: Path) -> None:
    data = shb() + idb(1, snaplen=54) + spb(PACKET + b"x" * 100, wire_len=len(PACKET) + 100)
    [segment], stats = read(data, tmp_path, "snap.pcapng")
    assert stats.truncated == 0  # the IP length says 40: nothing was lost
    assert segment.payload_len == 0


def test_pcapng_unknown_blocks_are_skipped(tmp_path: Path) -> None:
    from capture_builders import block

    data = shb() + block(0x0BAD, b"whatever") + idb(1) + block(4, b"\0" * 4) + epb(0, 1, PACKET)
    segments, stats = read(data, tmp_path, "u.pcapng")
    assert len(segments) == 1 and stats.warnings == []


def test_pcapng_truncated_block_stops_with_offset(tmp_path: Path) -> None:
    head = shb() + idb(1) + epb(0, 1, PACKET)
    data = head + epb(0, 2, PACKET)[:-9]
    segments, stats = read(data, tmp_path, "t.pcapng")
    assert len(segments) == 1
    [warning] = stats.warnings
    assert f"truncated block at byte offset {len(head)} (frame 2)" in warning
    assert "analysed up to frame 1" in warning


def test_pcapng_corrupt_block_length(tmp_path: Path) -> None:
    head = shb() + idb(1) + epb(0, 1, PACKET)
    bad = bytearray(epb(0, 2, PACKET))
    bad[4:8] = (7).to_bytes(4, "little")
    segments, stats = read(head + bytes(bad) + epb(0, 3, PACKET), tmp_path, "c.pcapng")
    assert len(segments) == 1
    assert f"corrupt block at byte offset {len(head)}" in stats.warnings[0]


def test_pcapng_bad_first_byte_order_magic_is_unreadable(tmp_path: Path) -> None:
    data = bytearray(shb())
    data[8:12] = b"\0\0\0\0"
    path = tmp_path / "x.pcapng"
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match="byte-order magic"):
        read_segments(path)


# --- sources: gzip, stdin, streams ----------------------------------------------------


def test_gzip_is_transparent(tmp_path: Path) -> None:
    data = gzip.compress(pcap_file([PACKET, PACKET]))
    segments, _ = read(data, tmp_path, "c.pcap.gz")
    assert [s.frame for s in segments] == [1, 2]
    segments, _ = read(gzip.compress(shb() + idb(1) + epb(0, 1, PACKET)), tmp_path, "n.gz")
    assert len(segments) == 1


def test_truncated_gzip_delivers_what_it_can(tmp_path: Path) -> None:
    packets = [ethernet(ipv4_tcp(seq=i, payload=os.urandom(600))) for i in range(200)]
    data = gzip.compress(pcap_file(packets))
    segments, stats = read(data[: len(data) // 2], tmp_path, "half.pcap.gz")
    assert 0 < len(segments) < 200
    assert [s.seq for s in segments] == list(range(len(segments)))
    [warning] = stats.warnings
    assert "decompressed data" in warning and f"analysed up to frame {len(segments)}" in warning


class RawPipe(io.RawIOBase):
    """A non-seekable raw stream that hands out at most 7 bytes per read."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        n = min(7, len(buffer), len(self._data))
        buffer[:n], self._data = self._data[:n], self._data[n:]
        return n


@pytest.mark.parametrize("wrap", ["raw", "buffered", "gzip-raw"])
def test_non_seekable_streams(wrap: str) -> None:
    data = shb() + idb(1) + b"".join(epb(0, i, PACKET) for i in range(50))
    if wrap == "gzip-raw":
        data = gzip.compress(data)
    stream: io.RawIOBase | io.BufferedReader = RawPipe(data)
    if wrap == "buffered":
        stream = io.BufferedReader(stream)
    assert not stream.seekable()
    stats = ReadStats()
    segments = list(read_segments(stream, stats))  # type: ignore[arg-type]
    assert [s.frame for s in segments] == list(range(1, 51))
    assert stats.warnings == []
    assert not stream.closed  # the caller's stream stays the caller's


def test_os_pipe() -> None:
    read_fd, write_fd = os.pipe()
    data = pcap_file([PACKET] * 20)
    with os.fdopen(write_fd, "wb") as writer:
        writer.write(data)
    with os.fdopen(read_fd, "rb") as reader:
        assert len(list(read_segments(reader))) == 20


def test_live_pipe_yields_each_segment_before_the_writer_closes() -> None:
    """A live `tcpdump -w - | tcplife` must not wait for a full read buffer."""
    read_fd, write_fd = os.pipe()
    data = pcap_file([ethernet(ipv4_tcp(seq=i)) for i in range(3)])
    first = 24 + 16 + len(PACKET)
    with os.fdopen(write_fd, "wb", buffering=0) as writer, os.fdopen(read_fd, "rb") as reader:
        writer.write(data[:first])
        segments = read_segments(reader)
        assert next(segments).seq == 0  # would block forever if the reader waited for more
        writer.write(data[first:])
        writer.close()
        assert [s.seq for s in segments] == [1, 2]


def test_dash_reads_stdin(tmp_path: Path) -> None:
    path = tmp_path / "in.pcap.gz"
    path.write_bytes(gzip.compress(pcap_file([PACKET] * 3)))
    code = (
        "from tcplife.capture import read_segments, ReadStats\n"
        "s = ReadStats(); n = sum(1 for _ in read_segments('-', s))\n"
        "print(n, s.frames)\n"
    )
    with path.open("rb") as stdin:
        out = subprocess.run(
            [sys.executable, "-c", code], stdin=stdin, capture_output=True, text=True,
            check=True, cwd=Path(__file__).resolve().parents[1],
        ).stdout
    assert out.split() == ["3", "3"]


# --- unreadable inputs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\xd4\xc3", "too short to be a capture"),
        (b"hello world, I am text\n", "not a pcap or pcapng capture (starts with 'hell')"),
        (b"\x00\x01\x02\x03rest", "starts with 0x00010203"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "truncated pcap file header"),
        (gzip.compress(b"", mtime=0), "empty file after gzip decompression"),
        (gzip.compress(b"plain text", mtime=0), "not a pcap or pcapng capture after gzip"),
        (b"\x1f\x8b\x08\x00garbage", "gzip"),
        (b"\x34\xcd\xb2\xa1" + b"\0" * 20, "'modified' (Kuznetzov) pcap is not supported"),
    ],
)
def test_unreadable_inputs_raise_capture_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "foo.txt"
    path.write_bytes(content)
    with pytest.raises(CaptureError) as info:
        read_segments(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="No such file"):
        read_segments(tmp_path / "nope.pcap")
    with pytest.raises(CaptureError, match="Is a directory"):
        read_segments(tmp_path)


def test_text_mode_and_closed_streams_are_refused() -> None:
    with pytest.raises(CaptureError, match="text mode"):
        read_segments(io.StringIO("abcd"))  # type: ignore[arg-type]
    closed = io.BytesIO(b"abcd")
    closed.close()
    with pytest.raises(CaptureError, match="cannot read"):
        read_segments(closed)
    with pytest.raises(CaptureError, match="not a path or a binary stream"):
        read_segments(42)  # type: ignore[arg-type]


def test_stats_merge() -> None:
    a = ReadStats(frames=2, tcp_segments=1, non_tcp=1, first_ts_ns=5, last_ts_ns=9,
                  warnings=["x"])
    a.link_types[1] += 2
    b = ReadStats(frames=3, tcp_segments=3, first_ts_ns=2, last_ts_ns=7, bad_checksums=1)
    b.link_types[101] += 3
    assert a.merge(b) is a
    assert (a.frames, a.tcp_segments, a.non_tcp, a.bad_checksums) == (5, 4, 1, 1)
    assert (a.first_ts_ns, a.last_ts_ns) == (2, 9)
    assert a.link_types == {1: 2, 101: 3} and a.warnings == ["x"]
    assert ReadStats().merge(ReadStats()).first_ts_ns is None


def test_pcapng_codes_are_dpkts() -> None:
    """The reader writes the pcapng block and option codes out (so that reading does not
    import all of dpkt); they must be dpkt's, the reader of record."""
    import dpkt.pcapng

    from tcplife.capture import records

    for name in ("PCAPNG_BT_SHB", "PCAPNG_BT_IDB", "PCAPNG_BT_PB", "PCAPNG_BT_SPB",
                 "PCAPNG_BT_EPB", "PCAPNG_OPT_ENDOFOPT", "PCAPNG_OPT_IF_TSRESOL",
                 "PCAPNG_OPT_IF_TSOFFSET"):
        assert getattr(records, name) == getattr(dpkt.pcapng, name), name
