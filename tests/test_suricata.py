"""``suricata_state``: the one session state Suricata's stream engine would report.

Named from the server's point of view (the client's FIN: close_wait; the server's:
fin_wait1). Scripted conversations per transition, and the lab captures: every scenario
ends in the state its packets lead Suricata's machine to (see each comment).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import tcplife
from tcplife.peers.suricata import STATES, SuricataRecorder

from builder import ACK, FIN, RST, SYN, Conv, run

LAB = Path(__file__).resolve().parents[1] / "sample_pcaps"


def _state(cv: Conv) -> str:
    return str(run(cv.segments).connections.iloc[0].suricata_state)


def test_states_are_suricatas_names() -> None:
    assert STATES == ("none", "syn_sent", "syn_recv", "established", "fin_wait1",
                      "fin_wait2", "time_wait", "last_ack", "close_wait", "closing",
                      "closed")


def test_handshake_steps() -> None:
    cv = Conv()
    cv.c(SYN, ack=0)
    assert _state(cv) == "syn_sent"
    cv.s(SYN | ACK)
    assert _state(cv) == "syn_recv"
    cv.c(ACK)
    assert _state(cv) == "established"


def test_client_closes_first() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(FIN)
    assert _state(cv) == "close_wait"
    cv.s(ACK)
    assert _state(cv) == "close_wait"
    cv.s(FIN)
    assert _state(cv) == "last_ack"
    cv.c(ACK)
    assert _state(cv) == "closed"


def test_server_closes_first() -> None:
    cv = Conv()
    cv.handshake()
    cv.s(FIN)
    assert _state(cv) == "fin_wait1"
    cv.c(ACK)
    assert _state(cv) == "fin_wait2"
    cv.c(FIN)
    assert _state(cv) == "time_wait"
    cv.s(ACK)
    assert _state(cv) == "closed"


def test_server_fin_answered_by_fin_ack() -> None:
    cv = Conv()
    cv.handshake()
    cv.s(FIN)
    cv.c(FIN | ACK)
    assert _state(cv) == "time_wait"


def test_simultaneous_close_goes_through_closing() -> None:
    cv = Conv()
    cv.handshake()
    cv.s(FIN)
    cv.c(FIN, ack=cv.client.rcv_nxt - 1)  # crossing: does not acknowledge the server's FIN
    seg = cv.segments[-1]
    cv.segments[-1] = seg._replace(flags=FIN)  # a bare FIN (no ACK bit): closing
    assert _state(cv) == "closing"
    cv.s(ACK)
    assert _state(cv) == "time_wait"


def test_rst_closes_refused_and_established() -> None:
    cv = Conv()
    cv.c(SYN, ack=0)
    cv.s(RST | ACK, seq=0, ack=1001)
    assert _state(cv) == "closed"
    cv = Conv()
    cv.handshake()
    cv.c(RST, ack=0)
    assert _state(cv) == "closed"


def test_rst_in_syn_sent_must_acknowledge_the_syn() -> None:
    cv = Conv()
    cv.c(SYN, ack=0)
    cv.s(RST | ACK, seq=0, ack=5)  # not SYN + 1: dropped
    assert _state(cv) == "syn_sent"


def test_mid_stream_is_not_picked_up() -> None:
    cv = Conv()
    cv.handshake()
    cv.segments[:] = []
    cv.c(ACK, data=10)
    cv.s(ACK)
    assert _state(cv) == "none"


def test_recorder_ignores_packets_before_a_syn() -> None:
    r = SuricataRecorder()
    cv = Conv()
    cv.handshake()
    r.process(cv.segments[1], False)  # SYN-ACK first: not picked up (midstream off)
    assert r.state == "none"
    r.process(cv.segments[0], True)
    assert r.state == "syn_sent"


LAB_EXPECTED = {
    # SYN syn_sent, SYN-ACK syn_recv, ACK established; client FIN close_wait, server FIN
    # last_ack, client's last ACK closed. Server first: fin_wait1, fin_wait2 (the client's
    # ACK), time_wait (its FIN), closed (the server's last ACK). An RST: closed.
    **{name: ["closed"] for name in (
        "normal_close_client_first", "ipv6", "dup_fd_close_once", "keepalive",
        "final_ack_dropped", "simultaneous_close", "server_killed", "half_open", "linger0",
        "close_unread_data", "shutdown_rd", "fin_wait_2_timeout_then_data",
        "server_never_closes", "write_after_peer_closed", "handshake_ack_dropped",
        "refused", "shutdown_wr_peer_sends", "simultaneous_open")},
    "port_reuse_after_time_wait": ["closed", "closed"],
    "port_reuse_close_wait": ["closed", "closed"],
    "syn_dropped": ["syn_sent"],  # no answer
    "listen_no_accept": ["established"] * 3,  # the handshakes completed, nothing more
    "mid_stream": ["none"],  # no SYN: stream.midstream is off by default
}


@pytest.mark.parametrize("name", sorted(LAB_EXPECTED))
def test_lab_captures(name: str) -> None:
    c = tcplife.analyze(LAB / f"{name}.client.pcap").connections
    assert list(c.suricata_state.astype(str)) == LAB_EXPECTED[name]
