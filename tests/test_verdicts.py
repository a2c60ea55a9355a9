"""Every anomaly row's sentence agrees with its connection's transitions, mechanically.

A detector renders its sentence from data: the states it asserts (`Anomaly.claims`, "this
side was in this state at this instant") and the frames it relies on (`Anomaly.frames`).
Here every claim of every row, on every committed lab capture and every capture of the
third-party corpus (``../shared/corpus``), is checked against ``state_at`` over the
transitions table (a side not listed is CLOSED), and the vocabulary of each row
(severity, confidence) against the contract.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import tcplife
from tcplife.core.events import Anomaly
from tcplife.core.states import ANOMALY_KINDS, CONFIDENCES, SEVERITIES
from tcplife.output.frames import state_at

from needs import require_corpus

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_pcaps"
CORPUS = REPO.parent / "shared" / "corpus" / "pcaps"


def _sample_cases() -> list[tuple[Path, dict[str, float]]]:
    cases = []
    for expected in sorted(SAMPLES.glob("*.expected.json")):
        data = json.loads(expected.read_text())
        options = {**data.get("options", {}), **data.get("anomaly_options", {})}
        for capture in data["captures"].values():
            cases.append((SAMPLES / capture["file"], options))
    return cases


def _corpus_cases() -> list[tuple[Path, dict[str, float]]]:
    return [(p, {}) for p in sorted(CORPUS.glob("*")) if p.is_file()] if CORPUS.is_dir() \
        else []


def check_claims(path: Path, options: dict[str, float]) -> list[str]:
    rows: list[Anomaly] = []
    result = tcplife.analyze(path, on_event=lambda ev: rows.append(ev)
                             if isinstance(ev, Anomaly) else None, **options)
    problems = []
    for a in rows:
        if a.kind not in ANOMALY_KINDS:
            problems.append(f"{path.name}: unknown kind {a.kind}")
        if a.severity not in SEVERITIES or a.confidence not in CONFIDENCES:
            problems.append(f"{path.name}: {a.kind} {a.severity}/{a.confidence}")
        if a.frame is not None and a.frames[:1] != (a.frame,):
            problems.append(f"{path.name}: {a.kind}: frame {a.frame} not first of "
                            f"{a.frames}")
        for side, state, ts_ns in a.claims:
            snap = state_at(result.connections, result.transitions,
                            pd.Timestamp(ts_ns, unit="ns", tz="UTC"))
            mine = snap[(snap["conn_id"] == a.conn_id) & (snap["side"] == side)]
            actual = str(mine["state"].iloc[0]) if len(mine) else "CLOSED"
            if actual != state.value:
                problems.append(f"{path.name}: conn {a.conn_id} {a.kind}: says {side} was "
                                f"{state.value} at {ts_ns}, the transitions say {actual}: "
                                f"{a.detail}")
    return problems


@pytest.mark.parametrize(("path", "options"), _sample_cases(),
                         ids=lambda x: x.name if isinstance(x, Path) else "")
def test_sample_sentences_agree_with_transitions(path: Path,
                                                 options: dict[str, float]) -> None:
    assert check_claims(path, options) == []


def test_corpus_sentences_agree_with_transitions() -> None:
    cases = _corpus_cases()
    if not cases:
        require_corpus()
    problems = [p for path, options in cases for p in check_claims(path, options)]
    assert problems == []


def test_claims_are_checked() -> None:
    """The check can fail: a claim the transitions contradict is reported."""
    from tcplife.core.states import State

    path = SAMPLES / "server_never_closes.server.pcap"
    real = tcplife.detect.LingeringCloseWait.on_connection

    def lying(self, v):  # type: ignore[no-untyped-def]
        for a in real(self, v):
            yield a._replace(claims=((a.side, State.ESTABLISHED, a.ts_ns + 1),))

    tcplife.detect.LingeringCloseWait.on_connection = lying  # type: ignore[method-assign]
    try:
        problems = check_claims(path, {"fin_wait_2": 3.0, "close_wait_linger": 2.0})
    finally:
        tcplife.detect.LingeringCloseWait.on_connection = real  # type: ignore
    assert any("says server was ESTABLISHED" in p for p in problems), problems
