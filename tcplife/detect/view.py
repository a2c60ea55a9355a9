"""What every detector sees and shares: `ConnView` (one finished connection: its record, its
final transitions with retractions applied, the tracker's notes), the `Detector` protocol,
`PerConnection` (a detector that judges each connection on its own), and the helpers the
sentences use (`clock`, `secs`, `other_side`). Knows nothing of any one anomaly kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from tcplife.core.events import Anomaly, Claim, ConnectionRecord, Oddity, Transition
from tcplife.core.options import NS, Options
from tcplife.core.states import CERTAIN, CLIENT, DEFAULT_SEVERITY, SERVER, WARNING, State

#: a time after every other: the end of an interval still open, the capture end of a
#: connection ended before its input did
FOREVER = 1 << 62


def clock(ts_ns: int) -> str:
    """``12:00:03.120`` (UTC time of day, milliseconds) for sentences."""
    dt = datetime.fromtimestamp(ts_ns // NS, tz=timezone.utc)
    return f"{dt:%H:%M:%S}.{(ts_ns % NS) // 1_000_000:03d}"


def secs(ns: int) -> str:
    s = ns / NS
    return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s" if s >= 1 else f"{s * 1000:.0f} ms"


@dataclass
class ConnView:
    """One finished connection as the detectors see it."""

    record: ConnectionRecord
    transitions: list[Transition]
    notes: list[Oddity]
    capture_end_ns: int
    options: Options

    def who(self, side: str) -> str:
        r = self.record
        addr, port = (r.client_addr, r.client_port) if side == CLIENT else (r.server_addr,
                                                                              r.server_port)
        return f"{side} {addr}:{port}" if ":" not in addr else f"{side} [{addr}]:{port}"

    def side_transitions(self, side: str) -> list[Transition]:
        return [t for t in self.transitions if t.side == side]

    def named(self, name: str, side: str | None = None) -> list[Oddity]:
        return [n for n in self.notes if n.name == name and (side is None or n.side == side)]

    def state_at(self, side: str, ts_ns: int) -> State:
        state = getattr(self.record, f"{side}_initial_state")
        for t in self.side_transitions(side):
            if t.ts_ns > ts_ns:
                break
            state = t.to_state
        return state

    def anomaly(self, ts_ns: int, side: str, kind: str, frame: int | None,
                detail: str, *, severity: str | None = None, confidence: str = CERTAIN,
                frames: Iterable[int | None] = (),
                claims: Iterable[Claim] = ()) -> Anomaly:
        """An anomaly row of this connection: ``severity`` defaults to the kind's
        (`DEFAULT_SEVERITY`); ``frames`` beside ``frame`` are the other evidence."""
        evidence = tuple(dict.fromkeys(f for f in (frame, *frames) if f is not None))
        return Anomaly(self.record.conn_id, ts_ns, side, kind, frame, detail,
                       severity or DEFAULT_SEVERITY.get(kind, WARNING), confidence, evidence,
                       tuple(claims))


class Detector(Protocol):
    def on_connection(self, view: ConnView) -> Iterable[Anomaly]: ...

    def finish(self, capture_end_ns: int) -> Iterable[Anomaly]: ...


class PerConnection:
    """A detector that judges each connection on its own."""

    def on_connection(self, view: ConnView) -> Iterable[Anomaly]:
        raise NotImplementedError

    def finish(self, capture_end_ns: int) -> Iterable[Anomaly]:
        return ()


def other_side(side: str) -> str:
    """The other side of the connection: client for server, server for client."""
    return SERVER if side == CLIENT else CLIENT
