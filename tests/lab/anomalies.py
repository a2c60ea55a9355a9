"""Anomaly ground truth of the kernel-lab scenarios: the ``anomalies`` key of every
``NAME.expected.json``.

Owns: `DESIGNS` (what each scenario makes happen, in the vocabulary of
`sample_pcaps/README.md`), `ground_truth`, which turns a design into rows for every
vantage capture of one run after checking in that run's captures (tshark, never tcplife)
that the evidence is really there, and an audit that everything anomalous-looking in the
captures (RSTs, retransmissions, probes, CLOSE-WAIT durations, TIME-WAIT counts) is either
a declared anomaly or explicitly explained. Command line, to (re)annotate expected files
without re-running the scenarios::

    python -m tests.lab.anomalies sample_pcaps/ [NAMES...] [--check]

Row format: ``{"flow": [client addr, client port, server addr, server port], "instance":
n, "side": "client"|"server", "kind": KIND}``; ``instance`` counts connections on one
4-tuple in capture order (a new bare SYN with a new ISN starts the next one).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .netlab import CLIENT4, CLIENT6, Packet, read_packets

KINDS = ("refused", "syn_unanswered", "handshake_incomplete", "rst_on_close_unread_data",
         "abortive_close", "lingering_close_wait", "fin_wait_2_timeout", "missing_final_ack",
         "simultaneous_close", "simultaneous_open", "half_close", "write_after_close",
         "half_open", "port_reuse", "time_wait_accumulation", "keepalive", "mid_stream")

#: Thresholds used unless a scenario says otherwise (`Design`).
DEFAULT_CLOSE_WAIT_LINGER = 5.0
DEFAULT_TIME_WAIT_THRESHOLD = 20
TIME_WAIT_LEN = 60.0

#: Capture name -> the namespace it was taken in (as in scenarios.CAPTURE_SIDE).
CAPTURE_SIDE = {"client": "client", "server": "server", "any": "server",
                "client_pcapng": "client"}
PEER = {"client": "server", "server": "client"}
_CLIENTS = {str(ipaddress.ip_address(a)) for a in (CLIENT4, CLIENT6)}

Flow = tuple[str, int, str, int]


def _norm(addr: str) -> str:
    return str(ipaddress.ip_address(addr))


# --------------------------------------------------------------------------- connections


@dataclass
class Conn:
    """One instance of a 4-tuple in one capture: its segments, each tagged with its sender."""

    flow: Flow
    instance: int
    pkts: list[tuple[str, Packet]] = field(default_factory=list)

    def by(self, side: str) -> list[Packet]:
        return [p for s, p in self.pkts if s == side]

    @property
    def start(self) -> float:
        return self.pkts[0][1].ts

    @property
    def end(self) -> float:
        return self.pkts[-1][1].ts

    def fins(self, side: str) -> list[Packet]:
        return [p for p in self.by(side) if p.fin]

    def rsts(self, side: str) -> list[Packet]:
        return [p for p in self.by(side) if p.rst]

    def bare_syns(self, side: str) -> list[Packet]:
        return [p for p in self.by(side) if p.syn and not p.ackf]

    def synacks(self, side: str) -> list[Packet]:
        return [p for p in self.by(side) if p.syn and p.ackf]

    def payload(self, side: str) -> list[Packet]:
        return [p for p in self.by(side) if p.length > 0]


def connections(pkts: list[Packet]) -> dict[Flow, list[Conn]]:
    """Per 4-tuple (client-oriented), its instances in capture order."""
    out: dict[Flow, list[Conn]] = {}
    isn: dict[Flow, dict[str, int]] = {}
    for p in pkts:
        src, dst = _norm(p.src), _norm(p.dst)
        if src in _CLIENTS:
            flow, side = (src, p.sport, dst, p.dport), "client"
        elif dst in _CLIENTS:
            flow, side = (dst, p.dport, src, p.sport), "server"
        else:
            continue
        conns = out.setdefault(flow, [])
        if p.syn and not p.ackf:
            known = isn.setdefault(flow, {})
            if side in known and known[side] != p.seq:
                conns.append(Conn(flow, len(conns)))
                isn[flow] = {}
            isn[flow].setdefault(side, p.seq)
        elif p.syn and side == "server":
            isn.setdefault(flow, {}).setdefault("server", p.seq)
        if not conns:
            conns.append(Conn(flow, 0))
        conns[-1].pkts.append((side, p))
    return out


# --------------------------------------------------------------------------- context


@dataclass
class Ctx:
    """One run: its expected file (checkpoints, captures) and the segments per capture."""

    expected: dict[str, Any]
    pkts: dict[str, list[Packet]]
    design: Design
    conns: dict[str, dict[Flow, list[Conn]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.conns = {v: connections(ps) for v, ps in self.pkts.items()}

    def own(self, side: str) -> str:
        """The plain capture taken in ``side``'s namespace."""
        return side

    def conn(self, vantage: str, flow: Flow, instance: int) -> Conn | None:
        conns = self.conns[vantage].get(flow, [])
        return conns[instance] if instance < len(conns) else None

    def capture_end(self, vantage: str) -> float:
        ps = self.pkts[vantage]
        last_cp = max((cp["ts"] for cp in self.expected["checkpoints"]), default=0.0)
        return max([last_cp] + [p.ts for p in ps[-1:]])

    def all_flows(self) -> list[Flow]:
        flows: set[Flow] = set()
        for per in self.conns.values():
            flows |= set(per)
        return sorted(flows)

    def checkpoints_with(self, flow: Flow, role: str, state: str) -> list[str]:
        out = []
        for cp in self.expected["checkpoints"]:
            for s in cp["ss"].get(role, []):
                pair = ((_norm(s["local"][0]), s["local"][1]),
                        (_norm(s["remote"][0]), s["remote"][1]))
                mine = ((flow[0], flow[1]), (flow[2], flow[3])) if role == "client" else (
                    (flow[2], flow[3]), (flow[0], flow[1]))
                if pair == mine and s["state"] == state:
                    out.append(cp["name"])
        return out


# --------------------------------------------------------------------------- evidence

Evidence = Callable[[Ctx, str, Conn, str], "str | None"]


def _fin_end(p: Packet) -> int:
    return (p.seq + p.length + 1) & 0xFFFFFFFF


def _covers(ack: int, upto: int) -> bool:
    return ((ack - upto) & 0xFFFFFFFF) < 0x80000000


def ev_refused(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    if not c.bare_syns("client") or not c.rsts("server") or c.synacks("server"):
        return "no client SYN answered by a server RST (without SYN-ACK)"
    return None


def ev_syn_unanswered(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    if not c.bare_syns("client") or c.by("server"):
        return "not only client SYNs on the flow"
    return None


def ev_handshake_incomplete(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    sa = c.synacks("server")
    if len(sa) < 2 or len({p.seq for p in sa}) != 1:
        return f"{len(sa)} SYN-ACK transmission(s), expected a retransmitted SYN-ACK"
    # At the server's own capture no pure ACK completing the handshake ever arrives.
    own = ctx.conn(ctx.own("server"), c.flow, c.instance)
    if own is None:
        return "server capture lacks the connection"
    isn1 = (sa[0].seq + 1) & 0xFFFFFFFF
    done = [p for p in own.by("client") if p.ackf and p.ack == isn1 and not p.length
            and not p.flags & 0x07]
    if done:
        return f"the server received the handshake ACK at {done[0].ts:.6f}"
    return None


def _last_own_data(c: Conn, side: str) -> float:
    mine = [p.ts for p in c.by(side) if p.length or p.fin or p.syn]
    return max(mine) if mine else c.start


def ev_rst_on_close_unread_data(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    if not c.rsts(side) or c.fins(side):
        return f"{side} did not end with RST instead of FIN"
    t = _last_own_data(c, side)
    if not [p for p in c.payload(PEER[side]) if t < p.ts < c.rsts(side)[0].ts]:
        return f"no payload from the {PEER[side]} after the {side}'s last segment"
    return None


def ev_abortive_close(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    if not c.rsts(side) or c.fins(side):
        return f"{side} did not end with RST instead of FIN"
    t = _last_own_data(c, side)
    late = [p for p in c.payload(PEER[side]) if t < p.ts < c.rsts(side)[0].ts]
    if late:
        return f"the {PEER[side]} sent payload after the {side}'s last payload"
    return None


def close_wait_span(ctx: Ctx, v: str, c: Conn, side: str) -> tuple[float, float] | None:
    """(FIN from the peer, the side's own FIN/RST or death or capture end) when ``side``
    received the peer's FIN first; None if it did not pass through CLOSE-WAIT."""
    peer_fins = c.fins(PEER[side])
    if not peer_fins:
        return None
    t_in = peer_fins[0].ts
    own = [p.ts for p in c.by(side) if (p.fin or p.rst)]
    if own and own[0] < t_in:
        return None  # its own FIN went first: FIN-WAIT, not CLOSE-WAIT
    ends = [t for t in own if t >= t_in]
    ends += [p.ts for p in c.rsts(PEER[side]) if p.ts >= t_in]
    nxt = ctx.conns[v][c.flow]
    if c.instance + 1 < len(nxt):
        ends.append(nxt[c.instance + 1].start)
    return t_in, min(ends) if ends else ctx.capture_end(v)


def ev_lingering_close_wait(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    span = close_wait_span(ctx, v, c, side)
    if span is None:
        return f"{side} never in CLOSE-WAIT"
    if span[1] - span[0] <= ctx.design.close_wait_linger:
        return f"CLOSE-WAIT only {span[1] - span[0]:.3f}s"
    return None


def ev_fin_wait_2_timeout(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    fins = c.fins(side)
    if not fins:
        return f"{side} sent no FIN"
    end = _fin_end(fins[0])
    acks = [p for p in c.by(PEER[side]) if p.ackf and _covers(p.ack, end)]
    if not acks:
        return f"{side}'s FIN never acknowledged"
    t = acks[0].ts
    limit = float(ctx.expected["options"].get("fin_wait_2", 60.0))
    if [p for p in c.fins(PEER[side]) if p.ts <= t + limit]:
        return "the peer's FIN came within the FIN-WAIT-2 timeout"
    nxt = ctx.conns[v][c.flow]
    later = ctx.capture_end(v) if c.instance + 1 >= len(nxt) else nxt[c.instance + 1].start
    later = max(later, c.end)
    if later < t + limit:
        return f"the capture stops {later - t:.3f}s after the ACK, before the timeout"
    return None


def ev_missing_final_ack(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    fins = c.fins(side)
    if len(fins) < 2:
        return f"{side}'s FIN not retransmitted"
    end = _fin_end(fins[0])
    # The peer's own capture shows an ACK covering the FIN, sent before a retransmission.
    peer = ctx.conn(ctx.own(PEER[side]), c.flow, c.instance)
    mine = ctx.conn(ctx.own(side), c.flow, c.instance)
    if peer is None or mine is None:
        return "a capture lacks the connection"
    acked = [p.ts for p in peer.by(PEER[side]) if p.ackf and _covers(p.ack, end)]
    rtx = [p.ts for p in mine.fins(side)[1:]]
    if not acked or not any(t > acked[0] for t in rtx):
        return "no FIN retransmission after the peer had sent an ACK covering it"
    arrived = [p.ts for p in mine.by(PEER[side]) if p.ackf and _covers(p.ack, end)]
    if arrived and arrived[0] < max(rtx) and arrived[0] <= acked[0] + 0.02:
        return "the peer's ACK did arrive"
    return None


def ev_simultaneous_close(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    mine = ctx.conn(ctx.own(side), c.flow, c.instance)
    if mine is None or not mine.fins(side) or not mine.fins(PEER[side]):
        return "FINs missing"
    if not mine.fins(side)[0].ts < mine.fins(PEER[side])[0].ts:
        return f"{side}'s FIN was not sent before the peer's arrived"
    if not ctx.checkpoints_with(c.flow, side, "CLOSING"):
        return f"no checkpoint shows the {side} in CLOSING"
    return None


def ev_simultaneous_open(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    if not c.bare_syns("client") or not c.bare_syns("server"):
        return "not both sides sent a bare SYN"
    for s in ("client", "server"):
        mine = ctx.conn(ctx.own(s), c.flow, c.instance)
        if mine is None or not mine.bare_syns(PEER[s]) or not (
                mine.bare_syns(s)[0].ts < mine.bare_syns(PEER[s])[0].ts):
            return f"the {s} did not send its SYN before the peer's arrived"
    return None


def ev_half_close(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    fins = c.fins(side)
    if not fins:
        return f"{side} sent no FIN"
    t = fins[0].ts
    late = [p for p in c.payload(PEER[side]) if p.ts > t]
    if not late:
        return f"no payload from the {PEER[side]} after the {side}'s FIN"
    end = (late[-1].seq + late[-1].length) & 0xFFFFFFFF
    if not [p for p in c.by(side) if p.ackf and not p.rst and _covers(p.ack, end)]:
        return f"the {side} did not acknowledge that payload"
    return None


def ev_write_after_close(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    fins, rsts = c.fins(side), c.rsts(side)
    if not fins or not rsts:
        return f"{side} did not send FIN then RST"
    if not [p for p in c.payload(PEER[side]) if fins[0].ts < p.ts <= rsts[0].ts]:
        return f"no {PEER[side]} payload between the {side}'s FIN and RST"
    return None


def ev_half_open(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    data = c.payload(side)
    groups: dict[tuple[int, int], list[Packet]] = {}
    for p in data:
        groups.setdefault((p.seq, p.length), []).append(p)
    rtx = [g for g in groups.values() if len(g) >= 3]
    if not rtx:
        return f"no {side} data transmitted 3 times"
    g = rtx[0]
    own = ctx.conn(ctx.own(side), c.flow, c.instance)
    if own is None:
        return "own capture lacks the connection"
    heard = [p for p in own.by(PEER[side]) if g[0].ts < p.ts < g[2].ts]
    if heard:
        return f"the {side} heard from the peer while retransmitting"
    return None


def ev_port_reuse(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    if c.instance == 0 or not c.bare_syns("client"):
        return "not a later instance opened by a client SYN"
    t = c.bare_syns("client")[0].ts
    before = [cp for cp in ctx.expected["checkpoints"] if cp["ts"] < t]
    if not before:
        return "no checkpoint before the new SYN"
    cp = before[-1]
    for role in ("client", "server"):
        for s in cp["ss"].get(role, []):
            ends = {(_norm(s["local"][0]), s["local"][1]), (_norm(s["remote"][0]),
                                                             s["remote"][1])}
            if ends == {(c.flow[0], c.flow[1]), (c.flow[2], c.flow[3])}:
                return None
    return f"checkpoint {cp['name']} shows no socket of the previous instance"


def ev_keepalive(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    if not keepalive_probes(c, side):
        return f"no keep-alive probe from the {side}"
    return None


def ev_mid_stream(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    if c.pkts[0][1].syn:
        return "the capture starts with a SYN"
    return None


def ev_time_wait_accumulation(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    peak = time_wait_peak(ctx, v, side)
    if peak is None or peak[0] < ctx.design.time_wait_threshold:
        return f"TIME-WAIT peak {peak and peak[0]} below the threshold"
    if peak[1] != (c.flow, c.instance):
        return f"the peak is on {peak[1]}, not on this connection"
    n = max(sum(1 for s in cp["ss"].get(side, []) if s["state"] == "TIME-WAIT")
            for cp in ctx.expected["checkpoints"])
    if n < ctx.design.time_wait_threshold:
        return f"ss never lists {ctx.design.time_wait_threshold} TIME-WAIT sockets ({n})"
    return None


EVIDENCE: dict[str, Evidence] = {name[3:]: fn for name, fn in globals().items()
                                 if name.startswith("ev_")}
assert set(EVIDENCE) == set(KINDS), set(KINDS) ^ set(EVIDENCE)


# --------------------------------------------------------------------------- measures


def keepalive_probes(c: Conn, side: str) -> list[Packet]:
    """Segments at snd_nxt - 1 with 0 or 1 byte, no SYN/FIN/RST, after the side's data."""
    out, nxt = [], None
    for s, p in c.pkts:
        if s != side:
            continue
        end = (p.seq + p.length + (1 if p.syn else 0) + (1 if p.fin else 0)) & 0xFFFFFFFF
        if (nxt is not None and p.length <= 1 and not p.flags & 0x07
                and p.seq == (nxt - 1) & 0xFFFFFFFF):
            out.append(p)
            continue
        if nxt is None or _covers(end, nxt):
            nxt = end
    return out


def time_wait_entries(ctx: Ctx, v: str, side: str) -> list[tuple[float, float, Flow, int]]:
    """(enter, leave, flow, instance) for every connection whose ``side`` closed first and
    acknowledged the peer's FIN (TIME-WAIT), as seen in capture ``v``."""
    out = []
    for flow, conns in ctx.conns[v].items():
        for c in conns:
            mine, theirs = c.fins(side), c.fins(PEER[side])
            if not mine or not theirs or theirs[0].ts < mine[0].ts:
                continue
            end = _fin_end(theirs[0])
            acked = [p for p in c.by(side) if p.ts >= theirs[0].ts and p.ackf
                     and not p.rst and _covers(p.ack, end)]
            if not acked:
                continue
            leave = theirs[0].ts + TIME_WAIT_LEN
            if c.instance + 1 < len(conns):
                leave = min(leave, conns[c.instance + 1].start)
            out.append((theirs[0].ts, leave, flow, c.instance))
    return sorted(out)


def time_wait_peak(ctx: Ctx, v: str, side: str) -> tuple[int, tuple[Flow, int]] | None:
    """Largest number of ``side`` sockets in TIME-WAIT at once and the connection whose
    entry first reached it."""
    entries = time_wait_entries(ctx, v, side)
    if not entries:
        return None
    events = sorted([(e[0], 1, (e[2], e[3])) for e in entries]
                    + [(e[1], -1, (e[2], e[3])) for e in entries],
                    key=lambda x: (x[0], x[1]))
    n, best, at = 0, 0, None
    for _t, d, conn in events:
        n += d
        if n > best:
            best, at = n, conn
    assert at is not None
    return best, at


# --------------------------------------------------------------------------- design


@dataclass(frozen=True)
class Row:
    """A declared anomaly. ``flow``: index into the run's flows (sorted), or "tw_peak:SIDE"
    for the connection at the TIME-WAIT peak of that host. ``hidden``: vantage -> why that
    capture cannot show it (the row is left out there)."""

    kind: str
    side: str
    instance: int = 0
    flow: int | str = 0
    hidden: tuple[tuple[str, str], ...] = ()


@dataclass
class Design:
    rows: list[Row] = field(default_factory=list)
    close_wait_linger: float = DEFAULT_CLOSE_WAIT_LINGER
    time_wait_threshold: int = DEFAULT_TIME_WAIT_THRESHOLD
    #: Audit findings that are not anomalies (or are covered by a row): key -> why.
    explained: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _hidden(**why: str) -> tuple[tuple[str, str], ...]:
    return tuple(why.items())


_SERVER_SIDE_CAPTURES = ("server", "any")

DESIGNS: dict[str, Design] = {
    "refused": Design([Row("refused", "server")]),
    "listen_no_accept": Design(explained={
        "rtx_syn:client": "the third client's first SYN is ignored while the accept queue "
                          "is full; its retransmission is answered (not syn_unanswered)"}),
    "normal_close_client_first": Design(notes=[
        "the server's CLOSE-WAIT lasts about 1.6 s by design (threshold 5 s)"]),
    "server_never_closes": Design(
        [Row("fin_wait_2_timeout", "client"), Row("lingering_close_wait", "server")],
        close_wait_linger=1.0,
        explained={"rst:client": "the client host answers the server's late FIN with RST "
                                 "(no socket left after the FIN-WAIT-2 timeout): FIN, not "
                                 "data, so not write_after_close; no other kind applies"}),
    "server_killed": Design(),
    "shutdown_rd": Design([Row("rst_on_close_unread_data", "client")]),
    "shutdown_wr_peer_sends": Design([Row("half_close", "client")], notes=[
        "the server's CLOSE-WAIT (about 2 s, sending all the while) is the half-close "
        "itself, not a lingering CLOSE-WAIT (threshold 5 s)"]),
    "close_unread_data": Design([Row("rst_on_close_unread_data", "client")]),
    "linger0": Design([Row("abortive_close", "client")]),
    "simultaneous_close": Design(
        [Row("simultaneous_close", "client"), Row("simultaneous_close", "server"),
         Row("missing_final_ack", "client"), Row("missing_final_ack", "server")],
        explained={"rtx_fin:client": "FIN-WAIT-1 retransmissions while FINs are dropped, "
                                     "then CLOSING ones while ACKs are dropped",
                   "rtx_fin:server": "as for the client"},
        notes=["missing_final_ack on both sides: after the FINs crossed each side sent a "
               "pure ACK of the peer's FIN (dropped) and the peer retransmitted its FIN in "
               "CLOSING; the FIN-WAIT-1 retransmissions before (FINs dropped) are not the "
               "anomaly. Each vantage shows it for both sides: the own FIN retransmitted "
               "in CLOSING with no ACK arriving, the peer's FIN retransmitted after the own "
               "ACK of it left"]),
    "final_ack_dropped": Design(
        [Row("missing_final_ack", "server")],
        explained={"rtx_fin:server": "LAST-ACK retransmissions (missing_final_ack)"},
        notes=["missing_final_ack (server) is listed at both vantages: the client capture "
               "shows its ACKs of the server's FIN leaving and the FIN retransmitted anyway; "
               "the server capture shows the FIN retransmitted in LAST-ACK with no ACK "
               "arriving until the drop is lifted"]),
    "syn_dropped": Design([Row("syn_unanswered", "client", hidden=_hidden(
        server="the router drops every SYN before the server's capture point: the server "
               "capture has no segment at all"))]),
    "handshake_ack_dropped": Design(
        [Row("handshake_incomplete", "server")],
        notes=["handshake_incomplete (server) is listed at both vantages: the client capture "
               "shows the client's ACK leaving, then the server's SYN-ACK retransmitted (it "
               "never got that ACK) and the server's RST to the client's first data"],
        explained={"rst:server": "the server (request socket gone after its SYN-ACK retries)"
                                 " answers the client's first data with RST: no kind applies"}),
    "write_after_peer_closed": Design([Row("write_after_close", "server")]),
    "dup_fd_close_once": Design(),
    "ipv6": Design(),
    "mid_stream": Design([Row("mid_stream", "client")]),
    "port_reuse_after_time_wait": Design([Row("port_reuse", "client", instance=1)]),
    "many_short": Design([Row("time_wait_accumulation", "client", flow="tw_peak:client")],
                         notes=["time_wait_accumulation: 24 client TIME-WAIT sockets at "
                                "once (threshold 20); the row is on the last connection, "
                                "whose TIME-WAIT made the peak"]),
    "port_reuse_close_wait": Design(
        [Row("fin_wait_2_timeout", "client"), Row("lingering_close_wait", "server"),
         Row("port_reuse", "client", instance=1)],
        close_wait_linger=1.0,
        explained={"rst:client": "the new SYN-SENT socket's RST answering the challenge ACK "
                                 "(excluded from abortive_close by definition)",
                   "rtx_syn:client": "the SYN retransmitted 2 jiffies after that RST (Linux "
                                     "re-arms the SYN timer to TCP_TIMEOUT_MIN there)"},
        notes=["port_reuse_close_wait: the challenge ACK and the client's RST carry the old "
               "connection's sequence numbers but come after the new SYN, so by capture "
               "order they are in instance 1's time span; the RST is what ends instance 0 "
               "on the server"]),
    "port_reuse_time_wait_refused": Design(
        [Row("port_reuse", "client", instance=1)],
        explained={"rst:client": "the new SYN-SENT socket's RST answering the TIME-WAIT "
                                 "socket's ACK (excluded from abortive_close by definition)",
                   "rtx_syn:client": "the SYN retransmitted 2 jiffies after that RST (Linux "
                                     "re-arms the SYN timer to TCP_TIMEOUT_MIN there)",
                   "rtx_data:client": "retransmissions within the 64 MiB bulk transfer (a "
                                      "full queue on the path drops segments): no kind "
                                      "applies"},
        notes=["port_reuse_time_wait_refused: the TIME-WAIT socket's ACK and the client's "
               "RST carry the old connection's sequence numbers but come after the new SYN; "
               "the RST is what ends instance 0's TIME-WAIT on the server"]),
    "port_reuse_time_wait_timestamp": Design(
        [Row("port_reuse", "client", instance=1)],
        explained={"rtx_data:client": "retransmissions within the 64 MiB bulk transfer (a "
                                      "full queue on the path drops segments): no kind "
                                      "applies"}),
    "keepalive": Design([Row("keepalive", "client")]),
    "half_open": Design(
        [Row("half_open", "client")],
        explained={"rtx_data:client": "the client's retransmissions into silence"},
        notes=["half_open (client) is listed at both vantages: the server capture shows the "
               "same 200 bytes arriving 5 times and each one ACKed by the server, i.e. the "
               "server's ACKs never reach the client"]),
    "fin_wait_2_timeout_then_data": Design(
        [Row("fin_wait_2_timeout", "client"), Row("lingering_close_wait", "server"),
         Row("write_after_close", "client")],
        close_wait_linger=1.0,
        notes=["write_after_close (client): the client closed; after its FIN-WAIT-2 socket "
               "expired the client host answers the server's data with RST"]),
    "clean_traffic": Design(
        [Row("time_wait_accumulation", "client", flow="tw_peak:client")],
        close_wait_linger=1.0,
        notes=["clean_traffic: at threshold 20 the client host really accumulates TIME-WAIT "
               "(one per client-first close, all alive at the end: ss lists them); the server "
               "host holds only the 12 server-first closes, below the threshold, so no row "
               "for it; every CLOSE-WAIT lasts milliseconds (threshold 1 s); no RST, no "
               "retransmission"]),
    "simultaneous_open": Design(
        [Row("simultaneous_open", "client")],
        explained={"rtx_syn:client": "the first SYNs are dropped on purpose; the "
                                     "retransmissions cross (simultaneous_open)",
                   "rtx_syn:server": "as for the client"}),
}


# --------------------------------------------------------------------------- audit


def audit(ctx: Ctx, v: str) -> dict[str, list[str]]:
    """Anomalous-looking facts in capture ``v``: key -> descriptions. Keys: ``rst:SIDE``,
    ``rtx_syn:SIDE``, ``rtx_synack:SIDE``, ``rtx_fin:SIDE``, ``rtx_data:SIDE``,
    ``probe:SIDE``, ``close_wait:SIDE`` (longer than the threshold), ``time_wait:SIDE`` (at
    or above the threshold), ``no_answer`` (a flow with client SYNs only), ``mid_stream``."""
    out: dict[str, list[str]] = {}

    def add(key: str, text: str) -> None:
        out.setdefault(key, []).append(text)

    for flow, conns in ctx.conns[v].items():
        for c in conns:
            tag = f"{flow}#{c.instance}"
            if not c.pkts[0][1].syn:
                add("mid_stream", tag)
            if c.bare_syns("client") and not c.by("server") and len(conns) == 1:
                add("no_answer", tag)
            for side in ("client", "server"):
                for p in c.rsts(side):
                    add(f"rst:{side}", f"{tag} at {p.ts:.6f}")
                seen: dict[tuple[int, int, int], int] = {}
                probes = {id(p) for p in keepalive_probes(c, side)}
                for p in c.by(side):
                    if id(p) in probes:
                        add(f"probe:{side}", f"{tag} at {p.ts:.6f}")
                        continue
                    if not (p.syn or p.fin or p.length):
                        continue
                    k = (p.seq, p.length, p.flags & 0x13)
                    seen[k] = seen.get(k, 0) + 1
                    if seen[k] == 2:
                        what = ("syn" if not p.ackf else "synack") if p.syn else (
                            "fin" if p.fin and not p.length else "data")
                        add(f"rtx_{what}:{side}", f"{tag} at {p.ts:.6f}")
                span = close_wait_span(ctx, v, c, side)
                if span and span[1] - span[0] > ctx.design.close_wait_linger:
                    add(f"close_wait:{side}", f"{tag} {span[1] - span[0]:.3f}s")
    for side in ("client", "server"):
        peak = time_wait_peak(ctx, v, side)
        if peak and peak[0] >= ctx.design.time_wait_threshold:
            add(f"time_wait:{side}", f"{peak[0]} at once, peak on {peak[1]}")
    return out


#: Which audit keys a declared row accounts for.
COVERS: dict[str, Callable[[str], list[str]]] = {
    "refused": lambda s: [f"rst:{s}", "no_answer"],
    "syn_unanswered": lambda s: [f"rtx_syn:{s}", "no_answer"],
    "handshake_incomplete": lambda s: [f"rtx_synack:{s}"],
    "rst_on_close_unread_data": lambda s: [f"rst:{s}"],
    "abortive_close": lambda s: [f"rst:{s}"],
    "lingering_close_wait": lambda s: [f"close_wait:{s}"],
    "fin_wait_2_timeout": lambda s: [],
    "missing_final_ack": lambda s: [f"rtx_fin:{s}"],
    "simultaneous_close": lambda s: [],
    "simultaneous_open": lambda s: [],
    "half_close": lambda s: [],
    "write_after_close": lambda s: [f"rst:{s}"],
    "half_open": lambda s: [f"rtx_data:{s}"],
    "port_reuse": lambda s: [],
    "time_wait_accumulation": lambda s: [f"time_wait:{s}"],
    "keepalive": lambda s: [f"probe:{s}"],
    "mid_stream": lambda s: ["mid_stream"],
}


def measures(ctx: Ctx) -> list[str]:
    """Notes on the threshold-based kinds, measured in each side's own capture: the longest
    CLOSE-WAIT and the TIME-WAIT peak of each host."""
    out = []
    for side in ("client", "server"):
        v = ctx.own(side)
        spans = [(sp[1] - sp[0], c) for conns in ctx.conns[v].values() for c in conns
                 if (sp := close_wait_span(ctx, v, c, side))]
        if spans:
            d, c = max(spans, key=lambda x: x[0])
            out.append(f"longest {side} CLOSE-WAIT {d:.3f}s on {list(c.flow)}#{c.instance} "
                       f"(close_wait_linger {ctx.design.close_wait_linger}s)")
        peak = time_wait_peak(ctx, v, side)
        if peak:
            out.append(f"{side} TIME-WAIT peak {peak[0]} (time_wait_threshold "
                       f"{ctx.design.time_wait_threshold}) on {list(peak[1][0])}"
                       f"#{peak[1][1]}")
    return out


# --------------------------------------------------------------------------- truth


@dataclass
class Truth:
    anomalies: dict[str, list[dict[str, Any]]]
    options: dict[str, Any]
    notes: list[str]
    problems: list[str]


def ground_truth(name: str, expected: dict[str, Any], pkts: dict[str, list[Packet]]
                 ) -> Truth:
    """The ``anomalies`` rows of scenario ``name`` for every capture of one run."""
    design = DESIGNS[name]
    ctx = Ctx(expected, pkts, design)
    flows = ctx.all_flows()
    problems: list[str] = []
    notes: list[str] = list(design.notes)
    result: dict[str, list[dict[str, Any]]] = {v: [] for v in expected["captures"]}
    for row in design.rows:
        if isinstance(row.flow, str):
            side = row.flow.split(":", 1)[1]
            peaks = {v: time_wait_peak(ctx, v, side) for v in ("client", "server")}
            at = {p[1] for p in peaks.values() if p}
            if len(at) != 1:
                problems.append(f"{row.kind}: the TIME-WAIT peak differs between captures: "
                                f"{peaks}")
                continue
            flow, instance = next(iter(at))
        else:
            flow, instance = flows[row.flow], row.instance
        hidden = dict(row.hidden)
        for v in expected["captures"]:
            vantage_side = CAPTURE_SIDE[v]
            why = hidden.get(v) or hidden.get(vantage_side)
            if why:
                notes.append(f"anomalies: {row.kind} ({row.side}) not listed for the {v} "
                             f"capture: {why}")
                continue
            c = ctx.conn(v, flow, instance)
            if c is None:
                problems.append(f"{v}: {row.kind}: no instance {instance} of {flow}")
                continue
            err = EVIDENCE[row.kind](ctx, v, c, row.side)
            if err:
                problems.append(f"{v}: {row.kind} ({row.side}) {flow}#{instance}: {err}")
                continue
            result[v].append({"flow": list(flow), "instance": instance, "side": row.side,
                              "kind": row.kind})
    # Audit: everything anomalous-looking is declared or explained.
    covered: set[str] = set(design.explained)
    for row in design.rows:
        covered |= set(COVERS[row.kind](row.side))
    for v in expected["captures"]:
        for key, items in audit(ctx, v).items():
            if key not in covered:
                problems.append(f"{v}: unexplained {key}: {items[:3]}")
    for v in result:
        result[v].sort(key=lambda r: (r["flow"], r["instance"], r["side"], r["kind"]))
    notes += measures(ctx)
    options = {"close_wait_linger": design.close_wait_linger,
               "time_wait_threshold": design.time_wait_threshold}
    return Truth(result, options, notes, problems)


def annotate(expected: dict[str, Any], truth: Truth) -> dict[str, Any]:
    """``expected`` with ``anomaly_options`` and ``anomalies`` set (before ``lab_notes``)
    and the anomaly notes in ``lab_notes`` (earlier ones replaced)."""
    out: dict[str, Any] = {}
    for key, value in expected.items():
        if key in ("anomalies", "anomaly_options"):
            continue
        if key == "lab_notes":
            out["anomaly_options"] = truth.options
            out["anomalies"] = truth.anomalies
            value = [n for n in value if not n.startswith("anomalies: ")] + [
                n if n.startswith("anomalies: ") else f"anomalies: {n}" for n in truth.notes]
        out[key] = value
    if "anomalies" not in out:
        out["anomaly_options"] = truth.options
        out["anomalies"] = truth.anomalies
    return out


def main(argv: list[str] | None = None) -> int:
    from .scenarios import dump_json

    ap = argparse.ArgumentParser(prog="python -m tests.lab.anomalies", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("names", nargs="*")
    ap.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = ap.parse_args(argv)
    bad = 0
    for path in sorted(args.dir.glob("*.expected.json")):
        name = path.name.removesuffix(".expected.json")
        if args.names and name not in args.names:
            continue
        expected = json.loads(path.read_text())
        pkts = {v: read_packets(args.dir / c["file"]) for v, c in expected["captures"].items()}
        truth = ground_truth(name, expected, pkts)
        if truth.problems:
            bad += 1
            print(f"{name}: PROBLEMS", file=sys.stderr)
            for p in truth.problems:
                print(f"  {p}", file=sys.stderr)
            continue
        new = annotate(expected, truth)
        rows = {v: [(r["side"], r["kind"], r["instance"]) for r in rs]
                for v, rs in truth.anomalies.items()}
        if args.check:
            same = expected.get("anomalies") == truth.anomalies
            print(f"{name}: {'same' if same else 'DIFFERENT'} {rows}")
            bad += not same
        else:
            path.write_text(dump_json(new) + "\n")
            print(f"{name}: {rows}")
    if not args.check:
        from .regenerate import write_readme

        write_readme(args.dir)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
