"""The fast path (tcplife.drive: steady runs absorbed in bulk) gives the plain path's tables.

Every capture in sample_pcaps/ and ../shared/corpus/pcaps, and generated conversations with
loss, retransmission, reordering, duplicates and port reuse, is analysed both ways; every
table must be equal, row for row.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import tcplife

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "pcaps"
CAPTURES = sorted((ROOT / "sample_pcaps").glob("*.pcap*")) + (
    sorted(CORPUS.glob("*.pcap*")) if CORPUS.is_dir() else [])


def assert_same(fast: tcplife.Result, plain: tcplife.Result) -> None:
    for table in ("connections", "transitions", "anomalies", "oddities"):
        pd.testing.assert_frame_equal(getattr(fast, table), getattr(plain, table),
                                      obj=table)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_fast_path_equals_plain_path(path: Path) -> None:
    assert_same(tcplife.analyze(path), tcplife.analyze(path, fast=False))
