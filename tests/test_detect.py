"""Table-level tests of the anomaly detectors: scripted conversations, exact expectations.

Each case states which anomalies (connection, side, kind) the script really contains and
asserts that exactly those are reported: the expected kinds, and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tcplife.core.events import Anomaly
from tcplife.core.options import Options
from tcplife.core.segment import Segment
from tcplife.detect import BoundedTimeWaitAccumulation, TimeWaitAccumulation

from builder import ACK, FIN, RST, SYN, Conv, run


def detect(segments: list[Segment], **opts: float) -> list[Anomaly]:
    return run(segments, **opts).anomalies


def kinds(found: list[Anomaly]) -> set[tuple[int, str, str]]:
    return {(a.conn_id, a.side, a.kind) for a in found}


def clean_close(cv: Conv) -> None:
    cv.handshake()
    cv.c(0, 100)
    cv.s(0, 300)
    cv.c(ACK)
    cv.c(FIN)
    cv.s(FIN)
    cv.c(ACK)


def refused(cv: Conv) -> None:
    cv.c(SYN)
    cv.s(RST | ACK, seq=0, ack=cv.client.isn + 1)


def syn_unanswered(cv: Conv) -> None:
    cv.c(SYN)
    cv.c(SYN, seq=cv.client.isn, dt=1)
    cv.c(SYN, seq=cv.client.isn, dt=2)


def handshake_incomplete(cv: Conv) -> None:
    cv.c(SYN)
    cv.s(SYN | ACK)
    cv.s(SYN | ACK, seq=cv.server.isn, dt=1)


def unread_rst(cv: Conv) -> None:
    """Data arrived after the client's last data, then its RST: unread data and SO_LINGER 0
    after reading look the same (kernel lab: close_unread_data, linger0_after_read)."""
    cv.handshake()
    cv.c(0, 100)
    cv.s(0, 5000)
    cv.c(ACK)
    cv.c(RST | ACK, ack=cv.client.rcv_nxt)


def unread_rst_zero_window(cv: Conv) -> None:
    """The client's buffer filled (zero window) and it reset: unread data, on evidence
    (its RST offers a window again: the kernel purged the buffer first)."""
    cv.handshake()
    cv.c(0, 100)
    cv.s(0, 5000)
    cv.c(ACK, window=0)
    cv.s(ACK, seq=cv.server.snd_nxt - 1, dt=0.2)  # zero-window probe
    cv.c(ACK, window=0)
    cv.c(RST | ACK, ack=cv.client.rcv_nxt, window=1024)


def keepalive_death(cv: Conv) -> None:
    """Keep-alive probes into silence, then the client's kernel gives up with RST."""
    cv.handshake()
    cv.c(0, 100)
    cv.s(0, 300)
    cv.c(ACK)
    for _ in range(3):
        cv.c(ACK, seq=cv.client.snd_nxt - 1, dt=1, lost="after")
    cv.c(RST | ACK, ack=cv.client.rcv_nxt, dt=1)


def final_ack_late(cv: Conv) -> None:
    """The server's FIN is resent before the client's ACK arrives, which then does."""
    cv.handshake()
    cv.c(FIN)
    cv.s(ACK)
    cv.s(FIN)
    cv.c(ACK, lost="after")
    cv.s(FIN, seq=cv.server.snd_nxt - 1, dt=0.3)
    cv.c(ACK, dt=0.0001)


def abortive(cv: Conv) -> None:
    cv.handshake()
    cv.c(0, 100)
    cv.s(0, 300)
    cv.s(RST | ACK, ack=cv.server.rcv_nxt)  # it had answered everything it received


def close_wait_forever(cv: Conv) -> None:
    cv.handshake()
    cv.c(FIN)
    cv.s(ACK)
    cv.s(0, 10, dt=20)  # still talking 20 s later, never closing: half-close traffic
    cv.c(ACK)


def fin_wait_2_expiry_then_write(cv: Conv) -> None:
    cv.handshake()
    cv.c(FIN)
    cv.s(ACK)
    cv.s(0, 10, dt=5)  # after the client's 3 s FIN_WAIT_2 ran out
    cv.c(RST, seq=cv.client.snd_nxt)


def final_ack_lost(cv: Conv) -> None:
    cv.handshake()
    cv.c(FIN)
    cv.s(ACK)
    cv.s(FIN)
    cv.c(ACK, lost="after")
    cv.s(FIN, seq=cv.server.snd_nxt - 1, dt=0.3)
    cv.c(ACK, lost="after", dt=0.0001)
    cv.s(FIN, seq=cv.server.snd_nxt - 1, dt=0.6)


def crossing_fins(cv: Conv) -> None:
    cv.handshake()
    c_fin, s_fin = cv.client.snd_nxt, cv.server.snd_nxt
    cv.c(FIN, seq=c_fin, ack=s_fin)
    cv.s(FIN, seq=s_fin, ack=c_fin)
    cv.c(ACK, seq=c_fin + 1, ack=s_fin + 1)
    cv.s(ACK, seq=s_fin + 1, ack=c_fin + 1)


def keepalive(cv: Conv) -> None:
    cv.handshake()
    for _ in range(3):
        cv.c(ACK, seq=cv.client.snd_nxt - 1, dt=1)
        cv.s(ACK)


def half_open(cv: Conv) -> None:
    cv.handshake()
    cv.c(0, 100, lost="after")
    for gap in (0.2, 0.4, 0.8):
        cv.c(0, 100, seq=cv.client.snd_nxt - 100, dt=gap, lost="after")


def mid_stream(cv: Conv) -> None:
    cv.client.snd_nxt += 1
    cv.server.snd_nxt += 1
    cv.client.rcv_nxt = cv.server.snd_nxt
    cv.server.rcv_nxt = cv.client.snd_nxt
    cv.s(0, 100)
    cv.c(ACK)


# Shapes met in the third-party corpus (see test_corpus.CORPUS_ANOMALIES) where an earlier
# rule raised a false alarm.

def lone_syn(cv: Conv) -> None:  # the capture ends (or misses the answer) after one SYN
    cv.c(SYN)


def lone_synack(cv: Conv) -> None:
    cv.c(SYN)
    cv.s(SYN | ACK)
    cv.wait(2)
    cv.c(0, 10, lost="before")  # time passes; the ACK is simply not captured


def fin_probes_to_nobody(cv: Conv) -> None:  # nmap's FIN probes: no peer ever answers
    cv.client.snd_nxt += 1
    for _ in range(3):
        cv.c(FIN, seq=cv.client.snd_nxt - 1 if _ else None, ack=12345, dt=0.2)


def captured_twice(cv: Conv) -> None:  # a SPAN port duplicating every packet
    cv.handshake()
    cv.s(0, 14)
    cv.c(ACK)
    fin = cv.c(FIN)
    cv.segments.append(fin._replace(frame=fin.frame + 1, ts_ns=fin.ts_ns + 1000))
    cv.frame += 1
    cv.s(RST, seq=cv.server.snd_nxt, ack=0)  # a bare RST: it had forgotten the connection


def fin_behind_a_hole(cv: Conv) -> None:  # LAST_ACK's FIN resent with the data lost before it
    cv.handshake()
    cv.s(FIN)
    cv.c(ACK)
    cv.c(0, 1000, lost="after")
    cv.c(FIN, 200)
    cv.s(ACK, dt=0.0001)  # duplicate ACK: still waiting for the first 1000 bytes
    cv.s(ACK, dt=0.05)
    cv.c(0, 1000, seq=cv.client.snd_nxt - 1201, dt=0.3)
    cv.s(ACK, ack=cv.client.snd_nxt - 201, dt=0.001)
    cv.c(FIN, 200, seq=cv.client.snd_nxt - 201, dt=0.01)
    cv.s(ACK)


def retransmits_while_peer_answers(cv: Conv) -> None:  # the server answers, slowly
    cv.handshake()
    cv.c(0, 100, lost="after")
    cv.c(0, 100, seq=cv.client.snd_nxt - 100, dt=0.4, lost="after")
    cv.s(ACK, ack=cv.server.rcv_nxt, dt=0.3)  # e.g. an old ACK, or a retransmitted SYN-ACK
    cv.c(ACK, dt=0.001)  # the client answers it: it hears its peer
    cv.c(0, 100, seq=cv.client.snd_nxt - 100, dt=0.4, lost="after")
    cv.c(0, 100, seq=cv.client.snd_nxt - 100, dt=0.8)
    cv.s(ACK)


CASES: dict[str, tuple[Callable[[Conv], None], set[tuple[int, str, str]]]] = {
    "lone_syn": (lone_syn, set()),
    "lone_synack": (lone_synack, set()),
    "fin_probes_to_nobody": (fin_probes_to_nobody, {(0, "client", "mid_stream")}),
    "captured_twice": (captured_twice, set()),
    "fin_behind_a_hole": (fin_behind_a_hole, {(0, "server", "half_close")}),
    "retransmits_while_peer_answers": (retransmits_while_peer_answers, set()),
    "clean_close": (clean_close, set()),
    "refused": (refused, {(0, "server", "refused")}),
    "syn_unanswered": (syn_unanswered, {(0, "client", "syn_unanswered")}),
    "handshake_incomplete": (handshake_incomplete, {(0, "server", "handshake_incomplete")}),
    "unread_rst": (unread_rst, {(0, "client", "abortive_close")}),
    "unread_rst_zero_window": (unread_rst_zero_window,
                               {(0, "client", "rst_on_close_unread_data")}),
    "keepalive_death": (keepalive_death, {(0, "client", "half_open"),
                                          (0, "client", "keepalive")}),
    "final_ack_late": (final_ack_late, {(0, "server", "final_ack_delayed")}),
    "abortive": (abortive, {(0, "server", "abortive_close")}),
    "close_wait": (close_wait_forever, {(0, "server", "lingering_close_wait"),
                                        (0, "client", "half_close")}),
    "fin_wait_2": (fin_wait_2_expiry_then_write, {(0, "client", "fin_wait_2_timeout"),
                                                  (0, "client", "write_after_close"),
                                                  (0, "server", "lingering_close_wait")}),
    "final_ack_lost": (final_ack_lost, {(0, "server", "missing_final_ack")}),
    "crossing_fins": (crossing_fins, {(0, "client", "simultaneous_close"),
                                      (0, "server", "simultaneous_close")}),
    "keepalive": (keepalive, {(0, "client", "keepalive")}),
    "half_open": (half_open, {(0, "client", "half_open")}),
    "mid_stream": (mid_stream, {(0, "client", "mid_stream")}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_exact_anomalies(name: str) -> None:
    script, expected = CASES[name]
    cv = Conv()
    script(cv)
    found = detect(cv.segments, fin_wait_2=3, close_wait_linger=2)
    assert kinds(found) == expected
    for a in found:
        assert a.detail and a.ts_ns > 0
        assert a.frame is None or 1 <= a.frame <= len(cv.segments)


#: (case, kind) -> (severity, confidence, words the sentence must hold)
HOW_SURE: dict[tuple[str, str], tuple[str, str, tuple[str, ...]]] = {
    # the wire cannot tell unread data from SO_LINGER 0: both causes named, possible
    ("unread_rst", "abortive_close"): ("warning", "possible", ("unread", "SO_LINGER 0")),
    ("abortive", "abortive_close"): ("warning", "likely", ("SO_LINGER 0",)),
    ("unread_rst_zero_window", "rst_on_close_unread_data"): (
        "warning", "likely", ("zero", "unread")),
    # the kernel's give-up is a dead peer, not the application's close
    ("keepalive_death", "half_open"): ("error", "likely", ("keep-alive", "gave up")),
    ("keepalive_death", "keepalive"): ("info", "certain", ()),
    ("final_ack_late", "final_ack_delayed"): ("info", "certain", ("acknowledged",)),
    ("final_ack_lost", "missing_final_ack"): ("warning", "certain", ("never acknowledged",)),
}


@pytest.mark.parametrize(("name", "kind"), list(HOW_SURE))
def test_severity_and_confidence(name: str, kind: str) -> None:
    cv = Conv()
    CASES[name][0](cv)
    [a] = [a for a in detect(cv.segments, fin_wait_2=3, close_wait_linger=2)
           if a.kind == kind]
    severity, confidence, words = HOW_SURE[(name, kind)]
    assert (a.severity, a.confidence) == (severity, confidence), a.detail
    for word in words:
        assert word in a.detail, (word, a.detail)


def test_lingering_close_wait_sentence_names_side_time_and_duration() -> None:
    cv = Conv()
    close_wait_forever(cv)
    [a] = [a for a in detect(cv.segments, close_wait_linger=2)
           if a.kind == "lingering_close_wait"]
    assert a.detail.startswith("server 10.0.0.2:80 received FIN at ")
    assert "until the end of the capture" in a.detail and "still open then" in a.detail
    assert "not calling close()" in a.detail
    assert a.frame == 4  # the client's FIN


def test_port_reuse_and_time_wait_accumulation() -> None:
    segments = []
    base = Conv()
    for i in range(5):
        cv = Conv(t=base.t + i)
        cv.client.port = 40000 + i
        clean_close(cv)
        segments += cv.segments
    reuse = Conv(t=base.t + 10)  # port 40000 again while its TIME_WAIT lasts
    reuse.client.isn = reuse.client.snd_nxt = 5_000_000
    reuse.handshake()
    segments += reuse.segments
    segments = [s._replace(frame=i + 1) for i, s in enumerate(segments)]
    found = detect(segments, time_wait_threshold=5)
    assert kinds(found) == {(5, "client", "port_reuse"),
                            (4, "client", "time_wait_accumulation")}
    [acc] = [a for a in found if a.kind == "time_wait_accumulation"]
    assert "host 10.0.0.1 had 5 sockets in TIME_WAIT at once" in acc.detail


def test_a_packet_captured_twice_is_one_packet() -> None:
    cv = Conv()
    captured_twice(cv)
    r = run(cv.segments)
    names = list(r.oddities.name)
    assert "capture_duplicate" in names and "fin_rtx" not in names
    assert int(r.connections.iloc[0].packets) == len(cv.segments)  # still counted


def test_bounded_time_wait_sweep_finds_the_same_peak() -> None:
    """TIME_WAIT intervals arriving in end order, folded often; no interval arrives
    that starts more than the horizon before the newest end (the fold's premise)."""
    import random

    from tcplife.core.events import ConnectionRecord, Transition
    from tcplife.core.states import State
    from tcplife.detect import ConnView

    rng = random.Random(7)
    plain, bounded = TimeWaitAccumulation(3), BoundedTimeWaitAccumulation(3, horizon_ns=100)
    bounded._fold_at = {}  # fold as soon as possible

    class Tiny(dict):
        def get(self, key: object, default: object = None) -> int:
            return 8

    bounded._fold_at = Tiny()
    t = 0
    for conn_id in range(400):
        t += rng.randint(1, 6)
        start, end = t, t + rng.randint(1, 25)
        rec = ConnectionRecord(conn_id, 4, "h1", 1000 + conn_id, "h2", 80, start, end,
                               1, 2, 2, 1, 1, 0, 0, State.CLOSED, State.CLOSED,
                               State.CLOSED, State.LISTEN, "fin", False, False)
        trans = [Transition(2 * conn_id, conn_id, start, "client", "h1", 1, State.FIN_WAIT_2,
                            State.TIME_WAIT, "recv FIN", 1, True),
                 Transition(2 * conn_id + 1, conn_id, end, "client", "h1", 1,
                            State.TIME_WAIT, State.CLOSED, "timeout", None, True)]
        view = ConnView(rec, trans, [], end + 60, Options())
        list(plain.on_connection(view))
        list(bounded.on_connection(view))
    assert len(bounded.intervals["h1"]) < len(plain.intervals["h1"])
    want = [(a.conn_id, a.ts_ns, a.detail) for a in plain.finish(10**9)]
    got = [(a.conn_id, a.ts_ns, a.detail) for a in bounded.finish(10**9)]
    assert got == want and want


def _reference_peak(spans: list[tuple]) -> tuple[int, tuple | None]:
    """The sweep over tuples that `TimeWaitAccumulation` made before its columns."""
    edges = sorted([(s[0], 1, s) for s in spans] + [(s[1], -1, s) for s in spans])
    count = peak = 0
    at = None
    for _ts, delta, span in edges:
        count += delta
        if delta > 0 and count > peak:
            peak, at = count, span
    return peak, at


@pytest.mark.parametrize("seed", range(40))
def test_time_wait_sweep_equals_the_tuple_sweep(seed: int) -> None:
    """The columnar sweep finds the peak count and the interval the tuple sweep finds,
    ties included (equal instants, an end and a start at the same time, frameless)."""
    import random

    from tcplife.detect.spans import Spans, sweep

    rng = random.Random(seed)
    spans, col = [], Spans()
    for conn_id in range(rng.randint(1, 60)):
        start = rng.randint(0, 30)
        span = (start, start + rng.randint(0, 12), conn_id, rng.choice(("client", "server")),
                rng.choice((None, rng.randint(1, 99))))
        spans.append(span)
        col.append(span)
    peak, at = _reference_peak(spans)
    got_peak, got_at, active = sweep(col)
    assert got_peak == peak
    assert (col.span(int(got_at[0])) if len(got_at) else None) == at
    if at is not None:  # every interval active at that edge, and no other
        assert len(active) == peak
        assert all(col.span(int(i))[0] <= at[0] for i in active)


def test_a_client_at_100_connections_a_second_fills_a_small_port_range() -> None:
    """Through the tracker: 200 client-first closes towards 10.0.0.2:80 from ports
    60000-60199, one connection every 10 ms (each takes 9 segments 10 ms apart: first
    packet at 10 ms after its start, TIME_WAIT at its server's FIN, 80 ms later), with
    ip_local_port_range 60000-60199 (200 ports, 25 %: 50). The capture runs from the first
    packet (0.01 s) to the last (1.99 + 0.09 = 2.08 s): 2.07 s, shorter than the 60 s of
    TIME_WAIT, so the rate is 200 / 2.07 s = 96.6/s, projecting 96.6 x 60 = 5,797. All 200
    are in TIME_WAIT at the end (the peak, reached by the last, conn 199): that is the
    whole range, an error, certain; no count threshold needed (1000 by default)."""
    segments = []
    base = Conv()
    for i in range(200):
        cv = Conv(t=base.t + i * 0.01)
        cv.client.port = 60000 + i
        clean_close(cv)
        segments += cv.segments
    segments.sort(key=lambda s: s.ts_ns)
    segments = [s._replace(frame=i + 1) for i, s in enumerate(segments)]
    found = detect(segments, port_range_low=60000, port_range_high=60199)
    assert kinds(found) == {(199, "client", "time_wait_accumulation")}
    [row] = found
    assert (row.severity, row.confidence) == ("error", "certain")
    assert row.frame == 199 * 9 + 8  # conn 199's 8th segment (the server's FIN), the last
    for text in ("had 200 sockets in TIME_WAIT at once towards 10.0.0.2:80",
                 "200 new ones in the capture's 2.1 s (96.6/s)", "would hold 5,797 at once",
                 "the limit is 200 (ephemeral ports 60000-60199"):
        assert text in row.detail, row.detail
    # the default range (28,232; 25 %: 7,058) is far from 200 at once or 5,797 projected
    assert detect(segments) == []


# ------------------------------------------------------------ judged across a service
def _clients(*scripts: tuple[float, Callable[[Conv], None]]) -> list[Segment]:
    """Connections from one client host to one service (10.0.0.2:80), each from its own
    port and starting at its own offset (seconds), merged in time order."""
    from builder import Host

    segs: list[Segment] = []
    for i, (start, script) in enumerate(scripts):
        cv = Conv(client=Host("10.0.0.1", 40000 + i, 1000 + 7919 * i))
        cv.t += start
        script(cv)
        segs += cv.segments
    segs.sort(key=lambda s: s.ts_ns)
    return [s._replace(frame=i + 1) for i, s in enumerate(segs)]


def answered(cv: Conv) -> None:
    cv.handshake()


def dropped_syns(cv: Conv) -> None:  # three SYNs, 1 s then 2 s apart, never answered
    cv.c(SYN)
    cv.c(SYN, seq=cv.client.isn, dt=1.0)
    cv.c(SYN, seq=cv.client.isn, dt=2.0)


def one_syn_dropped(cv: Conv) -> None:  # the first SYN unanswered, its retry answered
    cv.c(SYN)
    cv.c(SYN, seq=cv.client.isn, dt=1.0)
    cv.s(SYN | ACK, dt=0.0001)
    cv.c(ACK)


#: (scripts, expected (conn_id, side, kind, severity, confidence))
ACROSS: dict[str, tuple[list[tuple[float, Callable[[Conv], None]]],
                        set[tuple[int, str, str, str, str]]]] = {
    # the service answered conn 0 0.3 s before conn 1's SYNs: its queue was full
    "overflow": ([(0.0, answered), (0.3, dropped_syns)],
                 {(1, "server", "listen_overflow", "error", "likely")}),
    # it answers another client in the middle of conn 1's retries
    "overflow_meanwhile": ([(0.0, dropped_syns), (1.5, answered)],
                           {(0, "server", "listen_overflow", "error", "likely")}),
    # answered long before (outside one retry interval, 2 s, of the SYNs): nothing of the
    # service answered while they were sent: a filter, or the host is down
    "filtered": ([(0.0, answered), (10.0, dropped_syns)],
                 {(1, "client", "syn_unanswered", "error", "certain")}),
    "alone": ([(0.0, dropped_syns)], {(0, "client", "syn_unanswered", "error", "certain")}),
    # one SYN lost and its retry answered while the service answered others: possible
    "one_lost": ([(0.0, answered), (0.2, one_syn_dropped)],
                 {(1, "server", "listen_overflow", "warning", "possible")}),
    # the same alone: one lost packet, nothing to say
    "one_lost_alone": ([(0.0, one_syn_dropped)], set()),
}


@pytest.mark.parametrize("name", list(ACROSS))
def test_judged_across_the_service(name: str) -> None:
    scripts, expected = ACROSS[name]
    found = detect(_clients(*scripts), syn_sent=7)
    assert {(a.conn_id, a.side, a.kind, a.severity, a.confidence) for a in found} == expected


def test_silent_server_is_closed_not_unknown() -> None:
    """The server never answered: it holds no socket for the SYNs (not UNKNOWN)."""
    r = run(_clients((0.0, dropped_syns)), syn_sent=7)
    assert r.connections.iloc[0].server_state == "CLOSED"
    assert r.connections.iloc[0].server_initial_state == "CLOSED"


def test_unanswered_port_on_a_host_that_answers_elsewhere_is_filtered() -> None:
    """Nothing answers on port 80, but the host answers on 443 meanwhile: it is up, so a
    filter drops the SYNs (not 'the host is down')."""
    from builder import Host

    segs: list[Segment] = []
    for start, port, script in ((0.0, 80, dropped_syns), (1.5, 443, answered)):
        cv = Conv(client=Host("10.0.0.1", 40000 + port, 1000 + port),
                  server=Host("10.0.0.2", port, 900_000))
        cv.t += start
        script(cv)
        segs += cv.segments
    segs.sort(key=lambda s: s.ts_ns)
    found = detect([s._replace(frame=i + 1) for i, s in enumerate(segs)], syn_sent=7)
    [row] = found
    assert (row.conn_id, row.kind) == (0, "syn_unanswered")
    assert "answered on other ports" in row.detail and "host is down" not in row.detail
