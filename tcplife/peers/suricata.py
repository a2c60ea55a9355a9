"""Suricata's view of one connection: the single TCP session state its flow log reports.

Owns: `SuricataRecorder`, a small replay of the session state machine of Suricata's stream
engine (``src/stream-tcp.c``: ``StreamTcpPacketStateNone`` ... ``StreamTcpPacketStateTimeWait``,
``StreamTcpHandleFin``), with the names of ``TcpState`` as eve.json writes them (``none,
syn_sent, syn_recv, established, fin_wait1, fin_wait2, time_wait, last_ack, close_wait,
closing, closed``). Knows nothing of tcplife's per-side states.

Suricata keeps one state per session, named from the server's point of view: the client's
FIN makes it ``close_wait`` (the server must now close), the server's FIN ``fin_wait1``.

Interpretations (Suricata's defaults, and where this model is simpler than the engine):

- ``stream.midstream`` is off by default: a session whose first packet is not a SYN is not
  picked up and stays ``none`` (until a SYN on the flow starts one).
- Sequence and acknowledgment validation is reduced to what decides the state: an ACK in
  ``fin_wait1`` must come from the client in order (``seq == next_seq``, as the engine
  checks); in ``last_ack`` the client's ACK must be at its next sequence number or one
  beyond; an RST in ``syn_sent`` must acknowledge the SYN. Other RSTs are accepted.
- Timeouts do not change the state: a flow that times out is logged in its last state.
"""

from __future__ import annotations

from tcplife.core.segment import ACK, FIN, RST, SYN, Segment

NONE, SYN_SENT, SYN_RECV, ESTABLISHED = "none", "syn_sent", "syn_recv", "established"
FIN_WAIT1, FIN_WAIT2, TIME_WAIT, LAST_ACK = "fin_wait1", "fin_wait2", "time_wait", "last_ack"
CLOSE_WAIT, CLOSING, CLOSED = "close_wait", "closing", "closed"

#: Every value of the ``suricata_state`` column, in Suricata's TcpState order.
STATES = (NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT1, FIN_WAIT2, TIME_WAIT,
          LAST_ACK, CLOSE_WAIT, CLOSING, CLOSED)

_MASK = 0xFFFFFFFF


def _gt(a: int, b: int) -> bool:
    return 0 < ((a - b) & _MASK) < 0x80000000


class SuricataRecorder:
    """The session state for one connection instance."""

    __slots__ = ("state", "client_is_client", "isn", "nxt_client", "nxt_server")

    def __init__(self) -> None:
        self.state = NONE
        self.client_is_client = True  #: Suricata's client is tcplife's client
        self.isn: int | None = None  #: the client's SYN
        self.nxt_client: int | None = None  #: next sequence number from each side (no FIN)
        self.nxt_server: int | None = None

    def process(self, seg: Segment, from_client: bool) -> None:
        if self.state is ESTABLISHED and not seg.flags & (SYN | FIN | RST):
            self._advance(seg, from_client == self.client_is_client)  # nothing changes
            return
        if self.state == NONE:
            if seg.flags & (SYN | ACK | RST) == SYN:
                self.client_is_client = from_client
                self.isn = seg.seq
                self.state = SYN_SENT
                self._advance(seg, True)
            return
        to_server = from_client == self.client_is_client
        self._step(seg, to_server)
        self._advance(seg, to_server)

    def _step(self, seg: Segment, to_server: bool) -> None:
        flags = seg.flags
        state = self.state
        if state == CLOSED:
            return
        if flags & RST:
            if state == SYN_SENT:
                if not to_server and flags & ACK and self.isn is not None \
                        and seg.ack == (self.isn + 1) & _MASK:
                    self.state = CLOSED
            else:
                self.state = CLOSED
            return
        if state == SYN_SENT:
            if flags & SYN and not to_server:
                # SYN-ACK (or the server's own SYN: a 4-way handshake) answers the SYN.
                self.state = SYN_RECV
            return
        if state == SYN_RECV:
            if to_server and flags & ACK and not flags & SYN:
                self.state = ESTABLISHED
                state = ESTABLISHED  # a FIN on the same packet is handled below
            else:
                return
        fin = flags & FIN
        if state == ESTABLISHED:
            if fin:
                self.state = CLOSE_WAIT if to_server else FIN_WAIT1
        elif state == FIN_WAIT1:
            if fin and to_server:
                self.state = TIME_WAIT if flags & ACK else CLOSING
            elif not fin and to_server and flags & ACK and seg.payload_len == 0 \
                    and self._at_next(seg, True):
                self.state = FIN_WAIT2
        elif state == FIN_WAIT2:
            if fin and to_server:
                self.state = TIME_WAIT
        elif state == CLOSE_WAIT:
            if fin and not to_server:
                self.state = LAST_ACK
        elif state == LAST_ACK:
            if to_server and flags & ACK and not fin and self.nxt_client is not None \
                    and seg.seq in (self.nxt_client, (self.nxt_client + 1) & _MASK):
                self.state = CLOSED
        elif state == CLOSING:
            if flags & ACK and not fin:
                self.state = TIME_WAIT
        elif state == TIME_WAIT and flags & ACK and not fin:
            self.state = CLOSED

    def _at_next(self, seg: Segment, to_server: bool) -> bool:
        return seg.seq == (self.nxt_client if to_server else self.nxt_server)

    def _advance(self, seg: Segment, to_server: bool) -> None:
        """Remember the next sequence number each side is expected to send (data and SYN
        count, the FIN does not, as in StreamTcpHandleFin), after the packet's state
        change was decided."""
        if seg.flags & RST:
            return
        end = (seg.seq + seg.payload_len + (1 if seg.flags & SYN else 0)) & _MASK
        if to_server:
            if self.nxt_client is None or _gt(end, self.nxt_client):
                self.nxt_client = end
        elif self.nxt_server is None or _gt(end, self.nxt_server):
            self.nxt_server = end

    # ------------------------------------------------------------------ fast path
    def quiet(self) -> bool:
        """An in-order ACK or data segment changes nothing but `absorbed` restores."""
        return self.state in (ESTABLISHED, NONE)

    def absorbed(self, client_nxt: int | None, server_nxt: int | None) -> None:
        if self.state == NONE:
            return
        if self.client_is_client:
            self.nxt_client, self.nxt_server = client_nxt, server_nxt
        else:
            self.nxt_client, self.nxt_server = server_nxt, client_nxt
