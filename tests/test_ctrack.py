"""The compiled tracker gives exactly the Python tracker's events (issue 21).

Each test feeds the same segments to `tcplife.core.tracker.Tracker` (no observer) and to
the engine's (`tcplife.engines.ctrack.CTracker`) and wants every event equal, in order
(`lockstep`, which names the first difference): on every sample capture, every corpus
capture, hypothesis-generated segment streams (the fuzz generator's and the fast path's
conversations), with other options, across batch boundaries, with the clock advanced
without packets; and the options converted to ns as `Options` does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fuzz.invariants import segments_from
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lockstep import ENGINE, lockstep, lockstep_segments
from test_fastpath import ISNS, STEP, _conversation

from tcplife.capture.columns import AddressBook, Batch
from tcplife.capture.fastread import read_batches
from tcplife.core.options import Options
from tcplife.core.tracker import Tracker
from tcplife.engines.ctrack import CTracker, option_values

from builder import Conv, Host
from needs import missing, require_corpus


@pytest.fixture(autouse=True)
def _needs_engine() -> None:
    if ENGINE is None:
        missing("the compiled engine (python setup.py build_ext --inplace)")


def compiled(options: Options | None = None) -> CTracker:
    """A compiled tracker (with the engine module lockstep imported)."""
    return CTracker(options, ENGINE)


SAMPLES = Path(__file__).resolve().parents[1] / "sample_pcaps"
SAMPLE_FILES = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".pcap", ".pcapng"))
#: options far from the defaults: timers fire within the captures
SHORT = Options(time_wait=0.5, fin_wait_2=0.25, syn_sent=1.5, syn_received=0.75,
                retransmit=0.3, closed_linger=0.0)


def _check(diff: object) -> None:
    assert diff is None, str(diff)


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_sample_captures(path: Path) -> None:
    _check(lockstep(read_batches(path)))


@pytest.mark.parametrize("path", SAMPLE_FILES[::3], ids=lambda p: p.name)
def test_sample_captures_short_timeouts_small_batches(path: Path) -> None:
    _check(lockstep(read_batches(path, batch_bytes=4096), SHORT))


def test_corpus_captures() -> None:
    corpus = require_corpus()
    bad = []
    for path in sorted(corpus.iterdir()):
        if path.suffix not in (".pcap", ".pcapng", ".cap", ".gz", ".trace"):
            continue
        for options in (None, SHORT):
            diff = lockstep(read_batches(path), options)
            if diff is not None:
                bad.append(f"{path.name}: {diff}")
    assert not bad, "\n\n".join(bad)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(min_size=8, max_size=1200), st.sampled_from([0, 1, 7]), st.booleans())
def test_fuzz_segment_streams(data: bytes, chunk: int, short: bool) -> None:
    segments = segments_from(data)
    _check(lockstep_segments(segments, SHORT if short else None, chunk=chunk))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(STEP, min_size=1, max_size=40), ISNS, ISNS, st.booleans(), st.booleans())
def test_fast_path_conversations(steps: list[tuple[str, str, int]], c_isn: int, s_isn: int,
                                 timestamps: bool, short: bool) -> None:
    segments = _conversation(steps, c_isn, s_isn, timestamps)
    _check(lockstep_segments(segments, SHORT if short else None, chunk=5))


def _reuse_scenario() -> list:
    """Port reuse: a connection closes, its client reuses the 4-tuple while the server
    is in TIME_WAIT, then again while it is open; a refused SYN; a mid-stream flow."""
    from tcplife.core.segment import ACK, FIN, RST, SYN

    cv = Conv(client=Host("10.0.0.1", 40000, 1000), server=Host("10.0.0.2", 80, 5000),
              timestamps=True)
    cv.handshake()
    cv.c(ACK, 100)
    cv.s(ACK)
    cv.s(FIN | ACK)
    cv.c(ACK)
    cv.c(FIN | ACK)
    cv.s(ACK)
    cv.client.isn = cv.client.snd_nxt = 900_000
    cv.c(SYN, ack=0)
    cv.s(SYN | ACK)
    cv.c(ACK)
    cv.c(ACK, 50)
    cv.client.isn = cv.client.snd_nxt = 1_900_000
    cv.c(SYN, ack=0)
    cv.s(ACK)
    cv.c(RST)
    cv.c(SYN, ack=0)
    cv.s(RST | ACK)
    cv.wait(200)
    cv.c(ACK, 10)
    return cv.segments


def test_port_reuse_scenario() -> None:
    segments = _reuse_scenario()
    for options in (None, SHORT):
        for chunk in (0, 1):
            _check(lockstep_segments(segments, options, chunk=chunk))


def test_advance_and_finish_at() -> None:
    """`advance` (live mode) fires the timers due by then after a `ClockAdvanced`;
    `finish(end_ns)` starts with `InputEnded(end_ns)`."""
    segments = _reuse_scenario()
    book = AddressBook()
    batch = Batch.from_segments(segments, book)
    for options in (Options(), SHORT):
        py, c = Tracker(options), compiled(options)
        py_events = [e for s in segments for e in py.feed(s)]
        assert c.feed_batch(batch) == py_events
        last = segments[-1].ts_ns
        for step in (10**8, 10**9, 10**11):
            assert c.advance(last + step) == py.advance(last + step)
        assert c.finish(last + 5) == py.finish(last + 5)


@pytest.mark.parametrize("seconds", [0, 0.1, 1e-9, 2.5e-9, 3.5e-9, 0.0000000005,
                                     0.0000000015, 924.6, 60, 1234567.891234567, 10**6])
def test_options_in_ns_as_options_rounds_them(seconds: float) -> None:
    options = Options(time_wait=seconds, retransmit=seconds, closed_linger=seconds)
    held = compiled(options).engine.options_ns()
    for i, name in enumerate(Options.names()):
        if name in ("time_wait", "retransmit", "closed_linger"):
            assert held[i] == options.ns(name), name


def test_options_the_tracker_cannot_hold_are_refused() -> None:
    with pytest.raises(ValueError):
        compiled(Options(time_wait=1e12))
    with pytest.raises(ValueError):
        ENGINE.Tracker((float("nan"),) + option_values(Options())[1:])
    with pytest.raises(ValueError):
        ENGINE.Tracker(option_values(Options())[:-1])


def test_a_row_out_of_bounds_is_refused() -> None:
    """A batch whose first row is out of bounds changes nothing; a row out of bounds
    after others were fed stops the tracker (`refused`): the caller falls back."""
    segments = _reuse_scenario()
    book = AddressBook()
    batch = Batch.from_segments(segments, book)
    c = compiled()
    bad = Batch.from_segments(segments, book)
    bad.seq = bad.seq.copy()
    bad.seq[0] = 1 << 40
    with pytest.raises(ValueError, match="row 0"):
        c.feed_batch(bad)
    assert c.engine.pending == 0 and c.engine.open_count() == 0
    assert c.refused is None
    py = Tracker()
    assert c.feed_batch(batch) == [e for s in segments for e in py.feed(s)]
    with pytest.raises(TypeError):
        c.engine.feed(*(getattr(batch, col).astype(np.int32) for col in Batch.COLUMNS))
    c = compiled()
    bad.seq[0] = segments[0].seq
    bad.ts_ns = bad.ts_ns.copy()
    bad.ts_ns[3] = -1
    with pytest.raises(ValueError, match="row 3"):
        c.feed_batch(bad)
    assert c.refused is not None and "frame 4" in c.refused
    with pytest.raises(RuntimeError, match="stopped"):
        c.feed_batch(batch)


#: test modules whose scenarios are written with tests/builder.py's `run`
SCENARIO_MODULES = ("test_tracker", "test_detect", "test_zeek", "test_suricata")


@pytest.mark.parametrize("module", SCENARIO_MODULES)
def test_builder_scenarios(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every scenario the tracker's and the detectors' tests build with `builder.run`
    (their argument-free tests: each run's segments and options), in lockstep."""
    import contextlib
    import importlib
    import inspect

    mod = importlib.import_module(module)
    original = mod.run
    seen: list[int] = []
    bad: list[str] = []

    def checked(segments: list, **opts: float) -> object:
        seen.append(len(segments))
        diff = lockstep_segments(segments, Options(**opts),
                                 end_ns=segments[-1].ts_ns if segments else None)
        if diff is not None:
            bad.append(f"{module}.{name}: {diff}")
        return original(segments, **opts)

    monkeypatch.setattr(mod, "run", checked)
    for name, fn in sorted(vars(mod).items()):
        if name.startswith("test_") and callable(fn) \
                and not inspect.signature(fn).parameters:
            with contextlib.suppress(Exception):  # the scenario's own checks are not ours
                fn()
    assert seen, f"no scenario of {module} ran"
    assert not bad, "\n\n".join(bad)


#: gaps between segments around the rules' thresholds: a captured duplicate (100 us),
#: the crossing window (1 ms + 1.5 RTT), the minimum RTO (200 ms), a second
#: (1 ms + 1.5 x the RTTs below), in integer ns (the builder's float seconds cannot hit them)
GAPS = st.sampled_from([0, 50_000, 100_000, 100_001, 900_000, 1_000_000, 1_000_001,
                        1_300_000, 1_300_001, 2_050_000, 2_050_001, 3_100_000, 199_999_999,
                        200_000_000, 200_000_001, 1_000_000_000, 1_200_000_000])
CLOSE_STEP = st.tuples(
    st.sampled_from("cs"),
    st.sampled_from(["data", "data1", "data2", "keep", "keep1", "keep2", "fin", "fin_again",
                     "ack", "ack_old", "rtx", "dup", "rst", "rst_ack", "synack_again",
                     "zero"]),
    GAPS, st.sampled_from([None, None, None, "after", "before", "unseen"]))


def _timing_conversation(steps: list, rtt: int, timestamps: bool) -> list:
    """The steps' segments, each `gap` ns after the one before (exactly: retimed)."""
    from tcplife.core.segment import ACK, SYN

    cv = Conv(client=Host("10.0.0.1", 40000, 1000), server=Host("10.0.0.2", 80, 7000),
              timestamps=timestamps)
    cv.c(SYN, ack=0)
    cv.s(SYN | ACK, dt=rtt / 1e9)
    cv.c(ACK, dt=rtt / 1e9)
    gaps = [0, rtt, rtt]  # before each captured segment
    pending = 0
    last: dict[str, object] = {}
    for who, kind, gap, lost in steps:
        pending += gap
        n = len(cv.segments)
        _timing_step(cv, last, who, kind, gap / 1e9, lost)
        if len(cv.segments) > n:
            gaps.append(pending)
            pending = 0
    ts = 1_700_000_000_000_000_000
    out = []
    for seg, gap in zip(cv.segments, gaps, strict=True):
        ts += gap
        out.append(seg._replace(ts_ns=ts))
    return out


def _timing_step(cv: Conv, last: dict, who: str, kind: str, dt: float, lost: str | None) -> None:
    from tcplife.core.segment import ACK, FIN, RST, SYN

    src = cv.client if who == "c" else cv.server
    nxt = src.snd_nxt
    if kind == "dup" and who in last:
        prev = last[who]
        cv.frame += 1
        cv.t += dt
        cv.segments.append(prev._replace(frame=cv.frame))
        return
    kw: dict = {"dt": dt, "lost": lost}
    if kind.startswith("data") or kind == "dup":
        seg = cv.send(who, ACK, {"data": 100, "data1": 1, "data2": 2}.get(kind, 100), **kw)
    elif kind.startswith("keep"):
        seg = cv.send(who, ACK, {"keep": 0, "keep1": 1, "keep2": 2}[kind],
                      seq=(nxt - 1) & 0xFFFFFFFF, **kw)
    elif kind == "fin":
        seg = cv.send(who, FIN | ACK, **kw)
    elif kind == "fin_again":  # the side's FIN sent again, or a first one
        seg = cv.send(who, FIN | ACK, seq=(nxt - 1) & 0xFFFFFFFF, **kw)
    elif kind == "ack_old":
        seg = cv.send(who, ACK, ack=(cv.server if who == "c" else cv.client).isn + 1, **kw)
    elif kind == "rtx":
        seg = cv.send(who, ACK, 100, seq=(nxt - 100) & 0xFFFFFFFF, **kw)
    elif kind == "rst":
        seg = cv.send(who, RST, **kw)
    elif kind == "rst_ack":
        seg = cv.send(who, RST | ACK, **kw)
    elif kind == "synack_again":
        seg = cv.send(who, SYN | ACK, seq=src.isn, **kw)
    elif kind == "zero":
        seg = cv.send(who, ACK, window=0, **kw)
    else:
        seg = cv.send(who, ACK, **kw)
    if seg is not None:
        last[who] = seg


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(CLOSE_STEP, min_size=1, max_size=30),
       st.sampled_from([10_000, 200_000, 700_000, 3_000_000]), st.booleans(), st.booleans())
def test_timing_conversations(steps: list, rtt: int, timestamps: bool, short: bool) -> None:
    """Closes, resets, duplicates, keep-alives and retransmissions spaced around the
    rules' thresholds, some lost before or after the capture point."""
    segments = _timing_conversation(steps, rtt, timestamps)
    _check(lockstep_segments(segments, SHORT if short else None, chunk=3))


U32 = st.one_of(st.sampled_from([0, 1, 999, 1000, 1001, (1 << 31) - 1, 1 << 31,
                                 (1 << 32) - 1]), st.integers(0, (1 << 32) - 1))
ROW = st.tuples(
    st.integers(0, 3),  # (src, dst) pair
    st.sampled_from([0, 1, 50, 99_999, 100_000, 1_000_000, 2 * 10**8, 10**9, 61 * 10**9,
                     -5 * 10**9]),  # gap before it
    U32, U32, st.integers(0, 255), st.sampled_from([0, 0, 1, 2, 100, (1 << 32) - 1]),
    st.sampled_from([0, 1, 65535]), st.sampled_from([-1, 0, 14, 255]),
    st.one_of(st.just(-1), U32), st.one_of(st.just(-1), U32))
ENDS = [("10.0.0.1", 40000, "10.0.0.2", 80), ("10.0.0.2", 80, "10.0.0.1", 40000),
        ("10.0.0.1", 40000, "10.0.0.1", 40000), ("fd00::1", 443, "fd00::2", 1)]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(ROW, min_size=1, max_size=60),
       st.sampled_from([0, 1_700_000_000 * 10**9, (1 << 62) - 10**12]), st.booleans())
def test_arbitrary_rows_within_bounds(rows: list, start: int, short: bool) -> None:
    """Any value the compiled tracker accepts, extreme ones too (sequence numbers at the
    wrap, 4 GiB payloads, times at 0 and near 2**62, stepping back, a self-connection)."""
    from tcplife.core.segment import Segment

    ts, segments = start, []
    for i, (pair, gap, seq, ack, flags, plen, window, wscale, tsval, tsecr) in enumerate(rows):
        ts = min(max(ts + gap, 0), (1 << 62) - 1)
        src, sport, dst, dport = ENDS[pair]
        segments.append(Segment(i + 1, ts, 6 if ":" in src else 4, src, sport, dst, dport, seq,
                                ack, flags, plen, window, wscale, tsval, tsecr))
    _check(lockstep_segments(segments, SHORT if short else None, chunk=4))
