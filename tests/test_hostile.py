"""Hostile and broken input (issue 7): the mutation corpus of `fuzz/mutate.py` through the
API (both readers, both paths) and through the real CLI.

For every case: `analyze` returns (with warnings that name the frame and the reason) or
raises `CaptureError` with one line naming the input; the plain and fast paths agree on
all of it, as do the plain and bulk readers; what could be read before the damage is still
reported (the tables equal those of the clean prefix); damage inside packets loses no
frame. Through the CLI: exit status 0 or 1 (one ``tcplife: error:`` line, never an
internal error or a traceback), bounded time per case (a generous alarm: a hang detector,
not a speed test) and bounded memory (address space capped at start-up + 1 GiB: a header
claiming 4 GB cannot be honoured).

The corpus is generated at test time into a temporary directory; by default a sample of
each family (about 550 cases); ``TCPLIFE_HOSTILE_FULL=1`` runs all of them (about 2,700).
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import tcplife
from tcplife.capture import CaptureError, ReadStats, read_segments
from tcplife.capture.fastread import read_batches

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))
import mutate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FULL = os.environ.get("TCPLIFE_HOSTILE_FULL") == "1"
CASES = mutate.corpus(sample=None if FULL else 8, random_per_seed=12 if FULL else 8)
BY_NAME = {c.name: c for c in CASES}
TABLES = ("connections", "transitions", "anomalies", "oddities")
#: seconds one case may take before it counts as a hang (machines are shared and slow)
HANG = 20.0


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile")
    mutate.write(CASES, out)
    return out


def outcome(source: object, fast: bool) -> tcplife.Result | str:
    try:
        return tcplife.analyze(source, fast=fast)  # type: ignore[arg-type]
    except CaptureError as exc:
        return f"CaptureError: {exc}"


def assert_same_tables(a: tcplife.Result, b: tcplife.Result) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), obj=name)


def test_corpus_covers_every_family() -> None:
    families = {c.family for c in CASES}
    assert families >= {"truncate", "global_header", "record_header", "pcapng_block",
                        "ip_header", "tcp_header", "flags", "sequence", "time",
                        "not_capture", "bitflip", "splice"}
    assert len(CASES) >= 300


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_api(name: str, corpus_dir: Path) -> None:
    case = BY_NAME[name]
    path = corpus_dir / name
    plain = outcome(path, fast=False)
    fast = outcome(path, fast=True)
    if isinstance(plain, str):  # unreadable: one clear line naming the input, both paths
        assert plain == fast
        assert "\n" not in plain and str(path) in plain
        assert case.prefix is None or case.prefix == 0 or case.data is None
        return
    assert not isinstance(fast, str), fast
    assert_same_tables(plain, fast)
    assert plain.stats == fast.stats
    for warning in plain.warnings:
        assert "\n" not in warning and ("frame" in warning or "byte offset" in warning), warning
    if case.frames is not None:
        assert plain.stats.frames == case.frames
    if case.prefix is not None:
        assert case.data is not None
        clean = outcome(io.BytesIO(case.data[: case.prefix]), fast=False)
        assert not isinstance(clean, str), clean
        assert_same_tables(plain, clean)
        assert plain.stats.frames == clean.stats.frames
        if case.prefix < len(case.data):  # something was cut off: the warning says where
            assert any(f"frame {plain.stats.frames + 1}" in w for w in plain.warnings), \
                plain.warnings


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_bulk_reader_agrees(name: str, corpus_dir: Path) -> None:
    """The lead's numpy reader (`read_batches`) and `read_segments` on every case."""
    path = corpus_dir / name
    plain_stats, fast_stats = ReadStats(), ReadStats()
    try:
        plain = list(read_segments(path, plain_stats))
    except CaptureError as exc:
        with pytest.raises(CaptureError) as info:
            read_batches(path, fast_stats, batch_bytes=4096)
        assert str(info.value) == str(exc)
        return
    fast = [s for b in read_batches(path, fast_stats, batch_bytes=4096) for s in b.segments()]
    assert fast == plain
    assert fast_stats == plain_stats


def _harness(paths: list[Path], command: str = "analyze", fmt: str = "jsonl"
             ) -> list[dict[str, object]]:
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "fuzz" / "cli_harness.py"), "--timeout",
         str(HANG), "--command", command, "--format", fmt, *map(str, paths)],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
        timeout=HANG * len(paths) + 120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def check_cli(row: dict[str, object], fmt: str = "jsonl") -> None:
    status, out, err = row["status"], str(row["stdout"]), str(row["stderr"])
    assert status in (0, 1), row
    assert "Traceback" not in out + err
    assert "internal error" not in err, err
    lines = err.splitlines()
    if status == 1:
        assert len(lines) == 1 and lines[0].startswith("tcplife: error: "), err
        assert out == ""
    else:
        assert all(line.startswith("tcplife: warning: ") for line in lines), err
        if fmt == "jsonl":
            for line in out.splitlines():
                json.loads(line)
        assert "\x1b" not in out
    assert float(row["seconds"]) < HANG  # type: ignore[arg-type]


def test_cli_every_case_bounded(corpus_dir: Path) -> None:
    """Every case through the click CLI in one child process under RLIMIT_AS."""
    rows = _harness([corpus_dir / c.name for c in CASES])
    assert [r["name"] for r in rows] == [c.name for c in CASES]
    for row in rows:
        check_cli(row)
    statuses = [r["status"] for r in rows]
    assert statuses.count(0) > statuses.count(1) > 0


@pytest.mark.parametrize("fmt", ["jsonl", "table"])
def test_cli_every_command_and_format(corpus_dir: Path, fmt: str) -> None:
    """Every command renders what the damage left, as rows and as terminal tables: the
    last case of every family (a full run of all cases is in docs/input.md)."""
    sample = list({c.family: c for c in CASES}.values())
    for command in ("analyze", "timeline", "anomalies", "at +0.5"):
        for row in _harness([corpus_dir / c.name for c in sample], command, fmt):
            check_cli(row, fmt)


def _limit_memory() -> None:  # pragma: no cover - runs in the child
    limit = 3 << 30  # python + pandas + numpy need ~1 GiB of address space; 4 GB must fail
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@functools.cache
def full_corpus() -> dict[str, mutate.Case]:
    return {c.name: c for c in mutate.corpus()}


#: a few cases through ``python -m tcplife`` itself (a process each: slow)
PYTHON_M = ["caplen-ffffffff-snaplen-max-normal_close_client_first.client.pcap-0",
            "time-pcapng-us-max", "gzip-truncated-stream", "directory", "empty",
            "flags-all-eight-opening", "seq-wrap"]


def python_m(args: list[str], stdin: bytes | None = None) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "tcplife", *args], cwd=REPO, env=env,
                          input=stdin, capture_output=True, timeout=60,
                          preexec_fn=_limit_memory, check=False)
    return {"status": proc.returncode, "stdout": proc.stdout.decode(),
            "stderr": proc.stderr.decode(), "seconds": 0}


@pytest.mark.parametrize("name", PYTHON_M)
def test_python_m(name: str, corpus_dir: Path) -> None:
    case = full_corpus()[name]
    path = corpus_dir / name
    if not path.exists():  # not in this sample
        mutate.write([case], corpus_dir)
    row = python_m(["analyze", str(path), "--format", "jsonl"])
    check_cli(row)
    if case.data is not None and len(case.data) > 24:  # a readable file header
        assert row["status"] == 0, row


SAMPLE = REPO / "sample_pcaps" / "normal_close_client_first.client.pcap"


@pytest.mark.parametrize("data", [
    SAMPLE.read_bytes()[:1000], gzip.compress(SAMPLE.read_bytes())[:-30],
    gzip.compress(SAMPLE.read_bytes())[:700], b"hello\n" * 100, b""],
    ids=["truncated", "gzip-truncated", "gzip-cut-early", "text", "empty"])
def test_stdin(data: bytes) -> None:
    """The same through a pipe (nothing seeks): `-` as the capture."""
    row = python_m(["analyze", "-", "--format", "jsonl"], stdin=data)
    check_cli(row)
    assert row["status"] == (0 if data[:2] in (b"\xd4\xc3", b"\x1f\x8b") else 1)
