"""Property tests on the state machine with hostile segment sequences (issue 7).

`tests/test_tracker_properties.py` drives loss-free, well-formed conversations. Here the
segments are anything (`fuzz/invariants.segments_from`): arbitrary flag combinations,
sequence and acknowledgment numbers near the expected ones or anywhere (wrapping), several
4-tuples and port reuse, IPv4 and IPv6, time running backwards or jumping past every
timeout. For any such sequence: each side is always in a valid state, every transition is
one the table (`tcplife.core.machine.TABLE`) allows, retractions undo the latest standing
transition, the final records agree with the transitions, feeding it again gives the same
events, the fast path (`tcplife.engines.drive`, any batch size) gives the same events, and the
detectors and tables are built without error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import tcplife.engines.drive
from tcplife.capture.columns import AddressBook, Batch
from tcplife.core.machine import TABLE
from tcplife.core.options import Options
from tcplife.core.segment import Segment
from tcplife.core.states import State
from tcplife.engines.drive import drive
from tcplife.engines.wiring import new_tracker
from tcplife.output import frames
from tcplife.output.frames import Collector

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))
from invariants import allowed, check_events, segments_from  # noqa: E402


def events_plain(segments: list[Segment], options: Options | None = None) -> list[object]:
    tracker = new_tracker(options)
    out: list[object] = []
    for seg in segments:
        out.extend(tracker.feed(seg))
    out.extend(tracker.finish())
    return out


def events_fast(segments: list[Segment], size: int) -> list[object]:
    tracker, out, book = new_tracker(), [], AddressBook()
    batches = [Batch.from_segments(segments[i:i + size], book)
               for i in range(0, len(segments), size)]
    drive(batches, tracker, out.extend)
    out.extend(tracker.finish())
    return out


def tables(events: list[Any]) -> None:
    """DataFrames over the events (the detectors' verdicts among them, as `analyze` wires
    the tracker)."""
    collector = Collector()
    collector.add(events)
    for frame in (frames.connections_frame(collector), frames.transitions_frame(collector),
                  frames.anomalies_frame(collector), frames.oddities_frame(collector)):
        assert frame is not None


def test_the_checker_knows_the_table() -> None:
    from tcplife.core.events import Transition
    from tcplife.core.machine import Stay

    for (state, ev), cell in TABLE.items():
        if isinstance(cell, Stay):
            continue
        t = Transition(0, 0, 0, "client", "a", 1, state, cell, str(ev), 1, False, ev=ev)
        assert allowed(t)
        wrong = State.LISTEN if cell != State.LISTEN else State.CLOSED
        assert not allowed(Transition(0, 0, 0, "client", "a", 1, state, wrong, str(ev), 1,
                                      False, ev=ev))
        # the text is for people: a transition without its table event is not allowed
        assert not allowed(Transition(0, 0, 0, "client", "a", 1, state, cell, str(ev), 1,
                                      False))


EXAMPLES = [b"", b"\x00" * 40, bytes(range(256)), b"\xff" * 300,
            bytes([1, 8, 0x03] + [0] * 9) * 20,  # SYN+FIN repeatedly
            bytes([1, 8, 0xFF] + [0] * 9) * 20]  # all eight flags


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=1200), st.integers(min_value=1, max_value=50))
@example(b"", 1)
def test_any_segments_obey_the_table(data: bytes, size: int) -> None:
    segments = segments_from(data)
    events = events_plain(segments)
    check_events(events)
    assert events_plain(segments) == events  # replay: the same result
    saved = tcplife.engines.drive.LONG_RUN
    try:
        for long_run in (64, 1):
            tcplife.engines.drive.LONG_RUN = long_run
            assert events_fast(segments, size) == events
    finally:
        tcplife.engines.drive.LONG_RUN = saved
    tables(events)


def test_fixed_examples() -> None:
    for data in EXAMPLES:
        segments = segments_from(data)
        events = events_plain(segments)
        check_events(events)
        assert events_fast(segments, 7) == events
        tables(events)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=600), st.floats(min_value=0, max_value=1e6),
       st.floats(min_value=0, max_value=1e6))
def test_any_timeouts(data: bytes, time_wait: float, fin_wait_2: float) -> None:
    """The same rules whatever the timeouts (zero included)."""
    options = Options(time_wait=time_wait, fin_wait_2=fin_wait_2, syn_sent=time_wait,
                      syn_received=fin_wait_2, closed_linger=time_wait)
    events = events_plain(segments_from(data), options)
    check_events(events)


def test_replaying_a_capture_gives_the_same_result() -> None:
    """The same capture analysed twice in one process (caches, class-level state, the
    paused garbage collector) gives identical tables, whichever capture came between."""
    import pandas as pd

    import tcplife

    root = Path(__file__).resolve().parents[1] / "sample_pcaps"
    paths = [root / "clean_traffic.client.pcap", root / "port_reuse_after_time_wait.client.pcap",
             root / "ipv6.client.pcap"]
    first = [tcplife.analyze(p) for p in paths]
    again = [tcplife.analyze(p) for p in reversed(paths)][::-1]
    for a, b in zip(first, again, strict=True):
        for table in ("connections", "transitions", "anomalies", "oddities"):
            pd.testing.assert_frame_equal(getattr(a, table), getattr(b, table))
