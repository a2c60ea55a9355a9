"""The compiled anomaly detectors (engine/detect*.c, ``tcplife._engine.Detectors``, driven
by `tcplife.detect.cdetect.CDetectorSet`) say what the Python ones (`tcplife.detect`, the
specification) say, anomaly for anomaly.

Each case runs the Python tracker without detectors (``new_tracker(judge=False)``), then
feeds the same lists of events to a Python `DetectorSet` and to the compiled one (each on
its own copy: both replace a record ended at the end of input by its settled copy) and
compares: every anomaly (connection, time, side, kind, frame, the detail sentence, severity,
confidence, evidence frames, claims), in order; the events after settling; the running
capture end. On every sample and corpus capture, with the default options and with options
that make every kind fire somewhere (short timeouts, tiny TIME_WAIT limits, folds of the
TIME_WAIT intervals every few connections); on the tracker's hostile segment streams
(tests/fuzz/invariants.py); and on generated event streams that no tracker would make
(extreme times, every note with every kind of facts, many hosts and services), which reach
the branches the captures do not (rst_on_close_unread_data, the folds' dropped intervals,
the rounding of long durations and rates).
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fuzz.invariants import segments_from
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from tcplife.capture import read_segments
from tcplife.core.events import (
    AckLost,
    Anomaly,
    ClockAdvanced,
    ConnectionEnded,
    ConnectionRecord,
    Event,
    FinRtx,
    InputEnded,
    Oddity,
    PortReuse,
    Retracted,
    RstSent,
    Transition,
)
from tcplife.core.machine import Ev
from tcplife.core.options import NS, Options
from tcplife.core.segment import Segment
from tcplife.core.states import ANOMALY_KINDS, CLIENT, SERVER, CloseKind, Odd, State
from tcplife.detect import DetectorSet, default_detectors
from tcplife.detect.view import FOREVER
from tcplife.engines.wiring import new_tracker
from tcplife.native import cgen

from needs import CORPUS_PCAPS, missing, needs

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "sample_pcaps").glob("*.pcap*"))
CORPUS = sorted(CORPUS_PCAPS.glob("*.pcap*")) if CORPUS_PCAPS.is_dir() else []

#: option sets: name -> (options, fold_every of the TIME_WAIT accumulation)
OPTIONS: dict[str, tuple[Options, int]] = {
    "default": (Options(), 4096),
    "short": (Options(close_wait_linger=0.5, time_wait=2, fin_wait_2=1, syn_sent=3,
                      syn_received=3, closed_linger=1, time_wait_threshold=3), 2),
    "tw_limits": (Options(time_wait_threshold=3, port_range_low=40000, port_range_high=40004,
                          max_tw_buckets=4, time_wait_share=0.5), 1),
}


@pytest.fixture(scope="module")
def engine():
    try:
        from tcplife import _engine
    except ImportError:
        missing("the compiled engine (tcplife._engine: python setup.py build_ext --inplace)")
    return _engine


def tracker_events(segments: list[Segment], options: Options) -> list[list[Event]]:
    """The events of each call of a tracker without detectors over ``segments``."""
    tracker = new_tracker(options, judge=False)
    out = [events for events in map(tracker.feed, segments) if events]
    out += [events for events in tracker.finish_chunks() if events]
    return out


def python_set(options: Options, fold_every: int) -> DetectorSet:
    ds = DetectorSet(options)
    ds.detectors[-1].fold_every = fold_every  # type: ignore[attr-defined]
    return ds


def judged(ds: Any, lists: list[list[Event]]) -> tuple[list[Event], list[list[Event]]]:
    """What ``ds`` adds to each list (a copy of it), then its end; and the lists as it
    left them (records settled)."""
    lists = [list(events) for events in lists]
    rows: list[Event] = []
    for events in lists:
        rows += ds.events(events)
    rows += ds.ended()
    return rows, lists


def first_difference(py: list[Any], c: list[Any]) -> str:
    for i, (a, b) in enumerate(zip(py, c, strict=False)):
        if a != b:
            fields = getattr(a, "_fields", None) or range(len(a))
            diff = [f"{f}: Python {x!r}\n    C {y!r}" for f, x, y in
                    zip(fields, a, b, strict=False) if x != y]
            return f"item {i} differs:\n  " + "\n  ".join(diff)
    return f"Python has {len(py)} items, C {len(c)}"


def compare(where: str, lists: list[list[Event]], options: Options,
            fold_every: int = 4096) -> list[Event]:
    """Assert that the compiled detectors judge ``lists`` as the Python ones do; returns
    the anomalies."""
    from tcplife.detect.cdetect import CDetectorSet

    py_set, c_set = python_set(options, fold_every), CDetectorSet(options, fold_every=fold_every)
    py, py_lists = judged(py_set, lists)
    c, c_lists = judged(c_set, lists)
    assert py == c, f"{where}: {first_difference(py, c)}"
    for i, (a, b) in enumerate(zip(py_lists, c_lists, strict=True)):
        assert a == b, f"{where}: events of call {i} after settling: {first_difference(a, b)}"
    assert (c_set.capture_end_ns, c_set.input_ended) == (py_set.capture_end_ns,
                                                         py_set.input_ended)
    return py


@cache
def compare_capture(path: Path) -> Counter[str]:
    kinds: Counter[str] = Counter()
    segments = list(read_segments(path))
    for name, (options, fold_every) in OPTIONS.items():
        rows = compare(f"{path.name} ({name})", tracker_events(segments, options), options,
                       fold_every)
        kinds.update(a.kind for a in rows if isinstance(a, Anomaly))
    return kinds


# ---------------------------------------------------------------- captures
@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_captures(engine, path: Path) -> None:
    compare_capture(path)


@needs(corpus=True)
@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_captures(engine, path: Path) -> None:
    compare_capture(path)


@needs(corpus=True)
def test_the_captures_exercise_every_kind_but_one(engine) -> None:
    """Which kinds the captures make (with the option sets above): all but
    rst_on_close_unread_data (no capture shows a zero window before an RST), which the
    generated streams below make."""
    assert len(CORPUS) > 50  # the parametrised test above is not vacuous
    kinds: Counter[str] = Counter()
    for path in SAMPLES + CORPUS:
        kinds += compare_capture(path)  # (cached: the parametrised tests ran them)
    assert set(ANOMALY_KINDS) - set(kinds) == {"rst_on_close_unread_data"}, kinds


# ---------------------------------------------------------------- tracker streams
@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=8, max_size=3000), st.sampled_from(sorted(OPTIONS)))
def test_hostile_segment_streams(engine, data: bytes, name: str) -> None:
    options, fold_every = OPTIONS[name]
    compare("segments_from", tracker_events(segments_from(data), options), options,
            fold_every)


# ---------------------------------------------------------------- generated event streams
HOSTS = ["10.0.0.1", "10.0.0.2", "10.0.0.10", "fe80::1", "192.168.1.1"]
PORTS = [80, 443, 40000, 40001, 8080]
TEXTS = [None, None, None, "timeout", "send RST", "recv RST (bad)", "send SYN-ACK", "send FIN",
         "recv ACK of FIN", "idle"]
LIMIT = (1 << 62) - 1
TIMES = st.one_of(st.integers(0, 3 * NS), st.integers(0, 200 * NS), st.integers(-5 * NS, 0),
                  st.integers(0, 1 << 61))
FRAMES = st.one_of(st.none(), st.integers(0, 50))
STATES = st.sampled_from(list(State))
SIDE = st.sampled_from([CLIENT, SERVER])
MAYBE_TS = st.one_of(st.none(), st.integers(0, 400 * NS))


@st.composite
def facts_for(draw: st.DrawFn, name: Odd, ts: int) -> Any:
    if name is Odd.RST_SENT:
        return RstSent(draw(st.one_of(STATES, st.sampled_from([State.ESTABLISHED,
                                                              State.CLOSE_WAIT]))),
                       draw(st.booleans()), draw(st.booleans()), draw(st.booleans()),
                       draw(st.booleans()), draw(st.sampled_from([0, 0, 0, 1, 3])),
                       draw(st.one_of(st.none(), st.just(0), st.integers(ts - NS, ts))))
    pick = draw(st.integers(0, 5))
    if name is Odd.FIN_RTX and pick:
        return FinRtx(draw(STATES), draw(st.booleans()))
    if name is Odd.ACK_LOST and pick:
        return AckLost(draw(st.sampled_from(["ack_syn", "ack_fin", "timeout"])))
    if name is Odd.RETRACTED and pick:
        return Retracted(draw(st.sampled_from(["ack_syn", "ack_fin", "fin"])),
                         draw(st.integers(1, 3)), draw(st.booleans()))
    if name is Odd.PORT_REUSE and pick:
        sockets = draw(st.lists(st.tuples(SIDE, st.sampled_from(
            ["TIME_WAIT", "TIME_WAIT", "ESTABLISHED", "CLOSE_WAIT"])), max_size=2))
        return PortReuse(draw(st.integers(0, 9)), tuple(sockets))
    return None


NOTE_NAMES = st.sampled_from([Odd.RST_SENT, Odd.FIN_RTX, Odd.ACK_LOST, Odd.RETRACTED,
                              Odd.PORT_REUSE, Odd.SYN_RTX, Odd.SYNACK_RTX, Odd.SYN_WITH_FIN,
                              Odd.HALF_CLOSE, Odd.SILENCE_RTX, Odd.KEEPALIVE_PROBE,
                              Odd.CAPTURE_DUPLICATE])
#: states and events weighted towards what the detectors look for
TO_STATES = st.one_of(STATES, st.sampled_from([State.TIME_WAIT, State.CLOSE_WAIT,
                                               State.SYN_RECEIVED, State.ESTABLISHED,
                                               State.CLOSING, State.CLOSED]))
FROM_STATES = st.one_of(STATES, st.sampled_from([State.FIN_WAIT_2, State.LAST_ACK,
                                                 State.SYN_SENT, State.FIN_WAIT_1]))
EVS = st.one_of(st.sampled_from(list(Ev)), st.sampled_from(
    [Ev.SEND_SYN, Ev.SEND_SYNACK, Ev.TIMEOUT, Ev.RECV_ACK_FIN, Ev.SEND_FIN]))


@st.composite
def connection(draw: st.DrawFn, conn_id: int, base: int, tid: int) -> tuple[
        list[Event], ConnectionEnded, int]:
    """One connection's stream transitions and its `ConnectionEnded` (tids from ``tid``)."""
    client, server = draw(st.sampled_from(HOSTS)), draw(st.sampled_from(HOSTS))
    cport, sport = draw(st.sampled_from(PORTS)), draw(st.sampled_from(PORTS[:3]))
    trans = []
    ts = base
    for _ in range(draw(st.integers(0, 6))):
        ts = min(ts + draw(TIMES), LIMIT)
        side = draw(SIDE)
        ev = draw(EVS)
        text = draw(st.sampled_from(TEXTS))
        trans.append(Transition(tid, conn_id, ts, side, client if side == CLIENT else server,
                                cport if side == CLIENT else sport, draw(FROM_STATES),
                                draw(TO_STATES), ev.value if text is None else text,
                                draw(FRAMES), draw(st.booleans()), ev))
        tid += 1
    opening = draw(st.integers(0, 2))  # 1: a SYN; 2: a SYN and its SYN-ACK, then the ACK
    if opening:
        syn_at = base + draw(st.integers(0, 3 * NS))
        trans.append(Transition(tid, conn_id, syn_at, CLIENT, client, cport, State.CLOSED,
                                State.SYN_SENT, Ev.SEND_SYN.value, draw(FRAMES), False,
                                Ev.SEND_SYN))
        tid += 1
    if opening == 2:
        answer_at = syn_at + draw(st.integers(0, 4 * NS))
        trans.append(Transition(tid, conn_id, answer_at, SERVER, server, sport, State.LISTEN,
                                State.SYN_RECEIVED, Ev.SEND_SYNACK.value, draw(FRAMES),
                                False, Ev.SEND_SYNACK))
        trans.append(Transition(tid + 1, conn_id, answer_at + draw(st.integers(0, NS)), CLIENT,
                                client, cport, State.SYN_SENT, State.ESTABLISHED,
                                Ev.RECV_SYNACK.value, draw(FRAMES), False, Ev.RECV_SYNACK))
        tid += 2
    closing = draw(st.integers(0, 2))  # 1: a FIN retransmitted; 2: and its ACK
    if closing:
        side = draw(SIDE)
        addr, port = (client, cport) if side == CLIENT else (server, sport)
        fin_at = base + draw(st.integers(0, 2 * NS))
        trans.append(Transition(tid, conn_id, fin_at, side, addr, port, State.ESTABLISHED,
                                State.FIN_WAIT_1, Ev.SEND_FIN.value, draw(FRAMES), False,
                                Ev.SEND_FIN))
        tid += 1
    if closing == 2:
        trans.append(Transition(tid, conn_id, fin_at + draw(st.integers(0, 3 * NS)), side,
                                addr, port, State.FIN_WAIT_1, State.FIN_WAIT_2,
                                Ev.RECV_ACK_FIN.value, draw(FRAMES), False, Ev.RECV_ACK_FIN))
        tid += 1
    trans.sort(key=lambda t: (t.ts_ns, t.tid))
    notes = []
    if closing:
        notes.append(Oddity(conn_id, fin_at + draw(st.integers(0, 2 * NS)), draw(FRAMES),
                            side, Odd.FIN_RTX, "", draw(st.one_of(
                                st.none(), st.builds(FinRtx, STATES, st.booleans())))))
    for k in range(draw(st.integers(0, 3)) if opening else 0):
        name = Odd.SYN_RTX if draw(st.booleans()) else Odd.SYNACK_RTX
        notes.append(Oddity(conn_id, syn_at + (k + 1) * draw(st.integers(NS // 2, 3 * NS)),
                            draw(FRAMES), CLIENT if name is Odd.SYN_RTX else SERVER, name))
    for _ in range(draw(st.integers(0, 6))):
        name = draw(NOTE_NAMES)
        nts = min(base + draw(TIMES), LIMIT)
        notes.append(Oddity(conn_id, nts, draw(FRAMES), draw(SIDE), name,
                            draw(st.sampled_from(["", "new SYN reuses the 4-tuple"])),
                            draw(facts_for(name, nts))))
    last = max([base, *(t.ts_ns for t in trans)])
    record = ConnectionRecord(
        conn_id, 4, client, cport, server, sport, base, last, draw(st.integers(0, 5)),
        draw(st.integers(0, 60)), 9, draw(st.integers(0, 4)), draw(st.integers(0, 4)), 0, 0,
        draw(STATES), draw(STATES), State.CLOSED if opening else draw(STATES), draw(STATES),
        draw(st.sampled_from([*CloseKind, CloseKind.UNANSWERED])).value, draw(st.booleans()),
        draw(st.booleans()), draw(MAYBE_TS), draw(MAYBE_TS), draw(MAYBE_TS), draw(MAYBE_TS),
        client_eventual_state=draw(st.one_of(st.none(), STATES)),
        server_eventual_state=draw(st.one_of(st.none(), STATES)))
    ended = ConnectionEnded(record, trans, notes, draw(st.booleans()))
    stream: list[Event] = [t for t in trans if draw(st.booleans())]
    return stream, ended, tid


@st.composite
def event_lists(draw: st.DrawFn) -> list[list[Event]]:
    lists: list[list[Event]] = []
    base, tid = draw(st.integers(0, 10 * NS)), 0
    for conn_id in range(draw(st.integers(1, 25))):
        base = min(max(base + draw(st.one_of(st.integers(-2 * NS, 5 * NS),
                                             st.integers(0, 100 * NS))), 0), LIMIT // 2)
        stream, ended, tid = draw(connection(conn_id, base, tid))
        events = stream + [ended]
        clock = draw(st.integers(0, 3))
        if clock == 1:
            events.append(ClockAdvanced(base + draw(TIMES)))
        elif clock == 2:
            events.insert(0, InputEnded(base))
        lists.append(events)
    return lists


GENERATED_OPTIONS = st.builds(
    Options, close_wait_linger=st.sampled_from([0, 0.5, 10.0]),
    time_wait=st.sampled_from([0, 1, 2.5, 60]), closed_linger=st.sampled_from([0, 1, 120]),
    syn_sent=st.sampled_from([0, 1, 127]), time_wait_threshold=st.sampled_from([0, 1, 2, 1000]),
    port_range_low=st.just(40000), port_range_high=st.sampled_from([40000, 40002, 60999]),
    max_tw_buckets=st.sampled_from([0, 1, 3, 262144]),
    time_wait_share=st.sampled_from([0.0, 0.25, 0.333, 1.0]))


@settings(max_examples=300, deadline=None)
@given(event_lists(), GENERATED_OPTIONS, st.sampled_from([1, 2, 4096]))
def test_generated_event_streams(engine, lists: list[list[Event]], options: Options,
                                 fold_every: int) -> None:
    compare("generated", lists, options, fold_every)


class _EveryKind(Exception):
    """Raised once the generated streams have made every kind (ends the search)."""


def test_generated_streams_make_every_kind(engine) -> None:
    """The generated streams reach every kind (rst_on_close_unread_data included), within
    2,000 examples (a few hundred, usually), each compared as above."""
    kinds: set[str] = set()

    @settings(max_examples=2000, deadline=None, database=None, phases=[Phase.generate])
    @given(event_lists(), GENERATED_OPTIONS)
    def collect(lists: list[list[Event]], options: Options) -> None:
        kinds.update(a.kind for a in compare("generated", lists, options, 2))
        if set(ANOMALY_KINDS) <= kinds:
            raise _EveryKind

    with pytest.raises(_EveryKind):
        collect()


# ---------------------------------------------------------------- constants and refusals
def test_constants_and_detectors_are_the_python_ones(engine) -> None:
    assert engine.Detectors.constants() == {**cgen.detect_tables(), "FOREVER": FOREVER}
    assert engine.Detectors.detectors() == tuple(type(d).__name__
                                                 for d in default_detectors(Options()))


def test_a_rst_sent_note_without_facts_is_refused_as_python_refuses_it(engine) -> None:
    from tcplife.detect.cdetect import CDetectorSet

    record = ConnectionRecord(1, 4, "10.0.0.1", 40000, "10.0.0.2", 80, 0, NS, 1, 2, 2, 1, 1,
                              0, 0, State.CLOSED, State.CLOSED, State.CLOSED, State.LISTEN,
                              "rst", False, False)
    events: list[Event] = [ConnectionEnded(record, (), [Oddity(1, NS, 2, SERVER, Odd.RST_SENT)])]
    with pytest.raises(AssertionError):
        DetectorSet(Options()).events(list(events))
    with pytest.raises(ValueError, match="RstSent"):
        CDetectorSet(Options()).events(list(events))


def test_hostile_calls_raise_and_never_crash(engine) -> None:
    from tcplife.detect.cdetect import options_values, record

    values = options_values(Options())
    d = engine.Detectors(values)
    rec = record(ConnectionRecord(1, 4, "a", 1, "b", 2, 0, 1, 1, 1, 1, 1, 0, 0, 0, State.CLOSED,
                                  State.CLOSED, State.CLOSED, State.CLOSED, "fin", False,
                                  False))
    bad_calls: list[Any] = [
        [(9, 1)], [(2,)], [(2, 1 << 62)], [(2, "x")], [(1, rec)], [(1, rec[:-1], [], [], 0)],
        [(1, rec, [(0, 0, 2, 0, 0, 0, None, None, 0)], [], 0)],  # side 2
        [(1, rec, [(0, 0, 0, 12, 0, 0, None, None, 0)], [], 0)],  # state 12
        [(1, rec, [(0, 0, 0, 0, 0, None, None, None, 0)], [], 0)],  # no ev, no text
        [(1, rec, [], [(0, None, 0, 23, "", 0, None)], 0)],  # odd 23
        [(1, rec, [], [(0, None, 0, 19, "", 1, (0, 0))], 0)],  # short RstSent
        [(1, rec, [], [(0, None, 0, 21, "", 5, (1, ((0, 99),)))], 0)],  # socket state
        [(1, rec, [], [(0, None, 0, 0, "", 6, None)], 0)],  # facts kind
        [(1, rec, [], [(0, None, 0, 0, "", 0, (1,))], 0)],  # facts without a kind
        [(0, 1, "a", 80, 0, -(1 << 62), 1, 0, 1, 1, None, None, 0)],  # ts
        [(0, 1, 5, 80, 0, 0, 1, 0, 1, 1, None, None, 0)],  # addr not a str
        [(0, 1, "a", -(1 << 63), 0, 0, 1, 0, 1, 1, None, None, 0)],  # -2**63
        [(0, 1, "a", 1 << 64, 0, 0, 1, 0, 1, 1, None, None, 0)],  # beyond int64
        "not a list", [[1, 2]],
    ]
    for call in bad_calls:
        with pytest.raises((ValueError, TypeError, OverflowError)):
            d.events(call)
    assert d.events([]) == ([], [])
    for options in ([1.0] * 3, [*values[:-1], "x"], [-1.0, *values[1:]],
                    [float("inf"), *values[1:]], [1e30, *values[1:]]):
        with pytest.raises((ValueError, TypeError)):
            engine.Detectors(options)
    with pytest.raises(ValueError):
        Options(port_range_low=2, port_range_high=1)
    with pytest.raises(ValueError):
        engine.Detectors([*values[:9], 2.0, 1.0, *values[11:]])
    fresh = engine.Detectors.__new__(engine.Detectors)
    with pytest.raises(RuntimeError):
        fresh.ended()
