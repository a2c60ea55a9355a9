"""Detectors of the close: `Resets` (``rst_on_close_unread_data``, ``abortive_close``,
``write_after_close`` and the keep-alive give-up, ``half_open``), `LingeringCloseWait`,
`FinWait2Timeout`, `MissingFinalAck` (``missing_final_ack``, ``final_ack_delayed``),
`SimultaneousClose` and `SimultaneousOpen`. Each judges one connection on its own.
"""

from __future__ import annotations

from collections.abc import Iterable

from tcplife.core.events import AckLost, Anomaly, FinRtx, RstSent
from tcplife.core.evidence import MIN_RTO_NS  # (no retransmission timer fires sooner)
from tcplife.core.machine import RECV_ACK_FIN, SEND_FIN
from tcplife.core.states import (
    CLIENT,
    CLOSE_WAIT,
    CLOSED,
    CLOSING,
    ERROR,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LAST_ACK,
    LIKELY,
    POSSIBLE,
    SERVER,
    SYN_RECEIVED,
    SYN_SENT,
    TIME_WAIT,
    UNKNOWN,
    WARNING,
)
from tcplife.detect.view import ConnView, PerConnection, clock, other_side, secs

_OPEN = {ESTABLISHED, CLOSE_WAIT, SYN_RECEIVED, UNKNOWN}
_AFTER_CLOSE = {FIN_WAIT_1, FIN_WAIT_2, CLOSING, LAST_ACK,
                TIME_WAIT, CLOSED}


class Resets(PerConnection):
    """rst_on_close_unread_data, abortive_close, write_after_close, and the keep-alive
    give-up (half_open): each RST-ACK a side sent from an open state, classified on what
    the wire shows (docs/anomalies.md).

    - After keep-alive probes that the peer never answered: the kernel giving up on a
      dead peer (Linux tcp_keepalive_timer sends this RST): ``half_open``, likely.
    - Its last offered window was zero while the peer's data waited: its receive buffer
      was full, the application not reading; close() with unread data resets (Linux
      tcp_close): ``rst_on_close_unread_data``, likely. (The RST itself offers a window
      again: the kernel purged the buffer before sending it; measured on Linux 6.x.)
    - The peer sent data after this side's last data or FIN, with no such evidence: the
      application closed with that data unread, or read it and closed with SO_LINGER 0,
      or crashed or was killed; the packets are the same (kernel lab: close_unread_data
      and linger0_after_read): ``abortive_close``, possible, naming both.
    - Nothing from the peer was waiting: ``abortive_close`` (SO_LINGER 0, an abort),
      likely: data read but not answered would look the same.

    An RST from a side that had already sent FIN (or was gone) answering the peer's data is
    write_after_close, seen from the closed side. An RST without the ACK flag is the
    kernel's answer for a connection it does not have (tcp_v4_send_reset), never an
    application's close: it counts only as write_after_close.
    """

    def on_connection(self, v: ConnView) -> Iterable[Anomaly]:
        seen: set[tuple[str, str]] = set()
        for note in v.named("rst_sent"):
            facts = note.facts
            assert isinstance(facts, RstSent)
            state, unread = facts.state, facts.unread
            peer = other_side(note.side)
            # the state the RST left (none to claim when it is the connection's first packet)
            before = (note.side, state, note.ts_ns - 1)
            claims = [before] if note.ts_ns > v.record.first_ts_ns else []
            if state in _OPEN and facts.ack:
                probes = facts.probes
                if probes:
                    since = facts.probe_since or note.ts_ns
                    row = v.anomaly(
                        note.ts_ns, note.side, "half_open", note.frame,
                        f"{v.who(note.side)} sent {probes} keep-alive probe"
                        f"{'s' if probes > 1 else ''} from {clock(since)} that "
                        f"{v.who(peer)} never answered; its kernel gave up and reset the "
                        f"connection at {clock(note.ts_ns)}: the peer is gone (crashed, "
                        "powered off, unreachable, or a middlebox dropped the flow)",
                        confidence=LIKELY, claims=claims)
                elif unread and facts.zero_window:
                    row = v.anomaly(
                        note.ts_ns, note.side, "rst_on_close_unread_data", note.frame,
                        f"{v.who(note.side)} ended the connection with RST at "
                        f"{clock(note.ts_ns)} in {state.value}, its receive window closed "
                        f"(zero): data from {v.who(peer)} filled its buffer unread, and "
                        "closing a socket with unread data resets it instead of sending "
                        "FIN: read all input before close()",
                        confidence=LIKELY, claims=claims)
                elif unread or state == UNKNOWN:
                    what = (f"data from {v.who(peer)} had arrived after its last data"
                            if unread else "too little of the connection was captured "
                            "to tell whether data was waiting")
                    row = v.anomaly(
                        note.ts_ns, note.side, "abortive_close", note.frame,
                        f"{v.who(note.side)} ended the connection with RST at "
                        f"{clock(note.ts_ns)} in {state.value}; {what}. Two causes look "
                        "the same on the wire: the application closed with that data "
                        "unread (read all input before close()), or it read everything "
                        "and closed with SO_LINGER 0 (or crashed, or was killed); the "
                        "peer sees 'connection reset by peer'",
                        confidence=POSSIBLE, claims=claims)
                else:
                    row = v.anomaly(
                        note.ts_ns, note.side, "abortive_close", note.frame,
                        f"{v.who(note.side)} ended the connection with RST at "
                        f"{clock(note.ts_ns)} in {state.value}, no data from "
                        f"{v.who(peer)} waiting: an abortive close (SO_LINGER 0, an abort "
                        "or a crash); the peer sees 'connection reset by peer'",
                        confidence=LIKELY, claims=claims)
            elif state in _AFTER_CLOSE and unread and facts.fin_sent:
                row = v.anomaly(
                    note.ts_ns, note.side, "write_after_close", note.frame,
                    f"{v.who(peer)} sent data after {v.who(note.side)} had closed "
                    f"({state.value}); {note.side} answered with RST at "
                    f"{clock(note.ts_ns)}: the peer wrote to a closed connection "
                    "(it did not notice the FIN, or ignored it)", claims=claims)
            else:
                continue
            if (note.side, row.kind) not in seen:
                seen.add((note.side, row.kind))
                yield row


class LingeringCloseWait(PerConnection):
    """``ongoing``: the connections it is shown are still open (the live mode's early
    notice): a CLOSE_WAIT open at the view's end has lasted *so far*."""

    def __init__(self, ongoing: bool = False) -> None:
        self.ongoing = ongoing

    def on_connection(self, v: ConnView) -> Iterable[Anomaly]:
        linger = v.options.close_wait_linger_ns
        for side in (CLIENT, SERVER):
            trans = v.side_transitions(side)
            for i, t in enumerate(trans):
                if t.to_state != CLOSE_WAIT:
                    continue
                last_sent = getattr(v.record, f"{side}_last_ts_ns")
                if last_sent is None or last_sent < t.ts_ns:
                    continue  # never seen acknowledging the FIN (one direction captured)
                nxt = trans[i + 1] if i + 1 < len(trans) else None
                open_to_end = nxt is None or nxt.ts_ns > v.capture_end_ns
                end = v.capture_end_ns if open_to_end else nxt.ts_ns  # type: ignore[union-attr]
                if end - t.ts_ns < linger:
                    continue
                # Still writing after the peer's FIN: the peer half-closed and this side
                # answers (slow, or unaware that it must close too), not a forgotten socket.
                wrote = getattr(v.record, f"{side}_last_payload_ns")
                wrote = min(wrote, end) if wrote is not None and wrote > t.ts_ns else None
                peer = other_side(side)
                peer_state = v.state_at(peer, end)
                idle = ("" if wrote is None else f" (it went on sending data until "
                        f"{clock(wrote)}: the peer had only shut down writing)")
                claims = [(side, CLOSE_WAIT, t.ts_ns), (side, CLOSE_WAIT, end - 1),
                          (peer, peer_state, end)]
                if open_to_end and self.ongoing:
                    until = "so far; the application is not calling close()"
                elif open_to_end:
                    until = (f"until the end of the capture (or of the live run) at "
                             f"{clock(end)}, still open then; the application is not "
                             "calling close()")
                    claims.append((side, CLOSE_WAIT, v.capture_end_ns))
                elif "RST" in nxt.event:  # type: ignore[union-attr]
                    who = "its own RST" if nxt.event.startswith("send") else \
                        f"an RST from {v.who(peer)}"  # type: ignore[union-attr]
                    until = (f"until {who} ended it at {clock(end)}, not a close(): the "
                             "application had not closed it by then")
                else:
                    until = (f"until it closed at {clock(end)} ({nxt.event}); the "  # type: ignore
                             "application was slow to call close()")
                yield v.anomaly(t.ts_ns, side, "lingering_close_wait", t.frame,
                                f"{v.who(side)} received FIN at {clock(t.ts_ns)} and did "
                                f"not close: CLOSE_WAIT for {secs(end - t.ts_ns)}{idle} {until} "
                                f"(the peer is in {peer_state.value})",
                                severity=ERROR if open_to_end else WARNING,
                                frames=() if nxt is None or open_to_end else [nxt.frame],
                                claims=claims)


class FinWait2Timeout(PerConnection):
    def on_connection(self, v: ConnView) -> Iterable[Anomaly]:
        for side in (CLIENT, SERVER):
            trans = v.side_transitions(side)
            for i, t in enumerate(trans):
                if not (t.from_state == FIN_WAIT_2 and t.event == "timeout"
                        and t.ts_ns <= v.capture_end_ns):
                    continue
                entered = trans[i - 1] if i else t
                peer = other_side(side)
                later = [n for n in v.named("rst_sent", side) if n.ts_ns >= t.ts_ns]
                tail = (f"; what {v.who(peer)} sent later met RST at "
                        f"{clock(later[0].ts_ns)}" if later else "")
                yield v.anomaly(t.ts_ns, side, "fin_wait_2_timeout", entered.frame,
                                f"{v.who(side)} closed and waited in FIN_WAIT_2 for the "
                                f"peer's FIN; it expired at {clock(t.ts_ns)} after "
                                f"{secs(t.ts_ns - entered.ts_ns)} (tcp_fin_timeout) while "
                                f"{v.who(peer)} was in {v.state_at(peer, t.ts_ns).value}"
                                f"{tail}",
                                claims=[(side, FIN_WAIT_2, t.ts_ns - 1),
                                        (side, CLOSED, t.ts_ns),
                                        (peer, v.state_at(peer, t.ts_ns), t.ts_ns)])


class MissingFinalAck(PerConnection):
    """missing_final_ack and final_ack_delayed: a side that retransmitted its FIN (not to
    fill a hole before it) was waiting for the ACK of it. If an ACK covering the FIN came
    later (the side left FIN_WAIT_1, CLOSING or LAST_ACK on it), the final ACK was late or
    lost once: ``final_ack_delayed`` (info). If none came by the end of the capture, or
    before the side gave up (a timeout or an RST from a waiting state), the FIN was never
    acknowledged: ``missing_final_ack``."""

    _WAITING = {LAST_ACK, CLOSING, FIN_WAIT_1}

    def on_connection(self, v: ConnView) -> Iterable[Anomaly]:
        for side in (CLIENT, SERVER):
            rtx = [n for n in v.named("fin_rtx", side)
                   if not (isinstance(n.facts, FinRtx) and n.facts.hole)]
            if not rtx or not getattr(v.record, f"{other_side(side)}_packets"):
                continue  # a peer never seen is no peer that failed to ACK (probes, scans)
            first = rtx[0]
            peer = other_side(side)
            # an ACK of the FIN that stands (not retracted); it may be captured just before
            # a retransmission that crossed it on the way
            acked = next((t for t in v.side_transitions(side)
                          if t.from_state in self._WAITING
                          and t.event == RECV_ACK_FIN.value), None)
            lost = [n for n in v.named("ack_lost", side)
                    if isinstance(n.facts, AckLost) and n.facts.kind == "ack_fin"]
            sent = (f"{v.who(side)} retransmitted its FIN {len(rtx)} time"
                    f"{'s' if len(rtx) > 1 else ''} from {clock(first.ts_ns)}")
            if acked is not None:
                sent_at = next((t.ts_ns for t in v.side_transitions(side)
                                if t.event == SEND_FIN.value), first.ts_ns)
                if acked.ts_ns - sent_at < MIN_RTO_NS:
                    # acknowledged sooner than any retransmission timer (Linux's minimum
                    # RTO): not late; the FIN sent again that soon was no loss recovery
                    continue
                how = (f"the first ACK{'s' if len(lost) > 1 else ''} {v.who(peer)} sent "
                       "got lost on the way" if lost else "the ACK was late")
                yield v.anomaly(first.ts_ns, side, "final_ack_delayed", first.frame,
                                f"{sent} before its ACK arrived at {clock(acked.ts_ns)}: "
                                f"{how}; the FIN was acknowledged in the end",
                                frames=[acked.frame] if acked.frame else (),
                                claims=[(side, acked.from_state, acked.ts_ns - 1),
                                        (side, acked.to_state, acked.ts_ns)])
                continue
            at_end = v.state_at(side, v.capture_end_ns)
            cause = (f"the ACKs {v.who(peer)} sent were lost on the way" if lost
                     else f"no ACK from {v.who(peer)} arrived")
            # the kernel giving up waiting (a timeout), not an RST for another reason
            gave_up = next((t for t in v.side_transitions(side)
                            if t.from_state in self._WAITING and t.ts_ns >= first.ts_ns
                            and t.ts_ns <= v.capture_end_ns and t.event == "timeout"),
                           None)
            if at_end in self._WAITING:
                fate = f"it is left in {at_end.value} at the end of the capture"
                claims = [(side, at_end, v.capture_end_ns)]
            elif gave_up is not None:
                fate = (f"it left {gave_up.from_state.value} at {clock(gave_up.ts_ns)} "
                        f"({gave_up.event}) without it")
                claims = [(side, gave_up.from_state, gave_up.ts_ns - 1)]
            else:
                continue  # never waiting for it in the capture: nothing missing
            yield v.anomaly(first.ts_ns, side, "missing_final_ack", first.frame,
                            f"{sent} and it was never acknowledged: {cause}; {fate}",
                            claims=claims)


class SimultaneousClose(PerConnection):
    def on_connection(self, v: ConnView) -> Iterable[Anomaly]:
        for t in v.transitions:
            if t.to_state == CLOSING:
                yield v.anomaly(t.ts_ns, t.side, "simultaneous_close", t.frame,
                                f"{v.who(t.side)} received the peer's FIN at "
                                f"{clock(t.ts_ns)} before the ACK of its own: both sides "
                                "closed at once (FINs crossed) and pass through CLOSING; "
                                "harmless, but both end in TIME_WAIT",
                                claims=[(t.side, CLOSING, t.ts_ns)])


class SimultaneousOpen(PerConnection):
    def on_connection(self, v: ConnView) -> Iterable[Anomaly]:
        t = next((t for t in v.transitions if t.from_state == SYN_SENT
                  and t.to_state == SYN_RECEIVED), None)
        if t is not None:
            # Both sides are clients: the row names the one with the lower address.
            r = v.record
            side = CLIENT if (r.client_addr, r.client_port) < (r.server_addr, r.server_port) \
                else SERVER
            yield v.anomaly(t.ts_ns, side, "simultaneous_open", t.frame,
                            f"{v.who(CLIENT)} and {v.who(SERVER)} both sent SYN "
                            f"(at {clock(t.ts_ns)}): a simultaneous open; both connect()ed "
                            "to each other")
