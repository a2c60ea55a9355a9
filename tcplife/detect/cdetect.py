"""The compiled anomaly detectors (engine/detect*.c, ``tcplife._engine.Detectors``) fed the
core's events: `CDetectorSet`, a drop-in for `DetectorSet` with the default detectors.

Owns: turning the core's events (`Transition`, `ConnectionEnded` with its record,
transitions and notes and their typed facts, `ClockAdvanced`, `InputEnded`) into the plain
tuples the compiled type takes (states, events, oddity names, close kinds and sides as
their numbers in engine/tables.h), and its anomaly tuples back into `Anomaly` rows, so that
a test compares the two implementations with ``==``. The Python detectors
(`tcplife.detect`) are the specification; tests/test_cdetect.py holds these to them.

Knows nothing of captures or trackers; never used unless asked for (the file engine still
runs the Python detectors).
"""

from __future__ import annotations

from typing import Any

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
from tcplife.core.observe import Observer
from tcplife.core.options import Options
from tcplife.core.states import (
    ANOMALY_KINDS,
    CONFIDENCES,
    SEVERITIES,
    SIDES,
    CloseKind,
    Odd,
    State,
)

STATES: tuple[State, ...] = tuple(State)
_STATE = {s: i for i, s in enumerate(State)}
_EV = {e: i for i, e in enumerate(Ev)}
_ODD = {o: i for i, o in enumerate(Odd)}
_CLOSE = {k.value: i for i, k in enumerate(CloseKind)}
_SIDE = {side: i for i, side in enumerate(SIDES)}

#: the event tuples' first item
TRANSITION, ENDED, CLOCK, INPUT_ENDED = range(4)
#: the facts' kinds (detect.h's TL_FACTS_*)
FACTS: dict[type, int] = {RstSent: 1, FinRtx: 2, AckLost: 3, Retracted: 4, PortReuse: 5}


def _state(s: Any) -> int | None:
    return None if s is None else _STATE[s]


def transition(t: Transition) -> tuple[Any, ...]:
    """(tid, ts_ns, side, from, to, ev, text, frame, inferred): ``text`` None when the
    event's text is its table event's name."""
    ev = t.ev
    text = None if ev is not None and t.event == ev.value else t.event
    return (t.tid, t.ts_ns, _SIDE[t.side], _STATE[t.from_state], _STATE[t.to_state],
            None if ev is None else _EV[ev], text, t.frame, t.inferred)


def record(r: ConnectionRecord) -> tuple[Any, ...]:
    return (r.conn_id, r.client_addr, r.client_port, r.server_addr, r.server_port,
            r.first_ts_ns, r.last_ts_ns, r.first_frame, r.last_frame, r.packets,
            r.client_packets, r.server_packets, _STATE[r.client_state],
            _STATE[r.server_state], _STATE[r.client_initial_state],
            _STATE[r.server_initial_state], _state(r.client_eventual_state),
            _state(r.server_eventual_state), _CLOSE[r.close_kind], r.role_inferred,
            r.mid_stream, r.client_last_ts_ns, r.server_last_ts_ns, r.client_last_payload_ns,
            r.server_last_payload_ns)


def facts(f: Any) -> tuple[int, tuple[Any, ...] | None]:
    if f is None:
        return 0, None
    if isinstance(f, RstSent):
        return 1, (_STATE[f.state], f.unread, f.ack, f.fin_sent, f.zero_window, f.probes,
                   f.probe_since)
    if isinstance(f, FinRtx):
        return 2, (_STATE[f.state], f.hole)
    if isinstance(f, AckLost):
        return 3, (f.kind,)
    if isinstance(f, Retracted):
        return 4, (f.kind, f.undone, f.no_socket)
    if isinstance(f, PortReuse):
        return 5, (f.old_conn_id, tuple((_SIDE[side], _STATE[state])
                                        for side, state in f.sockets))
    raise TypeError(f"unknown facts {f!r}")


def note(n: Oddity) -> tuple[Any, ...]:
    kind, values = facts(n.facts)
    return (n.ts_ns, n.frame, _SIDE[n.side], _ODD[n.name], n.detail, kind, values)


def event(ev: Event) -> tuple[Any, ...] | None:
    """The compiled type's tuple of ``ev``; None for the events the detectors ignore."""
    if isinstance(ev, Transition):
        return (TRANSITION, ev.conn_id, ev.addr, ev.port, *transition(ev))
    if isinstance(ev, ConnectionEnded):
        return (ENDED, record(ev.record), [transition(t) for t in ev.transitions],
                [note(n) for n in ev.notes], ev.at_end)
    if isinstance(ev, ClockAdvanced):
        return (CLOCK, ev.ts_ns)
    if isinstance(ev, InputEnded):
        return (INPUT_ENDED, ev.ts_ns)
    return None


def anomaly(row: tuple[Any, ...]) -> Anomaly:
    """An `Anomaly` from the compiled type's tuple."""
    conn_id, ts_ns, side, kind, frame, detail, severity, confidence, frames, claims = row
    return Anomaly(conn_id, ts_ns, SIDES[side], ANOMALY_KINDS[kind], frame, detail,
                   SEVERITIES[severity], CONFIDENCES[confidence], frames,
                   tuple((SIDES[s], STATES[state], ts) for s, state, ts in claims))


def options_values(options: Options) -> tuple[float, ...]:
    """The options in the engine's order (TL_OPT_*: `Options`' fields)."""
    return tuple(getattr(options, name) for name in Options.names())


class CDetectorSet(Observer):
    """`DetectorSet` with the default detectors, run by the compiled engine: the same
    ``events``/``ended`` (a record ended at the end of input settled in the caller's list),
    the same running ``capture_end_ns``. ``fold_every``: `BoundedTimeWaitAccumulation`'s."""

    def __init__(self, options: Options, *, fold_every: int = 4096) -> None:
        from tcplife.native.loader import engine

        self.options = options
        self._c = engine().Detectors(options_values(options), fold_every)

    @property
    def capture_end_ns(self) -> int:
        return int(self._c.capture_end_ns)

    @property
    def input_ended(self) -> bool:
        return bool(self._c.input_ended)

    def events(self, events: list[Event]) -> list[Event]:
        rows, settled = self._c.events([event(ev) for ev in events])
        for i, client, server, client_eventual, server_eventual in settled:
            ended: ConnectionEnded = events[i]  # type: ignore[assignment]
            events[i] = ended._replace(record=ended.record._replace(
                client_state=STATES[client], server_state=STATES[server],
                client_eventual_state=STATES[client_eventual],
                server_eventual_state=STATES[server_eventual]))
        return [anomaly(row) for row in rows]

    def ended(self) -> list[Event]:
        return [anomaly(row) for row in self._c.ended()]
