"""Zeek's view of one connection: the conn.log ``history`` string and ``conn_state``.

Owns: `ZeekRecorder`, a per-connection replay, packet by packet, of the parts of Zeek's TCP
analyzer that decide the history letters and the two endpoint states
(``src/packet_analysis/protocol/tcp/TCPSessionAdapter.cc``: ``update_history``,
``update_window``, ``update_last_seq``, ``init_endpoint``, ``init_peer``, the
``Update*State`` functions; ``TCP_Endpoint.cc``: ``CheckHistory``, ``DidRxmit``,
``ZeroWindow``, ``Size``; ``Conn.cc``: ``ScaledHistoryEntry``, ``FlipRoles``; the flip at
connection creation in ``TCPAnalyzer::WantConnection``), over `tcplife.peers.zeek_endpoint`
(Zeek's endpoint and `conn_state`, the function of ``scripts/base/protocols/conn/main.zeek``,
importable from here too). Sequence numbers are 32-bit as in Zeek; the
wrap counters Zeek keeps for connections over 4 GB are not modelled.

`ZeekReplay` holds the Zeek connections one tcplife instance makes: Zeek's inactivity timer
can log and forget a connection in the middle of a tcplife instance, and the next packet of
the 4-tuple then starts a new Zeek connection (`ZeekRecord`, one conn.log line each). The
rule, from Zeek's source (paths in zeek/zeek):

- ``src/session/Session.cc``, ``Session::InactivityTimer(t)``: the connection is removed
  when ``last_time + inactivity_timeout <= t``, else the timer is re-armed at
  ``last_time + inactivity_timeout``. The timer is armed at ``last_time + timeout``
  (``SetInactivityTimeout``), so it never lies beyond the current deadline.
- ``src/RunState.cc``, ``dispatch_packet``: network time is set to the packet's time and
  ``expire_timers()`` (``TimerMgr::DoAdvance``: every timer with ``Time() <= t``, re-armed
  ones included) runs *before* ``ProcessPacket``. So the connection is gone before its next
  packet exactly when that packet comes ``timeout`` or more after ``last_time`` (whether
  another connection's packet fired the timer earlier changes nothing); the packet then
  finds no connection and makes a new one (``IPBasedAnalyzer::AnalyzePacket`` ->
  ``NewConn``: ``WantConnection``'s flip for a first packet that is not a bare SYN, an
  empty history, endpoints ``INACTIVE``).
- ``last_time`` is the time of the connection's last packet, not updated once both sides
  have closed (``TCPSessionAdapter::Process``: ``SetLastTime`` unless both ``did_close``).
- The timeout: ``TCPAnalyzer::MakeSessionAdapter`` (``src/packet_analysis/protocol/tcp/
  TCP.cc``) starts a TCP connection with ``udp_inactivity_timeout`` (1 min), and
  ``TCP_Endpoint::SetState`` (``src/analyzer/protocol/tcp/TCP_Endpoint.cc``) switches to
  ``tcp_inactivity_timeout`` (5 min) when an endpoint first leaves the handshake states
  (inactive, SYN sent, SYN-ACK sent); both from ``scripts/base/init-bare.zeek``.

Knows nothing of tcplife's own states, of captures or of pandas. The tracker feeds it every
segment of a connection instance (`process`) or, for a run of in-order ACK/data segments
absorbed in bulk, lets it catch up in O(1) (`quiet`, `fast_rows`, `absorbed`): such a run
changes nothing Zeek records beyond counters and a side's first ``A`` or ``D``
(`first_letter`), as long as no segment in it has a zero window, carries data anywhere but
at the side's SND.NXT, acknowledges more than the peer sent, or comes `inactivity_ns` or
more after the previous one (the fast path sends those through `process`).

Not modelled (see docs/peers.md): ``c`` (bad
checksums: segments carry no checksum verdict), ``g`` (content gaps: Zeek's reassembler),
``x``; Zeek's other timers (``AttemptTimer``: a connection attempt unanswered for
``tcp_attempt_delay``, 5 s; the close timers: a closed or reset connection forgotten
``tcp_close_delay``/``tcp_reset_delay``, 5 s, after its last packet; ``ExpireTimer``,
``PartialCloseTimer``), after which a later packet would start a new Zeek connection too;
``max_timer_expires`` (at most 300 timers fire per packet: a burst of expiries can delay
one); network time is each packet's own time (Zeek's never goes back, so a capture whose
times step back across connections may fire a timer earlier in Zeek).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from tcplife.core.segment import ACK, FIN, RST, SYN, Segment
from tcplife.peers.zeek_endpoint import (
    CLOSED,
    ENDPOINT_STATE_NAMES,
    ESTABLISHED,
    HANDSHAKE_INACTIVITY_TIMEOUT_NS,
    HIST_ACK_PKT,
    HIST_DATA_PKT,
    HIST_FIN_PKT,
    HIST_FIN_RST_PKT,
    HIST_MULTI_FLAG_PKT,
    HIST_RST_PKT,
    HIST_SYN_PKT,
    INACTIVE,
    LIKELY_SERVER_PORTS,
    MASK,
    PARTIAL,
    RESET,
    SYN_ACK_SENT,
    SYN_SENT,
    TCP_INACTIVITY_TIMEOUT_NS,
    TOO_LARGE_SEQ_DELTA,
    ZeekEndpoint,
    clean,
    conn_state,
    init_endpoint,
    insert_block,
    likely_server,
    seq_delta,
    settled,
)

#: also importable from here: Zeek's endpoint states, history masks, ports and timeouts,
#: and `conn_state` (defined in `tcplife.peers.zeek_endpoint`)
__all__ = ["CLOSED", "ENDPOINT_STATE_NAMES", "ESTABLISHED", "HANDSHAKE_INACTIVITY_TIMEOUT_NS",
           "HIST_ACK_PKT", "HIST_DATA_PKT", "HIST_FIN_PKT", "HIST_FIN_RST_PKT",
           "HIST_MULTI_FLAG_PKT", "HIST_RST_PKT", "HIST_SYN_PKT", "INACTIVE",
           "LIKELY_SERVER_PORTS", "PARTIAL", "RESET", "SYN_ACK_SENT", "SYN_SENT",
           "TCP_INACTIVITY_TIMEOUT_NS", "ZeekRecord", "ZeekRecorder", "ZeekReplay",
           "conn_state", "likely_server", "records_from_json", "records_json"]


@dataclass(frozen=True, slots=True)
class ZeekRecord:
    """One Zeek connection, as its conn.log line gives it (times in ns)."""

    start_ns: int  #: ``ts``: its first packet
    orig: str  #: which tcplife side is ``id.orig_h``: "client" or "server"
    duration_ns: int  #: ``duration``: last_time - start_time
    orig_bytes: int
    resp_bytes: int
    conn_state: str
    history: str
    orig_pkts: int
    resp_pkts: int


def records_json(records: tuple[ZeekRecord, ...] | list[ZeekRecord]) -> str:
    """``records`` as a JSON list of objects (`ZeekRecord`'s fields); "" for none."""
    if not records:
        return ""
    return json.dumps([dataclasses.asdict(r) for r in records], separators=(",", ":"))


def records_from_json(text: str | None) -> list[ZeekRecord]:
    """The inverse of `records_json` (None, "" or a missing value: no records)."""
    if not isinstance(text, str) or not text:
        return []
    return [ZeekRecord(**fields) for fields in json.loads(text)]


class ZeekReplay:
    """The Zeek connections of one tcplife instance: the current one (a `ZeekRecorder`)
    and those Zeek's inactivity timer already logged (`done`). Same interface as the
    recorder for the tracker's fast path."""

    __slots__ = ("current", "done")

    def __init__(self, seg: Segment, sender_is_client: bool) -> None:
        self.current = ZeekRecorder(seg, sender_is_client)
        self.done: list[ZeekRecord] | None = None  #: None while there is one connection

    def process(self, seg: Segment, from_client: bool) -> None:
        cur = self.current
        if seg.ts_ns - cur.last_ns >= cur.inactivity_ns:  # cur.expired(seg.ts_ns), inlined
            # Zeek removed the connection (timers run before the packet is processed):
            # this packet starts a new one, with its own uid, flip and history.
            if self.done is None:
                self.done = []
            self.done.append(cur.record())
            cur = self.current = ZeekRecorder(seg, from_client)
        cur.process(seg, from_client)

    def records(self) -> list[ZeekRecord]:
        """Every Zeek connection of the instance, in order (the last as it stands)."""
        return [*(self.done or ()), self.current.record()]

    def inactivity_ns(self) -> int:
        """The current connection's inactivity timeout: a segment that comes this long or
        longer after the previous one starts a new Zeek connection (not for bulk runs)."""
        return self.current.inactivity_ns

    def quiet(self, client_nxt: int | None, server_nxt: int | None,
              client_max_ack: int | None, server_max_ack: int | None) -> bool:
        return self.current.quiet(client_nxt, server_nxt, client_max_ack, server_max_ack)

    def fast_rows(self) -> tuple[tuple[bool, bool], tuple[bool, bool]]:
        return self.current.fast_rows()

    def first_letter(self, from_client: bool, data: bool) -> None:
        self.current.first_letter(from_client, data)

    def absorbed(self, client_nxt: int, server_nxt: int, client_max_ack: int,
                 server_max_ack: int, last_ns: int, client_pkts: int = 0,
                 server_pkts: int = 0) -> None:
        self.current.absorbed(client_nxt, server_nxt, client_max_ack, server_max_ack,
                              last_ns, client_pkts, server_pkts)


class ZeekRecorder:
    """Zeek's history and endpoint states for one connection instance.

    Endpoints are kept by tcplife side (client, server); which one is Zeek's originator is
    ``orig_is_client``, and changes when Zeek flips the connection (``^``).
    """

    __slots__ = ("client", "server", "orig_is_client", "letters", "hist_seen",
                 "start_ns", "last_ns", "is_partial", "inactivity_ns")

    def __init__(self, seg: Segment, sender_is_client: bool) -> None:
        self.client = ZeekEndpoint(sender_is_client)
        self.server = ZeekEndpoint(not sender_is_client)
        self.orig_is_client = sender_is_client  # the first packet's sender originates
        self.letters = ""  #: the history so far (a str: a list costs 3x per connection)
        self.hist_seen = 0
        self.start_ns = self.last_ns = seg.ts_ns  #: Zeek's start_time and last_time
        self.is_partial = False
        #: the inactivity timeout in force (Session::inactivity_timeout)
        self.inactivity_ns = HANDSHAKE_INACTIVITY_TIMEOUT_NS
        # TCPAnalyzer::WantConnection: a first packet that is not a bare SYN makes a partial
        # connection; if its source port looks like a server's, the roles are flipped
        # (both plausible: only for a non-SYN packet from the lower port).
        flags = seg.flags
        if (not flags & SYN or flags & ACK) and likely_server(seg.sport):
            flip = (not flags & SYN and seg.sport < seg.dport) \
                if likely_server(seg.dport) else True
            if flip:
                self._flip_roles()

    # ------------------------------------------------------------------ results
    @property
    def history(self) -> str:
        return self.letters

    def orig(self) -> ZeekEndpoint:
        return self.client if self.orig_is_client else self.server

    def resp(self) -> ZeekEndpoint:
        return self.server if self.orig_is_client else self.client

    def orig_bytes(self) -> int:
        return self.orig().size(self.resp())

    def resp_bytes(self) -> int:
        return self.resp().size(self.orig())

    def conn_state(self) -> str:
        o, r = self.orig(), self.resp()
        return conn_state(o.state, r.state, o.size(r), r.size(o), self.history)

    def expired(self, ts_ns: int) -> bool:
        """Has Zeek's inactivity timer removed this connection before a packet stamped
        ``ts_ns``? (``last_time + inactivity_timeout <= t``: see the module docstring.)"""
        return ts_ns - self.last_ns >= self.inactivity_ns

    def record(self) -> ZeekRecord:
        """This connection's conn.log values as they stand."""
        o, r = self.orig(), self.resp()
        return ZeekRecord(
            start_ns=self.start_ns, orig="client" if self.orig_is_client else "server",
            duration_ns=self.last_ns - self.start_ns, orig_bytes=o.size(r),
            resp_bytes=r.size(o), conn_state=self.conn_state(), history=self.letters,
            orig_pkts=o.pkts, resp_pkts=r.pkts)

    # ------------------------------------------------------------------ history
    def _check(self, ep: ZeekEndpoint, mask: int, code: str) -> bool:
        """Connection::CheckHistory via TCP_Endpoint: True if already seen."""
        if not ep.is_orig:
            mask <<= 16
            code = code.lower()
        if self.hist_seen & mask:
            return True
        self.hist_seen |= mask
        self.letters += code
        return False

    def _add(self, ep: ZeekEndpoint, code: str) -> None:
        self.letters += code if ep.is_orig else code.lower()

    def _did_rxmit(self, ep: ZeekEndpoint) -> None:
        """ScaledHistoryEntry: the 1st, 10th, 100th ... retransmission adds a letter."""
        ep.rxmt_cnt += 1
        if ep.rxmt_cnt == ep.rxmt_thresh:
            self._add(ep, "T")
            ep.rxmt_thresh *= 10

    def _gap(self, ep: ZeekEndpoint, peer: ZeekEndpoint) -> None:
        """TCP_Reassembler::Gap: a content gap counts (``G``, log-scale) only while both
        sides are established or cleanly closing."""
        if clean(ep) and clean(peer):
            ep.gap_cnt += 1
            if ep.gap_cnt == ep.gap_thresh:
                self._add(ep, "G")
                ep.gap_thresh *= 10

    def _zero_window(self, ep: ZeekEndpoint) -> None:
        ep.win0_cnt += 1
        if ep.win0_cnt == ep.win0_thresh:
            self._add(ep, "W")
            ep.win0_thresh *= 10

    def _flip_roles(self) -> None:
        """Connection::FlipRoles: the endpoints swap roles (hist_seen does not) and ``^``
        is appended."""
        self.orig_is_client = not self.orig_is_client
        self.client.is_orig = not self.client.is_orig
        self.server.is_orig = not self.server.is_orig
        self.is_partial = False
        self.letters += "^"

    def _update_history(self, flags: int, ep: ZeekEndpoint, rel_seq: int, length: int) -> None:
        bits = (1 if flags & SYN else 0) + (1 if flags & FIN else 0) + (1 if flags & RST else 0)
        if bits > 1:
            if flags & FIN and flags & RST:
                self._check(ep, HIST_FIN_RST_PKT, "I")
            else:
                self._check(ep, HIST_MULTI_FLAG_PKT, "Q")
        elif bits == 1:
            if flags & SYN:
                code = "H" if flags & ACK else "S"
                if self._check(ep, HIST_SYN_PKT, code) and rel_seq != ep.hist_syn:
                    self._add(ep, code)
                ep.hist_syn = rel_seq
            if flags & FIN:
                # The FIN's sequence number is at the end of any data in the packet.
                if self._check(ep, HIST_FIN_PKT, "F") and rel_seq + length != ep.hist_fin:
                    self._add(ep, "F")
                ep.hist_fin = rel_seq + length
            if flags & RST:
                if self._check(ep, HIST_RST_PKT, "R") and rel_seq != ep.hist_rst:
                    self._add(ep, "R")
                ep.hist_rst = rel_seq
        elif length:
            self._check(ep, HIST_DATA_PKT, "D")
        elif flags & ACK:
            self._check(ep, HIST_ACK_PKT, "A")

    # ------------------------------------------------------------------ packets
    def process(self, seg: Segment, from_client: bool) -> None:
        """TCPAnalyzer::DeliverPacket for one segment of this connection."""
        ep, peer = (self.client, self.server) if from_client else (self.server, self.client)
        ep.pkts += 1
        flags, base, ack, length = seg.flags, seg.seq, seg.ack, seg.payload_len
        if not flags & (SYN | FIN | RST) and ep.first_seen \
                and PARTIAL <= ep.state <= ESTABLISHED and PARTIAL <= peer.state <= ESTABLISHED:
            self._plain(seg, ep, peer, flags, base, ack, length)
            return
        if not ep.first_seen:  # SetPartialStatus
            if ep.is_orig:
                self.is_partial = not flags & SYN or bool(flags & ACK)
            elif not self.is_partial:
                self.is_partial = not flags & SYN
        seg_len = length + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        if flags & RST:
            seg_len -= length  # an RST's data is not part of the stream
        one_past = (base + seg_len) & MASK
        init_endpoint(ep, flags, base, one_past)
        rel_seq = seq_delta(base, ep.start)
        self._update_history(flags, ep, rel_seq, length)
        # update_window: a zero window counts unless it comes with or after an RST, or
        # after the peer's FIN (scaling cannot make a non-zero window zero).
        if seg.window == 0 and not flags & RST and peer.state != CLOSED \
                and ep.state != RESET:
            self._zero_window(ep)
        if not (self.client.did_close and self.server.did_close) \
                and seg.ts_ns > self.last_ns:
            self.last_ns = seg.ts_ns
        if flags & FIN:
            ep.fin_cnt += 1
            ep.fin_seq = rel_seq + seg_len
        rel_ack = 0
        if flags & ACK:
            if peer.state == INACTIVE:
                # init_peer: number the peer as if its SYN had been ack - 1.
                rel_ack = 1
                peer.start = peer.ack = peer.last = (ack - 1) & MASK
            else:
                rel_ack = seq_delta(ack, peer.start)
                if rel_ack < 0:
                    rel_ack = 0
                elif not flags & RST:
                    delta_ack = seq_delta(ack, peer.ack)
                    if not (ack == 0 and delta_ack > TOO_LARGE_SEQ_DELTA) and delta_ack > 0:
                        peer.ack = ack
        delta_last = self._update_last_seq(ep, one_past, flags, length)
        do_close = self._update_state(ep, peer, base, length, delta_last, flags)
        if ep.state >= PARTIAL or peer.state >= PARTIAL:
            # TCP_Endpoint::SetState: the first endpoint out of the handshake states sets
            # tcp_inactivity_timeout (for good: nothing sets it back).
            self.inactivity_ns = TCP_INACTIVITY_TIMEOUT_NS
        if flags & ACK:  # after the state machine: gaps revealed by a FIN or RST don't count
            self._ack_received(peer, ep, rel_ack)
        if length > 0 and not flags & RST and rel_seq >= 0:
            self._data_sent(ep, rel_seq + 1 if flags & SYN else rel_seq, length)
        ep.first_seen = True
        if do_close and not ep.did_close:  # ConnectionClosed (reassembly delays ignored)
            ep.did_close = True

    def _plain(self, seg: Segment, ep: ZeekEndpoint, peer: ZeekEndpoint, flags: int, base: int,
               ack: int, length: int) -> None:
        """`process` for the common case, inlined: an ACK or data segment, no SYN, FIN or
        RST, both sides established or partial, not the side's first packet (nothing for
        init_endpoint, SetPartialStatus or the state machine to do)."""
        rel_seq = seq_delta(base, ep.start)
        shift = 0 if ep.is_orig else 16
        if length:
            if not self.hist_seen & (HIST_DATA_PKT << shift):
                self._check(ep, HIST_DATA_PKT, "D")
        elif flags & ACK and not self.hist_seen & (HIST_ACK_PKT << shift):
            self._check(ep, HIST_ACK_PKT, "A")
        if seg.window == 0:
            self._zero_window(ep)
        if seg.ts_ns > self.last_ns:
            self.last_ns = seg.ts_ns
        rel_ack = 0
        if flags & ACK:
            rel_ack = seq_delta(ack, peer.start)
            if rel_ack < 0:
                rel_ack = 0
            else:
                delta_ack = seq_delta(ack, peer.ack)
                if delta_ack > 0 and not (ack == 0 and delta_ack > TOO_LARGE_SEQ_DELTA):
                    peer.ack = ack
        one_past = (base + length) & MASK
        if seq_delta(one_past, ep.last) > 0:
            ep.last = one_past
        elif length > 0:
            self._did_rxmit(ep)
        if flags & ACK:
            self._ack_received(peer, ep, rel_ack)
        if length > 0 and rel_seq >= 0:
            self._data_sent(ep, rel_seq, length)

    def _data_sent(self, ep: ZeekEndpoint, seq: int, length: int) -> None:
        """TCP_Reassembler::DataSent and NewBlock: deliver in order, keep what lies above a
        hole. (The payload is taken as captured whole: tcplife's segments do not say when
        the snap length cut it, which Zeek would count as a gap.)"""
        ack = seq_delta(ep.ack, ep.start)
        upper = seq + length
        if seq < ack:
            if upper <= ack:
                return  # delivered and acknowledged already
            seq = ack
        if upper <= ep.trim:
            return
        seq = max(seq, ep.trim)
        if upper <= ep.reassem:
            return
        if seq <= ep.reassem:
            ep.reassem = upper
            blocks = ep.blocks
            while blocks and blocks[0][0] <= ep.reassem:
                ep.reassem = max(ep.reassem, blocks.pop(0)[1])
            return
        ep.blocks = insert_block(ep.blocks, seq, upper)

    def _ack_received(self, ep: ZeekEndpoint, peer: ZeekEndpoint, seq: int) -> None:
        """TCP_Reassembler::AckReceived for ``ep``'s data, acknowledged by ``peer`` up to
        relative ``seq``: data acknowledged but never seen is a content gap."""
        if ep.fin_cnt > 0 and seq >= ep.fin_seq:
            seq = ep.fin_seq - 1
        if seq <= ep.trim:
            return
        if seq > ep.reassem:  # Reassembler::TrimToSeq -> Undelivered
            self._undelivered(ep, peer, seq)
        ep.trim = seq
        blocks = ep.blocks
        while blocks and blocks[0][1] <= seq:
            blocks.pop(0)
        if blocks and blocks[0][0] < seq:
            blocks[0][0] = seq

    def _undelivered(self, ep: ZeekEndpoint, peer: ZeekEndpoint, up_to: int) -> None:
        if up_to <= 2 and self.is_partial:
            return  # the faked SYN octet of a partial connection is not missing data
        blocks = ep.blocks
        while blocks and blocks[0][0] < up_to:
            b_seq, b_upper = blocks.pop(0)
            if b_seq > ep.reassem:
                self._gap(ep, peer)
                ep.reassem = b_seq
            ep.reassem = max(ep.reassem, b_upper)
        if up_to > ep.reassem:
            self._gap(ep, peer)
        ep.reassem = max(ep.reassem, up_to)

    def _update_last_seq(self, ep: ZeekEndpoint, last_seq: int, flags: int,
                         length: int) -> int:
        delta = seq_delta(last_seq, ep.last)
        if flags & (SYN | RST) and (delta > TOO_LARGE_SEQ_DELTA
                                    or delta < -TOO_LARGE_SEQ_DELTA):
            pass
        elif flags & FIN and ep.last == (ep.start + 1) & MASK:
            ep.last = last_seq
        elif ep.state == RESET:
            pass  # no sequence number after an RST is trusted
        elif delta > 0:
            ep.last = last_seq
        elif length > 0:
            # Payload that ends at or before the highest sequence number seen: what Zeek
            # counts as a retransmission (``t``), keep-alives with one byte included.
            self._did_rxmit(ep)
        return delta

    def _update_state(self, ep: ZeekEndpoint, peer: ZeekEndpoint, base: int, length: int,
                      delta_last: int, flags: int) -> bool:
        """UpdateStateMachine; returns do_close."""
        is_orig = ep.is_orig
        state = ep.state
        do_close = False
        if state == INACTIVE:
            if flags & SYN:
                if is_orig:
                    ep.set_state(SYN_ACK_SENT if flags & ACK else SYN_SENT)
                else:
                    if not flags & ACK and peer.state == SYN_ACK_SENT and base == ep.start:
                        # SYN after the SYN-ACK (e.g. two interfaces): flip, establish.
                        self._flip_roles()
                        peer.set_state(ESTABLISHED)
                        ep.first_seen = True  # SetFirstPacketSeen(true): ep is orig now
                    if peer.state == SYN_SENT:
                        peer.set_state(ESTABLISHED)
                    ep.set_state(ESTABLISHED)
            if flags & FIN:
                ep.set_state(CLOSED)
                do_close = True
            if flags & RST:
                ep.set_state(RESET)
                do_close = True
            if ep.state == INACTIVE:
                orig = self.orig()
                if not is_orig and length == 0 and orig.state == SYN_SENT:
                    pass  # an ACK of the SYN before the SYN-ACK: not a partial connection
                elif flags & ACK and peer.state == ESTABLISHED:
                    ep.set_state(ESTABLISHED)  # SYN-ACK seen, SYN missed, now an ACK
                    self.is_partial = False
                else:
                    ep.set_state(PARTIAL)
        elif state in (SYN_SENT, SYN_ACK_SENT):
            if flags & FIN:
                ep.set_state(CLOSED)
                do_close = True
            if flags & RST:
                ep.set_state(RESET)
                do_close = True
        elif state in (ESTABLISHED, PARTIAL):
            if flags & SYN and state == PARTIAL and peer.state == INACTIVE \
                    and not flags & ACK:
                ep.set_state(SYN_SENT)
            if flags & FIN and not flags & RST:
                ep.set_state(CLOSED)
                if peer.state == RESET and peer.prev_state == CLOSED:
                    peer.set_state(CLOSED)  # FIN then RST from the peer: a normal close
                do_close = True
            if flags & RST:
                ep.set_state(RESET)
                do_close = True
        elif state == CLOSED and flags & RST and peer.state != CLOSED:
            ep.set_state(RESET)
            if not ep.did_close:
                do_close = True
        return do_close

    # ------------------------------------------------------------------ fast path
    def quiet(self, client_nxt: int | None, server_nxt: int | None,
              client_max_ack: int | None, server_max_ack: int | None) -> bool:
        """Would an in-order ACK or data segment change only what `absorbed` restores?
        Both endpoints established (or partial), and Zeek's highest sequence numbers and
        acknowledgments equal tcplife's (so they move together through the run)."""
        c, s = self.client, self.server
        return (c.state in (ESTABLISHED, PARTIAL) and s.state in (ESTABLISHED, PARTIAL)
                and c.last == client_nxt and s.last == server_nxt
                and s.ack == client_max_ack and c.ack == server_max_ack
                and settled(c) and settled(s))

    def fast_rows(self) -> tuple[tuple[bool, bool], tuple[bool, bool]]:
        """[from_client][has_payload]: has this side's ``A`` (``D``) been recorded? If not,
        the fast path calls `first_letter` for the first such segment it absorbs."""
        seen = self.hist_seen
        out = []
        for ep in (self.server, self.client):  # index 0: from the server
            shift = 0 if ep.is_orig else 16
            out.append((bool(seen & (HIST_ACK_PKT << shift)),
                        bool(seen & (HIST_DATA_PKT << shift))))
        return out[0], out[1]

    def first_letter(self, from_client: bool, data: bool) -> None:
        ep = self.client if from_client else self.server
        if data:
            self._check(ep, HIST_DATA_PKT, "D")
        else:
            self._check(ep, HIST_ACK_PKT, "A")

    def absorbed(self, client_nxt: int, server_nxt: int, client_max_ack: int,
                 server_max_ack: int, last_ns: int, client_pkts: int = 0,
                 server_pkts: int = 0) -> None:
        """After a run absorbed in bulk: the maxima moved as tcplife's did; the run held
        ``client_pkts`` and ``server_pkts`` packets of each side."""
        self.client.pkts += client_pkts
        self.server.pkts += server_pkts
        self.client.last, self.server.last = client_nxt, server_nxt
        self.server.ack, self.client.ack = client_max_ack, server_max_ack
        for ep in (self.client, self.server):
            ep.reassem = seq_delta(ep.last, ep.start)
            ep.trim = max(ep.trim, seq_delta(ep.ack, ep.start))
        if last_ns > self.last_ns:
            self.last_ns = last_ns
