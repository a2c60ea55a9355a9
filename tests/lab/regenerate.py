"""Regenerate the kernel-lab captures and expected states.

Owns: the command line ``python -m tests.lab.regenerate [NAMES...] --out sample_pcaps/``
and `regenerate`, which runs scenarios (several at once: each has its own namespaces) and
writes their files. Needs root, ip, nft, tcpdump, ss, tshark (dumpcap for pcapng).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from types import FrameType
from typing import Any

from .netlab import ABORT, missing_tools
from .scenarios import SCENARIOS, Outcome, run_scenario

#: Scenarios whose runs take longest start first, so that parallel runs finish together.
_LONG_FIRST = ("handshake_ack_dropped", "server_never_closes", "syn_dropped",
               "clean_traffic", "simultaneous_close", "final_ack_dropped", "many_short",
               "peer_vanishes_mid_transfer", "keepalive_dead_peer")


def regenerate(names: list[str] | None, out: Path, jobs: int = 4, attempts: int = 3,
               log: bool = True) -> dict[str, Outcome]:
    """Run the named scenarios (all if None) into ``out``; return their outcomes."""
    todo = list(names or SCENARIOS)
    unknown = [n for n in todo if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}; "
                         f"known: {', '.join(SCENARIOS)}")
    todo.sort(key=lambda n: (n not in _LONG_FIRST, _LONG_FIRST.index(n)
                             if n in _LONG_FIRST else 0))
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Outcome] = {}

    def one(name: str) -> Outcome:
        outcome = run_scenario(name, out, attempts=attempts)
        if log:
            status = ("skipped: " + outcome.skipped if outcome.skipped
                      else "ok" if not outcome.problems else "FAILED")
            print(f"{name}: {status} in {outcome.seconds:.1f}s (attempt {outcome.attempts})",
                  file=sys.stderr, flush=True)
            for line in outcome.problems + [f"note: {n}" for n in outcome.notes]:
                print(f"  {line}", file=sys.stderr, flush=True)
        return outcome

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    futures = [pool.submit(one, name) for name in todo]
    try:
        for fut in as_completed(futures):
            outcome = fut.result()
            results[outcome.name] = outcome
    except BaseException:
        ABORT.set()  # each running scenario raises at its next wait and cleans its lab up
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return {name: results[name] for name in todo}


README_HEAD = """\
# sample_pcaps: kernel-lab captures with the kernel's own states

Every file here is written by `python -m tests.lab.regenerate --out sample_pcaps/` (root;
ip, nft, tcpdump, dumpcap, tshark, ss; ethtool optional; `fins_cross_acks_delayed` also
needs the `iptables` command, Debian package `iptables`, for the NFQUEUE target that this
kernel's nftables lacks, and is skipped without it). Each scenario runs real sockets
in three fresh network namespaces, client (10.231.1.2, fd00:231:1::2) - router
(forwarding, nftables drops) - server (10.231.2.2, fd00:231:2::2), port 8080, veth
offloads off, IPv6 DAD off, neighbours (ARP, ND) resolved before the captures start. The
truth is `ss -tanH` run in both namespaces at named checkpoints, never tcplife.
`tests/test_golden.py` compares tcplife against these files (rules in `tests/golden.py`);
`tests/test_lab.py` regenerates them afresh and does the same.

Files per scenario NAME:

- `NAME.client.pcap`: tcpdump on the client's veth (client vantage); `NAME.server.pcap`:
  tcpdump on the server's veth (server vantage). Both from the same run, snaplen 256 (128
  where the table says so).
- `NAME.any.pcap` (some): `tcpdump -i any -y LINUX_SLL2` in the server namespace.
- `NAME.client.pcapng` (some): dumpcap on the client's `eth0` and `lo` (two interfaces).
- `NAME.expected.json`: `scenario`, `description`, `kernel`, `options` (tcplife.analyze
  keyword arguments matching the sysctls set, seconds), `sysctls`, `hosts`, `captures`
  (vantage -> `file`, `visible_flows` = 4-tuples client addr/port, server addr/port seen in
  that file by tshark, `namespace`, `link_type`), `checkpoints` (`name`, `ts` =
  `time.time()` just before `ss`, `ss` = every socket line of each namespace), and
  `lab_notes`. The last checkpoint carries `"end": true`: the capture's end, after which no
  TCP segment was captured in any of the run's captures (the lab takes it after the
  scenario's last step and stops the captures at once; for the samples made before it did,
  their last checkpoint was checked to qualify and flagged). `option_hints` (some): kernel
  settings of the run that tcplife has no option for, and what follows. A checkpoint may
  carry `blind` (vantage -> the side whose state that capture cannot show at that moment
  because the router dropped a segment between the vantage points) with `blind_why`; the
  golden comparison skips that side there.
- `anomalies` (capture name -> rows `{"flow": [client addr, client port, server addr, server
  port], "instance": n, "side": "client"|"server", "kind": KIND}`) and `anomaly_options`
  (`close_wait_linger` seconds, `time_wait_threshold` sockets): what really happened in that
  run, decided from the scenario's design and checked in its captures with tshark (never
  tcplife) by `tests/lab/anomalies.py`, which also audits that every RST, retransmission,
  keep-alive probe, long CLOSE-WAIT and TIME-WAIT pile-up in the captures is either listed
  or explained. `instance` counts connections on one 4-tuple (0 = first). A row is left out
  of a capture that cannot show it (`lab_notes` says why). `python -m tests.lab.anomalies
  sample_pcaps/` recomputes these keys from the committed captures without re-running the
  lab.

Anomaly kinds (side = the side the anomaly belongs to): `refused` (server: SYN answered by
RST); `syn_unanswered` (client: SYNs with no answer); `listen_overflow` (server: a listener
that answered other clients just before left a SYN unanswered, or repeated its SYN-ACK after
the client's ACK: accept queue full); `handshake_incomplete` (server: SYN-ACK sent,
handshake never completed); `rst_on_close_unread_data` (RST sender: the application closed
with received data unread); `abortive_close` (RST sender: an application's RST from an open
state without unread data, e.g. SO_LINGER 0; the wire cannot tell the two apart, so the
golden comparison accepts an `abortive_close` row of confidence `possible` for either);
`lingering_close_wait` (side in CLOSE-WAIT longer than `close_wait_linger`);
`fin_wait_2_timeout` (side whose orphaned FIN-WAIT-2 expired); `missing_final_ack` (side
whose retransmitted FIN was never acknowledged); `final_ack_delayed` (side that
retransmitted its FIN before an ACK of it arrived, and one did arrive); `simultaneous_close`
(each side that went through CLOSING); `simultaneous_open` (client = lower (addr, port):
both sent a bare SYN); `half_close` (first FIN sender that then still received and ACKed
data); `write_after_close` (side that had closed and answered the peer's data with RST);
`half_open` (side transmitting one segment, data or a keep-alive probe, 3+ times into
silence; a kernel's give-up after it, silent or with the keep-alive RST, is part of it, not
an application's abort); `port_reuse` (client, new instance: SYN on a 4-tuple whose previous
instance still had a socket); `time_wait_accumulation` (side in TIME-WAIT, one row per host,
on the connection at the peak, when at least `time_wait_threshold` sockets of that host are
in TIME-WAIT at once, or, for a client, a quarter of its ephemeral port range: `options`
port_range_low/high, else Linux's 32768-60999); `keepalive` (prober); `mid_stream` (client:
capture began after the handshake).

Every checkpoint was taken with no TCP segment within 50 ms (checked against all
captures; a run that fails this, or whose ss states differ from what the scenario
expects, is retried). Nanosecond pcap: the server capture of normal_close_client_first,
the client capture of server_never_closes, both ipv6 captures.

| scenario | what happens | captures | states at the checkpoints | anomalies |
| --- | --- | --- | --- | --- |
"""


def anomaly_summary(data: dict[str, Any]) -> str:
    """The README's anomalies cell: each row once, with the captures that leave it out."""
    seen: dict[tuple[str, str, int], set[str]] = {}
    for vantage, rows in data.get("anomalies", {}).items():
        for row in rows:
            seen.setdefault((row["kind"], row["side"], row["instance"]), set()).add(vantage)
    if not seen:
        return "none"
    out = []
    for (kind, side, instance), where in seen.items():
        text = f"`{kind}` ({side}" + (f", instance {instance}" if instance else "") + ")"
        missing = [v for v in data["captures"] if v not in where]
        if missing:
            text += f" (not in: {', '.join(missing)})"
        out.append(text)
    return "; ".join(out)


def write_readme(out: Path) -> Path:
    """`out/README.md` listing every scenario whose expected file is in ``out``."""
    lines = [README_HEAD]
    for name, spec in SCENARIOS.items():
        path = out / f"{name}.expected.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        caps = ", ".join(f"`{c['file']}`" for c in data["captures"].values())
        opts = f" Options: {data['options']}." if data["options"] else ""
        lines.append(f"| `{name}` | {spec.description}{opts} | {caps} | "
                     f"{spec.expected_summary} | {anomaly_summary(data)} |\n")
    dest = out / "README.md"
    dest.write_text("".join(lines))
    return dest


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.lab.regenerate", description=__doc__)
    ap.add_argument("names", nargs="*", help=f"scenarios (default all): {', '.join(SCENARIOS)}")
    ap.add_argument("--out", type=Path, default=Path("sample_pcaps"))
    ap.add_argument("--jobs", "-j", type=int, default=4)
    ap.add_argument("--attempts", type=int, default=3)
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = ap.parse_args(argv)
    if args.list:
        for name, spec in SCENARIOS.items():
            print(f"{name}: {spec.description}")
        return 0
    missing = missing_tools()
    if missing:
        print(f"cannot run the lab, missing: {', '.join(missing)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_term)
    t0 = time.time()
    try:
        results = regenerate(args.names or None, args.out, jobs=args.jobs,
                             attempts=args.attempts)
    except KeyboardInterrupt:
        print("interrupted: every lab was cleaned up", file=sys.stderr)
        return 130
    failed = [n for n, o in results.items() if o.problems]
    skipped = [n for n, o in results.items() if o.skipped]
    write_readme(args.out)
    print(f"{len(results) - len(failed) - len(skipped)} scenarios written, {len(skipped)} "
          f"skipped, {len(failed)} failed "
          f"in {time.time() - t0:.1f}s", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
