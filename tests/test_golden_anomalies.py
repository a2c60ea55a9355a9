"""Golden anomaly tests: tcplife's anomalies on the kernel lab's captures, exactly.

Each ``sample_pcaps/*.expected.json`` lists, per vantage capture, the anomalies that really
happened in that run (decided from the scenario's design and checked in the packets, not
from tcplife): for every listed (connection, side, kind) tcplife must report it, and it
must report nothing else.
"""

from __future__ import annotations

from pathlib import Path

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
