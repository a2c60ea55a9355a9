#!/usr/bin/env python3
"""Throughput and peak memory of `tcplife.analyze_dask` with 1 and 2 workers against
`tcplife.analyze`, on a rotated capture set.

    python3 benchmarks/dask_bench.py [--dir DIR | --source PCAP --packets N --files K
                                      | --build DIR --mix PCAP:SIZE[,PCAP:SIZE...]]
                                     [--runs single,parquet:1,parquet:2,memory:2]

The set: ``--dir``, the capture files of DIR (natural name order); ``--source``, the
first N records of a classic pcap cut into K rotated files in a temporary directory;
``--build``, a multi-GB set written into DIR (tcpdump -C style files of ``--file-size``):
each source of ``--mix`` repeated, its times shifted past the previous copy's end, until
SIZE bytes of it (``2G``, ``500M``) are written, one source after the other in time.

Each run is a fresh process (so peak RSS is its own): ``single`` is `analyze`;
``memory:N`` is `analyze_dask` returning the tables to the client, with a spool directory
in ``--tmp``; ``workers:N`` the same without that directory (each worker spools in its own
scratch directory, the default on a caller's cluster); ``parquet:N`` with ``parquet_dir``
(the workers write the tables, the spool inside the dataset). Each on a local cluster of N
worker processes with one thread each (start-up not counted), handed over as a `Client`;
``memory:N:P``, ``workers:N:P``, ``parquet:N:P``: with P flow partitions (default
`default_partitions`). Reported: wall time, packets/s (TCP segments), MB/s of capture, the
client's peak RSS (VmHWM: with a local cluster the scheduler runs in the client process)
and each worker's. Equality: every run hashes its
four tables after a stable sort by `tcplife.engines.dataset.SORT_KEYS` (a Parquet dataset is read
back for that, after its peak RSS was taken); the hashes must all match ``single``'s.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import logging
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

import tcplife  # noqa: E402
from tcplife.engines.analysis import TABLES  # noqa: E402
from tcplife.engines.dataset import restore  # noqa: E402
from tcplife.engines.distributed import analyze_dask, capture_files  # noqa: E402

DEFAULT_SOURCE = Path("/var/tmp/tcplife-bench/short.pcap")
FALLBACK = Path(__file__).resolve().parent.parent / "sample_pcaps" / "many_short.client.pcap"


def _endian(header: bytes) -> str:
    return "<" if header[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"


def cut(source: Path, packets: int, files: int, outdir: Path) -> list[Path]:
    """The first ``packets`` records of a classic pcap as ``files`` rotated files
    (tcpdump -C names: cap.pcap, cap.pcap1, ...); a short source is repeated, its times
    shifted past the previous copy's end."""
    with source.open("rb") as f:
        header, recs = f.read(24), []
        endian = _endian(header)
        while len(recs) < packets:
            head = f.read(16)
            if len(head) < 16:
                break
            recs.append(head + f.read(struct.unpack(endian + "I", head[8:12])[0]))
    first = struct.unpack(endian + "I", recs[0][:4])[0]
    span = struct.unpack(endian + "I", recs[-1][:4])[0] - first + 1000  # > any timeout
    out: list[bytes] = []
    copy = 0
    while len(out) < packets:
        shift = copy * span
        for r in recs[:packets - len(out)]:
            sec = struct.unpack(endian + "I", r[:4])[0] + shift
            out.append(struct.pack(endian + "I", sec) + r[4:])
        copy += 1
    per = -(-len(out) // files)
    paths = []
    for i in range(files):
        p = outdir / f"cap.pcap{i if i else ''}"
        p.write_bytes(header + b"".join(out[i * per:(i + 1) * per]))
        paths.append(p)
    return paths


def size_arg(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units \
        else int(text)


class _Rotator:
    """Writes records into cap.pcap, cap.pcap1, ... of about ``limit`` bytes each."""

    def __init__(self, outdir: Path, limit: int) -> None:
        self.outdir, self.limit = outdir, limit
        self.paths: list[Path] = []
        self.stream: Any = None
        self.size = 0
        self.header = b""

    def new_file(self, header: bytes) -> None:
        if self.stream is not None:
            self.stream.close()
        i = len(self.paths)
        path = self.outdir / f"cap.pcap{i if i else ''}"
        self.paths.append(path)
        self.stream = path.open("wb", buffering=1 << 22)
        self.stream.write(header)
        self.header, self.size = header, len(header)

    def write(self, data: bytes) -> None:
        if self.size >= self.limit:
            self.new_file(self.header)
        self.stream.write(data)
        self.size += len(data)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


def build(outdir: Path, mix: list[tuple[Path, int]], file_size: int) -> list[Path]:
    """A rotated set of ``mix``'s sources one after the other in time, each repeated
    (times shifted past the previous copy's end + 1000 s) until its share is written."""
    outdir.mkdir(parents=True, exist_ok=True)
    rot = _Rotator(outdir, file_size)
    base: int | None = None  # the first second of the current copy in the output
    for source, share in mix:
        written = 0
        with source.open("rb") as f:
            header = f.read(24)
            endian = _endian(header)
            sec_of = struct.Struct(endian + "I")
            rot.new_file(header)
            first = last = None
            start = base if base is not None else None
            while written < share:
                f.seek(24)
                while written < share:
                    head = f.read(16)
                    if len(head) < 16:
                        break
                    sec = sec_of.unpack_from(head)[0]
                    if first is None:
                        first = sec
                        start = sec if start is None else start
                    last = sec if last is None or sec > last else last
                    data = f.read(sec_of.unpack_from(head, 8)[0])
                    out = sec - first + start  # type: ignore[operator]
                    rot.write(sec_of.pack(out) + head[4:] + data)
                    written += 16 + len(data)
                start = start + (last - first) + 1000  # type: ignore[operator]
            base = start
    rot.close()
    return rot.paths


# ---------------------------------------------------------------------- one run, one process
def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def code_path() -> str:
    """Where this process's tcplife comes from (a worker's may differ from the client's)."""
    import tcplife as code

    return os.path.dirname(code.__file__)


def digest(frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Per table: rows, and a hash of the rows stable-sorted by the table's key."""
    out: dict[str, Any] = {}
    for table, frame in frames.items():
        frame = restore(frame, table)
        if "anomalies" in frame and table == "connections":
            frame["anomalies"] = frame["anomalies"].map(",".join)
        hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        out[table] = [len(frame), hashlib.sha256(hashes.tobytes()).hexdigest()[:16]]
    return out


def child(spec: dict[str, Any]) -> dict[str, Any]:
    logging.getLogger("distributed").setLevel(logging.ERROR)
    files = spec["files"]
    engine, _, rest = spec["run"].partition(":")
    workers, _, parts = rest.partition(":")
    partitions = int(parts) if parts else None
    report: dict[str, Any] = {"run": spec["run"]}
    if engine == "single":
        report["rss_before_mb"] = peak_rss_mb()
        t0 = time.perf_counter()
        result = tcplife.analyze(files)
        report["seconds"] = time.perf_counter() - t0
        report["client_peak_mb"] = peak_rss_mb()
        report["segments"] = result.stats.tcp_segments
        report["digest"] = digest({t: getattr(result, t) for t in TABLES})
        return report
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client, \
            tempfile.TemporaryDirectory(dir=spec.get("tmp")) as tmp:
        report["rss_before_mb"] = peak_rss_mb()
        t0 = time.perf_counter()
        if engine == "parquet":
            got: Any = analyze_dask(files, scheduler=client, parquet_dir=Path(tmp) / "ds",
                                    partitions=partitions)
        else:
            spool = ({"spool_dir": tmp} if engine == "memory" and "spool_dir" in
                     inspect.signature(analyze_dask).parameters
                     else {})  # this client's workers share the machine
            got = analyze_dask(files, scheduler=client, partitions=partitions, **spool)
        report["seconds"] = time.perf_counter() - t0
        report["client_peak_mb"] = peak_rss_mb()
        report["worker_peak_mb"] = sorted(client.run(peak_rss_mb).values())
        report["worker_code"] = sorted(set(client.run(code_path).values()))
        report["segments"] = got.stats.tcp_segments
        client.close()
        frames = ({t: pd.read_parquet(Path(tmp) / "ds" / t) for t in TABLES}
                  if engine == "parquet" else {t: getattr(got, t) for t in TABLES})
        report["digest"] = digest(frames)
    return report


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{spec['run']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--source", type=Path)
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--build", type=Path, help="write a generated set into this directory")
    ap.add_argument("--mix", default=f"{DEFAULT_SOURCE}:2G",
                    help="with --build: PCAP:SIZE,... (default: short.pcap:2G)")
    ap.add_argument("--file-size", type=size_arg, default=size_arg("256M"),
                    help="with --build: bytes per rotated file (default 256M)")
    ap.add_argument("--runs", default="single,parquet:1,parquet:2,memory:2",
                    help="runs in order: single, memory:N[:P], workers:N[:P], parquet:N[:P] "
                    "(N workers, P partitions)")
    ap.add_argument("--tmp", help="where a parquet run writes its dataset (default: $TMPDIR)")
    ap.add_argument("--json", type=Path, help="also write the reports here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        if args.build:
            mix = [(Path(a), size_arg(b)) for a, b in
                   (item.rsplit(":", 1) for item in args.mix.split(","))]
            files = build(args.build, mix, args.file_size)
            print(f"built {len(files)} files in {time.perf_counter() - t0:.0f} s",
                  flush=True)
        elif args.dir:
            files = [Path(p) for p in capture_files(args.dir)]
        else:
            source = args.source or (DEFAULT_SOURCE if DEFAULT_SOURCE.exists() else FALLBACK)
            files = cut(source, args.packets, args.files, Path(tmp))
        size = sum(os.path.getsize(f) for f in files)
        print(f"{len(files)} files, {size / 1e6:.1f} MB; page cache warmed", flush=True)
        for f in files:  # the page cache holds the files for every run
            with f.open("rb") as stream:
                while stream.read(1 << 24):
                    pass
        reports = []
        spec = {"files": [str(f) for f in files], "tmp": args.tmp}
        for run in args.runs.split(","):
            r = run_child({**spec, "run": run})
            reports.append(r)
            workers = (" workers " + "/".join(f"{w:.0f}" for w in r["worker_peak_mb"])
                       + " MB") if "worker_peak_mb" in r else ""
            print(f"{run:<10} {r['seconds']:8.1f} s {r['segments'] / r['seconds'] / 1e3:8.1f}"
                  f" k packets/s {size / r['seconds'] / 1e6:7.1f} MB/s  peak RSS client "
                  f"{r['client_peak_mb']:.0f} MB (at start {r['rss_before_mb']:.0f}){workers}",
                  flush=True)
        print(f"{reports[0]['segments']} TCP segments; rows "
              + ", ".join(f"{t} {n}" for t, (n, _) in reports[0]["digest"].items()))
        same = all(r["digest"] == reports[0]["digest"] for r in reports)
        print("results equal (row hashes after sorting by key)" if same else
              "RESULTS DIFFER: " + json.dumps({r["run"]: r["digest"] for r in reports}))
        if args.json:
            args.json.write_text(json.dumps({"files": len(files), "bytes": size,
                                             "runs": reports}, indent=2))
        if not same:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
