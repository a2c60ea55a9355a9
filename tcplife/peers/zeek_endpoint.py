"""Zeek's TCP endpoint as its analyzer keeps it, and the rules that need no connection.

Owns: Zeek's endpoint states and history masks (``TCP_Endpoint.h``), its
``likely_server_ports`` and inactivity timeouts, `ZeekEndpoint` (one side: what history and
state need, ``TCP_Endpoint::Size``), ``seq_delta`` (32-bit sequence arithmetic, as Zeek's),
`init_endpoint` (``TCPSessionAdapter::init_endpoint``), the reassembler's block helpers, and
`conn_state`, the function of ``scripts/base/protocols/conn/main.zeek``. The per-packet
replay that drives them is `tcplife.peers.zeek` (`ZeekRecorder`, `ZeekReplay`).

Knows nothing of tcplife's own states, of captures or of pandas.
"""

from __future__ import annotations

from tcplife.core.segment import SYN

MASK = 0xFFFFFFFF  #: sequence numbers are 32-bit
#: Zeek's ``TOO_LARGE_SEQ_DELTA``: a SYN or RST this far from the highest sequence number
#: seen does not move it, nor does an ACK of 0 that far ahead move the acknowledgment
TOO_LARGE_SEQ_DELTA = 1048576

# TCP_Endpoint states (analyzer/protocol/tcp/TCP_Endpoint.h), in Zeek's order.
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)
ENDPOINT_STATE_NAMES = ("TCP_INACTIVE", "TCP_SYN_SENT", "TCP_SYN_ACK_SENT", "TCP_PARTIAL",
                        "TCP_ESTABLISHED", "TCP_CLOSED", "TCP_RESET")

# History masks (TCP_Endpoint::HistoryMasks); the responder's are shifted by 16.
HIST_SYN_PKT, HIST_FIN_PKT, HIST_RST_PKT, HIST_FIN_RST_PKT = 0x1, 0x2, 0x4, 0x8
HIST_DATA_PKT, HIST_ACK_PKT, HIST_MULTI_FLAG_PKT = 0x10, 0x20, 0x40

#: Zeek's ``likely_server_ports`` with the default scripts loaded: the ports the base
#: protocol scripts add (``redef likely_server_ports += { ports }``), TCP only. Zeek uses
#: it to decide, for a connection whose first packet is not a SYN, which side originated.
LIKELY_SERVER_PORTS = frozenset({
    21, 22, 23, 25, 53, 80, 81, 88, 102, 110, 135, 137, 138, 139, 143, 389, 443, 445, 502,
    563, 585, 587, 614, 631, 636, 749, 750, 989, 990, 992, 993, 995, 1080, 1433, 1883,
    2811, 3128, 3268, 3306, 3389, 5222, 5223, 5269, 5432, 6379, 6667,
    8000, 8080, 8888, 20000, 47808,
})


#: Zeek's ``tcp_inactivity_timeout`` (``scripts/base/init-bare.zeek``: ``const
#: tcp_inactivity_timeout = 5 min &redef``), in ns: a TCP connection past its handshake that
#: sees no packet for this long is logged and forgotten (``Session::InactivityTimer``).
TCP_INACTIVITY_TIMEOUT_NS = 300 * 10**9
#: Zeek's ``udp_inactivity_timeout`` (init-bare.zeek: ``1 min``), in ns: the inactivity
#: timeout a TCP connection starts with (``TCPAnalyzer::MakeSessionAdapter``) until an
#: endpoint leaves the handshake states (``TCP_Endpoint::SetState``).
HANDSHAKE_INACTIVITY_TIMEOUT_NS = 60 * 10**9


def seq_delta(a: int, b: int) -> int:
    """Zeek's ``seq_delta``: ``a - b`` as a signed 32-bit number."""
    d = (a - b) & MASK
    return d - 0x100000000 if d >= 0x80000000 else d


class ZeekEndpoint:
    """One side as Zeek's TCP_Endpoint keeps it (only what history and state need)."""

    __slots__ = ("is_orig", "state", "prev_state", "start", "ack", "last", "hist_syn",
                 "hist_fin", "hist_rst", "rxmt_cnt", "rxmt_thresh", "win0_cnt",
                 "win0_thresh", "gap_cnt", "gap_thresh", "fin_cnt", "fin_seq", "did_close",
                 "first_seen", "reassem", "trim", "blocks", "pkts")

    def __init__(self, is_orig: bool) -> None:
        self.is_orig = is_orig
        self.state = self.prev_state = INACTIVE
        self.start = self.ack = self.last = 0
        self.hist_syn = self.hist_fin = self.hist_rst = 0
        self.rxmt_cnt = self.win0_cnt = self.gap_cnt = 0
        self.rxmt_thresh = self.win0_thresh = self.gap_thresh = 1
        self.fin_cnt = self.fin_seq = 0
        self.did_close = False
        self.first_seen = False  #: a packet of this side was processed (first_packet_seen)
        # The reassembler of this side's data (TCP_Reassembler), relative sequence
        # numbers: delivered up to ``reassem``, acknowledged up to ``trim``, and the
        # blocks received above a hole, sorted [seq, upper) pairs.
        self.reassem = self.trim = 1
        self.blocks: list[list[int]] | tuple[()] = ()  #: () until the first hole
        self.pkts = 0  #: packets of this side (conn.log's orig_pkts / resp_pkts)

    def set_state(self, new: int) -> None:
        if new != self.state:
            self.prev_state = self.state
            self.state = new

    def size(self, peer: ZeekEndpoint) -> int:
        """TCP_Endpoint::Size: payload bytes from sequence numbers (what conn.log logs as
        orig_bytes / resp_bytes)."""
        if self.prev_state == SYN_SENT and self.state == RESET and peer.state == INACTIVE \
                and self.ack not in (self.start, (self.start + 1) & MASK):
            return 0
        size = max(seq_delta(self.last, self.start), seq_delta(self.ack, self.start))
        if size > 0:
            size -= 1
        if self.fin_cnt and size > 0:
            size -= 1
        return max(size, 0)


def likely_server(port: int) -> bool:
    return port in LIKELY_SERVER_PORTS


def clean(ep: ZeekEndpoint) -> bool:
    return ep.state == ESTABLISHED or ep.state == CLOSED and ep.prev_state == ESTABLISHED


def settled(ep: ZeekEndpoint) -> bool:
    """Everything this side sent is delivered in order, and acknowledged as tracked: in a
    run of in-order segments whose ACKs stay within what the peer sent, no gap arises."""
    return not ep.blocks and ep.reassem == seq_delta(ep.last, ep.start) \
        and ep.trim == seq_delta(ep.ack, ep.start)


def insert_block(blocks: list[list[int]] | tuple[()], seq: int, upper: int) -> list[list[int]]:
    """[seq, upper) added to sorted disjoint blocks, overlaps merged."""
    out: list[list[int]] = []
    placed = False
    for b in blocks:
        if b[1] < seq:
            out.append(b)
        elif upper < b[0]:
            if not placed:
                out.append([seq, upper])
                placed = True
            out.append(b)
        else:
            seq, upper = min(seq, b[0]), max(upper, b[1])
    if not placed:
        out.append([seq, upper])
    return out


def init_endpoint(ep: ZeekEndpoint, flags: int, first_seq: int, last_seq: int) -> None:
    state = ep.state
    if state == INACTIVE:
        if flags & SYN:
            ep.start = ep.ack = first_seq
        else:
            # A partial connection: number it as though the SYN had been seen, and do not
            # let the first packet look like a duplicate.
            ep.start = ep.ack = (first_seq - 1) & MASK
            last_seq = first_seq
        ep.last = last_seq
    elif state in (SYN_SENT, SYN_ACK_SENT):
        if flags & SYN and first_seq != ep.start:  # SYN_seq_jump
            ep.start = ep.ack = first_seq
            ep.last = last_seq
    elif state in (ESTABLISHED, PARTIAL):
        if flags & SYN:  # guess the connection was not set up; this SYN sets it up
            ep.start = ep.ack = first_seq
            ep.last = last_seq
    elif state == RESET and flags & SYN and ep.prev_state == INACTIVE:
        ep.start = ep.ack = first_seq
        ep.last = last_seq


def _rstos0(history: str) -> bool:
    """``/^?S[^HAFGIQ]*R.*/ == history`` (a Zeek pattern match is anchored)."""
    h = history[1:] if history.startswith("^") else history
    if not h.startswith("S"):
        return False
    for ch in h[1:]:
        if ch == "R":
            return True
        if ch in "HAFGIQ":
            return False
    return False


def conn_state(os_: int, rs: int, orig_size: int, resp_size: int, history: str) -> str:
    """``Conn::conn_state`` of scripts/base/protocols/conn/main.zeek, for TCP."""
    o_inactive = os_ in (INACTIVE, PARTIAL)
    r_inactive = rs in (INACTIVE, PARTIAL)
    if rs == RESET:
        if os_ in (SYN_SENT, SYN_ACK_SENT) or (os_ == RESET and orig_size == 0
                                                and resp_size == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os_ == RESET:
        if r_inactive:
            return "RSTOS0" if _rstos0(history) else "OTH"
        return "RSTO"
    if rs == CLOSED and os_ == CLOSED:
        return "SF"
    if os_ == CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    if os_ == SYN_SENT and rs == INACTIVE:
        return "S0"
    if os_ == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    return "OTH"
