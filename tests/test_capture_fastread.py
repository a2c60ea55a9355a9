"""The fast reader (`read_batches`) against the plain one (`read_segments`): for every
input, the concatenated batches hold exactly the plain reader's segments and the stats end
up equal field by field (warnings too), with small and large buffers, with and without
checksum verification, on sample and corpus captures, generated captures of every link
type and oddity, damaged and mutated files, gzip, pipes and other streams.

Every test runs twice (the `core` fixture): on the numpy walk and decode
(``TCPLIFE_CORE=python``) and on the compiled reader's (``c``, engine/read.c and
decode.c), which must moreover give the numpy path's batches, column for column."""

from __future__ import annotations

import atexit
import gzip
import io
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcplife.capture import (
    CaptureError,
    ReadStats,
    creader,
    fastbuffer,
    fastdecode,
    fastwalk,
    read_segments,
    records,
)
from tcplife.capture.columns import Batch
from tcplife.capture.fastread import read_batches
from tcplife.core.segment import ACK, FIN, PSH, RST, SYN, Segment
from tcplife.native import loader

from capture_builders import (
    block,
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
    isb,
    linux_sll,
    linux_sll2,
    packet_block,
    pcap_file,
    shb,
    spb,
    tcp_segment,
)
from needs import missing, needs

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted((REPO / "sample_pcaps").glob("*.pcap*"))
CORPUS_DIR = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "pcaps"
CORPUS = sorted(CORPUS_DIR.glob("*.pcap*")) if CORPUS_DIR.is_dir() else []
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SMALL = 4096  # the smallest buffer: batch and record boundaries fall everywhere
T0 = 1_700_000_000
_TMP = Path(tempfile.mkdtemp(prefix="tcplife-fastread-"))  # files to read (regular files)
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)


# --- the comparison ---------------------------------------------------------------------


@pytest.fixture(autouse=True, params=["python", "c"])
def core(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which implementation `read_batches` runs (through ``TCPLIFE_CORE``, as the CLI's
    subprocesses see it too)."""
    if request.param == "c":
        try:
            creader.compiled_reader("c")
        except loader.EngineUnavailable:
            missing("the compiled engine (tcplife._engine: a C compiler at install)")
    monkeypatch.setenv(creader.CORE_ENV, request.param)
    return request.param


def same_batches(got: list[Batch], want: list[Batch]) -> None:
    """The compiled reader's batches hold the numpy path's columns. Where it reads the
    buffer in the same pieces (all but regular files over 4 MiB, see fastread._UNIT), the
    batches are the same, IPv6 address keys too (numbered per piece)."""
    if len(got) != len(want):  # read in other pieces: compare the whole
        assert got and want and got[0].book.v6_keys == {}  # no IPv6 keys to differ
        got, want = [Batch.joined(got)], [Batch.joined(want)]
    for a, b in zip(got, want, strict=True):
        for column in Batch.COLUMNS:
            assert np.array_equal(getattr(a, column), getattr(b, column)), column
        assert a.book.v6_keys == b.book.v6_keys


def read_both(
    source: Path | Callable[[], object], verify: bool = True, batch_bytes: int = SMALL,
    overflow: bool = False,
) -> tuple[list[Segment], ReadStats, list[Batch]]:
    """Read `source` both ways, assert they agree, return the fast reader's output.
    `overflow`: the input may hold pcapng times beyond int64 (both readers then give such
    frames the previous packet's time, see records.MAX_TS_NS, and still agree)."""
    open_source = source if callable(source) else (lambda: source)
    plain_stats, fast_stats = ReadStats(), ReadStats()
    try:
        plain = list(read_segments(open_source(), plain_stats, verify_checksums=verify))
    except CaptureError as exc:
        with pytest.raises(CaptureError) as info:
            read_batches(open_source(), fast_stats, verify_checksums=verify,
                         batch_bytes=batch_bytes)
        assert str(info.value) == str(exc)
        return [], fast_stats, []
    assert all(INT64_MIN <= s.ts_ns <= INT64_MAX for s in plain)
    batches = list(read_batches(open_source(), fast_stats, verify_checksums=verify,
                                batch_bytes=batch_bytes))
    fast = [segment for batch in batches for segment in batch.segments()]
    assert len(fast) == len(plain)
    for got, want in zip(fast, plain, strict=True):
        assert got == want
    assert fast_stats == plain_stats
    assert all(len(batch) > 0 for batch in batches)
    assert len({id(batch.book) for batch in batches}) <= 1
    frames = np.concatenate([b.frame for b in batches]) if batches else np.zeros(0)
    assert (np.diff(frames) > 0).all()
    for batch in batches:  # the row accessor agrees with the bulk one
        assert batch.segment(len(batch) - 1) == batch.segments([len(batch) - 1])[0]
    if os.environ.get(creader.CORE_ENV) == "c":
        numpy_stats = ReadStats()
        same_batches(batches, list(read_batches(open_source(), numpy_stats, verify_checksums=verify,
                                                batch_bytes=batch_bytes, core="python")))
        assert numpy_stats == fast_stats
    return fast, fast_stats, batches


def write(data: bytes, name: str = "cap.pcap") -> Path:
    fd, path = tempfile.mkstemp(suffix="-" + name, dir=_TMP)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return Path(path)


def same(data: bytes, name: str = "cap.pcap", *, sizes: tuple[int, ...] = (SMALL, 1 << 20),
         overflow: bool = False) -> tuple[list[Segment], ReadStats]:
    """`data` as a file: both readers agree with either buffer size and checksum setting."""
    path = write(data, name)
    try:
        result = None
        for verify in (True, False):
            for size in sizes:
                segments, stats, _ = read_both(path, verify, size, overflow)
                if verify and result is None:
                    result = (segments, stats)
        assert result is not None
        return result
    finally:
        path.unlink()


# --- captures from elsewhere ------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_captures(path: Path) -> None:
    for verify in (True, False):
        for size in (SMALL, 32 << 20):
            _, _, batches = read_both(path, verify, size)
            if size == SMALL:  # about one batch per batch_bytes of capture
                assert len(batches) >= path.stat().st_size // (3 * SMALL)


@needs(corpus=True)
@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_captures(path: Path) -> None:
    for verify in (True, False):
        for size in (SMALL, 32 << 20):
            read_both(path, verify, size)


@pytest.mark.parametrize(("name", "walker"), [
    ("clean_traffic.client.pcap", fastwalk.PcapWalker),
    ("many_short.client.pcapng", fastwalk.PcapngWalker),
])
def test_samples_are_read_in_bulk(
    monkeypatch: pytest.MonkeyPatch, name: str, walker: type[fastwalk.Walker], core: str
) -> None:
    """The sample captures go through the record walk in numpy (or C) and the bulk
    decoder, not through a fallback that would make the comparisons above trivial."""
    walked = decoded = 0
    if core == "c":
        vector = getattr(creader, "pcap_walk" if walker is fastwalk.PcapWalker
                         else "pcapng_walk")

        def count_walk(*args: object) -> tuple:
            nonlocal walked
            result = vector(*args)
            walked += result[1].shape[1]
            return result

        monkeypatch.setattr(creader, vector.__name__, count_walk)
    else:
        vector = walker._vector  # type: ignore[attr-defined]

        def count_walk(self: fastwalk.Walker, s: fastbuffer.Stream, pos: int) -> tuple:
            nonlocal walked
            result = vector(self, s, pos)
            walked += len(result[0] if walker is fastwalk.PcapWalker else result[0][0])
            return result

        monkeypatch.setattr(walker, "_vector", count_walk)
    one_by_one = fastdecode.BulkDecoder._one_by_one

    def count_plain(self: fastdecode.BulkDecoder, *args: object) -> list[Segment]:
        nonlocal decoded
        segments = one_by_one(self, *args)  # type: ignore[arg-type]
        decoded += len(args[3])  # type: ignore[arg-type]
        return segments

    monkeypatch.setattr(fastdecode.BulkDecoder, "_one_by_one", count_plain)
    stats = ReadStats()
    segments = sum(len(b) for b in read_batches(REPO / "sample_pcaps" / name, stats))
    assert segments == stats.tcp_segments > 100
    assert walked > 0.8 * stats.frames and decoded < 0.05 * stats.frames


# --- generated frames -------------------------------------------------------------------

V4 = "192.0.2.1", "198.51.100.7"
V6 = "2001:db8::1", "fe80::2"
WS_LINUX = b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + b"\0\0\0\1\0\0\0\0" + b"\x01\x03\x03\x07"
WS_OTHER = b"\x02\x04\x05\xb4\x01\x03\x03\x08\x01\x01\x08\x0a" + b"\0" * 8 + b"\x04\x02\0\0"
WS_ODD = [b"\x03\x03", b"\x01\x01\x03\x02\x05", b"\x00\x03\x03\x04", b"\x08\x01\x03\x03\x05",
          b"\x02\x04\x05\xb4\x03\x04\x06\x00", b"\x01" * 39 + b"\x03", b"\x02\x00\x03\x03\x01"]


def tcp_v4(**kw: object) -> bytes:
    return ipv4_tcp(*V4, **kw)


def tcp_v6(**kw: object) -> bytes:
    return ipv6_tcp(*V6, **kw)


def _ts(tsval: int, tsecr: int) -> bytes:
    return b"\x08\x0a" + struct.pack("!II", tsval, tsecr)


#: (TCP options, (TSval, TSecr) by Linux's tcp_parse_options walk), options padded with
#: EOL to 4 bytes by the builder
TS_CASES = [
    (b"\x01\x01" + _ts(0xDEADBEEF, 0x01020304), (0xDEADBEEF, 0x01020304)),  # Linux's layout
    (b"\x02\x04\x05\xb4\x04\x02" + _ts(7, 0) + b"\x01\x03\x03\x07", (7, 0)),  # Linux SYN
    (b"\x01" + _ts(0xFFFFFFFF, 5) + b"\x01", (0xFFFFFFFF, 5)),  # at an odd offset
    (b"\x01\x01\x05\x0a" + b"\x11" * 8 + b"\x01" + _ts(9, 10) + b"\x01", (9, 10)),  # SACK
    (b"\x01\x01\x08\x0a\0\0\0\1", (-1, -1)),  # cut by the end of the header
    (b"\x08\x06\0\0\0\1" + b"\x01\x01" + _ts(3, 4), (3, 4)),  # other length: skipped
    (b"\x00\x01" + _ts(3, 4), (-1, -1)),  # after EOL
    (b"\x02\x01" + _ts(3, 4), (-1, -1)),  # a length below 2 ends the walk
    (b"\x01" + _ts(1, 2) + b"\x01" + _ts(5, 6), (5, 6)),  # the later one counts
    (b"\x03\x03\x07" + _ts(11, 12) + b"\x01\x01\x01", (11, 12)),  # after wscale
    # an option running past the header after it ends the walk, but keeps what was found
    (b"\x01\x01" + _ts(13, 14) + b"\x01\x01\x22\x09", (13, 14)),
]


def _packets() -> dict[str, bytes]:
    """IP packets: ordinary, odd and broken (the link layer is added later)."""
    out: dict[str, bytes] = {}
    for name, make in (("v4", tcp_v4), ("v6", tcp_v6)):
        out[f"{name}-ack"] = make(seq=7, ack=9, flags=ACK, window=512)
        out[f"{name}-data-odd"] = make(flags=PSH | ACK, payload=b"hello")
        out[f"{name}-data-even"] = make(flags=PSH | ACK, payload=b"hello!" * 7)
        out[f"{name}-data-big"] = make(flags=ACK, payload=bytes(range(256)) * 6)
        out[f"{name}-data-huge"] = make(flags=ACK, payload=b"\xff\xee" * 20001)
        out[f"{name}-bad-checksum"] = make(flags=ACK, payload=b"abc", bad_checksum=True)
        out[f"{name}-bad-checksum-big"] = make(payload=b"q" * 700, bad_checksum=True)
        out[f"{name}-syn-linux"] = make(flags=SYN, options=WS_LINUX, seq=0xFFFFFFFF)
        out[f"{name}-synack-other"] = make(flags=SYN | ACK, options=WS_OTHER)
        out[f"{name}-fin-rst"] = make(flags=FIN | RST | 0xC0 | 0x20)
        out[f"{name}-opts-not-syn"] = make(flags=ACK, options=WS_LINUX)
        for i, opts in enumerate(WS_ODD):
            out[f"{name}-syn-odd{i}"] = make(flags=SYN, options=opts)
        for i, (opts, _) in enumerate(TS_CASES):
            out[f"{name}-ts{i}"] = make(flags=ACK, options=opts, payload=b"t" * i)
    v4 = out["v4-data-odd"]
    out["v4-ip-options"] = tcp_v4(ip_options=b"\x94\x04\0\0" + b"\x01" * 8, payload=b"x" * 9)
    out["v4-ip-options-bad"] = tcp_v4(ip_options=b"\x01" * 4, payload=b"x", bad_checksum=True)
    out["v4-ip-options-syn"] = tcp_v4(ip_options=b"\x01" * 40, flags=SYN, options=WS_LINUX)
    addresses = socket.inet_aton(V4[0]), socket.inet_aton(V4[1])
    whole = tcp_segment(*addresses, payload=b"y" * 64)
    out["v4-first-fragment"] = ipv4(whole[:48], *V4, frag=0x2000, total_length=68)
    out["v4-later-fragment"] = ipv4(whole[48:], *V4, frag=6)
    out["v4-later-fragment-udp"] = ipv4(b"z" * 16, *V4, proto=17, frag=0x2003)
    for bit in range(13):  # every bit of the fragment offset
        out[f"v4-fragment-{bit}"] = ipv4(whole, *V4, frag=1 << bit)
    out["v4-df"] = ipv4(tcp_segment(*addresses), *V4, frag=0x4000)
    out["v4-tso"] = tcp_v4(payload=b"t" * 100, total_length=0)
    out["v4-udp"] = ipv4(b"\0" * 8 + b"dns", *V4, proto=17)
    out["v4-icmp"] = ipv4(b"\x08\0\0\0" * 4, *V4, proto=1)
    out["v4-bad-version"] = b"\x65" + v4[1:]
    out["v4-short-ihl"] = b"\x44" + v4[1:]
    out["v4-tcp-cut"] = v4[:39]
    out["v4-ip-cut"] = v4[:19]
    out["v4-total-tiny"] = v4[:2] + struct.pack("!H", 30) + v4[4:]
    out["v4-total-41"] = v4[:2] + struct.pack("!H", 41) + v4[4:]  # 1 of 5 bytes: padding
    out["v4-doff-small"] = v4[:32] + b"\x40" + v4[33:]
    out["v4-doff-big"] = v4[:32] + b"\xf0" + v4[33:]  # header 60 > segment: broken
    syn = tcp_v4(flags=SYN, options=WS_LINUX, payload=b"abc")
    out["v4-payload-minus-1"] = syn[:2] + struct.pack("!H", len(syn) - 4) + syn[4:]
    syn6 = tcp_v6(flags=SYN, options=WS_LINUX, payload=b"abc")
    out["v6-payload-minus-1"] = syn6[:4] + struct.pack("!H", len(syn6) - 44) + syn6[6:]
    out["v4-total-long"] = v4[:2] + struct.pack("!H", len(v4) + 30) + v4[4:]  # short frame
    out["v4-padded"] = v4 + b"\0" * 6 + b"FCS!"
    out["v6-ext-hop"] = tcp_v6(ext=[(0, ipv6_ext(0))], payload=b"e" * 11)
    out["v6-ext-routing-live"] = tcp_v6(ext=[(43, ipv6_ext(0, b"\0\0\x01" + b"\0" * 3))])
    out["v6-ext-chain"] = tcp_v6(ext=[(0, ipv6_ext(0)), (60, ipv6_ext(0)), (51, ipv6_ext(0))])
    out["v6-first-fragment"] = tcp_v6(ext=[(44, ipv6_fragment(0, 0, more=True))])
    out["v6-later-fragment"] = tcp_v6(ext=[(44, ipv6_fragment(0, 5))])
    out["v6-jumbo"] = tcp_v6(payload=b"j" * 30, payload_length=0)
    out["v6-icmp"] = ipv6(b"\x80\0\0\0\0\0\0\0", *V6, next_header=58)
    out["v6-no-next"] = ipv6(b"", *V6, next_header=59)
    out["v6-cut"] = out["v6-ack"][:39]
    out["v6-tcp-cut"] = out["v6-ack"][:59]
    out["v6-bad-version"] = b"\x45" + out["v6-ack"][1:]
    out["v6-len-tiny"] = out["v6-ack"][:4] + struct.pack("!H", 10) + out["v6-ack"][6:]
    out["v6-len-long"] = out["v6-ack"][:4] + struct.pack("!H", 99) + out["v6-ack"][6:]
    out["v6-ext-cut"] = ipv6(b"\x06\x00\0\0", *V6, next_header=0)
    out["empty"] = b""
    out["junk"] = b"\x00\x01\x02"
    return out


PACKETS = _packets()


def _framed() -> list[tuple[int, bytes]]:
    """(link type, frame) for every packet under every link layer, plus odd link headers."""
    out: list[tuple[int, bytes]] = []
    for name, packet in PACKETS.items():
        six = name.startswith("v6")
        ether = 0x86DD if six else 0x0800
        out += [
            (1, ethernet(packet, ether)),
            (1, ethernet(packet, ether, tags=[0x8100])),
            (1, ethernet(packet, ether, tags=[0x88A8, 0x8100])),
            (1, ethernet(packet, ether, tags=[0x9100, 0x88A8, 0x8100])),
            (113, linux_sll(packet, ether)),
            (276, linux_sll2(packet, ether)),
            (0, bsd_null(packet, 30 if six else 2, "<")),
            (108, bsd_null(packet, 24 if six else 2, ">")),
            (101, packet),
            (12, packet),
            (229 if six else 228, packet),
        ]
    v4 = PACKETS["v4-ack"]
    out += [
        (1, ethernet(b"\0" * 28, 0x0806)), (1, ethernet(b"\xaa" * 40, 46)), (1, b"\0" * 13),
        (1, ethernet(b"", tags=[0x8100])[:15]), (1, ethernet(b"", tags=[0x8100, 0x8100])[:19]),
        (113, b"\0" * 15), (113, linux_sll(v4, 0x0806)), (276, b"\0" * 19),
        (0, b"\0\0"), (0, bsd_null(v4, 7)), (0, bsd_null(v4, 28, ">")), (0, bsd_null(v4, 10)),
        (101, b""), (101, b"\x50" + v4[1:]), (14, v4), (228, PACKETS["v6-ack"]),
        (229, v4), (147, v4), (105, b"\0" * 30), (1, ethernet(v4, 0x86DD)),
    ]
    return out


FRAMED = _framed()


def frames_of(linktype: int) -> list[bytes]:
    return [frame for lt, frame in FRAMED if lt == linktype]


def pcap_of(frames: list[bytes], linktype: int = 1, **kw: object) -> bytes:
    """A pcap of `frames` with real timestamps (the numpy record walk keys on them)."""
    return pcap_file([(T0 + i // 5, i, f) for i, f in enumerate(frames)], linktype, **kw)


@pytest.mark.parametrize("linktype", sorted({lt for lt, _ in FRAMED}))
@pytest.mark.parametrize(("endian", "nano"), [("<", False), (">", True)])
def test_every_link_type_and_oddity_in_pcap(linktype: int, endian: str, nano: bool) -> None:
    frames = frames_of(linktype)
    segments, stats = same(pcap_of(frames * 3, linktype, endian=endian, nano=nano))
    assert stats.frames == 3 * len(frames)
    if linktype in (1, 101):
        assert stats.tcp_segments and stats.non_tcp and stats.undecodable
        assert stats.bad_checksums and stats.unverified_checksums and stats.fragments
        assert stats.short_frames and {s.wscale for s in segments} >= {-1, 0, 7, 8}


@pytest.mark.parametrize("make", [tcp_v4, tcp_v6], ids=["v4", "v6"])
def test_timestamp_option_in_every_layout(make: Callable[..., bytes]) -> None:
    """Both readers give the TSval/TSecr that Linux's option walk finds, wherever the
    option sits, and none when it is cut (by the header's end or the snap length)."""
    frames = [ethernet(make(flags=ACK, options=opts, payload=b"p" * i),
                       0x86DD if make is tcp_v6 else 0x0800)
              for i, (opts, _) in enumerate(TS_CASES)]
    want = [expected for _, expected in TS_CASES]
    segments, _ = same(pcap_of(frames * 40))  # enough rows for the bulk decoder
    assert [(s.tsval, s.tsecr) for s in segments] == want * 40
    # the snap length cuts Linux's layout inside the option: no timestamp
    linux = frames[0]  # no payload: the frame ends with the option
    packets = [(T0, i, linux[:cut], len(linux))
               for i, cut in enumerate(range(len(linux) - 12, len(linux) + 1))]
    segments, _ = same(pcap_file(packets * 10, 1, snaplen=len(linux)))
    assert [(s.tsval, s.tsecr) for s in segments] == (
        [(-1, -1)] * 12 + [(0xDEADBEEF, 0x01020304)]) * 10


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
@pytest.mark.parametrize("path", [p for p in SAMPLES if "time_wait" in p.name
                                  or "simultaneous" in p.name or "fins_cross" in p.name],
                         ids=lambda p: p.name)
def test_sample_timestamps_match_tshark(path: Path) -> None:
    """TSval and TSecr of every segment, both readers, against tshark's dissection."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-Y", "tcp", "-T", "fields", "-E", "separator=|",
         "-E", "occurrence=l", "-e", "tcp.options.timestamp.tsval",
         "-e", "tcp.options.timestamp.tsecr"], capture_output=True, text=True, check=True)
    want = [tuple(int(v) if v else -1 for v in line.split("|"))
            for line in out.stdout.splitlines()]
    segments, _, _ = read_both(path)
    assert [(s.tsval, s.tsecr) for s in segments] == want
    assert len(want) == len(segments) > 0


@pytest.mark.parametrize("snaplen", [34, 54, 58, 60, 66, 74, 96, 128, 200])
def test_snap_length_cuts(snaplen: int) -> None:
    """Ethernet frames of every kind cut by the snap length (wire length kept)."""
    packets = []
    for i, (linktype, frame) in enumerate(FRAMED):
        if linktype == 1:
            packets.append((T0 + i, i, frame[:snaplen], len(frame)))
    _, stats = same(pcap_file(packets, 1, snaplen=snaplen))
    assert stats.truncated or snaplen < 54


def test_wire_length_smaller_than_captured() -> None:
    packets = [(T0, i, frame, max(0, len(frame) - i % 7)) for i, (lt, frame)
               in enumerate(FRAMED) if lt == 1]
    packets += [(T0, 1, frame[:50], 45) for lt, frame in FRAMED if lt == 1]
    same(pcap_file(packets))


def test_timestamps_jump_and_start_near_zero() -> None:
    """The numpy record walk keys on ts_sec's high half: jumps across 65536-second
    boundaries, timestamps near 0 (everything looks like a header) and odd fractions."""
    frames = frames_of(1)
    times = [T0, T0 + 70_000, 5, 0, 2**32 - 1, T0 - 70_000, 65_535, 65_536, T0]
    packets = [((times[i % len(times)] + (i // 50) * 65536) % 2**32, (i * 7919) % 1_000_000, f)
               for i, f in enumerate(frames * 8)]
    same(pcap_file(packets))
    same(pcap_file([(0, 0, f) for f in frames * 5], nano=True))
    same(pcap_file([(1, 10**9 + 5, f) for f in frames * 3], endian=">"))


def test_captured_length_over_the_limit() -> None:
    """A record above max(snap length, 256 KiB) is damage, even when its bytes are there."""
    frame = ethernet(PACKETS["v4-ack"])
    giant = ethernet(b"G" * (1 << 18), 0x0806)
    packets = [(T0 + i, i, giant if i == 50 else frame) for i in range(100)]
    for snaplen in (65535, 1 << 19):
        same(pcap_file(packets, snaplen=snaplen), sizes=(1 << 20, 32 << 20))


def test_one_record_larger_than_the_buffer() -> None:
    big = ethernet(tcp_v4(payload=b"B" * 60_000))
    _, stats = same(pcap_of([big, ethernet(PACKETS["v4-ack"]), big, big]), sizes=(SMALL,))
    assert stats.tcp_segments == 4 and stats.bad_checksums == 0


def test_tcp_segments_of_all_lengths() -> None:
    """Checksums on segments ending inside and beyond the bytes the bulk decode copies,
    either parity, with IPv4 options or not, under every link layer."""
    packets: list[tuple[int, bytes]] = []
    for n in range(0, 200):
        payload = bytes((n * 31 + i) & 0xFF for i in range(n))
        packets += [(1, ethernet(tcp_v4(payload=payload, bad_checksum=n % 5 == 0))),
                    (1, ethernet(tcp_v6(payload=payload), 0x86DD)),
                    (1, ethernet(tcp_v4(payload=payload, ip_options=b"\x01" * (4 * (n % 3))),
                                 tags=[0x8100])),
                    (113, linux_sll(tcp_v4(payload=payload, options=b"\x01" * (n % 9)))),
                    (0, bsd_null(tcp_v4(payload=payload), 2))]
    for linktype in (1, 113, 0):
        _, stats = same(pcap_of([p for lt, p in packets if lt == linktype], linktype))
        assert stats.tcp_segments and stats.warnings == []


# --- pcapng -----------------------------------------------------------------------------


def test_pcapng_every_interface_kind_and_block() -> None:
    types = sorted({lt for lt, _ in FRAMED})
    blocks = [shb()]
    resolutions = [None, 9, 3, 0x80 | 20, 0x80 | 40, 12, 0x80 | 5]
    offsets = [T0, -5, None, 7]
    interfaces = [(lt, resolutions[i % 7], offsets[i % 4]) for i, lt in enumerate(types)]
    interfaces += [(1, r, o) for r in resolutions for o in offsets]
    blocks += [idb(lt, tsresol=r, tsoffset=o) for lt, r, o in interfaces]
    for round_ in range(3):
        for i, (lt, _, _) in enumerate(interfaces):
            for j, frame in enumerate(frames_of(lt)[:: 1 if i < len(types) else 5]):
                blocks.append(epb(i, T0 * 100 + round_ * 1000 + j, frame))
            if i % 4 == 0 and i < len(types):
                blocks += [isb(i), block(0x0BAD, b"unknown"), block(4, b"\0" * 4)]
        blocks += [spb(frames_of(1)[0]), packet_block(0, 5, frames_of(1)[1])]
    _, stats = same(b"".join(blocks), "a.pcapng")
    assert stats.warnings and len(stats.link_types) == len(types)


def test_pcapng_sections_interfaces_and_warnings_in_order() -> None:
    v4 = ethernet(PACKETS["v4-ack"])
    data = b"".join([
        shb("<"), idb(1), block(1, b"\0" * 4),  # an IDB too short: warned
        epb(0, 5, v4), epb(3, 6, v4), epb(3, 7, v4),  # interface 3 is missing: warned once
        epb(0, 8, v4), idb(147), epb(1, 9, v4), epb(1, 10, v4),  # unknown link type: warned
        shb(">"), idb(229, tsresol=9, endian=">"), epb(0, 11, PACKETS["v6-ack"], endian=">"),
        epb(1, 12, v4, endian=">"), epb(0, 13, PACKETS["v6-ack"], endian=">"),
        epb(3, 13, v4, endian=">"),  # interface 3 is missing here too: warned again
        shb("<"), idb(1, snaplen=40), spb(v4), spb(v4 + b"xx", wire_len=len(v4) + 9),
        epb(0, 14, v4),
    ])
    _, stats = same(data, "w.pcapng")
    assert len(stats.warnings) == 5


def test_pcapng_long_runs_with_blocks_between() -> None:
    frames = frames_of(1)
    blocks = [shb(), idb(1, tsresol=9), idb(113, tsresol=9)]
    for i in range(600):
        blocks.append(epb(int(i % 3 == 0), T0 * 10**9 + i, frames[i % len(frames)]
                          if i % 3 else linux_sll(PACKETS["v4-ack"])))
        if i % 97 == 0:
            blocks.append(isb(0))
    same(b"".join(blocks), "runs.pcapng")
    big = [shb(), idb(1)] + [epb(0, i, ethernet(tcp_v4(payload=b"p" * (i * 37 % 3000))))
                             for i in range(300)]
    same(b"".join(big), "big.pcapng")


def test_timestamps_beyond_int64() -> None:
    """A pcapng time beyond int64 ns is damage: both readers give the frame the previous
    packet's time, with one warning per file (records.MAX_TS_NS)."""
    arp = ethernet(b"\0" * 28, 0x0806)
    tcp = ethernet(PACKETS["v4-ack"])
    head = shb() + idb(1) + idb(1, tsresol=0x80 | 40) + epb(0, 5, tcp)
    same(head + epb(0, 1 << 60, arp) + epb(1, 1 << 62, arp) + epb(0, 6, tcp), "x.pcapng")
    same(shb() + idb(1) + epb(0, 1 << 60, arp) + epb(0, 6, tcp) * 40 + epb(0, (1 << 64) - 1, arp),
         "z.pcapng")
    same(head + epb(0, 1 << 60, tcp) + epb(0, 6, tcp), "o.pcapng", overflow=True)
    segments, stats = same(head + epb(0, 1 << 60, tcp) + epb(0, (1 << 64) - 1, tcp), "y.pcapng")
    assert [s.ts_ns for s in segments] == [5000, 5000, 5000]
    assert len(stats.warnings) == 1
    assert "(frame 2): time 1152921504606846976000 ns is outside" in stats.warnings[0]


# --- damage -----------------------------------------------------------------------------


def _small_pcap() -> bytes:
    frames = [f for lt, f in FRAMED if lt == 1][:12]
    return pcap_file([(T0 + i, i, f) for i, f in enumerate(frames)])


def _small_pcapng() -> bytes:
    frames = [f for lt, f in FRAMED if lt == 1][:8]
    return b"".join([shb(), idb(1), isb(0)] + [epb(0, i, f) for i, f in enumerate(frames)]
                    + [spb(frames[0]), shb(">"), idb(1, endian=">"),
                       epb(0, 1, frames[1], endian=">")])


@pytest.mark.parametrize("make", [_small_pcap, _small_pcapng])
def test_cut_at_every_byte(make: Callable[[], bytes]) -> None:
    data = make()
    for cut in range(0, len(data) + 1, 1 if len(data) < 4000 else 3):
        path = write(data[:cut])
        try:
            read_both(path, True, SMALL)
        finally:
            path.unlink()


def test_corrupt_headers_and_blocks() -> None:
    frame = ethernet(PACKETS["v4-ack"])
    pcap = pcap_of([frame] * 30)
    record = 16 + len(frame)
    for at, value in [(24 + 5 * record + 8, 10**9), (24 + 7 * record + 8, 1 << 18),
                      (24 + 7 * record + 8, (1 << 18) + 1), (24 + 9 * record, 0xFFFFFFFF),
                      (24 + 3 * record + 4, 10**9 + 1)]:
        data = bytearray(pcap)
        data[at : at + 4] = struct.pack("<I", value)
        same(bytes(data), sizes=(SMALL,))
    huge_snaplen = bytearray(pcap)
    huge_snaplen[16:20] = struct.pack("<I", 0xFFFFFFFF)
    huge_snaplen[24 + 8 : 24 + 12] = struct.pack("<I", 3 << 30)
    same(bytes(huge_snaplen), sizes=(SMALL,))
    head = shb() + idb(1) + epb(0, 1, frame) * 100  # the damage lies in a numpy walk
    good = epb(0, 2, frame)
    room = len(good) - 32  # the most captured bytes the block has room for
    for at, value in [(4, 7), (4, 8), (4, 1 << 27), (4, len(good) + 4), (len(good) - 4, 99),
                      (20, 500), (8, 1), (20, room), (20, room + 1), (20, room + 2),
                      (20, room + 4), (4, len(good) - 4), (4, 28)]:
        bad = bytearray(good)
        bad[at : at + 4] = struct.pack("<I", value)
        same(head + bytes(bad) + good * 50, "c.pcapng", sizes=(SMALL, 1 << 20))
    bad_shb = bytearray(shb())
    bad_shb[8:12] = b"\0\0\0\0"
    same(head + bytes(bad_shb) + good, "s.pcapng")
    same(head + shb(major=2) + good, "v.pcapng")
    same(head + block(0x0A0D0D0A, b"\x4d\x3c\x2b\x1a"), "t.pcapng")
    same(head + block(6, b"\0" * 12) + good, "e.pcapng")
    same(head + block(3, b"") + good, "p.pcapng")
    same(head + block(2, b"\0" * 12) + good, "o.pcapng")


@pytest.mark.parametrize(
    "content",
    [b"", b"\xd4\xc3", b"hello world, I am text\n", b"\xd4\xc3\xb2\xa1\x02\x00",
     gzip.compress(b"", mtime=0), b"\x34\xcd\xb2\xa1" + b"\0" * 20, b"\n\r\r\n\0\0\0\x1c\0\0\0\0",
     b"\n\r\r\n\0\0"],
)
def test_unreadable_inputs_raise_the_same_error(content: bytes) -> None:
    path = write(content)
    try:
        _, stats, batches = read_both(path)
        assert batches == [] and stats == ReadStats()
    finally:
        path.unlink()
    with pytest.raises(CaptureError, match="No such file"):
        read_batches(_TMP / "missing.pcap")
    with pytest.raises(CaptureError, match="Is a directory"):
        read_batches(_TMP)


def test_unusable_sources_raise_the_same_error() -> None:
    path = write(pcap_file([ethernet(PACKETS["v4-ack"])]))
    closed = io.BytesIO(b"abcd")
    closed.close()
    try:
        for source in (lambda: path.open("r"), lambda: closed, lambda: 42):
            read_both(source)
    finally:
        path.unlink()


def test_read_error_right_after_the_header() -> None:
    """A read that fails: the same warning (the plain reader's wording and cause)."""
    path = write(pcap_file([ethernet(PACKETS["v4-ack"])] * 3))

    class Failing(io.FileIO):
        def __init__(self) -> None:
            super().__init__(path)
            self.name = "failing"  # type: ignore[misc]

        def read(self, n: int = -1) -> bytes:
            if self.tell() >= 24:
                raise OSError(5, "Input/output error")
            return super().read(n)

        def readinto(self, buffer: object) -> int:
            raise OSError(5, "Input/output error")

    try:
        _, stats, _ = read_both(Failing)
        assert "read failed" in stats.warnings[0]
    finally:
        path.unlink()


# --- streams and gzip ----------------------------------------------------------------------


class RawPipe(io.RawIOBase):
    """A non-seekable raw stream that hands out at most 7 bytes per read."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        n = min(7, len(buffer), len(self._data) - self._at)
        buffer[:n] = self._data[self._at : self._at + n]
        self._at += n
        return n


def test_streams_and_file_objects() -> None:
    frames = [f for lt, f in FRAMED if lt == 1]
    data = pcap_of(frames)
    ng = b"".join([shb(), idb(1)] + [epb(0, T0 * 10**6 + i, f) for i, f in enumerate(frames)])
    for payload in (data, ng, data[:-5], ng[:-5]):
        read_both(lambda payload=payload: io.BytesIO(payload))
        read_both(lambda payload=payload: RawPipe(payload))
        read_both(lambda payload=payload: io.BufferedReader(RawPipe(payload)))  # type: ignore[arg-type]
    with open(write(data), "rb") as opened:  # a file object of a regular file
        batches = list(read_batches(opened))
        assert not opened.closed
    assert sum(len(b) for b in batches) == sum(1 for _ in read_segments(io.BytesIO(data)))


def test_gzip_whole_cut_and_damaged() -> None:
    """Decompressed through the same reads as the plain reader's, so a damaged gzip stops
    at the same byte (a read that fails loses what it had decompressed)."""
    frames = [f for lt, f in FRAMED if lt == 1]
    data = gzip.compress(pcap_of(frames * 4))
    rnd = random.Random(5)
    noise = [ethernet(tcp_v4(seq=i, payload=rnd.randbytes(rnd.randrange(1400))))
             for i in range(600)]  # many reads of the decompressed stream
    big = gzip.compress(pcap_of(noise), 1)
    cases = [data, data[: len(data) // 2], data[:-3], big]
    for _ in range(12):
        damaged = bytearray(rnd.choice([data, big]))
        damaged[rnd.randrange(20, len(damaged) - 8)] ^= 0xFF
        cases.append(bytes(damaged))
    for case in cases:
        path = write(case, "c.pcap.gz")
        try:
            for size in (SMALL, 32 << 20):
                _, stats, _ = read_both(path, batch_bytes=size)
            read_both(lambda case=case: io.BytesIO(case))
        finally:
            path.unlink()


def test_pipe() -> None:
    read_fd, write_fd = os.pipe()
    data = pcap_file([f for lt, f in FRAMED if lt == 1][:12])  # fits the pipe buffer
    with os.fdopen(write_fd, "wb") as writer:
        writer.write(data)
    with os.fdopen(read_fd, "rb") as reader:
        stats = ReadStats()
        got = [s for b in read_batches(reader, stats) for s in b.segments()]
    assert got == list(read_segments(io.BytesIO(data)))


def test_live_pipe_gets_each_batch_before_the_writer_goes_on() -> None:
    """`tcpdump -w - | tcplife`: what has arrived is yielded before the next read waits."""
    read_fd, write_fd = os.pipe()
    packets = [ethernet(tcp_v4(seq=i)) for i in range(6)]
    data = pcap_of(packets)
    first = 24 + 3 * (16 + len(packets[0]))
    def blocked(signum: int, frame: object) -> None:
        raise TimeoutError("read_batches waited for more input")

    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(20)
    try:
        with os.fdopen(write_fd, "wb", buffering=0) as writer, \
                os.fdopen(read_fd, "rb") as reader:
            writer.write(data[:first])
            batches = read_batches(reader)
            assert next(batches).seq.tolist() == [0, 1, 2]  # blocks if it waits for more
            writer.write(data[first:])
            writer.close()
            assert [s for b in batches for s in b.seq.tolist()] == [3, 4, 5]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_stdin() -> None:
    """``"-"``, redirected from a file (read straight into the buffer) or from a pipe."""
    data = pcap_file([f for lt, f in FRAMED if lt == 1])
    path = write(data)
    code = (
        "from tcplife.capture import ReadStats\n"
        "from tcplife.capture.fastread import read_batches\n"
        "s = ReadStats(); n = sum(len(b) for b in read_batches('-', s, batch_bytes=4096))\n"
        "print(n, s.frames, s.tcp_segments)\n"
    )
    stats = ReadStats()
    want = f"{sum(1 for _ in read_segments(path, stats))} {stats.frames} {stats.tcp_segments}"
    try:
        with path.open("rb") as stdin:
            out = subprocess.run([sys.executable, "-c", code], stdin=stdin, capture_output=True,
                                 text=True, check=True, cwd=REPO).stdout
        assert out.split() == want.split()
        out = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True,
                             check=True, cwd=REPO).stdout.decode()
        assert out.split() == want.split()
    finally:
        path.unlink()


# --- random captures ----------------------------------------------------------------------

LINKTYPES = sorted({lt for lt, _ in FRAMED})


@st.composite
def captures(draw: st.DrawFn) -> tuple[bytes, str]:
    """A pcap or pcapng of random frames, maybe cut, maybe with random bytes changed."""
    rnd = random.Random(draw(st.integers(0, 2**32)))
    count = draw(st.one_of(st.integers(0, 20), st.integers(100, 500)))
    if draw(st.booleans()):
        linktype = draw(st.sampled_from(LINKTYPES))
        pool = frames_of(linktype)
        sec = draw(st.sampled_from([T0, T0, T0, 0, 3, 65_535, 2**32 - 200]))
        packets = []
        for i in range(count):
            frame = rnd.choice(pool)
            wire = len(frame)
            if rnd.random() < 0.2:
                frame = frame[: rnd.randrange(len(frame) + 1)]
            if rnd.random() < 0.1:
                wire = rnd.randrange(2000)
            packets.append(((sec + i // 7 + rnd.choice([0] * 30 + [1, -1, 70_000])) % 2**32,
                            rnd.randrange(1_000_000), frame, wire))
        data = pcap_file(packets, linktype, draw(st.sampled_from("<>")), draw(st.booleans()),
                         snaplen=draw(st.sampled_from([65535, 0, 96])))
        name = "r.pcap"
    else:
        endian = draw(st.sampled_from("<>"))
        types = draw(st.lists(st.sampled_from(LINKTYPES), min_size=1, max_size=3))
        blocks = [shb(endian)] + [idb(lt, tsresol=rnd.choice([None, 9, 0x80 | 10]),
                                      endian=endian) for lt in types]
        for i in range(count):
            which = rnd.randrange(len(types) + 1)
            frame = rnd.choice(frames_of(types[min(which, len(types) - 1)]))
            roll = rnd.random()
            if roll < 0.05:
                blocks.append(isb(0, endian))
            elif roll < 0.08:
                blocks.append(spb(frame, endian=endian))
            elif roll < 0.1:
                blocks.append(idb(rnd.choice(LINKTYPES), endian=endian))
            blocks.append(epb(which, T0 * 1000 + i * rnd.choice([1, 1, 1, 1 << 40]), frame,
                              endian=endian))
        data = b"".join(blocks)
        name = "r.pcapng"
    damaged = bytearray(data)
    for _ in range(draw(st.integers(0, 3))):
        if len(damaged) > 24:
            at = draw(st.integers(24, len(damaged) - 1))
            damaged[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        damaged = damaged[: draw(st.integers(0, len(damaged)))]
    return bytes(damaged), name


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(captures(), st.booleans(), st.sampled_from([SMALL, 1 << 16]))
def test_random_captures(capture: tuple[bytes, str], verify: bool, size: int) -> None:
    data, name = capture
    path = write(data, name)
    try:
        read_both(path, verify, size, overflow=True)
    finally:
        path.unlink()


def test_real_captures_with_random_damage() -> None:
    """Sample and corpus captures with bytes changed and cut at random (seeded)."""
    rnd = random.Random(2024)
    files = SAMPLES + CORPUS
    for _ in range(200):
        data = bytearray(rnd.choice(files).read_bytes())
        for _ in range(rnd.randrange(1, 6)):
            at = rnd.randrange(24, len(data))
            data[at] ^= rnd.randrange(1, 256) if rnd.random() < 0.5 else 1 << rnd.randrange(8)
        if rnd.random() < 0.3:
            data = data[: rnd.randrange(len(data))]
        path = write(bytes(data))
        try:
            read_both(path, rnd.random() < 0.5, rnd.choice([SMALL, 1 << 16]), overflow=True)
        finally:
            path.unlink()


# --- helpers --------------------------------------------------------------------------------


def test_le_sums_against_a_plain_sum() -> None:
    rng = np.random.default_rng(7)
    mat = rng.integers(0, 256, (50, 64), dtype=np.uint8)
    start = rng.integers(0, 30, 50) & ~1
    end = np.minimum(start + rng.integers(1, 31, 50), 60)
    got = fastdecode._le_sums(mat, None, start, end) % 0xFFFF
    for row, (a, b) in enumerate(zip(start.tolist(), end.tolist(), strict=True)):
        data = bytes(mat[row, a:b]) + b"\0" * ((b - a) & 1)
        want = sum(struct.unpack(f"<{len(data) // 2}H", data)) % 0xFFFF
        assert got[row] == want


def test_window_scales_match_the_option_walk() -> None:
    from tcplife.capture.decode import window_scale

    rnd = random.Random(3)
    areas = [WS_LINUX[:k] for k in range(21)] + [WS_OTHER[:k] for k in range(25)] + WS_ODD
    areas += [bytes(rnd.choice([0, 1, 2, 3, 3, 4, 8, 255])
                                                    for _ in range(rnd.randrange(41)))
                                              for _ in range(300)]
    stream = fastbuffer.Stream(lambda n: b"", None, records._Input.__new__(records._Input),
                              1 << 16, 0, b"".join(a.ljust(40, b"\xee") for a in areas))
    start = np.arange(len(areas), dtype=np.int64) * 40
    end = start + np.array([len(a) for a in areas])
    got = fastdecode._window_scales(stream, start, end).tolist()
    assert got == [window_scale(a, 0, len(a)) for a in areas]
