"""The connection tracker: decoded segments in, lifecycle events out. Sans-IO.

Owns: the flow table (one instance per incarnation of a 4-tuple), role assignment, the
classification of each segment into per-side state-machine events (`machine.Ev`), the
observer's reasoning about what each side has received, timers, and the end of a
connection. Time comes only from the segments (or from `advance(now)` in live mode).
Knows nothing of files, dpkt, pandas, click or rich.

Vantage point. A segment is seen when it passes the capture point. Its sender's change
(``send FIN``) is observed; the receiver's change (``recv FIN``) is deduced, marked
``inferred``, and dated when the segment passed the capture. A deduction can be wrong when
the segment is lost after the capture point; the receiver's own later segments then show
it, and the deduction is retracted (a `Retraction` event):

- a side whose ACK field does not cover a FIN it was believed to have received had not
  received it when it sent that segment (FINs crossing, or a lost FIN);
- a side that retransmits its FIN or SYN-ACK never got the ACK it was believed to have got;
- a side believed closed by a timeout that still sends (other than RST) was not closed.

A side's retransmission contradicts only the ACKs that the capture saw long enough before
it to have arrived first: a segment towards the side and one from it, captured within the
round trip between the capture point and that side (measured on the handshake), may have
crossed, and then the ACK is taken as delivered after all.

RST acceptance (what the receiver's kernel would honour, RFC 5961 / Linux
tcp_validate_incoming): in SYN_SENT only an RST whose ACK acknowledges the SYN; in other
states an RST whose sequence number lies between the receiver's expected next sequence
number minus one (after a FIN) and the highest sequence number the sender was seen to
use or the receiver acknowledged. An RST outside that is noted (``rst_ignored``) and does
not change the receiver's state.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from tcplife.core import verdict
from tcplife.core.changes import Changes
from tcplife.core.connection import Connection, judged_by
from tcplife.core.endpoint import Endpoint
from tcplife.core.events import (
    ClockAdvanced,
    ConnectionEnded,
    ConnectionRecord,
    ConnectionStarted,
    Event,
    InputEnded,
    Oddity,
    PortReuse,
    Transition,
)
from tcplife.core.evidence import (
    belongs_to_predecessor,
    is_new_incarnation,
    looks_like_server,
    server_stayed_silent,
    tw_takes,
)
from tcplife.core.flows import FlowTable
from tcplife.core.machine import (
    ALIVE,
    NEW_SYN,
    PAIR,
    REUSE,
    SHOWN_CLOSED,
    TIMEOUT,
    TW_TAKES_SYN,
    Joint,
)
from tcplife.core.observe import Observer, overrides
from tcplife.core.options import Options
from tcplife.core.rules import SegmentRules
from tcplife.core.segment import ACK, RST, SYN, Segment
from tcplife.core.seq import seq_add
from tcplife.core.states import (
    CLIENT,
    CLOSE_WAIT,
    CLOSED,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LAST_ACK,
    LISTEN,
    SERVER,
    SYN_RECEIVED,
    SYN_SENT,
    TIME_WAIT,
    UNKNOWN,
    Odd,
)
from tcplife.core.steady import Steady
from tcplife.core.timers import EVICT, RTX, STATE, Timer, Timers

#: states in which a side retransmits data until the kernel gives up (tcp_retries2)
_RETRANSMITTING = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK})


class Tracker:
    """Feed segments in capture order; collect the events each call returns."""

    def __init__(self, options: Options | None = None, observer: Observer | None = None,
                 timers: Timers | None = None) -> None:
        self.options = options or Options()
        #: what watches the tracker (`tcplife.core.observe`): the peers' replays, an engine
        self.observer = observer
        # Only the hooks the observer uses are called (`overrides`): none per segment, per
        # timer or per call that it does not watch.
        self._on_segment = observer.segment if overrides(observer, "segment") else None
        self._timer_observer = observer if any(overrides(observer, hook) for hook in (
            "timer_armed", "timer_firing", "timer_fired")) else None
        self._on_events = observer.events if overrides(observer, "events") else None
        #: the instances by 4-tuple and by id (`tcplife.core.flows`)
        self.flows = FlowTable()
        #: the armed timers (`tcplife.core.timers`); stale entries are the tracker's call
        self.timers = timers if timers is not None else Timers()
        self.timers.stale = self._stale
        self._next_conn_id = 0
        self.now_ns: int | None = None
        #: every state change and note goes through here (`tcplife.core.changes`)
        self.changes = Changes(self._arm_state_timer)
        self.rules = SegmentRules(self.changes, self.options, self._push_timer)
        #: while `finish` runs: the capture's end, at which its records' states are taken
        self._ending_at: int | None = None

    # ------------------------------------------------------------------ public API
    def feed(self, seg: Segment) -> list[Event]:
        """Process one segment (timers due before it fire first); return the events."""
        out = self.changes.out = []
        if self._on_segment is not None:
            self._on_segment(seg)
        self._advance(seg.ts_ns)
        if self.now_ns is None or seg.ts_ns > self.now_ns:
            self.now_ns = seg.ts_ns
        conn = self.flows.route((seg.src, seg.sport, seg.dst, seg.dport))
        if conn is None:
            conn = self._new_connection(seg)
        elif seg.flags & (SYN | ACK | RST) == SYN and is_new_incarnation(conn, seg):
            old = conn
            reuse = self._supersede(old, seg)
            conn = self._new_connection(seg)
            if not old.finished:
                conn.predecessor = old
            if reuse is not None:
                self.changes.note(conn, Oddity(conn.conn_id, seg.ts_ns, seg.frame, CLIENT,
                                               Odd.PORT_REUSE, reuse.sentence(), reuse))
        elif conn.predecessor is not None:
            if conn.predecessor.finished:
                conn.predecessor = None
            elif belongs_to_predecessor(conn, seg):
                conn = conn.predecessor
            elif conn.predecessor is not None and seg.flags & (SYN | ACK) == SYN | ACK:
                self._syn_taken(conn, seg)
        if conn.peers is not None:
            conn.peers.feed(seg, seg.src == conn.client.addr and seg.sport == conn.client.port)
        if self.rules.process(conn, seg) and PAIR[(conn.client.state, conn.server.state)] \
                is Joint.OVER:  # `_maybe_evict`, written out: per segment
            self._arm_eviction(conn)
        if out and self._on_events is not None:  # `_told`, written out: per segment
            out += self._on_events(out)
        return out

    def feed_all(self, segments: Iterable[Segment]) -> Iterator[Event]:
        """Feed many segments, then finish; yield every event."""
        for seg in segments:
            yield from self.feed(seg)
        yield from self.finish()

    def advance(self, now_ns: int) -> list[Event]:
        """Let time pass without a packet (live mode): `ClockAdvanced` at ``now_ns``, then
        what the timers due by then did."""
        out = self.changes.out = [ClockAdvanced(now_ns)]
        self._advance(now_ns)
        if self.now_ns is None or now_ns > self.now_ns:
            self.now_ns = now_ns
        return self._told(out)

    def saw(self, ts_ns: int) -> None:
        """Segments were seen up to ``ts_ns`` without `feed` (the fast path's bulk runs,
        tcplife.engines.fastpath): the tracker's clock moves on to it. Fires no timer."""
        if self.now_ns is None or ts_ns > self.now_ns:
            self.now_ns = ts_ns

    def next_deadline(self) -> int | None:
        """When the next timer is due (ns), or None: the caller may sleep until then."""
        return self.timers.next_deadline()

    def finish(self, end_ns: int | None = None) -> list[Event]:
        """End of input, the capture's end at ``end_ns`` (its last frame; default: the
        latest segment's time). Each connection still open ends now: its record's
        ``client_state``/``server_state`` are the sides' states at that end (what ``ss``
        showed when the capture stopped), and its ``*_eventual_state`` those after the
        timeouts still pending, which fire at their own deadlines (which may lie after the
        last packet: a TIME_WAIT left at the end of the capture is reported closing 60 s
        after it began, as Linux will close it)."""
        return [ev for chunk in self.finish_chunks(end_ns=end_ns) for ev in chunk]

    def finish_chunks(self, size: int = 4096,
                      end_ns: int | None = None) -> Iterator[list[Event]]:
        """`finish`'s events, the same in the same order, in lists of about ``size``: the
        end of a big capture need not hold every open connection's last events at once.
        The first is `InputEnded` at ``end_ns`` (default: the latest segment's time)."""
        end = max(x for x in (end_ns, self.now_ns, 0) if x is not None)
        out = self.changes.out = [InputEnded(end if end_ns is None else end_ns)]  # the end, first
        self._ending_at = end
        timers = self.timers
        while timers:  # deadline by deadline: the order of one `_advance(_FOREVER)`
            self._advance(timers.next_deadline())  # type: ignore[arg-type]
            if len(self.changes.out) >= size:
                yield self._told(self.changes.out)
                out = self.changes.out = []
        for conn in sorted(self.flows, key=lambda c: c.conn_id):
            self._end(conn)
            if len(self.changes.out) >= size:
                yield self._told(self.changes.out)
                out = self.changes.out = []
        self.timers.clear()
        self._ending_at = None
        out = self._told(out)
        if self.observer is not None and overrides(self.observer, "ended"):
            out += self.observer.ended()
        yield out

    # ------------------------------------------------------------------ live mode
    def open_count(self) -> int:
        """How many connection instances are tracked (not yet ended)."""
        return len(self.flows)

    def snapshot(self, conn_id: int | None = None) -> list[ConnectionRecord]:
        """Records of the tracked connections (or of ``conn_id``) as they stand now,
        without ending them: the live mode's view of what is still open."""
        if conn_id is not None:
            conn = self.flows.open(conn_id)
            return [] if conn is None else [verdict.record(conn)]
        return [verdict.record(c) for c in self.flows]

    def judged_by(self, conn_id: int) -> tuple[list[Transition], list[Oddity]]:
        """What the detectors judge an open connection by (see `_judged_by`); nothing for
        one that is not open."""
        conn = self.flows.open(conn_id)
        return ([], []) if conn is None else judged_by(conn)

    def give_up_idle(self, before_ns: int) -> list[Event]:
        """Live mode, bounded memory: end every connection whose last packet is older than
        ``before_ns`` (the ``idle`` option), each side in the state it had; a
        ``given_up`` oddity says why. Later packets of the 4-tuple start a new instance."""
        out = self.changes.out = self._clock()
        for conn in [c for c in self.flows if c.last_ts < before_ns]:
            self._give_up(conn, "no packet for longer than the idle timeout")
        return self._told(out)

    def give_up_oldest(self, n: int) -> list[Event]:
        """Live mode, the flow cap: end the ``n`` least recently active connections."""
        out = self.changes.out = self._clock()
        for conn in heapq.nsmallest(n, self.flows, key=lambda c: c.last_ts):
            self._give_up(conn, "flow table full: the least recently active flows are dropped")
        return self._told(out)

    def _clock(self) -> list[Event]:
        """A connection given up is judged as it stands now: the capture reached now."""
        return [] if self.now_ns is None else [ClockAdvanced(self.now_ns)]

    def _told(self, out: list[Event]) -> list[Event]:
        """``out`` with what the observer adds to it (`Observer.events`)."""
        if out and self._on_events is not None:
            out += self._on_events(out)
        return out

    def _give_up(self, conn: Connection, why: str) -> None:
        self.changes.note(conn, Oddity(conn.conn_id, max(conn.last_ts, self.now_ns or 0), None,
                                       "", Odd.GIVEN_UP, why))
        self._end(conn)

    # ------------------------------------------------------------------ instances
    def _new_connection(self, seg: Segment) -> Connection:
        flags = seg.flags
        syn_only = flags & (SYN | ACK | RST) == SYN
        synack = flags & (SYN | ACK | RST) == SYN | ACK
        src_is_client = True
        role_inferred = not syn_only
        mid_stream = not (syn_only or synack)
        if synack:
            src_is_client = False
        elif not syn_only:
            src_is_client = not looks_like_server(seg.sport, seg.dport)
        if src_is_client:
            caddr, cport, saddr, sport = seg.src, seg.sport, seg.dst, seg.dport
        else:
            caddr, cport, saddr, sport = seg.dst, seg.dport, seg.src, seg.sport
        if syn_only:  # the server's state shows when it answers (see _decide_server)
            cstate, sstate = CLOSED, UNKNOWN
        elif synack:
            cstate, sstate = SYN_SENT, LISTEN
        else:
            cstate = sstate = UNKNOWN
        client = Endpoint(CLIENT, caddr, cport, cstate, cstate, since_ns=seg.ts_ns)
        server = Endpoint(SERVER, saddr, sport, sstate, sstate, since_ns=seg.ts_ns)
        if synack:
            client.isn = seq_add(seg.ack, -1)
            client.snd_nxt = seg.ack
        observer = self.observer
        conn = Connection(self._next_conn_id, seg.ip_version, client, server, seg,
                          role_inferred, mid_stream,
                          None if observer is None else observer.opened(
                              self._next_conn_id, seg, src_is_client))
        self._next_conn_id += 1
        self.flows.add(conn)
        self.changes.out.append(ConnectionStarted(conn.conn_id, seg.ts_ns, seg.frame, caddr, cport,
                                           saddr, sport, role_inferred, mid_stream))
        if synack:
            self._arm_state_timer(conn, client)
        return conn

    def _supersede(self, conn: Connection, seg: Segment) -> PortReuse | None:
        """A new SYN reuses the 4-tuple: the sender's old socket is gone, and a peer in
        TIME_WAIT may accept the SYN and drop its old socket (RFC 9293 3.10.7.4 note;
        Linux tcp_timewait_state_process returns TCP_TW_SYN), as `evidence.tw_takes`
        decides; returns the facts of the reuse's note (None: no socket was left). When
        that cannot be told at the SYN, the TIME_WAIT lives on, beside the new attempt,
        until its answer shows which (`_syn_taken`: a SYN-ACK; else the old instance's
        ACK, the new client's RST that kills it, and the SYN again)."""
        sender = conn.client if seg.src == conn.client.addr and seg.sport == conn.client.port \
            else conn.server
        receiver = conn.peer(sender)
        sockets = tuple((ep.side, ep.state.value) for ep in (sender, receiver)
                        if ep.state in ALIVE)
        reuse = PortReuse(conn.conn_id, sockets) if sockets else None
        if sender.state not in (CLOSED, LISTEN):
            self.changes.transition(conn, sender, NEW_SYN, seg.frame, seg.ts_ns,
                                    inferred=True, kind="")
        taken = tw_takes(sender, receiver, seg) if receiver.state == TIME_WAIT else None
        if taken is not None:
            self.changes.transition(conn, receiver, TW_TAKES_SYN, seg.frame, seg.ts_ns,
                                    inferred=True, kind="",
                                    text=f"recv SYN (new incarnation{taken})")
        self.flows.unroute(conn)
        if REUSE[receiver.state] is Joint.END:
            self._end(conn)
        # Otherwise the old socket lives on beside the new attempt (the joint table's
        # LIVES, or a TW that cannot tell yet): a synchronized socket answers the SYN with
        # a challenge ACK (RFC 5961 4), the new client answers that with RST, which kills
        # the old socket. Those segments go to the old instance.
        return reuse

    def _syn_taken(self, conn: Connection, seg: Segment) -> None:
        """A SYN-ACK answers ``conn``'s SYN, which reused the 4-tuple while the answering
        side's old socket was in TIME_WAIT (a SYN `_supersede` could not tell it would
        take): the TIME_WAIT socket took the SYN, so it has been gone since that SYN (the
        transition is dated at the SYN, known only now)."""
        old = conn.predecessor
        assert old is not None
        side = old.client if seg.src == old.client.addr and seg.sport == old.client.port \
            else old.server
        if side.state != TIME_WAIT:
            return
        self.changes.transition(old, side, TW_TAKES_SYN, conn.first_frame, conn.first_ts,
                                inferred=True, kind="",
                                text="recv SYN (new incarnation, taken: its SYN-ACK at "
                                f"frame {seg.frame})")
        if old.peer(side).state not in ALIVE:
            self._end(old)

    def _end(self, conn: Connection) -> None:
        if conn.finished:
            return
        conn.finished = True
        if server_stayed_silent(conn, self._ending_at if self._ending_at is not None
                                else (self.now_ns or 0)):
            self.changes.decide(conn.server, SHOWN_CLOSED)
        self.flows.close(conn)
        trans, notes = judged_by(conn)
        record = verdict.record(conn)
        if self._ending_at is not None:
            record = record.settled(trans, self._ending_at)
        self.changes.out.append(ConnectionEnded(record, trans, notes, self._ending_at is not None))

    # ------------------------------------------------------------------ fast lane
    def steady(self, src: str, sport: int, dst: str, dport: int) -> Steady | None:
        """The connection a segment from (src, sport) to (dst, dport) goes to, as a
        `Steady` view, if it is in the steady state where an in-order ACK or data segment
        changes nothing but counters (`Steady.of`); else None. The fast path
        (tcplife.engines.fastpath) applies runs of such segments through the view."""
        conn = self.flows.route((src, sport, dst, dport))
        return None if conn is None else Steady.of(conn)

    # ------------------------------------------------------------------ segments
    # ------------------------------------------------------------------ timers
    def _push_timer(self, deadline: int, conn: Connection, side: str, gen: int,
                    kind: str) -> None:
        timer = self.timers.push(deadline, conn.conn_id, side, kind, gen)
        if self._timer_observer is not None:
            self._timer_observer.timer_armed(timer)

    def _stale(self, timer: Timer) -> bool:
        """Can ``timer`` no longer fire? (its connection ended, or a newer timer of the
        same side, or a packet since, superseded it: a SYN_SENT timer outlives its
        handshake by 127 s, and a busy capture piles them up)"""
        conn = self.flows.open(timer.conn_id)
        if conn is None:
            return True
        if timer.kind == EVICT:
            return timer.gen != conn.evict_gen
        ep = conn.client if timer.side == CLIENT else conn.server
        if timer.kind == RTX:
            return timer.gen != ep.rtx_run_start_ns
        return timer.gen != ep.timer_gen

    def _arm_state_timer(self, conn: Connection, ep: Endpoint) -> None:
        o = self.options
        state = ep.state
        if state == TIME_WAIT:
            deadline = ep.since_ns + o.time_wait_ns
        elif state == FIN_WAIT_2 and not ep.not_orphan:
            deadline = ep.since_ns + o.fin_wait_2_ns
        elif state == SYN_SENT:
            deadline = (ep.first_syn_ns if ep.first_syn_ns is not None else ep.since_ns) \
                + o.syn_sent_ns
        elif state == SYN_RECEIVED:
            first = ep.first_synack_ns if ep.first_synack_ns is not None else ep.since_ns
            deadline = first + o.syn_received_ns
        else:
            return
        self._push_timer(deadline, conn, ep.side, ep.timer_gen, STATE)

    def _arm_eviction(self, conn: Connection) -> None:
        conn.evict_gen += 1
        self._push_timer(conn.last_ts + self.options.closed_linger_ns, conn, "",
                         conn.evict_gen, EVICT)

    def _advance(self, now: int) -> None:
        heap = self.timers.heap
        if not heap or heap[0][0] > now:  # nothing due: no generator started, per segment
            return
        observer = self._timer_observer
        for timer in self.timers.due(now):
            if observer is None:
                self._fire(timer)
                continue
            observer.timer_firing(timer)
            n0 = len(self.changes.out)
            self._fire(timer)
            observer.timer_fired(timer, self.changes.out[n0:])

    def _fire(self, timer: Timer) -> None:
        deadline, _, side, conn_id, kind, gen = timer
        conn = self.flows.open(conn_id)
        if conn is None:
            return
        if kind == EVICT:
            if gen == conn.evict_gen \
                    and conn.last_ts + self.options.closed_linger_ns <= deadline:
                self._end(conn)
            return
        ep = conn.client if side == CLIENT else conn.server
        if kind == RTX:
            # the run of retransmissions armed at ``gen`` still stands (no new data
            # since) and the peer stayed silent since it began: the kernel gave up
            peer = conn.peer(ep)
            if ep.rtx_run_start_ns == gen and ep.state in _RETRANSMITTING and (
                    peer.last_ns is None or peer.last_ns < gen):
                conn.timed_out = True
                self.changes.transition(conn, ep, TIMEOUT, None, deadline, inferred=True,
                                        kind="timeout")
                self._maybe_evict(conn)
            return
        if gen != ep.timer_gen:
            return
        if ep.state != TIME_WAIT:  # TIME_WAIT ending is the normal close
            conn.timed_out = True
        self.changes.transition(conn, ep, TIMEOUT, None, deadline, inferred=True,
                                kind="timeout")
        self._maybe_evict(conn)

    def _maybe_evict(self, conn: Connection) -> None:
        if PAIR[(conn.client.state, conn.server.state)] is Joint.OVER:
            self._arm_eviction(conn)
