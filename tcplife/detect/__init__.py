"""Anomaly detectors: small plug-ins fed by the tracker's events.

Owns: the `Detector` protocol, `DetectorSet` (which feeds them), every detector of the
contract's anomaly kinds and the sentence each one writes. A detector sees one finished
connection at a time (`ConnView`: its record, its final transitions with retractions
applied, and the tracker's notes), like Zeek's end-of-connection verdict, and may keep
state across connections (TIME_WAIT accumulation). Knows nothing of captures, pandas or
the terminal; never calls back into the tracker.
"""

from __future__ import annotations

from array import array
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

import numpy as np

from tcplife.core.events import (
    Anomaly,
    Claim,
    ConnectionEnded,
    ConnectionRecord,
    Event,
    Oddity,
    Transition,
)
from tcplife.core.machine import RECV_ACK_FIN, SEND_FIN, SEND_SYN, SEND_SYNACK
from tcplife.core.options import NS, Options
from tcplife.core.states import (
    CERTAIN,
    CLIENT,
    CLOSE_WAIT,
    CLOSED,
    CLOSING,
    DEFAULT_SEVERITY,
    ERROR,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    INFO,
    LAST_ACK,
    LIKELY,
    POSSIBLE,
    SERVER,
    SYN_RECEIVED,
    SYN_SENT,
    TIME_WAIT,
    UNKNOWN,
    WARNING,
    State,
)


def clock(ts_ns: int) -> str:
    """``12:00:03.120`` (UTC time of day, milliseconds) for sentences."""
    dt = datetime.fromtimestamp(ts_ns // NS, tz=timezone.utc)
    return f"{dt:%H:%M:%S}.{(ts_ns % NS) // 1_000_000:03d}"


def secs(ns: int) -> str:
    s = ns / NS
    return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s" if s >= 1 else f"{s * 1000:.0f} ms"


@dataclass
class ConnView:
    """One finished connection as the detectors see it."""

    record: ConnectionRecord
    transitions: list[Transition]
    notes: list[Oddity]
    capture_end_ns: int
    options: Options

    def who(self, side: str) -> str:
        r = self.record
        addr, port = (r.client_addr, r.client_port) if side == CLIENT else (r.server_addr,
                                                                              r.server_port)
        return f"{side} {addr}:{port}" if ":" not in addr else f"{side} [{addr}]:{port}"

    def side_transitions(self, side: str) -> list[Transition]:
        return [t for t in self.transitions if t.side == side]

    def named(self, name: str, side: str | None = None) -> list[Oddity]:
        return [n for n in self.notes if n.name == name and (side is None or n.side == side)]

    def state_at(self, side: str, ts_ns: int) -> State:
        state = getattr(self.record, f"{side}_initial_state")
        for t in self.side_transitions(side):
            if t.ts_ns > ts_ns:
                break
            state = t.to_state
        return state

    def anomaly(self, ts_ns: int, side: str, kind: str, frame: int | None,
                detail: str, *, severity: str | None = None, confidence: str = CERTAIN,
                frames: Iterable[int | None] = (),
                claims: Iterable[Claim] = ()) -> Anomaly:
        """An anomaly row of this connection: ``severity`` defaults to the kind's
        (`DEFAULT_SEVERITY`); ``frames`` beside ``frame`` are the other evidence."""
        evidence = tuple(dict.fromkeys(f for f in (frame, *frames) if f is not None))
        return Anomaly(self.record.conn_id, ts_ns, side, kind, frame, detail,
                       severity or DEFAULT_SEVERITY.get(kind, WARNING), confidence, evidence,
                       tuple(claims))


class Detector(Protocol):
    def on_connection(self, view: ConnView) -> Iterable[Anomaly]: ...

    def finish(self, capture_end_ns: int) -> Iterable[Anomaly]: ...


class PerConnection:
    """A detector that judges each connection on its own."""

    def on_connection(self, view: ConnView) -> Iterable[Anomaly]:
        raise NotImplementedError

    def finish(self, capture_end_ns: int) -> Iterable[Anomaly]:
        return ()


def _other(side: str) -> str:
    return SERVER if side == CLIENT else CLIENT


class Refused(PerConnection):
    def on_connection(self, v: ConnView) -> Iterable[Anomaly]:
        if v.record.close_kind != "refused":
            return
        rst = next((n for n in v.named("rst_sent", SERVER)), None)
        ts, frame = (rst.ts_ns, rst.frame) if rst else (v.record.last_ts_ns, v.record.last_frame)
        yield v.anomaly(ts, SERVER, "refused", frame,
                        f"{v.who(SERVER)} answered the SYN from {v.who(CLIENT)} with RST at "
                        f"{clock(ts)}: nothing listens on port {v.record.server_port} "
                        "(connection refused)")


@dataclass
class _Unanswered:
    """One connection's SYNs (or repeated SYN-ACKs) that went unanswered, waiting for the
    end of input to be judged against what the same service answered meanwhile."""

    conn_id: int
    times: list[int]  #: the unanswered segments' times, in order
    frame: int | None
    client: str
    server: str
    answered_at: int | None  #: when the service did answer this connection, if it did
    synacks: bool  #: SYN-ACKs repeated after the client's ACK (else the client's SYNs)
    service: tuple[str, int] = ("", 0)  #: the server address and port

    @property
    def reach_ns(self) -> int:
        """How far from these segments another answer counts: the longest gap between
        them (the client's or server's own retry interval), at least 1 s (Linux's first
        SYN and SYN-ACK timeout, TCP_TIMEOUT_INIT)."""
        gaps = [b - a for a, b in zip(self.times, self.times[1:], strict=False)]
        return max([NS, *gaps])


class ListenOverflow:
    """listen_overflow and syn_unanswered, judged across the connections of one service
    (server address and port).

    A connection's SYNs that got no answer (all of them, or those before the one that was
    answered), or SYN-ACKs its server repeated after the client's ACK, are judged against
    the SYN-ACKs the same service sent to other connections (seen as they happen, from the
    transitions). If one came within one retry interval of them (`_Unanswered.reach_ns`:
    the schedule the retries themselves show), the listener was alive and dropping: its
    accept queue was full (Linux counts the drops as ListenOverflows): ``listen_overflow``
    on the server side. Two or more lost segments, or SYN-ACKs repeated after the ACK:
    likely; one SYN resent once and then answered: possible (one lost packet looks the
    same). If nothing of the service answered in that time, a connection that never got
    an answer after two SYNs or more is ``syn_unanswered`` (a filter drops them, or the
    host is down); one SYN proves nothing (the capture may end before the answer).

    A connection is judged when it ends if the capture has passed the end of its window
    by then (the usual case: a client gives up long after its last SYN), else at the end
    of input. SYN-ACKs older than any window still to judge are forgotten."""

    def __init__(self, options: Options | None = None, *, defer: bool = False) -> None:
        syn_sent = (options or Options()).ns("syn_sent")
        #: a window reaches at most one retry interval (< syn_sent) before the first SYN,
        #: which is at most syn_sent before the connection ends
        self.horizon_ns = 2 * syn_sent + 60 * NS
        #: judge nothing before the end, forget nothing: this instance sees a part of the
        #: connections, and its answers and pending ones are judged with the others'
        #: (`tcplife.engines.dataset`)
        self.defer = defer
        self.answers: dict[tuple[str, int], deque[tuple[int, int]]] = defaultdict(deque)
        self.pending: list[_Unanswered] = []

    def on_transition(self, t: Transition) -> None:
        if t.side == SERVER and t.event == SEND_SYNACK.value:
            answers = self.answers[(t.addr, t.port)]
            answers.append((t.ts_ns, t.conn_id))
            while not self.defer and answers and \
                    answers[0][0] < t.ts_ns - self.horizon_ns:
                answers.popleft()

    def on_connection(self, v: ConnView) -> Iterable[Anomaly]:
        r = v.record
        service = (r.server_addr, r.server_port)
        server = v.side_transitions(SERVER)
        answer = next((t for t in server if t.event == SEND_SYNACK.value), None)
        client = v.side_transitions(CLIENT)
        found: list[_Unanswered] = []
        syn = next((t for t in client if t.event == SEND_SYN.value), None)
        if syn is not None and r.client_initial_state == CLOSED:
            syns = [syn.ts_ns] + [n.ts_ns for n in v.named("syn_rtx", CLIENT)]
            answered = answer.ts_ns if answer is not None else None
            if answered is not None:
                syns = [t for t in syns if t < answered][:-1]  # the last one was answered
            # a SYN with FIN (a scan probe) opens nothing: no listener answers it
            if syns and (answered is not None or r.close_kind == "unanswered") \
                    and not v.named("syn_with_fin", CLIENT):
                found.append(_Unanswered(r.conn_id, syns, syn.frame, v.who(CLIENT),
                                         v.who(SERVER), answered, False, service))
        established = next((t for t in client if t.to_state == ESTABLISHED), None)
        if answer is not None and established is not None:
            # SYN-ACKs repeated well after the client's ACK (not crossing it)
            after = [n for n in v.named("synack_rtx", SERVER)
                     if n.ts_ns > established.ts_ns + NS // 5]
            if after:
                found.append(_Unanswered(r.conn_id, [n.ts_ns for n in after],
                                         after[0].frame, v.who(CLIENT), v.who(SERVER),
                                         None, True, service))
        for u in found:
            if not self.defer and v.capture_end_ns >= u.times[-1] + u.reach_ns:
                yield from self.judge(u)
            else:
                self.pending.append(u)

    def finish(self, capture_end_ns: int) -> Iterable[Anomaly]:
        for u in self.pending:
            yield from self.judge(u)
        self.pending.clear()

    def judge(self, u: _Unanswered) -> Iterable[Anomaly]:
        lo, hi = u.times[0] - u.reach_ns, u.times[-1] + u.reach_ns
        others = [(t, c) for t, c in self.answers.get(u.service, ())
                  if lo <= t <= hi and c != u.conn_id]
        if others and (len(u.times) >= 2 or u.answered_at is not None or u.synacks):
            yield self._overflow(u, others)  # (one SYN never answered proves nothing)
        elif not u.synacks and u.answered_at is None and len(u.times) >= 2:
            # the same host answering on another port meanwhile is up: not a dead host
            host_up = any(lo <= t <= hi for service, answers in self.answers.items()
                          if service[0] == u.service[0] and service != u.service
                          for t, _ in answers)
            yield self._unanswered(u, host_up)

    @staticmethod
    def _overflow(u: _Unanswered, others: list[tuple[int, int]]) -> Anomaly:
        n = len(u.times)
        what = (f"repeated its SYN-ACK to {u.client} {n} time{'s' if n > 1 else ''} from "
                f"{clock(u.times[0])} after the client's ACK (the kernel dropped that ACK)"
                if u.synacks else
                f"left {n} SYN{'s' if n > 1 else ''} from {u.client} unanswered from "
                f"{clock(u.times[0])}" + (f" (answered at {clock(u.answered_at)})"
                                           if u.answered_at is not None else ""))
        sure = LIKELY if n >= 2 or u.synacks else POSSIBLE
        doubt = ("" if sure == LIKELY else "; one SYN lost on the way looks the same")
        near_ts, near_conn = min(others, key=lambda a: abs(a[0] - u.times[0]))
        # a connection that got through in the end was delayed; one that did not, failed
        severity = WARNING if u.answered_at is not None else ERROR
        return Anomaly(
            u.conn_id, u.times[0], SERVER, "listen_overflow", u.frame,
            f"{u.server} {what} while it answered {len(others)} other connection"
            f"{'s' if len(others) > 1 else ''} (conn {near_conn} at {clock(near_ts)}): "
            "the listener's accept queue was full (backlog too small, or the application "
            f"slow to accept()){doubt}", severity, sure,
            () if u.frame is None else (u.frame,))

    @staticmethod
    def _unanswered(u: _Unanswered, host_up: bool) -> Anomaly:
        n = len(u.times)
        cause = ("its host answered on other ports meanwhile, so it is up: a firewall drops "
                 "the SYNs to this port" if host_up else
                 "a firewall drops them or the host is down")
        return Anomaly(
            u.conn_id, u.times[0], CLIENT, "syn_unanswered", u.frame,
            f"{u.client} sent {n} SYNs to {u.server} between {clock(u.times[0])} and "
            f"{clock(u.times[-1])} and got no answer, and nothing of that service answered "
            f"anyone meanwhile: {cause}",
            DEFAULT_SEVERITY["syn_unanswered"], CERTAIN,
            () if u.frame is None else (u.frame,))


class HandshakeIncomplete(PerConnection):
    def on_connection(self, v: ConnView) -> Iterable[Anomaly]:
        server = v.side_transitions(SERVER)
        synrcvd = next((t for t in server if t.to_state == SYN_RECEIVED), None)
        if synrcvd is None:
            return
        # Established in the end, unless the ACKs were seen lost and the server never sent
        # anything but SYN-ACKs (and perhaps an RST): then the last ACK seen proves nothing.
        acks_lost = any((n.facts or {}).get("kind") == "ack_syn"
                        for n in v.named("ack_lost", SERVER))
        only_synacks = v.record.server_packets == (1 + len(v.named("synack_rtx", SERVER))
                                                   + len(v.named("rst_sent", SERVER)))
        if any(t.to_state == ESTABLISHED for t in server) and not (acks_lost
                                                                        and only_synacks):
            return
        n = 1 + len(v.named("synack_rtx", SERVER))
        end = next((t for t in server if t.ts_ns > synrcvd.ts_ns), None)
        gave_up = end is not None and end.ts_ns <= v.capture_end_ns
        if n < 2 and not gave_up:
            return  # one SYN-ACK proves nothing (as for syn_unanswered)
        how = (f"gave up at {clock(end.ts_ns)} ({end.event})" if gave_up and end is not None
               else "still waits at the end of the capture")
        # the client's ACK was captured, and only the server's bare RST shows it never
        # arrived: lost after the capture point, as far as the wire shows
        no_socket = any("bare RST" in n.detail for n in v.named("retracted", SERVER))
        seen = (" (its bare RST shows it had no connection although an ACK from the client "
                "was captured: lost after the capture point)" if no_socket else "")
        yield v.anomaly(synrcvd.ts_ns, SERVER, "handshake_incomplete", synrcvd.frame,
                        f"{v.who(SERVER)} sent SYN-ACK at {clock(synrcvd.ts_ns)} ({n} time"
                        f"{'s' if n > 1 else ''}) and never got the handshake's final ACK from "
                        f"{v.who(CLIENT)}{seen}; it sat in SYN_RECEIVED and {how} (ACKs "
                        "dropped on the way, or a SYN flood)",
                        confidence=LIKELY if no_socket else CERTAIN,
                        claims=[(SERVER, SYN_RECEIVED, synrcvd.ts_ns)])


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
            facts = note.facts or {}
            state, unread = State(str(facts.get("state"))), bool(facts.get("unread"))
            peer = _other(note.side)
            # the state the RST left (none to claim when it is the connection's first packet)
            before = (note.side, state, note.ts_ns - 1)
            claims = [before] if note.ts_ns > v.record.first_ts_ns else []
            if state in _OPEN and facts.get("ack", True):
                probes = int(facts.get("probes") or 0)  # type: ignore[call-overload]
                if probes:
                    since = int(facts.get("probe_since") or note.ts_ns)  # type: ignore
                    row = v.anomaly(
                        note.ts_ns, note.side, "half_open", note.frame,
                        f"{v.who(note.side)} sent {probes} keep-alive probe"
                        f"{'s' if probes > 1 else ''} from {clock(since)} that "
                        f"{v.who(peer)} never answered; its kernel gave up and reset the "
                        f"connection at {clock(note.ts_ns)}: the peer is gone (crashed, "
                        "powered off, unreachable, or a middlebox dropped the flow)",
                        confidence=LIKELY, claims=claims)
                elif unread and facts.get("zero_window"):
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
            elif state in _AFTER_CLOSE and unread and facts.get("fin_sent"):
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
    def on_connection(self, v: ConnView) -> Iterable[Anomaly]:
        linger = v.options.ns("close_wait_linger")
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
                peer = _other(side)
                peer_state = v.state_at(peer, end)
                idle = ("" if wrote is None else f" (it went on sending data until "
                        f"{clock(wrote)}: the peer had only shut down writing)")
                claims = [(side, CLOSE_WAIT, t.ts_ns), (side, CLOSE_WAIT, end - 1),
                          (peer, peer_state, end)]
                if open_to_end:
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
                peer = _other(side)
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
            rtx = [n for n in v.named("fin_rtx", side) if not (n.facts or {}).get("hole")]
            if not rtx or not getattr(v.record, f"{_other(side)}_packets"):
                continue  # a peer never seen is no peer that failed to ACK (probes, scans)
            first = rtx[0]
            peer = _other(side)
            # an ACK of the FIN that stands (not retracted); it may be captured just before
            # a retransmission that crossed it on the way
            acked = next((t for t in v.side_transitions(side)
                          if t.from_state in self._WAITING
                          and t.event == RECV_ACK_FIN.value), None)
            lost = [n for n in v.named("ack_lost", side)
                    if (n.facts or {}).get("kind") == "ack_fin"]
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


class Notes(PerConnection):
    """Kinds the tracker notes directly: half_close, half_open, port_reuse, keepalive."""

    def on_connection(self, v: ConnView) -> Iterable[Anomaly]:
        for side in (CLIENT, SERVER):
            peer = _other(side)
            for note in v.named("half_close", side)[:1]:
                yield v.anomaly(note.ts_ns, side, "half_close", note.frame,
                                f"{v.who(side)} shut down writing (sent FIN) and "
                                f"{v.who(peer)} went on sending data, which {side} "
                                f"acknowledged at {clock(note.ts_ns)}: a half-close "
                                "(shutdown(SHUT_WR)); fine if intended")
            for note in v.named("silence_rtx", side)[:1]:
                # the peer spoke again later: the path came back (a warning); it never
                # did by the end of the capture: the peer is gone (an error)
                heard = getattr(v.record, f"{peer}_last_ts_ns")
                back = heard is not None and heard > note.ts_ns
                fate = (f"{v.who(peer)} answered again at {clock(heard)}: the path or the "
                        "peer was gone for a while (half-open meanwhile)" if back else
                        f"{v.who(peer)} never answered: the peer is gone or unreachable "
                        "(half-open); only a timeout or keep-alive will tell the "
                        "application")
                yield v.anomaly(note.ts_ns, side, "half_open", note.frame,
                                f"{v.who(side)} retransmitted data from {clock(note.ts_ns)} "
                                f"into silence; {fate}",
                                severity=WARNING if back else ERROR)
            probes = v.named("keepalive_probe", side)
            if probes:
                yield v.anomaly(probes[0].ts_ns, side, "keepalive", probes[0].frame,
                                f"{v.who(side)} sent {len(probes)} keep-alive probe"
                                f"{'s' if len(probes) > 1 else ''} on the idle connection "
                                f"from {clock(probes[0].ts_ns)} (SO_KEEPALIVE); information")
        for note in v.named("port_reuse")[:1]:
            # a TIME_WAIT socket is there to meet reuse (RFC 9293 3.10.7.4, Linux
            # tcp_timewait_state_process): info; an open socket met by a new SYN: warning
            met = (note.facts or {}).get("states") or ()
            normal = bool(met) and all(m == TIME_WAIT.value for m in met)  # type: ignore
            yield v.anomaly(note.ts_ns, CLIENT, "port_reuse", note.frame,
                            f"{v.who(CLIENT)} at {clock(note.ts_ns)}: {note.detail}"
                            + ("; normal: TIME_WAIT is there for this" if normal else ""),
                            severity=INFO if normal else WARNING)
        r = v.record
        if r.mid_stream:
            yield v.anomaly(r.first_ts_ns, CLIENT, "mid_stream", r.first_frame,
                            "the capture began after this connection's handshake "
                            f"(first packet at {clock(r.first_ts_ns)}): early states are "
                            "inferred and the roles guessed from the ports")


_FOREVER = 1 << 62
MIN_RTO_NS = 200_000_000  #: Linux TCP_RTO_MIN: no retransmission timer fires sooner
_Span = tuple[int, int, int, str, "int | None"]  #: TIME_WAIT start, end, conn_id, side, frame
_SIDE_CODE = {CLIENT: 0, SERVER: 1}


#: a server's address and port: the service a client's TIME_WAIT sockets are towards
Service = tuple[str, int]
_Key = tuple[int, int, int, int, int]  #: a span's columns: start, end, conn_id, side, frame


def _unkey(key: _Key) -> _Span:
    start, end, conn_id, side, frame = key
    return start, end, conn_id, (CLIENT, SERVER)[side], None if frame < 0 else frame


class Spans:
    """One host's TIME_WAIT intervals as six integer columns (about 48 bytes each, not
    the ~250 of a tuple of Python ints): start, end, conn_id, side (0 client, 1 server),
    frame (-1 for none), service (a client's TIME_WAIT: the server address and port it
    was towards, as a position in ``services``; -1 for a server's)."""

    __slots__ = ("cols", "services", "_codes")

    def __init__(self) -> None:
        self.cols = tuple(array("q") for _ in range(6))
        self.services: list[Service] = []
        self._codes: dict[Service, int] = {}

    def __len__(self) -> int:
        return len(self.cols[0])

    def append(self, span: _Span, service: Service | None = None) -> None:
        start, end, conn_id, side, frame = span
        for col, value in zip(self.cols, (start, end, conn_id, _SIDE_CODE[side],
                                          -1 if frame is None else frame,
                                          -1 if service is None else self._code(service)),
                              strict=True):
            col.append(value)

    def _code(self, service: Service) -> int:
        code = self._codes.get(service)
        if code is None:
            code = self._codes[service] = len(self.services)
            self.services.append(service)
        return code

    def extend(self, other: Spans) -> None:
        # the other's service positions as ours (the last entry maps a server's -1 to -1)
        remap = np.array([*(self._code(s) for s in other.services), -1], dtype=np.int64)
        codes = remap[np.frombuffer(other.cols[5], dtype=np.int64)]
        for col, more in zip(self.cols[:5], other.cols[:5], strict=True):
            col.extend(more)
        self.cols[5].frombytes(codes.tobytes())

    def arrays(self) -> list[np.ndarray]:
        return [np.frombuffer(c, dtype=np.int64) for c in self.cols]

    def keep(self, mask: np.ndarray) -> None:
        self.cols = tuple(array("q", a[mask].tobytes()) for a in self.arrays())

    def subset(self, rows: np.ndarray) -> Spans:
        """The intervals at positions ``rows``, with this one's ``services`` (shared: read
        them, do not append to the subset)."""
        out = Spans()
        out.cols = tuple(array("q", a[rows].tobytes()) for a in self.arrays())
        out.services, out._codes = self.services, self._codes
        return out

    def key(self, i: int) -> _Key:
        start, end, conn_id, side, frame = (int(c[i]) for c in self.cols[:5])
        return start, end, conn_id, side, frame

    def span(self, i: int) -> _Span:
        return _unkey(self.key(i))

    def service(self, i: int) -> Service | None:
        code = self.cols[5][i]
        return None if code < 0 else self.services[code]

    def groups(self) -> list[tuple[Service | None, np.ndarray]]:
        """Who holds the intervals, as the limits count them: per service, the positions
        of the host's TIME_WAIT sockets as a client towards it (services in order), then
        those as a server (None), from every client."""
        codes = self.arrays()[5]
        if not len(codes):
            return []
        order = np.argsort(codes, kind="stable")
        found, first = np.unique(codes[order], return_index=True)
        parts = np.split(order, first[1:])
        out = [(self.services[int(c)], rows) for c, rows in zip(found, parts, strict=True)
               if c >= 0]
        out.sort(key=lambda group: group[0])
        return out + [(None, rows) for c, rows in zip(found, parts, strict=True) if c < 0]


def _sweep(spans: Spans, cutoff: int | None = None) -> tuple[int, np.ndarray, np.ndarray]:
    """The busiest instant of ``spans`` (up to ``cutoff``, if given): the count, and the
    interval whose start first reached it, as positions (empty if none); with every
    interval active then. Edges in time order, an end before a start at the same instant,
    ties by the intervals' (start, end, conn_id, side, frame): the order in which a sweep
    over the tuples meets them."""
    cols = spans.arrays()[:5]
    n = len(cols[0])
    if not n:
        return 0, np.empty(0, np.int64), np.empty(0, np.int64)
    ts = np.concatenate((cols[0], cols[1]))
    delta = np.concatenate((np.ones(n, np.int64), -np.ones(n, np.int64)))
    idx = np.concatenate((np.arange(n), np.arange(n)))
    fields = [c[idx] for c in cols]
    order = np.lexsort((*reversed(fields), delta, ts))  # last key sorts first
    if cutoff is not None:
        order = order[ts[order] <= cutoff]
    if not len(order):
        return 0, np.empty(0, np.int64), np.empty(0, np.int64)
    count = np.cumsum(delta[order])
    peak = int(count.max())
    if peak <= 0:
        return 0, np.empty(0, np.int64), np.empty(0, np.int64)
    first = int(np.argmax(count == peak))
    # active at that edge: started at or before it, not ended at or before it
    pos = np.empty(2 * n, np.int64)
    pos[order] = np.arange(len(order))
    unseen = np.full(2 * n, len(order), np.int64)
    unseen[order] = pos[order]
    active = np.flatnonzero((unseen[:n] <= first) & (unseen[n:] > first))
    return peak, np.array([idx[order[first]]]), active


_Window = tuple[int, _Key]  #: how many TIME_WAIT starts a window holds; its first interval


def _busiest(spans: Spans, window_ns: int | None,
             last_anchor: int | None = None) -> _Window | None:
    """The window that holds the most TIME_WAIT starts of ``spans``: windows of
    ``window_ns`` (half-open, as TIME_WAIT itself: one that starts as another ends does not
    overlap it) beginning at each interval's start, in the sweep's order (start, end,
    conn_id, side, frame), the first with the most; ``window_ns`` None: one window holding
    them all. ``last_anchor``: only windows beginning at or before it. None if none."""
    cols = spans.arrays()[:5]
    n = len(cols[0])
    order = np.lexsort(tuple(reversed(cols)))
    starts = cols[0][order]
    if window_ns is None:
        counts = np.array([n]) if n else np.empty(0, np.int64)
    else:
        counts = np.searchsorted(starts, starts + window_ns, side="left") - np.arange(n)
        if last_anchor is not None:
            counts = counts[:int(np.searchsorted(starts, last_anchor, side="right"))]
    if not len(counts):
        return None
    i = int(np.argmax(counts))  # the first of the most
    j = int(order[i])
    start, end, conn_id, side, frame = (int(c[j]) for c in cols)
    return int(counts[i]), (start, end, conn_id, side, frame)


def _more(a: _Window | None, b: _Window | None) -> _Window | None:
    """The window with more starts; of two with as many, the one that begins first."""
    if a is None or b is None:
        return a if b is None else b
    return a if (-a[0], a[1]) <= (-b[0], b[1]) else b


@dataclass(frozen=True)
class TimeWaitLimits:
    """What a host's TIME_WAIT sockets are judged against (from `Options`): how long one
    lasts, the clients' ephemeral port range, tcp_max_tw_buckets, and the share of the
    limit that makes an accumulation."""

    time_wait_ns: int
    port_low: int
    port_high: int
    max_tw_buckets: int
    share: float

    @classmethod
    def of(cls, options: Options) -> TimeWaitLimits:
        return cls(options.ns("time_wait"), int(options.port_range_low),
                   int(options.port_range_high), int(options.max_tw_buckets),
                   float(options.time_wait_share))

    @property
    def ports(self) -> int:
        return self.port_high - self.port_low + 1


@dataclass(frozen=True)
class _Pile:
    """One holder's TIME_WAIT figures (`TimeWaitAccumulation`): a host as the client
    towards ``service``, or as the server (``service`` None)."""

    host: str
    service: Service | None
    limit: int
    peak: int
    peak_at: _Key | None  #: the interval whose start reached the peak
    starts: int  #: TIME_WAIT starts in the rate's window
    window_at: _Key | None  #: the window's first interval
    window_ns: int  #: the rate's window
    whole: bool  #: the window is the capture's span (shorter than time_wait)
    observed_ns: int  #: the capture's span

    @property
    def rate(self) -> float:
        """New TIME_WAIT sockets per second."""
        return self.starts * NS / self.window_ns if self.window_ns > 0 else 0.0

    def projection(self, time_wait_ns: int) -> float:
        """The count the rate holds at once in a steady state: rate x time_wait."""
        return self.starts * time_wait_ns / self.window_ns if self.window_ns > 0 else 0.0


def _count(n: float) -> str:
    return f"{round(n):,}"


@dataclass
class TimeWaitAccumulation:
    """Sockets in TIME_WAIT piling up towards a limit of the host that holds them.

    The side that closes first holds its 4-tuple in TIME_WAIT for ``time_wait`` (60 s on
    Linux). Who holds them decides the limit (`TimeWaitLimits`, from `Options`):

    - a client: per server address and port (the service), the ephemeral port range
      (``port_range_high - port_range_low + 1``, 28,232 by Linux's default 32768-60999):
      a 4-tuple must be unique, so one client address holds at most that many sockets
      towards one service, TIME_WAIT ones included, and then connect() fails with
      EADDRNOTAVAIL;
    - a server: ``max_tw_buckets`` (net.ipv4.tcp_max_tw_buckets, 262,144) for all its
      TIME_WAIT sockets as a server, from every client together; past it the kernel closes
      sockets at once without TIME_WAIT (TcpExtTCPTimeWaitOverflow).

    Per holder (one client address towards one service; one server address), two
    figures:

    - the peak: the most of its sockets in TIME_WAIT at once (a sweep over the
      intervals, measured: confidence ``certain``);
    - the projection: the rate of new TIME_WAIT sockets times ``time_wait``, the count that
      rate holds at once in a steady state (confidence ``likely``). The rate is taken over
      the busiest window of ``time_wait`` (the window holding the most TIME_WAIT starts;
      each window begins at a start) when the capture lasts at least ``time_wait`` (from
      the first packet of the first connection to the capture's end), since a steady rate
      holds exactly its last ``time_wait`` of starts at once; the projection is then the
      count in that window, and it exceeds the peak only by the TIME_WAITs cut short (a
      reusing SYN, an RST). A shorter capture is one window, its whole span (at least
      1 s: a per-second rate needs a second of evidence, so that a few connections in a
      few milliseconds project nothing), and the projection extrapolates it to
      ``time_wait``, which the capture cannot show.

    A holder is reported (one row: per (client, service), per server) when its peak or
    its projection passes ``time_wait_share`` of its limit; ``time_wait_threshold`` stays a
    plain count per host that also triggers it: when the most TIME_WAIT sockets of one
    host at once (all holders together) reach it, the holder of the interval that reached
    that peak is reported. Severity ``error`` when the peak or the projection reaches the
    limit itself, else ``warning``; confidence ``certain`` when a measured count (the peak
    past the share, the host's count over the threshold) triggered the row, ``likely``
    when only the projection did. The row's connection and frame: the interval that
    reached the holder's peak when the peak triggered it, else the one that reached the
    host's count, else the first of the rate's window; its frames are those three.

    Without ``limits``, only the count per host is judged (one row per host).
    """

    threshold: int
    limits: TimeWaitLimits | None = None
    intervals: dict[str, Spans] = field(default_factory=lambda: defaultdict(Spans))
    #: the first packet of the earliest connection seen: where the capture's span begins
    since_ns: int | None = None

    def plain(self) -> TimeWaitAccumulation:
        """A new detector judging by the same rule, keeping every interval."""
        return TimeWaitAccumulation(self.threshold, self.limits)

    def on_connection(self, v: ConnView) -> Iterable[Anomaly]:
        r = v.record
        if self.since_ns is None or r.first_ts_ns < self.since_ns:
            self.since_ns = r.first_ts_ns
        for side in (CLIENT, SERVER):
            trans = v.side_transitions(side)
            for i, t in enumerate(trans):
                if t.to_state == TIME_WAIT:
                    end = trans[i + 1].ts_ns if i + 1 < len(trans) else _FOREVER
                    service = (r.server_addr, r.server_port) if side == CLIENT else None
                    self.intervals[getattr(r, f"{side}_addr")].append(
                        (t.ts_ns, end, r.conn_id, side, t.frame), service)
        return ()

    def finish(self, capture_end_ns: int) -> Iterable[Anomaly]:
        for host, spans in sorted(self.intervals.items()):
            yield from self._judge_host(host, spans, capture_end_ns)

    def _earlier_window(self, host: str, service: Service | None) -> _Window | None:
        """The busiest window among intervals no longer kept (`BoundedTimeWaitAccumulation`)."""
        return None

    def _judge_host(self, host: str, spans: Spans, capture_end_ns: int) -> Iterable[Anomaly]:
        peak, at, _ = _sweep(spans)
        counted = bool(len(at)) and peak >= self.threshold
        if self.limits is None:
            if counted:
                yield self._count_row(host, peak, spans.key(int(at[0])))
            return
        observed = capture_end_ns - self.since_ns if self.since_ns is not None else 0
        for service, rows in spans.groups():
            pile = self._measure(host, service, spans.subset(rows), observed)
            by_count = counted and spans.service(int(at[0])) == service
            row = self._pile_row(pile, peak if by_count else None,
                                 spans.key(int(at[0])) if by_count else None)
            if row is not None:
                yield row

    def _measure(self, host: str, service: Service | None, spans: Spans,
                 observed_ns: int) -> _Pile:
        limits = self.limits
        assert limits is not None
        time_wait = limits.time_wait_ns
        peak, at, _ = _sweep(spans)
        whole = observed_ns < time_wait
        window = _busiest(spans, None if whole else time_wait)
        if not whole:
            window = _more(window, self._earlier_window(host, service))
        starts, window_at = window if window is not None else (0, None)
        return _Pile(host, service, limits.ports if service is not None else
                     limits.max_tw_buckets, peak,
                     spans.key(int(at[0])) if len(at) else None, starts, window_at,
                     min(time_wait, max(observed_ns, NS)), whole, observed_ns)

    def _pile_row(self, p: _Pile, host_peak: int | None,
                  host_at: _Key | None) -> Anomaly | None:
        """The row of one holder, if a rule reports it (``host_peak``: the host's count, when
        it reached the threshold on an interval of this holder, ``host_at``)."""
        limits = self.limits
        assert limits is not None
        projection = p.projection(limits.time_wait_ns)
        bar = limits.share * p.limit
        by_peak, by_rate = p.peak > bar, projection > bar
        if not (by_peak or by_rate or host_at is not None):
            return None
        key = (p.peak_at if by_peak else host_at if host_at is not None else p.window_at)
        assert key is not None
        start, end, conn_id, side, frame = _unkey(key)
        frames = tuple(dict.fromkeys(f for k in (key, p.peak_at, host_at, p.window_at)
                                     if k is not None and (f := _unkey(k)[4]) is not None))
        at_limit = p.peak >= p.limit or projection >= p.limit
        return Anomaly(conn_id, start, side, "time_wait_accumulation", frame,
                       self._pile_sentence(p, projection, host_peak),
                       ERROR if at_limit else WARNING,
                       CERTAIN if by_peak or host_at is not None else LIKELY, frames,
                       ((side, TIME_WAIT, start),) if end > start else ())

    def _pile_sentence(self, p: _Pile, projection: float, host_peak: int | None) -> str:
        limits = self.limits
        assert limits is not None
        share = f"{limits.share:.0%}"
        peak_at = f" at {clock(_unkey(p.peak_at)[0])}" if p.peak_at is not None else ""
        if p.service is not None:
            addr, port = p.service
            service = f"{addr}:{port}" if ":" not in addr else f"[{addr}]:{port}"
            holder = f"towards {service}{peak_at} (as the client)"
            limit = (f"{p.limit:,} (ephemeral ports {limits.port_low}-{limits.port_high}: one "
                     "client address holds at most that many sockets towards one server "
                     "address and port)")
            advice = (f"once every port is held, connect() to {service} fails "
                      "(EADDRNOTAVAIL): reuse connections (keep-alive, pooling), let the "
                      "server close first, or widen net.ipv4.ip_local_port_range")
        else:
            holder = f"as the server{peak_at} (from every client together)"
            limit = (f"{p.limit:,} (net.ipv4.tcp_max_tw_buckets: the most TIME_WAIT sockets "
                     "the kernel keeps)")
            advice = ("past the limit the kernel closes sockets at once, without TIME_WAIT "
                      "(TcpExtTCPTimeWaitOverflow), so late segments of old connections "
                      "may reach new ones: let the clients close first, or reuse "
                      "connections (keep-alive)")
        if p.whole:
            window = f"in the capture's {secs(max(p.observed_ns, 0))}"
            if p.observed_ns < NS:
                window += ", rated over 1 s"
        else:
            window = f"in the busiest {secs(p.window_ns)}"
            if p.window_at is not None:
                window += f", from {clock(_unkey(p.window_at)[0])}"
        bar = limits.share * p.limit
        reasons = []
        if p.peak >= p.limit:
            reasons.append("the peak reached the limit")
        elif p.peak > bar:
            reasons.append(f"the peak passed {share} of the limit")
        if projection >= p.limit:
            reasons.append("the projection reaches the limit")
        elif projection > bar:
            reasons.append(f"the projection passes {share} of the limit")
        if host_peak is not None:
            reasons.append(f"the host's {host_peak:,} sockets in TIME_WAIT at once reached "
                           f"time_wait_threshold {self.threshold:,}")
        return (f"host {p.host} had {p.peak:,} sockets in TIME_WAIT at once {holder}, and "
                f"{p.starts:,} new ones {window} ({p.rate:,.1f}/s), which over the "
                f"{secs(limits.time_wait_ns)} of TIME_WAIT would hold {_count(projection)} "
                f"at once; the limit is {limit}, {share} of it {_count(bar)}; "
                + " and ".join(reasons) + ": " + advice)

    def _count_row(self, host: str, peak: int, key: _Key) -> Anomaly:
        start, _end, conn_id, side, frame = _unkey(key)
        return Anomaly(conn_id, start, side, "time_wait_accumulation", frame,
                       severity=DEFAULT_SEVERITY["time_wait_accumulation"],
                       frames=() if frame is None else (frame,), detail=
                       f"host {host} had {peak} sockets in TIME_WAIT at once at "
                       f"{clock(start)} (threshold {self.threshold}): it closes "
                       "many short connections first; each holds its 4-tuple for "
                       "60 s, and ephemeral ports can run out: reuse connections "
                       "(keep-alive) or let the peer close first")


class BoundedTimeWaitAccumulation(TimeWaitAccumulation):
    """`TimeWaitAccumulation` whose memory stays bounded over hours: per host, the TIME_WAIT
    intervals that ended long ago (``horizon_ns`` before the newest connection's end) are
    dropped, except those active at the busiest instant so far (of the host, and of each
    holder), which are enough for the parent's sweep to find the same peaks at the same
    instants. With ``limits``, the rate's windows need the starts too: a window that begins
    ``time_wait`` before that cutoff or earlier holds no start still to come, so the
    busiest of those is remembered per holder and only the intervals that began later
    are kept for the windows still open."""

    def __init__(self, threshold: int, horizon_ns: int,
                 limits: TimeWaitLimits | None = None) -> None:
        super().__init__(threshold, limits)
        self.horizon_ns = horizon_ns
        self.fold_every = 4096  #: new intervals of a host between two folds, at least
        self._fold_at: dict[str, int] = {}
        self._windows: dict[tuple[str, Service | None], _Window] = {}

    def on_connection(self, v: ConnView) -> Iterable[Anomaly]:
        super().on_connection(v)
        cutoff = v.capture_end_ns - self.horizon_ns
        for host, spans in self.intervals.items():
            if len(spans) > self._fold_at.get(host, self.fold_every):
                self._fold(host, cutoff)
                kept = len(self.intervals[host])
                # amortised O(log n) each
                self._fold_at[host] = kept + max(self.fold_every, kept // 4)
        return ()

    def _fold(self, host: str, cutoff: int) -> None:
        spans = self.intervals[host]
        cols = spans.arrays()
        _, _, best = _sweep(spans, cutoff)
        keep = cols[1] > cutoff
        keep[best] = True
        if self.limits is not None:
            time_wait = self.limits.time_wait_ns
            keep |= cols[0] > cutoff - time_wait
            for service, rows in spans.groups():
                holder = spans.subset(rows)
                _, _, best = _sweep(holder, cutoff)
                keep[rows[best]] = True
                closed = _busiest(holder, time_wait, last_anchor=cutoff - time_wait)
                if closed is not None:
                    self._windows[host, service] = _more(
                        self._windows.get((host, service)), closed)  # type: ignore[assignment]
        spans.keep(keep)

    def _earlier_window(self, host: str, service: Service | None) -> _Window | None:
        return self._windows.get((host, service))


def default_detectors(options: Options) -> list[Detector]:
    # A connection ends at the latest closed_linger after its last packet, and a TIME_WAIT
    # that began before that packet lasted at most time_wait: intervals that ended longer
    # ago than this cannot overlap one still to come (a minute more for clock jitter).
    horizon = options.ns("closed_linger") + options.ns("time_wait") + 60 * NS
    return [Refused(), ListenOverflow(options), HandshakeIncomplete(), Resets(),
            LingeringCloseWait(), FinWait2Timeout(), MissingFinalAck(), SimultaneousClose(),
            SimultaneousOpen(), Notes(),
            BoundedTimeWaitAccumulation(int(options.time_wait_threshold), horizon,
                                        TimeWaitLimits.of(options))]


class DetectorSet:
    """Feeds the detectors: when a connection ends, hands them a `ConnView` of it (its
    transitions and notes come with its `ConnectionEnded`), with the running capture end
    (the latest transition with a frame, or connection end, seen so far)."""

    def __init__(self, options: Options, detectors: list[Detector] | None = None) -> None:
        self.options = options
        self.detectors = detectors if detectors is not None else default_detectors(options)
        self.capture_end_ns = 0
        self.input_ended = False
        #: detectors that also follow the transitions as they happen (`on_transition`)
        self._watchers = [d.on_transition for d in self.detectors  # type: ignore[attr-defined]
                          if hasattr(d, "on_transition")]

    def end_input(self, last_ts_ns: int | None) -> None:
        """The input has ended, its last frame at ``last_ts_ns`` (None: no frame): the
        events fed from now on are the end of input's (`Tracker.finish`)."""
        if last_ts_ns is not None:
            self.capture_end_ns = max(self.capture_end_ns, last_ts_ns)
        self.input_ended = True

    def feed(self, events: Iterable[Event]) -> list[Anomaly]:
        out: list[Anomaly] = []
        for ev in events:
            if isinstance(ev, Transition):
                if ev.frame is not None and ev.ts_ns > self.capture_end_ns:
                    self.capture_end_ns = ev.ts_ns
                for watch in self._watchers:
                    watch(ev)
            elif isinstance(ev, ConnectionEnded):
                rec = ev.record
                self.capture_end_ns = max(self.capture_end_ns, rec.last_ts_ns)
                if ev.at_end:
                    # Its states are those at the capture's end once the input has ended;
                    # an engine that ended it earlier than one process would have (a
                    # partition's own end, `tcplife.engines.distributed`) hands it over before
                    # then: one process ended it before the end, after its timeouts.
                    rec.settle(ev.transitions,
                               self.capture_end_ns if self.input_ended else _FOREVER)
                out += self.judge(rec, ev.transitions, ev.notes, self.capture_end_ns)
        return out

    def judge(self, record: ConnectionRecord, transitions: list[Transition],
              notes: list[Oddity], capture_end_ns: int, *,
              skip: tuple[type, ...] = ()) -> list[Anomaly]:
        """The detectors' verdicts on one connection (but those of the ``skip`` types)."""
        view = ConnView(record, transitions, notes, capture_end_ns, self.options)
        return [a for d in self.detectors if not isinstance(d, skip)
                for a in d.on_connection(view)]

    def finish(self) -> list[Anomaly]:
        return [a for d in self.detectors for a in d.finish(self.capture_end_ns)]
