"""What the tracker tells the world: events, and the final record of a connection.

Owns: the event types and `ConnectionRecord`. Plain, immutable data (named tuples: they
cost no more to make than a mutable object, where a frozen dataclass costs five times as
much per event); a consumer that needs another value makes a new event (``_replace``).
The facts of notes are frozen dataclasses. Consumers (anomaly detectors, DataFrame
builders, the live screen) read these and never call back into the tracker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from tcplife.core.machine import Ev
from tcplife.core.states import Odd, State


class ConnectionStarted(NamedTuple):
    """A new connection instance was seen (its first packet)."""

    conn_id: int
    ts_ns: int
    frame: int
    client_addr: str
    client_port: int
    server_addr: str
    server_port: int
    role_inferred: bool
    mid_stream: bool


class Transition(NamedTuple):
    """One side changed state. ``tid`` identifies it for a later `Retraction`."""

    tid: int
    conn_id: int
    ts_ns: int
    side: str
    addr: str
    port: int
    from_state: State
    to_state: State
    event: str
    frame: int | None
    inferred: bool
    #: the table's event (`tcplife.core.machine.Ev`) that made it: ``TABLE[(from_state,
    #: ev)] == to_state``; ``event`` is its text for people, which may say more
    ev: Ev | None = None


class Retraction(NamedTuple):
    """A transition deduced earlier turned out wrong: later packets contradicted it.

    Example: the capture saw the client's final ACK, so the server was deduced CLOSED; then
    the server retransmitted its FIN, so the ACK was lost after the capture point and the
    server is still in LAST_ACK. Consumers drop the transition ``tid``.
    """

    tid: int
    conn_id: int
    side: str
    ts_ns: int
    frame: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class RstSent:
    """What an `Odd.RST_SENT` note knows of the side that sent the RST."""

    state: State  #: the sender's state when it sent it
    unread: bool  #: the peer had sent payload the sender had not answered with its own
    ack: bool  #: RST-ACK (a socket aborting) rather than a bare RST (no socket)
    fin_sent: bool  #: the sender had sent its FIN before
    zero_window: bool  #: the last window it offered was zero: the application not reading
    probes: int  #: keep-alive probes it sent that the peer never answered
    probe_since: int | None  #: when the first of them was sent


@dataclass(frozen=True, slots=True)
class FinRtx:
    """An `Odd.FIN_RTX` note: the side's state, and whether the peer still misses data
    before the FIN (then the FIN goes unacknowledged for that, not for a lost ACK)."""

    state: State
    hole: bool


@dataclass(frozen=True, slots=True)
class AckLost:
    """An `Odd.ACK_LOST` note: which deduction a retransmission undid (``ack_syn``: the
    handshake's last ACK; ``ack_fin``: the ACK of the side's FIN)."""

    kind: str


@dataclass(frozen=True, slots=True)
class Retracted:
    """An `Odd.RETRACTED` note: what kind of deduction was undone, how many transitions,
    and whether a bare RST showed the side's kernel had no socket for the connection."""

    kind: str
    undone: int
    no_socket: bool = False


@dataclass(frozen=True, slots=True)
class PortReuse:
    """An `Odd.PORT_REUSE` note: the old instance, and each of its sockets that was still
    there, as (side, state); its sentence is rendered from these (`sentence`), so that a
    renumbered instance (the Dask engine) renders its new number."""

    old_conn_id: int
    sockets: tuple[tuple[str, str], ...]

    @property
    def states(self) -> tuple[str, ...]:
        return tuple(state for _, state in self.sockets)

    def sentence(self) -> str:
        live = " and ".join(f"{side} {state}" for side, state in self.sockets)
        return (f"new SYN reuses the 4-tuple of connection {self.old_conn_id}, whose {live} "
                "socket was still there")


Facts = RstSent | FinRtx | AckLost | Retracted | PortReuse


class Oddity(NamedTuple):
    """Something surprising the tracker noted and went past (Zeek calls these weirds):
    its kind (`Odd`), a sentence, and for the kinds the detectors reason on, typed facts."""

    conn_id: int
    ts_ns: int
    frame: int | None
    side: str
    name: Odd
    detail: str = ""
    facts: Facts | None = None


#: One fact an anomaly's sentence states about a side: (side, state, ts_ns), "this side
#: was in this state at this instant" (by the connection's transitions).
Claim = tuple[str, State, int]


class Anomaly(NamedTuple):
    """A lifecycle anomaly, with its evidence and a sentence a person can act on.

    ``severity`` (error, warning, info) follows the situation; ``confidence`` (certain,
    likely, possible) says how far the packets prove the cause the sentence names
    (`tcplife.core.states`). ``frames`` are the frames the verdict relies on (``frame`` first)
    and ``claims`` the states the sentence asserts: the data the sentence was rendered
    from, so that a reader (or a test) can check it against the transitions."""

    conn_id: int
    ts_ns: int
    side: str
    kind: str
    frame: int | None
    detail: str
    severity: str = "warning"
    confidence: str = "certain"
    frames: tuple[int, ...] = ()
    claims: tuple[Claim, ...] = ()


class ConnectionRecord(NamedTuple):
    """The final summary of one connection instance: one row of ``connections``."""

    conn_id: int
    ip_version: int
    client_addr: str
    client_port: int
    server_addr: str
    server_port: int
    first_ts_ns: int
    last_ts_ns: int
    first_frame: int
    last_frame: int
    packets: int
    client_packets: int
    server_packets: int
    client_bytes: int
    server_bytes: int
    #: each side's state at the end of the capture (its last frame): what ``ss`` showed
    #: when the capture stopped
    client_state: State
    server_state: State
    client_initial_state: State
    server_initial_state: State
    close_kind: str  #: a `CloseKind`
    role_inferred: bool
    mid_stream: bool
    client_last_ts_ns: int | None = None
    server_last_ts_ns: int | None = None
    client_last_payload_ns: int | None = None  #: when the client last sent payload
    server_last_payload_ns: int | None = None
    anomalies: tuple[str, ...] = ()  #: the kinds of the anomalies found on it
    #: what the tracker's observer summarised (`Watcher.summary`): with the engines' observer,
    #: a `tcplife.peers.PeerSummary` (what Zeek, Wireshark, Suricata would say)
    peers: Any = None
    #: where each side goes once the timeouts pending at the end have run, with no
    #: further packet (None: as ``client_state``/``server_state``)
    client_eventual_state: State | None = None
    server_eventual_state: State | None = None

    def settled(self, transitions: Sequence[Transition], end_ns: int) -> ConnectionRecord:
        """This record with ``client_state``/``server_state`` each side's state at
        ``end_ns`` by ``transitions`` (the connection's, in (ts_ns, tid) order), and the
        states after every transition kept as the eventual ones."""
        return self._replace(
            client_eventual_state=(self.client_state if self.client_eventual_state is None
                                   else self.client_eventual_state),
            server_eventual_state=(self.server_state if self.server_eventual_state is None
                                   else self.server_eventual_state),
            client_state=state_at_end(self.client_initial_state, transitions, "client",
                                      end_ns),
            server_state=state_at_end(self.server_initial_state, transitions, "server",
                                      end_ns))


def state_at_end(initial: State, transitions: Sequence[Transition], side: str,
                 end_ns: int) -> State:
    """``side``'s state at the end of the capture, at ``end_ns``: where its transitions
    lead in the order they were made (``tid``), but for timeouts dated after the end.
    Every transition a segment caused precedes the capture's end, whatever its stamp
    (stamps may step back); with stamps in order this is the last transition dated at or
    before ``end_ns``, which is what ``state_at`` gives."""
    state, latest = initial, -1
    for t in transitions:
        if t.side == side and t.tid > latest and (t.frame is not None or t.ts_ns <= end_ns):
            state, latest = t.to_state, t.tid
    return state


class ConnectionEnded(NamedTuple):
    """A connection instance is finished (closed and quiet, superseded, or input ended).

    With what the detectors judge it by: its transitions (the retracted ones left out, in
    (ts_ns, tid) order) and its notes, the very events emitted before, so that a consumer
    need not keep a copy of every open connection's."""

    record: ConnectionRecord
    transitions: Sequence[Transition] = ()
    notes: Sequence[Oddity] = ()
    #: ended by the end of input (`Tracker.finish`), perhaps with timeouts still pending
    #: then: its record's states are those at the end the tracker knew, which the caller
    #: may settle at the capture's true end (`ConnectionRecord.settled`, a new record)
    at_end: bool = False


class InputEnded(NamedTuple):
    """The end of input: the capture ends at ``ts_ns`` (its last frame, or the end a live
    run stopped at). `Tracker.finish` emits it first, before the events of the timers it
    fires and of the connections still open: what follows is the end's."""

    ts_ns: int


class ClockAdvanced(NamedTuple):
    """The input has reached ``ts_ns`` without a packet to show it: the live mode's wall
    clock (`Tracker.advance`, a flow given up as it stands now), or the running capture
    end an engine computed elsewhere (the Dask dataset). Made by the engine that drives
    the tracker, for the detectors; the tracker does not emit it."""

    ts_ns: int


Event = (ConnectionStarted | Transition | Retraction | Oddity | ConnectionEnded | Anomaly
         | InputEnded | ClockAdvanced)
