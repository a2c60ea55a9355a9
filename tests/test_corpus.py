"""Third-party captures (../shared/corpus, see its SOURCES.md for origins and licences).

Every capture goes through `analyze` without error; instance numbering matches Wireshark's
``tcp.stream`` (expected values produced by tshark, stored in tests/data); where a
capture's behaviour is unambiguous when read in tshark, the states are asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tcplife

# shared/ sits beside the checkout, in development and in CI.
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "pcaps"
FILES = sorted(CORPUS.glob("*.pcap*")) if CORPUS.is_dir() else []
TSHARK = json.loads((Path(__file__).parent / "data" / "corpus_tshark_streams.json")
                    .read_text())["first_frame_of_stream"]

needs_corpus = pytest.mark.skipif(not FILES, reason=f"corpus not found at {CORPUS}")


@needs_corpus
def test_corpus_is_complete() -> None:
    assert {p.name for p in FILES} == set(TSHARK)


@needs_corpus
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_capture_analyses_and_streams_match_tshark(path: Path) -> None:
    result = tcplife.analyze(path)
    conns = result.connections
    assert list(conns.conn_id) == list(range(len(conns)))
    assert list(conns.first_frame) == TSHARK[path.name]
    # Each side's transitions form a chain: from_state is the previous to_state.
    for (_, side), group in result.transitions.groupby(["conn_id", "side"], observed=True):
        states = list(group.from_state.astype(str)), list(group.to_state.astype(str))
        assert states[0][1:] == states[1][:-1], (path.name, side)


def _analyze(name: str) -> tcplife.Result:
    return tcplife.analyze(CORPUS / name)


def _path(result: tcplife.Result, side: str, conn_id: int = 0) -> list[str]:
    c = result.connections.set_index("conn_id").loc[conn_id]
    t = result.transitions
    return [str(c[f"{side}_initial_state"])] + [
        str(s) for s in t[(t.conn_id == conn_id) & (t.side == side)].to_state]


@needs_corpus
def test_handshake_only() -> None:  # sanders: SYN, SYN-ACK, ACK
    r = _analyze("sanders__tcp_handshake.pcapng")
    assert _path(r, "client") == ["CLOSED", "SYN_SENT", "ESTABLISHED"]
    assert _path(r, "server") == ["LISTEN", "SYN_RECEIVED", "ESTABLISHED"]
    assert r.connections.iloc[0].close_kind == "open"


@needs_corpus
def test_refused_connection() -> None:  # sanders: SYN answered by RST-ACK from port 80
    r = _analyze("sanders__tcp_refuseconnection.pcapng")
    c = r.connections.iloc[0]
    assert (c.close_kind, c.client_state, c.server_state) == ("refused", "CLOSED", "CLOSED")
    assert _path(r, "server") == ["CLOSED"]


@needs_corpus
def test_teardown_captured_mid_stream() -> None:  # sanders: server FIN first, 4-way close
    r = _analyze("sanders__tcp_teardown.pcapng")
    c = r.connections.iloc[0]
    assert c.mid_stream and c.role_inferred and c.server_port == 80
    assert _path(r, "server") == ["UNKNOWN", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT", "CLOSED"]
    assert _path(r, "client") == ["UNKNOWN", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]


@needs_corpus
def test_http_get_full_life() -> None:  # zeek: GET, 4 data segments, client closes first
    r = _analyze("zeek__http__get.pcap")
    c = r.connections.iloc[0]
    assert (c.client_bytes, c.server_bytes, c.packets) == (136, 1448 * 3 + 663, 14)
    assert _path(r, "client") == ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1",
                                  "FIN_WAIT_2", "TIME_WAIT", "CLOSED"]
    assert _path(r, "server") == ["LISTEN", "SYN_RECEIVED", "ESTABLISHED", "CLOSE_WAIT",
                                  "LAST_ACK", "CLOSED"]
    assert c.close_kind == "fin"


@needs_corpus
def test_lone_syn_and_syn_synack() -> None:
    r = _analyze("zeek__tcp__syn.pcap")
    assert r.connections.iloc[0].close_kind == "unanswered"
    # SYN_SENT until connect() gives up, 127 s (Linux's default retries) after the SYN
    assert _path(r, "client") == ["CLOSED", "SYN_SENT", "CLOSED"]
    t = r.transitions
    assert t.ts.iloc[-1] - t.ts.iloc[0] == pytest.approx(127)
    r = _analyze("zeek__tcp__syn-synack.pcap")
    end = r.connections.iloc[0].last_ts
    snap = r.state_at(end)
    assert dict(zip(snap.side.astype(str), snap.state.astype(str), strict=True)) == {
        "client": "ESTABLISHED", "server": "SYN_RECEIVED"}


@needs_corpus
def test_split_handshake_is_a_simultaneous_open() -> None:  # suricata-verify 4-way handshake
    r = _analyze("sv__tcp-split-handshake-01-4whs.pcap")
    assert len(r.connections) == 1
    assert _path(r, "client") == ["CLOSED", "SYN_SENT", "SYN_RECEIVED", "ESTABLISHED",
                                  "CLOSED"]
    assert _path(r, "server") == ["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSED"]


@needs_corpus
def test_nanosecond_timestamps_are_exact() -> None:  # tcpdump: nanosecond pcap, SLL
    r = _analyze("tcpdump__tcp-handshake-nano.pcap")
    assert list(r.transitions.ts_ns[:2]) == [1418145369924505488, 1418145370052027262]


@needs_corpus
def test_ipv6_ftp() -> None:
    r = _analyze("zeek__ftp__ipv6.pcap")
    assert set(r.connections.ip_version) == {6}
    assert set(r.connections.close_kind) == {"fin"}
