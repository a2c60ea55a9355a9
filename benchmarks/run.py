#!/usr/bin/env python3
"""Time tcplife against tshark and tcptrace on benchmark captures.

For each capture (default: the three files that ``benchmarks/make_captures.sh`` writes to
/var/tmp/tcplife-bench) this runs, ``--repeat`` times each and interleaved:

* ``tshark -r F -q -z conv,tcp``      (output to /dev/null)
* ``tcptrace -n -l F``                (output to /dev/null)
* tcplife, from the ``--tcplife-cmd`` template (``{pcap}``, ``{out}`` placeholders)
* with ``--baselines``: a pure-Python walk over the pcap record headers (mmap + struct)
  and ``cat F > /dev/null``

Each measurement times the command's whole wall time and takes its peak RSS from a
fresh measuring process: ``/usr/bin/time -f %M`` (GNU time) when it is installed, else
``getrusage(RUSAGE_CHILDREN).ru_maxrss`` read by a fresh Python wrapper.  Either way the
figure is the largest single process of the command's tree, never a sum, and never
polluted by earlier runs.  The page cache is warmed (the file is read once, like
``cat F > /dev/null``) before each file.

Prints a Markdown table per capture (median wall time, packets/s, peak RSS, ratios) and,
with ``--json PATH``, writes every raw timing.  Standard library only.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DIR = Path("/var/tmp/tcplife-bench")
DEFAULT_CAPTURES = [DEFAULT_DIR / n for n in ("short.pcap", "keepalive.pcap", "short3.pcap")]
DEFAULT_TCPLIFE = "tcplife analyze {pcap} --format jsonl -o {out}"
GNU_TIME = "/usr/bin/time"

# Classic pcap magic numbers (as read little-endian) -> struct byte order of the file.
PCAP_MAGIC = {
    0xA1B2C3D4: "<",  # microseconds, little-endian file
    0xA1B23C4D: "<",  # nanoseconds, little-endian file
    0xD4C3B2A1: ">",  # microseconds, big-endian file
    0x4D3CB2A1: ">",  # nanoseconds, big-endian file
}

# Runs in a fresh interpreter per measurement: argv[1] is where stdout goes, argv[2] where
# stderr goes, the rest is the command.  Prints one JSON object on its own stdout.
WRAPPER = r"""
import json, resource, subprocess, sys, time
out, err, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(out, "wb") as fo, open(err, "wb") as fe:
    t0 = time.perf_counter()
    rc = subprocess.call(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall_s": wall, "maxrss_kb": ru.ru_maxrss, "rc": rc,
                  "user_s": ru.ru_utime, "sys_s": ru.ru_stime}))
"""

# Runs in a fresh interpreter: the "pure Python" floor, walking only the record headers.
WALK = r"""
import mmap, struct, sys
with open(sys.argv[1], "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
    magic, = struct.unpack_from("<I", m, 0)
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    rec = struct.Struct(endian + "IIII")
    off, n, size = 24, 0, len(m)
    while off + 16 <= size:
        _ts, _us, incl, _orig = rec.unpack_from(m, off)
        off += 16 + incl
        n += 1
print(n)
"""


@dataclass
class Tool:
    """One command to time on a capture."""

    name: str
    argv: list[str]
    stdout: str = os.devnull  # where the command's standard output goes
    out_file: str | None = None  # a temp file the command writes, deleted afterwards
    runs: list[dict] = field(default_factory=list)
    skipped: str | None = None

    def ok_runs(self) -> list[dict]:
        return [r for r in self.runs if r["rc"] == 0]

    def median_s(self) -> float | None:
        ok = self.ok_runs()
        return statistics.median(r["wall_s"] for r in ok) if ok else None

    def range_s(self) -> str:
        """The fastest and slowest run: on a shared VM the spread says how far to trust
        the median."""
        ok = [r["wall_s"] for r in self.ok_runs()]
        return f"{min(ok):.2f}-{max(ok):.2f}" if ok else "-"

    def peak_rss_mb(self) -> float | None:
        ok = self.ok_runs()
        return max(r["maxrss_kb"] for r in ok) / 1024 if ok else None


def count_packets(path: Path) -> int:
    """Packets in a capture: walk classic pcap record headers, else ask capinfos."""
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) == 4 and struct.unpack("<I", head)[0] in PCAP_MAGIC:
            endian = PCAP_MAGIC[struct.unpack("<I", head)[0]]
            rec = struct.Struct(endian + "IIII")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                off, n, size = 24, 0, len(m)
                while off + 16 <= size:
                    incl = rec.unpack_from(m, off)[2]
                    off += 16 + incl
                    n += 1
                return n
    if not shutil.which("capinfos"):
        raise SystemExit(f"{path}: not a classic pcap and capinfos is not installed")
    res = subprocess.run(
        ["capinfos", "-c", "-M", "-T", "-r", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(res.stdout.split("\t")[1])


def warm_cache(path: Path) -> None:
    """Read the file once so every tool starts with it in the page cache."""
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass


def run_tree(argv: list[str], stdout: str, stderr, timeout: float | None) -> tuple[float, object]:
    """Run argv in a session of its own (so a timeout stops the whole tree): (wall s, rc)."""
    with open(stdout, "wb") as fo:
        t0 = time.perf_counter()
        with subprocess.Popen(
            argv, stdout=fo, stderr=stderr, stdin=subprocess.DEVNULL, start_new_session=True
        ) as proc:
            try:
                rc: object = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                # SIGINT first: GNU time ignores it and reaps the command it runs, and the
                # Python wrapper kills and reaps its child, so no zombie is left behind.
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                rc = "timeout"
        return time.perf_counter() - t0, rc


def measure(tool: Tool, method: str, timeout: float | None) -> dict:
    """Run the tool once under a fresh measuring process; return wall time, peak RSS, rc.

    method "gnu-time": /usr/bin/time -f %M wraps the command and the wall time is taken
    around it here (GNU time's own overhead is about a millisecond).  method "rusage": a
    fresh Python wrapper runs the command and reports getrusage(RUSAGE_CHILDREN); its
    ru_maxrss has a floor of the wrapper's own size (~10 MB), inherited across the exec.
    """
    with tempfile.TemporaryDirectory(prefix="tcplife-bench-") as tmp:
        err_path = os.path.join(tmp, "stderr")
        info_path = os.path.join(tmp, "info")
        if method == "gnu-time":
            argv = [GNU_TIME, "-f", "%M %U %S", "-o", info_path, *tool.argv]
            with open(err_path, "wb") as err:
                wall, rc = run_tree(argv, tool.stdout, err, timeout)
            run: dict = {"wall_s": wall, "maxrss_kb": 0, "rc": rc}
            # GNU time writes "Command exited with non-zero status N" first when N != 0.
            info = Path(info_path).read_text().split("\n") if os.path.exists(info_path) else []
            fields = [x for x in info if x.strip()][-1:]
            if fields and rc != "timeout":
                maxrss, user, sys_ = fields[0].split()
                run.update(maxrss_kb=int(maxrss), user_s=float(user), sys_s=float(sys_))
        else:
            argv = [sys.executable, "-c", WRAPPER, tool.stdout, err_path, *tool.argv]
            _, rc = run_tree(argv, info_path, subprocess.DEVNULL, timeout)
            if rc == "timeout":
                run = {"wall_s": timeout, "maxrss_kb": 0, "rc": rc}
            else:
                run = json.loads(Path(info_path).read_text())
        with open(err_path, "rb") as err:
            err.seek(max(0, os.path.getsize(err_path) - 2000))
            tail = err.read().decode(errors="replace").strip()
    if tail:
        run["stderr_tail"] = tail
    if tool.out_file:
        out = Path(tool.out_file)
        if out.exists():
            run["out_bytes"] = out.stat().st_size
            out.unlink()
    return run


def make_tools(pcap: Path, args: argparse.Namespace, tmpdir: str) -> list[Tool]:
    """The commands to time on one capture, in the order they are run."""
    p = str(pcap)
    tools = [
        Tool("tshark", ["tshark", "-r", p, "-q", "-z", "conv,tcp"]),
        Tool("tcptrace", ["tcptrace", "-n", "-l", p]),
    ]
    out = os.path.join(tmpdir, "tcplife-out")
    argv = [a.format(pcap=p, out=out) for a in shlex.split(args.tcplife_cmd)]
    tools.append(Tool("tcplife", argv, out_file=out))
    if args.baselines:
        tools.append(Tool("python-walk", [sys.executable, "-c", WALK, p]))
        tools.append(Tool("cat", ["cat", p]))
    for t in tools:
        if not shutil.which(t.argv[0]):
            t.skipped = f"{t.argv[0]} not installed"
    return tools


def fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def report(pcap: Path, packets: int, size: int, tools: list[Tool]) -> str:
    """The Markdown section for one capture."""
    lines = [
        f"### {pcap.name}",
        "",
        f"`{pcap}`: {packets:,} packets, {size / 1e6:,.1f} MB",
        "",
        "| tool | median s | range s | packets/s | peak RSS MB | runs ok |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    by_name = {t.name: t for t in tools}
    for t in tools:
        if t.skipped:
            lines.append(f"| {t.name} | skipped: {t.skipped} | | | | |")
            continue
        med = t.median_s()
        pps = packets / med if med else None
        lines.append(
            f"| {t.name} | {fmt(med, '.2f')} | {t.range_s()} | {fmt(pps, ',.0f')} "
            f"| {fmt(t.peak_rss_mb(), ',.0f')} | {len(t.ok_runs())}/{len(t.runs)} |"
        )
    lines.append("")
    tl = by_name["tcplife"]
    for other in ("tshark", "tcptrace"):
        o = by_name[other]
        lines.append(
            f"- tcplife/{other}: time {ratio(tl.median_s(), o.median_s())}, "
            f"peak RSS {ratio(tl.peak_rss_mb(), o.peak_rss_mb())}"
        )
    for t in tools:
        for i, r in enumerate(t.runs):
            if r["rc"] != 0:
                tail = r.get("stderr_tail", "").splitlines()[-5:]
                lines.append(f"- {t.name} run {i + 1} failed (rc={r['rc']}):")
                lines.extend(f"  `{x}`" for x in tail)
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "captures",
        nargs="*",
        type=Path,
        help=f"capture files (default: {', '.join(p.name for p in DEFAULT_CAPTURES)} "
        f"in {DEFAULT_DIR})",
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool (default 3)")
    ap.add_argument(
        "--tcplife-cmd",
        default=DEFAULT_TCPLIFE,
        help=f"tcplife command template with {{pcap}} and {{out}} (default: {DEFAULT_TCPLIFE!r})",
    )
    ap.add_argument(
        "--baselines",
        action="store_true",
        help="also time a pure-Python record-header walk and cat F > /dev/null",
    )
    ap.add_argument(
        "--rss",
        choices=("auto", "gnu-time", "rusage"),
        default="auto",
        help="how to measure peak RSS: GNU time's %%M, or getrusage in a fresh Python "
        "wrapper (default: gnu-time when /usr/bin/time exists, else rusage)",
    )
    ap.add_argument("--json", type=Path, help="write all raw timings here")
    ap.add_argument("--timeout", type=float, help="seconds before one run is abandoned")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if "{pcap}" not in args.tcplife_cmd:
        ap.error("--tcplife-cmd needs a {pcap} placeholder")

    method = args.rss
    have_time = os.access(GNU_TIME, os.X_OK)
    if method == "gnu-time" and not have_time:
        ap.error(f"{GNU_TIME} is missing: install it with `apt-get install time`")
    if method == "auto":
        method = "gnu-time" if have_time else "rusage"
        if not have_time:
            print(
                f"# note: {GNU_TIME} is missing (install it with `apt-get install time`); "
                "measuring RSS with getrusage in a Python wrapper (floor ~10 MB)",
                file=sys.stderr,
            )

    captures = args.captures or [p for p in DEFAULT_CAPTURES if p.exists()]
    if not captures:
        ap.error(f"no captures given and none in {DEFAULT_DIR}: run benchmarks/make_captures.sh")
    missing = [str(p) for p in captures if not p.is_file()]
    if missing:
        ap.error(f"not found: {', '.join(missing)}")

    results: dict = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "repeat": args.repeat,
        "tcplife_cmd": args.tcplife_cmd,
        "rss_method": method,
        "captures": {},
    }
    sections = []
    tcplife_rss: dict[str, float | None] = {}
    for pcap in captures:
        size = pcap.stat().st_size
        print(f"# {pcap}: counting packets ...", file=sys.stderr, flush=True)
        packets = count_packets(pcap)
        warm_cache(pcap)
        with tempfile.TemporaryDirectory(prefix="tcplife-bench-") as tmpdir:
            tools = make_tools(pcap, args, tmpdir)
            for rep in range(args.repeat):
                for t in tools:
                    if t.skipped:
                        continue
                    run = measure(t, method, args.timeout)
                    t.runs.append(run)
                    print(
                        f"#   {t.name} run {rep + 1}/{args.repeat}: {run['wall_s']:.2f} s, "
                        f"{run['maxrss_kb'] / 1024:,.0f} MB, rc={run['rc']}",
                        file=sys.stderr,
                        flush=True,
                    )
        section = report(pcap, packets, size, tools)
        print(section, flush=True)
        sections.append(section)
        tcplife_rss[pcap.stem] = next(t for t in tools if t.name == "tcplife").peak_rss_mb()
        results["captures"][str(pcap)] = {
            "packets": packets,
            "bytes": size,
            "tools": {
                t.name: {
                    "argv": t.argv,
                    "skipped": t.skipped,
                    "median_s": t.median_s(),
                    "packets_per_s": packets / t.median_s() if t.median_s() else None,
                    "peak_rss_mb": t.peak_rss_mb(),
                    "runs": t.runs,
                }
                for t in tools
            },
        }

    short, short3 = tcplife_rss.get("short"), tcplife_rss.get("short3")
    if short and short3:
        flat = short3 / short
        results["tcplife_rss_short3_over_short"] = flat
        print(
            f"tcplife memory flatness: RSS(short3)/RSS(short) = {short3:,.0f} MB / "
            f"{short:,.0f} MB = {flat:.2f} (1.0 = flat; 3.0 = grows with the capture)"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"raw timings: {args.json}", file=sys.stderr)
    failed = any(
        r["rc"] != 0
        for c in results["captures"].values()
        for t in c["tools"].values()
        for r in t["runs"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
