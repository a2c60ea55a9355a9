"""Detectors of the handshake: `Refused` (``refused``), `ListenOverflow`
(``listen_overflow`` and ``syn_unanswered``, judged across the connections of one service)
and `HandshakeIncomplete` (``handshake_incomplete``).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass

from tcplife.core.events import AckLost, Anomaly, Retracted, Transition
from tcplife.core.machine import SEND_SYN, SEND_SYNACK
from tcplife.core.options import NS, Options
from tcplife.core.states import (
    CERTAIN,
    CLIENT,
    CLOSED,
    DEFAULT_SEVERITY,
    ERROR,
    ESTABLISHED,
    LIKELY,
    POSSIBLE,
    SERVER,
    SYN_RECEIVED,
    WARNING,
)
from tcplife.detect.view import ConnView, PerConnection, clock


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
        syn_sent = (options or Options()).syn_sent_ns
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
        acks_lost = any(isinstance(n.facts, AckLost) and n.facts.kind == "ack_syn"
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
        no_socket = any(isinstance(n.facts, Retracted) and n.facts.no_socket
                        for n in v.named("retracted", SERVER))
        seen = (" (its bare RST shows it had no connection although an ACK from the client "
                "was captured: lost after the capture point)" if no_socket else "")
        yield v.anomaly(synrcvd.ts_ns, SERVER, "handshake_incomplete", synrcvd.frame,
                        f"{v.who(SERVER)} sent SYN-ACK at {clock(synrcvd.ts_ns)} ({n} time"
                        f"{'s' if n > 1 else ''}) and never got the handshake's final ACK from "
                        f"{v.who(CLIENT)}{seen}; it sat in SYN_RECEIVED and {how} (ACKs "
                        "dropped on the way, or a SYN flood)",
                        confidence=LIKELY if no_socket else CERTAIN,
                        claims=[(SERVER, SYN_RECEIVED, synrcvd.ts_ns)])
