"""Kernel-lab scenarios: real sockets driven through TCP corner cases, with `ss` as truth.

Owns: the scenario functions, their registry (`SCENARIOS`), and `run_scenario`, which
builds a `netlab.Lab`, captures at the client and server vantage points (plus an ``any``
SLL2 capture and a two-interface pcapng for some), runs one scenario, checks that every
checkpoint was taken in a quiet moment (no segment within `QUIET` seconds) and that the
kernel did what the scenario expects, and writes ``NAME.*.pcap*`` and
``NAME.expected.json`` (format in `sample_pcaps/README.md`).

A scenario is a function of a `Run`, the small DSL: ``r.c(op, ...)`` / ``r.s(op, ...)`` send
an agent command to the client / server, ``r.settle()`` sleeps, ``r.checkpoint(name,
expect)`` records ``ss -tanH`` in both namespaces (and checks the states against
``expect``), ``r.lab.drop(match)`` / ``r.lab.undrop(handle)`` add or remove router drops,
``r.lab.delay_queue`` / ``r.lab.queue`` hold chosen packets in the router for a while
(NFQUEUE, `nfqdelay.py`). Every run ends with ``r.end_checkpoint()`` (the scenario calls it
as its last step where the states change after its last checkpoint, else `run_once` does):
``ss`` at the capture's end, flagged ``end``, after which the captures stop at once and no
segment may have been captured.
"""

from __future__ import annotations

import ipaddress
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .anomalies import annotate, ground_truth
from .netlab import (
    ABORT,
    CLIENT4,
    CLIENT6,
    SERVER4,
    SERVER6,
    Agent,
    Capture,
    Lab,
    LabError,
    Packet,
    link_type,
    parse_ss,
    pause,
    read_packets,
)

PORT = 8080
#: A checkpoint must have no TCP segment (in any capture) this close to it, in seconds.
QUIET = 0.05
SETTLE = 0.5
#: Longest one-way transit through the lab's router (it is microseconds in practice).
TRANSIT = 0.02


class ScenarioError(LabError):
    """The run did not go as the scenario needs (retryable: timing under load)."""


# --------------------------------------------------------------------------- DSL


@dataclass
class Checkpoint:
    name: str
    ts: float
    ts_end: float
    raw: dict[str, str]
    ss: dict[str, list[dict[str, Any]]]
    #: the capture's end: no segment after it until the captures stop (`end_checkpoint`)
    end: bool = False


@dataclass
class Run:
    """One execution of a scenario: the lab, the two agents, the checkpoints."""

    spec: Scenario
    lab: Lab
    workdir: Path
    client: Agent
    server: Agent
    captures: dict[str, Capture] = field(default_factory=dict)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    started: bool = False

    # addresses of the scenario's family
    @property
    def caddr(self) -> str:
        return CLIENT6 if self.spec.family == 6 else CLIENT4

    @property
    def saddr(self) -> str:
        return SERVER6 if self.spec.family == 6 else SERVER4

    def c(self, op: str, **kw: Any) -> dict[str, Any]:
        return self.client.call(op, **kw)

    def s(self, op: str, **kw: Any) -> dict[str, Any]:
        return self.server.call(op, **kw)

    def mark(self, name: str) -> float:
        """Remember the wall-clock time of a step (for timer-relative waits)."""
        self.marks[name] = time.time()
        return self.marks[name]

    def settle(self, seconds: float = SETTLE) -> None:
        pause(seconds)

    def sleep_until(self, mark: str, offset: float) -> None:
        """Sleep until ``marks[mark] + offset`` (no-op if already past, noted)."""
        left = self.marks[mark] + offset - time.time()
        if left < 0:
            self.notes.append(f"late by {-left:.3f}s for {mark}+{offset}")
        else:
            pause(left)

    def start_captures(self) -> None:
        if self.started:
            return
        for cap in self.captures.values():
            cap.start()
        self.started = True

    # common steps
    def listen(self, backlog: int = 8) -> None:
        addr = "::" if self.spec.family == 6 else "0.0.0.0"
        self.s("listen", name="L", addr=addr, port=PORT, backlog=backlog)

    def connect(self, name: str = "C", **kw: Any) -> dict[str, Any]:
        return self.c("connect", name=name, addr=self.saddr, port=PORT, **kw)

    def accept(self, name: str = "A") -> dict[str, Any]:
        return self.s("accept", name="L", **{"as": name})

    def open_connection(self) -> None:
        """listen, connect, accept, one request/response; settle."""
        self.listen()
        self.connect()
        self.accept()
        self.exchange()
        self.settle()

    def exchange(self, req: int = 120, resp: int = 2400, cname: str = "C",
                 sname: str = "A") -> None:
        self.c("send", name=cname, n=req)
        got = self.s("recv", name=sname, n=req, timeout=2.0)["received"]
        self.s("send", name=sname, n=resp)
        got2 = self.c("recv", name=cname, n=resp, timeout=2.0)["received"]
        if (got, got2) != (req, resp):
            raise ScenarioError(f"exchange short: {got}/{req}, {got2}/{resp}")

    def checkpoint(self, name: str, expect: str | None = None, end: bool = False
                   ) -> Checkpoint:
        """Record ss in both namespaces. ``expect``: ``"client: ESTAB; server: LISTEN ESTAB"``
        (every socket's state, any order; ``-`` for none)."""
        ts = time.time()
        raw = self.lab.ss_all()
        ts_end = time.time()
        if not end:
            pause(2 * QUIET)  # the next action must not fall inside the quiet window
        cp = Checkpoint(name, ts, ts_end, raw, {k: parse_ss(v) for k, v in raw.items()},
                        end=end)
        self.checkpoints.append(cp)
        if expect is not None:
            for part in expect.split(";"):
                role, _, states = part.partition(":")
                want = sorted(x for x in states.split() if x != "-")
                got = sorted(d["state"] for d in cp.ss[role.strip()])
                if want != got:
                    self.problems.append(f"checkpoint {name}: {role.strip()} ss states {got}, "
                                         f"scenario expected {want}")
        return cp

    def end_checkpoint(self, expect: str | None = None) -> Checkpoint:
        """The last step of every run: ``ss`` at the capture's end (named ``end``, flagged),
        after which the captures stop at once; `run_once` checks that no segment was
        captured after it. ``expect`` defaults to the states of the previous checkpoint
        (a scenario whose states change after its last checkpoint calls this itself)."""
        if expect is None and self.checkpoints:
            expect = "; ".join(
                f"{role}: " + (" ".join(d["state"] for d in socks) or "-")
                for role, socks in self.checkpoints[-1].ss.items())
        return self.checkpoint("end", expect, end=True)


# --------------------------------------------------------------------------- registry


@dataclass
class Scenario:
    name: str
    fn: Callable[[Run], None]
    description: str
    expected_summary: str
    options: dict[str, float] = field(default_factory=dict)
    sysctls: list[tuple[str, str, object]] = field(default_factory=list)
    family: int = 4
    any_capture: bool = False
    pcapng: bool = False
    nano: tuple[str, ...] = ()
    late_capture: bool = False
    verify: Callable[[Run, dict[str, list[Packet]]], None] | None = None
    snaplen: int = 256
    #: commands this scenario needs beyond the lab's (`missing_needs`)
    needs: tuple[str, ...] = ()
    #: ``option_hints`` of the expected file: kernel settings of the run that tcplife has
    #: no option for, and what that means for its answers
    hints: dict[str, Any] = field(default_factory=dict)

    def missing_needs(self) -> list[str]:
        return [t for t in self.needs if shutil.which(t) is None]


SCENARIOS: dict[str, Scenario] = {}


def scenario(description: str, expected_summary: str, **kw: Any
             ) -> Callable[[Callable[[Run], None]], Callable[[Run], None]]:
    def deco(fn: Callable[[Run], None]) -> Callable[[Run], None]:
        SCENARIOS[fn.__name__] = Scenario(fn.__name__, fn, description, expected_summary, **kw)
        return fn
    return deco


# --------------------------------------------------------------------------- scenarios


@scenario("The server socket is bound but not listening: the client's SYN is answered by "
          "RST and connect() fails with ECONNREFUSED.",
          "no socket on either side after the RST (the bound-only socket is not listed)")
def refused(r: Run) -> None:
    r.s("bind_only", name="B", addr=r.saddr, port=PORT)
    r.settle(0.3)
    reply = r.client.call("connect", name="C", addr=r.saddr, port=PORT, check=False)
    if reply.get("error") != "ECONNREFUSED":
        raise ScenarioError(f"connect: {reply}")
    r.settle()
    r.checkpoint("after_refused", "client: -; server: -")


@scenario("The server listens (backlog 1) but never accepts: two connections complete "
          "into the accept queue, a third is ignored (queue full: its SYNs are dropped) "
          "until the server accepts one, then its retransmitted SYN succeeds.",
          "ESTAB on both sides for queued connections; the third client SYN-SENT while the "
          "queue is full, ESTAB after the accept",
          any_capture=True)
def listen_no_accept(r: Run) -> None:
    r.listen(backlog=1)
    r.connect("C1")
    r.settle()
    r.checkpoint("one_queued", "client: ESTAB; server: LISTEN ESTAB")
    r.connect("C2")
    r.settle(0.3)
    r.mark("syn")
    r.c("connect", name="C3", addr=r.saddr, port=PORT, blocking=False)
    r.sleep_until("syn", 0.5)
    r.checkpoint("queue_full", "client: ESTAB ESTAB SYN-SENT; server: LISTEN ESTAB ESTAB")
    r.accept("A1")
    r.sleep_until("syn", 1.6)
    r.c("wait_connect", name="C3", timeout=3.0)
    r.settle()
    r.checkpoint("after_one_accept", "client: ESTAB ESTAB ESTAB; server: LISTEN ESTAB ESTAB "
                 "ESTAB")


@scenario("Request/response, the client closes first, the server closes about a second "
          "later: the textbook four-way close.",
          "ESTAB/ESTAB; client FIN-WAIT-2 and server CLOSE-WAIT after the client's close; "
          "client TIME-WAIT and the server socket gone after the server's close",
          any_capture=True, pcapng=True, nano=("server",))
def normal_close_client_first(r: Run) -> None:
    r.open_connection()
    r.checkpoint("established", "client: ESTAB; server: LISTEN ESTAB")
    r.c("close", name="C")
    r.settle()
    r.checkpoint("after_client_close", "client: FIN-WAIT-2; server: LISTEN CLOSE-WAIT")
    r.settle(1.0)
    r.s("close", name="A")
    r.settle()
    r.checkpoint("after_server_close", "client: TIME-WAIT; server: LISTEN")


@scenario("The client closes, the server never does; the client namespace has "
          "net.ipv4.tcp_fin_timeout=3, so the orphaned FIN-WAIT-2 socket vanishes after 3 s "
          "while the server stays in CLOSE-WAIT. When the server finally closes, its FIN "
          "is answered by RST.",
          "client FIN-WAIT-2 / server CLOSE-WAIT; after 3 s client gone, server still "
          "CLOSE-WAIT; after the server's late close both gone (RST)",
          options={"fin_wait_2": 3.0},
          sysctls=[("client", "net.ipv4.tcp_fin_timeout", 3)], nano=("client",))
def server_never_closes(r: Run) -> None:
    r.open_connection()
    r.checkpoint("established", "client: ESTAB; server: LISTEN ESTAB")
    r.mark("close")
    r.c("close", name="C")
    r.settle()
    r.checkpoint("fin_wait_2", "client: FIN-WAIT-2; server: LISTEN CLOSE-WAIT")
    r.sleep_until("close", 4.5)
    r.checkpoint("after_fin_timeout", "client: -; server: LISTEN CLOSE-WAIT")
    r.s("close", name="A")
    r.settle()
    r.checkpoint("after_late_server_close", "client: -; server: LISTEN")


@scenario("The server process exits with its sockets open: the kernel closes them and "
          "sends a FIN exactly as close() would; then the client closes.",
          "client CLOSE-WAIT / server FIN-WAIT-2 (orphan) after the exit; then server "
          "TIME-WAIT, client gone")
def server_killed(r: Run) -> None:
    r.open_connection()
    r.checkpoint("established", "client: ESTAB; server: LISTEN ESTAB")
    r.server.exit()
    r.settle()
    r.checkpoint("after_server_exit", "client: CLOSE-WAIT; server: FIN-WAIT-2")
    r.c("close", name="C")
    r.settle()
    r.checkpoint("after_client_close", "client: -; server: TIME-WAIT")


def _no_packets_between(r: Run, pkts: dict[str, list[Packet]], a: str, b: str) -> None:
    t0, t1 = r.marks[a], r.marks[b]
    for vantage, ps in pkts.items():
        inside = [p for p in ps if t0 <= p.ts <= t1]
        if inside:
            r.problems.append(f"{vantage}: {len(inside)} segment(s) between {a} and {b}")


@scenario("The client calls shutdown(SHUT_RD): nothing is sent. The server then sends "
          "data, which the client's kernel still acknowledges; the client closes with that "
          "data unread, which resets the connection.",
          "ESTAB/ESTAB before and after SHUT_RD and after the server's data; both gone "
          "after the client's close (RST)",
          verify=lambda r, p: _no_packets_between(r, p, "shut_rd", "server_sends"))
def shutdown_rd(r: Run) -> None:
    r.open_connection()
    r.mark("shut_rd")
    r.c("shutdown", name="C", how="RD")
    early = r.c("recv", name="C", timeout=0.2)
    r.notes.append(f"recv() right after SHUT_RD: {early['received']} bytes, eof={early['eof']}")
    r.settle()
    r.checkpoint("after_shut_rd", "client: ESTAB; server: LISTEN ESTAB")
    r.mark("server_sends")
    r.s("send", name="A", n=500)
    r.settle()
    r.checkpoint("after_server_sends", "client: ESTAB; server: LISTEN ESTAB")
    r.c("close", name="C")
    r.settle()
    r.checkpoint("after_client_close", "client: -; server: LISTEN")


@scenario("The client calls shutdown(SHUT_WR) (FIN) and keeps reading; the server goes on "
          "sending data for a while (the half-closed client acknowledges it), then closes.",
          "client FIN-WAIT-2 / server CLOSE-WAIT while the server sends (no FIN-WAIT-2 "
          "timeout: the socket is not orphaned); client TIME-WAIT after the server's close")
def shutdown_wr_peer_sends(r: Run) -> None:
    r.open_connection()
    r.c("shutdown", name="C", how="WR")
    r.settle()
    r.checkpoint("half_closed", "client: FIN-WAIT-2; server: LISTEN CLOSE-WAIT")
    for _ in range(3):
        r.s("send", name="A", n=1000)
        r.c("recv", name="C", n=1000, timeout=2.0)
        r.settle(0.3)
    r.settle(0.2)
    r.checkpoint("server_still_sending", "client: FIN-WAIT-2; server: LISTEN CLOSE-WAIT")
    r.s("close", name="A")
    r.settle()
    r.checkpoint("after_server_close", "client: TIME-WAIT; server: LISTEN")


@scenario("The server sends data the client never reads; the client's close() then "
          "sends RST instead of FIN.",
          "ESTAB/ESTAB with unread data; both gone after the client's close (RST)")
def close_unread_data(r: Run) -> None:
    r.open_connection()
    r.s("send", name="A", n=700)
    r.settle()
    r.checkpoint("unread_data", "client: ESTAB; server: LISTEN ESTAB")
    r.c("close", name="C")
    r.settle()
    r.checkpoint("after_client_close", "client: -; server: LISTEN")


@scenario("After a request/response the client sends a last 50-byte message, which the "
          "server reads (so nothing is left unread on either side); the client then sets "
          "SO_LINGER {on, 0} and closes: an RST, no FIN and no TIME-WAIT.",
          "ESTAB/ESTAB; both gone after the close")
def linger0(r: Run) -> None:
    r.open_connection()
    # The client's payload is the last in the capture: the RST cannot be mistaken for a
    # close with unread data.
    r.c("send", name="C", n=50)
    if r.s("recv", name="A", n=50, timeout=2.0)["received"] != 50:
        raise ScenarioError("server did not read the last message")
    r.settle()
    r.c("linger0", name="C")
    r.checkpoint("established", "client: ESTAB; server: LISTEN ESTAB")
    r.c("close", name="C")
    r.settle()
    r.checkpoint("after_close", "client: -; server: LISTEN")


#: The gap within which a capture shows two FINs as crossed: tcplife's crossing window
#: for a sub-millisecond round trip (`Endpoint.crossing_window_ns`).
_CROSSING_SHOWN_S = 0.001


def _verify_crossing(r: Run, pkts: dict[str, list[Packet]]) -> None:
    """Each side sent its FIN before it received the peer's FIN (the FINs crossed)."""
    for vantage, me in (("client", r.caddr), ("server", r.saddr)):
        ps = pkts.get(vantage, [])
        sent = [p.ts for p in ps if p.fin and p.src == me]
        rcvd = [p.ts for p in ps if p.fin and p.dst == me]
        if not sent or not rcvd or not min(sent) < min(rcvd):
            r.problems.append(f"{vantage}: FINs did not cross (sent {sent[:1]}, "
                              f"received {rcvd[:1]})")
        else:
            r.notes.append(f"{vantage}: own FIN {min(rcvd) - min(sent):.3f}s before the "
                           "peer's FIN arrived")
        # The last FINs cross too (each carries the ACK of the peer's earlier FIN), about
        # 50 us apart on an idle host. A loaded host can delay one by a millisecond or
        # more: the capture then reads as a FIN sent after the peer's had arrived (the
        # peer's FIN lost), which is what an observer must conclude from times alone.
        # Such a run does not show the designed crossing: it is repeated.
        if sent and rcvd and abs(max(sent) - max(rcvd)) > _CROSSING_SHOWN_S:
            r.problems.append(f"{vantage}: the last FINs were captured "
                              f"{abs(max(sent) - max(rcvd)) * 1e3:.2f} ms apart (host "
                              f"delay; > {_CROSSING_SHOWN_S * 1e3:.0f} ms reads as a lost "
                              "FIN, not a crossing)")
        # At a side's own capture its last FIN, sent before the peer's arrived, comes
        # first. Sent and received in the same microsecond, the capture may list them the
        # other way round (seen in CI): its own FIN then reads as sent after the peer's FIN
        # acknowledged it, which no observer can take for a crossing. Also repeated.
        order = [p.src == me for p in ps if p.fin]
        if sent and rcvd and len(order) - 1 - order[::-1].index(True) \
                > len(order) - 1 - order[::-1].index(False):
            r.problems.append(f"{vantage}: its last FIN was captured after the peer's last "
                              f"FIN ({max(rcvd) - max(sent):.6f} s apart), which "
                              "acknowledges it: not shown as a crossing")


@scenario("Simultaneous close: both sides close() while the router drops every FIN, so "
          "both sit in FIN-WAIT-1 retransmitting; then FINs pass but pure ACKs are dropped, "
          "so each side receives the peer's FIN before any ACK of its own (CLOSING); the "
          "next FIN retransmissions, which carry the ACK of the peer's FIN, take both sides "
          "to TIME-WAIT.",
          "ESTAB/ESTAB; FIN-WAIT-1 on both sides; CLOSING on both sides; TIME-WAIT on both "
          "sides",
          any_capture=True, verify=_verify_crossing)
def simultaneous_close(r: Run) -> None:
    r.open_connection()
    r.checkpoint("established", "client: ESTAB; server: LISTEN ESTAB")
    fin_drop = r.lab.drop("tcp flags & fin == fin")
    r.mark("close")
    r.c("close", name="C")
    r.s("close", name="A")
    # FIN retransmissions at about +0.2 (tail loss probe), +0.4, +0.84, +1.67, +3.3 s.
    r.sleep_until("close", 1.2)
    r.checkpoint("fins_dropped", "client: FIN-WAIT-1; server: LISTEN FIN-WAIT-1")
    ack_drop = r.lab.swap_drop(fin_drop, "tcp flags == ack")
    r.sleep_until("close", 2.2)
    r.checkpoint("closing", "client: CLOSING; server: LISTEN CLOSING")
    r.lab.undrop(ack_drop)
    r.sleep_until("close", 3.8)
    r.checkpoint("after_acks", "client: TIME-WAIT; server: LISTEN TIME-WAIT")


@scenario("The client closes first; the router then drops the client's pure ACKs, so the "
          "ACK of the server's FIN is lost: the client is in TIME-WAIT while the server "
          "stays in LAST-ACK retransmitting its FIN until the drop is lifted.",
          "client FIN-WAIT-2 / server CLOSE-WAIT; client TIME-WAIT / server LAST-ACK while "
          "the ACKs are dropped; client TIME-WAIT, server gone once an ACK passes")
def final_ack_dropped(r: Run) -> None:
    r.open_connection()
    r.c("close", name="C")
    r.settle()
    r.checkpoint("fin_wait_2", "client: FIN-WAIT-2; server: LISTEN CLOSE-WAIT")
    h = r.lab.drop(f"ip saddr {r.caddr} tcp flags == ack")
    r.mark("server_close")
    r.s("close", name="A")
    # Server FIN retransmissions at about +0.2 (tail loss probe), +0.4, +0.84, +1.67, +3.3 s.
    r.sleep_until("server_close", 2.0)
    r.checkpoint("last_ack_retransmitting", "client: TIME-WAIT; server: LISTEN LAST-ACK")
    r.lab.undrop(h)
    r.sleep_until("server_close", 3.8)
    r.checkpoint("after_ack_passes", "client: TIME-WAIT; server: LISTEN")


@scenario("Every SYN is dropped by the router; the client namespace has "
          "net.ipv4.tcp_syn_retries=2. The client stays in SYN-SENT retransmitting (six SYNs "
          "one second apart: net.ipv4.tcp_syn_linear_timeouts=4), then connect() fails with "
          "ETIMEDOUT 7 s (2^(2+1)-1) after the first SYN.",
          "client SYN-SENT (server only LISTEN, never sees a SYN); client gone after the "
          "connect timeout",
          options={"syn_sent": 7.0},
          sysctls=[("client", "net.ipv4.tcp_syn_retries", 2)])
def syn_dropped(r: Run) -> None:
    r.listen()
    r.lab.drop("tcp flags & (syn | ack) == syn")
    r.settle(0.3)
    r.mark("connect")
    r.c("connect", name="C", addr=r.saddr, port=PORT, blocking=False)
    r.sleep_until("connect", 1.5)
    r.checkpoint("syn_sent", "client: SYN-SENT; server: LISTEN")
    reply = r.client.call("wait_connect", name="C", timeout=20.0, check=False)
    failed = time.time()
    r.notes.append(f"connect failed {failed - r.marks['connect']:.2f}s after start: "
                   f"{reply.get('error')}")
    r.settle(1.0)
    r.checkpoint("after_connect_timeout", "client: -; server: LISTEN")


@scenario("The router drops the client's pure ACKs, so the handshake-completing ACK is "
          "lost: the client is ESTABLISHED, the server's request socket stays SYN-RECV "
          "retransmitting its SYN-ACK (server net.ipv4.tcp_synack_retries=2) and is dropped "
          "after the last retry. The client's first data then meets an RST.",
          "client ESTAB / server SYN-RECV; client ESTAB and nothing on the server after "
          "the SYN-ACK retries; both gone after the client's data is reset",
          options={"syn_received": 7.0},
          sysctls=[("server", "net.ipv4.tcp_synack_retries", 2)])
def handshake_ack_dropped(r: Run) -> None:
    r.listen()
    h = r.lab.drop(f"ip saddr {r.caddr} tcp flags == ack")
    r.settle(0.3)
    r.mark("connect")
    r.connect()
    # SYN-ACK retransmissions at about +1, +3 s; request dropped at about +7 s.
    r.sleep_until("connect", 2.0)
    r.checkpoint("syn_recv", "client: ESTAB; server: LISTEN SYN-RECV")
    r.sleep_until("connect", 8.5)
    r.checkpoint("server_gave_up", "client: ESTAB; server: LISTEN")
    r.lab.undrop(h)
    r.c("send", name="C", n=100)
    r.settle()
    r.checkpoint("after_client_data", "client: -; server: LISTEN")


@scenario("The server closes first (FIN); the client, in CLOSE-WAIT, writes anyway: the "
          "server's orphaned FIN-WAIT-2 socket answers with RST; the next write fails with "
          "EPIPE.",
          "client CLOSE-WAIT / server FIN-WAIT-2; both gone after the client's write")
def write_after_peer_closed(r: Run) -> None:
    r.open_connection()
    r.s("close", name="A")
    r.settle()
    r.checkpoint("peer_closed", "client: CLOSE-WAIT; server: LISTEN FIN-WAIT-2")
    r.c("send", name="C", n=100)
    r.settle()
    r.checkpoint("after_write", "client: -; server: LISTEN")
    reply = r.client.call("send", name="C", n=100, check=False)
    r.notes.append(f"second write: {reply.get('error') or 'ok'}")


@scenario("The client dup()s its socket and closes one descriptor: nothing is sent. "
          "Closing the second descriptor sends the FIN; the server then closes.",
          "ESTAB/ESTAB after the first close; FIN-WAIT-2 / CLOSE-WAIT after the second; "
          "client TIME-WAIT after the server's close",
          verify=lambda r, p: _no_packets_between(r, p, "first_close", "second_close"))
def dup_fd_close_once(r: Run) -> None:
    r.open_connection()
    r.c("dup", name="C", **{"as": "D"})
    r.mark("first_close")
    r.c("close", name="C")
    r.settle()
    r.checkpoint("one_fd_closed", "client: ESTAB; server: LISTEN ESTAB")
    r.mark("second_close")
    r.c("close", name="D")
    r.settle()
    r.checkpoint("all_fds_closed", "client: FIN-WAIT-2; server: LISTEN CLOSE-WAIT")
    r.s("close", name="A")
    r.settle()
    r.checkpoint("after_server_close", "client: TIME-WAIT; server: LISTEN")


@scenario("A normal exchange and close (client first) over IPv6.",
          "ESTAB/ESTAB; FIN-WAIT-2 / CLOSE-WAIT; client TIME-WAIT, server gone",
          family=6, any_capture=True, nano=("client", "server"))
def ipv6(r: Run) -> None:
    r.open_connection()
    r.checkpoint("established", "client: ESTAB; server: LISTEN ESTAB")
    r.c("close", name="C")
    r.settle()
    r.checkpoint("after_client_close", "client: FIN-WAIT-2; server: LISTEN CLOSE-WAIT")
    r.s("close", name="A")
    r.settle()
    r.checkpoint("after_server_close", "client: TIME-WAIT; server: LISTEN")


@scenario("The captures start after the connection is established (no handshake in them); "
          "data flows both ways, then the client and the server close.",
          "ESTAB/ESTAB mid-stream; FIN-WAIT-2 / CLOSE-WAIT; client TIME-WAIT",
          late_capture=True)
def mid_stream(r: Run) -> None:
    r.open_connection()
    r.start_captures()
    r.exchange(req=300, resp=3000)
    r.settle()
    r.checkpoint("established", "client: ESTAB; server: LISTEN ESTAB")
    r.c("close", name="C")
    r.settle()
    r.checkpoint("after_client_close", "client: FIN-WAIT-2; server: LISTEN CLOSE-WAIT")
    r.s("close", name="A")
    r.settle()
    r.checkpoint("after_server_close", "client: TIME-WAIT; server: LISTEN")


@scenario("The server closes first and ends in TIME-WAIT; the client then connects again "
          "from the same port, so its SYN hits the server's TIME-WAIT socket, which accepts "
          "it: a second connection on the same 4-tuple, closed by the client.",
          "server TIME-WAIT / client gone after the first connection; ESTAB/ESTAB on the "
          "same 4-tuple after the new SYN; client TIME-WAIT at the end")
def port_reuse_after_time_wait(r: Run) -> None:
    r.open_connection()
    r.s("close", name="A")
    r.settle()
    r.checkpoint("server_closed_first", "client: CLOSE-WAIT; server: LISTEN FIN-WAIT-2")
    port = r.c("info", name="C")["local"][1]
    r.c("close", name="C")
    r.settle()
    r.checkpoint("server_time_wait", "client: -; server: LISTEN TIME-WAIT")
    r.connect("C2", bind_addr=r.caddr, bind_port=port)
    r.accept("A2")
    r.exchange(cname="C2", sname="A2")
    r.settle()
    r.checkpoint("reconnected", "client: ESTAB; server: LISTEN ESTAB")
    r.c("close", name="C2")
    r.settle()
    r.s("close", name="A2")
    r.settle()
    r.checkpoint("second_closed", "client: TIME-WAIT; server: LISTEN")


MANY = 24


@scenario(f"{MANY} short request/response connections in a row, each closed by the client "
          "first: TIME-WAIT sockets pile up on the client.",
          f"{MANY} client TIME-WAIT sockets, server only LISTEN",
          pcapng=True)
def many_short(r: Run) -> None:
    r.listen(backlog=64)
    for i in range(MANY):
        r.connect(f"C{i}")
        r.accept(f"A{i}")
        r.exchange(req=40, resp=100, cname=f"C{i}", sname=f"A{i}")
        r.c("close", name=f"C{i}")
        r.s("recv", name=f"A{i}", timeout=1.0)
        r.s("close", name=f"A{i}")
    r.settle()
    r.checkpoint("pile_up", "client: " + " ".join(["TIME-WAIT"] * MANY) + "; server: LISTEN")


def _from(ps: list[Packet], addr: str) -> list[Packet]:
    return [p for p in ps if _norm(p.src) == _norm(addr)]


def _verify_challenge(r: Run, pkts: dict[str, list[Packet]]) -> None:
    """After the reuse, each capture shows: new SYN -> challenge ACK (a bare ACK for the old
    connection) -> RST from the client -> the same SYN again -> SYN-ACK."""
    t0 = r.marks["reconnect"]
    for vantage in ("client", "server"):
        after = [p for p in pkts[vantage] if p.ts >= t0 - TRANSIT]
        seq = [("S" if p.syn and not p.ackf else "SA" if p.syn else "R" if p.rst
                else "A" if p.ackf and not p.length and not p.fin else "D")
               + (">" if _norm(p.src) == _norm(r.caddr) else "<") for p in after[:5]]
        want = ["S>", "A<", "R>", "S>", "SA<"]
        syns = [p for p in after[:5] if p.syn and not p.ackf]
        ok = seq == want and len(syns) == 2 and syns[0].seq == syns[1].seq
        if ok:
            challenge, rst = after[1], after[2]
            ok = rst.seq == challenge.ack and challenge.ack != syns[0].seq + 1
        if not ok:
            r.problems.append(f"{vantage}: no challenge-ACK sequence after the reuse: {seq}")
        else:
            gap = after[3].ts - after[0].ts
            r.notes.append(f"{vantage}: new SYN, challenge ACK (ack={after[1].ack}, the old "
                           f"connection's next client seq), client RST seq={after[2].seq}, "
                           f"SYN retransmitted {gap:.3f}s after the first, then SYN-ACK")


def _reconnect_from(r: Run, port: int) -> None:
    """Connect again from the client's old ``port`` (its SYN meets the server's old
    socket: `_verify_challenge`), one exchange, close (client first)."""
    r.mark("reconnect")
    reply = r.c("connect", name="C2", addr=r.saddr, port=PORT, bind_addr=r.caddr,
                bind_port=port, timeout=5.0)
    r.notes.append(f"second connect() returned after {time.time() - r.marks['reconnect']:.3f}s"
                   f" from local port {reply['local'][1]} (first: {port})")
    r.accept("A2")
    r.exchange(cname="C2", sname="A2")
    r.settle()
    r.checkpoint("reconnected", "client: ESTAB; server: LISTEN ESTAB")
    r.c("close", name="C2")
    r.settle(0.3)
    r.s("close", name="A2")
    r.settle()
    r.checkpoint("second_closed", "client: TIME-WAIT; server: LISTEN")


@scenario("The classic CLOSE-WAIT leak meets port reuse: the server accepts and never "
          "closes; the client closes and its orphaned FIN-WAIT-2 socket expires after 2 s "
          "(client net.ipv4.tcp_fin_timeout=2) while the server stays in CLOSE-WAIT. The "
          "client then binds the same local port (SO_REUSEADDR) and connects again: the "
          "server's CLOSE-WAIT socket answers the new SYN with a challenge ACK, the SYN-SENT "
          "client answers that with RST, which kills the old server socket, and the "
          "client's SYN retransmission opens a new connection on the same 4-tuple "
          "(closed normally, client first).",
          "ESTAB/ESTAB; client FIN-WAIT-2 / server CLOSE-WAIT; client gone, server still "
          "CLOSE-WAIT before the reuse; ESTAB/ESTAB on the same 4-tuple (the old server "
          "socket gone) after it; client TIME-WAIT at the end",
          options={"fin_wait_2": 2.0},
          sysctls=[("client", "net.ipv4.tcp_fin_timeout", 2)],
          verify=_verify_challenge)
def port_reuse_close_wait(r: Run) -> None:
    r.open_connection()
    r.checkpoint("established", "client: ESTAB; server: LISTEN ESTAB")
    port = r.c("info", name="C")["local"][1]
    r.mark("close")
    r.c("close", name="C")
    r.settle()
    r.checkpoint("fin_wait_2", "client: FIN-WAIT-2; server: LISTEN CLOSE-WAIT")
    r.sleep_until("close", 3.2)
    r.checkpoint("before_reuse", "client: -; server: LISTEN CLOSE-WAIT")
    _reconnect_from(r, port)


#: what the client sends before the server closes first in port_reuse_time_wait_refused:
#: more than Linux's ISN clock (64 ns ticks: ~15.6 M a second) advances between the two
#: connections, so that the new ISN falls below what the TIME-WAIT socket expects next
BULK = 64 << 20
#: the links' MTU in that scenario
JUMBO_MTU = 65000


@scenario("Port reuse that a TIME-WAIT socket refuses: the client (net.ipv4.tcp_timestamps"
          "=0) sends 64 MiB over links of MTU 65000, the server closes first and ends in "
          "TIME-WAIT, and the client connects again from the same port. Its new ISN is "
          "below what the TIME-WAIT socket expects next (Linux's ISN clock advanced less "
          "than 64 MiB), and without a TCP timestamp the TIME-WAIT socket does not take "
          "the SYN (tcp_timewait_state_process): it answers with an ACK of the old "
          "connection, the SYN-SENT client answers that with RST, which kills the TIME-WAIT "
          "socket, and the client's SYN retransmission opens a new connection on the same "
          "4-tuple (closed by the client). Captures with snaplen 128.",
          "server TIME-WAIT / client gone after the first connection; ESTAB/ESTAB on the "
          "same 4-tuple after the reuse; client TIME-WAIT at the end",
          sysctls=[("client", "net.ipv4.tcp_timestamps", 0)],
          snaplen=128,
          verify=_verify_challenge)
def port_reuse_time_wait_refused(r: Run) -> None:
    _reuse_below_time_wait(r)


def _reuse_below_time_wait(r: Run) -> None:
    """The client sends `BULK` over jumbo links (64 KB segments, as the lab turns
    segmentation offloads off: a small capture), the server closes first and holds
    TIME-WAIT, and the client connects again from the same port."""
    for role, dev in (("client", "eth0"), ("router", "ethc"), ("router", "eths"),
                      ("server", "eth0")):
        r.lab.nsexec(role, "ip", "link", "set", "dev", dev, "mtu", str(JUMBO_MTU))
    r.open_connection()
    r.c("send", name="C", n=BULK, background=True)
    got = r.s("recv", name="A", n=BULK, timeout=20.0)["received"]
    if got != BULK:
        raise ScenarioError(f"bulk transfer short: {got}/{BULK}")
    r.s("close", name="A")
    r.settle()
    r.checkpoint("server_closed_first", "client: CLOSE-WAIT; server: LISTEN FIN-WAIT-2")
    port = r.c("info", name="C")["local"][1]
    r.c("close", name="C")
    r.settle()
    r.checkpoint("server_time_wait", "client: -; server: LISTEN TIME-WAIT")
    _reconnect_from(r, port)


def _verify_taken_on_timestamp(r: Run, pkts: dict[str, list[Packet]]) -> None:
    """After the reuse, each capture shows the new SYN answered by a SYN-ACK at once,
    although its sequence number is not after the old connection's last client sequence
    number (so the TIME-WAIT socket took it on its timestamp)."""
    t0 = r.marks["reconnect"]
    for vantage in ("client", "server"):
        ps = pkts[vantage]
        old_next = max(p.seq + p.length + p.fin for p in ps
                       if p.ts < t0 - TRANSIT and _norm(p.src) == _norm(r.caddr))
        after = [p for p in ps if p.ts >= t0 - TRANSIT][:2]
        shape = [("S" if not p.ackf else "SA") if p.syn else "other" for p in after]
        if shape != ["S", "SA"] or _norm(after[0].src) != _norm(r.caddr):
            r.problems.append(f"{vantage}: the new SYN was not answered by a SYN-ACK: {shape}")
            continue
        below = (old_next - after[0].seq) % 2**32
        if not 0 < below < 2**31:
            r.problems.append(f"{vantage}: the new ISN {after[0].seq} is not below the old "
                              f"connection's next client sequence number {old_next}")
            continue
        r.notes.append(f"{vantage}: new SYN seq={after[0].seq}, {below} below the old "
                       f"connection's next client seq ({old_next}), answered by SYN-ACK "
                       f"{1e6 * (after[1].ts - after[0].ts):.0f} us later")


@scenario("Port reuse that a TIME-WAIT socket takes on its timestamp: as "
          "port_reuse_time_wait_refused, but with TCP timestamps on (Linux's default). "
          "The new ISN is again below what the TIME-WAIT socket expects next, but the SYN's "
          "timestamp is newer than the last one it saw, so it takes the SYN "
          "(tcp_timewait_state_process: TCP_TW_SYN), its socket is gone, and the listener "
          "answers with a SYN-ACK at once. Captures with snaplen 128.",
          "server TIME-WAIT / client gone after the first connection; ESTAB/ESTAB on the "
          "same 4-tuple after the reuse; client TIME-WAIT at the end",
          snaplen=128,
          verify=_verify_taken_on_timestamp)
def port_reuse_time_wait_timestamp(r: Run) -> None:
    _reuse_below_time_wait(r)


def _verify_keepalive(r: Run, pkts: dict[str, list[Packet]]) -> None:
    """Idle period: only keep-alive probes (seq = snd_nxt - 1, no payload) and their ACKs."""
    t0, t1 = r.marks["idle"], r.marks["idle_end"]
    for vantage in ("client", "server"):
        idle = [p for p in pkts[vantage] if t0 <= p.ts <= t1]
        probes = [p for p in idle if _norm(p.src) == _norm(r.caddr)]
        acks = [p for p in idle if _norm(p.src) == _norm(r.saddr)]
        before = [p for p in pkts[vantage] if p.ts < t0 and _norm(p.src) == _norm(r.caddr)]
        nxt = max(p.seq + p.length + p.fin + p.syn for p in before)
        good = (len(probes) >= 3 and len(acks) == len(probes)
                and all(p.seq == nxt - 1 and p.length == 0 and not p.flags & 0x07
                        for p in probes)
                and all(a.ack == nxt and a.length == 0 for a in acks))
        if not good:
            r.problems.append(f"{vantage}: idle period is not {len(probes)} probes + ACKs: "
                              f"{[(p.flag_text(), p.seq - nxt, p.length) for p in idle]}")
        else:
            gaps = [round(b.ts - a.ts, 3) for a, b in zip(probes, probes[1:], strict=False)]
            r.notes.append(f"{vantage}: {len(probes)} keep-alive probes (seq = snd_nxt-1, "
                           f"len 0) {probes[0].ts - t0:.3f}s after the last data, then every "
                           f"{gaps} s, each ACKed")


@scenario("The client enables SO_KEEPALIVE with TCP_KEEPIDLE=1 and TCP_KEEPINTVL=1 (s), "
          "exchanges a request/response and then stays idle for about 4.5 s: its kernel "
          "sends keep-alive probes (seq = snd_nxt - 1, no payload) about once a second, each "
          "acknowledged by the server. Then a normal close, client first.",
          "ESTAB/ESTAB while probing; client TIME-WAIT, server gone after the close",
          verify=_verify_keepalive)
def keepalive(r: Run) -> None:
    r.listen()
    r.connect()
    r.c("keepalive", name="C", idle=1, intvl=1, cnt=9)
    r.accept()
    r.exchange()
    r.mark("idle")
    r.sleep_until("idle", 2.5)
    r.checkpoint("probing", "client: ESTAB; server: LISTEN ESTAB")
    r.sleep_until("idle", 4.5)
    r.mark("idle_end")
    r.c("close", name="C")
    r.settle(0.3)
    r.s("close", name="A")
    r.settle()
    r.checkpoint("closed", "client: TIME-WAIT; server: LISTEN")


def _verify_half_open(r: Run, pkts: dict[str, list[Packet]]) -> None:
    """While the drop is on: the client transmits the same 200 bytes at least 3 times and
    receives nothing; the server receives them and its ACKs never arrive."""
    t0, t1 = r.marks["send"], r.marks["lift"]
    cl = [p for p in pkts["client"] if t0 <= p.ts <= t1]
    data = [p for p in cl if _norm(p.src) == _norm(r.caddr) and p.length]
    heard = [p for p in cl if _norm(p.src) == _norm(r.saddr)]
    if len({(p.seq, p.length) for p in data}) != 1 or len(data) < 3 or heard:
        r.problems.append(f"client: not 3+ transmissions of one segment into silence: "
                          f"{[(p.seq, p.length) for p in data]}, {len(heard)} heard")
    else:
        r.notes.append(f"client: the same {data[0].length} bytes sent {len(data)} times at "
                       f"+{[round(p.ts - data[0].ts, 3) for p in data]} s, nothing received "
                       "until the drop was lifted")
    sv = [p for p in pkts["server"] if t0 <= p.ts <= t1]
    acks = [p for p in sv if _norm(p.src) == _norm(r.saddr)]
    got = [p for p in sv if _norm(p.src) == _norm(r.caddr) and p.length]
    r.notes.append(f"server: received the data {len(got)} times and sent {len(acks)} ACKs "
                   "(all dropped by the router)")
    after = [p for p in pkts["client"] if p.ts > t1 and _norm(p.src) == _norm(r.saddr)]
    if not data or not after or after[0].ack != data[0].seq + data[0].length:
        r.problems.append("client: no ACK of the data after the drop was lifted")


@scenario("Half-open path: after a request/response the router drops everything the server "
          "sends to the client. The client sends 200 bytes; the server receives them and "
          "acknowledges, but nothing reaches the client, which retransmits into silence "
          "(TLP, then RTO backoff) while both sides stay ESTABLISHED. About 2.2 s later the "
          "drop is lifted, the next retransmission is acknowledged, and the connection "
          "closes normally, client first.",
          "ESTAB/ESTAB while the client retransmits; ESTAB/ESTAB after the drop is lifted; "
          "client TIME-WAIT at the end",
          verify=_verify_half_open)
def half_open(r: Run) -> None:
    r.open_connection()
    r.checkpoint("established", "client: ESTAB; server: LISTEN ESTAB")
    h = r.lab.drop(f"ip saddr {r.saddr}")
    r.mark("send")
    r.c("send", name="C", n=200)
    r.s("recv", name="A", n=200, timeout=1.0)
    # Retransmissions at about +0.21 (TLP), +0.42, +0.84, +1.67, +3.34 s.
    r.sleep_until("send", 1.25)
    r.checkpoint("retransmitting", "client: ESTAB; server: LISTEN ESTAB")
    r.sleep_until("send", 2.3)
    r.mark("lift")
    r.lab.undrop(h)
    r.sleep_until("send", 4.0)
    r.checkpoint("recovered", "client: ESTAB; server: LISTEN ESTAB")
    r.c("close", name="C")
    r.settle(0.3)
    r.s("close", name="A")
    r.settle()
    r.checkpoint("closed", "client: TIME-WAIT; server: LISTEN")


@scenario("The client closes (its socket is orphaned); the server's kernel acknowledges "
          "the FIN but the server does not close. The client namespace has "
          "net.ipv4.tcp_fin_timeout=2, so the client's FIN-WAIT-2 socket vanishes after "
          "2 s. The server then writes 100 bytes: the client's kernel has no socket for "
          "them and answers RST, which kills the server's CLOSE-WAIT socket.",
          "client FIN-WAIT-2 / server CLOSE-WAIT; client gone, server still CLOSE-WAIT "
          "after the timeout; both gone after the server's write (RST)",
          options={"fin_wait_2": 2.0},
          sysctls=[("client", "net.ipv4.tcp_fin_timeout", 2)])
def fin_wait_2_timeout_then_data(r: Run) -> None:
    r.open_connection()
    r.checkpoint("established", "client: ESTAB; server: LISTEN ESTAB")
    r.mark("close")
    r.c("close", name="C")
    r.settle()
    r.checkpoint("fin_wait_2", "client: FIN-WAIT-2; server: LISTEN CLOSE-WAIT")
    r.sleep_until("close", 3.2)
    r.checkpoint("after_fin_timeout", "client: -; server: LISTEN CLOSE-WAIT")
    r.s("send", name="A", n=100)
    r.settle()
    r.checkpoint("after_server_data", "client: -; server: LISTEN")


CLEAN_CONNS = 240


def clean_plan(n: int = CLEAN_CONNS) -> list[tuple[int, str]]:
    """(requests, who closes first) per connection: every 6th keeps alive for 3-6
    requests (client closes), every 20th (offset 7) is closed by the server first, the rest
    are one request each, closed by the client first."""
    plan = []
    for i in range(n):
        if i % 6 == 0:
            plan.append((3 + (i // 6) % 4, "C"))
        elif i % 20 == 7:
            plan.append((1, "S"))
        else:
            plan.append((1, "C"))
    return plan


def _verify_clean(r: Run, pkts: dict[str, list[Packet]]) -> None:
    """No RST, no retransmission, no repeated 4-tuple, every connection opened and closed."""
    for vantage in ("client", "server"):
        ps = pkts[vantage]
        rst = [p for p in ps if p.rst]
        seen: dict[tuple[Any, ...], int] = {}
        for p in ps:
            if p.length or p.syn or p.fin:
                seen[_key(p)[:5]] = seen.get(_key(p)[:5], 0) + 1
        rtx = sum(1 for n in seen.values() if n > 1)
        syns = {(p.sport) for p in ps if p.syn and not p.ackf}
        nsyn = sum(1 for p in ps if p.syn and not p.ackf)
        fins = sum(1 for p in ps if p.fin)
        if rst or rtx or nsyn != len(syns) or len(syns) != CLEAN_CONNS or fins != 2 * CLEAN_CONNS:
            r.problems.append(f"{vantage}: not clean: {len(rst)} RST, {rtx} retransmitted "
                              f"segments, {nsyn} SYNs on {len(syns)} ports, {fins} FINs")
        else:
            r.notes.append(f"{vantage}: {len(ps)} segments, {len(syns)} connections on "
                           f"distinct ports, no RST, no retransmission, {fins} FINs")


@scenario(f"No-false-alarm traffic: {CLEAN_CONNS} ordinary request/response connections "
          "(40-byte requests, 80-byte responses) from 4 client threads. Every 6th connection "
          "is keep-alive (3-6 requests, then the client closes), every 20th (offset 7) is "
          "closed by the server right after its response, the rest carry one request and are "
          "closed by the client first. Nothing is dropped; the only thing worth noticing is "
          "the client's pile of TIME-WAIT sockets. Captures with snaplen 128.",
          "at the end: a TIME-WAIT socket on the client for each client-first close, on "
          "the server for each server-first close",
          snaplen=128,
          verify=_verify_clean)
def clean_traffic(r: Run) -> None:
    r.listen(backlog=128)
    r.s("serve", name="L", resp=80)
    plan = clean_plan()
    r.mark("traffic")
    reply = r.client.call("traffic", addr=r.saddr, port=PORT, plan=plan, workers=4, req=40,
                          resp=80, wait=120.0)
    r.notes.append(f"{len(plan)} connections ({sum(n for n, _ in plan)} requests) in "
                   f"{time.time() - r.marks['traffic']:.2f}s")
    r.settle(1.0)
    stats = r.s("serve_stats")
    if stats["errors"] or stats["conns"] != len(plan):
        raise ScenarioError(f"server: {stats}")
    n_client = sum(1 for _, who in plan if who == "C")
    n_server = len(plan) - n_client
    ports = reply["ports"]
    if len(set(ports)) != len(ports):
        raise ScenarioError("a client port was used twice")
    r.checkpoint("end", "client: " + " ".join(["TIME-WAIT"] * n_client) + "; server: LISTEN "
                 + " ".join(["TIME-WAIT"] * n_server))


SIM_PORT = 42424


def _verify_simultaneous_open(r: Run, pkts: dict[str, list[Packet]]) -> None:
    """At each side's own capture: its bare SYN (retransmission) left before the peer's bare
    SYN arrived, and the peer's bare SYN did arrive (the SYNs crossed)."""
    for vantage, me, peer in (("client", r.caddr, r.saddr), ("server", r.saddr, r.caddr)):
        ps = pkts[vantage]
        mine = [p.ts for p in ps if p.syn and not p.ackf and _norm(p.src) == _norm(me)]
        theirs = [p.ts for p in ps if p.syn and not p.ackf and _norm(p.src) == _norm(peer)]
        synacks = [p for p in ps if p.syn and p.ackf]
        if not theirs or not any(t < theirs[0] for t in mine):
            r.problems.append(f"{vantage}: SYNs did not cross (own {mine}, peer's {theirs})")
            continue
        last_own = max(t for t in mine if t < theirs[0])
        dirs = sorted({"out" if _norm(p.src) == _norm(me) else "in" for p in synacks})
        r.notes.append(f"{vantage}: {len(mine)} own SYN(s), the last "
                       f"{1e6 * (theirs[0] - last_own):.0f} us before the peer's SYN "
                       f"arrived; {len(synacks)} SYN-ACKs ({', '.join(dirs)})")


@scenario("Simultaneous open: no listener; the client socket is bound to port "
          f"{SIM_PORT}, the server socket to {PORT}, and each connect()s to the other at the "
          "same moment (both agents pinned to one CPU) while the router drops every bare SYN. "
          "Both sit in SYN-SENT; the drop is lifted before their first retransmissions, which "
          "fire in the same timer tick and cross: each side receives a bare SYN in SYN-SENT "
          "(SYN-RECV), answers SYN-ACK, and each SYN-ACK establishes. Then a request/response "
          "and a normal close, client first.",
          "SYN-SENT on both sides while the SYNs are dropped; ESTAB/ESTAB after the "
          "crossing; client TIME-WAIT at the end",
          verify=_verify_simultaneous_open)
def simultaneous_open(r: Run) -> None:
    import threading

    for agent in (r.client, r.server):
        agent.call("pin", cpu=0)
    h = r.lab.drop("tcp flags & (syn | ack) == syn")
    r.settle(0.3)
    replies: dict[str, dict[str, Any]] = {}

    def go(side: str, agent: Agent, **kw: Any) -> None:
        replies[side] = agent.call("connect", blocking=False, **kw)

    threads = [
        threading.Thread(target=go, args=("client", r.client), kwargs=dict(
            name="C", addr=r.saddr, port=PORT, bind_addr=r.caddr, bind_port=SIM_PORT)),
        threading.Thread(target=go, args=("server", r.server), kwargs=dict(
            name="A", addr=r.caddr, port=SIM_PORT, bind_addr=r.saddr, bind_port=PORT)),
    ]
    r.mark("connect")
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if set(replies) != {"client", "server"}:
        raise ScenarioError(f"connect: {replies}")
    r.sleep_until("connect", 0.5)
    r.checkpoint("both_syn_sent", "client: SYN-SENT; server: SYN-SENT")
    r.lab.undrop(h)
    r.c("wait_connect", name="C", timeout=3.0)
    r.s("wait_connect", name="A", timeout=3.0)
    r.sleep_until("connect", 1.8)
    r.checkpoint("established", "client: ESTAB; server: ESTAB")
    r.exchange(cname="C", sname="A")
    r.settle()
    r.c("close", name="C")
    r.settle(0.3)
    r.s("close", name="A")
    r.settle()
    r.checkpoint("closed", "client: TIME-WAIT; server: -")


def _after(r: Run, pkts: dict[str, list[Packet]], vantage: str, mark: str) -> list[Packet]:
    return [p for p in pkts[vantage] if p.ts > r.marks[mark]]


def _snd_nxt(ps: list[Packet], addr: str) -> int:
    """The next sequence number of the sender ``addr`` after the segments ``ps``."""
    return max(p.seq + p.length + p.syn + p.fin for p in _from(ps, addr)) & 0xFFFFFFFF


def _verify_keepalive_dead_peer(r: Run, pkts: dict[str, list[Packet]]) -> None:
    """After the drop: at the client's vantage only the client's segments, 3 keep-alive
    probes (seq = snd_nxt - 1, no payload) then one RST (seq = snd_nxt) and nothing else;
    at the server's vantage nothing at all."""
    before = [p for p in pkts["client"] if p.ts <= r.marks["drop"]]
    nxt = _snd_nxt(before, r.caddr)
    after = _after(r, pkts, "client", "drop")
    probes = [p for p in after if not p.flags & 0x07 and p.length == 0
              and p.seq == (nxt - 1) & 0xFFFFFFFF and _norm(p.src) == _norm(r.caddr)]
    rsts = [p for p in after if p.rst]
    if (len(probes) != 3 or len(rsts) != 1 or after != probes + rsts or rsts[0].seq != nxt
            or _norm(rsts[0].src) != _norm(r.caddr)):
        r.problems.append(f"client: not 3 probes and an RST after the drop: "
                          f"{[(p.flag_text(), p.seq - nxt, p.length) for p in after]}")
    else:
        t = [p.ts for p in after]
        r.notes.append(f"client: keep-alive probes {probes[0].ts - r.marks['idle']:.3f}s "
                       f"after the last data, then every "
                       f"{[round(b - a, 3) for a, b in zip(t, t[1:-1], strict=False)]} s; "
                       f"the kernel's RST (seq = snd_nxt) {t[-1] - t[-2]:.3f}s after the "
                       "third probe; nothing from the server")
    if _after(r, pkts, "server", "drop"):
        r.problems.append("server: segments after the drop")


@scenario("Keep-alive finds a vanished peer: the client sets SO_KEEPALIVE with "
          "TCP_KEEPIDLE=1, TCP_KEEPINTVL=1 and TCP_KEEPCNT=3 (s); after a request/response "
          "the router drops every segment between the hosts. The client's kernel sends 3 "
          "keep-alive probes a second apart, none answered, then gives up: it sends an RST "
          "(tcp_keepalive_timer: tcp_send_active_reset, then tcp_write_err; the RST is "
          "dropped too) and the socket is gone. The server, with nothing to send, stays "
          "ESTABLISHED: a half-open connection. Captures with snaplen 128.",
          "ESTAB/ESTAB while the client probes; client gone, server still ESTAB at the end",
          snaplen=128, verify=_verify_keepalive_dead_peer)
def keepalive_dead_peer(r: Run) -> None:
    r.listen()
    r.connect()
    r.c("keepalive", name="C", idle=1, intvl=1, cnt=3)
    r.accept()
    r.exchange()
    r.mark("idle")
    r.settle(0.3)
    r.mark("drop")
    r.lab.drop("meta l4proto tcp")
    # probes at about +1, +2, +3 s after the last data, the RST at about +4 s
    r.sleep_until("idle", 2.5)
    r.checkpoint("probing", "client: ESTAB; server: LISTEN ESTAB")
    r.sleep_until("idle", 5.2)
    r.end_checkpoint("client: -; server: LISTEN ESTAB")


def _verify_peer_vanishes(r: Run, pkts: dict[str, list[Packet]]) -> None:
    """After the drop: at the client's vantage only the client's one data segment,
    transmitted 4+ times, no RST and no FIN; at the server's vantage nothing."""
    after = _after(r, pkts, "client", "drop")
    data = [p for p in after if p.length]
    odd = [p for p in after if p not in data or p.flags & 0x07]
    if len({(p.seq, p.length) for p in data}) != 1 or len(data) < 4 or odd:
        r.problems.append(f"client: not one segment retransmitted into silence: "
                          f"{[(p.flag_text(), p.seq, p.length) for p in after]}")
    else:
        gone = r.marks["gone"]
        r.notes.append(f"client: the same {data[0].length} bytes sent {len(data)} times at "
                       f"+{[round(p.ts - data[0].ts, 3) for p in data]} s; no RST, no FIN: "
                       f"ss first showed the socket gone {gone - data[0].ts:.2f}s after the "
                       "first transmission")
    if _after(r, pkts, "server", "drop"):
        r.problems.append("server: segments after the drop")


@scenario("A peer that vanishes mid-transfer: the client namespace has "
          "net.ipv4.tcp_retries2=3. After a request/response the router drops every segment "
          "between the hosts; the client writes 300 bytes and retransmits them (TLP, then "
          "RTO backoff) into silence until its kernel gives up (tcp_write_timeout: "
          "tcp_retries2 exceeded, tcp_write_err): the socket is gone WITHOUT an RST or any "
          "other segment on the wire. The server saw nothing and stays ESTABLISHED. Captures "
          "with snaplen 128.",
          "ESTAB/ESTAB while the client retransmits; client gone, server still ESTAB at "
          "the end",
          sysctls=[("client", "net.ipv4.tcp_retries2", 3)], snaplen=128,
          verify=_verify_peer_vanishes,
          hints={"client:net.ipv4.tcp_retries2": 3,
                 "note": "tcplife needs no option for the anomaly (half_open shows in the "
                         "retransmissions). The give-up is silent and comes seconds after "
                         "the capture's last frame, so client_state (at the last frame) is "
                         "ESTABLISHED whatever tcplife knows; only client_eventual_state "
                         "could say CLOSED, and only with a retransmission give-up timeout "
                         "(tcp_retries2) option, which tcplife does not have"})
def peer_vanishes_mid_transfer(r: Run) -> None:
    r.open_connection()
    r.checkpoint("established", "client: ESTAB; server: LISTEN ESTAB")
    r.mark("drop")
    r.lab.drop("meta l4proto tcp")
    r.mark("send")
    r.c("send", name="C", n=300)
    # retransmissions at about +0.2 (TLP), +0.4, +0.8, +1.6 s; given up at about +3.3 s
    r.sleep_until("send", 1.2)
    r.checkpoint("retransmitting", "client: ESTAB; server: LISTEN ESTAB")
    deadline = time.time() + 12.0
    while time.time() < deadline:
        if not parse_ss(r.lab.ss_all(("client",))["client"]):
            break
        pause(0.1)
    r.mark("gone")
    r.settle(1.0)
    r.end_checkpoint("client: -; server: LISTEN ESTAB")


def _verify_linger0_after_read(r: Run, pkts: dict[str, list[Packet]]) -> None:
    """The wire of close_unread_data: after the server's 700 bytes, the client's pure ACK
    of them and its RST (seq = snd_nxt, ack = the server's snd_nxt), nothing else."""
    for vantage in ("client", "server"):
        ps = pkts[vantage]
        last_data = max(i for i, p in enumerate(ps) if p.length == 700)
        tail = ps[last_data + 1:]
        shape = [p.flag_text() + (">" if _norm(p.src) == _norm(r.caddr) else "<")
                 for p in tail]
        ok = shape in (["." + ">", "R." + ">"], ["." + ">", "R" + ">"])
        if ok:
            nxt_c = _snd_nxt(ps[:last_data + 1], r.caddr)
            nxt_s = _snd_nxt(ps[:last_data + 1], r.saddr)
            ok = tail[1].seq == nxt_c and tail[0].ack == nxt_s
        if not ok:
            r.problems.append(f"{vantage}: not [ACK, RST] after the server's data: {shape}")
        else:
            r.notes.append(f"{vantage}: after the server's 700 bytes the client's ACK and "
                           f"its [{tail[1].flag_text()}] (seq = snd_nxt): the wire of "
                           "close_unread_data")


@scenario("The wire of close_unread_data with a different cause: the server sends 700 bytes "
          "that the client READS (all of them; the lab checks), then the client sets "
          "SO_LINGER {on, 0} and closes: an RST. On the wire (the server's data, the client's "
          "ACK, the client's RST) this is close_unread_data; only the application knows that "
          "nothing was left unread.",
          "ESTAB/ESTAB after the read; both gone after the client's close (RST)",
          verify=_verify_linger0_after_read)
def linger0_after_read(r: Run) -> None:
    r.open_connection()
    r.s("send", name="A", n=700)
    got = r.c("recv", name="C", n=700, timeout=2.0)
    if got["received"] != 700:
        raise ScenarioError(f"the client read {got['received']} of 700 bytes")
    r.notes.append("the client read all 700 bytes before its close")
    r.settle()
    r.c("linger0", name="C")
    r.checkpoint("read_all", "client: ESTAB; server: LISTEN ESTAB")
    r.c("close", name="C")
    r.settle()
    r.checkpoint("after_client_close", "client: -; server: LISTEN")


def _verify_close_wait_rst(r: Run, pkts: dict[str, list[Packet]]) -> None:
    """The client's FIN, the server's ACK of it, about 3 s of silence, then the server's
    RST (no FIN from the server) and nothing after it."""
    for vantage in ("client", "server"):
        ps = pkts[vantage]
        fins = [p for p in ps if p.fin]
        rsts = [p for p in ps if p.rst]
        ok = (len(fins) == 1 and _norm(fins[0].src) == _norm(r.caddr) and len(rsts) == 1
              and _norm(rsts[0].src) == _norm(r.saddr) and ps[-1] is rsts[0])
        if not ok:
            r.problems.append(f"{vantage}: not one client FIN and a final server RST")
            continue
        gap = rsts[0].ts - fins[0].ts
        between = [p for p in ps if fins[0].ts < p.ts < rsts[0].ts]
        if gap < 2.5 or len(between) != 1:
            r.problems.append(f"{vantage}: CLOSE-WAIT of {gap:.3f}s, {len(between)} segments "
                              "inside it (expected only the ACK of the FIN)")
        else:
            r.notes.append(f"{vantage}: the server's [{rsts[0].flag_text()}] {gap:.3f}s "
                           "after the client's FIN (CLOSE-WAIT ended by an RST)")


@scenario("A CLOSE-WAIT ended by an RST: the client closes first (FIN; its orphaned socket "
          "waits in FIN-WAIT-2); the server reads everything (end of file) but stays in "
          "CLOSE-WAIT about 3 s, then sets SO_LINGER {on, 0} and closes: an RST from "
          "CLOSE-WAIT (tcp_close -> tcp_disconnect: tcp_need_reset), which also ends the "
          "client's FIN-WAIT-2 socket. Captures with snaplen 128.",
          "client FIN-WAIT-2 / server CLOSE-WAIT for about 3 s; both gone after the "
          "server's RST",
          snaplen=128, verify=_verify_close_wait_rst)
def close_wait_rst(r: Run) -> None:
    r.open_connection()
    r.checkpoint("established", "client: ESTAB; server: LISTEN ESTAB")
    r.mark("close")
    r.c("close", name="C")
    eof = r.s("recv", name="A", timeout=2.0)
    if not eof["eof"] or eof["received"]:
        raise ScenarioError(f"the server did not read end of file: {eof}")
    r.settle()
    r.checkpoint("close_wait", "client: FIN-WAIT-2; server: LISTEN CLOSE-WAIT")
    r.sleep_until("close", 3.0)
    r.s("linger0", name="A")
    r.s("close", name="A")
    r.settle()
    r.checkpoint("after_server_rst", "client: -; server: LISTEN")


#: the client namespace's ephemeral port range in short_loop_port_range (200 ports)
PORT_RANGE = (40000, 40199)
#: connections of short_loop_port_range and their rate (per second)
LOOP, LOOP_RATE = 64, 32.0


def _verify_port_loop(r: Run, pkts: dict[str, list[Packet]]) -> None:
    """Every connection on its own port of the range, closed client first, no RST, no
    retransmission."""
    for vantage in ("client", "server"):
        ps = pkts[vantage]
        syns = [p for p in ps if p.syn and not p.ackf]
        ports = {p.sport for p in syns}
        rst = [p for p in ps if p.rst]
        seen: dict[tuple[Any, ...], int] = {}
        for p in ps:
            if p.length or p.syn or p.fin:
                seen[_key(p)[:5]] = seen.get(_key(p)[:5], 0) + 1
        rtx = sum(1 for n in seen.values() if n > 1)
        first_fin: dict[int, str] = {}
        for p in ps:
            if p.fin:
                port = p.sport if _norm(p.src) == _norm(r.caddr) else p.dport
                first_fin.setdefault(port, "client" if _norm(p.src) == _norm(r.caddr)
                                     else "server")
        inside = all(PORT_RANGE[0] <= port <= PORT_RANGE[1] for port in ports)
        if (len(syns) != LOOP or len(ports) != LOOP or not inside or rst or rtx
                or set(first_fin.values()) != {"client"} or len(first_fin) != LOOP):
            r.problems.append(f"{vantage}: {len(syns)} SYNs on {len(ports)} ports (in range: "
                              f"{inside}), {len(rst)} RST, {rtx} retransmitted, first FINs "
                              f"{sorted(set(first_fin.values()))}")
        else:
            span = syns[-1].ts - syns[0].ts
            r.notes.append(f"{vantage}: {LOOP} connections on distinct ports "
                           f"{min(ports)}-{max(ports)} in {span:.2f}s "
                           f"({(LOOP - 1) / span:.1f}/s), client closes first, no RST, no "
                           "retransmission")


@scenario(f"A loop of {LOOP} short connections fast enough to threaten the port range: the "
          "client namespace's net.ipv4.ip_local_port_range is 40000-40199 (200 ports); one "
          f"request/response per connection, the client closes first, paced at "
          f"{LOOP_RATE:.0f} connections a second. Each leaves a client TIME-WAIT socket for "
          f"60 s: at this rate the range is used up in {200 / LOOP_RATE:.1f} s, well within "
          "the TIME-WAIT minute. Captures with snaplen 128.",
          f"{LOOP} client TIME-WAIT sockets (on distinct ports of the range) at the end; "
          "server only LISTEN",
          options={"port_range_low": PORT_RANGE[0], "port_range_high": PORT_RANGE[1]},
          sysctls=[("client", "net.ipv4.ip_local_port_range",
                    f"{PORT_RANGE[0]} {PORT_RANGE[1]}")],
          snaplen=128, verify=_verify_port_loop)
def short_loop_port_range(r: Run) -> None:
    r.listen(backlog=128)
    r.s("serve", name="L", resp=80)
    r.mark("loop")
    reply = r.client.call("traffic", addr=r.saddr, port=PORT, plan=[[1, "C"]] * LOOP,
                          workers=1, req=40, resp=80, interval=1.0 / LOOP_RATE, wait=60.0)
    r.notes.append(f"{LOOP} connections in {time.time() - r.marks['loop']:.2f}s")
    ports = reply["ports"]
    if len(set(ports)) != LOOP or not all(PORT_RANGE[0] <= p <= PORT_RANGE[1] for p in ports):
        raise ScenarioError(f"client ports not distinct within the range: {ports}")
    r.settle(0.5)
    stats = r.s("serve_stats")
    if stats["errors"] or stats["conns"] != LOOP:
        raise ScenarioError(f"server: {stats}")
    r.checkpoint("loop_done", "client: " + " ".join(["TIME-WAIT"] * LOOP) + "; server: LISTEN")


#: NFQUEUE queues and hold times (s) of fins_cross_acks_delayed
FIN_QUEUE, ACK_QUEUE, HOLD = 1, 2, 0.5


def _verify_delayed_acks(r: Run, pkts: dict[str, list[Packet]]) -> None:
    """At each side's own capture: its FIN left before the peer's FIN arrived (crossed), it
    retransmitted its FIN before an ACK covering it arrived, an ACK covering it did
    arrive, and the router dropped nothing (every segment one side sent reached the
    other)."""
    for vantage, me, peer in (("client", r.caddr, r.saddr), ("server", r.saddr, r.caddr)):
        ps = pkts[vantage]
        mine = [p for p in _from(ps, me) if p.fin]
        theirs = [p for p in _from(ps, peer) if p.fin]
        if not mine or not theirs or not mine[0].ts < theirs[0].ts:
            r.problems.append(f"{vantage}: FINs did not cross")
            continue
        end = (mine[0].seq + 1) & 0xFFFFFFFF
        acks = [p for p in _from(ps, peer) if p.ackf and ((p.ack - end) & 0xFFFFFFFF)
                < 0x80000000]
        if len(mine) < 2 or not acks or not mine[1].ts < acks[0].ts:
            r.problems.append(f"{vantage}: own FIN not retransmitted before its ACK arrived "
                              f"({len(mine)} FINs, first ACK {acks[:1]})")
            continue
        r.notes.append(f"{vantage}: own FIN, the peer's FIN {theirs[0].ts - mine[0].ts:.3f}s "
                       f"later, own FIN sent {len(mine)} times (the last at "
                       f"+{mine[-1].ts - mine[0].ts:.3f}s), its first ACK "
                       f"[{acks[0].flag_text()}] at +{acks[0].ts - mine[0].ts:.3f}s")
    sent_c = {_key(p) for p in _from(pkts["client"], r.caddr)}
    got_s = {_key(p) for p in _from(pkts["server"], r.caddr)}
    sent_s = {_key(p) for p in _from(pkts["server"], r.saddr)}
    got_c = {_key(p) for p in _from(pkts["client"], r.saddr)}
    if sent_c - got_s or sent_s - got_c:
        r.problems.append(f"segments lost: {len(sent_c - got_s)} client->server, "
                          f"{len(sent_s - got_c)} server->client")


@scenario(f"Crossing FINs whose ACKs are delayed, not lost: after a request/response the "
          f"router sends every segment with FIN and every pure ACK to an NFQUEUE delay line "
          f"that holds each {HOLD} s and then delivers it (tests/lab/nfqdelay.py; nothing is "
          "dropped). Both sides close at the same moment: each FIN is held, so both sides "
          "sit in FIN-WAIT-1 and retransmit their FINs; each receives the peer's FIN before "
          "any ACK of its own (CLOSING) and acknowledges it; the ACKs arrive 0.5 s later and "
          "take both sides to TIME-WAIT. Every FIN was acknowledged. Needs the iptables "
          "command (this kernel's nftables has no queue expression). Captures with snaplen "
          "128.",
          "ESTAB/ESTAB; FIN-WAIT-1 on both sides while the FINs are held; CLOSING on both "
          "sides; TIME-WAIT on both sides at the end",
          snaplen=128, verify=_verify_delayed_acks, needs=("iptables",))
def fins_cross_acks_delayed(r: Run) -> None:
    import threading

    r.open_connection()
    r.checkpoint("established", "client: ESTAB; server: LISTEN ESTAB")
    delayer = r.lab.delay_queue({FIN_QUEUE: HOLD, ACK_QUEUE: HOLD})
    r.lab.queue(["-p", "tcp", "--tcp-flags", "FIN", "FIN"], FIN_QUEUE)
    r.lab.queue(["-p", "tcp", "--tcp-flags", "ALL", "ACK"], ACK_QUEUE)
    threads = [threading.Thread(target=agent.call, args=("close",), kwargs={"name": name})
               for agent, name in ((r.client, "C"), (r.server, "A"))]
    r.mark("close")
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # FINs held until +0.5 s; FIN retransmissions at about +0.2 (TLP) and +0.4 s
    r.sleep_until("close", 0.3)
    r.checkpoint("fins_held", "client: FIN-WAIT-1; server: LISTEN FIN-WAIT-1")
    # the peer's FIN arrives at +0.5 s, its first retransmission at +0.7 s, the ACKs of
    # the own FIN at about +1.0 s
    r.sleep_until("close", 0.59)
    r.checkpoint("closing", "client: CLOSING; server: LISTEN CLOSING")
    r.sleep_until("close", 2.6)
    r.notes.extend(f"router: {line}" for line in delayer.stop() if line.startswith("HELD"))
    r.checkpoint("after_acks", "client: TIME-WAIT; server: LISTEN TIME-WAIT")


# --------------------------------------------------------------------------- running


def _norm(addr: str) -> str:
    return str(ipaddress.ip_address(addr))


HOSTS = {"client": [CLIENT4, CLIENT6], "server": [SERVER4, SERVER6]}


def visible_flows(pkts: list[Packet]) -> list[list[Any]]:
    """Distinct 4-tuples (client addr, client port, server addr, server port) in a capture."""
    clients = {_norm(a) for a in HOSTS["client"]}
    flows: set[tuple[str, int, str, int]] = set()
    for p in pkts:
        src, dst = _norm(p.src), _norm(p.dst)
        if src in clients:
            flows.add((src, p.sport, dst, p.dport))
        elif dst in clients:
            flows.add((dst, p.dport, src, p.sport))
    return [list(f) for f in sorted(flows)]


def _capture_plan(spec: Scenario, lab: Lab, workdir: Path) -> dict[str, Capture]:
    name = spec.name
    caps = {
        "client": lab.capture("client", ["eth0"], workdir / f"{name}.client.pcap",
                              nano="client" in spec.nano, snaplen=spec.snaplen),
        "server": lab.capture("server", ["eth0"], workdir / f"{name}.server.pcap",
                              nano="server" in spec.nano, snaplen=spec.snaplen),
    }
    if spec.any_capture:
        caps["any"] = lab.capture("server", ["any"], workdir / f"{name}.any.pcap",
                                  linktype="LINUX_SLL2")
    if spec.pcapng:
        caps["client_pcapng"] = lab.capture("client", ["eth0", "lo"],
                                            workdir / f"{name}.client.pcapng", tool="dumpcap")
    return caps


CAPTURE_NOTES = {
    "client": "tcpdump on the client namespace's veth (client vantage)",
    "server": "tcpdump on the server namespace's veth (server vantage)",
    "any": "tcpdump -i any -y LINUX_SLL2 in the server namespace (server vantage, SLL2)",
    "client_pcapng": "dumpcap on eth0 and lo in the client namespace (pcapng, 2 interfaces)",
}


#: The namespace each capture is taken in (its vantage side).
CAPTURE_SIDE = {"client": "client", "server": "server", "any": "server",
                "client_pcapng": "client"}
_CTL = 0x07  # FIN | SYN | RST


def _key(p: Packet) -> tuple[Any, ...]:
    return (_norm(p.src), p.sport, _norm(p.dst), p.dport, p.seq, p.ack, p.flags, p.length)


def blindness(run: Run, pkts: dict[str, list[Packet]]
              ) -> dict[str, dict[str, list[str]]]:
    """Per checkpoint name: vantage -> reasons why the *peer's* state cannot be known there.

    The router drops segments between the two vantage points. From vantage V on side X the
    peer P's state is unobservable at ``ts`` when (a) a SYN/FIN/RST that P sent before
    ``ts`` has not reached X by ``ts`` (not even as a retransmission), or (b) the last
    segment X sent to P before ``ts`` was dropped (X's capture shows it, P's does not), so
    V cannot tell whether P's state moved. Compared with `tests/golden.py`'s rules, P's
    sockets are then left out for V at that checkpoint.
    """
    side_pkts = {"client": pkts.get("client", []), "server": pkts.get("server", [])}
    addrs = {"client": {_norm(CLIENT4), _norm(CLIENT6)},
             "server": {_norm(SERVER4), _norm(SERVER6)}}
    out: dict[str, dict[str, list[str]]] = {}
    for cp in run.checkpoints:
        per_side: dict[str, list[str]] = {}
        for x, peer in (("client", "server"), ("server", "client")):
            mine = [q for q in side_pkts[x] if q.ts < cp.ts]
            theirs = [q for q in side_pkts[peer] if q.ts < cp.ts + QUIET]
            reasons: list[str] = []
            # (a) control segments the peer sent that never reached this side
            arrived = {_key(q) for q in mine if _norm(q.src) in addrs[peer]}
            sent_ctl = {}
            for q in theirs:
                if _norm(q.src) in addrs[peer] and q.flags & _CTL and q.ts < cp.ts:
                    sent_ctl.setdefault((_key(q)[:4], q.seq, q.flags & _CTL), q)
            for (_f, _seq, _fl), q in sent_ctl.items():
                if not any(k[:4] == _key(q)[:4] and k[4] == q.seq and k[6] & _CTL == _fl
                           for k in arrived):
                    reasons.append(f"{peer}'s [{q.flag_text()}] at {q.ts:.6f} never reached "
                                   f"the {x} by the checkpoint")
            # (b) the last segment this side sent to the peer (per flow) was dropped
            last: dict[tuple[Any, ...], Packet] = {}
            for q in mine:
                if _norm(q.src) in addrs[x]:
                    last[_key(q)[:4]] = q
            for q in last.values():
                k = _key(q)
                # same segment seen by the peer within TRANSIT of being sent = delivered
                if not any(_key(t) == k and abs(t.ts - q.ts) < TRANSIT for t in theirs):
                    reasons.append(f"the {x}'s last segment to the {peer} [{q.flag_text()}] "
                                   f"at {q.ts:.6f} was dropped")
            if reasons:
                per_side[x] = reasons
        vantages = {}
        for vantage in run.captures:
            side = CAPTURE_SIDE[vantage]
            if side in per_side:
                vantages[vantage] = per_side[side]
        if vantages:
            out[cp.name] = vantages
    return out


def _quiet_problems(run: Run, pkts: dict[str, list[Packet]]) -> list[str]:
    out = []
    for cp in run.checkpoints:
        for vantage, ps in pkts.items():
            near = [p for p in ps if cp.ts - QUIET <= p.ts <= cp.ts_end + QUIET]
            if near:
                p = near[0]
                out.append(f"checkpoint {cp.name}: {vantage} has a segment at "
                           f"{p.ts - cp.ts:+.3f}s ({p.src}:{p.sport} > {p.dst}:{p.dport} "
                           f"[{p.flag_text()}] len {p.length})")
    return out


def _end_problems(run: Run, pkts: dict[str, list[Packet]]) -> list[str]:
    """The end checkpoint is the last one and no segment follows it in any capture."""
    ends = [i for i, cp in enumerate(run.checkpoints) if cp.end]
    if ends != [len(run.checkpoints) - 1]:
        return [f"end checkpoint misplaced: {ends} of {len(run.checkpoints)}"]
    cp = run.checkpoints[-1]
    out = []
    for vantage, ps in pkts.items():
        late = [p for p in ps if p.ts >= cp.ts - QUIET]
        if late:
            p = late[0]
            out.append(f"end checkpoint: {vantage} has {len(late)} segment(s) after it, the "
                       f"first at {p.ts - cp.ts:+.3f}s ({p.src}:{p.sport} > {p.dst}:{p.dport} "
                       f"[{p.flag_text()}] len {p.length})")
    return out


@dataclass
class Outcome:
    name: str
    expected: dict[str, Any]
    files: list[Path]
    notes: list[str]
    problems: list[str]
    attempts: int
    seconds: float
    #: why the scenario was not run (a command it needs is missing)
    skipped: str = ""


def run_once(spec: Scenario, out: Path) -> Outcome:
    """Run one scenario once in a fresh lab; write its files into ``out`` (if no problem)."""
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".lab-{spec.name}-", dir=out))
    try:
        with Lab(spec.name) as lab:
            for role, key, value in spec.sysctls:
                lab.sysctl(role, key, value)
            run = Run(spec, lab, workdir, lab.agent("client"), lab.agent("server"))
            run.notes.extend(lab.notes)
            run.captures = _capture_plan(spec, lab, workdir)
            if not spec.late_capture:
                run.start_captures()
            spec.fn(run)
            if not (run.checkpoints and run.checkpoints[-1].end):
                run.settle(0.3)
                run.end_checkpoint()
            for cap in run.captures.values():
                cap.stop()
        pkts = {v: read_packets(c.path) for v, c in run.captures.items()}
        if spec.verify is not None:
            spec.verify(run, pkts)
        run.problems.extend(_quiet_problems(run, pkts))
        run.problems.extend(_end_problems(run, pkts))
        expected = _expected(spec, run, pkts)
        truth = ground_truth(spec.name, expected, pkts)
        run.problems.extend(f"anomaly ground truth: {p}" for p in truth.problems)
        expected = annotate(expected, truth)
        files = []
        if not run.problems:
            for stale in out.glob(f"{spec.name}.*"):
                stale.unlink()
            for cap in run.captures.values():
                dest = out / cap.path.name
                shutil.move(str(cap.path), dest)
                dest.chmod(0o644)
                files.append(dest)
            dest = out / f"{spec.name}.expected.json"
            dest.write_text(dump_json(expected) + "\n")
            files.append(dest)
        return Outcome(spec.name, expected, files, run.notes, run.problems, 1, time.time() - t0)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _checkpoint_json(cp: Checkpoint, blind: dict[str, list[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": cp.name, "ts": round(cp.ts, 6)}
    if cp.end:
        out["end"] = True
    out["ss"] = cp.ss
    if blind:
        peer = {"client": "server", "server": "client"}
        out["blind"] = {v: [peer[CAPTURE_SIDE[v]]] for v in blind}
        out["blind_why"] = blind
    return out


def _expected(spec: Scenario, run: Run, pkts: dict[str, list[Packet]]) -> dict[str, Any]:
    blind = blindness(run, pkts)
    captures: dict[str, Any] = {}
    for vantage, cap in run.captures.items():
        captures[vantage] = {
            "file": cap.path.name,
            "visible_flows": visible_flows(pkts[vantage]),
            "namespace": CAPTURE_SIDE[vantage],
            "link_type": link_type(cap.path) if pkts[vantage] else None,
            "how": CAPTURE_NOTES[vantage],
        }
    return {
        "scenario": spec.name,
        "description": spec.description,
        "kernel": platform.release(),
        "options": dict(spec.options),
        "sysctls": {f"{role}:{key}": value for role, key, value in spec.sysctls},
        **({"option_hints": dict(spec.hints)} if spec.hints else {}),
        "hosts": HOSTS,
        "captures": captures,
        "checkpoints": [_checkpoint_json(cp, blind.get(cp.name, {}))
                        for cp in run.checkpoints],
        "lab_notes": run.notes,
    }


def dump_json(obj: Any, indent: int = 0, width: int = 100) -> str:
    """JSON with small objects and lists kept on one line (readable diffs, small files)."""
    flat = json.dumps(obj)
    if len(flat) + indent <= width or not isinstance(obj, (dict, list)) or not obj:
        return flat
    pad = " " * (indent + 1)
    if isinstance(obj, dict):
        items = [f"{pad}{json.dumps(k)}: {dump_json(v, indent + 1, width)}"
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + dump_json(v, indent + 1, width) for v in obj]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def run_scenario(name: str, out: Path, attempts: int = 3) -> Outcome:
    """Run a scenario until a run has no problem (at most ``attempts`` runs)."""
    spec = SCENARIOS[name]
    missing = spec.missing_needs()
    if missing:
        why = f"{name} needs {', '.join(missing)} (Debian package iptables: the NFQUEUE " \
              "target; this kernel's nftables has no queue expression)"
        return Outcome(name, {}, [], [], [], 0, 0.0, skipped=why)
    problems: list[str] = []
    for attempt in range(1, attempts + 1):
        if ABORT.is_set():
            break
        try:
            outcome = run_once(spec, out)
        except ScenarioError as exc:
            problems.append(f"attempt {attempt}: {exc}")
            continue
        outcome.attempts = attempt
        if not outcome.problems:
            outcome.notes[:0] = [f"retried after: {p}" for p in problems]
            return outcome
        problems += [f"attempt {attempt}: {p}" for p in outcome.problems]
    return Outcome(name, {}, [], [], problems, attempts, 0.0)


def kernel_release() -> str:
    return os.uname().release
