#!/usr/bin/env python3
"""Throughput of `tcplife.analyze_dask` with 1 and 2 workers against `tcplife.analyze`.

    python3 benchmarks/dask_bench.py [--dir DIR | --source PCAP --packets N --files K]

With ``--dir``: the capture files of DIR (natural name order). Otherwise the first N
records of a classic pcap (default: /var/tmp/tcplife-bench/short.pcap from
make_captures.sh, else sample_pcaps/many_short.client.pcap repeated) are cut into K
rotated files in a temporary directory. Every engine analyses the same list; the script
checks the results are equal and prints packets/s (TCP segments) and MB/s of capture, the
cluster's start-up time apart. Workers are processes with one thread each.
"""

from __future__ import annotations

import argparse
import logging
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

import tcplife  # noqa: E402
from tcplife.distributed import analyze_dask, capture_files  # noqa: E402

DEFAULT_SOURCE = Path("/var/tmp/tcplife-bench/short.pcap")
FALLBACK = Path(__file__).resolve().parent.parent / "sample_pcaps" / "many_short.client.pcap"


def cut(source: Path, packets: int, files: int, outdir: Path) -> list[Path]:
    """The first ``packets`` records of a classic pcap as ``files`` rotated files
    (tcpdump -C names: cap.pcap, cap.pcap1, ...); a short source is repeated, its times
    shifted past the previous copy's end."""
    with source.open("rb") as f:
        header, recs = f.read(24), []
        endian = "<" if header[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
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


def run(label: str, fn, segments: int, size: int) -> tcplife.Result:
    t0 = time.perf_counter()
    result = fn()
    dt = time.perf_counter() - t0
    print(f"{label:<28} {dt:7.2f} s  {segments / dt / 1e3:8.1f} k packets/s  "
          f"{size / dt / 1e6:7.1f} MB/s", flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--source", type=Path)
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--workers", default="1,2", help="worker counts to try (default 1,2)")
    args = ap.parse_args()
    logging.getLogger("distributed").setLevel(logging.WARNING)
    from distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        if args.dir:
            files = [Path(p) for p in capture_files(args.dir)]
        else:
            source = args.source or (DEFAULT_SOURCE if DEFAULT_SOURCE.exists() else FALLBACK)
            files = cut(source, args.packets, args.files, Path(tmp))
        size = sum(os.path.getsize(f) for f in files)
        want = tcplife.analyze(files)  # a warm-up: the page cache holds the files
        segments = want.stats.tcp_segments
        print(f"{len(files)} files, {size / 1e6:.1f} MB, {segments} TCP segments, "
              f"{len(want.connections)} connections")
        want = run("single process (analyze)", lambda: tcplife.analyze(files), segments, size)
        for n in (int(w) for w in args.workers.split(",")):
            t0 = time.perf_counter()
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                              dashboard_address=":0") as cluster, Client(cluster) as client:
                print(f"  (cluster of {n} started in {time.perf_counter() - t0:.1f} s)")
                got = run(f"dask, {n} worker{'s' if n > 1 else ''}",
                          lambda client=client: analyze_dask(files, scheduler=client),
                          segments, size)
            for table in ("connections", "transitions", "anomalies"):
                pd.testing.assert_frame_equal(getattr(got, table), getattr(want, table))
        print("results equal")


if __name__ == "__main__":
    main()
