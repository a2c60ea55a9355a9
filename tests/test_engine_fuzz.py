"""The compiled engine's C loops fuzzed for a bounded time, in CI: libFuzzer under
AddressSanitizer and UndefinedBehaviorSanitizer (engine/fuzz/run.sh). A crash, a leak,
undefined behaviour or a broken invariant of the target (a record outside the buffer, a
frame not counted exactly once) fails the test. That the loops give the Python
reference's answers is the job of the equality tests (test_capture_fastread.py on both
cores, test_capture_creader.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from needs import require_tool

REPO = Path(__file__).resolve().parents[1]
#: how long each target runs here (seconds): a bounded smoke run, not a campaign
SECONDS = int(os.environ.get("TCPLIFE_FUZZ_SECONDS", "45"))


def test_the_reader_loops_survive_fuzzing(tmp_path: Path) -> None:
    require_tool("clang")
    done = subprocess.run(["sh", str(REPO / "engine" / "fuzz" / "run.sh"), str(SECONDS)],
                          cwd=REPO, capture_output=True, text=True, timeout=SECONDS + 300,
                          env=dict(os.environ, TMPDIR=str(tmp_path)))
    work = tmp_path / "tcplife-fuzz-read"
    found = sorted(p.name for p in work.glob("crash-*")) + sorted(
        p.name for p in work.glob("leak-*")) + sorted(p.name for p in work.glob("timeout-*"))
    assert done.returncode == 0 and not found, (found, done.stderr[-4000:])
    runs = [line for line in done.stderr.splitlines() if "stat::number_of_executed_units" in line]
    assert runs and int(runs[-1].split(":")[-1]) > 1000, done.stderr[-2000:]
