"""Golden anomaly tests: tcplife's anomalies on the kernel lab's captures, exactly.

Each ``sample_pcaps/*.expected.json`` lists, per vantage capture, the anomalies that really
happened in that run (decided from the scenario's design and checked in the packets, not
from tcplife): for every listed (connection, side, kind) tcplife must report it, and it
must report nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tcplife

import golden

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"
EXPECTED = sorted(SAMPLES.glob("*.expected.json"))
CASES = [(path, vantage) for path in EXPECTED
         if "anomalies" in golden.load_expected(path)
         for vantage in golden.vantages(golden.load_expected(path))]


def _expected_rows(expected: dict[str, Any], vantage: str,
                   conns: Any) -> set[tuple[int, str, str]]:
    """(conn_id, side, kind) for the expected anomalies, flows mapped to tcplife's ids."""
    instances: dict[tuple[str, int, str, int], list[int]] = {}
    for row in conns.itertuples():
        key = (golden.norm_addr(row.client_addr), int(row.client_port),
               golden.norm_addr(row.server_addr), int(row.server_port))
        instances.setdefault(key, []).append(int(row.conn_id))
    out = set()
    for item in expected["anomalies"].get(vantage, []):
        ca, cp, sa, sp = item["flow"]
        key = (golden.norm_addr(ca), int(cp), golden.norm_addr(sa), int(sp))
        side = item["side"]
        if key not in instances:
            # A simultaneous open has two clients: tcplife calls client the side whose SYN
            # the capture saw first, the lab the one in the client namespace.
            key = (key[2], key[3], key[0], key[1])
            side = {"client": "server", "server": "client"}[side]
        ids = instances.get(key, [])
        index = int(item.get("instance", 0))
        conn = ids[index] if index < len(ids) else -1  # -1: tcplife lacks the connection
        out.add((conn, side, item["kind"]))
    return out


def test_every_sample_has_anomaly_truth() -> None:
    assert EXPECTED and all("anomalies" in golden.load_expected(p) for p in EXPECTED)


@pytest.mark.parametrize(("path", "vantage"), CASES,
                         ids=[f"{p.name.removesuffix('.expected.json')}-{v}" for p, v in CASES])
def test_golden_anomalies(path: Path, vantage: str) -> None:
    expected = golden.load_expected(path)
    options = {**expected.get("options", {}), **expected.get("anomaly_options", {})}
    result = tcplife.analyze(SAMPLES / expected["captures"][vantage]["file"], **options)
    got = {(int(a.conn_id), str(a.side), str(a.kind)) for a in result.anomalies.itertuples()}
    want = _expected_rows(expected, vantage, result.connections)
    details = "\n".join(f"  {a.conn_id} {a.side} {a.kind}: {a.detail}"
                        for a in result.anomalies.itertuples())
    assert got == want, f"missing {sorted(want - got)}, extra {sorted(got - want)}\n{details}"
