"""The compiled tracker (`tcplife._engine.Tracker`) seen from Python, for tests and tools.

Owns: `CTracker`, which feeds `Batch`es to the engine's tracker and turns the events it
returns (tuples of numbers, see engine/track_py.c) into the core's own event types
(`tcplife.core.events`): addresses back into text through the batch's `AddressBook`,
states, events and oddity names back into their enums, oddity facts into their frozen
dataclasses. So its events compare with ``==`` against those of a
`tcplife.core.tracker.Tracker` without an observer (records with ``peers=None``, no
`Anomaly`). The engine's tracker ports every rule of the Python one; what it cannot
follow (values outside its bounds: ``Tracker.refused``) it refuses with an exception,
so that a caller can fall back to the Python core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from tcplife.capture.columns import AddressBook, Batch
from tcplife.core.events import (
    AckLost,
    ClockAdvanced,
    ConnectionEnded,
    ConnectionRecord,
    ConnectionStarted,
    Event,
    FinRtx,
    InputEnded,
    Oddity,
    PortReuse,
    Retracted,
    Retraction,
    RstSent,
    Transition,
)
from tcplife.core.machine import Ev
from tcplife.core.options import Options
from tcplife.core.states import CloseKind, Odd, State
from tcplife.native import loader

_STATES = list(State)
_EVS = list(Ev)
_ODDS = list(Odd)
_CLOSE = list(CloseKind)
_SIDES = ("client", "server", "")
# the engine's event and facts codes (engine/track.h: tl_etype, tl_facts)
STARTED, TRANSITION, RETRACTION, ODDITY, ENDED, INPUT_ENDED, CLOCK = range(7)
RST_SENT, FIN_RTX, ACK_LOST, RETRACTED, PORT_REUSE = range(1, 6)


def option_values(options: Options) -> tuple[float, ...]:
    """The `Options` fields in the engine's order (TL_OPT_*: the dataclass's)."""
    return tuple(getattr(options, f.name) for f in fields(Options))


class CTracker:
    """The compiled tracker, fed `Batch`es, giving the core's events. ``engine``: the
    compiled module (default: `tcplife.native.loader.engine()`, which raises
    `EngineUnavailable` where it was not built or was refused)."""

    def __init__(self, options: Options | None = None, engine: Any = None) -> None:
        self.options = options or Options()
        module = engine if engine is not None else loader.engine()
        self.engine = module.Tracker(option_values(self.options))
        self.book: AddressBook | None = None

    def feed_batch(self, batch: Batch) -> list[Event]:
        """Feed every row of ``batch``; return the events (timers due first, as
        `Tracker.feed` does per segment)."""
        self.book = batch.book
        self.engine.feed(*(getattr(batch, c) for c in Batch.COLUMNS))
        return self.take()

    def feed_columns(self, batch: Batch) -> int:
        """Feed ``batch`` without taking the events: how many are pending."""
        self.book = batch.book
        return int(self.engine.feed(*(getattr(batch, c) for c in Batch.COLUMNS)))

    def advance(self, now_ns: int) -> list[Event]:
        self.engine.advance(now_ns)
        return self.take()

    def finish(self, end_ns: int | None = None) -> list[Event]:
        """`Tracker.finish`'s events: `InputEnded` first."""
        self.engine.finish(end_ns)
        return self.take()

    @property
    def refused(self) -> str | None:
        """None, or why the engine's tracker stopped (fall back to Python)."""
        return self.engine.refused  # type: ignore[no-any-return]

    def take(self) -> list[Event]:
        """The pending events as the core's types."""
        book = self.book if self.book is not None else AddressBook()
        return convert(self.engine.take(), book.name)


def _transition(t: tuple[Any, ...], name: Callable[[int], str]) -> Transition:
    _, tid, conn_id, ts, side, addr, port, frm, to, text, frame, inferred, ev = t
    return Transition(tid, conn_id, ts, _SIDES[side], name(addr), port, _STATES[frm],
                      _STATES[to], text, frame, inferred, _EVS[ev])


def _facts(f: tuple[Any, ...] | None) -> Any:
    if f is None:
        return None
    code = f[0]
    if code == RST_SENT:
        _, state, unread, ack, fin_sent, zero_window, probes, probe_since = f
        return RstSent(_STATES[state], unread, ack, fin_sent, zero_window, probes, probe_since)
    if code == FIN_RTX:
        return FinRtx(_STATES[f[1]], f[2])
    if code == ACK_LOST:
        return AckLost(f[1])
    if code == RETRACTED:
        return Retracted(f[1], f[2], f[3])
    if code == PORT_REUSE:
        return PortReuse(f[1], tuple(f[2]))
    raise ValueError(f"unknown facts code {code}")


def _oddity(t: tuple[Any, ...]) -> Oddity:
    _, conn_id, ts, frame, side, name, detail, facts = t
    return Oddity(conn_id, ts, frame, _SIDES[side], _ODDS[name], detail, _facts(facts))


def _record(r: tuple[Any, ...], name: Callable[[int], str]) -> ConnectionRecord:
    (conn_id, ip_version, caddr, cport, saddr, sport, first_ts, last_ts, first_frame,
     last_frame, packets, cpackets, spackets, cbytes, sbytes, cstate, sstate, cinit, sinit,
     close_kind, role_inferred, mid_stream, c_last, s_last, c_payload, s_payload,
     c_eventual, s_eventual) = r
    return ConnectionRecord(
        conn_id=conn_id, ip_version=ip_version, client_addr=name(caddr), client_port=cport,
        server_addr=name(saddr), server_port=sport, first_ts_ns=first_ts, last_ts_ns=last_ts,
        first_frame=first_frame, last_frame=last_frame, packets=packets,
        client_packets=cpackets, server_packets=spackets, client_bytes=cbytes,
        server_bytes=sbytes, client_state=_STATES[cstate], server_state=_STATES[sstate],
        client_initial_state=_STATES[cinit], server_initial_state=_STATES[sinit],
        close_kind=_CLOSE[close_kind], role_inferred=role_inferred, mid_stream=mid_stream,
        client_last_ts_ns=c_last, server_last_ts_ns=s_last, client_last_payload_ns=c_payload,
        server_last_payload_ns=s_payload, peers=None,
        client_eventual_state=_STATES[c_eventual], server_eventual_state=_STATES[s_eventual])


def convert(raw: list[tuple[Any, ...]], name: Callable[[int], str]) -> list[Event]:
    """The engine's event tuples as the core's events; ``name`` turns an address key
    into its text (`AddressBook.name`)."""
    out: list[Event] = []
    for t in raw:
        kind = t[0]
        if kind == TRANSITION:
            out.append(_transition(t, name))
        elif kind == ODDITY:
            out.append(_oddity(t))
        elif kind == STARTED:
            _, conn_id, ts, frame, caddr, cport, saddr, sport, role_inferred, mid_stream = t
            out.append(ConnectionStarted(conn_id, ts, frame, name(caddr), cport, name(saddr),
                                         sport, role_inferred, mid_stream))
        elif kind == RETRACTION:
            _, tid, conn_id, side, ts, frame, reason = t
            out.append(Retraction(tid, conn_id, _SIDES[side], ts, frame, reason))
        elif kind == ENDED:
            _, record, trans, notes, at_end = t
            out.append(ConnectionEnded(_record(record, name),
                                       [_transition(x, name) for x in trans],
                                       [_oddity(x) for x in notes], at_end))
        elif kind == INPUT_ENDED:
            out.append(InputEnded(t[1]))
        elif kind == CLOCK:
            out.append(ClockAdvanced(t[1]))
        else:
            raise ValueError(f"unknown event code {kind}")
    return out
