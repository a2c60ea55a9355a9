"""What the tracker says happened: transitions through the table, retractions, notes.

Owns: `Changes`, the one place a side's state changes (`apply` looks the table up;
`transition` records a change, `contradict` undoes the latest deduction of a kind and
everything after it) and where notes are emitted (`odd`, `note`), with the transition ids
and the list of events of the current call. After every change of state it calls ``arm``
(the tracker's timer arming).
"""

from __future__ import annotations

from collections.abc import Callable

from tcplife.core.connection import Connection
from tcplife.core.endpoint import Endpoint
from tcplife.core.events import Event, Oddity, Retracted, Retraction, Transition
from tcplife.core.machine import TABLE as _TABLE
from tcplife.core.machine import Ev, Stay, step
from tcplife.core.segment import Segment
from tcplife.core.states import TIME_WAIT, UNKNOWN, Odd, State

#: a named tuple made without its Python-level ``__new__`` (a third of the cost)
_new = tuple.__new__


class Changes:
    """Emits the events of state changes and notes into `out` (the current call's)."""

    __slots__ = ("out", "next_tid", "arm")

    def __init__(self, arm: Callable[[Connection, Endpoint], None]) -> None:
        self.out: list[Event] = []
        self.next_tid = 0
        #: arms the side's state timer after it changed state (`Tracker`)
        self.arm = arm

    def apply(self, conn: Connection, ep: Endpoint, ev: Ev, seg: Segment, *,
              inferred: bool, kind: str = "") -> None:
        """The table's cell for ``ep`` and ``ev``, caused by ``seg``: a transition, or
        nothing (an oddity if the cell names one)."""
        result = _TABLE[(ep.state, ev)]
        if result.__class__ is Stay:
            if result.note:  # type: ignore[union-attr]
                self.odd(conn, ep, seg, result.note, f"{ev} in {ep.state}")  # type: ignore
            return
        self._move(conn, ep, ev, result, seg.frame, seg.ts_ns,  # type: ignore[arg-type]
                   inferred or ep.state is UNKNOWN, kind, None)

    def transition(self, conn: Connection, ep: Endpoint, ev: Ev, frame: int | None, ts: int,
                   *, inferred: bool, kind: str, text: str | None = None) -> None:
        """Move ``ep`` to where the table's cell for ``ev`` leads (it must lead somewhere),
        at ``ts``; ``text`` says more than the event's name where there is more to say;
        ``kind`` is what evidence would contradict it (see `contradict`)."""
        to = step(ep.state, ev)
        if not isinstance(to, State):
            raise ValueError(f"no transition for {ev} in {ep.state}")
        self._move(conn, ep, ev, to, frame, ts, inferred, kind, text)

    def _move(self, conn: Connection, ep: Endpoint, ev: Ev, to: State, frame: int | None,
              ts: int, inferred: bool, kind: str, text: str | None) -> None:
        """`transition` once the table gave ``to``."""
        tid = self.next_tid
        self.next_tid = tid + 1
        transition = _new(Transition, (tid, conn.conn_id, ts, ep.side, ep.addr, ep.port,
                                       ep.state, to, ev.value if text is None else text,
                                       frame, inferred, ev))
        ep.history.append(transition)  # and what undoing it needs (`Endpoint.undo`)
        ep.undo += (ep.since_ns, kind)
        ep.state = to
        ep.since_ns = ts
        ep.timer_gen += 1
        self.out.append(transition)
        self.arm(conn, ep)

    @staticmethod
    def decide(ep: Endpoint, ev: Ev) -> None:
        """``ev`` decides the side's initial state (`machine.DECIDING`): the state it had
        from the start, not a change, so no transition; a cell that stays is nothing."""
        to = step(ep.state, ev)
        if isinstance(to, State):
            ep.state = ep.initial_state = to

    def contradict(self, conn: Connection, ep: Endpoint, kind: str, seg: Segment,
                   reason: str, *, no_socket: bool = False) -> None:
        """Undo the latest deduction of ``kind`` about ``ep`` and everything after it."""
        index = ep.latest(kind)
        if index is None:
            return
        undone, since, kinds = ep.cut(index)
        for entry in reversed(undone):
            self.out.append(Retraction(entry.tid, conn.conn_id, ep.side, seg.ts_ns,
                                        seg.frame, reason))
        first = undone[0]
        ep.state = first.from_state
        ep.since_ns = since
        ep.timer_gen += 1
        if kind == "ack_fin":
            ep.fin_acked = False
        if "fin" in kinds:
            ep.got_fin = False
        if kind == "timeout":
            conn.timed_out = any(k == "timeout" and h.from_state != TIME_WAIT
                                 for ep_ in (conn.client, conn.server)
                                 for h, k in zip(ep_.history, ep_.kinds(), strict=True))
        self.note(conn, Oddity(conn.conn_id, seg.ts_ns, seg.frame, ep.side, Odd.RETRACTED,
                               f"{reason}: undid {len(undone)} transition(s)",
                               Retracted(kind, len(undone), no_socket)))
        self.arm(conn, ep)

    def odd(self, conn: Connection, ep: Endpoint, seg: Segment, name: Odd,
            detail: str) -> None:
        self.note(conn, Oddity(conn.conn_id, seg.ts_ns, seg.frame, ep.side, name, detail))

    def note(self, conn: Connection, oddity: Oddity) -> None:
        """Emit ``oddity``; kept on the connection for its `ConnectionEnded`."""
        self.out.append(oddity)
        if conn.notes is None:
            conn.notes = [oddity]
        else:
            conn.notes.append(oddity)
