"""Table-level tests of the tracker: scripted conversations, no captures.

Each case says what a vantage point captured (segments lost before or after the capture
point) and asserts each side's path through the states, as Linux would take it.
"""

from __future__ import annotations

import pytest

from tcplife.core import machine, states
from tcplife.core.machine import TABLE, Ev, Stay
from tcplife.core.states import State

from builder import ACK, FIN, RST, SYN, Conv, run


def test_table_is_exhaustive() -> None:
    for state in State:
        for ev in Ev:
            cell = TABLE[(state, ev)]
            assert isinstance(cell, (State, Stay)), (state, ev)


@pytest.mark.parametrize(("module", "enum"), [(states, State), (machine, Ev)])
def test_module_names_are_the_members(module: object, enum: type) -> None:
    # The per-segment code uses these names instead of `State.X` (slow on Python 3.11).
    for member in enum:  # type: ignore[attr-defined]
        assert getattr(module, member.name) is member


def test_normal_close_client_first() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(0, 100)
    cv.s(0, 500)
    cv.c(ACK)
    cv.c(FIN)
    cv.s(ACK)
    t_half = cv.now() + 0.5
    cv.wait(1.0)
    cv.s(FIN)
    cv.c(ACK)
    r = run(cv.segments)
    assert r.path("client") == ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2",
                                "TIME_WAIT", "CLOSED"]
    assert r.path("server") == ["LISTEN", "SYN_RECEIVED", "ESTABLISHED", "CLOSE_WAIT",
                                "LAST_ACK", "CLOSED"]
    assert r.at(t_half) == {(0, "client"): "FIN_WAIT_2", (0, "server"): "CLOSE_WAIT"}
    assert r.at(cv.now() + 59) == {(0, "client"): "TIME_WAIT"}
    assert r.at(cv.now() + 61) == {}
    conn = r.connections.iloc[0]
    assert conn.close_kind == "fin"
    assert (conn.client_bytes, conn.server_bytes) == (100, 500)
    assert not conn.role_inferred and not conn.mid_stream


def test_server_closes_first() -> None:
    cv = Conv()
    cv.handshake()
    cv.s(FIN)
    cv.c(ACK)
    cv.c(FIN)
    cv.s(ACK)
    r = run(cv.segments)
    assert r.path("server")[-4:] == ["FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT", "CLOSED"]
    assert r.path("client")[-3:] == ["CLOSE_WAIT", "LAST_ACK", "CLOSED"]


def test_inferred_flags_follow_the_vantage() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(FIN)
    r = run(cv.segments)
    t = r.transitions
    fw1 = t[(t.side == "client") & (t.to_state == "FIN_WAIT_1")].iloc[0]
    cw = t[(t.side == "server") & (t.to_state == "CLOSE_WAIT")].iloc[0]
    assert not fw1.inferred and cw.inferred
    assert fw1.event == "send FIN" and cw.event == "recv FIN"
    assert fw1.frame == cw.frame == 4


def test_fin_ack_is_needed_to_leave_fin_wait_1() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(FIN)
    cv.s(ACK, ack=cv.client.snd_nxt - 1)  # acknowledges data before the FIN only
    r = run(cv.segments)
    assert r.final("client") == "FIN_WAIT_1"


def test_refused() -> None:
    cv = Conv()
    cv.c(SYN)
    cv.s(RST | ACK, seq=0, ack=cv.client.isn + 1)
    r = run(cv.segments)
    assert r.path("client") == ["CLOSED", "SYN_SENT", "CLOSED"]
    assert r.path("server") == ["CLOSED"]
    assert r.connections.iloc[0].close_kind == "refused"


def test_rst_that_does_not_ack_the_syn_is_ignored_in_syn_sent() -> None:
    cv = Conv()
    cv.c(SYN)
    cv.s(RST | ACK, seq=0, ack=12345)
    r = run(cv.segments)
    assert r.path("client") == ["CLOSED", "SYN_SENT", "CLOSED"]
    assert r.transitions.iloc[-1].event == "timeout"
    assert "rst_ignored" in set(r.oddities.name)


def test_syn_unanswered_times_out_only_when_time_has_passed() -> None:
    cv = Conv()
    cv.c(SYN)
    cv.c(SYN, seq=cv.client.isn, dt=1.0)
    cv.c(SYN, seq=cv.client.isn, dt=2.0)
    r = run(cv.segments)
    assert r.connections.iloc[0].close_kind == "unanswered"
    start = cv.segments[0].ts_ns / 1e9
    # The server never answered: whether the SYNs reached it or not (a full accept queue,
    # a filter, a host that is down), it holds no socket for them: CLOSED, not listed.
    assert r.at(start + 126) == {(0, "client"): "SYN_SENT"}
    assert r.connections.iloc[0].server_state == "CLOSED"
    assert r.path("client") == ["CLOSED", "SYN_SENT", "CLOSED"]
    t = r.transitions
    timeout = t[t.event == "timeout"].iloc[0]
    assert timeout.ts == pytest.approx(start + 127)
    assert timeout.inferred and timeout.frame is pd_na()


def pd_na() -> object:
    import pandas as pd

    return pd.NA


def test_retransmitted_syn_and_fin_cause_one_transition() -> None:
    cv = Conv()
    cv.c(SYN)
    cv.c(SYN, seq=cv.client.isn, dt=1)
    cv.s(SYN | ACK)
    cv.s(SYN | ACK, seq=cv.server.isn)
    cv.c(ACK)
    cv.c(FIN, lost="before")
    cv.client.snd_nxt -= 1
    cv.c(FIN)
    cv.c(FIN, seq=cv.client.snd_nxt - 1)
    r = run(cv.segments)
    assert r.path("client") == ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1"]
    assert r.path("server") == ["LISTEN", "SYN_RECEIVED", "ESTABLISHED", "CLOSE_WAIT"]


@pytest.mark.parametrize("vantage", ["client", "server"])
def test_final_ack_lost(vantage: str) -> None:
    """The client's last ACK is dropped between the hosts: the server stays in LAST_ACK
    retransmitting its FIN; the client sits in TIME_WAIT re-acknowledging each one."""
    lost = "after" if vantage == "client" else "before"
    cv = Conv()
    cv.handshake()
    cv.c(FIN)
    cv.s(ACK)
    cv.s(FIN)
    cv.c(ACK, lost=lost)
    interval = 0.2
    checkpoints = []
    for _ in range(4):
        checkpoints.append(cv.now() + interval / 2)
        cv.s(FIN, seq=cv.server.snd_nxt - 1, dt=interval)
        cv.c(ACK, lost=lost, dt=0.0001)
        interval *= 2
    r = run(cv.segments)
    for checkpoint in checkpoints:
        assert r.at(checkpoint) == {(0, "client"): "TIME_WAIT", (0, "server"): "LAST_ACK"}
    if vantage == "server":
        assert r.final("server") == "LAST_ACK"
    retracted = r.oddities[r.oddities.name == "retracted"]
    assert len(retracted) == (4 if vantage == "client" else 0)


def test_final_ack_lost_once_then_delivered() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(FIN)
    cv.s(ACK)
    cv.s(FIN)
    cv.c(ACK, lost="after")
    cv.s(FIN, seq=cv.server.snd_nxt - 1, dt=0.2)
    cv.c(ACK)
    r = run(cv.segments)
    assert r.final("server") == "CLOSED"
    t = r.transitions
    closed = t[(t.side == "server") & (t.to_state == "CLOSED")]
    assert len(closed) == 1 and closed.iloc[0].frame == len(cv.segments)


@pytest.mark.parametrize("vantage", ["client", "server"])
def test_handshake_ack_lost(vantage: str) -> None:
    lost = "after" if vantage == "client" else "before"
    cv = Conv()
    cv.c(SYN)
    cv.s(SYN | ACK)
    cv.c(ACK, lost=lost)
    checkpoints = [cv.now() + 0.5]
    cv.s(SYN | ACK, seq=cv.server.isn, dt=1.0)
    cv.c(ACK, lost=lost, dt=0.0001)
    checkpoints.append(cv.now() + 1.0)
    cv.s(SYN | ACK, seq=cv.server.isn, dt=2.0)
    cv.c(ACK, lost=lost, dt=0.0001)
    r = run(cv.segments)
    for checkpoint in checkpoints:
        assert r.at(checkpoint) == {(0, "client"): "ESTABLISHED", (0, "server"): "SYN_RECEIVED"}


def test_fin_retransmission_crossing_the_ack_does_not_undo_it() -> None:
    """The peer's FIN+ACK and this side's FIN retransmission cross on the wire (kernel lab,
    simultaneous_close): the ACK was delivered after the retransmission left."""
    cv = Conv()
    cv.handshake()
    c_fin, s_fin = cv.client.snd_nxt, cv.server.snd_nxt
    cv.c(FIN, lost="after")  # dropped on the way
    cv.s(FIN, lost="before")  # dropped on the way
    cv.c(FIN, seq=c_fin, ack=s_fin, dt=0.2)  # now the FINs pass, and cross:
    cv.s(FIN, seq=s_fin, ack=c_fin, dt=0.00005)  # sent before the client's arrived
    cv.c(ACK, seq=c_fin + 1, ack=s_fin + 1, lost="after", dt=0.00001)  # pure ACKs dropped
    cv.c(FIN, seq=c_fin, ack=s_fin + 1, dt=1.6)  # carries the ACK of the server's FIN
    cv.s(FIN, seq=s_fin, ack=c_fin + 1, dt=0.00006)  # crossed it
    r = run(cv.segments)
    end = cv.now() + 0.5
    assert r.at(end) == {(0, "client"): "TIME_WAIT", (0, "server"): "TIME_WAIT"}
    for side in ("client", "server"):
        assert r.path(side)[2:] == ["ESTABLISHED", "FIN_WAIT_1", "CLOSING", "TIME_WAIT",
                                    "CLOSED"], side


@pytest.mark.parametrize("vantage", ["client", "server", "middle"])
def test_simultaneous_close_fins_cross(vantage: str) -> None:
    """Both FINs in flight at once: each side goes FIN_WAIT_1 -> CLOSING -> TIME_WAIT."""
    cv = Conv()
    cv.handshake()
    c_fin_end = cv.client.snd_nxt + 1
    s_fin_end = cv.server.snd_nxt + 1
    c_ack = cv.client.rcv_nxt
    s_ack = cv.server.rcv_nxt
    # Order of capture depends on where the capture point is.
    c_fin = dict(seq=c_fin_end - 1, ack=c_ack)
    s_fin = dict(seq=s_fin_end - 1, ack=s_ack)
    order = {"client": ["cF", "sF", "cA", "sA"], "server": ["sF", "cF", "sA", "cA"],
             "middle": ["cF", "sF", "sA", "cA"]}[vantage]
    for step in order:
        if step == "cF":
            cv.c(FIN, **c_fin)
        elif step == "sF":
            cv.s(FIN, **s_fin)
        elif step == "cA":
            cv.c(ACK, seq=c_fin_end, ack=s_fin_end)
        else:
            cv.s(ACK, seq=s_fin_end, ack=c_fin_end)
    r = run(cv.segments)
    for side in ("client", "server"):
        assert r.path(side)[-5:] == ["ESTABLISHED", "FIN_WAIT_1", "CLOSING", "TIME_WAIT",
                                     "CLOSED"], side


def test_fin_lost_after_capture_is_retracted_by_the_receivers_ack() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(FIN, lost="after")
    cv.s(0, 10)  # server still sending: its ACK field does not cover the FIN
    mid = cv.now() + 0.05
    cv.c(FIN, seq=cv.client.snd_nxt - 1, dt=0.2)
    cv.s(ACK)
    r = run(cv.segments)
    assert r.at(mid)[(0, "server")] == "ESTABLISHED"
    assert r.final("server") == "CLOSE_WAIT"
    assert r.path("server") == ["LISTEN", "SYN_RECEIVED", "ESTABLISHED", "CLOSE_WAIT"]


def test_ack_of_fin_captured_before_the_fin() -> None:
    cv = Conv()
    cv.handshake()
    fin_seq = cv.client.snd_nxt
    cv.s(ACK, ack=fin_seq + 1)
    cv.c(FIN, seq=fin_seq)
    r = run(cv.segments)
    assert r.at(cv.now() + 1) == {(0, "client"): "FIN_WAIT_2", (0, "server"): "CLOSE_WAIT"}


def test_mid_stream_start() -> None:
    cv = Conv(client=Conv().client, server=Conv().server)
    cv.client.rcv_nxt = cv.server.isn + 1
    cv.server.rcv_nxt = cv.client.isn + 1
    cv.client.snd_nxt += 1
    cv.server.snd_nxt += 1
    cv.s(0, 100)
    cv.c(ACK)
    r = run(cv.segments)
    conn = r.connections.iloc[0]
    assert conn.mid_stream and conn.role_inferred
    assert (conn.server_port, conn.client_port) == (80, 40000)
    assert r.path("client") == ["UNKNOWN", "ESTABLISHED"]
    assert r.path("server") == ["UNKNOWN", "ESTABLISHED"]
    assert r.transitions.inferred.all()


def test_port_reuse_in_time_wait_starts_a_new_instance() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(FIN)
    cv.s(FIN)
    cv.c(ACK)
    cv.wait(5)
    cv.client.isn = cv.client.snd_nxt + 100_000
    cv.client.snd_nxt = cv.client.isn
    cv.server.isn = 77
    cv.server.snd_nxt = 77
    cv.handshake()
    r = run(cv.segments)
    assert list(r.connections.conn_id) == [0, 1]
    assert r.final("client", 0) == "CLOSED"  # its TIME_WAIT was taken over
    assert r.path("client", 1) == ["CLOSED", "SYN_SENT", "ESTABLISHED"]
    assert "port_reuse" in set(r.oddities.name)


def test_time_wait_expires_after_option() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(FIN)
    cv.s(FIN)
    cv.c(ACK)
    tw_start = cv.now()
    r = run(cv.segments, time_wait=5)
    assert r.path("client")[-2:] == ["TIME_WAIT", "CLOSED"]
    t = r.transitions
    assert t[t.event == "timeout"].iloc[0].ts == pytest.approx(tw_start + 5)


def test_orphaned_fin_wait_2_times_out_but_half_close_does_not() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(FIN)
    cv.s(ACK)
    r = run(cv.segments, fin_wait_2=3)
    assert r.path("client")[-2:] == ["FIN_WAIT_2", "CLOSED"]
    # shutdown(SHUT_WR): the client acknowledges data sent after its FIN.
    cv.s(0, 100)
    cv.c(ACK)
    r = run(cv.segments, fin_wait_2=3)
    assert r.final("client") == "FIN_WAIT_2"


def test_rst_out_of_window_is_ignored_and_exact_rst_honoured() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(RST, seq=cv.client.snd_nxt + 10_000_000)
    r = run(cv.segments)
    assert r.final("server") == "ESTABLISHED"
    assert r.final("client") == "CLOSED"
    cv2 = Conv()
    cv2.handshake()
    cv2.c(0, 50)
    cv2.c(RST | ACK, ack=cv2.client.rcv_nxt)
    r = run(cv2.segments)
    assert r.final("server") == "CLOSED"
    assert r.connections.iloc[0].close_kind == "rst"


def test_sequence_wraparound() -> None:
    cv = Conv()
    cv.client.isn = cv.client.snd_nxt = 0xFFFFFFF0
    cv.handshake()
    cv.c(0, 100)  # crosses 2**32
    cv.s(ACK)
    cv.c(FIN)
    cv.s(FIN)
    cv.c(ACK)
    r = run(cv.segments)
    assert r.path("client")[-4:] == ["FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT", "CLOSED"]
    assert r.at(cv.now() + 1) == {(0, "client"): "TIME_WAIT"}
    assert r.connections.iloc[0].client_bytes == 100


def test_duplicated_segments_are_harmless() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(FIN)
    segs = []
    for seg in cv.segments:
        segs += [seg, seg]
    r = run(segs)
    assert r.path("client") == ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1"]
    assert r.path("server") == ["LISTEN", "SYN_RECEIVED", "ESTABLISHED", "CLOSE_WAIT"]


def test_simultaneous_open() -> None:
    cv = Conv()
    cv.c(SYN)
    cv.s(SYN, ack=0)
    cv.c(SYN | ACK, seq=cv.client.isn, ack=cv.server.isn + 1)
    cv.s(SYN | ACK, seq=cv.server.isn, ack=cv.client.isn + 1)
    r = run(cv.segments)
    assert len(r.connections) == 1
    assert r.final("client") == "ESTABLISHED" and r.final("server") == "ESTABLISHED"
    assert "SYN_RECEIVED" in r.path("client")


def test_port_reuse_while_the_old_server_socket_is_in_close_wait() -> None:
    """The CLOSE_WAIT leak meets port reuse (kernel lab: port_reuse_close_wait): the old
    socket answers the new SYN with a challenge ACK, the new client resets it, and the
    retransmitted SYN then opens the new connection."""
    cv = Conv()
    cv.handshake()
    cv.c(FIN)
    cv.s(ACK)
    cv.wait(5)  # the client's orphaned FIN_WAIT_2 expires (fin_wait_2=2 below)
    old_client_next, old_server_next = cv.client.snd_nxt, cv.server.snd_nxt
    new_isn = 7_000_000
    cv.c(SYN, seq=new_isn, ack=0)
    cv.s(ACK, seq=old_server_next, ack=old_client_next)  # challenge ACK from the old socket
    cv.c(RST, seq=old_client_next)
    cv.c(SYN, seq=new_isn, ack=0, dt=1.0)
    cv.server.rcv_nxt = new_isn + 1
    cv.s(SYN | ACK, seq=50_000, ack=new_isn + 1)
    cv.c(ACK, seq=new_isn + 1, ack=50_001)
    r = run(cv.segments, fin_wait_2=2)
    assert list(r.connections.conn_id) == [0, 1]
    assert r.path("server", 0)[-2:] == ["CLOSE_WAIT", "CLOSED"]
    t = r.transitions
    reset = t[(t.conn_id == 0) & (t.side == "server")].iloc[-1]
    assert (reset.event, reset.frame) == ("recv RST", 8)
    assert r.path("client", 1) == ["CLOSED", "SYN_SENT", "ESTABLISHED"]
    assert r.path("server", 1) == ["LISTEN", "SYN_RECEIVED", "ESTABLISHED"]
    assert r.connections.set_index("conn_id").loc[1].packets == 4  # SYN, SYN, SYN-ACK, ACK


@pytest.mark.parametrize(("shape", "offset", "tw_end"), [
    # the new ISN is after what the TIME_WAIT expects: Linux takes the SYN at once
    ("taken", +1_000_000, (8, "recv SYN (new incarnation)")),
    # before it, without timestamps: the old socket's ACK, the client's RST kills it
    # (kernel: SYN, ACK, RST, SYN, SYN-ACK with net.ipv4.tcp_timestamps=0 on the client)
    ("refused", -1_000_000, (10, "recv RST")),
    # before it, with a newer TCP timestamp: Linux takes it; the SYN-ACK shows that
    ("taken on its timestamp", -1_000_000,
     (8, "recv SYN (new incarnation, taken: its SYN-ACK at frame 9)")),
])
def test_new_syn_meets_the_servers_time_wait(shape: str, offset: int,
                                             tw_end: tuple[int, str]) -> None:
    """The server closed first and holds TIME_WAIT; the client reuses the 4-tuple. What
    the TIME_WAIT does with the SYN depends on its sequence number (and timestamp); the
    capture shows it, and tcplife must end the old socket where the kernel did."""
    cv = Conv()
    cv.handshake()
    cv.s(FIN)
    cv.c(ACK)
    cv.c(FIN)
    cv.s(ACK)  # frame 7: the server is in TIME_WAIT
    cv.wait(1)
    old_client_next, old_server_next = cv.client.snd_nxt, cv.server.snd_nxt
    new_isn = (old_client_next + offset) % 2**32
    cv.c(SYN, seq=new_isn, ack=0)  # frame 8
    if shape == "refused":
        cv.s(ACK, seq=old_server_next, ack=old_client_next)
        cv.c(RST, seq=old_client_next)
        cv.c(SYN, seq=new_isn, ack=0)
    cv.server.rcv_nxt = new_isn + 1
    cv.s(SYN | ACK, seq=50_000, ack=new_isn + 1)
    cv.c(ACK, seq=new_isn + 1, ack=50_001)
    r = run(cv.segments)
    assert list(r.connections.conn_id) == [0, 1]
    t = r.transitions
    old_server = t[(t.conn_id == 0) & (t.side == "server")]
    assert list(old_server.to_state)[-2:] == ["TIME_WAIT", "CLOSED"]
    assert (old_server.iloc[-1].frame, old_server.iloc[-1].event) == tw_end
    assert r.path("client", 1) == ["CLOSED", "SYN_SENT", "ESTABLISHED"]
    assert r.path("server", 1) == ["LISTEN", "SYN_RECEIVED", "ESTABLISHED"]
    conns = r.connections.set_index("conn_id")
    assert conns.loc[1].packets == (4 if shape == "refused" else 3)
    assert list(conns.close_kind) == ["fin", "open"]
    assert conns.loc[1].client_bytes == 0


# Shapes from the third-party corpus (tests/test_corpus.py names the captures).

def test_forged_rst_before_the_synack_does_not_make_the_server_refuse() -> None:
    cv = Conv()  # zeek rst-inject-rae: an RST acknowledging the ISN itself, then a SYN-ACK
    cv.c(SYN)
    cv.s(RST | ACK, seq=0, ack=cv.client.isn)
    cv.s(SYN | ACK, dt=1)
    cv.c(ACK)
    r = run(cv.segments)
    assert r.path("server") == ["LISTEN", "SYN_RECEIVED", "ESTABLISHED"]
    assert r.connections.iloc[0].close_kind != "refused"
    assert {a.kind for a in r.anomalies} == set()


def test_synack_with_another_isn_the_client_takes_the_second() -> None:
    cv = Conv()  # suricata tcp-fastopen-10: two responders, the client ACKs the second
    cv.c(SYN)
    cv.s(SYN | ACK)
    first_isn = cv.server.isn
    cv.server.isn = cv.server.snd_nxt = 5_000_000
    cv.s(SYN | ACK, dt=0.5)
    cv.c(ACK)
    cv.s(0, 100)
    cv.c(ACK)
    cv.s(SYN | ACK, seq=first_isn, ack=cv.client.isn + 1, dt=0.5)  # the first one again
    r = run(cv.segments)
    assert r.path("server") == ["LISTEN", "SYN_RECEIVED", "ESTABLISHED"]
    assert r.final("server") == "ESTABLISHED"
    assert "synack_isn_changed" in set(r.oddities.name)


def test_rst_ack_not_covering_the_fin_shows_the_fin_was_not_received() -> None:
    cv = Conv()  # zeek ssh.pcap stream 4: the client's FIN and the server's RST cross
    cv.handshake()
    cv.c(0, 96)
    rcv = cv.server.rcv_nxt
    cv.c(FIN, dt=0.001)
    cv.s(RST | ACK, ack=rcv, dt=0.00003)
    r = run(cv.segments)
    assert r.path("server") == ["LISTEN", "SYN_RECEIVED", "ESTABLISHED", "CLOSED"]
    # the client's 96 bytes came after the server's last data: unread, or read and then
    # SO_LINGER 0: the wire cannot tell (no zero window), so both causes at "possible"
    assert {(a.side, a.kind, a.confidence) for a in r.anomalies} == {
        ("server", "abortive_close", "possible")}


def _many_closes(n: int) -> list:
    """``n`` connections on distinct ports, each opened and closed (the client first, so
    it sits in TIME_WAIT), 0.05 s apart: every timer outlives the run."""
    from tcplife.core.segment import Segment

    segs: list[Segment] = []
    for i in range(n):
        conv = Conv()
        conv.client.port += i
        conv.t += 0.05 * i
        conv.handshake()
        conv.c(FIN)
        conv.s(ACK)
        conv.s(FIN)
        conv.c(ACK)
        segs += conv.segments
    segs.sort(key=lambda s: s.ts_ns)
    return [s._replace(frame=i + 1) for i, s in enumerate(segs)]


def test_timer_compaction_changes_no_event_and_bounds_the_heap() -> None:
    """Stale timers (superseded by a state change) are dropped once the heap holds twice
    as many as survived the last compaction: same events, a heap bounded by the live
    timers, not by every timer ever armed."""
    from tcplife.core.timers import COMPACT_MIN, Timers
    from tcplife.core.tracker import Tracker

    segs = _many_closes(400)

    def events(tracker: Tracker) -> tuple[list[str], int]:
        out, peak = [], 0
        for seg in segs:
            out += [repr(e) for e in tracker.feed(seg)]
            peak = max(peak, len(tracker.timers))
        return out + [repr(e) for e in tracker.finish()], peak

    assert COMPACT_MIN == 4096
    plain, plain_peak = events(Tracker())  # 4096 entries before any compaction
    compacted, peak = events(Tracker(timers=Timers(compact_min=16)))
    assert compacted == plain and len(plain) > 400 * 8
    assert plain_peak > 1000  # every side's SYN_SENT / SYN_RECEIVED / FIN timers pile up
    # one live TIME_WAIT timer per connection; at most as many stale ones, plus the floor
    assert peak <= 2 * 400 + 16 + 1 < plain_peak


def test_finish_in_chunks_gives_the_same_events() -> None:
    """`finish_chunks` is `finish` cut into lists of about ``size`` events."""
    from tcplife.core.tracker import Tracker

    segs = _many_closes(300)
    whole, chunked = Tracker(), Tracker()
    for seg in segs:
        assert repr(whole.feed(seg)) == repr(chunked.feed(seg))
    want = [repr(e) for e in whole.finish()]
    chunks = list(chunked.finish_chunks(size=50))
    assert [repr(e) for c in chunks for e in c] == want and len(want) == 1 + 2 * 300
    assert len(chunks) > 10 and all(50 <= len(c) <= 60 for c in chunks[:-1])


def test_bare_rst_shows_the_handshake_never_completed() -> None:
    """A bare RST (no ACK flag) answers a segment for which the kernel has no socket
    (tcp_v4_send_reset); a socket that aborts sends RST-ACK. So the server, deduced
    ESTABLISHED from the client's ACK, never got it: its request socket gave up after
    its SYN-ACK retries (syn_received), and the RST came from no socket (kernel lab:
    handshake_ack_dropped, whose server capture shows exactly this path)."""
    cv = Conv()
    cv.c(SYN)
    cv.s(SYN | ACK)
    cv.c(ACK, lost="after")
    cv.s(SYN | ACK, seq=cv.server.isn, dt=1.0)
    cv.c(ACK, lost="after", dt=0.0001)
    cv.c(0, 100, dt=8.0, lost="after")
    cv.s(RST, seq=cv.client.rcv_nxt, ack=0, dt=0.0001)
    r = run(cv.segments, syn_received=7)
    assert r.path("server") == ["LISTEN", "SYN_RECEIVED", "CLOSED"]
    t = r.transitions
    gave_up = t[(t.side == "server") & (t.to_state == "CLOSED")].iloc[0]
    assert gave_up.event == "timeout"
    assert gave_up.ts == pytest.approx(cv.segments[1].ts_ns / 1e9 + 7)


def test_retransmissions_into_silence_end_the_side_by_timeout() -> None:
    """Linux gives up retransmitting data into silence after tcp_retries2 and drops the
    socket silently, no RST (tcp_write_timeout -> tcp_write_err; kernel lab
    peer_vanishes_mid_transfer): with retransmit=3, the client is CLOSED 3 s after its
    first retransmission; an answer from the peer in between (or new data) cancels it."""
    cv = Conv()
    cv.handshake()
    cv.c(0, 100, lost="after")
    first = cv.c(0, 100, seq=cv.client.snd_nxt - 100, dt=0.2, lost="after")
    for gap in (0.4, 0.8, 1.6):
        cv.c(0, 100, seq=cv.client.snd_nxt - 100, dt=gap, lost="after")
    r = run(cv.segments, retransmit=3)
    assert r.path("client") == ["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSED"]
    t = r.transitions
    gave_up = t[(t.side == "client") & (t.to_state == "CLOSED")].iloc[0]
    assert gave_up.event == "timeout" and gave_up.inferred
    assert gave_up.ts_ns == first.ts_ns + 3 * 10**9
    # the eventual state only: the capture ended before the kernel gave up
    assert r.connections.iloc[0].client_state == "ESTABLISHED"
    assert r.connections.iloc[0].client_eventual_state == "CLOSED"

    answered = Conv()
    answered.handshake()
    answered.c(0, 100, lost="after")
    answered.c(0, 100, seq=answered.client.snd_nxt - 100, dt=0.2)
    answered.s(ACK, dt=0.01)  # the peer speaks: not silence
    assert run(answered.segments, retransmit=3).path("client") == [
        "CLOSED", "SYN_SENT", "ESTABLISHED"]


# TCP timestamps (issue 18, item 10): Linux tcp_timewait_state_process takes a SYN at a
# TIME_WAIT socket (TCP_TW_SYN) if PAWS does not reject it and its sequence number is after
# tw_rcv_nxt or its TSval is newer than tw_ts_recent; tcp_paws_reject rejects a TSval older
# than tw_ts_recent. The client's last TSval before the SYN is its FIN's (frame 6).
@pytest.mark.parametrize(("isn_offset", "ts_offset", "refused", "tw_end"), [
    # newer TSval, lower sequence number: taken on the timestamp, at the SYN
    (-1_000_000, +500, False, (8, "recv SYN (new incarnation: newer timestamp)")),
    # newer TSval, higher sequence number: taken, on the sequence number as always
    (+1_000_000, +500, False, (8, "recv SYN (new incarnation)")),
    # as new a TSval, higher sequence number: not rejected by PAWS, taken on the sequence
    (+1_000_000, 0, False, (8, "recv SYN (new incarnation)")),
    # as new a TSval, lower sequence number: neither rule takes it
    (-1_000_000, 0, True, (10, "recv RST")),
    # older TSval, higher sequence number: PAWS rejects it (ACK of the old connection,
    # the client's RST kills the TIME_WAIT, then the SYN again)
    (+1_000_000, -500, True, (10, "recv RST")),
    # older TSval, lower sequence number: refused, as without timestamps
    (-1_000_000, -500, True, (10, "recv RST")),
])
def test_new_syn_meets_a_time_wait_with_timestamps(
        isn_offset: int, ts_offset: int, refused: bool, tw_end: tuple[int, str]) -> None:
    cv = Conv(timestamps=True, ts_base=123_456)
    cv.handshake()
    cv.s(FIN)
    cv.c(ACK)
    cv.c(FIN)  # frame 6: the client's newest TSval
    cv.s(ACK)  # frame 7: the server is in TIME_WAIT
    client_fin_tsval = cv.segments[5].tsval
    assert client_fin_tsval >= 0 and cv.segments[6].tsecr == client_fin_tsval
    cv.wait(1)
    old_client_next, old_server_next = cv.client.snd_nxt, cv.server.snd_nxt
    new_isn = (old_client_next + isn_offset) % 2**32
    cv.c(SYN, seq=new_isn, ack=0, tsval=client_fin_tsval + ts_offset, tsecr=0)  # frame 8
    syn_at = cv.now()
    if refused:
        cv.s(ACK, seq=old_server_next, ack=old_client_next)
        cv.c(RST, seq=old_client_next, tsval=-1, tsecr=-1)
        cv.c(SYN, seq=new_isn, ack=0, tsval=client_fin_tsval + ts_offset, tsecr=0)
    cv.server.rcv_nxt = new_isn + 1
    cv.s(SYN | ACK, seq=50_000, ack=new_isn + 1, dt=0.5)
    cv.c(ACK, seq=new_isn + 1, ack=50_001)
    r = run(cv.segments)
    t = r.transitions
    old_server = t[(t.conn_id == 0) & (t.side == "server")]
    assert list(old_server.to_state)[-2:] == ["TIME_WAIT", "CLOSED"]
    assert (old_server.iloc[-1].frame, old_server.iloc[-1].event) == tw_end
    assert r.path("server", 1) == ["LISTEN", "SYN_RECEIVED", "ESTABLISHED"]
    # between the SYN and its answer, the TIME_WAIT is gone only if taken at the SYN
    # (a side that is CLOSED is not listed)
    assert r.at(syn_at + 0.005).get((0, "server")) == ("TIME_WAIT" if refused else None)


def test_syn_taken_on_its_timestamp_without_an_answer() -> None:
    """The capture ends at the SYN: its newer TSval alone shows the TIME_WAIT took it
    (no SYN-ACK needed to tell); without timestamps the TIME_WAIT is still there."""
    finals = {}
    for timestamps in (True, False):
        cv = Conv(timestamps=timestamps)
        cv.handshake()
        cv.s(FIN)
        cv.c(ACK)
        cv.c(FIN)
        cv.s(ACK)
        cv.wait(1)
        cv.c(SYN, seq=(cv.client.snd_nxt - 1_000_000) % 2**32, ack=0)
        r = run(cv.segments)
        finals[timestamps] = r.final("server", 0)
    assert finals == {True: "CLOSED", False: "TIME_WAIT"}


@pytest.mark.parametrize("timestamps", [True, False])
def test_fins_crossing_in_the_same_microsecond_listed_the_other_way(timestamps: bool) -> None:
    """At the client's own capture, the server's FIN arrives in the microsecond the
    client sends its own, and the capture lists the arrival first. The client's FIN does
    not acknowledge the server's FIN and its TSecr predates the FIN's TSval: it was sent
    before the FIN arrived, which the client then had (CLOSING from then on, as the kernel
    goes FIN_WAIT_1 -> CLOSING on it). The client's ACK of the server's FIN is not
    captured; the server's ACK of the client's FIN comes 0.3 s later. Without timestamps
    the capture order is all there is: the receipt is retracted, and only the server's
    later ACK (sent after its FIN) shows it."""
    cv = Conv(timestamps=timestamps)
    cv.handshake()
    c_fin, s_fin = cv.client.snd_nxt, cv.server.snd_nxt
    c_ack, c_tsecr = cv.client.rcv_nxt, cv.client.ts_recent
    cv.s(FIN, seq=s_fin, dt=0.2)  # frame 4: arrives, captured first...
    cv.c(FIN, seq=c_fin, ack=c_ack, tsecr=c_tsecr if timestamps else None, dt=0)  # ...sent
    fins_at = cv.now()
    cv.c(ACK, seq=c_fin + 1, ack=s_fin + 1, lost="unseen", dt=0.00001)  # not captured
    cv.s(ACK, seq=s_fin + 1, ack=c_fin + 1, dt=0.3)  # frame 6
    r = run(cv.segments)
    assert r.path("client")[2:] == ["ESTABLISHED", "FIN_WAIT_1", "CLOSING", "TIME_WAIT",
                                    "CLOSED"]
    t = r.transitions
    closing = t[(t.side == "client") & (t.to_state == "CLOSING")].iloc[0]
    if timestamps:
        assert (closing.frame, closing.event) == (
            5, "recv FIN (after its own segment, by TSecr)")
    else:
        assert (closing.frame, closing.event) == (6, "recv FIN")
    assert r.at(fins_at + 0.1)[(0, "client")] == ("CLOSING" if timestamps else "FIN_WAIT_1")


def test_fin_after_unacknowledged_data_is_not_taken_as_crossing() -> None:
    """The client's segment misses the server's data before the FIN too (its ACK stands
    before the data; sv tcp-fastopen-10-syn-data-ignore: a client not taking in what
    arrives, whose TSecr lags by seconds): no crossing is presumed, the FIN counts as not
    received (the client closes with an RST from FIN_WAIT_1, never CLOSING; the server,
    which did get the client's FIN, went through CLOSING)."""
    cv = Conv(timestamps=True)
    cv.handshake()
    ack, tsecr = cv.client.rcv_nxt, cv.client.ts_recent
    cv.s(0, 24)
    cv.s(FIN, dt=0.00003)
    cv.c(FIN, ack=ack, tsecr=tsecr, dt=0.011)
    cv.c(RST, dt=0.0015)
    r = run(cv.segments)
    assert r.path("client")[2:] == ["ESTABLISHED", "FIN_WAIT_1", "CLOSED"]
    assert {(a.side, a.kind) for a in r.anomalies} == {("server", "simultaneous_close")}


@pytest.mark.parametrize("crossed", [True, False])
def test_fin_not_acknowledged_with_timestamps(crossed: bool) -> None:
    """The client's data segment does not acknowledge the server's FIN and echoes an older
    TSval. Sent in the instant the FIN arrived (captured 10 us after it): they crossed, and
    the FIN is taken as arriving just after (CLOSE_WAIT from that segment on). Sent 0.2 s
    after a FIN lost after the capture point (past the crossing window): the FIN was lost,
    the receipt is retracted and not re-applied, as without timestamps."""
    cv = Conv(timestamps=True)
    cv.handshake()
    ack, tsecr = cv.client.rcv_nxt, cv.client.ts_recent
    cv.s(FIN, lost=None if crossed else "after")
    cv.c(0, 10, ack=ack, tsecr=tsecr, dt=0.00001 if crossed else 0.2)
    mid = cv.now() + 0.001
    r = run(cv.segments)
    want = "CLOSE_WAIT" if crossed else "ESTABLISHED"
    assert r.at(mid)[(0, "client")] == want
    assert r.final("client") == want
