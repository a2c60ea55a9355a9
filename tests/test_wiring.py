"""The one wiring module (`tcplife.engines.wiring`): a `Pipeline` fed by hand gives the
tables `analyze` gives; the tracker's end of input is an event (`InputEnded`, the first of
`Tracker.finish`), and the detectors learn the capture's end from the events they are fed
(`InputEnded`, `ClockAdvanced`), never from outside.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from probe import loaded_after

import tcplife
from tcplife.capture import ReadStats, read_segments
from tcplife.core.events import (
    Anomaly,
    ClockAdvanced,
    ConnectionEnded,
    Event,
    InputEnded,
)
from tcplife.core.options import NS, Options
from tcplife.detect import ConnView, DetectorSet, PerConnection
from tcplife.engines.wiring import Pipeline, new_tracker
from tcplife.output import frames
from tcplife.output.collect import Collector

from builder import FIN, Conv

REPO = Path(__file__).resolve().parents[1]
_HEAVY = ("numpy", "pandas", "rich", "click", "dpkt", "pyarrow")
SAMPLES = REPO / "sample_pcaps"
#: captures with time-wait pile-ups, resets, lingering CLOSE_WAITs and open connections
CAPTURES = ["clean_traffic.server.pcap", "server_never_closes.server.pcap",
            "close_unread_data.client.pcap", "listen_no_accept.any.pcap",
            "many_short.client.pcap"]


def _by_hand(path: Path, options: Options) -> Collector:
    """Segments -> tracker -> pipeline -> collector, written out as an embedder would."""
    stats, collector = ReadStats(), Collector()
    tracker, pipeline = new_tracker(options), Pipeline(options, collector.add)
    for seg in read_segments(path, stats):
        pipeline(tracker.feed(seg))
    pipeline.finish(tracker.finish_chunks(end_ns=stats.last_ts_ns))
    return collector


@pytest.mark.parametrize("name", CAPTURES)
def test_a_pipeline_fed_by_hand_gives_the_tables_of_analyze(name: str) -> None:
    path = SAMPLES / name
    options = Options(close_wait_linger=2, time_wait_threshold=3)
    want = tcplife.analyze(path, options=options, fast=False)
    got = _by_hand(path, options)
    assert len(want.anomalies)  # the comparison covers verdicts, not only empty tables
    for table, make in (("connections", frames.connections_frame),
                        ("transitions", frames.transitions_frame),
                        ("anomalies", frames.anomalies_frame),
                        ("oddities", frames.oddities_frame)):
        pd.testing.assert_frame_equal(make(got), getattr(want, table), obj=table)


def _never_closes() -> Conv:
    """The server acknowledges the client's FIN and never closes (CLOSE_WAIT)."""
    conv = Conv()
    conv.handshake()
    conv.c(0, 100)
    conv.s(0, 200)
    conv.c(FIN)
    conv.s(0)
    return conv


def test_input_ended_is_the_first_event_of_finish_with_its_end() -> None:
    conv = _never_closes()
    last = conv.segments[-1].ts_ns
    for end_ns, want in ((last + 30 * NS, last + 30 * NS), (None, last)):
        tracker = new_tracker()
        for seg in conv.segments:
            assert not any(isinstance(e, InputEnded) for e in tracker.feed(seg))
        events = tracker.finish(end_ns=end_ns)
        assert events[0] == InputEnded(want)
        assert sum(isinstance(e, InputEnded) for e in events) == 1
        assert any(isinstance(e, ConnectionEnded) and e.at_end for e in events)
    tracker = new_tracker()
    chunks = list(tracker.finish_chunks(end_ns=5))
    assert chunks[0][0] == InputEnded(5)  # no input at all: the end still says so


def _lingering(end_ns: int | None) -> list[Anomaly]:
    conv = _never_closes()
    options = Options(close_wait_linger=20)
    tracker, collector = new_tracker(options), Collector()
    pipeline = Pipeline(options, collector.add)
    for seg in conv.segments:
        pipeline(tracker.feed(seg))
    pipeline.finish(tracker.finish_chunks(end_ns=end_ns))
    return [a for a in collector.anomalies if a.kind == "lingering_close_wait"]


def test_the_detectors_learn_the_end_from_input_ended() -> None:
    """The capture's last frame (of any kind) 30 s after the server's last packet: the
    CLOSE_WAIT lasted to that end (over the 20 s threshold), which only `InputEnded`
    tells the detectors; ended at the last segment, it lasted under a second."""
    last = _never_closes().segments[-1].ts_ns
    assert _lingering(None) == []
    found = _lingering(last + 30 * NS)
    assert [a.side for a in found] == ["server"]
    assert "CLOSE_WAIT for 30 s" in found[0].detail


class _Spy(PerConnection):
    """Records the capture end each connection is judged at."""

    def __init__(self) -> None:
        self.ends: list[int] = []

    def on_connection(self, view: ConnView) -> list[Anomaly]:
        self.ends.append(view.capture_end_ns)
        return []


def test_clock_events_raise_the_capture_end_and_never_lower_it() -> None:
    conv = _never_closes()
    tracker = new_tracker()
    events: list[Event] = [e for seg in conv.segments for e in tracker.feed(seg)]
    (ended,) = [e for e in tracker.finish() if isinstance(e, ConnectionEnded)]
    last = conv.segments[-1].ts_ns
    spy = _Spy()
    detectors = DetectorSet(Options(), [spy])
    pipeline = Pipeline(Options(), detectors=detectors)
    pipeline(events)
    assert detectors.capture_end_ns == last and not detectors.input_ended
    pipeline([ClockAdvanced(last + 5 * NS), ClockAdvanced(last + NS)])
    assert detectors.capture_end_ns == last + 5 * NS and not detectors.input_ended
    pipeline([InputEnded(last + 2 * NS), ended])
    assert detectors.input_ended and spy.ends == [last + 5 * NS]
    # settled at the end it was judged at: the server still in CLOSE_WAIT
    assert ended.record.server_state.value == "CLOSE_WAIT"


def test_the_pipeline_hands_events_then_verdicts_and_the_end_to_emit() -> None:
    conv = _never_closes()
    options = Options(close_wait_linger=1)
    tracker, seen = new_tracker(options), []
    pipeline = Pipeline(options, seen.append)
    for seg in conv.segments:
        pipeline(tracker.feed(seg))
    final = tracker.finish(end_ns=conv.segments[-1].ts_ns + 10 * NS)
    out = pipeline(final)
    assert out[:len(final)] == final and seen[-1] is out
    assert [a.kind for a in out[len(final):]] == ["lingering_close_wait"]
    assert pipeline.end() == seen[-1] == []  # no pile-up of TIME_WAITs


def test_the_wiring_and_the_live_engine_load_no_numpy_on_import() -> None:
    assert loaded_after("import tcplife.engines.wiring", _HEAVY) == []
    assert loaded_after("import tcplife.engines.live", _HEAVY) == []
    # the probe sees numpy where it is loaded: the default detectors need it
    assert loaded_after("import tcplife.engines.wiring as w; from tcplife.core.options "
                        "import Options; w.Pipeline(Options())", _HEAVY) == ["numpy"]
