"""One side of a connection as an observer reconstructs it.

Owns: the per-side bookkeeping the tracker needs (state, sequence space seen, TCP
timestamps, what this side is believed to have received, the transitions that may still be
retracted) and the pure helpers that read it. Knows nothing of captures or of the other
side's object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tcplife.core.events import Transition
from tcplife.core.seq import seq_add, seq_diff
from tcplife.core.states import State


@dataclass(slots=True)
class Endpoint:
    side: str
    addr: str
    port: int
    state: State
    initial_state: State
    since_ns: int = 0  #: when the current state began
    isn: int | None = None  #: sequence number of this side's SYN
    alt_isn: int | None = None  #: another ISN this side's SYN-ACKs carried (see tracker)
    snd_nxt: int | None = None  #: highest sequence number sent + 1 (SYN and FIN count)
    data_hi: int | None = None  #: end of the highest payload byte sent
    fin_seq: int | None = None  #: sequence number this side's FIN occupies
    fin_seg: tuple[int, int] | None = None  #: (seq, ts_ns) of the segment first carrying it
    #: the peer acknowledged less than that segment's start after it was sent: data before
    #: the FIN was missing, so the FIN's retransmissions are loss recovery, not a lost ACK
    fin_hole: bool = False
    max_ack: int | None = None  #: highest acknowledgment this side sent
    window: int = 65535
    wscale: int = -1
    bytes: int = 0  #: payload bytes, retransmissions counted once
    packets: int = 0
    first_syn_ns: int | None = None  #: when this side first sent SYN
    last_syn_ns: int | None = None
    first_synack_ns: int | None = None  #: when this side first sent SYN-ACK
    # What the observer believes this side has received from its peer.
    got_fin: bool = False  #: the peer's FIN
    fin_acked: bool = False  #: an ACK of this side's FIN
    #: (ts_ns, frame) of the latest peer segment whose ACK covered this side's SYN / FIN
    last_syn_cover: tuple[int, int] | None = None
    last_fin_cover: tuple[int, int] | None = None
    #: capture point -> this side -> capture point round trip, from the handshake
    rtt_ns: int | None = None
    last_ns: int | None = None  #: when this side last sent anything
    #: (seq, ack, flags, payload length, window) of the last segment, to spot duplicates
    last_key: tuple[int, int, int, int, int] | None = None
    last_data_ns: int | None = None  #: when this side last sent payload or its FIN
    last_fin_ns: int | None = None  #: when this side last sent its FIN
    last_payload_ns: int | None = None  #: when this side last sent payload
    rtx_run: int = 0  #: retransmissions of old data since this side last sent new data
    rtx_run_start_ns: int | None = None
    silence_noted: bool = False
    #: keep-alive probes sent since the peer last sent anything, and when the first was
    probes: int = 0
    probe_since_ns: int | None = None
    not_orphan: bool = False  #: proved alive after its FIN (ACKs new data): half close
    #: this side's transitions that a later contradiction may undo: all of them, the
    #: retracted ones removed
    history: list[Transition] = field(default_factory=list)
    #: beside each of `history`, what undoing it needs, flat (two items per transition:
    #: no tuple each): when the side had entered its ``from_state``, and what evidence
    #: would contradict it (fin, ack_fin, ack_syn, synack, timeout, or "" for none). Read
    #: it through `latest`, `last_kind`, `kinds` and `cut` (`Changes` appends to it).
    undo: list[int | str] = field(default_factory=list)
    timer_gen: int = 0  #: bumped on every state change; stale timers compare unequal
    # TCP timestamps (RFC 7323), -1 when the segments carried none. Kept only from the
    # first FIN of the connection on (its segments all go through `Tracker.feed`, none
    # through the bulk absorb paths), which is all the rules that use them need.
    tsval_hi: int = -1  #: the newest TSval this side sent since the connection's first FIN
    fin_tsval: int = -1  #: the TSval of the segment that last carried this side's FIN

    def latest(self, kind: str) -> int | None:
        """The index in `history` of the latest transition ``kind`` would contradict."""
        undo = self.undo
        for index in range(len(undo) - 1, 0, -2):
            if undo[index] == kind:
                return index // 2
        return None

    def last_kind(self) -> str | None:
        """What would contradict the latest transition (None: no history)."""
        return self.undo[-1] if self.undo else None  # type: ignore[return-value]

    def kinds(self) -> list[str]:
        """What would contradict each transition of `history`, in order."""
        return self.undo[1::2]  # type: ignore[return-value]

    def cut(self, index: int) -> tuple[list[Transition], int, list[str]]:
        """Remove the transitions from ``index`` on: them, when the side had entered the
        state the first of them left, and what would have contradicted each."""
        undone, since = self.history[index:], self.undo[2 * index]
        kinds = self.undo[2 * index + 1::2]
        del self.history[index:], self.undo[2 * index:]
        return undone, since, kinds  # type: ignore[return-value]

    @property
    def fin_end(self) -> int | None:
        return None if self.fin_seq is None else seq_add(self.fin_seq, 1)

    def crossing_window_ns(self) -> int:
        """How long after the capture saw a segment towards this side a segment from this
        side may still have been sent before that one arrived (they crossed)."""
        return (3 * self.rtt_ns) // 2 + 1_000_000 if self.rtt_ns is not None else 1_000_000

    def covers(self, ack: int, end: int | None) -> bool:
        """Does acknowledgment ``ack`` cover sequence space up to ``end``?"""
        return end is not None and seq_diff(ack, end) >= 0
