"""What must hold for any segment sequence fed to the tracker, however hostile.

Owns: `segments_from` (bytes -> a segment sequence on a few 4-tuples, with sequence and
acknowledgment numbers near each side's recent ones so that the tracker's interesting
branches are reachable, plus arbitrary flags, wrap-around, time jumps both ways, port
reuse) and `check_events` (the event stream obeys the state table). Used by the
hypothesis property tests and by the atheris harness alike.

The rules checked on every event:

* every state is a `State`;
* each side's transitions chain: ``from_state`` is the side's current state (the previous
  transition's ``to_state``, or what a retraction restored);
* every transition is a cell of `tcplife.core.machine.TABLE`: ``TABLE[(from_state, ev)]``
  is its ``to_state``, for its table event ``ev`` (whatever its text says);
* a retraction undoes the side's latest standing transition;
* the final record's states are the sides' current states, and every connection started
  ends exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tcplife.core.events import ConnectionEnded, ConnectionStarted, Retraction, Transition
from tcplife.core.machine import TABLE, Ev
from tcplife.core.segment import Segment
from tcplife.core.states import State

#: states a timer ends: TIME_WAIT, orphaned FIN_WAIT_2, SYN and SYN-ACK retries, and data
#: retransmitted into silence (tcp_retries2) in the states that send it
TIMER_STATES = frozenset({State.TIME_WAIT, State.FIN_WAIT_2, State.SYN_SENT,
                          State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT,
                          State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK})
EVENTS = {str(ev): ev for ev in Ev}
HOSTS = [("10.0.0.1", 40000), ("10.0.0.2", 80), ("10.0.0.1", 40001), ("10.0.0.3", 80),
         ("fd00::1", 443), ("fd00::2", 50000)]
MASK = 0xFFFFFFFF
#: SYN, SYN-ACK, ACK, PSH-ACK, FIN-ACK, RST-ACK, RST, ACK
COMMON_FLAGS = (0x02, 0x12, 0x10, 0x18, 0x11, 0x14, 0x04, 0x10)


class Reader:
    """Draws small integers from a byte string; zeros once it runs out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def u32(self) -> int:
        return int.from_bytes(bytes(self.byte() for _ in range(4)), "big")

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)


def segments_from(data: bytes, limit: int = 200) -> list[Segment]:
    """A hostile segment sequence from `data` (deterministic)."""
    r = Reader(data)
    sent: dict[tuple[str, int], int] = {}  # each endpoint's latest sequence number
    ts = 1_700_000_000_000_000_000
    out: list[Segment] = []
    while not r.done and len(out) < limit:
        op = r.byte()
        pair = r.byte()
        a = HOSTS[(pair & 7) % len(HOSTS)]
        b = HOSTS[(pair >> 3 & 7) % len(HOSTS)]
        if a == b or (":" in a[0]) != (":" in b[0]):
            b = HOSTS[(HOSTS.index(a) ^ 1)]
        flags = r.byte() if op & 1 else COMMON_FLAGS[op >> 1 & 7]
        base = sent.setdefault(a, r.u32() if op & 0x80 else 1000 * (HOSTS.index(a) + 1))
        delta = r.byte()
        seq = (base + (delta - 8 if op & 0x40 else delta)) & MASK if not op & 0x20 else r.u32()
        peer = sent.get(b, 0)
        back = r.byte()
        ack = (peer + 1 - (back & 15)) & MASK if not back & 0x80 else r.u32()
        length = r.byte() % 5 * 100 if flags & 0x10 or not flags & 0x07 else 0
        sent[a] = (seq + length + (1 if flags & 0x03 else 0)) & MASK
        step = r.byte()
        if step == 0xFF:
            ts -= 5_000_000_000  # back in time
        elif step >= 0xF0:
            ts += (step - 0xEF) * 40_000_000_000  # past a timeout
        else:
            ts += step * 1_000_000
        out.append(Segment(len(out) + 1, ts, 6 if ":" in a[0] else 4, a[0], a[1], b[0], b[1],
                           seq, ack, flags, length, r.byte() << 8, r.byte() % 16 - 1))
    return out


@dataclass
class _Side:
    state: State | None = None  # None until its first transition shows the initial state
    stack: list[Transition] = field(default_factory=list)


def allowed(t: Transition) -> bool:
    """Whether the state table allows `t`: the cell of its table event leads to its
    ``to_state`` (timeouts, new incarnations and a TIME_WAIT taking a SYN are cells too)."""
    return t.ev is not None and TABLE[(t.from_state, t.ev)] == t.to_state


def check_events(events: list[object]) -> None:
    """Raise AssertionError at the first event that breaks a rule of the module docstring."""
    sides: dict[tuple[int, str], _Side] = {}
    started: set[int] = set()
    ended: set[int] = set()
    for ev in events:
        if isinstance(ev, ConnectionStarted):
            assert ev.conn_id not in started, f"connection {ev.conn_id} started twice"
            started.add(ev.conn_id)
        elif isinstance(ev, Transition):
            assert ev.conn_id in started and ev.conn_id not in ended, ev
            assert isinstance(ev.from_state, State) and isinstance(ev.to_state, State), ev
            side = sides.setdefault((ev.conn_id, ev.side), _Side())
            if side.state is not None:
                assert ev.from_state == side.state, f"{ev} does not chain from {side.state}"
            assert allowed(ev), f"transition not in the table: {ev}"
            side.state = ev.to_state
            side.stack.append(ev)
        elif isinstance(ev, Retraction):
            side = sides.get((ev.conn_id, ev.side))
            assert side is not None and side.stack, f"retraction of nothing: {ev}"
            undone = side.stack.pop()
            assert undone.tid == ev.tid, f"{ev} is not the latest standing transition"
            side.state = undone.from_state
        elif isinstance(ev, ConnectionEnded):
            rec = ev.record
            assert rec.conn_id in started and rec.conn_id not in ended, rec
            ended.add(rec.conn_id)
            # The eventual state is where every standing transition leads. The state at the
            # end is the one standing at the capture's end: for a connection ended before
            # the end of input, the same; else the state at some instant from its last
            # packet on (the capture's end is not known here).
            last_ns = rec.last_ts_ns
            for name, at_end, eventual, initial in (
                    ("client", rec.client_state, rec.client_eventual_state,
                     rec.client_initial_state),
                    ("server", rec.server_state, rec.server_eventual_state,
                     rec.server_initial_state)):
                assert isinstance(at_end, State) and isinstance(eventual, State)
                assert isinstance(initial, State)
                side = sides.get((rec.conn_id, name), _Side())
                if side.stack:
                    assert side.stack[0].from_state == initial, (rec, side.stack[0])
                    assert eventual == side.state, (rec, side.state)
                else:
                    assert eventual == initial, rec
                if not ev.at_end:
                    assert at_end == eventual, rec
                    continue
                # in the order the transitions were made, but timeouts after the end
                ends = {last_ns, *(t.ts_ns for t in side.stack if t.ts_ns > last_ns)}
                possible = set()
                for end in ends:
                    made = [t for t in side.stack if t.frame is not None or t.ts_ns <= end]
                    possible.add(max(made, key=lambda t: t.tid).to_state if made else initial)
                assert at_end in possible, (rec, possible)
    assert ended == started, f"connections never ended: {sorted(started - ended)}"
