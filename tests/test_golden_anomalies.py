"""Golden anomaly tests: tcplife's anomalies on the kernel lab's captures, exactly.

Each ``sample_pcaps/*.expected.json`` lists, per vantage capture, the anomalies that really
happened in that run (decided from the scenario's design and checked in the packets, not
from tcplife): for every listed (connection, side, kind) tcplife must report it, and it
must report nothing else, with one documented exception (`golden.APP_RST_KINDS`: an
application's RST, where an ``abortive_close`` row of confidence ``possible`` answers a
``rst_on_close_unread_data`` truth, the wire being the same); every row must carry a
severity and a confidence of the contract. Self-tests of that comparison, and tests that
the lab's evidence (`tests/lab/anomalies.py`) tells the kinds issue 18 redefined apart on
the committed captures.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import golden

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"
EXPECTED = sorted(SAMPLES.glob("*.expected.json"))
CASES = [(path, vantage) for path in EXPECTED
         if "anomalies" in golden.load_expected(path)
         for vantage in golden.vantages(golden.load_expected(path))]


def test_every_sample_has_anomaly_truth() -> None:
    assert EXPECTED and all("anomalies" in golden.load_expected(p) for p in EXPECTED)


@pytest.mark.parametrize(("path", "vantage"), CASES,
                         ids=[f"{p.name.removesuffix('.expected.json')}-{v}" for p, v in CASES])
def test_golden_anomalies(path: Path, vantage: str) -> None:
    assert golden.compare_anomalies(path, vantage) == []


# --------------------------------------------------------------------------- self-tests

UNREAD, ABORT = "rst_on_close_unread_data", "abortive_close"


@pytest.mark.parametrize(("truth", "rows", "ok"), [
    (UNREAD, [(UNREAD, "certain")], True),
    (UNREAD, [(ABORT, "possible")], True),      # the wire cannot tell: allowed
    (ABORT, [(ABORT, "certain")], True),
    (ABORT, [(UNREAD, "possible")], True),
    (UNREAD, [(ABORT, "likely")], False),       # not possible: must be the truth's kind
    (ABORT, [(UNREAD, "certain")], False),      # a confident wrong cause
    (ABORT, [(UNREAD, "likely")], False),
    (UNREAD, [(ABORT, "possible"), (UNREAD, "certain")], False),  # one row too many
    (UNREAD, [], False),
    ("half_open", [(ABORT, "possible")], False),  # only for an application's RST
])
def test_match_anomalies_app_rst_exception(truth: str, rows: list[tuple[str, str]],
                                           ok: bool) -> None:
    missing, extra = golden.match_anomalies({(0, "client", truth)},
                                            {(0, "client", k): c for k, c in rows})
    assert (not missing and not extra) == ok, (missing, extra)


class FakeResult:
    def __init__(self, expected: dict[str, Any], vantage: str,
                 rows: list[dict[str, Any]]) -> None:
        flow = expected["captures"][vantage]["visible_flows"][0]
        self.connections = pd.DataFrame([{"conn_id": 0, "client_addr": flow[0],
                                          "client_port": flow[1], "server_addr": flow[2],
                                          "server_port": flow[3]}])
        self.anomalies = pd.DataFrame(rows, columns=["conn_id", "side", "kind", "detail",
                                                     "severity", "confidence"])


def test_compare_anomalies_checks_severity_and_confidence() -> None:
    path = SAMPLES / "close_unread_data.expected.json"
    expected = golden.load_expected(path)
    row = {"conn_id": 0, "side": "client", "kind": ABORT, "detail": "x",
           "severity": "warning", "confidence": "possible"}
    assert golden.compare_anomalies(path, "client", FakeResult(expected, "client", [row])) \
        == []
    bad = golden.compare_anomalies(path, "client", FakeResult(
        expected, "client", [{**row, "severity": "fatal", "confidence": "sure"}]))
    assert len(bad) == 2 and "severity 'fatal', confidence 'sure'" in bad[0], bad
    extra = golden.compare_anomalies(path, "client", FakeResult(
        expected, "client", [row, {**row, "side": "server", "kind": "keepalive"}]))
    assert len(extra) == 1 and "extra [(0, 'server', 'keepalive')]" in extra[0], extra


# --------------------------------------------------------------------------- the lab's truth


@pytest.mark.skipif(shutil.which("tshark") is None, reason="the lab reads captures with tshark")
@pytest.mark.parametrize(("name", "flow", "side", "holds", "fails"), [
    # the server's FIN was acknowledged once the drop was lifted: delayed, not missing
    ("final_ack_dropped", 0, "server", "final_ack_delayed", "missing_final_ack"),
    ("simultaneous_close", 0, "client", "final_ack_delayed", "missing_final_ack"),
    ("fins_cross_acks_delayed", 0, "server", "final_ack_delayed", "missing_final_ack"),
    # the third client's SYN went unanswered while the listener had just answered others;
    # the first client's SYN was answered at once
    ("listen_no_accept", 2, "server", "listen_overflow", "syn_unanswered"),
    # keep-alive probes into silence are a dead peer; the RST after them is the kernel's
    ("keepalive_dead_peer", 0, "client", "half_open", "write_after_close"),
    ("linger0_after_read", 0, "client", "abortive_close", "write_after_close"),
])
def test_lab_evidence_tells_kinds_apart(name: str, flow: int, side: str, holds: str,
                                        fails: str) -> None:
    """`tests/lab/anomalies.py` checks each declared row in the committed captures: the
    kind the design declares passes, a kind it does not declare is refused."""
    from lab import anomalies
    from lab.netlab import read_packets

    path = SAMPLES / f"{name}.expected.json"
    expected = golden.load_expected(path)
    pkts = {v: read_packets(SAMPLES / c["file"]) for v, c in expected["captures"].items()}
    ctx = anomalies.Ctx(expected, pkts, anomalies.DESIGNS[name])
    conn = ctx.conn("client", ctx.all_flows()[flow], 0)
    assert conn is not None
    assert anomalies.EVIDENCE[holds](ctx, "client", conn, side) is None
    assert anomalies.EVIDENCE[fails](ctx, "client", conn, side) is not None


@pytest.mark.skipif(shutil.which("tshark") is None, reason="the lab reads captures with tshark")
def test_listen_overflow_needs_a_listener_answering_others() -> None:
    """The first client of listen_no_accept was answered at once: no listen_overflow."""
    from lab import anomalies
    from lab.netlab import read_packets

    expected = golden.load_expected(SAMPLES / "listen_no_accept.expected.json")
    pkts = {v: read_packets(SAMPLES / c["file"]) for v, c in expected["captures"].items()}
    ctx = anomalies.Ctx(expected, pkts, anomalies.DESIGNS["listen_no_accept"])
    first = ctx.conn("server", ctx.all_flows()[0], 0)
    assert first is not None
    assert anomalies.ev_listen_overflow(ctx, "server", first, "server") is not None
