"""Golden anomaly tests: tcplife's anomalies on the kernel lab's captures, exactly.

Each ``sample_pcaps/*.expected.json`` lists, per vantage capture, the anomalies that really
happened in that run (decided from the scenario's design and checked in the packets, not
from tcplife): for every listed (connection, side, kind) tcplife must report it, and it
must report nothing else.
"""

from __future__ import annotations

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
