"""``zeek_conn_state`` and ``zeek_history``, as Zeek's conn.log would show them.

Three levels:

1. Zeek's own published results: the btest baselines of zeek/zeek
   (``testing/btest/Baseline/<test>/conn.log``) for the Zeek traces in the corpus. Zeek runs
   there with its own timers and its reassembler; where that makes a difference tcplife
   does not model (headers-only captures: payload cut by the snap length is a content gap
   for Zeek), the test says so and compares what remains.
2. The kernel-lab captures, with the expected values derived by hand from Zeek's rules
   (each comment walks through the packets, as tshark shows them). Derived as Zeek would
   log the packets captured whole: these captures are cut at 256 (clean_traffic: 128)
   bytes, and Zeek, given the truncated frames, would add content-gap letters (``g``/``G``)
   for the data it could not reassemble.
3. One scripted conversation per rule (tests/builder.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import tcplife
from tcplife.peers import zeek as z
from tcplife.peers.zeek import conn_state

from builder import ACK, FIN, RST, SYN, Conv, Host, run

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "sample_pcaps"
CORPUS = ROOT.parent / "shared" / "corpus" / "pcaps"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not at {CORPUS}")


def _rows(path: Path) -> list[tuple]:
    c = tcplife.analyze(path).connections
    out = []
    for r in c.itertuples():
        orig = (r.client_addr, r.client_port) if r.zeek_orig == "client" else (
            r.server_addr, r.server_port)
        opk, rpk = (r.client_packets, r.server_packets) if r.zeek_orig == "client" else (
            r.server_packets, r.client_packets)
        out.append((orig, str(r.zeek_conn_state), r.zeek_history, r.zeek_orig_bytes,
                    r.zeek_resp_bytes, opk, rpk, round(r.zeek_duration, 6)))
    return out


# ---------------------------------------------------------------- 1. Zeek's baselines
# (orig_h, orig_p), conn_state, history, orig_bytes, resp_bytes, orig_pkts, resp_pkts,
# duration: copied from the conn.log baselines named in each comment.
BASELINES = {
    # core.tcp.miss-end-data: the server's data never captured, the client ACKs it: "g".
    "zeek__tcp__miss_end_data.pcap": [
        (("192.168.122.230", 60648), "SF", "ShADafgF", 538, 2902, 5, 4, 10.04836)],
    # core.tcp.missing-syn / core.history-flip: first packet the SYN-ACK from port 80,
    # a likely server port: Zeek flips ("^") and the SYN-ACK is the responder's "h".
    "zeek__tcp__missing-syn.pcap": [
        (("141.42.64.125", 56730), "SF", "^hADdFaf", 98, 9417, 11, 10, 1.550793)],
    # core.tcp-padding
    "zeek__tcp-http-with-padding.pcap": [
        (("167.221.30.181", 59406), "SF", "ShADadfF", 16, 191, 13, 12, 10.914549)],
    # core.tcp.flip-without-syn: SYN-ACK from 80 to 6669 (not a likely server port).
    "zeek__tcp__http-on-irc-port-missing-syn.pcapng": [
        (("141.142.228.5", 6669), "SF", "^hADadFf", 136, 5007, 6, 7, 0.141744)],
    # scripts.base.protocols.ftp.ftp-ipv4: the control connection and four data
    # connections (two opened by the server: "active" FTP).
    "zeek__ftp__ipv4.pcap": [
        (("141.142.220.235", 50003), "SF", "ShAdDfFa", 180, 3146, 38, 25, 38.055625),
        (("141.142.220.235", 37604), "SF", "ShAdfFa", 0, 342, 4, 4, 0.112432),
        (("141.142.220.235", 59378), "SF", "ShAdfFa", 0, 77, 4, 4, 0.111218),
        (("199.233.217.249", 61920), "SF", "ShADaFf", 342, 0, 5, 3, 0.056211),
        (("199.233.217.249", 61918), "SF", "ShADaFf", 77, 0, 5, 3, 0.056005)],
    # scripts.base.protocols.ftp.ftp-ipv6 (Zeek lists rows as it forgets connections;
    # here in order of first packet).
    "zeek__ftp__ipv6.pcap": [
        (("2001:470:1f11:81f:c999:d94:aa7c:2e3e", 49185), "SF", "ShAdDfFa", 310, 3448, 57,
         34, 26.658219),
        (("2001:470:1f11:81f:c999:d94:aa7c:2e3e", 49186), "SF", "ShAdfFa", 0, 342, 5, 4,
         0.219721),
        (("2001:470:1f11:81f:c999:d94:aa7c:2e3e", 49187), "SF", "ShAdfFa", 0, 43, 5, 4,
         0.217501),
        (("2001:470:1f11:81f:c999:d94:aa7c:2e3e", 49188), "SF", "ShAdfFa", 0, 77, 5, 4,
         0.217941),
        (("2001:470:4867:99::21", 55785), "SF", "ShADFaf", 77, 0, 5, 4, 0.109813),
        (("2001:470:4867:99::21", 55647), "SF", "ShADFaf", 342, 0, 5, 4, 0.109181)],
    # core.tcp.rxmit-history, conn-2.log (wikipedia.pcap), its TCP rows in order of
    # first packet. The last: a lone SYN-ACK, flipped; Zeek logs duration and bytes unset
    # (a zero duration), tcplife's columns hold 0.
    "zeek__wikipedia.pcap": [
        (("141.142.220.118", 35634), "OTH", "DdA", 463, 350, 2, 1, 0.061329),
        (("141.142.220.118", 48649), "S1", "ShADad", 525, 232, 4, 3, 0.119905),
        (("141.142.220.118", 49996), "S1", "ShADad", 1171, 733, 6, 4, 0.218501),
        (("141.142.220.118", 49997), "S1", "ShADad", 1125, 734, 6, 4, 0.21972),
        (("141.142.220.118", 49998), "S1", "ShADad", 1130, 734, 6, 4, 0.215893),
        (("141.142.220.118", 49999), "S1", "ShADad", 1137, 733, 6, 4, 0.220961),
        (("141.142.220.118", 50000), "S1", "ShADad", 1148, 734, 6, 4, 0.229603),
        (("141.142.220.118", 50001), "S1", "ShADad", 1178, 734, 6, 4, 0.227284),
        (("141.142.220.118", 35642), "S1", "ShADad", 534, 412, 4, 3, 0.120041),
        (("141.142.220.235", 6705), "OTH", "^h", 0, 0, 0, 1, 0.0)],
}


@needs_corpus
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_zeek_published_baselines(name: str) -> None:
    assert _rows(CORPUS / name) == BASELINES[name]


# scripts.base.protocols.ssh.half-duplex-client: only the client's packets. Zeek's rows
# as (orig_p, conn_state, history, orig_bytes, orig_pkts, duration). Five 4-tuples appear
# twice: Zeek's attempt timer logs a connection whose responder stayed silent 5 s after
# the SYN ("SAD", S0) and the later packets start a new one ("DAF", SH); tcplife keeps one
# instance, which must then add up the two.
SSH_HALF_DUPLEX = [
    (51880, "S0", "SAD", 2493, 19, 3.435401), (51880, "SH", "DAF", 176, 6, 1.0255),
    (57189, "S0", "SAD", 4453, 21, 0.098697), (57189, "SH", "DAF", 800, 17, 1.381169),
    (57191, "SH", "SADF", 576, 23, 3.862306),
    (56594, "S0", "SAD", 428, 13, 4.320795), (56594, "SH", "DAF", 52, 4, 1.689473),
    (56821, "SH", "SADF", 820, 26, 1.106422), (56837, "SH", "SADF", 692, 25, 1.08079),
    (56845, "SH", "SADF", 660, 26, 1.302572),
    (56875, "S0", "SAD", 484, 12, 3.431977), (56875, "SH", "ADF", 104, 7, 6.130941),
    (56878, "SH", "SADF", 684, 25, 3.629091), (56940, "SH", "SADF", 500, 14, 0.104996),
    (57831, "SH", "SADF", 576, 23, 2.758921), (59246, "SH", "SADF", 3049, 32, 3.076782),
    (41164, "S0", "SAD", 5335, 20, 4.616008), (41164, "SH", "DAF", 752, 12, 1.029134),
    (33910, "SH", "SADF", 6471, 33, 1.910986), (41268, "SH", "SADF", 5613, 24, 2.710803),
    (52294, "SH", "SADF", 3729, 36, 3.660293), (51489, "SH", "SADF", 4029, 42, 4.927993),
    (58641, "SH", "SADF", 2885, 16, 0.587625), (58646, "SH", "SADF", 4477, 179, 2.236752),
    (58649, "SH", "SADF", 4477, 183, 2.066453),
]


@needs_corpus
def test_zeek_baseline_one_sided_ssh() -> None:
    zeek: dict[int, list[tuple]] = {}
    for port, *rest in SSH_HALF_DUPLEX:
        zeek.setdefault(port, []).append(tuple(rest))
    rows = _rows(CORPUS / "zeek__ssh__ssh.client-side-half-duplex.pcap")
    assert [r[0][1] for r in rows] == list(zeek)
    for (orig, state, history, obytes, rbytes, opk, rpk, duration) in rows:
        records = zeek[orig[1]]
        assert (rbytes, rpk) == (0, 0)
        if len(records) == 1:
            assert (state, history, obytes, opk, duration) == records[0]
        else:  # split by Zeek's attempt timer
            (_, h1, b1, p1, _), (s2, h2, b2, p2, _) = records
            assert (state, obytes, opk) == (s2, b1 + b2, p1 + p2)
            assert history == "SADF"


@needs_corpus
def test_zeek_baseline_headers_only_capture() -> None:
    """core.tcp.rxmit-history conn-1.log: ``RSTO ShADaGdgtR``, missed_bytes 24257 (all the
    payload: the trace keeps 54 bytes of each frame). Zeek reassembles nothing and reports
    a gap on each side (``G`` after the server's ACK of the client's request, ``g`` after
    the client's ACKs); tcplife takes the payload lengths from the IP headers and has no
    gap. Everything else is Zeek's."""
    (row,) = _rows(CORPUS / "zeek__tcp__retransmit-fast009.pcap")
    assert row == (("10.0.88.85", 50368), "RSTO", "ShADadtR", 474, 23783, 17, 22, 60.99177)
    assert row[2] == "ShADaGdgtR".replace("G", "").replace("g", "")


@needs_corpus
def test_zeek_baseline_split_by_its_inactivity_timer() -> None:
    """core.expire-all-timers conn-all.log: the 18-byte segment, its ACK, and the same
    segment again 300 s later are two Zeek connections ("Da", then "D"): the first expired
    after tcp_inactivity_timeout (5 min). tcplife keeps one instance, in which the resend
    is a retransmission: "DaT"."""
    (row,) = _rows(CORPUS / "zeek__tcp__retransmit-timeout.pcapng")
    assert row[1:3] == ("OTH", "DaT")


# ---------------------------------------------------------------- 2. kernel-lab captures
# Client vantage. The lab's server port is 8080, which is in Zeek's likely_server_ports
# only as an HTTP port, and every connection but mid_stream starts with the client's SYN,
# so Zeek's originator is the client (upper case) throughout.
LAB_EXPECTED = {
    # SYN S, SYN-ACK h, ACK A, request D, ACK a, response d, FINs F (client first) then f.
    "normal_close_client_first": [("SF", "ShADadFf")],
    "ipv6": [("SF", "ShADadFf")],
    "dup_fd_close_once": [("SF", "ShADadFf")],
    # Keep-alive probes carry no byte (seq = SND.NXT - 1, len 0): no "T" (Zeek counts
    # a retransmission only for payload).
    "keepalive": [("SF", "ShADadFf")],
    # The server's FIN sent again four times at the same sequence number: one "f" (a
    # repeat is recorded only for a new sequence number).
    "final_ack_dropped": [("SF", "ShADadFf")],
    # The client's FIN retransmitted before the server's crossing FIN: one "F".
    "simultaneous_close": [("SF", "ShADadFf")],
    # Server closes first: f before F.
    "server_killed": [("SF", "ShADadfF")],
    # The 200-byte write sent six times at seq 121: the first copy is "D"-class data
    # already recorded, the 2nd is Zeek's first retransmission "T" (the 10th would add
    # another "T"; there are five).
    "half_open": [("SF", "ShADadTFf")],
    # The client shuts down writing (F), the server goes on sending (its data is already
    # "d"), then closes (f).
    "shutdown_wr_peer_sends": [("SF", "ShADadFf")],
    # Client RST (SO_LINGER 0) while both established: "R", RSTO.
    "linger0": [("RSTO", "ShADadR")],
    "close_unread_data": [("RSTO", "ShADadR")],
    "shutdown_rd": [("RSTO", "ShADadR")],
    # Client FIN, then its RST after the FIN_WAIT_2 timeout answers the server's data:
    # orig RESET (from CLOSED, the peer not closed), RSTO.
    "fin_wait_2_timeout_then_data": [("RSTO", "ShADadFR")],
    # FINs both ways, then the client's RST: a RST from a CLOSED endpoint whose peer is
    # CLOSED too changes nothing (UpdateClosedState): SF, with "R" in the history.
    "server_never_closes": [("SF", "ShADadFfR")],
    # Server FIN "f", then its RST "r" answering the client's late data: from CLOSED with
    # the peer open it becomes RESET: RSTR.
    "write_after_peer_closed": [("RSTR", "ShADadfr")],
    # The server resends its SYN-ACK (same ISN: no second "h"), the client's duplicate
    # ACKs add nothing, then the client's data "D" meets the server's RST "r": RSTR.
    "handshake_ack_dropped": [("RSTR", "ShADr")],
    # SYN answered by RST-ACK: resp RESET while orig is SYN_SENT: REJ.
    "refused": [("REJ", "Sr")],
    # Six SYNs at the same ISN: one "S", S0. (Zeek's attempt timer would log the
    # connection 5 s after the first SYN, so the later SYNs would make more S0 records.)
    "syn_dropped": [("S0", "S")],
    # Handshakes completed by the kernel, never accepted: S1 "ShA" (the third client
    # repeats its SYN at the same ISN: nothing more).
    "listen_no_accept": [("S1", "ShA")] * 3,
    # The capture begins with the client's request (no SYN): partial, no flip (44470 is
    # not a likely server port): "D", then the server's data "d", ACK "A", close F a f.
    "mid_stream": [("SF", "DdAFaf")],
    # Both bare SYNs "S" and "s" (the responder's), SYN-ACKs at the same ISNs add nothing
    # (a SYN of either kind shares one mask and one last sequence number), then A a D d F f.
    "simultaneous_open": [("SF", "SsAaDdFf")],
    # Two instances: the first closed by the server first (f F), the second client first.
    "port_reuse_after_time_wait": [("SF", "ShADadfF"), ("SF", "ShADadFf")],
    # First instance: client FIN "F", then (new SYN, challenge ACK) the client's RST "R":
    # orig RESET from CLOSED, peer open: RSTO. Second: a clean exchange.
    "port_reuse_close_wait": [("RSTO", "ShADadFR"), ("SF", "ShADadFf")],
    # First instance: the exchange, then the client's 64 MiB: the server advertises a
    # zero window 28 times ("w" at the 1st and the 10th: log scale), closes first (f F);
    # the client's RST that kills the TIME_WAIT (routed to the old instance, as in
    # port_reuse_close_wait) comes from a CLOSED endpoint whose peer is CLOSED: SF with
    # "R". Second: a clean exchange.
    "port_reuse_time_wait_refused": [("SF", "ShADadwwfFR"), ("SF", "ShADadFf")],
    # The same, without the ACK and RST (the TIME_WAIT takes the SYN): 43 zero windows,
    # "ww" again. Second: a clean exchange.
    "port_reuse_time_wait_timestamp": [("SF", "ShADadwwfF"), ("SF", "ShADadFf")],
}


def test_every_lab_scenario_has_expectations() -> None:
    names = {p.name.split(".")[0] for p in LAB.glob("*.client.pcap")}
    assert names - {"clean_traffic", "many_short"} == set(LAB_EXPECTED)


@pytest.mark.parametrize("name", sorted(LAB_EXPECTED))
def test_lab_captures_by_hand(name: str) -> None:
    c = tcplife.analyze(LAB / f"{name}.client.pcap").connections
    assert list(zip(c.zeek_conn_state.astype(str), c.zeek_history, strict=True)) \
        == LAB_EXPECTED[name]
    expected_orig = ["client"] * len(c)
    assert list(c.zeek_orig.astype(str)) == expected_orig


def test_lab_bulk_captures() -> None:
    """Short exchanges: request, response, client closes first (a FIN each way)
    - except where the server's FIN crosses the client's ACK of the response, "ShADadfF"."""
    for name in ("many_short", "clean_traffic"):
        c = tcplife.analyze(LAB / f"{name}.client.pcap").connections
        assert set(c.zeek_conn_state.astype(str)) == {"SF"}
        assert set(c.zeek_history) <= {"ShADadFf", "ShADadfF"}


# ---------------------------------------------------------------- 3. one rule each
def _zeek(cv: Conv) -> tuple[str, str]:
    c = run(cv.segments).connections.iloc[0]
    return str(c.zeek_conn_state), c.zeek_history


def test_syn_retransmission_same_isn_once_new_isn_again() -> None:
    cv = Conv()
    cv.c(SYN, ack=0)
    cv.c(SYN, ack=0, seq=1000)  # same ISN: "S" not repeated
    assert _zeek(cv) == ("S0", "S")
    z_ = z.ZeekRecorder(cv.segments[0], True)
    for seg in cv.segments:
        z_.process(seg, True)
    z_.process(cv.segments[0]._replace(seq=5000), True)  # SYN_seq_jump: start reset, rel 0
    assert z_.history == "S"


def test_rst_repeats_only_for_a_new_sequence_number() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(RST, ack=0)
    cv.c(RST, ack=0, seq=1001)  # same sequence number
    cv.c(RST, ack=0, seq=1002)  # a new one: "R" again
    assert _zeek(cv) == ("RSTO", "ShARR")


def test_fin_repeats_for_a_new_sequence_number() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(FIN)
    cv.c(FIN, seq=1001)  # the same FIN again: nothing
    cv.c(FIN | ACK, data=5, seq=1001)  # the FIN now after 5 bytes: a new position, "F"
    assert _zeek(cv)[1] == "ShAFF"


def test_data_and_ack_recorded_once_per_side() -> None:
    cv = Conv()
    cv.handshake()
    for _ in range(3):
        cv.c(ACK, data=10)
        cv.s(ACK)
        cv.s(ACK, data=10)
        cv.c(ACK)
    assert _zeek(cv) == ("S1", "ShADad")


def test_retransmissions_logarithmic() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(ACK, data=10)
    for _ in range(9):
        cv.c(ACK, data=10, seq=1001)  # 9 retransmissions: "T" at the 1st only
    assert _zeek(cv)[1] == "ShADT"
    cv.c(ACK, data=10, seq=1001)  # the 10th: a second "T"
    assert _zeek(cv)[1] == "ShADTT"


def test_keepalive_with_one_byte_is_a_retransmission() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(ACK, data=10)
    cv.s(ACK)
    cv.c(ACK, data=1, seq=1010)  # seq = SND.NXT - 1 with one byte: ends at SND.NXT
    assert _zeek(cv)[1] == "ShADaT"


def test_zero_window_logarithmic_and_not_after_peer_fin() -> None:
    cv = Conv()
    cv.handshake()
    segs = cv.segments
    zero = cv.s(ACK)._replace(window=0)
    segs[-1] = zero
    for _ in range(8):  # nine zero windows: one "w"
        segs.append(zero._replace(frame=zero.frame + len(segs), ts_ns=zero.ts_ns + len(segs)))
    assert _zeek(cv)[1] == "ShAaw"
    segs.append(zero._replace(frame=99, ts_ns=zero.ts_ns + 99))
    assert _zeek(cv)[1] == "ShAaww"  # the 10th


def test_fin_rst_and_syn_fin_packets() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(FIN | RST, ack=0)
    cv.s(SYN | FIN, seq=900_001)
    assert _zeek(cv)[1] == "ShAIq"


def test_flip_when_first_packet_is_synack_from_a_likely_server_port() -> None:
    cv = Conv()  # server port 80
    cv.c(SYN, ack=0, lost="before")
    cv.s(SYN | ACK)
    cv.c(ACK)
    assert _zeek(cv) == ("S1", "^hA")


def test_no_flip_from_an_unlikely_port() -> None:
    cv = Conv(server=Host("10.0.0.2", 40001, 900_000))
    cv.c(SYN, ack=0, lost="before")
    cv.s(SYN | ACK)
    cv.c(ACK)
    # The SYN-ACK's sender is the originator ("H"), the client's ACK makes a partial
    # responder: OTH.
    assert _zeek(cv) == ("OTH", "Ha")


def test_flip_on_syn_after_synack() -> None:
    cv = Conv(server=Host("10.0.0.2", 40001, 900_000))
    syn = cv.c(SYN, ack=0)
    synack = cv.s(SYN | ACK)
    cv.segments[:] = [synack._replace(frame=1), syn._replace(frame=2, ts_ns=synack.ts_ns + 1)]
    # SYN-ACK first "H" (its sender orig), then the SYN from the responder: "s", and the
    # roles flip: "^".
    assert _zeek(cv) == ("S1", "Hs^")


def test_rst_after_syn_only_rstos0_and_rej() -> None:
    cv = Conv()
    cv.c(SYN, ack=0)
    cv.c(RST, ack=0, seq=1001)
    assert _zeek(cv) == ("RSTOS0", "SR")
    cv = Conv()
    cv.c(SYN, ack=0)
    cv.s(RST | ACK, seq=0)
    assert _zeek(cv) == ("REJ", "Sr")


def test_half_closed_states() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(FIN)
    assert _zeek(cv) == ("S2", "ShAF")
    cv = Conv()
    cv.handshake()
    cv.s(FIN)
    assert _zeek(cv) == ("S3", "ShAf")
    cv = Conv()
    cv.c(SYN, ack=0)
    cv.c(FIN, seq=1001)
    assert _zeek(cv) == ("SH", "SF")


def test_content_gap_when_acked_data_was_never_seen() -> None:
    cv = Conv()
    cv.handshake()
    cv.c(ACK, data=100, lost="before")  # not captured
    cv.s(ACK, ack=cv.client.snd_nxt)  # acknowledges it: a gap in the originator's data
    assert _zeek(cv) == ("S1", "ShAaG")


def test_conn_state_table() -> None:
    assert conn_state(z.SYN_SENT, z.INACTIVE, 0, 0, "S") == "S0"
    assert conn_state(z.RESET, z.INACTIVE, 0, 0, "^SR") == "RSTOS0"
    assert conn_state(z.RESET, z.INACTIVE, 0, 0, "SHR") == "OTH"
    assert conn_state(z.INACTIVE, z.RESET, 0, 0, "Hr") == "RSTRH"
    assert conn_state(z.RESET, z.RESET, 0, 0, "SrR") == "REJ"
    assert conn_state(z.INACTIVE, z.CLOSED, 0, 0, "Hf") == "SHR"
    assert conn_state(z.PARTIAL, z.PARTIAL, 0, 0, "Dd") == "OTH"


@pytest.mark.parametrize("long_run", [1, 64, 10**9])
def test_fast_path_keeps_zeek_letters(long_run: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long steady transfer (absorbed in bulk) with a zero window, a retransmission and
    a gap in the middle: the same letters as segment by segment."""
    cv = Conv()
    cv.handshake()
    for i in range(200):
        cv.c(ACK, data=100)
        if i % 2:
            cv.s(ACK)
        if i == 80:
            cv.s(ACK)._replace(window=0)
            cv.segments[-1] = cv.segments[-1]._replace(window=0)
        if i == 120:
            cv.c(ACK, data=100, seq=cv.client.snd_nxt - 100)
        if i == 150:
            cv.c(ACK, data=100, lost="before")
            cv.s(ACK, ack=cv.client.snd_nxt)
    from tcplife.capture.columns import AddressBook, Batch
    from tcplife.drive import drive
    from tcplife.frames import Collector
    from tcplife.tracker import Tracker
    monkeypatch.setattr("tcplife.drive.LONG_RUN", long_run)  # numpy, rows, plain feed
    col = Collector()
    t = Tracker()
    drive([Batch.from_segments(cv.segments, AddressBook())], t, col.add)
    col.add(t.finish())
    assert col.connections().iloc[0].zeek_history == _zeek(cv)[1] == "ShADawTG"


@needs_corpus
def test_zeek_baseline_fin_retransmission_endpoint_states() -> None:
    """core.tcp.fin-retransmit prints c$orig and c$resp at removal: orig size 0, state 5
    (TCP_CLOSED), 3 packets; resp size 0, state 6 (TCP_RESET), 2 packets. The client's FIN
    goes out before the SYN-ACK, is resent with an ACK, and the server answers with RST."""
    from tcplife.capture import ReadStats, read_segments

    path = CORPUS / "zeek__tcp__fin_retransmission.pcap"
    segs = list(read_segments(path, ReadStats()))
    rec = z.ZeekRecorder(segs[0], True)
    first = (segs[0].src, segs[0].sport)
    for seg in segs:
        rec.process(seg, (seg.src, seg.sport) == first)
    assert (rec.orig().state, rec.resp().state) == (z.CLOSED, z.RESET) == (5, 6)
    assert (rec.orig_bytes(), rec.resp_bytes()) == (0, 0)
    (row,) = _rows(path)
    assert row[1:7] == ("RSTR", "SFhr", 0, 0, 3, 2)
