#!/usr/bin/env python3
"""Correctness checks of tcplife on the big benchmark captures (issue 4's "Proof").

    python3 benchmarks/check.py /var/tmp/tcplife-bench/short.pcap --server-closes-first
    python3 benchmarks/check.py /var/tmp/tcplife-bench/keepalive.pcap

For each capture it prints, and checks (exit status 1 if a check fails):

1. connections: tcplife's connection count equals the number of distinct SYNs without ACK
   (one per (4-tuple, initial sequence number): a retransmitted SYN is not a new
   connection, a reused 4-tuple with a new ISN is), counted here straight from the packets
   with the bulk reader, independently of the tracker.
2. with --server-closes-first (nginx with ``Connection: close`` closes first): every
   connection that the capture saw to its end (both FINs and the last ACK: close_kind
   ``fin``) leaves the server in TIME_WAIT, until a SYN reusing the 4-tuple or the 60 s
   timeout, and the client CLOSED without passing through TIME_WAIT, as the kernel does.
3. tcptrace, if installed: its connection count (``tcptrace -n``), and how many it calls
   complete and reset, next to tcplife's; differences are listed, not failed (the two
   tools do not define a connection the same way; see the README).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import tcplife
from tcplife.capture.fastread import read_batches
from tcplife.segment import ACK, SYN


def distinct_syns(path: Path) -> tuple[int, int]:
    """(SYN-only segments, distinct (4-tuple, ISN) among them)."""
    keys: set[tuple[int, int, int, int, int]] = set()
    total = 0
    for batch in read_batches(str(path)):
        rows = np.flatnonzero((batch.flags & (SYN | ACK)) == SYN)
        total += len(rows)
        keys.update(zip(batch.src[rows].tolist(), batch.sport[rows].tolist(),
                        batch.dst[rows].tolist(), batch.dport[rows].tolist(),
                        batch.seq[rows].tolist(), strict=True))
    return total, len(keys)


def check_server_first(result: tcplife.Result) -> tuple[int, int, list[str]]:
    """(connections seen to their end, of which as expected, examples of the others)."""
    conns = result.connections
    done = conns[conns["close_kind"] == "fin"]
    t = result.transitions
    t = t[t["conn_id"].isin(done["conn_id"])]
    # Each side's transitions in order: (to_state, event) lists per (conn_id, side).
    paths: dict[tuple[int, str], list[tuple[str, str]]] = {}
    for cid, side, to, ev in zip(t["conn_id"].tolist(), t["side"].astype(str).tolist(),
                                 t["to_state"].astype(str).tolist(), t["event"].tolist(),
                                 strict=True):
        paths.setdefault((cid, side), []).append((to, ev))
    good, bad = 0, []
    for cid, caddr, cport, cstate in zip(done["conn_id"].tolist(), done["client_addr"],
                                         done["client_port"].tolist(),
                                         done["client_state"].astype(str), strict=True):
        server = paths.get((cid, "server"), [])
        client = paths.get((cid, "client"), [])
        problems = []
        states = [to for to, _ in server]
        if "TIME_WAIT" not in states:
            problems.append(f"server never in TIME_WAIT ({' '.join(states)})")
        else:
            i = states.index("TIME_WAIT")
            if i + 1 < len(server):
                to, ev = server[i + 1]
                if not (to == "CLOSED" and ev in ("timeout", "recv SYN (new incarnation)")):
                    problems.append(f"server left TIME_WAIT by {ev!r}")
        if any(to == "TIME_WAIT" for to, _ in client):
            problems.append("client passed through TIME_WAIT")
        if cstate != "CLOSED":
            problems.append(f"client ends {cstate}")
        if problems:
            bad.append(f"conn {cid} ({caddr}:{cport}): " + "; ".join(problems))
        else:
            good += 1
    return len(done), good, bad


def tcptrace_counts(path: Path) -> dict[str, int] | None:
    if shutil.which("tcptrace") is None:
        return None
    out = subprocess.run(["tcptrace", "-n", str(path)], capture_output=True, text=True,
                         check=False).stdout
    lines = [ln for ln in out.splitlines() if re.match(r"\s*\d+: ", ln)]
    return {"connections": len(lines),
            "complete": sum("(complete)" in ln for ln in lines),
            "reset": sum("(reset)" in ln for ln in lines)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", type=Path)
    ap.add_argument("--server-closes-first", action="store_true")
    args = ap.parse_args()
    ok = True

    t0 = time.perf_counter()
    syn_segments, syns = distinct_syns(args.capture)
    tables = ("connections", "transitions") if args.server_closes_first else ("connections",)
    result = tcplife.analyze(str(args.capture), tables=tables)
    conns = result.connections
    print(f"{args.capture.name}: {result.stats.frames:,} frames, "
          f"{time.perf_counter() - t0:.1f} s")
    print(f"  SYN segments without ACK     {syn_segments:,}")
    print(f"  distinct (4-tuple, ISN)      {syns:,}")
    print(f"  tcplife connections          {len(conns):,}")
    tuples = conns[["client_addr", "client_port", "server_addr", "server_port"]]
    print(f"  distinct 4-tuples            {len(tuples.drop_duplicates()):,}")
    print(f"  close kinds                  {conns['close_kind'].value_counts().to_dict()}")
    if len(conns) != syns:
        ok = False
        print("  FAIL: connections != distinct SYNs")

    if args.server_closes_first:
        seen, good, bad = check_server_first(result)
        print(f"  seen to their end (fin)      {seen:,}; server TIME_WAIT and client CLOSED "
              f"in {good:,}")
        for line in bad[:10]:
            print(f"    {line}")
        if bad:
            ok = False
            print(f"  FAIL: {len(bad):,} connections not closed as the kernel closes them")

    tt = tcptrace_counts(args.capture)
    if tt is not None:
        fin = int((conns["close_kind"] == "fin").sum())
        rst = int((conns["close_kind"] == "rst").sum())
        print(f"  tcptrace connections         {tt['connections']:,} "
              f"(complete {tt['complete']:,}, reset {tt['reset']:,}); "
              f"tcplife fin {fin:,}, rst {rst:,}")
    print("  OK" if ok else "  FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
