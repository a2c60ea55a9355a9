"""Regression tests for the crashes the hostile corpus and the fuzzers found (issue 7),
each on a tiny input built here (no binary fixture)."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import struct
import tracemalloc

import pytest

import tcplife
from tcplife.capture import CaptureError, ReadStats, read_segments
from tcplife.capture.fastread import read_batches
from tcplife.capture.records import MAX_BLOCK_LEN
from tcplife.capture.stats import MAX_SIMILAR_WARNINGS
from tcplife.core.segment import ACK, SYN

from capture_builders import epb, ethernet, idb, ipv4_tcp, pcap_file, shb


def _frames() -> list[bytes]:
    return [ethernet(ipv4_tcp(sport=40000, dport=80, seq=1000, flags=SYN)),
            ethernet(ipv4_tcp("10.0.0.2", "10.0.0.1", sport=80, dport=40000, seq=5000,
                              ack=1001, flags=SYN | ACK)),
            ethernet(ipv4_tcp(sport=40000, dport=80, seq=1001, ack=5001, flags=ACK))]


@pytest.mark.parametrize("fast", [False, True])
def test_huge_snaplen_and_caplen_allocate_nothing_big(fast: bool) -> None:
    """Found by the corpus (record_header): snap length 0xFFFFFFFF let a record header
    claim 4 GB, and the reader asked for it in one read: MemoryError, or gigabytes."""
    data = bytearray(pcap_file(_frames(), snaplen=0xFFFFFFFF))
    second = 24 + 16 + len(_frames()[0])
    struct.pack_into("<I", data, second + 8, 0xFFFFFFF0)
    tracemalloc.start()
    try:
        result = tcplife.analyze(io.BytesIO(bytes(data)), fast=fast)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20
    assert result.stats.frames == 1
    assert result.warnings == [
        f"<stream>: corrupt record header at byte offset {second} (frame 2): captured length "
        f"{0xFFFFFFF0} exceeds the limit {MAX_BLOCK_LEN}; analysed up to frame 1"]
    assert list(result.connections.packets) == [1]


def test_caplen_just_under_the_ceiling_is_still_read_to_the_end() -> None:
    """A big record the snap length allows is a truncated record, not corruption."""
    data = bytearray(pcap_file(_frames(), snaplen=0xFFFFFFFF))
    struct.pack_into("<I", data, 24 + 8, MAX_BLOCK_LEN)
    stats = ReadStats()
    assert list(read_segments(io.BytesIO(bytes(data)), stats)) == []
    assert "truncated record at byte offset 24 (frame 1)" in stats.warnings[0]


@pytest.mark.parametrize(("tsresol", "tsoffset", "ticks"), [
    (0, None, 1_700_000_000_000_000),  # if_tsresol 1 s, times written in microseconds
    (0x80, None, 1_700_000_000_000_000),  # 2^0 s
    (9, None, (1 << 64) - 1),
    (6, (1 << 63) - 1, 5),
    (6, -(1 << 63), 5),
])
@pytest.mark.parametrize("fast", [False, True])
def test_pcapng_times_beyond_int64(tsresol: int, tsoffset: int | None, ticks: int,
                                   fast: bool) -> None:
    """Found by the corpus (time, pcapng_block): such a time crashed the tables
    (OverflowError), the detectors (year out of range) and the bulk reader."""
    frames = _frames()
    data = (shb() + idb(1) + idb(1, tsresol, tsoffset) + epb(0, 1_700_000_000_000_000, frames[0])
            + epb(1, ticks, frames[1]) + epb(1, ticks, frames[2]))
    result = tcplife.analyze(io.BytesIO(data), fast=fast)
    assert result.stats.frames == 3
    assert result.stats.first_ts_ns == result.stats.last_ts_ns == 1_700_000_000_000_000_000
    assert len(result.warnings) == 1
    assert "(frame 2): time" in result.warnings[0]
    assert "take the previous packet's time (1700000000000000000 ns)" in result.warnings[0]
    assert list(result.connections.client_state) == ["ESTABLISHED"]
    stats = ReadStats()
    batches = list(read_batches(io.BytesIO(data), stats))
    assert [s.ts_ns for b in batches for s in b.segments()] == [1_700_000_000_000_000_000] * 3
    assert stats.warnings == result.warnings


def test_pcapng_resolution_finer_than_uint64() -> None:
    """Found by test_random_captures after the merge: if_tsresol 20 (10^-20 s units)
    made the bulk reader's divisor overflow numpy's uint64 (OverflowError). Such times
    are computed in Python, as the plain reader does; both readers agree."""
    frames = _frames()
    data = shb() + idb(1, 20) + b"".join(epb(0, 59_974_116_272_128 + i, f)
                                         for i, f in enumerate(frames))
    plain, fast = ReadStats(), ReadStats()
    want = list(read_segments(io.BytesIO(data), plain))
    got = [s for b in read_batches(io.BytesIO(data), fast) for s in b.segments()]
    assert got == want and len(want) == len(frames)
    assert [s.ts_ns for s in want] == [599] * len(frames)  # 5.9974e13 * 1e-20 s = 599.7 ns
    assert fast.warnings == plain.warnings


@pytest.mark.parametrize("kind", ["interface", "link type", "short idb"])
def test_one_warning_per_packet_is_capped(kind: str) -> None:
    """Found by reading the code after the corpus: a crafted pcapng made one warning per
    packet (a 2 MB file, 20,000 lines on stderr). Ten of a kind per file, then silence."""
    frame = _frames()[0]
    if kind == "interface":
        data = shb() + idb(1) + b"".join(epb(i + 1, 5, frame) for i in range(2000))
    elif kind == "link type":
        data = shb() + b"".join(idb(1000 + i) + epb(i, 5, frame) for i in range(2000))
    else:
        short_idb = struct.pack("<II", 1, 16) + b"\0" * 4 + struct.pack("<I", 16)
        data = shb() + short_idb * 2000 + idb(1) + epb(0, 5, frame)
    stats = ReadStats()
    segments = list(read_segments(io.BytesIO(data), stats))
    assert len(stats.warnings) == MAX_SIMILAR_WARNINGS
    assert stats.warnings[-1].endswith("; further such warnings are not shown")
    fast_stats = ReadStats()
    fast = [s for b in read_batches(io.BytesIO(data), fast_stats, batch_bytes=4096)
            for s in b.segments()]
    assert fast == segments and fast_stats == stats


@pytest.mark.parametrize(("at", "value", "message"), [
    (4, 0, "corrupt pcapng section header block (length 0)"),
    (4, 27, "corrupt pcapng section header block (length 27)"),
    (4, 0xFFFFFFFC, "corrupt pcapng section header block (length 4294967292)"),
    (4, 1 << 20, "truncated pcapng section header block"),
    (4, 32, "corrupt pcapng section header block (trailing length"),
    (12, 2, "unsupported pcapng version 2.0"),
])
def test_damaged_first_section_header_is_unreadable(at: int, value: int, message: str) -> None:
    """Found by the corpus (pcapng_block): a first SHB with a lying length was taken as a
    capture of 0 frames (exit 0, 'analysed up to frame 0'); it is the file header, so the
    input is unreadable, as with a broken pcap header: exit 1, one line."""
    data = bytearray(shb() + idb(1) + epb(0, 5, _frames()[0]))
    struct.pack_into("<I" if at == 4 else "<H", data, at, value)
    for read in (lambda: list(read_segments(io.BytesIO(bytes(data)))),
                 lambda: read_batches(io.BytesIO(bytes(data)))):
        with pytest.raises(CaptureError, match=re.escape(message)):
            read()


@pytest.mark.parametrize(("data", "says"), [
    (bz2.compress(b"x" * 100), "bzip2-compressed; decompress it first"),
    (lzma.compress(b"x" * 100), "xz-compressed; decompress it first"),
    (b"\x28\xb5\x2f\xfd" + b"\0" * 20, "zstd-compressed"),
    (b"PK\x03\x04" + b"\0" * 20, "a zip archive"),
    (b"snoop\0\0\0" + b"\0" * 20, "a snoop capture, not supported"),
    (b"\0" * 100, "all zeros at the start"),
    (gzip.compress(bz2.compress(b"x"), mtime=0), "after gzip decompression: bzip2-compressed"),
])
def test_other_formats_are_named(data: bytes, says: str) -> None:
    """Not a crash: what the corpus's non-captures showed could be said better than
    'starts with 0x425a6839'."""
    with pytest.raises(CaptureError, match=re.escape(says)):
        read_segments(io.BytesIO(data))
