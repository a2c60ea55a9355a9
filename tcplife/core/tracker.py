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
from typing import TYPE_CHECKING

from tcplife.core.endpoint import Endpoint
from tcplife.core.events import (
    ConnectionEnded,
    ConnectionRecord,
    ConnectionStarted,
    Event,
    Oddity,
    Retraction,
    Transition,
)
from tcplife.core.machine import (
    ALIVE,
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
    SYNCHRONIZED,
    Ev,
    Stay,
    step,
)
from tcplife.core.observe import Observer, Watcher
from tcplife.core.options import NS, Options
from tcplife.core.segment import ACK, FIN, RST, SYN, Segment
from tcplife.core.seq import seq_add, seq_diff, seq_max
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
    State,
)
from tcplife.core.timers import EVICT, RTX, STATE, Timer, Timers

if TYPE_CHECKING:
    import numpy as np

#: Ports that are almost always the server side when no SYN tells the roles.
WELL_KNOWN_SERVER_PORTS = frozenset({
    1080, 1433, 1521, 1883, 2049, 2181, 2379, 3000, 3128, 3306, 3389, 4222, 5000, 5432,
    5672, 5900, 5984, 6379, 6443, 6667, 8000, 8008, 8080, 8081, 8443, 8888, 9000, 9042,
    9090, 9092, 9200, 9300, 11211, 15672, 27017,
})


_MIN_RTO_NS = 200_000_000  #: Linux TCP_RTO_MIN
#: states in which a side retransmits data until the kernel gives up (tcp_retries2)
_RETRANSMITTING = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK})


_MOD, _HALF, _FAR = 1 << 32, 1 << 31, 1 << 30
_MASK32 = _MOD - 1

#: Identical segments from one side closer than this are one packet captured twice.
DUPLICATE_NS = 100_000


class Connection:
    """One incarnation of a 4-tuple, with both endpoints."""

    __slots__ = ("conn_id", "ip_version", "client", "server", "first_ts", "last_ts",
                 "first_frame", "last_frame", "packets", "role_inferred", "mid_stream",
                 "refused", "rst_closed", "timed_out", "evict_gen", "finished", "predecessor",
                 "peers", "notes")

    def __init__(self, conn_id: int, ip_version: int, client: Endpoint, server: Endpoint,
                 seg: Segment, role_inferred: bool, mid_stream: bool,
                 peers: Watcher | None) -> None:
        self.conn_id = conn_id
        self.ip_version = ip_version
        self.client = client
        self.server = server
        self.first_ts = seg.ts_ns
        self.last_ts = seg.ts_ns
        self.first_frame = seg.frame
        self.last_frame = seg.frame
        self.packets = 0
        self.role_inferred = role_inferred
        self.mid_stream = mid_stream
        self.refused = False
        self.rst_closed = False
        self.timed_out = False
        self.evict_gen = 0
        self.finished = False
        #: the previous instance of a reused 4-tuple, while its old socket still lives
        self.predecessor: Connection | None = None
        #: what the observer keeps about it (`Observer.opened`): the peers' replays
        self.peers = peers
        #: the `Oddity` notes emitted about it (None until the first)
        self.notes: list[Oddity] | None = None

    def peer(self, ep: Endpoint) -> Endpoint:
        return self.server if ep is self.client else self.client


class Tracker:
    """Feed segments in capture order; collect the events each call returns."""

    def __init__(self, options: Options | None = None, observer: Observer | None = None,
                 timers: Timers | None = None) -> None:
        self.options = options or Options()
        #: what watches the tracker (`tcplife.core.observe`): the peers' replays, an engine
        self.observer = observer
        self._flows: dict[tuple[str, int, str, int], Connection] = {}
        self._live: dict[int, Connection] = {}
        #: the armed timers (`tcplife.core.timers`); stale entries are the tracker's call
        self.timers = timers if timers is not None else Timers()
        self.timers.stale = self._stale
        self._next_conn_id = 0
        self._next_tid = 0
        self.now_ns: int | None = None
        self._out: list[Event] = []
        self._reuse_note: str | None = None
        self._reuse_states: list[str] = []  #: the states the reuse met, for its note
        #: while `finish` runs: the capture's end, at which its records' states are taken
        self._ending_at: int | None = None

    # ------------------------------------------------------------------ public API
    def feed(self, seg: Segment) -> list[Event]:
        """Process one segment (timers due before it fire first); return the events."""
        out = self._out = []
        observer = self.observer
        if observer is not None:
            observer.segment(seg)
        self._advance(seg.ts_ns)
        if self.now_ns is None or seg.ts_ns > self.now_ns:
            self.now_ns = seg.ts_ns
        conn = self._flows.get((seg.src, seg.sport, seg.dst, seg.dport))
        if conn is None:
            conn = self._new_connection(seg)
        elif seg.flags & (SYN | ACK | RST) == SYN and self._is_new_incarnation(conn, seg):
            old = conn
            self._supersede(old, seg)
            conn = self._new_connection(seg)
            if not old.finished:
                conn.predecessor = old
            if self._reuse_note is not None:
                self._note(conn, Oddity(conn.conn_id, seg.ts_ns, seg.frame, CLIENT,
                                        "port_reuse", self._reuse_note,
                                        {"states": self._reuse_states}))
        elif conn.predecessor is not None:
            if self._belongs_to_predecessor(conn, seg):
                conn = conn.predecessor
            elif conn.predecessor is not None and seg.flags & (SYN | ACK) == SYN | ACK:
                self._syn_taken(conn, seg)
        if conn.peers is not None:
            conn.peers.feed(seg, seg.src == conn.client.addr and seg.sport == conn.client.port)
        self._process(conn, seg)
        return out

    def feed_all(self, segments: Iterable[Segment]) -> Iterator[Event]:
        """Feed many segments, then finish; yield every event."""
        for seg in segments:
            yield from self.feed(seg)
        yield from self.finish()

    def advance(self, now_ns: int) -> list[Event]:
        """Let time pass without a packet (live mode): fire the timers due by ``now_ns``."""
        out = self._out = []
        self._advance(now_ns)
        if self.now_ns is None or now_ns > self.now_ns:
            self.now_ns = now_ns
        return out

    def _saw(self, ts_ns: int) -> None:
        """The latest time a segment showed (the bulk paths: `feed` sets it itself)."""
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
        end of a big capture need not hold every open connection's last events at once."""
        out = self._out = []
        end = max(x for x in (end_ns, self.now_ns, 0) if x is not None)
        self._ending_at = end
        timers = self.timers
        while timers:  # deadline by deadline: the order of one `_advance(_FOREVER)`
            self._advance(timers.next_deadline())  # type: ignore[arg-type]
            if len(self._out) >= size:
                yield self._out
                out = self._out = []
        for conn in sorted(self._live.values(), key=lambda c: c.conn_id):
            self._end(conn)
            if len(self._out) >= size:
                yield self._out
                out = self._out = []
        self.timers.clear()
        self._ending_at = None
        yield out

    # ------------------------------------------------------------------ live mode
    def open_count(self) -> int:
        """How many connection instances are tracked (not yet ended)."""
        return len(self._live)

    def snapshot(self, conn_id: int | None = None) -> list[ConnectionRecord]:
        """Records of the tracked connections (or of ``conn_id``) as they stand now,
        without ending them: the live mode's view of what is still open."""
        if conn_id is not None:
            conn = self._live.get(conn_id)
            return [] if conn is None else [_record(conn)]
        return [_record(c) for c in self._live.values()]

    def judged_by(self, conn_id: int) -> tuple[list[Transition], list[Oddity]]:
        """What the detectors judge an open connection by (see `_judged_by`); nothing for
        one that is not open."""
        conn = self._live.get(conn_id)
        return ([], []) if conn is None else _judged_by(conn)

    def give_up_idle(self, before_ns: int) -> list[Event]:
        """Live mode, bounded memory: end every connection whose last packet is older than
        ``before_ns`` (the ``idle`` option), each side in the state it had; a
        ``given_up`` oddity says why. Later packets of the 4-tuple start a new instance."""
        out = self._out = []
        for conn in [c for c in self._live.values() if c.last_ts < before_ns]:
            self._give_up(conn, "no packet for longer than the idle timeout")
        return out

    def give_up_oldest(self, n: int) -> list[Event]:
        """Live mode, the flow cap: end the ``n`` least recently active connections."""
        out = self._out = []
        for conn in heapq.nsmallest(n, self._live.values(), key=lambda c: c.last_ts):
            self._give_up(conn, "flow table full: the least recently active flows are dropped")
        return out

    def _give_up(self, conn: Connection, why: str) -> None:
        self._note(conn, Oddity(conn.conn_id, max(conn.last_ts, self.now_ns or 0), None, "",
                                "given_up", why))
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
            src_is_client = not _looks_like_server(seg.sport, seg.dport)
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
        self._flows[(caddr, cport, saddr, sport)] = conn
        self._flows[(saddr, sport, caddr, cport)] = conn
        self._live[conn.conn_id] = conn
        self._out.append(ConnectionStarted(conn.conn_id, seg.ts_ns, seg.frame, caddr, cport,
                                           saddr, sport, role_inferred, mid_stream))
        if synack:
            self._arm_state_timer(conn, client)
        return conn

    def _is_new_incarnation(self, conn: Connection, seg: Segment) -> bool:
        """A SYN without ACK on a known 4-tuple: a retransmission, the peer's SYN of a
        simultaneous open, or a new connection reusing the 4-tuple?"""
        sender = conn.client if seg.src == conn.client.addr and seg.sport == conn.client.port \
            else conn.server
        if sender.isn is not None:
            return sender.isn != seg.seq
        peer = conn.peer(sender)
        # The other side's SYN while ours is unanswered: simultaneous open.
        return not (peer.state == SYN_SENT and sender.packets == 0)

    def _supersede(self, conn: Connection, seg: Segment) -> None:
        """A new SYN reuses the 4-tuple: the sender's old socket is gone, and a peer in
        TIME_WAIT may accept the SYN and drop its old socket (RFC 9293 3.10.7.4 note;
        Linux tcp_timewait_state_process returns TCP_TW_SYN), as `_tw_takes` decides. When
        that cannot be told at the SYN, the TIME_WAIT lives on, beside the new attempt,
        until its answer shows which (`_syn_taken`: a SYN-ACK; else the old instance's
        ACK, the new client's RST that kills it, and the SYN again)."""
        sender = conn.client if seg.src == conn.client.addr and seg.sport == conn.client.port \
            else conn.server
        receiver = conn.peer(sender)
        alive = [ep for ep in (sender, receiver) if ep.state in ALIVE]
        live = [f"{ep.side} {ep.state}" for ep in alive]
        self._reuse_states = [ep.state.value for ep in alive]
        self._reuse_note = (f"new SYN reuses the 4-tuple of connection {conn.conn_id}, whose "
                            f"{' and '.join(live)} socket was still there") if live else None
        if sender.state not in (CLOSED, LISTEN):
            self._transition(conn, sender, CLOSED, "new SYN on the 4-tuple", seg.frame,
                             seg.ts_ns, inferred=True, kind="")
        taken = self._tw_takes(sender, receiver, seg) if receiver.state == TIME_WAIT else None
        if taken is not None:
            self._transition(conn, receiver, CLOSED, f"recv SYN (new incarnation{taken})",
                             seg.frame, seg.ts_ns, inferred=True, kind="")
        c, s = conn.client, conn.server
        for key in ((c.addr, c.port, s.addr, s.port), (s.addr, s.port, c.addr, c.port)):
            if self._flows.get(key) is conn:
                del self._flows[key]
        if receiver.state not in ALIVE:
            self._end(conn)
        # Otherwise the old socket lives on beside the new attempt: a synchronized socket
        # answers the SYN with a challenge ACK (RFC 5961 4), the new client answers that
        # with RST, which kills the old socket. Those segments go to the old instance.

    @staticmethod
    def _tw_takes(sender: Endpoint, receiver: Endpoint, seg: Segment) -> str | None:
        """Does ``receiver``, in TIME_WAIT, take ``sender``'s new SYN at once? None if that
        cannot be told at the SYN, else what the transition's event text adds ("" when
        the sequence number decided, as it always did).

        Linux tcp_timewait_state_process returns TCP_TW_SYN for a SYN (no ACK, no RST)
        that PAWS does not reject (tcp_paws_reject: its TSval older than the socket's
        ts_recent) and whose sequence number is after tw_rcv_nxt, or whose TSval is newer
        than ts_recent (``(s32)(tw_ts_recent - rcv_tsval) < 0``). Timestamps count when
        the old connection used them (tw_ts_recent_stamp is set only then): both sides'
        segments since its first FIN carried them, and so does the SYN. ts_recent is a
        TSval the TIME_WAIT side received from ``sender``, so at most the newest one the
        capture saw ``sender`` send (TSvals only grow): a SYN newer than that is newer than
        ts_recent; one as new is not rejected; an older one may be rejected by PAWS, which
        its answer will show. The event text names the timestamp when it decided (a
        sequence number not after tw_rcv_nxt). Without timestamps the sequence number
        decides alone."""
        expected = receiver.max_ack if receiver.max_ack is not None else sender.snd_nxt
        seq_after = expected is None or seq_diff(seg.seq, expected) > 0
        if seg.tsval >= 0 and sender.tsval_hi >= 0 and receiver.tsval_hi >= 0:
            age = seq_diff(seg.tsval, sender.tsval_hi)  # (s32) difference, as PAWS's
            if age < 0:
                return None
            if seq_after:
                return ""
            return ": newer timestamp" if age > 0 else None
        return "" if seq_after else None

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
        self._transition(old, side, CLOSED, "recv SYN (new incarnation, taken: its SYN-ACK "
                         f"at frame {seg.frame})", conn.first_frame, conn.first_ts,
                         inferred=True, kind="")
        if old.peer(side).state not in ALIVE:
            self._end(old)

    @staticmethod
    def _belongs_to_predecessor(conn: Connection, seg: Segment) -> bool:
        """Is this segment, on a reused 4-tuple, part of the old instance's ending?"""
        old = conn.predecessor
        assert old is not None
        if old.finished:
            conn.predecessor = None
            return False
        if seg.flags & SYN:
            return False
        if seg.src == old.client.addr and seg.sport == old.client.port:
            sender, receiver = old.client, old.server
        else:
            sender, receiver = old.server, old.client
        if receiver.state not in ALIVE and sender.state not in ALIVE:
            return False
        if seg.flags & RST:
            # The new client's RST answering the old socket's challenge ACK carries that
            # ACK's acknowledgment number: what the old socket expects next.
            return receiver.state in ALIVE and seg.seq in (receiver.max_ack, sender.snd_nxt)
        return sender.state in ALIVE and seg.seq == sender.snd_nxt

    def _end(self, conn: Connection) -> None:
        if conn.finished:
            return
        conn.finished = True
        self._decide_silent_server(conn)
        self._live.pop(conn.conn_id, None)
        c, s = conn.client, conn.server
        for key in ((c.addr, c.port, s.addr, s.port), (s.addr, s.port, c.addr, c.port)):
            if self._flows.get(key) is conn:
                del self._flows[key]
        trans, notes = _judged_by(conn)
        record = _record(conn)
        if self._ending_at is not None:
            record.settle(trans, self._ending_at)
        self._out.append(ConnectionEnded(record, trans, notes, self._ending_at is not None))

    def _decide_silent_server(self, conn: Connection) -> None:
        """A server that never answered the client's SYNs holds no socket for them, whether
        they reached it or not (dropped by a full accept queue, a filter, a host that is
        down): CLOSED, not UNKNOWN, once the client sent its SYN again or a second passed
        (Linux's first SYN timeout) without an answer; before that the answer may still be
        on its way."""
        c, s = conn.client, conn.server
        if s.state != UNKNOWN or s.packets or s.history or conn.mid_stream \
                or c.first_syn_ns is None or c.last_syn_ns is None:
            return
        end = self._ending_at if self._ending_at is not None else (self.now_ns or 0)
        if c.last_syn_ns > c.first_syn_ns or end - c.first_syn_ns >= NS:
            s.state = s.initial_state = CLOSED

    # ------------------------------------------------------------------ fast lane
    def steady(self, src: str, sport: int, dst: str, dport: int) -> Connection | None:
        """The connection a segment from (src, sport) to (dst, dport) goes to, if it is in
        the steady state where an in-order ACK or data segment changes nothing but counters
        (both sides ESTABLISHED, no FIN, handshake bookkeeping done); else None."""
        conn = self._flows.get((src, sport, dst, dport))
        if conn is None or conn.predecessor is not None:
            return None
        c, s = conn.client, conn.server
        if c.state is not ESTABLISHED or s.state is not ESTABLISHED:
            return None
        for a, b in ((c, s), (s, c)):
            if a.fin_seq is not None or a.fin_seg is not None or a.got_fin \
                    or a.snd_nxt is None or a.max_ack is None \
                    or a.rtt_ns is None and b.first_synack_ns is not None:
                return None
        if not conn.peers.quiet(c.snd_nxt, s.snd_nxt, c.max_ack, s.max_ack):
            return None
        return conn

    def absorb(self, conn: Connection, rows: Iterable[tuple[int, int, bool, int, int, int,
                                                             int, int]]) -> int:
        """Apply a run of segments of a `steady` connection, each (frame, ts_ns,
        from_client, seq, ack, flags, payload_len, window) with ACK set and no SYN, FIN or
        RST, exactly as `feed` would, as long as each is one that changes no state and
        emits nothing: not a duplicate, not keep-alive shaped, not a retransmission.
        Returns how many it applied (a prefix); the caller feeds the next one normally.
        It does not fire timers: a steady connection has none, and others' wait for the
        next `feed`, which fires them at their own deadlines, so the events are the same.
        """
        c, s = conn.client, conn.server
        peers_ok = conn.peers.fast_rows()
        idle, c0, s0 = conn.peers.inactivity_ns(), c.packets, s.packets
        n = 0
        for frame, ts, from_client, seq, ack, flags, plen, win in rows:
            if ts - conn.last_ts >= idle:  # Zeek's inactivity timer: a new Zeek connection
                break
            a = c if from_client else s
            key = (seq, ack, flags, plen, win)
            if key == a.last_key and ts - a.last_ns <= DUPLICATE_NS:  # type: ignore[operator]
                break
            snd_nxt = a.snd_nxt
            if plen <= 1 and (snd_nxt - seq) & 0xFFFFFFFF == 1:  # type: ignore[operator]
                break
            # seq_diff(x, y) > 0 written out in this hot loop: 0 < (x - y) mod 2**32 < 2**31
            if not win or (seq != snd_nxt if plen else 0 < (seq - snd_nxt) & _MASK32 < _HALF) \
                    or 0 < (ack - (s if from_client else c).snd_nxt) & _MASK32 < _HALF:  # type: ignore
                # Zeek records something (a zero window, a retransmission, a gap) or its
                # reassembler does (data not exactly at SND.NXT): the plain way
                break
            if plen:
                end = (seq + plen) & 0xFFFFFFFF
                hi = a.data_hi
                if hi is None:
                    a.bytes += plen
                else:
                    d = (end - hi) & _MASK32  # seq_diff(end, hi), mod 2**32
                    if d == 0 or d >= _HALF:
                        break
                    a.bytes += plen if plen < d else d
                a.data_hi = end
                a.last_data_ns = a.last_payload_ns = ts
                a.rtx_run_start_ns = None
                if 0 < (end - snd_nxt) & _MASK32 < _HALF:  # type: ignore[operator]
                    a.snd_nxt = end
            elif 0 < (seq - snd_nxt) & _MASK32 < _HALF:  # type: ignore[operator]
                a.snd_nxt = seq
            a.rtx_run = 0
            if 0 < (ack - a.max_ack) & _MASK32 < _HALF:  # type: ignore[operator]
                a.max_ack = ack
            a.window = win
            a.last_key = key
            a.last_ns = ts
            a.packets += 1
            conn.packets += 1
            if ts > conn.last_ts:
                conn.last_ts = ts
            conn.last_frame = frame
            if not peers_ok[from_client][plen > 0]:  # the side's first ACK / data: Zeek's A/D
                conn.peers.first_letter(from_client, plen > 0)
                peers_ok = conn.peers.fast_rows()
            n += 1
        if n:
            conn.peers.absorbed(c.snd_nxt, s.snd_nxt, c.max_ack, s.max_ack,  # type: ignore
                                conn.last_ts, c.packets - c0, s.packets - s0)
            self._saw(conn.last_ts)
        return n

    def absorb_columns(self, conn: Connection, from_client: np.ndarray, frame: np.ndarray,
                       ts: np.ndarray, seq: np.ndarray, ack: np.ndarray, flags: np.ndarray,
                       plen: np.ndarray, win: np.ndarray) -> int:
        """`absorb` for a long run given as int64 arrays: the same test for each segment
        and the same result, computed with running maxima over sequence numbers made
        linear around the sides' current values (segments more than 2**30 away from them
        end the run: the plain rules of modular comparison then apply). Both sides in one
        pass: a side's running maximum skips the other side's rows, so at any row it is
        what that side had sent before it. (numpy is imported here, by the fast path that
        calls this, not with the sans-IO tracker.)"""
        import numpy as np

        c, s = conn.client, conn.server
        assert c.snd_nxt is not None and s.snd_nxt is not None
        assert c.max_ack is not None and s.max_ack is not None
        his = []
        for ep in (c, s):
            hi0 = -_MOD if ep.data_hi is None else seq_diff(ep.data_hi, ep.snd_nxt)
            if hi0 != -_MOD and abs(hi0) >= _FAR:
                return 0
            his.append(hi0)
        n = len(frame)
        fc, fs = from_client, ~from_client
        data = plen > 0

        def rel(col: np.ndarray, to_c: int, to_s: int) -> np.ndarray:
            """`seq_diff` of each row of col and its side's value."""
            return ((col - np.where(fc, to_c - _HALF, to_s - _HALF)) & _MASK32) - _HALF

        s_rel = rel(seq, c.snd_nxt, s.snd_nxt)
        a_rel = rel(ack, c.max_ack, s.max_ack)
        end = s_rel + plen
        # Before each row (n + 1 values: the last is after every row), relative to the
        # side's: what the client, the server had sent (SND.NXT, at least 0), the highest
        # data end of the client, of the server (at least what it was).
        masks = np.stack((fc, fs, fc & data, fs & data))
        start = np.array([[0], [0], [his[0]], [his[1]]], dtype=np.int64)
        most = np.empty((4, n + 1), dtype=np.int64)
        most[:, :1] = start
        np.maximum.accumulate(np.where(masks, end, -_MOD), axis=1, out=most[:, 1:])
        np.maximum(most[:, 1:], start, out=most[:, 1:])
        sent_c, sent_s, hi_c, hi_s = most
        nxt_before = np.where(fc, sent_c[:-1], sent_s[:-1])
        hi_before = np.where(fc, hi_c[:-1], hi_s[:-1])
        # the peer's ACK beyond what this side sent so far: a gap (Zeek)
        bad = rel(ack, s.snd_nxt, c.snd_nxt) > np.where(fc, sent_s[:-1], sent_c[:-1])
        bad |= (np.abs(s_rel) >= _FAR) | (np.abs(a_rel) >= _FAR)
        bad |= (plen <= 1) & (nxt_before - s_rel == 1)  # keep-alive shape
        bad |= data & (end <= hi_before)  # retransmitted data
        # What Zeek records (see absorb): zero windows, data not exactly at SND.NXT, a
        # segment beyond it (a hole).
        bad |= (win == 0) | np.where(data, s_rel != nxt_before, s_rel > nxt_before)
        # A duplicate: the side's previous segment again (seq and ack first; the other
        # fields only where those repeat), within DUPLICATE_NS.
        row = np.arange(n)
        last_c = np.maximum.accumulate(np.where(fc, row, -1))  # the side's last row so far
        last_s = np.maximum.accumulate(np.where(fc, -1, row))
        prev = np.empty(n, dtype=np.int64)
        prev[0] = -1
        np.copyto(prev[1:], np.where(fc[1:], last_c[:-1], last_s[:-1]))
        q = np.maximum(prev, 0)
        same = (prev >= 0) & (seq[q] == seq) & (ack[q] == ack)
        if same.any():
            at = same.nonzero()[0]
            q = q[at]
            for col in (flags, plen, win):
                same[at] &= col[at] == col[q]
            same[at] &= (ts[at] - ts[q]) <= DUPLICATE_NS
        for ep, side in ((c, fc), (s, fs)):
            if side.any():
                i = int(side.argmax())
                same[i] = ((int(seq[i]), int(ack[i]), int(flags[i]), int(plen[i]),
                            int(win[i])) == ep.last_key
                           and int(ts[i]) - ep.last_ns <= DUPLICATE_NS)  # type: ignore
        bad |= same
        # Zeek's inactivity timer: a segment that long after the previous one starts a new
        # Zeek connection (tcplife.peers.zeek), so it goes through `feed`.
        before = np.maximum.accumulate(np.concatenate(([conn.last_ts], ts[:-1])))
        bad |= ts - before >= conn.peers.inactivity_ns()
        stop = int(bad.argmax()) if bad.any() else n
        if stop == 0:
            return 0
        peers_ok = conn.peers.fast_rows()
        c0, s0 = c.packets, s.packets
        firsts: list[tuple[int, bool, bool]] = []
        for ep, side, sent, hi, last, is_c in ((c, fc, sent_c, hi_c, last_c, True),
                                               (s, fs, sent_s, hi_s, last_s, False)):
            mine = side[:stop]
            m = int(np.count_nonzero(mine))
            if m == 0:
                continue
            for ok, want in zip(peers_ok[is_c], (False, True), strict=True):
                if not ok:  # the side's first ACK / data: Zeek's A / D
                    kind = mine & (data[:stop] if want else ~data[:stop])
                    if kind.any():
                        firsts.append((int(kind.argmax()), is_c, want))
            base = ep.snd_nxt
            assert base is not None and ep.max_ack is not None
            top = int(sent[stop])
            if top > 0:
                ep.snd_nxt = (base + top) % _MOD
            mine_data = mine & data[:stop]
            if mine_data.any():
                # new bytes: the part above the highest data end before (all of it if
                # none: end - (-2**32) is more than any length)
                ep.bytes += int(np.minimum(plen[:stop], end[:stop] - hi_before[:stop])
                                .sum(where=mine_data))
                ep.data_hi = (base + int(hi[stop])) % _MOD  # each one raised it
                i = stop - 1 - int(mine_data[::-1].argmax())
                ep.last_data_ns = ep.last_payload_ns = int(ts[i])
                ep.rtx_run_start_ns = None
            amax = int(a_rel[:stop].max(where=mine, initial=-_MOD))
            if amax > 0:
                ep.max_ack = (ep.max_ack + amax) % _MOD
            i = int(last[stop - 1])
            ep.rtx_run = 0
            ep.window = int(win[i])
            ep.last_key = (int(seq[i]), int(ack[i]), int(flags[i]), int(plen[i]), int(win[i]))
            ep.last_ns = int(ts[i])
            ep.packets += m
        conn.packets += stop
        conn.last_ts = max(conn.last_ts, int(ts[:stop].max()))
        conn.last_frame = int(frame[stop - 1])
        for _, from_client_, is_data in sorted(firsts):
            conn.peers.first_letter(from_client_, is_data)
        conn.peers.absorbed(c.snd_nxt, s.snd_nxt, c.max_ack, s.max_ack,  # type: ignore
                            conn.last_ts, c.packets - c0, s.packets - s0)
        self._saw(conn.last_ts)
        return stop

    # ------------------------------------------------------------------ segments
    def _process(self, conn: Connection, seg: Segment) -> None:
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
            self._odd(conn, a, seg, "capture_duplicate", "the same segment captured twice")
            return
        a.last_key = key
        a.last_ns = ts
        syn, fin, rst, ackf = flags & SYN, flags & FIN, flags & RST, flags & ACK
        if seg.tsval >= 0 and (fin or a.fin_seq is not None or b.fin_seq is not None) \
                and (a.tsval_hi < 0 or seq_diff(seg.tsval, a.tsval_hi) > 0):
            a.tsval_hi = seg.tsval
        if not (syn or rst):
            self._note_data_facts(conn, a, seg)

        if a.state == UNKNOWN and not a.history and not conn.mid_stream \
                and a is conn.server and not (rst and not _rst_acceptable(a, b, seg)):
            self._decide_server(a, seg)  # (an RST the client would drop tells nothing)
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
            self._contradict(conn, a, "fin", seg,
                             "its RST does not acknowledge the peer's FIN: not received yet")

        if syn and fin and not rst and a.state in (CLOSED, UNKNOWN, SYN_SENT):
            # no stack opens a connection with SYN+FIN (Linux drops it in LISTEN): a probe
            self._odd(conn, a, seg, "syn_with_fin", "SYN with FIN: a scan probe")

        # 2. The sender's own change.
        if rst:
            self._send_rst(conn, a, b, seg)
        elif syn:
            if ackf and a.isn is not None and a.isn != seg.seq:
                # SYN-ACKs with two ISNs for one SYN: two responders (a load balancer,
                # anycast) or a request restarted. While in SYN_RECEIVED, the client's ACK
                # shows which one it took; later, the other one is only an oddity.
                if a.alt_isn != seg.seq:
                    self._odd(conn, a, seg, "synack_isn_changed",
                              f"SYN-ACK with ISN {seg.seq}, earlier {a.isn}")
                a.alt_isn = seg.seq
                self._recv(conn, a, b, seg)  # the client may take either
                return
            is_rtx = a.isn is not None and a.isn == seg.seq
            if is_rtx:
                self._odd(conn, a, seg, "synack_rtx" if ackf else "syn_rtx",
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
                self._apply(conn, a, SEND_SYNACK if ackf else SEND_SYN, seg,
                            inferred=False)
        elif fin:
            fin_seq = seq_add(seg.seq, seg.payload_len)
            cell = step(a.state, SEND_FIN)
            if a.fin_seq is None and isinstance(cell, Stay) and cell.note:
                # e.g. a FIN before the handshake: noted, not taken as this side's FIN.
                self._odd(conn, a, seg, cell.note, f"{SEND_FIN} in {a.state}")
            elif a.fin_seq is None:
                a.fin_seq = fin_seq
                a.fin_seg = (seg.seq, ts)
                a.last_data_ns = ts
                self._apply(conn, a, SEND_FIN, seg, inferred=a.state == UNKNOWN)
                if b.max_ack is not None and a.covers(b.max_ack, a.fin_end):
                    # The capture reordered them: the peer's ACK of this FIN came first.
                    self._deduce_ack(conn, a, seg, RECV_ACK_FIN, "ack_fin")
            elif fin_seq == a.fin_seq and not self._piggybacked_ack(a, seg):
                # hole: the peer still misses data before the FIN, which is why the FIN
                # goes unacknowledged (it is resent with or after that data).
                self._note(conn, Oddity(conn.conn_id, ts, frame, a.side, "fin_rtx",
                                        f"FIN retransmitted in {a.state}",
                                        {"state": a.state.value, "hole": a.fin_hole}))
            else:
                self._odd(conn, a, seg, "fin_moved",
                          f"FIN at sequence {fin_seq} after an earlier FIN at {a.fin_seq}")
        else:
            if a.rtt_ns is None and b.first_synack_ns is not None and ackf:
                a.rtt_ns = ts - b.first_synack_ns  # the ACK answering the SYN-ACK
            if a.state == UNKNOWN:
                self._apply(conn, a, SEND_ACK, seg, inferred=True)
            elif a.state in (SYN_SENT, SYN_RECEIVED) and ackf \
                    or a.state == CLOSED:
                self._apply(conn, a, SEND_ACK, seg, inferred=False)
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
        if conn.client.state == CLOSED and conn.server.state in (CLOSED,
                                                                        LISTEN):
            self._arm_eviction(conn)

    @staticmethod
    def _piggybacked_ack(a: Endpoint, seg: Segment) -> bool:
        """A FIN sent again soon (under Linux's 200 ms minimum RTO) with a new ACK is the
        ACK of the peer's FIN riding on the unacknowledged FIN (some stacks do this), not
        a retransmission for loss."""
        return (a.last_fin_ns is not None and seg.ts_ns - a.last_fin_ns < _MIN_RTO_NS
                and a.max_ack is not None and seq_diff(seg.ack, a.max_ack) > 0)

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
            self._odd(conn, a, seg, "keepalive_probe", "keep-alive probe")
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
            self._push_timer(seg.ts_ns + self.options.ns("retransmit"), conn, a.side,
                             seg.ts_ns, RTX)
        if a.rtx_run >= 3 and seg.ts_ns - a.rtx_run_start_ns >= NS and not a.silence_noted \
                and not seg.flags & FIN:  # a FIN sent again is missing_final_ack's evidence
            a.silence_noted = True
            self._odd(conn, a, seg, "silence_rtx",
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
            self._odd(conn, a, seg, "half_close",
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
                self._contradict(conn, a, "synack", seg, "SYN retransmitted")
        if fin and a.fin_seq is not None and seq_add(seg.seq, seg.payload_len) == a.fin_seq:
            self._rtx_contradicts_ack(conn, a, seg, "ack_fin", "FIN retransmitted")
        if a.state == CLOSED and any(h.retract_on == "timeout" for h in a.history):
            self._contradict(conn, a, "timeout", seg, "still sending after the timeout")
        if not ackf or syn:
            return False
        fin_end = b.fin_end
        if fin_end is None:
            return False
        if a.covers(seg.ack, fin_end):
            if not a.got_fin:
                # Its own ACK shows it has the peer's FIN, which we had not credited.
                a.got_fin = True
                self._apply(conn, a, RECV_FIN, seg, inferred=False, kind="")
        elif a.got_fin:
            crossed = self._sent_before_fin(a, b, seg)
            self._contradict(conn, a, "fin", seg,
                             "its TSecr predates the peer's FIN: sent before it arrived"
                             if crossed else
                             "its ACK does not cover the peer's FIN: not received yet")
            return crossed
        return False

    @staticmethod
    def _sent_before_fin(a: Endpoint, b: Endpoint, seg: Segment) -> bool:
        """``a``'s segment, whose ACK does not cover ``b``'s FIN, captured after that FIN
        (its latest transmission) within the crossing window: did it cross the FIN (sent
        before the FIN arrived, which then arrived just after) rather than follow a FIN
        that was lost? Capture order cannot tell when both pass within microseconds (a
        side's own capture may even list the arrival first). The timestamp echo shows when
        it was sent: Linux puts in TSecr the ts_recent it holds (tcp_established_options),
        and an in-order segment updates ts_recent on arrival (tcp_ack with
        FLAG_UPDATE_TS_RECENT -> tcp_replace_ts_recent), so a TSecr older than the FIN's
        TSval was sent before the FIN arrived, whatever the capture order. Within the
        window the FIN is then taken as delivered just after, as an ACK crossing a
        retransmission is (`_rtx_contradicts_ack`), provided the segment's ACK stands
        exactly at the FIN: everything the peer sent before it had arrived, only the FIN
        was on its way (a segment that also misses data before the FIN shows a side not
        taking in what arrives, whatever its timestamps). A TSecr as new as the FIN's TSval
        (one millisecond holds many segments), a segment long after the FIN (lost), or a
        segment or FIN without timestamps: the FIN counts as not received, as before."""
        if seg.tsecr < 0 or b.fin_tsval < 0 or b.last_fin_ns is None or seg.ack != b.fin_seq:
            return False
        if seg.ts_ns - b.last_fin_ns > a.crossing_window_ns():
            return False  # long after: the FIN was lost, whatever the timestamps say
        return seq_diff(seg.tsecr, b.fin_tsval) < 0

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
        self._transition(conn, a, cell, "recv FIN (after its own segment, by TSecr)",
                         seg.frame, seg.ts_ns, inferred=True, kind="fin")
        if a.fin_end is not None and b.max_ack is not None and a.covers(b.max_ack, a.fin_end):
            cell = step(a.state, RECV_ACK_FIN)
            if isinstance(cell, State):
                a.fin_acked = True
                a.last_fin_cover = (seg.ts_ns, seg.frame)
                self._transition(conn, a, cell, str(RECV_ACK_FIN), seg.frame, seg.ts_ns,
                                 inferred=True, kind="ack_fin")

    @staticmethod
    def _decide_server(a: Endpoint, seg: Segment) -> None:
        """The server's first answer tells what it was before the client's SYN: a SYN-ACK
        comes from a listener, an RST from a closed port (seed 000 case 1), a SYN of its
        own from a socket connecting to the client (simultaneous open). Until it answers,
        its state is UNKNOWN; afterwards the initial state holds from the start."""
        flags = seg.flags & (SYN | ACK | RST)
        if flags == SYN | ACK:
            a.state = a.initial_state = LISTEN
        elif flags & RST or flags == SYN:
            a.state = a.initial_state = CLOSED

    def _send_rst(self, conn: Connection, a: Endpoint, b: Endpoint, seg: Segment) -> None:
        if a.state == UNKNOWN and a.side == SERVER and b.state == SYN_SENT \
                and not _rst_acceptable(a, b, seg):
            return  # forged, or from another host: the client drops it (see _recv_rst)
        if not seg.flags & ACK and a.history and a.history[-1].retract_on == "ack_syn" \
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
        self._note(conn, Oddity(conn.conn_id, seg.ts_ns, seg.frame, a.side, "rst_sent",
                                f"RST sent in {a.state}",
                                {"state": a.state.value, "unread": unread,
                                 "ack": bool(seg.flags & ACK),
                                 "fin_sent": a.fin_seq is not None,
                                 # the last window it offered was zero: its receive buffer
                                 # was full, the application not reading
                                 "zero_window": a.window == 0 and a.max_ack is not None,
                                 "probes": probes, "probe_since": a.probe_since_ns}))
        if a.state == CLOSED:
            return
        was = a.state
        self._apply(conn, a, SEND_RST, seg, inferred=False)
        if a.state == CLOSED and was != TIME_WAIT:  # a closed connection's TIME_WAIT cut
            conn.rst_closed = True                   # short is not an RST close

    def _no_socket(self, conn: Connection, a: Endpoint, seg: Segment) -> None:
        """A bare RST (no ACK flag) is the kernel's answer for a connection it has no
        socket for (tcp_v4_send_reset answering a segment with ACK); a synchronized socket
        that aborts sends RST-ACK (tcp_send_active_reset). So the handshake's last ACK,
        deduced received, never was: undo that, and if the request socket's SYN-ACK
        retries ran out before this RST, it ended then (the timeout its timer would have
        fired), so the RST comes from no socket."""
        self._contradict(conn, a, "ack_syn", seg,
                         "a bare RST: its kernel had no socket for the connection")
        if a.state == SYN_RECEIVED:
            first = a.first_synack_ns if a.first_synack_ns is not None else a.since_ns
            deadline = first + self.options.ns("syn_received")
            if deadline <= seg.ts_ns:
                conn.timed_out = True
                self._transition(conn, a, CLOSED, "timeout", None, deadline,
                                 inferred=True, kind="timeout")

    def _recv_rst(self, conn: Connection, a: Endpoint, b: Endpoint, seg: Segment) -> None:
        if b.state in (CLOSED, LISTEN):
            return
        if not _rst_acceptable(a, b, seg):
            self._odd(conn, b, seg, "rst_ignored",
                      f"RST seq {seg.seq} outside what {b.side} would accept")
            return
        was = b.state
        self._apply(conn, b, RECV_RST, seg, inferred=True)
        if b.state == CLOSED and was != TIME_WAIT:
            conn.rst_closed = True

    def _recv(self, conn: Connection, a: Endpoint, b: Endpoint, seg: Segment) -> None:
        flags = seg.flags
        syn, fin, ackf = flags & SYN, flags & FIN, flags & ACK
        ts = seg.ts_ns
        if syn:
            if ackf:
                if b.isn is not None and seg.ack == seq_add(b.isn, 1):
                    self._apply(conn, b, RECV_SYNACK, seg, inferred=True, kind="synack")
                elif b.state == SYN_SENT:
                    self._odd(conn, b, seg, "bad_synack",
                              f"SYN-ACK acknowledges {seg.ack}, not the SYN")
            else:
                self._apply(conn, b, RECV_SYN, seg, inferred=True)
            return
        # Segments from ``a`` reach ``b`` in the order sent: anything ``a`` sent after its
        # FIN implies the FIN arrived first (unless lost, which b's ACKs will show).
        if a.fin_seq is not None and not b.got_fin and not fin \
                and seq_diff(seg.seq, a.fin_seq) > 0:
            b.got_fin = True
            self._apply(conn, b, RECV_FIN, seg, inferred=True, kind="fin")
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
                self._apply(conn, b, RECV_FIN, seg, inferred=True, kind="fin")
            elif b.state == TIME_WAIT:
                # A retransmitted FIN restarts TIME_WAIT (Linux inet_twsk_reschedule).
                b.since_ns = ts
                b.timer_gen += 1
                self._arm_state_timer(conn, b)

    def _deduce_ack(self, conn: Connection, b: Endpoint, seg: Segment, ev: Ev,
                    kind: str) -> None:
        if kind == "ack_fin":
            b.last_fin_cover = (seg.ts_ns, seg.frame)
            if b.fin_acked:
                return
            b.fin_acked = True
        else:
            b.last_syn_cover = (seg.ts_ns, seg.frame)
        self._apply(conn, b, ev, seg, inferred=True, kind=kind)

    def _rtx_contradicts_ack(self, conn: Connection, a: Endpoint, seg: Segment, kind: str,
                             reason: str) -> None:
        """``a`` retransmits its FIN (SYN-ACK): the ACKs of it that the capture saw before
        did not reach it, unless they were captured so shortly before that they crossed
        this retransmission on the way."""
        window = a.crossing_window_ns()
        entry = next((h for h in reversed(a.history) if h.retract_on == kind), None)
        if entry is None or seg.ts_ns - entry.ts_ns <= window:
            return
        self._contradict(conn, a, kind, seg, reason)
        self._note(conn, Oddity(conn.conn_id, seg.ts_ns, seg.frame, a.side, "ack_lost",
                                f"{reason} after the peer's ACK of it", {"kind": kind}))
        cover = a.last_fin_cover if kind == "ack_fin" else a.last_syn_cover
        if cover is not None and seg.ts_ns - cover[0] <= window:
            # A later ACK, captured just before this retransmission: it crossed it.
            if kind == "ack_fin":
                a.fin_acked = True
            ev = RECV_ACK_FIN if kind == "ack_fin" else RECV_ACK_SYN
            cell = step(a.state, ev)
            if isinstance(cell, State):
                self._transition(conn, a, cell, str(ev), cover[1], cover[0], inferred=True,
                                 kind=kind)

    # ------------------------------------------------------------------ transitions
    def _apply(self, conn: Connection, ep: Endpoint, ev: Ev, seg: Segment, *,
               inferred: bool, kind: str = "") -> None:
        result = step(ep.state, ev)
        if isinstance(result, Stay):
            if result.note:
                self._odd(conn, ep, seg, result.note, f"{ev} in {ep.state}")
            return
        self._transition(conn, ep, result, str(ev), seg.frame, seg.ts_ns,
                         inferred=inferred or ep.state == UNKNOWN, kind=kind)

    def _transition(self, conn: Connection, ep: Endpoint, to: State, event: str,
                    frame: int | None, ts: int, *, inferred: bool, kind: str) -> None:
        tid = self._next_tid
        self._next_tid += 1
        transition = Transition(tid, conn.conn_id, ts, ep.side, ep.addr, ep.port, ep.state,
                                to, event, frame, inferred, ep.since_ns, kind)
        ep.history.append(transition)
        ep.state = to
        ep.since_ns = ts
        ep.timer_gen += 1
        self._out.append(transition)
        self._arm_state_timer(conn, ep)

    def _contradict(self, conn: Connection, ep: Endpoint, kind: str, seg: Segment,
                    reason: str) -> None:
        """Undo the latest deduction of ``kind`` about ``ep`` and everything after it."""
        for index in range(len(ep.history) - 1, -1, -1):
            if ep.history[index].retract_on == kind:
                break
        else:
            return
        undone = ep.history[index:]
        del ep.history[index:]
        for entry in reversed(undone):
            self._out.append(Retraction(entry.tid, conn.conn_id, ep.side, seg.ts_ns,
                                        seg.frame, reason))
        first = undone[0]
        ep.state = first.from_state
        ep.since_ns = first.from_since_ns
        ep.timer_gen += 1
        if kind == "ack_fin":
            ep.fin_acked = False
        if any(e.retract_on == "fin" for e in undone):
            ep.got_fin = False
        if kind == "timeout":
            conn.timed_out = any(h.retract_on == "timeout" and h.from_state != TIME_WAIT
                                 for h in conn.client.history + conn.server.history)
        self._odd(conn, ep, seg, "retracted", f"{reason}: undid {len(undone)} transition(s)")
        self._arm_state_timer(conn, ep)

    # ------------------------------------------------------------------ timers
    def _push_timer(self, deadline: int, conn: Connection, side: str, gen: int,
                    kind: str) -> None:
        timer = self.timers.push(deadline, conn.conn_id, side, kind, gen)
        if self.observer is not None:
            self.observer.timer_armed(timer)

    def _stale(self, timer: Timer) -> bool:
        """Can ``timer`` no longer fire? (its connection ended, or a newer timer of the
        same side, or a packet since, superseded it: a SYN_SENT timer outlives its
        handshake by 127 s, and a busy capture piles them up)"""
        conn = self._live.get(timer.conn_id)
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
            deadline = ep.since_ns + o.ns("time_wait")
        elif state == FIN_WAIT_2 and not ep.not_orphan:
            deadline = ep.since_ns + o.ns("fin_wait_2")
        elif state == SYN_SENT:
            deadline = (ep.first_syn_ns if ep.first_syn_ns is not None else ep.since_ns) \
                + o.ns("syn_sent")
        elif state == SYN_RECEIVED:
            first = ep.first_synack_ns if ep.first_synack_ns is not None else ep.since_ns
            deadline = first + o.ns("syn_received")
        else:
            return
        self._push_timer(deadline, conn, ep.side, ep.timer_gen, STATE)

    def _arm_eviction(self, conn: Connection) -> None:
        conn.evict_gen += 1
        self._push_timer(conn.last_ts + self.options.ns("closed_linger"), conn, "",
                         conn.evict_gen, EVICT)

    def _advance(self, now: int) -> None:
        observer = self.observer
        for timer in self.timers.due(now):
            if observer is None:
                self._fire(timer)
                continue
            observer.timer_firing(timer)
            n0 = len(self._out)
            self._fire(timer)
            observer.timer_fired(timer, self._out[n0:])

    def _fire(self, timer: Timer) -> None:
        deadline, _, side, conn_id, kind, gen = timer
        conn = self._live.get(conn_id)
        if conn is None:
            return
        if kind == EVICT:
            if gen == conn.evict_gen and conn.last_ts + self.options.ns(
                    "closed_linger") <= deadline:
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
                self._transition(conn, ep, CLOSED, "timeout", None, deadline,
                                 inferred=True, kind="timeout")
                self._maybe_evict(conn)
            return
        if gen != ep.timer_gen:
            return
        if ep.state != TIME_WAIT:  # TIME_WAIT ending is the normal close
            conn.timed_out = True
        self._transition(conn, ep, CLOSED, "timeout", None, deadline,
                         inferred=True, kind="timeout")
        self._maybe_evict(conn)

    def _maybe_evict(self, conn: Connection) -> None:
        if conn.client.state == CLOSED and conn.server.state in (CLOSED,
                                                                        LISTEN):
            self._arm_eviction(conn)

    # ------------------------------------------------------------------ helpers
    def _odd(self, conn: Connection, ep: Endpoint, seg: Segment, name: str,
             detail: str) -> None:
        self._note(conn, Oddity(conn.conn_id, seg.ts_ns, seg.frame, ep.side, name, detail))

    def _note(self, conn: Connection, oddity: Oddity) -> None:
        """Emit ``oddity``; kept on the connection for its `ConnectionEnded`."""
        self._out.append(oddity)
        if conn.notes is None:
            conn.notes = [oddity]
        else:
            conn.notes.append(oddity)


def _transition_order(t: Transition) -> tuple[int, int]:
    return t.ts_ns, t.tid


def _judged_by(conn: Connection) -> tuple[list[Transition], list[Oddity]]:
    """A connection's transitions (its sides' histories: the retracted ones left out), in
    (ts_ns, tid) order, and its notes."""
    trans = conn.client.history + conn.server.history
    trans.sort(key=_transition_order)
    return trans, list(conn.notes or ())


def _looks_like_server(sport: int, dport: int) -> bool:
    """Guess whether the sender (``sport``) is the server when no SYN shows the roles."""
    s_known, d_known = sport < 1024 or sport in WELL_KNOWN_SERVER_PORTS, \
        dport < 1024 or dport in WELL_KNOWN_SERVER_PORTS
    if s_known != d_known:
        return s_known
    return sport < dport


def _rst_acceptable(a: Endpoint, b: Endpoint, seg: Segment) -> bool:
    """Would ``b``'s kernel honour this RST from ``a``? (see the module docstring)"""
    if b.state == SYN_SENT:
        return bool(seg.flags & ACK) and b.isn is not None and seg.ack == seq_add(b.isn, 1)
    expected = [x for x in (a.snd_nxt, b.max_ack) if x is not None]
    if not expected:
        return True
    lo = min(expected, key=lambda x: seq_diff(x, expected[0]))
    hi = max(expected, key=lambda x: seq_diff(x, expected[0]))
    return seq_diff(seg.seq, seq_add(lo, -1)) >= 0 and seq_diff(seg.seq, hi) <= 0


def _close_kind(conn: Connection) -> str:
    c, s = conn.client, conn.server
    if conn.refused:
        return "refused"
    c_synced = c.state in SYNCHRONIZED or any(h.from_state in SYNCHRONIZED for h in c.history)
    if c.first_syn_ns is not None and s.packets == 0 and not c_synced:
        return "unanswered"
    ever_established = any(h.from_state in SYNCHRONIZED for h in c.history + s.history) \
        or c.state in SYNCHRONIZED or s.state in SYNCHRONIZED
    if conn.rst_closed:
        return "rst"
    if not ever_established and not conn.mid_stream:
        return "incomplete"
    done = (CLOSED, TIME_WAIT, LISTEN)
    if c.state in done and s.state in done:
        if c.fin_seq is not None and s.fin_seq is not None and not conn.timed_out:
            return "fin"
        if conn.timed_out:
            return "timeout"
        return "fin" if (c.fin_seq is not None or s.fin_seq is not None) else "open"
    return "open"


def _record(conn: Connection) -> ConnectionRecord:
    c, s = conn.client, conn.server
    return ConnectionRecord(
        conn_id=conn.conn_id, ip_version=conn.ip_version,
        client_addr=c.addr, client_port=c.port, server_addr=s.addr, server_port=s.port,
        first_ts_ns=conn.first_ts, last_ts_ns=conn.last_ts, first_frame=conn.first_frame,
        last_frame=conn.last_frame, packets=conn.packets, client_packets=c.packets,
        server_packets=s.packets, client_bytes=c.bytes, server_bytes=s.bytes,
        client_state=c.state, server_state=s.state, client_eventual_state=c.state,
        server_eventual_state=s.state, client_initial_state=c.initial_state,
        server_initial_state=s.initial_state, close_kind=_close_kind(conn),
        role_inferred=conn.role_inferred, mid_stream=conn.mid_stream,
        client_last_ts_ns=c.last_ns, server_last_ts_ns=s.last_ns,
        client_last_payload_ns=c.last_payload_ns, server_last_payload_ns=s.last_payload_ns,
        peers=None if conn.peers is None else conn.peers.summary(),
    )
