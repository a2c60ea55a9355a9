"""One side of a connection as an observer reconstructs it.

Owns: the per-side bookkeeping the tracker needs (state, sequence space seen, what this
side is believed to have received, the transitions that may still be retracted) and the
pure helpers that read it. Knows nothing of captures or of the other side's object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tcplife.seq import seq_add, seq_diff
from tcplife.states import State


@dataclass(slots=True)
class HistoryEntry:
    """A transition emitted for this side that a later contradiction may undo."""

    tid: int
    from_state: State
    from_since_ns: int
    kind: str  #: what evidence would contradict it: fin, ack_fin, ack_syn, synack, timeout, ""


@dataclass(slots=True)
class Endpoint:
    side: str
    addr: str
    port: int
    state: State
    initial_state: State
    since_ns: int = 0  #: when the current state began
    isn: int | None = None  #: sequence number of this side's SYN
    snd_nxt: int | None = None  #: highest sequence number sent + 1 (SYN and FIN count)
    data_hi: int | None = None  #: end of the highest payload byte sent
    fin_seq: int | None = None  #: sequence number this side's FIN occupies
    max_ack: int | None = None  #: highest acknowledgment this side sent
    window: int = 65535
    wscale: int = -1
    bytes: int = 0  #: payload bytes, retransmissions counted once
    packets: int = 0
    fin_tx_ns: list[int] = field(default_factory=list)  #: times this side sent its FIN
    synack_tx_ns: list[int] = field(default_factory=list)  #: times this side sent SYN-ACK
    first_syn_ns: int | None = None
    # What the observer believes this side has received from its peer.
    got_fin: bool = False  #: the peer's FIN
    fin_acked: bool = False  #: an ACK of this side's FIN
    # A deduction of this kind was contradicted once: the peer's ACKs for it get lost
    # after the capture point, so further ones are held until this side goes quiet.
    distrust: set[str] = field(default_factory=set)
    held: tuple[int, int, str] | None = None  #: (ts_ns, frame, kind) of a held deduction
    not_orphan: bool = False  #: proved alive after its FIN (ACKs new data): half close
    history: list[HistoryEntry] = field(default_factory=list)
    timer_gen: int = 0  #: bumped on every state change; stale timers compare unequal
    held_gen: int = 0

    @property
    def fin_end(self) -> int | None:
        return None if self.fin_seq is None else seq_add(self.fin_seq, 1)

    def fin_rtx_interval_ns(self) -> int:
        """Gap between this side's last two FIN transmissions (0 if fewer than two)."""
        if len(self.fin_tx_ns) < 2:
            return 0
        return self.fin_tx_ns[-1] - self.fin_tx_ns[-2]

    def synack_rtx_interval_ns(self) -> int:
        if len(self.synack_tx_ns) < 2:
            return 0
        return self.synack_tx_ns[-1] - self.synack_tx_ns[-2]

    def covers(self, ack: int, end: int | None) -> bool:
        """Does acknowledgment ``ack`` cover sequence space up to ``end``?"""
        return end is not None and seq_diff(ack, end) >= 0
