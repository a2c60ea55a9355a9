"""What the packets show: the observer's rules of evidence, as pure functions.

Owns: the decisions the tracker takes from a segment and what it knows of the two sides,
each a function that reads and returns, changing nothing: which side is the server when no
SYN tells (`looks_like_server`), whether a receiver's kernel honours an RST
(`rst_acceptable`), whether a SYN starts a new incarnation of the 4-tuple
(`is_new_incarnation`) and whether a TIME_WAIT socket takes it (`tw_takes`), whether a
segment on a reused 4-tuple belongs to the old instance (`belongs_to_predecessor`), what
the server was before the client's SYN (`server_start`, `server_stayed_silent`), whether a
FIN sent again carries an ACK rather than answers loss (`piggybacked_ack`), and whether a
segment crossed the peer's FIN (`sent_before_fin`). The tracker and the segment rules
(`tcplife.core.rules`) act on these decisions.
"""

from __future__ import annotations

from tcplife.core.connection import Connection
from tcplife.core.endpoint import Endpoint
from tcplife.core.machine import ALIVE, RECV_ACK, SHOWN_CLOSED, SHOWN_LISTENING, Ev
from tcplife.core.options import NS
from tcplife.core.segment import ACK, RST, SYN, Segment
from tcplife.core.seq import seq_add, seq_diff
from tcplife.core.states import SYN_SENT, UNKNOWN

#: Ports that are almost always the server side when no SYN tells the roles.
WELL_KNOWN_SERVER_PORTS = frozenset({
    1080, 1433, 1521, 1883, 2049, 2181, 2379, 3000, 3128, 3306, 3389, 4222, 5000, 5432,
    5672, 5900, 5984, 6379, 6443, 6667, 8000, 8008, 8080, 8081, 8443, 8888, 9000, 9042,
    9090, 9092, 9200, 9300, 11211, 15672, 27017,
})

MIN_RTO_NS = 200_000_000  #: Linux TCP_RTO_MIN


def looks_like_server(sport: int, dport: int) -> bool:
    """Guess whether the sender (``sport``) is the server when no SYN shows the roles."""
    s_known, d_known = sport < 1024 or sport in WELL_KNOWN_SERVER_PORTS, \
        dport < 1024 or dport in WELL_KNOWN_SERVER_PORTS
    if s_known != d_known:
        return s_known
    return sport < dport


def rst_acceptable(a: Endpoint, b: Endpoint, seg: Segment) -> bool:
    """Would ``b``'s kernel honour this RST from ``a``? (see the module docstring)"""
    if b.state == SYN_SENT:
        return bool(seg.flags & ACK) and b.isn is not None and seg.ack == seq_add(b.isn, 1)
    expected = [x for x in (a.snd_nxt, b.max_ack) if x is not None]
    if not expected:
        return True
    lo = min(expected, key=lambda x: seq_diff(x, expected[0]))
    hi = max(expected, key=lambda x: seq_diff(x, expected[0]))
    return seq_diff(seg.seq, seq_add(lo, -1)) >= 0 and seq_diff(seg.seq, hi) <= 0


def is_new_incarnation(conn: Connection, seg: Segment) -> bool:
    """A SYN without ACK on a known 4-tuple: a retransmission, the peer's SYN of a
    simultaneous open, or a new connection reusing the 4-tuple?"""
    sender = conn.client if seg.src == conn.client.addr and seg.sport == conn.client.port \
        else conn.server
    if sender.isn is not None:
        return sender.isn != seg.seq
    peer = conn.peer(sender)
    # The other side's SYN while ours is unanswered: simultaneous open.
    return not (peer.state == SYN_SENT and sender.packets == 0)


def tw_takes(sender: Endpoint, receiver: Endpoint, seg: Segment) -> str | None:
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


def belongs_to_predecessor(conn: Connection, seg: Segment) -> bool:
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


def server_start(seg: Segment) -> Ev:
    """The server's first answer tells what it was before the client's SYN: a SYN-ACK
    comes from a listener, an RST from a closed port (seed 000 case 1), a SYN of its own
    from a socket connecting to the client (simultaneous open). Until it answers, its
    state is UNKNOWN; afterwards the initial state holds from the start (a deciding event
    of the table: `machine.DECIDING`). Anything else shows nothing (RECV_ACK: stays)."""
    flags = seg.flags & (SYN | ACK | RST)
    if flags == SYN | ACK:
        return SHOWN_LISTENING
    if flags & RST or flags == SYN:
        return SHOWN_CLOSED
    return RECV_ACK


def server_stayed_silent(conn: Connection, end: int) -> bool:
    """A server that never answered the client's SYNs holds no socket for them, whether
    they reached it or not (dropped by a full accept queue, a filter, a host that is
    down): CLOSED, not UNKNOWN, once the client sent its SYN again or a second passed
    (Linux's first SYN timeout) by ``end`` without an answer; before that the answer may
    still be on its way."""
    c, s = conn.client, conn.server
    if s.state != UNKNOWN or s.packets or s.history or conn.mid_stream \
            or c.first_syn_ns is None or c.last_syn_ns is None:
        return False
    return c.last_syn_ns > c.first_syn_ns or end - c.first_syn_ns >= NS


def piggybacked_ack(a: Endpoint, seg: Segment) -> bool:
    """A FIN sent again soon (under Linux's 200 ms minimum RTO) with a new ACK is the
    ACK of the peer's FIN riding on the unacknowledged FIN (some stacks do this), not
    a retransmission for loss."""
    return (a.last_fin_ns is not None and seg.ts_ns - a.last_fin_ns < MIN_RTO_NS
            and a.max_ack is not None and seq_diff(seg.ack, a.max_ack) > 0)


def sent_before_fin(a: Endpoint, b: Endpoint, seg: Segment) -> bool:
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
