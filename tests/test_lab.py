"""Kernel-lab test: regenerate every scenario with real sockets, then compare tcplife.

Owns: running `tests/lab` end to end in a temporary directory (needs root, ip, nft,
tcpdump, ss, tshark, dumpcap; skipped otherwise) and the golden comparison
(`golden.compare`, `golden.compare_end` at the end checkpoint every run records,
`golden.compare_anomalies`) on those fresh captures. A scenario whose extra command is
missing (`Scenario.needs`: iptables for fins_cross_acks_delayed) is skipped, naming it.
Scenarios run in parallel (about a minute).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lab.netlab import missing_tools
from lab.regenerate import regenerate
from lab.scenarios import SCENARIOS

import golden

pytestmark = pytest.mark.lab

_MISSING = missing_tools()
if _MISSING:
    pytest.skip(f"kernel lab needs {', '.join(_MISSING)}", allow_module_level=True)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("lab")
    return out, regenerate(None, out, jobs=4, log=False)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_lab_scenario(fresh: tuple[Path, dict[str, Any]], name: str) -> None:
    out, results = fresh
    outcome = results[name]
    if outcome.skipped:
        pytest.skip(outcome.skipped)
    assert not outcome.problems, "\n".join(outcome.problems)
    path = out / f"{name}.expected.json"
    expected = golden.load_expected(path)
    assert expected["checkpoints"], "no checkpoint recorded"
    assert golden.end_checkpoint(expected) is expected["checkpoints"][-1], "no end checkpoint"
    problems: list[str] = []
    for vantage in golden.vantages(expected):
        problems += golden.compare(path, vantage)
        problems += golden.compare_end(path, vantage)
        if "anomalies" in expected:
            problems += golden.compare_anomalies(path, vantage)
    assert problems == [], "\n".join(problems)
