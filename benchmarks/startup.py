#!/usr/bin/env python3
"""Start-up: how long tcplife takes to answer on a small capture, beside tshark.

Times whole processes from outside, as a user meets them: ``tcplife --help``, ``tcplife
analyze`` on a 240-packet capture into JSON lines (and a table), and tshark doing the
same jobs, in turns (A B A B ...) so that a drifting machine moves both; prints the median
wall time of each and the ratio to tshark. Run it with the tcplife you want to measure
first on PATH (a plain ``pip install .`` in a venv is what users run: an editable install
adds its import hook, and a machine that sets PYTHONDONTWRITEBYTECODE recompiles every
module on every run).

    python3 benchmarks/startup.py --runs 15 [--tcplife /path/to/venv/bin/tcplife]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO / "sample_pcaps" / "many_short.client.pcapng"


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--tcplife", default=shutil.which("tcplife") or "tcplife")
    parser.add_argument("--capture", type=Path, default=CAPTURE)
    args = parser.parse_args()
    tshark = shutil.which("tshark")
    cap = str(args.capture)
    pairs = [
        ("--help", [args.tcplife, "--help"], [tshark, "-h"] if tshark else None),
        ("analyze -> jsonl", [args.tcplife, "analyze", cap, "--format", "jsonl"],
         [tshark, "-r", cap, "-q", "-z", "conv,tcp"] if tshark else None),
        ("analyze -> table", [args.tcplife, "analyze", cap, "--format", "table"],
         [tshark, "-r", cap, "-q", "-z", "conv,tcp"] if tshark else None),
        ("timeline -> jsonl", [args.tcplife, "timeline", cap, "--format", "jsonl"],
         [tshark, "-r", cap] if tshark else None),
    ]
    print(f"{args.tcplife}, {args.capture.name}, median of {args.runs} runs (wall s)")
    print(f"{'command':<20} {'tcplife':>8} {'tshark':>8} {'ratio':>6}")
    for name, ours, theirs in pairs:
        wall(ours)  # warm the page cache
        mine, other = [], []
        for _ in range(args.runs):
            mine.append(wall(ours))
            if theirs:
                other.append(wall(theirs))
        a = statistics.median(mine)
        b = statistics.median(other) if other else float("nan")
        print(f"{name:<20} {a:>8.3f} {b:>8.3f} {a / b:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
