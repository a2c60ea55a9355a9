#!/usr/bin/env python3
"""Correctness checks of tcplife on the big benchmark captures (issue 4's "Proof").

    python3 benchmarks/check.py /var/tmp/tcplife-bench/short.pcap --close-order
    python3 benchmarks/check.py /var/tmp/tcplife-bench/keepalive.pcap

For each capture it prints, and checks (exit status 1 if a check fails):

1. connections: tcplife's connection count equals the number of distinct SYNs without ACK
   (one per (4-tuple, initial sequence number): a retransmitted SYN is not a new
   connection, a reused 4-tuple with a new ISN is), counted here straight from the packets
   with the bulk reader, independently of the tracker.
2. with --close-order: for every connection whose two FINs the capture shows, the side(s)
   that pass through TIME_WAIT are the ones the FIN order, read straight from the
   packets, says the kernel put there: the side that closed first, or both after a
   simultaneous close (the second FIN sent before the first arrived: it does not
   acknowledge it), and no other. (nginx with ``Connection: close`` closes first, but wrk
   often closes at the same moment, having read the whole response: the capture shows
   all three cases.)
3. tcptrace, if installed: its connection count (``tcptrace -n``), and how many it calls
   complete and reset, next to tcplife's; differences are listed, not failed (the two
   tools do not define a connection the same way; see docs/performance.md).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

import tcplife
from tcplife.capture.fastread import read_batches
from tcplife.core.segment import ACK, FIN, SYN


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


def close_order(path: Path) -> dict[int, str]:
    """Who closed first in each connection seen to its end, straight from the packets:
    first SYN frame -> ``client``, ``server`` (that side's FIN came first and the other's
    FIN acknowledged it) or ``both`` (each FIN was sent before the other arrived: the
    second FIN does not acknowledge the first: a simultaneous close)."""
    inst: dict[tuple[int, int, int, int], dict[str, int]] = {}
    out: dict[int, str] = {}
    for batch in read_batches(str(path)):
        rows = np.flatnonzero((batch.flags & (SYN | FIN)) != 0)
        for frame, src, sport, dst, dport, seq, ack, flags, plen in zip(
                *(getattr(batch, c)[rows].tolist() for c in (
                    "frame", "src", "sport", "dst", "dport", "seq", "ack", "flags",
                    "payload_len")), strict=True):
            key = (src, sport, dst, dport)
            rkey = (dst, dport, src, sport)
            if flags & (SYN | ACK) == SYN:
                cur = inst.get(key)
                if cur is None or cur["isn"] != seq:
                    inst[key] = inst[rkey] = {"syn": frame, "isn": seq, "caddr": src,
                                              "cport": sport}
                continue
            cur = inst.get(key)
            if cur is None or not flags & FIN:
                continue
            side = "client" if (src, sport) == (cur["caddr"], cur["cport"]) else "server"
            if "fin_" + side in cur:
                continue  # a retransmitted FIN
            cur["fin_" + side] = (seq + plen + (1 if flags & SYN else 0)) & 0xFFFFFFFF
            other = "server" if side == "client" else "client"
            if "fin_" + other in cur and cur["syn"] not in out:
                acks_first = flags & ACK and \
                    ((ack - cur["fin_" + other] - 1) & 0xFFFFFFFF) < 1 << 31
                out[cur["syn"]] = other if acks_first else "both"
    return out


def check_close(result: tcplife.Result, order: dict[int, str]) -> tuple[Counter, list[str]]:
    """For each connection both FINs of which were seen: which sides tcplife put in
    TIME_WAIT, against what the FIN order says the kernel did (the first closer, or both
    sides after a simultaneous close, and no other side)."""
    conns = result.connections
    t = result.transitions
    tw = t[t["to_state"].astype(str) == "TIME_WAIT"]
    in_tw = set(zip(tw["conn_id"].tolist(), tw["side"].astype(str).tolist(), strict=True))
    seen: Counter = Counter()
    bad = []
    for cid, first, caddr, cport in zip(conns["conn_id"].tolist(),
                                        conns["first_frame"].tolist(), conns["client_addr"],
                                        conns["client_port"].tolist(), strict=True):
        who = order.get(first)
        if who is None:
            continue
        want = {"client": {"client"}, "server": {"server"}, "both": {"client", "server"}}[who]
        got = {side for side in ("client", "server") if (cid, side) in in_tw}
        seen[who] += 1
        if got != want:
            bad.append(f"conn {cid} ({caddr}:{cport}): first closer {who}, TIME_WAIT in "
                       f"{sorted(got) or 'none'}")
    return seen, bad


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
    ap.add_argument("--close-order", action="store_true",
                    help="check which side ends in TIME_WAIT against the FIN order")
    args = ap.parse_args()
    ok = True

    t0 = time.perf_counter()
    syn_segments, syns = distinct_syns(args.capture)
    tables = ("connections", "transitions") if args.close_order else ("connections",)
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

    if args.close_order:
        seen, bad = check_close(result, close_order(args.capture))
        print(f"  both FINs seen                {sum(seen.values()):,}: first closer server "
              f"{seen['server']:,}, client {seen['client']:,}, simultaneous {seen['both']:,}")
        print(f"  TIME_WAIT on the side(s) the FIN order says: "
              f"{sum(seen.values()) - len(bad):,}")
        for line in bad[:10]:
            print(f"    {line}")
        if bad:
            ok = False
            print(f"  FAIL: {len(bad):,} connections whose TIME_WAIT side disagrees")

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
