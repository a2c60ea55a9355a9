"""The compiled reader's parts on their own (test_capture_fastread.py compares whole reads):
which implementation `compiled_reader` picks, the C bulk decode frame by frame against
the plain `Decoder`, the pcapng walk's time conversion against records.py's formula, and
the C functions' answers to arguments that lie (out-of-range offsets, wrong types)."""

from __future__ import annotations

import random
import socket
from collections import Counter
from types import ModuleType

import numpy as np
import pytest
from test_capture_fastread import FRAMED

from tcplife.capture import ReadStats, creader, fastwalk
from tcplife.capture.decode import Decoder
from tcplife.capture.fastbuffer import Stream
from tcplife.capture.records import _Input
from tcplife.native import loader

from capture_builders import epb
from needs import missing


@pytest.fixture
def engine() -> ModuleType:
    try:
        return creader.compiled_reader("c")
    except loader.EngineUnavailable:
        missing("the compiled engine (tcplife._engine: a C compiler at install)")


def stream(data: bytes) -> Stream:
    return Stream(lambda n: b"", None, _Input.__new__(_Input), max(len(data), 1), 0, data)


# --- which implementation ----------------------------------------------------------------


def test_the_environment_picks_the_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(creader.CORE_ENV, "python")
    assert creader.compiled_reader() is None
    assert creader.compiled_reader("auto") is creader.compiled_reader("c" if loader.status()
                                                                      .usable else "python")
    monkeypatch.delenv(creader.CORE_ENV)
    if not loader.status().usable:
        assert creader.compiled_reader() is None
        with pytest.raises(loader.EngineUnavailable):
            creader.compiled_reader("c")
    else:
        from tcplife import _engine


        assert creader.compiled_reader() is _engine
        assert creader.compiled_reader("c") is _engine
        monkeypatch.setenv(creader.CORE_ENV, "c")
        assert creader.compiled_reader() is _engine
    assert creader.compiled_reader("python") is None
    with pytest.raises(ValueError, match="unknown core"):
        creader.compiled_reader("fortran")


# --- the bulk decode, frame by frame ----------------------------------------------------------


def _mutated(rnd: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rnd.choice([0, 0, 1, 2, 4])):
        if data:
            data[rnd.randrange(len(data))] = rnd.choice([0, 1, 2, 3, 6, 8, 0x45, 0x60, 0xFF,
                                                          rnd.randrange(256)])
    if rnd.random() < 0.2:
        data = data[: rnd.randrange(len(data) + 1)]
    return bytes(data)


@pytest.mark.parametrize("verify", [True, False])
def test_decode_agrees_with_the_decoder_frame_by_frame(engine: ModuleType, verify: bool) -> None:
    """Every frame the C decode takes gives the `Decoder`'s segment and counts; the ones it
    leaves are the `Decoder`'s (asked about them, it says what the C would not)."""
    rnd = random.Random(21)
    frames = [(lt, _mutated(rnd, f)) for _ in range(6) for lt, f in FRAMED]
    frames += [(rnd.choice([1, 113, 101]), rnd.randbytes(rnd.randrange(80))) for _ in range(300)]
    wires = [len(f) + rnd.choice([0, 0, 0, 5, -3, 1000]) for _, f in frames]
    data = b"".join(f for _, f in frames)
    off = np.cumsum([0] + [len(f) for _, f in frames[:-1]]).astype(np.int64)
    caplen = np.array([len(f) for _, f in frames], np.int64)
    wire = np.array(wires, np.int64)
    linktype = np.array([lt for lt, _ in frames], np.int64)
    numbers = np.arange(1, len(frames) + 1, dtype=np.int64)
    got = creader.decode(engine, stream(data), off, caplen, wire, linktype, numbers,
                         numbers * 1000 - 7, verify)
    left = set(got.left.tolist())
    assert len(left) < len(frames) // 4
    stats = ReadStats()
    decoder = Decoder(stats, "x", verify)
    rows = (got.columns[0] - 1).tolist()
    bad = set(got.bad.tolist())
    v6 = iter(got.v6)
    for row, (lt, frame) in enumerate(frames):
        if row in left:
            continue
        before = stats.bad_checksums
        segment = decoder.decode(row + 1, (row + 1) * 1000 - 7, lt, wires[row], frame)
        if segment is None:
            assert row not in rows
            continue
        at = rows.index(row)
        c = got.columns[:, at].tolist()
        assert (at in bad) == (stats.bad_checksums > before)
        assert segment[:3] == tuple(c[:3])
        if c[2] == 6:
            packed = next(v6)
            assert (segment.src, segment.dst) == (socket.inet_ntop(socket.AF_INET6, packed[:16]),
                                                  socket.inet_ntop(socket.AF_INET6, packed[16:]))
        else:
            assert (segment.src, segment.dst) == tuple(
                ".".join(str(b) for b in k.to_bytes(4, "big")) for k in (c[3], c[5]))
        assert (segment.sport, segment.dport, segment.seq, segment.ack, segment.flags,
                segment.payload_len, segment.window, segment.wscale, segment.tsval,
                segment.tsecr) == tuple(c[4:5] + c[6:])
    assert next(v6, None) is None
    counts = Counter(undecodable=got.undecodable, non_tcp=got.non_tcp, fragments=got.fragments,
                     tcp_segments=got.tcp_segments, truncated=got.truncated,
                     unverified=got.unverified_checksums, bad=got.bad_checksums)
    want = Counter(undecodable=stats.undecodable, non_tcp=stats.non_tcp,
                   fragments=stats.fragments, tcp_segments=stats.tcp_segments,
                   truncated=stats.truncated, unverified=stats.unverified_checksums,
                   bad=stats.bad_checksums)
    assert counts == want
    assert got.tcp_segments > 1000 and got.undecodable and got.bad_checksums == (
        len(got.bad) if verify else 0)


# --- the pcapng walk's times --------------------------------------------------------------------


def test_pcapng_times_are_records_py_formula(engine: ModuleType) -> None:
    """Whatever an interface's resolution and offset, a time the C walk gives is
    ``units * mul // div + offset`` exactly; it takes every one the numpy walk takes."""
    rnd = random.Random(8)
    frame = FRAMED[0][1]
    resolutions = [(10 ** (9 - r), 1) for r in range(10)] + \
        [(1, 10 ** (r - 9)) for r in range(10, 30)] + \
        [(10**9, 1 << r) for r in range(0, 70)]
    for _ in range(3000):
        mul, div = rnd.choice(resolutions)
        offset = rnd.choice([0, 0, rnd.randrange(-10**12, 10**12) * 10**9,
                             rnd.randrange(-2**63, 2**63) * 10**9, rnd.choice([1, -1]) << 61])
        units = rnd.choice([rnd.randrange(2**64), rnd.randrange(2**40), rnd.randrange(2**56),
                            2**64 - 1, 0, rnd.randrange(2**62)])
        data = epb(0, units, frame)
        stop, cols = creader.pcapng_walk(engine, stream(data), 0, False,
                                         creader.interfaces([(1, mul, div, offset, 0)]))
        numpy = fastwalk._timestamps(np.array([units], np.uint64), mul, div, offset)
        if cols.shape[1]:
            assert stop == len(data)
            assert int(cols[3, 0]) == units * mul // div + offset
            assert cols[:, 0].tolist() == [28, len(frame), len(frame), cols[3, 0], 1]
        else:
            assert stop == 0 and numpy is None, (units, mul, div, offset)


# --- arguments that lie ----------------------------------------------------------------------


def test_frames_outside_the_buffer_are_refused(engine: ModuleType) -> None:
    store = np.zeros(100, np.uint8)
    one = np.ones(1, np.int64)
    rest = (one,) * 4
    for off, caplen in [(90, 11), (-1, 5), (0, -1), (101, 0), (2**62, 2**62), (50, 2**63 - 1)]:
        with pytest.raises(ValueError, match="outside the buffer"):
            engine.decode(store, np.array([off]), np.array([caplen]), *rest, True)
    with pytest.raises(ValueError, match="different lengths"):
        engine.decode(store, np.zeros(2, np.int64), one, *rest, True)
    with pytest.raises(ValueError, match="different lengths"):
        engine.decode(store, one, one, one, one, one, np.zeros(2, np.int64), True)
    with pytest.raises(TypeError, match="int64"):
        engine.decode(store, np.zeros(1, np.float64), one, *rest, True)
    with pytest.raises(TypeError, match="int64"):
        engine.decode(store, one, *rest, np.zeros(1, np.int32), True)
    with pytest.raises(TypeError):
        engine.decode(42, one, one, *rest, True)
    with pytest.raises(TypeError):
        engine.decode(store, one, one, *rest)
    with pytest.raises(ValueError, match="contiguous"):
        engine.decode(store, np.zeros(4, np.int64)[::2], *(np.zeros(2, np.int64),) * 5, True)
    assert engine.decode(store, *[np.zeros(0, np.int64)] * 6, True)[0] == 0


def test_walk_windows_outside_the_buffer_are_refused(engine: ModuleType) -> None:
    store = np.zeros(64, np.uint8)
    for pos, n in [(-1, 10), (10, 5), (0, 65)]:
        with pytest.raises(ValueError, match="outside the buffer"):
            engine.pcap_walk(store, pos, n, False, False, 1 << 18)
        with pytest.raises(ValueError, match="outside the buffer"):
            engine.pcapng_walk(store, pos, n, False, np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="4 values per interface"):
        engine.pcapng_walk(store, 0, 64, False, np.zeros(3, np.int64))
    # zeros: a pcap record of 0 bytes at every 16, no pcapng block (type 0)
    assert engine.pcap_walk(store, 0, 64, False, False, 1 << 18)[1:3] == (5, 4)
    assert engine.pcapng_walk(store, 0, 64, False, np.zeros(0, np.int64))[0] == 0
