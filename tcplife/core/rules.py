"""What one segment tells about each side: the per-segment rules of the tracker.

Owns: `SegmentRules.process`, which reads a segment of a known connection instance in
three steps: what it says about what its sender has received (evidence that may
contradict earlier deductions), the sender's own change (SEND_* events of the table), and
what the receiver is deduced to have received (RECV_* events); plus the bookkeeping of
sequence space, keep-alive probes, retransmission runs and half closes. Every state change
goes through `Changes` (the table); the decisions come from `tcplife.core.evidence`.
"""

from __future__ import annotations

from collections.abc import Callable

from tcplife.core.changes import Changes
from tcplife.core.connection import Connection
from tcplife.core.endpoint import Endpoint
from tcplife.core.events import AckLost, FinRtx, Oddity, RstSent
from tcplife.core.evidence import piggybacked_ack, rst_acceptable, sent_before_fin, server_start
from tcplife.core.machine import (
    RECV_ACK_FIN,
    RECV_ACK_SYN,
    RECV_FIN,
    RECV_RST,
    RECV_SYN,
    RECV_SYNACK,
    SEND_ACK,
    SEND_FIN,
    SEND_RST,
    SEND_SYN,
    SEND_SYNACK,
    TIMEOUT,
    Ev,
    Stay,
    step,
)
from tcplife.core.options import NS, Options
from tcplife.core.segment import ACK, FIN, RST, SYN, Segment
from tcplife.core.seq import seq_add, seq_diff, seq_max
from tcplife.core.states import (
    CLOSE_WAIT,
    CLOSED,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LISTEN,
    SERVER,
    SYN_RECEIVED,
    SYN_SENT,
    TIME_WAIT,
    UNKNOWN,
    Odd,
    State,
)
from tcplife.core.timers import RTX

#: Identical segments from one side closer than this are one packet captured twice.
DUPLICATE_NS = 100_000


class SegmentRules:
    """The per-segment rules, over the `Changes` they record into."""

    __slots__ = ("changes", "options", "push_timer")

    def __init__(self, changes: Changes, options: Options,
                 push_timer: Callable[[int, Connection, str, int, str], None]) -> None:
        self.changes = changes
        self.options = options
        #: arms a timer (deadline, connection, side, generation, kind): the tracker's
        self.push_timer = push_timer

    def process(self, conn: Connection, seg: Segment) -> bool:
        """Apply ``seg`` to ``conn``. False when it stopped early (a captured duplicate,
        a SYN-ACK with another ISN): the caller's end-of-segment checks are skipped."""
        flags = seg.flags
        if seg.src == conn.client.addr and seg.sport == conn.client.port:
            a, b = conn.client, conn.server
        else:
            a, b = conn.server, conn.client
        ts, frame = seg.ts_ns, seg.frame
        conn.packets += 1
        conn.last_ts = max(conn.last_ts, ts)
        conn.last_frame = frame
        a.packets += 1
        key = (seg.seq, seg.ack, flags, seg.payload_len, seg.window)
        if key == a.last_key and a.last_ns is not None and ts - a.last_ns <= DUPLICATE_NS:
            # No TCP resends an identical segment within microseconds (RTO >= 200 ms, TLP
            # >= 10 ms): the capture saw the packet twice (two interfaces, a SPAN port).
            self.changes.odd(conn, a, seg, Odd.CAPTURE_DUPLICATE, "the same segment captured twice")
            return False
        a.last_key = key
        a.last_ns = ts
        syn, fin, rst, ackf = flags & SYN, flags & FIN, flags & RST, flags & ACK
        if seg.tsval >= 0 and (fin or a.fin_seq is not None or b.fin_seq is not None) \
                and (a.tsval_hi < 0 or seq_diff(seg.tsval, a.tsval_hi) > 0):
            a.tsval_hi = seg.tsval
        if not (syn or rst):
            self._note_data_facts(conn, a, seg)

        if a.state == UNKNOWN and not a.history and not conn.mid_stream \
                and a is conn.server and not (rst and not rst_acceptable(a, b, seg)):
            # (an RST the client would drop tells nothing)
            self.changes.decide(a, server_start(seg))
        # 1. What this segment says about what its sender has received.
        if ackf and b.fin_seg is not None and not b.fin_hole \
                and seq_diff(seg.ack, b.fin_seg[0]) < 0 \
                and ts - b.fin_seg[1] > a.crossing_window_ns():
            b.fin_hole = True  # a's ACK, sent after the FIN reached it, shows a gap
        if a.fin_seg is not None and seg.payload_len and seq_diff(seg.seq, a.fin_seg[0]) < 0:
            a.fin_hole = True  # a resends data from before its FIN: the peer missed it
        crossed = False
        if not rst:
            crossed = self._check_evidence(conn, a, b, seg)
        elif flags & ACK and a.got_fin and a.state not in (CLOSED, UNKNOWN) \
                and not a.covers(seg.ack, b.fin_end):
            # An RST-ACK carries RCV.NXT too (tcp_send_active_reset): sent before the FIN.
            self.changes.contradict(conn, a, "fin", seg,
                             "its RST does not acknowledge the peer's FIN: not received yet")

        if syn and fin and not rst and a.state in (CLOSED, UNKNOWN, SYN_SENT):
            # no stack opens a connection with SYN+FIN (Linux drops it in LISTEN): a probe
            self.changes.odd(conn, a, seg, Odd.SYN_WITH_FIN, "SYN with FIN: a scan probe")

        # 2. The sender's own change.
        if rst:
            self._send_rst(conn, a, b, seg)
        elif syn:
            if ackf and a.isn is not None and a.isn != seg.seq:
                # SYN-ACKs with two ISNs for one SYN: two responders (a load balancer,
                # anycast) or a request restarted. While in SYN_RECEIVED, the client's ACK
                # shows which one it took; later, the other one is only an oddity.
                if a.alt_isn != seg.seq:
                    self.changes.odd(conn, a, seg, Odd.SYNACK_ISN_CHANGED,
                              f"SYN-ACK with ISN {seg.seq}, earlier {a.isn}")
                a.alt_isn = seg.seq
                self._recv(conn, a, b, seg)  # the client may take either
                return False
            is_rtx = a.isn is not None and a.isn == seg.seq
            if is_rtx:
                self.changes.odd(conn, a, seg, Odd.SYNACK_RTX if ackf else Odd.SYN_RTX,
                          "SYN-ACK retransmitted" if ackf else "SYN retransmitted")
            if ackf:
                if a.first_synack_ns is None:
                    a.first_synack_ns = ts
                    if b.last_syn_ns is not None and a.rtt_ns is None:
                        a.rtt_ns = ts - b.last_syn_ns
            else:
                if a.first_syn_ns is None:
                    a.first_syn_ns = ts
                a.last_syn_ns = ts
            if a.isn is None:
                a.isn = seg.seq
            if not is_rtx or a.state in (CLOSED, LISTEN, UNKNOWN):
                self.changes.apply(conn, a, SEND_SYNACK if ackf else SEND_SYN, seg,
                            inferred=False)
        elif fin:
            fin_seq = seq_add(seg.seq, seg.payload_len)
            cell = step(a.state, SEND_FIN)
            if a.fin_seq is None and isinstance(cell, Stay) and cell.note:
                # e.g. a FIN before the handshake: noted, not taken as this side's FIN.
                self.changes.odd(conn, a, seg, cell.note, f"{SEND_FIN} in {a.state}")
            elif a.fin_seq is None:
                a.fin_seq = fin_seq
                a.fin_seg = (seg.seq, ts)
                a.last_data_ns = ts
                self.changes.apply(conn, a, SEND_FIN, seg, inferred=a.state == UNKNOWN)
                if b.max_ack is not None and a.covers(b.max_ack, a.fin_end):
                    # The capture reordered them: the peer's ACK of this FIN came first.
                    self._deduce_ack(conn, a, seg, RECV_ACK_FIN, "ack_fin")
            elif fin_seq == a.fin_seq and not piggybacked_ack(a, seg):
                # hole: the peer still misses data before the FIN, which is why the FIN
                # goes unacknowledged (it is resent with or after that data).
                self.changes.note(conn, Oddity(conn.conn_id, ts, frame, a.side, Odd.FIN_RTX,
                                        f"FIN retransmitted in {a.state}",
                                        FinRtx(a.state, a.fin_hole)))
            else:
                self.changes.odd(conn, a, seg, Odd.FIN_MOVED,
                          f"FIN at sequence {fin_seq} after an earlier FIN at {a.fin_seq}")
        else:
            if a.rtt_ns is None and b.first_synack_ns is not None and ackf:
                a.rtt_ns = ts - b.first_synack_ns  # the ACK answering the SYN-ACK
            if a.state == UNKNOWN:
                self.changes.apply(conn, a, SEND_ACK, seg, inferred=True)
            elif a.state in (SYN_SENT, SYN_RECEIVED) and ackf \
                    or a.state == CLOSED:
                self.changes.apply(conn, a, SEND_ACK, seg, inferred=False)
        if ackf and not rst and not fin and a.state in (FIN_WAIT_1, FIN_WAIT_2) \
                and a.max_ack is not None and not a.not_orphan:
            self._check_half_close(conn, a, b, seg)
        if fin and not rst:
            a.last_fin_ns = ts
            a.fin_tsval = seg.tsval
        self._track_sequence(a, seg)

        # 3. What the receiver is deduced to have received.
        if rst:
            self._recv_rst(conn, a, b, seg)
        else:
            self._recv(conn, a, b, seg)
        if crossed:
            self._fin_after(conn, a, b, seg)
        return True

    def _note_data_facts(self, conn: Connection, a: Endpoint, seg: Segment) -> None:
        """Keep-alive probes, payload timing and retransmissions into silence."""
        if a.snd_nxt is None:
            return
        behind = seq_diff(a.snd_nxt, seg.seq)
        peer = conn.peer(a)
        if seg.payload_len <= 1 and behind == 1 and not seg.flags & FIN \
                and a.state in (ESTABLISHED, CLOSE_WAIT) and peer.window:
            # seq = SND.NXT - 1 with at most one byte: a keep-alive probe (RFC 9293 3.8.4);
            # against a zero window the same shape is a window probe.
            self.changes.odd(conn, a, seg, Odd.KEEPALIVE_PROBE, "keep-alive probe")
            if a.probe_since_ns is None or (peer.last_ns is not None
                                            and peer.last_ns >= a.probe_since_ns):
                a.probe_since_ns, a.probes = seg.ts_ns, 0  # the peer answered the last
            a.probes += 1
            return
        if not seg.payload_len:
            # A bare ACK between retransmissions answers something heard from the peer
            # (e.g. its retransmitted SYN-ACK): the peer is there, the run is no silence.
            a.rtx_run = 0
            return
        a.last_data_ns = a.last_payload_ns = seg.ts_ns
        if a.data_hi is None or seq_diff(seq_add(seg.seq, seg.payload_len), a.data_hi) > 0:
            a.rtx_run, a.rtx_run_start_ns = 0, None  # new data: the peer's ACKs get through
            return
        # The same data again, whether or not the peer answered: its answers do not arrive.
        a.rtx_run += 1
        if a.rtx_run == 1:
            a.rtx_run_start_ns = seg.ts_ns
            # Linux gives up retransmitting into silence after tcp_retries2, silently (no
            # RST: tcp_write_timeout -> tcp_write_err): the `retransmit` timeout.
            self.push_timer(seg.ts_ns + self.options.retransmit_ns, conn, a.side,
                             seg.ts_ns, RTX)
        if a.rtx_run >= 3 and seg.ts_ns - a.rtx_run_start_ns >= NS and not a.silence_noted \
                and not seg.flags & FIN:  # a FIN sent again is missing_final_ack's evidence
            a.silence_noted = True
            self.changes.odd(conn, a, seg, Odd.SILENCE_RTX,
                      f"data retransmitted {a.rtx_run} times over "
                      f"{(seg.ts_ns - a.rtx_run_start_ns) / NS:.1f} s without progress")

    def _check_half_close(self, conn: Connection, a: Endpoint, b: Endpoint,
                          seg: Segment) -> None:
        """A side that acknowledges new data after its own FIN has only shut down
        writing: a socket closed by close() answers such data with RST (Linux
        tcp_rcv_state_process, RCV_SHUTDOWN in FIN_WAIT_1/2). So it is not orphaned and the
        FIN_WAIT_2 timeout does not apply."""
        assert a.max_ack is not None
        acked = seg.ack
        if b.fin_seq is not None and seq_diff(acked, b.fin_seq) > 0:
            acked = b.fin_seq
        # With the peer's FIN unseen (one direction captured), one more may be that FIN.
        if seq_diff(acked, a.max_ack) > (0 if b.fin_seq is not None else 1):
            a.not_orphan = True
            a.timer_gen += 1
            self.changes.odd(conn, a, seg, Odd.HALF_CLOSE,
                      "acknowledged data from the peer after its own FIN")

    def _track_sequence(self, a: Endpoint, seg: Segment) -> None:
        flags = seg.flags
        if flags & RST:
            return
        syn = 1 if flags & SYN else 0
        end = seq_add(seg.seq, seg.payload_len + syn + (1 if flags & FIN else 0))
        a.snd_nxt = seq_max(a.snd_nxt, end)
        if seg.payload_len:
            start = seq_add(seg.seq, syn)
            data_end = seq_add(start, seg.payload_len)
            if a.data_hi is None:
                a.bytes += seg.payload_len
                a.data_hi = data_end
            elif seq_diff(data_end, a.data_hi) > 0:
                a.bytes += min(seg.payload_len, seq_diff(data_end, a.data_hi))
                a.data_hi = data_end
        if flags & ACK:
            a.max_ack = seq_max(a.max_ack, seg.ack)
        a.window = seg.window
        if syn and seg.wscale >= 0:
            a.wscale = seg.wscale

    def _check_evidence(self, conn: Connection, a: Endpoint, b: Endpoint,
                        seg: Segment) -> bool:
        """Confront what we deduced about ``a`` with the segment ``a`` just sent. True when
        its timestamps show it crossed the peer's FIN (see `_sent_before_fin`)."""
        flags = seg.flags
        syn, fin, ackf = flags & SYN, flags & FIN, flags & ACK
        if syn and a.isn is not None and seg.seq == a.isn:
            if ackf:  # SYN-ACK again: the handshake's last ACK never reached it
                self._rtx_contradicts_ack(conn, a, seg, "ack_syn", "SYN-ACK retransmitted")
            else:  # SYN again: it never got the SYN-ACK
                self.changes.contradict(conn, a, "synack", seg, "SYN retransmitted")
        if fin and a.fin_seq is not None and seq_add(seg.seq, seg.payload_len) == a.fin_seq:
            self._rtx_contradicts_ack(conn, a, seg, "ack_fin", "FIN retransmitted")
        if a.state == CLOSED and a.latest("timeout") is not None:
            self.changes.contradict(conn, a, "timeout", seg, "still sending after the timeout")
        if not ackf or syn:
            return False
        fin_end = b.fin_end
        if fin_end is None:
            return False
        if a.covers(seg.ack, fin_end):
            if not a.got_fin:
                # Its own ACK shows it has the peer's FIN, which we had not credited.
                a.got_fin = True
                self.changes.apply(conn, a, RECV_FIN, seg, inferred=False, kind="")
        elif a.got_fin:
            crossed = sent_before_fin(a, b, seg)
            self.changes.contradict(conn, a, "fin", seg,
                             "its TSecr predates the peer's FIN: sent before it arrived"
                             if crossed else
                             "its ACK does not cover the peer's FIN: not received yet")
            return crossed
        return False

    def _fin_after(self, conn: Connection, a: Endpoint, b: Endpoint, seg: Segment) -> None:
        """``a``'s segment crossed ``b``'s FIN (`_sent_before_fin`): the receipt of the
        FIN, retracted because the capture listed it first, comes after this segment's
        own change (and with it the ACK of ``a``'s FIN that the FIN's segment carried)."""
        if a.got_fin or b.fin_end is None:
            return
        cell = step(a.state, RECV_FIN)
        if not isinstance(cell, State):
            return
        a.got_fin = True
        self.changes.transition(conn, a, RECV_FIN, seg.frame, seg.ts_ns, inferred=True,
                                kind="fin", text="recv FIN (after its own segment, by TSecr)")
        if a.fin_end is not None and b.max_ack is not None and a.covers(b.max_ack, a.fin_end):
            cell = step(a.state, RECV_ACK_FIN)
            if isinstance(cell, State):
                a.fin_acked = True
                a.last_fin_cover = (seg.ts_ns, seg.frame)
                self.changes.transition(conn, a, RECV_ACK_FIN, seg.frame, seg.ts_ns,
                                        inferred=True, kind="ack_fin")

    def _send_rst(self, conn: Connection, a: Endpoint, b: Endpoint, seg: Segment) -> None:
        if a.state == UNKNOWN and a.side == SERVER and b.state == SYN_SENT \
                and not rst_acceptable(a, b, seg):
            return  # forged, or from another host: the client drops it (see _recv_rst)
        if not seg.flags & ACK and a.last_kind() == "ack_syn" \
                and a.data_hi is None:  # (a side that sent data had its connection)
            self._no_socket(conn, a, seg)
        if a.side == SERVER and a.state == CLOSED and not a.history \
                and b.state == SYN_SENT and a.initial_state == CLOSED \
                and not conn.refused and a.packets == 1:
            conn.refused = True  # answering the SYN with RST: nothing was listening
        unread = b.last_payload_ns is not None and (a.last_data_ns is None
                                                    or b.last_payload_ns > a.last_data_ns)
        # Keep-alive probes the peer never answered: the kernel giving up on a dead peer
        # sends this RST (Linux tcp_keepalive_timer), not the application.
        probes = a.probes if a.probe_since_ns is not None and (
            b.last_ns is None or b.last_ns < a.probe_since_ns) else 0
        # the last window it offered was zero: its receive buffer was full, the application
        # not reading
        self.changes.note(conn, Oddity(
            conn.conn_id, seg.ts_ns, seg.frame, a.side, Odd.RST_SENT, f"RST sent in {a.state}",
            RstSent(a.state, unread, bool(seg.flags & ACK), a.fin_seq is not None,
                    a.window == 0 and a.max_ack is not None, probes, a.probe_since_ns)))
        if a.state == CLOSED:
            return
        was = a.state
        self.changes.apply(conn, a, SEND_RST, seg, inferred=False)
        if a.state == CLOSED and was != TIME_WAIT:  # a closed connection's TIME_WAIT cut
            conn.rst_closed = True                   # short is not an RST close

    def _no_socket(self, conn: Connection, a: Endpoint, seg: Segment) -> None:
        """A bare RST (no ACK flag) is the kernel's answer for a connection it has no
        socket for (tcp_v4_send_reset answering a segment with ACK); a synchronized socket
        that aborts sends RST-ACK (tcp_send_active_reset). So the handshake's last ACK,
        deduced received, never was: undo that, and if the request socket's SYN-ACK
        retries ran out before this RST, it ended then (the timeout its timer would have
        fired), so the RST comes from no socket."""
        self.changes.contradict(conn, a, "ack_syn", seg,
                                "a bare RST: its kernel had no socket for the connection",
                                no_socket=True)
        if a.state == SYN_RECEIVED:
            first = a.first_synack_ns if a.first_synack_ns is not None else a.since_ns
            deadline = first + self.options.syn_received_ns
            if deadline <= seg.ts_ns:
                conn.timed_out = True
                self.changes.transition(conn, a, TIMEOUT, None, deadline,
                                 inferred=True, kind="timeout")

    def _recv_rst(self, conn: Connection, a: Endpoint, b: Endpoint, seg: Segment) -> None:
        if b.state in (CLOSED, LISTEN):
            return
        if not rst_acceptable(a, b, seg):
            self.changes.odd(conn, b, seg, Odd.RST_IGNORED,
                      f"RST seq {seg.seq} outside what {b.side} would accept")
            return
        was = b.state
        self.changes.apply(conn, b, RECV_RST, seg, inferred=True)
        if b.state == CLOSED and was != TIME_WAIT:
            conn.rst_closed = True

    def _recv(self, conn: Connection, a: Endpoint, b: Endpoint, seg: Segment) -> None:
        flags = seg.flags
        syn, fin, ackf = flags & SYN, flags & FIN, flags & ACK
        ts = seg.ts_ns
        if syn:
            if ackf:
                if b.isn is not None and seg.ack == seq_add(b.isn, 1):
                    self.changes.apply(conn, b, RECV_SYNACK, seg, inferred=True, kind="synack")
                elif b.state == SYN_SENT:
                    self.changes.odd(conn, b, seg, Odd.BAD_SYNACK,
                              f"SYN-ACK acknowledges {seg.ack}, not the SYN")
            else:
                self.changes.apply(conn, b, RECV_SYN, seg, inferred=True)
            return
        # Segments from ``a`` reach ``b`` in the order sent: anything ``a`` sent after its
        # FIN implies the FIN arrived first (unless lost, which b's ACKs will show).
        if a.fin_seq is not None and not b.got_fin and not fin \
                and seq_diff(seg.seq, a.fin_seq) > 0:
            b.got_fin = True
            self.changes.apply(conn, b, RECV_FIN, seg, inferred=True, kind="fin")
        if ackf:
            if b.alt_isn is not None and b.state == SYN_RECEIVED \
                    and seg.ack == seq_add(b.alt_isn, 1):
                b.isn, b.alt_isn = b.alt_isn, b.isn  # the client took the other SYN-ACK
                b.snd_nxt = seg.ack
            if b.isn is not None and b.state in (SYN_RECEIVED, SYN_SENT) \
                    and b.covers(seg.ack, seq_add(b.isn, 1)):
                self._deduce_ack(conn, b, seg, RECV_ACK_SYN, "ack_syn")
            fin_end = b.fin_end
            if fin_end is not None and b.covers(seg.ack, fin_end):
                self._deduce_ack(conn, b, seg, RECV_ACK_FIN, "ack_fin")
        if fin:
            fin_seq = seq_add(seg.seq, seg.payload_len)
            if fin_seq != a.fin_seq:
                return
            if not b.got_fin:
                b.got_fin = True
                self.changes.apply(conn, b, RECV_FIN, seg, inferred=True, kind="fin")
            elif b.state == TIME_WAIT:
                # A retransmitted FIN restarts TIME_WAIT (Linux inet_twsk_reschedule).
                b.since_ns = ts
                b.timer_gen += 1
                self.changes.arm(conn, b)

    def _deduce_ack(self, conn: Connection, b: Endpoint, seg: Segment, ev: Ev,
                    kind: str) -> None:
        if kind == "ack_fin":
            b.last_fin_cover = (seg.ts_ns, seg.frame)
            if b.fin_acked:
                return
            b.fin_acked = True
        else:
            b.last_syn_cover = (seg.ts_ns, seg.frame)
        self.changes.apply(conn, b, ev, seg, inferred=True, kind=kind)

    def _rtx_contradicts_ack(self, conn: Connection, a: Endpoint, seg: Segment, kind: str,
                             reason: str) -> None:
        """``a`` retransmits its FIN (SYN-ACK): the ACKs of it that the capture saw before
        did not reach it, unless they were captured so shortly before that they crossed
        this retransmission on the way."""
        window = a.crossing_window_ns()
        index = a.latest(kind)
        entry = None if index is None else a.history[index]
        if entry is None or seg.ts_ns - entry.ts_ns <= window:
            return
        self.changes.contradict(conn, a, kind, seg, reason)
        self.changes.note(conn, Oddity(conn.conn_id, seg.ts_ns, seg.frame, a.side, Odd.ACK_LOST,
                                       f"{reason} after the peer's ACK of it", AckLost(kind)))
        cover = a.last_fin_cover if kind == "ack_fin" else a.last_syn_cover
        if cover is not None and seg.ts_ns - cover[0] <= window:
            # A later ACK, captured just before this retransmission: it crossed it.
            if kind == "ack_fin":
                a.fin_acked = True
            ev = RECV_ACK_FIN if kind == "ack_fin" else RECV_ACK_SYN
            cell = step(a.state, ev)
            if isinstance(cell, State):
                self.changes.transition(conn, a, ev, cover[1], cover[0], inferred=True,
                                        kind=kind)
