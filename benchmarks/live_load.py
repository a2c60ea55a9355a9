#!/usr/bin/env python3
"""Load and soak tests of ``tcplife live`` (needs root; loopback only, bounded in time).

Everything runs in a private network namespace (``tlv-bench-*``) whose only interface is
``lo`` (MTU 1500, TSO/GSO/GRO off, so segments are real-sized): nginx with its own config
in a temporary directory (the system service is never enabled or started), a load
generator, ``tcplife live -i lo`` writing JSON lines to /dev/null, and (for ``load``)
tcpdump capturing the same traffic at the same time as the reference.

    python3 benchmarks/live_load.py load [--seconds 10] [--connections 8]
    python3 benchmarks/live_load.py soak [--seconds 300] [--rate 200]

``load``: wrk for SECONDS, once with keep-alive connections and once with a new connection
per request; reports packets on the wire (tcpdump), what tcplife handled per second and
what the kernel dropped for each. ``soak``: continuous short connections at RATE per
second for SECONDS; samples tcplife's RSS every 5 s (memory must stay flat once the
TIME_WAIT and closed-linger windows are full, after about 3 minutes).
nginx and wrk come from Debian (``apt-get install nginx-light wrk`` if absent).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORT = 8080

NGINX_CONF = """daemon off;
master_process on;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    default_type application/octet-stream;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {work}/www;
        location = /small {{ }}
    }}
}}
"""

#: A paced client for the soak: RATE short connections per second for SECONDS.
PACED_CLIENT = """
import socket, sys, time
rate, seconds, port = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
start = time.monotonic(); n = 0
while time.monotonic() - start < seconds:
    delay = start + n / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /small HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
        while s.recv(65536):
            pass
        s.close()
    except OSError:
        pass
    n += 1
print(n)
"""


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


class Bench:
    def __init__(self) -> None:
        self.ns = f"tlv-bench-{secrets.token_hex(2)}"
        self.work = Path(tempfile.mkdtemp(prefix="tcplife-live-"))
        self.procs: list[subprocess.Popen[str]] = []

    def __enter__(self) -> Bench:
        for tool in ("nginx", "wrk", "tcpdump", "ip"):
            if shutil.which(tool) is None:
                sys.exit(f"{tool} is missing (apt-get install nginx-light wrk tcpdump iproute2)")
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "mtu", "1500")
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        if shutil.which("ethtool"):
            sh("ip", "netns", "exec", self.ns, "ethtool", "-K", "lo", "tso", "off", "gso",
               "off", "gro", "off", check=False)
        (self.work / "www").mkdir()
        (self.work / "www" / "small").write_text("hello, world\n")
        os.chmod(self.work, 0o755)
        (self.work / "nginx.conf").write_text(NGINX_CONF.format(work=self.work, port=PORT))
        self.nginx = self.start(["nginx", "-p", str(self.work), "-e",
                                 str(self.work / "error.log"), "-c",
                                 str(self.work / "nginx.conf")])
        for _ in range(50):
            ok = sh("ip", "netns", "exec", self.ns, "bash", "-c",
                    f"exec 3<>/dev/tcp/127.0.0.1/{PORT}", check=False).returncode == 0
            if ok:
                break
            time.sleep(0.1)
        else:
            sys.exit("nginx did not come up")
        return self

    def start(self, cmd: list[str], **kw: object) -> subprocess.Popen[str]:
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *cmd], text=True,
                                **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        sh("ip", "netns", "del", self.ns, check=False)
        shutil.rmtree(self.work, ignore_errors=True)

    def live(self, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = self.start([sys.executable, "-m", "tcplife", "live", "-i", "lo", "--format",
                           "jsonl", *args, "tcp", "port", str(PORT)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "listening on lo ..."
        if "listening" not in line:
            sys.exit(f"tcplife live did not start: {line}{proc.stderr.read()}")
        return proc


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=600)
    return err or ""


def run_load(seconds: float, connections: int) -> None:
    print(f"# tcplife live load test, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} CPUs, wrk -t1 -c{connections} -d{seconds:g}s")
    for mode, header in (("keep-alive", []), ("close", ["-H", "Connection: close"])):
        with Bench() as b:
            pcap = b.work / "ref.pcap"
            tcpdump = b.start(["tcpdump", "-i", "lo", "-s", "256", "-B", "32768", "-w",
                               str(pcap), "tcp", "port", str(PORT)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            live = b.live()
            time.sleep(1)
            t0 = time.monotonic()
            wrk = sh("ip", "netns", "exec", b.ns, "wrk", "-t1", f"-c{connections}",
                     f"-d{seconds:g}s", *header, f"http://127.0.0.1:{PORT}/small")
            wall = time.monotonic() - t0
            time.sleep(1)
            tcpdump.send_signal(signal.SIGINT)
            _o, td = tcpdump.communicate(timeout=60)
            t1 = time.monotonic()
            summary = stop(live)
            drain = time.monotonic() - t1
            rps = re.search(r"Requests/sec:\s+([\d.]+)", wrk.stdout)
            captured = re.search(r"(\d+) packets captured", td or "")
            td_drop = re.search(r"(\d+) packets dropped by kernel", td or "")
            frames = re.search(r"(\d+) frames", summary)
            k_drop = re.search(r"dropped by the kernel (\d+)", summary)
            n_wire = int(captured.group(1)) if captured else 0
            n_live = int(frames.group(1)) if frames else 0
            lost = int(k_drop.group(1)) if k_drop else -1
            print(f"{mode:10s} wrk {float(rps.group(1)) if rps else 0:9.0f} req/s | "
                  f"tcpdump {n_wire:8d} pkts ({n_wire / wall:7.0f}/s), kernel drops "
                  f"{td_drop.group(1) if td_drop else '?'} | tcplife {n_live:8d} pkts "
                  f"({n_live / (wall + 2 + drain):7.0f}/s handled), kernel drops {lost} "
                  f"(on lo both copies of a packet count), "
                  f"{100 * n_live / max(1, n_wire):.1f}% of tcpdump's packets; "
                  f"drained {drain:.1f} s after the stop")
            for line in summary.strip().splitlines():
                print("    " + line)


def rss_kb(pid: int) -> int:
    # ip netns exec execs the command, so the pid is python's own
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_soak(seconds: float, rate: float) -> None:
    print(f"# tcplife live soak, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{rate:g} connections/s for {seconds:g} s (time_wait 60 s, closed_linger 120 s)")
    with Bench() as b:
        live = b.live("--history", "1000")
        client = b.start([sys.executable, "-c", PACED_CLIENT, str(rate), str(seconds),
                          str(PORT)], stdout=subprocess.PIPE)
        t0 = time.monotonic()
        samples = []
        while client.poll() is None:
            samples.append((time.monotonic() - t0, rss_kb(live.pid)))
            print(f"  t={samples[-1][0]:6.0f} s  RSS {samples[-1][1] / 1024:7.1f} MiB",
                  flush=True)
            time.sleep(5)
        made = client.stdout.read().strip() if client.stdout else "?"
        summary = stop(live)
    print(f"connections made: {made}")
    print(summary.strip())
    late = [kb for t, kb in samples if t >= 200]
    if late:
        print(f"RSS after 200 s: min {min(late) / 1024:.1f} MiB, max {max(late) / 1024:.1f} "
              f"MiB; peak over the run {max(kb for _, kb in samples) / 1024:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    load = sub.add_parser("load")
    load.add_argument("--seconds", type=float, default=10)
    load.add_argument("--connections", type=int, default=8)
    soak = sub.add_parser("soak")
    soak.add_argument("--seconds", type=float, default=300)
    soak.add_argument("--rate", type=float, default=200)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, packet capture)")
    if args.what == "load":
        run_load(args.seconds, args.connections)
    else:
        run_soak(args.seconds, args.rate)


if __name__ == "__main__":
    main()
