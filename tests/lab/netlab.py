"""Network-namespace lab: topology, packet drops, captures, socket agents, `ss` snapshots.

Owns: everything that touches the host's network stack for the kernel lab.

- `Lab`: a context manager building three namespaces (client - router - server) joined by
  veth pairs, with forwarding on in the router and an nftables ``forward`` chain there in
  which scenarios add drop rules. Its ``close`` (run from ``__exit__``, so also on
  exceptions and KeyboardInterrupt) stops every process it started and deletes the
  namespaces.
- `Agent`: a `tests/lab/agent.py` process in one namespace, driven by JSON lines.
- `Capture`: a tcpdump or dumpcap process writing a capture file, started only once it
  really listens and stopped with SIGINT.
- `DelayQueue`: `tests/lab/nfqdelay.py` in the router namespace, holding the packets that
  nftables rules (`Lab.queue`) send to its NFQUEUE queues for a fixed delay (nothing dropped).
- `parse_ss`: ``ss -tanH`` lines to dicts; `read_packets`: a capture's TCP segments via
  tshark (never via tcplife).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AGENT = Path(__file__).with_name("agent.py")
NFQDELAY = Path(__file__).with_name("nfqdelay.py")

#: Addresses of the lab (only ever used inside the lab's own namespaces).
CLIENT4, ROUTER_C4, ROUTER_S4, SERVER4 = "10.231.1.2", "10.231.1.1", "10.231.2.1", "10.231.2.2"
CLIENT6, ROUTER_C6, ROUTER_S6, SERVER6 = (
    "fd00:231:1::2", "fd00:231:1::1", "fd00:231:2::1", "fd00:231:2::2")
ROLES = ("client", "router", "server")
NFT_TABLE = "inet tcplifelab"


class LabError(RuntimeError):
    """A lab command failed or a scenario could not be driven."""


#: Set on Ctrl-C / SIGTERM: every scenario's next wait raises, so its lab cleans up.
ABORT = threading.Event()


def pause(seconds: float) -> None:
    """Sleep, unless the run is being aborted (then raise `LabError`)."""
    if ABORT.wait(max(0.0, seconds)):
        raise LabError("aborted")


def missing_tools() -> list[str]:
    """Names of the tools the lab needs that are absent (empty when it can run)."""
    need = ["ip", "nft", "tcpdump", "ss", "tshark", "dumpcap"]
    out = [t for t in need if shutil.which(t) is None]
    if os.geteuid() != 0:
        out.append("root")
    return out


def run(cmd: list[str], *, check: bool = True, timeout: float = 20.0,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; raise `LabError` on failure when ``check``."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          input=input_text, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(cmd)} -> {proc.returncode}: {proc.stderr.strip()}")
    return proc


# --------------------------------------------------------------------------- ss


_SS_LINE = re.compile(r"^(\S+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)")


def _split_endpoint(text: str) -> list[Any]:
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.split("%", 1)[0]
    if host == "*":
        host = "::" if ":" in text[:-len(port) - 1] else "0.0.0.0"
    if host.startswith("::ffff:") and "." in host:
        host = host[len("::ffff:"):]
    return [host, 0 if port == "*" else int(port)]


def parse_ss(text: str) -> list[dict[str, Any]]:
    """Parse ``ss -tanH`` output into ``{"state", "local", "remote"}`` dicts."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        m = _SS_LINE.match(line.strip())
        if not m:
            continue
        out.append({"state": m.group(1), "local": _split_endpoint(m.group(4)),
                    "remote": _split_endpoint(m.group(5))})
    out.sort(key=lambda d: (d["local"][1], d["remote"][1], d["state"]))
    return out


# --------------------------------------------------------------------------- agent


class Agent:
    """A socket agent process inside one namespace; `call` sends a command, waits the answer."""

    def __init__(self, ns: str, label: str) -> None:
        self.label = label
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-u", str(AGENT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            bufsize=1)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()
        self.log: list[tuple[float, dict[str, Any], dict[str, Any]]] = []
        self.call("ping")

    def _reader(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def call(self, op: str, *, check: bool = True, wait: float = 30.0,
             **args: Any) -> dict[str, Any]:
        """Send ``{"op": op, **args}``; return the answer (raise if not ok and ``check``)."""
        cmd = {"op": op, **args}
        assert self.proc.stdin is not None
        if self.proc.poll() is not None:
            raise LabError(f"agent {self.label} is gone (rc={self.proc.returncode})")
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        try:
            line = self._lines.get(timeout=wait)
        except queue.Empty as exc:
            raise LabError(f"agent {self.label}: no answer to {cmd}") from exc
        if line is None:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise LabError(f"agent {self.label} died on {cmd}: {err}")
        reply: dict[str, Any] = json.loads(line)
        self.log.append((time.time(), cmd, reply))
        if check and not reply.get("ok"):
            raise LabError(f"agent {self.label}: {cmd} -> {reply}")
        return reply

    def exit(self) -> None:
        """Make the agent process exit with its sockets open (the kernel closes them)."""
        self.call("exit")
        self.proc.wait(timeout=5)

    def stop(self) -> None:
        """Stop the process if still running (cleanup path)."""
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


# --------------------------------------------------------------------------- capture


@dataclass
class Capture:
    """One capture process (tcpdump, or dumpcap for pcapng) in a namespace."""

    ns: str
    ifaces: list[str]
    path: Path
    tool: str = "tcpdump"
    nano: bool = False
    linktype: str | None = None
    snaplen: int = 256
    proc: subprocess.Popen[bytes] | None = None
    stderr_text: str = ""
    _err_lines: list[str] = field(default_factory=list)

    def command(self) -> list[str]:
        base = ["ip", "netns", "exec", self.ns]
        if self.tool == "dumpcap":
            cmd = base + ["dumpcap", "-q", "-s", str(self.snaplen)]
            for iface in self.ifaces:
                cmd += ["-i", iface]
            return cmd + ["-w", str(self.path)]
        cmd = base + ["tcpdump", "-n", "-Z", "root", "-U", "--immediate-mode",
                      "-s", str(self.snaplen), "-i", self.ifaces[0]]
        if self.nano:
            cmd += ["--time-stamp-precision=nano"]
        if self.linktype:
            cmd += ["-y", self.linktype]
        return cmd + ["-w", str(self.path)]

    def start(self, timeout: float = 10.0) -> None:
        """Start, and return only once the tool listens and the file exists."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        ready = threading.Event()

        def reader() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            for raw in self.proc.stderr:
                line = raw.decode(errors="replace")
                self._err_lines.append(line)
                if "listening on" in line or "Capturing on" in line:
                    ready.set()

        threading.Thread(target=reader, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                time.sleep(0.1)
                raise LabError(f"capture died: {self.command()}: {''.join(self._err_lines)}")
            if ready.is_set() and self.path.exists():
                time.sleep(0.3)
                return
            time.sleep(0.02)
        raise LabError(f"capture did not start: {self.command()}")

    def stop(self) -> str:
        """SIGINT, wait for exit; return the tool's stderr (its packet statistics)."""
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        time.sleep(0.05)
        self.stderr_text = "".join(self._err_lines)
        m = re.search(r"(\d+) packets? dropped by kernel", self.stderr_text)
        if m and int(m.group(1)):
            raise LabError(f"{self.path.name}: {m.group(1)} packets dropped by kernel")
        return self.stderr_text


# --------------------------------------------------------------------------- delay


class DelayQueue:
    """`nfqdelay.py` in a namespace: queue number -> seconds each queued packet is held."""

    def __init__(self, ns: str, delays: dict[int, float]) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-u", str(NFQDELAY),
             *[f"{q}:{d}" for q, d in delays.items()]],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.log: list[str] = []
        lines: queue.Queue[str | None] = queue.Queue()

        def reader() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=reader, daemon=True).start()
        self._lines = lines
        try:
            first = lines.get(timeout=10)
        except queue.Empty:
            first = None
        if first is None or first.strip() != "ready":
            self.stop()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise LabError(f"nfqdelay did not start: {first!r} {err.strip()}")

    def stop(self) -> list[str]:
        """SIGTERM (held packets are accepted first); return the per-packet log lines."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        while True:
            try:
                line = self._lines.get(timeout=1)
            except queue.Empty:
                break
            if line is None:
                break
            self.log.append(line.rstrip("\n"))
        return self.log


# --------------------------------------------------------------------------- packets


@dataclass(frozen=True)
class Packet:
    """One TCP segment as tshark decodes it."""

    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    flags: int
    length: int
    seq: int
    ack: int

    @property
    def syn(self) -> bool:
        return bool(self.flags & 0x02)

    @property
    def fin(self) -> bool:
        return bool(self.flags & 0x01)

    @property
    def rst(self) -> bool:
        return bool(self.flags & 0x04)

    @property
    def ackf(self) -> bool:
        return bool(self.flags & 0x10)

    def flag_text(self) -> str:
        names = [("S", 0x02), ("F", 0x01), ("R", 0x04), ("P", 0x08), (".", 0x10)]
        return "".join(n for n, bit in names if self.flags & bit)


_TSHARK_FIELDS = ["frame.time_epoch", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst",
                  "ipv6.dst", "tcp.dstport", "tcp.flags", "tcp.len", "tcp.seq_raw",
                  "tcp.ack_raw"]


def read_packets(path: Path) -> list[Packet]:
    """TCP segments of a capture (pcap or pcapng, any link type), via tshark."""
    cmd = ["tshark", "-n", "-r", str(path), "-Y", "tcp && !icmp && !icmpv6", "-T", "fields",
           "-E", "separator=\t", "-E", "occurrence=f"]
    for f in _TSHARK_FIELDS:
        cmd += ["-e", f]
    proc = run(cmd, timeout=60)
    out: list[Packet] = []
    for line in proc.stdout.splitlines():
        p = line.split("\t")
        if len(p) < len(_TSHARK_FIELDS):
            continue
        t, s4, s6, sp, d4, d6, dp, fl, ln, seq, ack = p[:11]
        out.append(Packet(float(t), s4 or s6, int(sp), d4 or d6, int(dp), int(fl, 16),
                          int(ln or 0), int(seq or 0), int(ack or 0)))
    return out


def link_type(path: Path) -> str:
    """The encapsulation of the first frame, as tshark names it (e.g. ``1`` = Ethernet)."""
    proc = run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.encap_type", "-c", "1"])
    return proc.stdout.strip()


# --------------------------------------------------------------------------- lab


class Lab:
    """Three namespaces client - router - server; use as a context manager."""

    def __init__(self, tag: str = "lab") -> None:
        suffix = secrets.token_hex(3)
        self.ns = {role: f"tl{role[0]}-{tag[:6]}-{suffix}" for role in ROLES}
        self._created: list[str] = []
        self.agents: list[Agent] = []
        self.captures: list[Capture] = []
        self.delayers: list[DelayQueue] = []
        self.offloads_disabled = False
        self.notes: list[str] = []

    # -- lifecycle
    def __enter__(self) -> Lab:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ip(self, role: str, *args: str) -> None:
        run(["ip", "-n", self.ns[role], *args])

    def nsexec(self, role: str, *args: str, check: bool = True,
               timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.ns[role], *args], check=check, timeout=timeout)

    def build(self) -> None:
        for role in ROLES:
            run(["ip", "netns", "add", self.ns[role]])
            self._created.append(self.ns[role])
            self.ip(role, "link", "set", "lo", "up")
            # No router advertisements, no duplicate address detection (not even for the
            # link-local addresses): DAD delays neighbour discovery by about a second.
            for key in ("net.ipv6.conf.all.accept_ra", "net.ipv6.conf.default.accept_ra",
                        "net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"):
                self.sysctl(role, key, 0)
        c, r, s = (self.ns[x] for x in ROLES)
        run(["ip", "link", "add", "eth0", "netns", c, "type", "veth", "peer", "name", "ethc",
             "netns", r])
        run(["ip", "link", "add", "eth0", "netns", s, "type", "veth", "peer", "name", "eths",
             "netns", r])
        self._disable_offloads([("client", "eth0"), ("router", "ethc"), ("router", "eths"),
                                ("server", "eth0")])
        plan = [("client", "eth0", CLIENT4, CLIENT6), ("router", "ethc", ROUTER_C4, ROUTER_C6),
                ("router", "eths", ROUTER_S4, ROUTER_S6), ("server", "eth0", SERVER4, SERVER6)]
        for role, dev, a4, a6 in plan:
            self.ip(role, "addr", "add", f"{a4}/24", "dev", dev)
            self.ip(role, "-6", "addr", "add", f"{a6}/64", "dev", dev, "nodad")
            self.ip(role, "link", "set", dev, "up")
        self.ip("client", "route", "add", "10.231.2.0/24", "via", ROUTER_C4)
        self.ip("client", "-6", "route", "add", "fd00:231:2::/64", "via", ROUTER_C6)
        self.ip("server", "route", "add", "10.231.1.0/24", "via", ROUTER_S4)
        self.ip("server", "-6", "route", "add", "fd00:231:1::/64", "via", ROUTER_S6)
        self.sysctl("router", "net.ipv4.ip_forward", 1)
        self.sysctl("router", "net.ipv6.conf.all.forwarding", 1)
        self.nft(f"add table {NFT_TABLE}\n"
                 f"add chain {NFT_TABLE} labfwd {{ type filter hook forward priority 0; "
                 f"policy accept; }}\n")
        self.warm_up()

    def warm_up(self, timeout: float = 5.0) -> None:
        """Resolve every neighbour on the client-server path (ARP and IPv6 ND, both ways)
        before any capture starts: a UDP datagram from the client to the server's discard
        port until the server's ICMP port-unreachable comes back, per family. (Without this
        an IPv6 SYN could wait about a second in the router's neighbour queue and arrive
        together with its retransmission.)"""
        script = (
            "import socket, sys, time\n"
            "for addr in sys.argv[1:]:\n"
            "    fam = socket.AF_INET6 if ':' in addr else socket.AF_INET\n"
            f"    deadline = time.monotonic() + {timeout}\n"
            "    while True:\n"
            "        s = socket.socket(fam, socket.SOCK_DGRAM)\n"
            "        s.settimeout(0.2)\n"
            "        s.connect((addr, 9))\n"
            "        try:\n"
            "            s.send(b'x')\n"
            "            s.recv(1)\n"
            "        except ConnectionRefusedError:\n"
            "            break\n"
            "        except OSError:\n"
            "            if time.monotonic() > deadline:\n"
            "                sys.exit(f'no answer from {addr}')\n"
            "        finally:\n"
            "            s.close()\n")
        self.nsexec("client", sys.executable, "-c", script, SERVER4, SERVER6,
                    timeout=timeout * 2 + 5)

    def _disable_offloads(self, devs: list[tuple[str, str]]) -> None:
        if shutil.which("ethtool") is None:
            self.notes.append("ethtool missing: veth offloads left on")
            return
        for role, dev in devs:
            self.nsexec(role, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off",
                        "tx", "off", "rx", "off", check=False)
        self.offloads_disabled = True

    def close(self) -> None:
        """Stop every process started here, then delete the namespaces. Never raises."""
        for cap in self.captures:
            with contextlib.suppress(Exception):
                cap.stop()
        for agent in self.agents:
            with contextlib.suppress(Exception):
                agent.stop()
        for delayer in self.delayers:
            with contextlib.suppress(Exception):
                delayer.stop()
        for ns in reversed(self._created):
            # Any process still inside is one of ours (agents, captures): end it by pid.
            with contextlib.suppress(Exception):
                pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
            with contextlib.suppress(Exception):
                run(["ip", "netns", "del", ns], check=False)
        self._created.clear()

    # -- knobs
    def sysctl(self, role: str, key: str, value: object) -> None:
        self.nsexec(role, "sysctl", "-q", "-w", f"{key}={value}")

    def nft(self, script: str) -> str:
        """Run an nft script in the router (one transaction)."""
        return run(["ip", "netns", "exec", self.ns["router"], "nft", "-a", "-e", "-f", "-"],
                   input_text=script).stdout

    def drop(self, match: str) -> int:
        """Add ``<match> counter drop`` to the router's forward chain; return its handle."""
        out = self.nft(f"add rule {NFT_TABLE} labfwd {match} counter drop\n")
        m = re.search(r"# handle (\d+)", out)
        if not m:
            raise LabError(f"no handle in nft output: {out!r}")
        return int(m.group(1))

    def swap_drop(self, old: int, match: str) -> int:
        """Delete rule ``old`` and add ``<match> counter drop`` in one nft transaction."""
        out = self.nft(f"delete rule {NFT_TABLE} labfwd handle {old}\n"
                       f"add rule {NFT_TABLE} labfwd {match} counter drop\n")
        m = re.search(r"# handle (\d+)", out)
        if not m:
            raise LabError(f"no handle in nft output: {out!r}")
        return int(m.group(1))

    def delay_queue(self, delays: dict[int, float]) -> DelayQueue:
        """Start the router's NFQUEUE delay line (queue number -> seconds held)."""
        d = DelayQueue(self.ns["router"], delays)
        self.delayers.append(d)
        return d

    def queue(self, match: list[str], num: int) -> list[str]:
        """Send the router's forwarded packets matching ``match`` (iptables arguments, e.g.
        ``["-p", "tcp", "--tcp-flags", "ALL", "ACK"]``) to NFQUEUE queue ``num`` (a
        `DelayQueue`). This kernel's nftables lacks the ``queue`` expression
        (CONFIG_NFT_QUEUE), so the rule is an iptables one (the xt NFQUEUE target); needs
        the ``iptables`` command. Returns the rule, for `unqueue`."""
        rule = ["FORWARD", *match, "-j", "NFQUEUE", "--queue-num", str(num)]
        self.nsexec("router", "iptables", "-w", "-A", *rule)
        return rule

    def unqueue(self, rule: list[str]) -> None:
        self.nsexec("router", "iptables", "-w", "-D", *rule)

    def undrop(self, handle: int) -> None:
        self.nft(f"delete rule {NFT_TABLE} labfwd handle {handle}\n")

    def rules(self) -> str:
        return self.nsexec("router", "nft", "list", "chain", *NFT_TABLE.split(), "labfwd").stdout

    # -- processes
    def agent(self, role: str) -> Agent:
        a = Agent(self.ns[role], role)
        self.agents.append(a)
        return a

    def capture(self, role: str, ifaces: list[str], path: Path, **kw: Any) -> Capture:
        cap = Capture(self.ns[role], ifaces, path, **kw)
        self.captures.append(cap)
        return cap

    def ss_all(self, roles: tuple[str, ...] = ("client", "server")) -> dict[str, str]:
        """Run ``ss -tanH`` in each namespace at (nearly) the same moment; raw outputs."""
        procs = {role: subprocess.Popen(["ip", "netns", "exec", self.ns[role], "ss", "-tanH"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True) for role in roles}
        out = {}
        for role, p in procs.items():
            stdout, stderr = p.communicate(timeout=10)
            if p.returncode != 0:
                raise LabError(f"ss in {role}: {stderr}")
            out[role] = stdout
        return out
