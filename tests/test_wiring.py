"""The one wiring module (`tcplife.engines.wiring`): a tracker fed by hand gives the tables
`analyze` gives, its detectors watching it through the observer hook (`Observer.events`,
`Observer.ended`) as the peers' replays do; the tracker's end of input is an event
(`InputEnded`, the first of `Tracker.finish`), and the detectors learn the capture's end
from the events they are fed (`InputEnded`, `ClockAdvanced`), never from outside.
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
from tcplife.core.observe import Observer, Observers, overrides
from tcplife.core.options import NS, Options
from tcplife.detect import ConnView, DetectorSet, PerConnection
from tcplife.engines.wiring import new_tracker, run
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
    """Segments -> tracker (detectors watching) -> collector, written out as an embedder
    would."""
    stats, collector = ReadStats(), Collector()
    tracker = new_tracker(options)
    for seg in read_segments(path, stats):
        collector.add(tracker.feed(seg))
    for events in tracker.finish_chunks(end_ns=stats.last_ts_ns):
        collector.add(events)
    return collector


@pytest.mark.parametrize("name", CAPTURES)
def test_a_tracker_fed_by_hand_gives_the_tables_of_analyze(name: str) -> None:
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
    collector = Collector()
    run(new_tracker(options), conv.segments, collector.add, end_ns=end_ns)
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
    tracker = new_tracker(judge=False)
    events: list[Event] = [e for seg in conv.segments for e in tracker.feed(seg)]
    (ended,) = [e for e in tracker.finish() if isinstance(e, ConnectionEnded)]
    last = conv.segments[-1].ts_ns
    spy = _Spy()
    detectors = DetectorSet(Options(), [spy])
    assert detectors.events(events) == []
    assert detectors.capture_end_ns == last and not detectors.input_ended
    detectors.events([ClockAdvanced(last + 5 * NS), ClockAdvanced(last + NS)])
    assert detectors.capture_end_ns == last + 5 * NS and not detectors.input_ended
    final = [InputEnded(last + 2 * NS), ended]
    detectors.events(final)
    ended = final[1]  # settled in the list it was handed
    assert detectors.input_ended and spy.ends == [last + 5 * NS]
    # settled at the end it was judged at: the server still in CLOSE_WAIT
    assert ended.record.server_state.value == "CLOSE_WAIT"


def test_the_verdicts_come_last_in_the_call_that_ended_the_connection() -> None:
    conv = _never_closes()
    options = Options(close_wait_linger=1)
    tracker, plain = new_tracker(options), new_tracker(options, judge=False)
    for seg in conv.segments:
        judged, bare = tracker.feed(seg), plain.feed(seg)
        assert judged == bare  # nothing ends before the end: no verdict
    end_ns = conv.segments[-1].ts_ns + 10 * NS
    judged, bare = tracker.finish(end_ns=end_ns), plain.finish(end_ns=end_ns)
    n = len(bare)
    assert not any(isinstance(e, Anomaly) for e in judged[:n])
    # the record is settled at the capture's end (by the detectors), the same sides' states
    assert [type(e) for e in judged[:n]] == [type(e) for e in bare]
    assert [a.kind for a in judged[n:]] == ["lingering_close_wait"]


def test_detectors_watch_the_tracker_through_the_observer_hook() -> None:
    from tcplife.core.tracker import Tracker
    from tcplife.peers import PeerObserver

    """A spy observer beside the peers and the detectors (`Observers`): it sees each
    call's events with the verdicts of the observers before it; what it adds follows
    them; `ended` adds its last word at the very end."""

    class Spy(Observer):
        def __init__(self) -> None:
            self.calls: list[list[Event]] = []

        def events(self, events: list[Event]) -> list[Event]:
            self.calls.append(list(events))
            return [ClockAdvanced(-len(self.calls))] if any(
                isinstance(e, Anomaly) for e in events) else []

        def ended(self) -> list[Event]:
            return [ClockAdvanced(-1000)]

    conv = _never_closes()
    options = Options(close_wait_linger=1)
    spy = Spy()
    tracker = new_tracker(options)
    watched = Tracker(options, Observers(PeerObserver(), DetectorSet(options), spy))
    with_events = 0
    for seg in conv.segments:
        got, want = watched.feed(seg), tracker.feed(seg)
        assert got == want
        with_events += bool(want)
    assert len(spy.calls) == with_events  # once per call with events, never for none
    end = conv.segments[-1].ts_ns + 10 * NS
    got, want = watched.finish(end_ns=end), tracker.finish(end_ns=end)
    assert got[:len(want)] == want  # the detectors' verdicts, then what the spy added
    assert got[len(want):] == [ClockAdvanced(-len(spy.calls)), ClockAdvanced(-1000)]
    assert isinstance(spy.calls[-1][-1], Anomaly)  # it saw the verdicts of those before it


def test_observers_call_only_the_hooks_their_members_use() -> None:
    from tcplife.peers import PeerObserver

    peers, detectors = PeerObserver(), DetectorSet(Options())
    both = Observers(peers, detectors)
    assert overrides(both, "segment") and overrides(both, "opened")
    assert overrides(both, "events") and overrides(both, "ended")
    assert not overrides(both, "timer_fired")  # no call per timer
    assert both.segment == peers.segment and both.events == detectors.events  # no loop
    assert not overrides(Observers(), "segment") and not overrides(None, "events")
    with pytest.raises(ValueError, match="only one observer"):
        Observers(peers, PeerObserver())


def test_the_wiring_and_the_live_engine_load_no_numpy_on_import() -> None:
    assert loaded_after("import tcplife.engines.wiring", _HEAVY) == []
    assert loaded_after("import tcplife.engines.live", _HEAVY) == []
    # the probe sees numpy where it is loaded: the default detectors need it
    assert loaded_after("import tcplife.engines.wiring as w; from tcplife.core.options "
                        "import Options; w.new_tracker(Options())", _HEAVY) == ["numpy"]
