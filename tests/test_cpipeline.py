"""The compiled pipeline gives exactly `new_tracker`'s events (issue 21).

Each test feeds the same segments to `tcplife.engines.wiring.new_tracker(options)` (the
Python tracker watched by the peers' replays and the default detectors) and to the
engine's pipeline (`tcplife.engines.cpipeline.CPipeline`: the compiled tracker, peers and
detectors wired in C) and wants every event equal, in order (`lockstep` with
``pipeline=True``, which names the first difference): each `ConnectionEnded`'s record with
its `PeerSummary`, each `Anomaly` where the Python puts it (after the events of the call
that produced it; `finish`'s in its lists of 4096). On every sample and corpus capture,
under two option sets, on hypothesis-generated streams, with the clock advanced without
packets, and across `finish`'s lists.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from fuzz.invariants import segments_from
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lockstep import ENGINE, lockstep, lockstep_segments
from test_ctrack import (
    CLOSE_STEP,
    ENDS,
    ROW,
    SHORT,
    _reuse_scenario,
    _timing_conversation,
)
from test_fastpath import ISNS, STEP, _conversation

from tcplife.capture.columns import AddressBook, Batch
from tcplife.capture.fastread import read_batches
from tcplife.core.events import Anomaly, ConnectionEnded, InputEnded
from tcplife.core.options import Options
from tcplife.core.segment import ACK, FIN, SYN, Segment
from tcplife.engines.cpipeline import CPipeline
from tcplife.engines.wiring import new_tracker

from needs import CORPUS_PCAPS, corpus_present, missing, require_corpus


@pytest.fixture(autouse=True)
def _needs_engine() -> None:
    if ENGINE is None:
        missing("the compiled engine (python setup.py build_ext --inplace)")


SAMPLES = Path(__file__).resolve().parents[1] / "sample_pcaps"
SAMPLE_FILES = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".pcap", ".pcapng"))


def _check(diff: object) -> None:
    assert diff is None, str(diff)


def _run_both(segments: list[Segment], options: Options | None = None,
              end_ns: int | None = None) -> tuple[list, list]:
    options = options or Options()
    py = new_tracker(options)
    py_events = [e for s in segments for e in py.feed(s)] + py.finish(end_ns)
    c = CPipeline(options, ENGINE)
    c_events = c.feed_batch(Batch.from_segments(segments, AddressBook())) + c.finish(end_ns)
    return py_events, c_events


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_sample_captures(path: Path) -> None:
    _check(lockstep(read_batches(path), pipeline=True))


@pytest.mark.parametrize("path", SAMPLE_FILES[::3], ids=lambda p: p.name)
def test_sample_captures_short_timeouts_small_batches(path: Path) -> None:
    _check(lockstep(read_batches(path, batch_bytes=4096), SHORT, pipeline=True))


def test_corpus_captures() -> None:
    corpus = require_corpus()
    bad, n = [], 0
    for path in sorted(corpus.iterdir()):
        if path.suffix not in (".pcap", ".pcapng", ".cap", ".gz", ".trace"):
            continue
        n += 1
        for options in (None, SHORT):
            diff = lockstep(read_batches(path), options, pipeline=True)
            if diff is not None:
                bad.append(f"{path.name}: {diff}")
    assert n > 50
    assert not bad, "\n\n".join(bad)


def test_the_comparison_sees_peers_and_anomalies() -> None:
    """Not vacuous: the compiled events carry summaries and verdicts, and a wrong one
    would differ (the Python's with a summary changed is not equal)."""
    segments = [s for b in read_batches(SAMPLES / "listen_no_accept.any.pcap")
                for s in b.segments()]
    py_events, c_events = _run_both(segments)
    assert py_events == c_events
    anomalies = [e for e in c_events if isinstance(e, Anomaly)]
    ended = [e for e in c_events if isinstance(e, ConnectionEnded)]
    assert anomalies and all(e.record.peers is not None for e in ended)
    changed = ended[0]._replace(record=ended[0].record._replace(
        peers=replace(ended[0].record.peers, tcp_stream=99)))
    assert changed != ended[0]


def test_finish_lists_many_open_connections() -> None:
    """More than 4096 events at the end: `finish_chunks`' lists, each judged when made
    (the verdicts of each list after it), then the verdicts across connections. Half the
    connections closed by the client only (FIN_WAIT_2 times out at the end, the server
    lingers in CLOSE_WAIT), half left open."""
    segments: list[Segment] = []
    ts = 1_700_000_000 * 10**9

    def add(dt: int, from_client: bool, port: int, seq: int, ack: int, flags: int) -> None:
        ends = ("10.0.0.1", port, "10.0.0.2", 80) if from_client else \
            ("10.0.0.2", 80, "10.0.0.1", port)
        segments.append(Segment(len(segments) + 1, ts + dt, 4, *ends, seq, ack, flags, 0,
                                65535, 7 if flags & SYN else -1, -1, -1))

    for i in range(3000):
        ts += 1000
        port, c, s = 10000 + i, 1000 + i, 5000
        add(0, True, port, c, 0, SYN)
        add(10, False, port, s, c + 1, SYN | ACK)
        add(20, True, port, c + 1, s + 1, ACK)
        if i % 2:
            add(30, True, port, c + 1, s + 1, FIN | ACK)
            add(40, False, port, s + 1, c + 2, ACK)
    end = ts + 3600 * 10**9
    for options in (Options(), SHORT):
        py_events, c_events = _run_both(segments, options, end)
        tail = py_events[py_events.index(InputEnded(end)):]
        verdicts = sum(isinstance(e, Anomaly) for e in tail)
        assert len(tail) - verdicts > 4096 and verdicts > 1000
        assert py_events == c_events


def test_advance_then_finish() -> None:
    """`advance` (live mode): `ClockAdvanced`, the timers due, and the detectors' verdicts
    on them; then `finish`."""
    segments = _reuse_scenario()
    for options in (Options(), SHORT):
        py, c = new_tracker(options), CPipeline(options, ENGINE)
        py_events = [e for s in segments for e in py.feed(s)]
        assert c.feed_batch(Batch.from_segments(segments, AddressBook())) == py_events
        last = segments[-1].ts_ns
        for now in (last + 10**9, last + 100 * 10**9, last + 10**12):
            assert c.advance(now) == py.advance(now)
        assert c.finish(last + 2 * 10**12) == py.finish(last + 2 * 10**12)


def test_port_reuse_scenario() -> None:
    segments = _reuse_scenario()
    for options in (None, SHORT):
        for chunk in (0, 1):
            _check(lockstep_segments(segments, options, chunk=chunk, pipeline=True))


def test_a_watched_tracker_is_refused() -> None:
    tracker = ENGINE.Tracker(tuple(getattr(Options(), n) for n in Options.names()))
    values = tuple(getattr(Options(), n) for n in Options.names())
    kept = ENGINE.Pipeline(tracker, values)
    with pytest.raises(ValueError, match="fresh"):
        ENGINE.Pipeline(tracker, values)
    del kept
    ENGINE.Pipeline(tracker, values)  # unwatched again


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(min_size=8, max_size=1200), st.sampled_from([0, 1, 7]), st.booleans())
def test_fuzz_segment_streams(data: bytes, chunk: int, short: bool) -> None:
    segments = segments_from(data)
    _check(lockstep_segments(segments, SHORT if short else None, chunk=chunk, pipeline=True))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(STEP, min_size=1, max_size=40), ISNS, ISNS, st.booleans(), st.booleans())
def test_fast_path_conversations(steps: list[tuple[str, str, int]], c_isn: int, s_isn: int,
                                 timestamps: bool, short: bool) -> None:
    segments = _conversation(steps, c_isn, s_isn, timestamps)
    _check(lockstep_segments(segments, SHORT if short else None, chunk=5, pipeline=True))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(CLOSE_STEP, min_size=1, max_size=30),
       st.sampled_from([10_000, 200_000, 700_000, 3_000_000]), st.booleans(), st.booleans())
def test_timing_conversations(steps: list, rtt: int, timestamps: bool, short: bool) -> None:
    segments = _timing_conversation(steps, rtt, timestamps)
    _check(lockstep_segments(segments, SHORT if short else None, pipeline=True))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(ROW, min_size=1, max_size=60),
       st.sampled_from([0, 1_700_000_000 * 10**9, (1 << 62) - 10**12]), st.booleans())
def test_arbitrary_rows_within_bounds(rows: list, start: int, short: bool) -> None:
    ts, segments = start, []
    for i, (pair, gap, seq, ack, flags, plen, window, wscale, tsval, tsecr) in enumerate(rows):
        ts = min(max(ts + gap, 0), (1 << 62) - 1)
        src, sport, dst, dport = ENDS[pair]
        segments.append(Segment(i + 1, ts, 6 if ":" in src else 4, src, sport, dst, dport, seq,
                                ack, flags, plen, window, wscale, tsval, tsecr))
    _check(lockstep_segments(segments, SHORT if short else None, chunk=7, pipeline=True))


# ---------------------------------------------------------------------- whole analyses
def _jsonl(command: str, path: Path, core: str) -> str:
    from click.testing import CliRunner

    from tcplife.cli.main import main

    r = CliRunner().invoke(main, [command, str(path), "--format", "jsonl", "--core", core])
    assert r.exit_code == 0, r.output
    return r.stdout


def _all_captures() -> list[Path]:
    files = list(SAMPLE_FILES)
    if not corpus_present():  # the samples still count
        return files
    return files + sorted(p for p in CORPUS_PCAPS.iterdir()
                          if p.suffix in (".pcap", ".pcapng", ".cap", ".gz", ".trace"))


def test_core_c_runs_the_compiled_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    """--core c goes through `CPipeline` (and python does not): the comparison below
    compares two implementations."""
    from tcplife.engines import cpipeline

    fed: list[int] = []
    real = cpipeline.CPipeline.feed_batch

    def counting(self: CPipeline, batch: Batch) -> list:
        fed.append(len(batch))
        return real(self, batch)

    monkeypatch.setattr(cpipeline.CPipeline, "feed_batch", counting)
    path = SAMPLES / "many_short.client.pcap"
    _jsonl("analyze", path, "python")
    assert not fed
    _jsonl("analyze", path, "c")
    assert sum(fed) == 240


def test_jsonl_identical_between_cores() -> None:
    """`analyze`, `timeline` and `anomalies` as JSON lines: the same bytes from the Python
    core and the compiled one, on every sample and corpus capture."""
    bad = []
    for path in _all_captures():
        for command in ("analyze", "timeline", "anomalies"):
            if _jsonl(command, path, "python") != _jsonl(command, path, "c"):
                bad.append(f"{path.name} {command}")
    assert not bad, bad


def test_batches_of_several_address_books() -> None:
    """Several captures merged: each read numbers its IPv6 addresses in its own book; the
    pipeline keys them in one (the same address, the same flow)."""
    def seg(frame: int, ts: int, src: str, sport: int, dst: str, dport: int, seq: int,
            ack: int, flags: int) -> Segment:
        return Segment(frame, ts, 6 if ":" in src else 4, src, sport, dst, dport, seq, ack,
                       flags, 0, 65535, -1, -1, -1)

    a, b, c = "2001:db8::1", "2001:db8::2", "10.0.0.9"
    t0 = 1_700_000_000 * 10**9
    first = [seg(1, t0, a, 40000, b, 80, 100, 0, SYN),
             seg(2, t0 + 10, b, 80, a, 40000, 500, 101, SYN | ACK)]
    second = [seg(3, t0 + 20, c, 5000, b, 443, 7, 0, SYN),  # b first in this book
              seg(4, t0 + 30, a, 40000, b, 80, 101, 501, ACK),
              seg(5, t0 + 40, a, 40000, b, 80, 101, 501, FIN | ACK)]
    py = new_tracker(Options())
    py_events = [e for s in first + second for e in py.feed(s)] + py.finish()
    pipeline = CPipeline(Options(), ENGINE)
    c_events = (pipeline.feed_batch(Batch.from_segments(first, AddressBook()))
                + pipeline.feed_batch(Batch.from_segments(second, AddressBook()))
                + pipeline.finish())
    assert c_events == py_events
    assert sum(isinstance(e, ConnectionEnded) for e in c_events) == 2


def test_several_captures_jsonl_identical_between_cores() -> None:
    from click.testing import CliRunner

    from tcplife.cli.main import main

    paths = [str(SAMPLES / n) for n in ("ipv6.server.pcap", "many_short.client.pcap",
                                        "ipv6.any.pcap", "refused.client.pcap")]
    for command in ("analyze", "timeline", "anomalies"):
        out = [CliRunner().invoke(main, [command, *paths, "--format", "jsonl", "--core", core])
               for core in ("python", "c")]
        assert out[0].exit_code == out[1].exit_code == 0
        assert out[0].stdout == out[1].stdout


def test_auto_keeps_python_for_other_detectors(monkeypatch: pytest.MonkeyPatch) -> None:
    """"auto" runs the compiled pipeline only with the default detectors as they are:
    one added, or a method patched, keeps the Python core (whose detectors those are)."""
    import tcplife.detect
    from tcplife.engines.cpipeline import runs_as_python

    assert runs_as_python(Options(), ENGINE)
    real = tcplife.detect.LingeringCloseWait.on_connection

    def patched(self, v):  # type: ignore[no-untyped-def]
        yield from real(self, v)

    with monkeypatch.context() as m:
        m.setattr(tcplife.detect.LingeringCloseWait, "on_connection", patched)
        assert not runs_as_python(Options(), ENGINE)
    defaults = tcplife.detect.default_detectors
    with monkeypatch.context() as m:
        m.setattr(tcplife.detect, "default_detectors", lambda o: defaults(o)[:-1])
        assert not runs_as_python(Options(), ENGINE)
    assert runs_as_python(Options(), ENGINE)


def test_auto_falls_back_where_the_engine_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value the engine refuses: "c" raises; "auto" reads the capture again with the
    Python core (a path: it can), with the same tables as "python"."""
    from tcplife.engines import analysis, cpipeline

    def refusing(self: CPipeline, batch: Batch) -> list:
        raise ValueError("row 0 (frame 1): refused for the test")

    monkeypatch.setattr(cpipeline.CPipeline, "feed_batch", refusing)
    path = SAMPLES / "many_short.client.pcap"
    with pytest.raises(ValueError, match="refused for the test"):
        analysis.analyze(path, core="c")
    got = analysis.analyze(path, core="auto")
    want = analysis.analyze(path, core="python")
    import pandas as pd

    for table in ("connections", "transitions", "anomalies", "oddities"):
        pd.testing.assert_frame_equal(getattr(got, table), getattr(want, table))
    assert len(want.connections) == 24
