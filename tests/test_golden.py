"""Golden tests: tcplife against the kernel's `ss`, on the committed lab captures.

Owns: one test per ``sample_pcaps/*.expected.json`` x vantage capture (runs without root
from the committed files), a guard that the sample set is not empty, and self-tests of
the comparison in `golden.py` with fake results (so they pass whatever tcplife does).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from lab.anomalies import KINDS as ANOMALY_KINDS

import golden
from needs import require_corpus

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"
EXPECTED = sorted(SAMPLES.glob("*.expected.json"))
CASES = [(path, vantage) for path in EXPECTED
         for vantage in golden.vantages(golden.load_expected(path))]


def test_sample_set_is_not_empty() -> None:
    assert len(EXPECTED) >= 10, f"expected files missing from {SAMPLES}"
    for path, vantage in CASES:
        capture = SAMPLES / golden.load_expected(path)["captures"][vantage]["file"]
        assert capture.is_file(), f"{path.name}: capture {capture.name} is missing"
        assert capture.stat().st_size > 24


@pytest.mark.parametrize("path", EXPECTED, ids=[p.name for p in EXPECTED])
def test_expected_has_anomaly_ground_truth(path: Path) -> None:
    """Every expected file lists its anomalies per capture (format in sample_pcaps/README.md)."""
    expected = golden.load_expected(path)
    opts = expected["anomaly_options"]
    assert opts["close_wait_linger"] >= 0 and opts["time_wait_threshold"] >= 1
    anomalies = expected["anomalies"]
    assert set(anomalies) == set(expected["captures"]), path.name
    for vantage, rows in anomalies.items():
        visible = [list(f) for f in expected["captures"][vantage]["visible_flows"]]
        for row in rows:
            assert set(row) == {"flow", "instance", "side", "kind"}, row
            assert row["kind"] in ANOMALY_KINDS, row
            assert row["side"] in ("client", "server"), row
            assert isinstance(row["instance"], int) and row["instance"] >= 0, row
            assert row["flow"] in visible, (vantage, row)
        keys = [(tuple(r["flow"]), r["instance"], r["side"], r["kind"]) for r in rows]
        assert len(keys) == len(set(keys)), f"{path.name}/{vantage}: duplicate rows"


@pytest.mark.parametrize(("path", "vantage"), CASES,
                         ids=[f"{p.name.removesuffix('.expected.json')}-{v}" for p, v in CASES])
def test_golden(path: Path, vantage: str) -> None:
    problems = golden.compare(path, vantage)
    assert problems == [], "\n".join(problems)



# --------------------------------------------------------------------------- the end

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "pcaps"
END_CAPTURES = sorted({SAMPLES / golden.load_expected(p)["captures"][v]["file"]
                       for p, v in CASES})
CORPUS_CAPTURES = sorted(p for p in CORPUS.glob("*") if p.suffix in (".pcap", ".pcapng")) \
    if CORPUS.is_dir() else []


@pytest.mark.parametrize("path", EXPECTED, ids=[p.name for p in EXPECTED])
def test_sample_has_an_end_checkpoint(path: Path) -> None:
    """Every sample's last checkpoint is its end checkpoint: flagged ``end``, and no TCP
    segment in any of its captures at or after ``ts - END_QUIET`` (read with dpkt)."""
    expected = golden.load_expected(path)
    cp = golden.end_checkpoint(expected)
    assert cp is not None and cp is expected["checkpoints"][-1], path.name
    total = 0
    for vantage in golden.vantages(expected):
        times = golden.tcp_frame_times_ns(SAMPLES / expected["captures"][vantage]["file"])
        total += len(times)
        late = [t for t in times if t >= round((cp["ts"] - golden.END_QUIET) * 1e9)]
        assert late == [], f"{vantage}: {len(late)} TCP segment(s) after the end checkpoint"
    assert total > 0, "no TCP segment decoded"


@pytest.mark.parametrize(("path", "vantage"), CASES,
                         ids=[f"{p.name.removesuffix('.expected.json')}-{v}" for p, v in CASES])
def test_golden_end_states(path: Path, vantage: str) -> None:
    """``client_state``/``server_state`` equal the kernel's ``ss`` at the capture's end."""
    problems = golden.compare_end(path, vantage)
    assert problems == [], "\n".join(problems)


def _end_states_problems(capture: Path, options: dict[str, Any]) -> list[str]:
    import tcplife

    result = tcplife.analyze(str(capture), **options)
    last = golden.last_frame_ns(capture)
    if last is None:
        assert result.connections.empty
        return []
    snap = result.state_at(pd.Timestamp(last, unit="ns", tz="UTC"))
    alive = {(int(r.conn_id), str(r.side)): str(r.state) for r in snap.itertuples()}
    problems = []
    for row in result.connections.itertuples():
        for side in ("client", "server"):
            want = alive.get((int(row.conn_id), side), "CLOSED")
            got = str(getattr(row, f"{side}_state"))
            if got != want:
                problems.append(f"{capture.name} conn {row.conn_id} {side}: {side}_state "
                                f"{got}, state_at(last frame) {want}")
    return problems


@pytest.mark.parametrize("capture", END_CAPTURES, ids=[p.name for p in END_CAPTURES])
def test_end_states_are_state_at_the_last_frame_samples(capture: Path) -> None:
    options = next(golden.load_expected(p).get("options", {}) for p in EXPECTED
                   if p.name.split(".")[0] == capture.name.split(".")[0])
    assert _end_states_problems(capture, options) == []


@pytest.mark.parametrize("capture", CORPUS_CAPTURES or [None],
                         ids=[p.name for p in CORPUS_CAPTURES] or ["corpus-absent"])
def test_end_states_are_state_at_the_last_frame_corpus(capture: Path | None) -> None:
    if capture is None:
        require_corpus()
    assert _end_states_problems(capture, {}) == []


# --------------------------------------------------------------------------- self-tests


class FakeResult:
    """Answers `state_at` from a table of rows per checkpoint timestamp."""

    def __init__(self, rows_at: dict[float, list[dict[str, Any]]]) -> None:
        self.rows_at = rows_at

    def state_at(self, ts: float) -> pd.DataFrame:
        cols = ["conn_id", "side", "local_addr", "local_port", "remote_addr", "remote_port",
                "state"]
        return pd.DataFrame(self.rows_at.get(ts, []), columns=cols)


def _perfect(expected: dict[str, Any], vantage: str) -> dict[float, list[dict[str, Any]]]:
    """What an ideal tcplife would say: ss's sockets on visible flows, renamed."""
    visible = {tuple(f) for f in expected["captures"][vantage]["visible_flows"]}
    out: dict[float, list[dict[str, Any]]] = {}
    for cp in expected["checkpoints"]:
        rows = []
        blind = set(golden.UNKNOWABLE.get((expected["scenario"], vantage, cp["name"]), {}))
        for role, socks in cp["ss"].items():
            for s in socks:
                if s["state"] == "LISTEN" or role in blind:
                    continue
                flow = (*s["local"], *s["remote"]) if role == "client" else (
                    *s["remote"], *s["local"])
                if flow in visible:
                    rows.append({"conn_id": 0, "side": role, "local_addr": s["local"][0],
                                 "local_port": s["local"][1], "remote_addr": s["remote"][0],
                                 "remote_port": s["remote"][1],
                                 "state": golden.SS_TO_TCPLIFE[s["state"]]})
        out[cp["ts"]] = rows
    return out


def _sample(name: str) -> dict[str, Any]:
    path = SAMPLES / f"{name}.expected.json"
    if not path.exists():
        pytest.skip(f"{path.name} not generated")
    return golden.load_expected(path)


@pytest.mark.parametrize("path", EXPECTED, ids=[p.name for p in EXPECTED])
def test_compare_accepts_a_perfect_result(path: Path) -> None:
    expected = golden.load_expected(path)
    for vantage in golden.vantages(expected):
        fake = FakeResult(_perfect(expected, vantage))
        assert golden.compare(expected, vantage, SAMPLES, result=fake) == []


def test_compare_reports_wrong_missing_and_extra_rows() -> None:
    expected = _sample("normal_close_client_first")
    rows = _perfect(expected, "client")
    cp = next(c for c in expected["checkpoints"] if c["name"] == "after_client_close")
    ts = cp["ts"]
    assert {r["state"] for r in rows[ts]} == {"FIN_WAIT_2", "CLOSE_WAIT"}
    wrong = {t: [dict(r) for r in rs] for t, rs in rows.items()}
    for r in wrong[ts]:
        if r["state"] == "CLOSE_WAIT":
            r["state"] = "LAST_ACK"
    problems = golden.compare(expected, "client", SAMPLES, result=FakeResult(wrong))
    assert len(problems) == 1 and "kernel CLOSE_WAIT" in problems[0], problems
    assert "after_client_close" in problems[0]

    missing = {t: [r for r in rs if r["state"] != "FIN_WAIT_2"] for t, rs in rows.items()}
    problems = golden.compare(expected, "client", SAMPLES, result=FakeResult(missing))
    assert len(problems) == 1 and "no row" in problems[0], problems

    # After the server's close the server socket is gone: a row for it is "alive" too long.
    last = expected["checkpoints"][-1]["ts"]
    extra = {t: [dict(r) for r in rs] for t, rs in rows.items()}
    client_row = extra[last][0]
    extra[last].append({**client_row, "side": "server", "state": "LAST_ACK",
                        "local_addr": client_row["remote_addr"],
                        "local_port": client_row["remote_port"],
                        "remote_addr": client_row["local_addr"],
                        "remote_port": client_row["local_port"]})
    problems = golden.compare(expected, "client", SAMPLES, result=FakeResult(extra))
    assert len(problems) == 1 and "CLOSED (not listed by ss)" in problems[0], problems


def test_compare_listen_rows_need_a_listening_server() -> None:
    expected = _sample("refused")
    rows = _perfect(expected, "server")
    ts = expected["checkpoints"][0]["ts"]
    flow = expected["captures"]["server"]["visible_flows"][0]
    rows[ts] = [{"conn_id": 0, "side": "server", "local_addr": flow[2], "local_port": flow[3],
                 "remote_addr": "0.0.0.0", "remote_port": 0, "state": "LISTEN"}]
    problems = golden.compare(expected, "server", SAMPLES, result=FakeResult(rows))
    assert len(problems) == 1 and "no LISTEN socket" in problems[0], problems


def test_compare_normalises_ipv6_addresses() -> None:
    expected = _sample("ipv6")
    rows = _perfect(expected, "client")
    expanded = {t: [{**r, "local_addr": ipaddress.ip_address(r["local_addr"]).exploded,
                     "remote_addr": str(r["remote_addr"]).upper()} for r in rs]
                for t, rs in rows.items()}
    assert any(rs for rs in expanded.values())
    assert golden.compare(expected, "client", SAMPLES, result=FakeResult(expanded)) == []


#: lab scenarios in which the new SYN on a reused 4-tuple meets the server's old socket,
#: which answers it with an ACK of the old connection; the client's RST (seq = that ACK's
#: acknowledgment number) kills the old socket, and the SYN, sent again, opens the new one
#: (the lab's `_verify_challenge` checked that sequence in both captures when they were made)
REFUSED_REUSE = {"port_reuse_close_wait": "CLOSE_WAIT",
                 "port_reuse_time_wait_refused": "TIME_WAIT"}


@pytest.mark.parametrize(("name", "vantage"), [(n, v) for n in REFUSED_REUSE
                                               for v in ("client", "server")])
def test_old_socket_ends_at_the_clients_rst(name: str, vantage: str) -> None:
    """The kernel ends the old server socket when the client's RST reaches it, not at the
    new SYN (ss cannot see that microsecond; the capture's packet order does): its last
    transition is at the RST's frame, found here by reading the capture with dpkt."""
    import dpkt

    import tcplife

    path = SAMPLES / f"{name}.{vantage}.pcap"
    with path.open("rb") as f:
        frames = [(n, dpkt.ethernet.Ethernet(buf).data.data)
                  for n, (_, buf) in enumerate(dpkt.pcap.Reader(f), start=1)]
    rst = next(n for n, tcp in frames
               if isinstance(tcp, dpkt.tcp.TCP) and tcp.flags & dpkt.tcp.TH_RST)
    r = tcplife.analyze(path)
    t = r.transitions
    old = t[(t.conn_id == 0) & (t.side == "server")]
    assert list(old.to_state)[-2:] == [REFUSED_REUSE[name], "CLOSED"]
    assert (old.iloc[-1].frame, old.iloc[-1].event) == (rst, "recv RST")
    new = t[(t.conn_id == 1) & (t.side == "server")]
    assert list(new.to_state[:2]) == ["SYN_RECEIVED", "ESTABLISHED"]
    assert list(r.connections.close_kind) == ["rst" if name == "port_reuse_close_wait"
                                              else "fin", "fin"]


@pytest.mark.parametrize("vantage", ["client", "server"])
def test_time_wait_taken_on_a_timestamp_at_the_syn(vantage: str) -> None:
    """port_reuse_time_wait_timestamp: the new SYN's sequence number is below what the
    server's TIME_WAIT expects (the lab checked), but its TCP timestamp is newer than the
    last one the client sent (dpkt reads them here), so Linux takes it
    (tcp_timewait_state_process: TCP_TW_SYN): the old socket's TIME_WAIT ends at the SYN,
    said to be on the timestamp; nothing of the new attempt is taken for the old
    connection."""
    import struct

    import dpkt

    import tcplife

    path = SAMPLES / f"port_reuse_time_wait_timestamp.{vantage}.pcap"
    with path.open("rb") as f:
        tcps = [(n, tcp) for n, (_, buf) in enumerate(dpkt.pcap.Reader(f), start=1)
                if isinstance(tcp := dpkt.ethernet.Ethernet(buf).data.data, dpkt.tcp.TCP)]

    def tsval(tcp: dpkt.tcp.TCP) -> int:
        data = next(d for k, d in dpkt.tcp.parse_opts(tcp.opts) if k == dpkt.tcp.TCP_OPT_TIMESTAMP)
        return struct.unpack("!I", data[:4])[0]

    syns = [n for n, tcp in tcps if tcp.flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)
            == dpkt.tcp.TH_SYN]
    client_port = dict(tcps)[syns[0]].sport
    before = [tcp for n, tcp in tcps if n < syns[1] and tcp.sport == client_port]
    syn = dict(tcps)[syns[1]]
    assert tsval(syn) > max(tsval(tcp) for tcp in before)  # newer (no wrap in the capture)
    assert syn.seq < max(tcp.seq + len(tcp.data) + 1 for tcp in before)  # below rcv_nxt
    r = tcplife.analyze(path)
    t = r.transitions
    old = t[(t.conn_id == 0) & (t.side == "server")]
    assert list(old.to_state)[-2:] == ["TIME_WAIT", "CLOSED"]
    assert (old.iloc[-1].frame, old.iloc[-1].event) \
        == (syns[1], "recv SYN (new incarnation: newer timestamp)")
    assert list(r.connections.close_kind) == ["fin", "fin"]
    assert list(r.connections.packets)[1] == sum(1 for n, _ in tcps if n >= syns[1])


class FakeConnections:
    """Answers ``connections`` with the given rows."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.connections = pd.DataFrame(rows, columns=[
            "conn_id", "client_addr", "client_port", "server_addr", "server_port",
            "client_state", "server_state"])


def test_compare_end_reports_a_wrong_end_state() -> None:
    expected = _sample("normal_close_client_first")
    (flow,) = expected["captures"]["client"]["visible_flows"]
    row = {"conn_id": 0, "client_addr": flow[0], "client_port": flow[1],
           "server_addr": flow[2], "server_port": flow[3], "client_state": "TIME_WAIT",
           "server_state": "CLOSED"}
    assert golden.compare_end(expected, "client", SAMPLES,
                              result=FakeConnections([row])) == []
    wrong = golden.compare_end(expected, "client", SAMPLES,
                               result=FakeConnections([{**row, "client_state": "CLOSED"}]))
    assert len(wrong) == 1 and "client CLOSED at the last frame, kernel TIME_WAIT" in wrong[0]
    # an earlier instance of the same 4-tuple must be CLOSED on both sides
    old = {**row, "conn_id": 0, "client_state": "FIN_WAIT_2"}
    two = golden.compare_end(expected, "client", SAMPLES,
                             result=FakeConnections([old, {**row, "conn_id": 1}]))
    assert len(two) == 1 and "earlier instance" in two[0], two
    assert golden.compare_end(expected, "client", SAMPLES, result=FakeConnections(
        [])) == [f"normal_close_client_first/client @ end (after_server_close): "
                 f"{flow[0]}:{flow[1]} -> {flow[2]}:{flow[3]}: tcplife has no connection"]
