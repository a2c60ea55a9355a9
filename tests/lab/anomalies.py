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

KINDS = ("refused", "syn_unanswered", "listen_overflow", "handshake_incomplete",
         "rst_on_close_unread_data", "abortive_close", "lingering_close_wait",
         "fin_wait_2_timeout", "missing_final_ack", "final_ack_delayed", "simultaneous_close",
         "simultaneous_open", "half_close", "write_after_close", "half_open", "port_reuse",
         "time_wait_accumulation", "keepalive", "mid_stream")

#: Thresholds used unless a scenario says otherwise (`Design`).
DEFAULT_CLOSE_WAIT_LINGER = 5.0
DEFAULT_TIME_WAIT_THRESHOLD = 20
TIME_WAIT_LEN = 60.0
#: Linux's default net.ipv4.ip_local_port_range, and the share of it (or of the
#: expected file's ``options`` port_range_low/high) that a client's TIME-WAIT peak
#: towards one service must reach to be a risk (tcplife.Options.time_wait_share)
PORT_RANGE = (32768, 60999)
TIME_WAIT_SHARE = 0.25
#: How long a listener counts as "answering others" around an unanswered SYN: Linux's
#: first SYN retransmission comes 1 s after the SYN (TCP_TIMEOUT_INIT), so a SYN-ACK to
#: another client within the SYN's first retry interval on either side
LISTEN_ANSWER_WINDOW = 1.0

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


def ev_listen_overflow(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    """The client's SYN went unanswered (a later SYN with the same ISN was sent) while the
    listener answered another client's SYN within `LISTEN_ANSWER_WINDOW` before it; or the
    server repeated its SYN-ACK after the client's ACK had reached the server's capture."""
    syns = c.bare_syns("client")
    synacks = c.synacks("server")
    unanswered = [p for i, p in enumerate(syns[:-1])
                  if not [a for a in synacks if p.ts < a.ts <= syns[i + 1].ts]]
    if unanswered:
        t = unanswered[0].ts
        others = [a for flow, conns in ctx.conns[v].items() if flow[:2] != c.flow[:2]
                  for o in conns for a in o.synacks("server")
                  if t - LISTEN_ANSWER_WINDOW <= a.ts <= t]
        if others:
            return None
        return "an unanswered SYN, but the listener answered no other client just before"
    own = ctx.conn(ctx.own("server"), c.flow, c.instance)
    if own is not None and own.synacks("server"):
        isn1 = (own.synacks("server")[0].seq + 1) & 0xFFFFFFFF
        acks = [p.ts for p in own.by("client") if p.ackf and not p.syn and p.ack == isn1]
        if acks and [a for a in own.synacks("server") if a.ts > acks[0]]:
            return None
    return "no unanswered SYN and no SYN-ACK repeated after the client's ACK"


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
    """The side ended an established connection with RST instead of FIN. (Whether data was
    left unread is the design's to say: the wire cannot tell; see linger0_after_read.)"""
    if not c.rsts(side) or c.fins(side):
        return f"{side} did not end with RST instead of FIN"
    if not c.bare_syns("client") or not c.synacks("server") or \
            c.rsts(side)[0].ts < c.synacks("server")[0].ts:
        return "the RST does not end an established connection"
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


def _fin_acks(ctx: Ctx, c: Conn, side: str) -> tuple[list[float], list[float]] | str:
    """(the side's FIN retransmission times, times ACKs covering its FIN arrived), both at
    the side's own capture; or why they cannot be had."""
    mine = ctx.conn(ctx.own(side), c.flow, c.instance)
    if mine is None or not mine.fins(side):
        return f"the {side}'s own capture lacks its FIN"
    fins = mine.fins(side)
    end = _fin_end(fins[0])
    acks = [p.ts for p in mine.by(PEER[side]) if p.ackf and _covers(p.ack, end)]
    return [p.ts for p in fins[1:]], acks


def ev_missing_final_ack(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    """A FIN retransmitted and never acknowledged: no ACK covering it ever reached the
    side (its own capture), to the end of the capture."""
    got = _fin_acks(ctx, c, side)
    if isinstance(got, str):
        return got
    rtx, acks = got
    if not rtx:
        return f"{side}'s FIN not retransmitted"
    if acks:
        return f"an ACK covering the {side}'s FIN arrived ({len(acks)})"
    return None


def ev_final_ack_delayed(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    """The side retransmitted its FIN before any ACK covering it arrived, and such an ACK
    did arrive (own capture)."""
    got = _fin_acks(ctx, c, side)
    if isinstance(got, str):
        return got
    rtx, acks = got
    if not rtx:
        return f"{side}'s FIN not retransmitted"
    if not acks:
        return f"the {side}'s FIN was never acknowledged"
    if not rtx[0] < acks[0]:
        return f"the {side}'s FIN was acknowledged before its first retransmission"
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
    """The side transmits one segment 3+ times (data retransmissions, or keep-alive
    probes) and hears nothing from the peer meanwhile (own capture)."""
    data = c.payload(side) + keepalive_probes(c, side)
    groups: dict[tuple[int, int], list[Packet]] = {}
    for p in sorted(data, key=lambda q: q.ts):
        groups.setdefault((p.seq, p.length), []).append(p)
    rtx = [g for g in groups.values() if len(g) >= 3]
    if not rtx:
        return f"no {side} data or probe transmitted 3 times"
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


def time_wait_limit(ctx: Ctx, side: str) -> int:
    """The TIME-WAIT peak that is a risk for ``side``: the threshold count, or (client) the
    share of the ephemeral port range (the expected file's options, else Linux's)."""
    limit = ctx.design.time_wait_threshold
    if side == "client":
        opts = ctx.expected.get("options", {})
        low = int(opts.get("port_range_low", PORT_RANGE[0]))
        high = int(opts.get("port_range_high", PORT_RANGE[1]))
        limit = min(limit, int(TIME_WAIT_SHARE * (high - low + 1)))
    return limit


def ev_time_wait_accumulation(ctx: Ctx, v: str, c: Conn, side: str) -> str | None:
    peak = time_wait_peak(ctx, v, side)
    limit = time_wait_limit(ctx, side)
    if peak is None or peak[0] < limit:
        return f"TIME-WAIT peak {peak and peak[0]} below {limit}"
    if peak[1] != (c.flow, c.instance):
        return f"the peak is on {peak[1]}, not on this connection"
    n = max(sum(1 for s in cp["ss"].get(side, []) if s["state"] == "TIME-WAIT")
            for cp in ctx.expected["checkpoints"])
    if n < limit:
        return f"ss never lists {limit} TIME-WAIT sockets ({n})"
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
    "listen_no_accept": Design(
        [Row("listen_overflow", "server", flow=2)],
        notes=["listen_overflow (server) on the third client's connection: the listener "
               "(backlog 1, two connections queued, none accepted) answered the first two "
               "clients' SYNs at once and left the third client's first SYN unanswered (its "
               "accept queue was full); the SYN retransmitted a second later, after one "
               "accept(), was answered. No capture shows a SYN-ACK repeated after a "
               "client's ACK (every handshake ACK arrived). Not syn_unanswered: the "
               "retransmission was answered"]),
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
         Row("final_ack_delayed", "client"), Row("final_ack_delayed", "server")],
        explained={"rtx_fin:client": "FIN-WAIT-1 retransmissions while FINs are dropped, "
                                     "then CLOSING ones while ACKs are dropped",
                   "rtx_fin:server": "as for the client"},
        notes=["final_ack_delayed on both sides, not missing_final_ack: each side "
               "retransmitted its FIN (FINs dropped, then pure ACKs dropped) before an ACK "
               "covering it arrived, and one did arrive: the peer's last FIN retransmission "
               "carries it (checked at each side's own capture). Each vantage shows both "
               "sides' FIN retransmissions and the ACKs that ended them"]),
    "final_ack_dropped": Design(
        [Row("final_ack_delayed", "server")],
        explained={"rtx_fin:server": "LAST-ACK retransmissions (final_ack_delayed)"},
        notes=["final_ack_delayed (server), not missing_final_ack: the server retransmitted "
               "its FIN in LAST-ACK while the client's ACKs were dropped, and the client's "
               "ACK of the next retransmission, once the drop was lifted, reached it (the "
               "server capture shows an ACK covering the FIN arriving). Listed at both "
               "vantages: the client capture shows the FIN retransmitted after its ACKs "
               "left, and its last ACK of it"]),
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
    "keepalive_dead_peer": Design(
        [Row("half_open", "client", hidden=_hidden(
            server="the server capture shows nothing after the drop: the client's probes "
                   "and RST are dropped before it")),
         Row("keepalive", "client", hidden=_hidden(
             server="the probes never reach the server's capture point"))],
        explained={"rst:client": "the client's kernel gives up after the third unanswered "
                                 "probe and resets (tcp_keepalive_timer: "
                                 "tcp_send_active_reset, tcp_write_err): the kernel's "
                                 "give-up on a dead peer (half_open), not an application's "
                                 "abort, so neither abortive_close nor "
                                 "rst_on_close_unread_data"},
        notes=["half_open (client): three keep-alive probes (the same segment, seq = "
               "snd_nxt - 1) into silence, then the kernel's RST; the server, never told, "
               "stays ESTABLISHED (ss at the end)"]),
    "peer_vanishes_mid_transfer": Design(
        [Row("half_open", "client", hidden=_hidden(
            server="the server capture shows nothing after the drop: the client's data "
                   "and retransmissions are dropped before it"))],
        notes=["half_open (client): 300 bytes retransmitted into silence until the client's "
               "kernel gives up (net.ipv4.tcp_retries2=3) without any segment: no RST, so "
               "no abortive_close; the server stays ESTABLISHED (ss at the end)"]),
    "linger0_after_read": Design(
        [Row("abortive_close", "client")],
        notes=["abortive_close (client): the client read all 700 bytes, then closed with "
               "SO_LINGER {1, 0}; the wire is that of close_unread_data (the server's data, "
               "the client's ACK, its RST), so a tool can only say 'abortive close, or "
               "unread data' (confidence possible)"]),
    "close_wait_rst": Design(
        [Row("lingering_close_wait", "server"), Row("abortive_close", "server")],
        close_wait_linger=2.0,
        notes=["lingering_close_wait (server): about 3 s in CLOSE-WAIT (threshold 2 s), "
               "ended by the server's RST, not a FIN; abortive_close (server): SO_LINGER 0 "
               "close from CLOSE-WAIT after reading everything. The client's FIN-WAIT-2 "
               "(orphaned, tcp_fin_timeout 60 s) ends at that RST: no kind of its own "
               "(not fin_wait_2_timeout: it did not expire; not write_after_close: no data "
               "arrived)"]),
    "short_loop_port_range": Design(
        [Row("time_wait_accumulation", "client", flow="tw_peak:client")],
        time_wait_threshold=1000,
        notes=["time_wait_accumulation (client): 64 client TIME-WAIT sockets towards "
               "10.231.2.2:8080 at once, 32 % of the client's 200-port range (options "
               "port_range_low/high), and new ones at about 32 a second, which would fill "
               "the range in about 6 s, well within the 60 s TIME-WAIT; the threshold count "
               "(1000) is far off, so only the risk rule applies. The row is on the last "
               "connection, whose TIME-WAIT made the peak"]),
    "fins_cross_acks_delayed": Design(
        [Row("simultaneous_close", "client"), Row("simultaneous_close", "server"),
         Row("final_ack_delayed", "client"), Row("final_ack_delayed", "server")],
        notes=["final_ack_delayed on both sides, not missing_final_ack: each FIN was "
               "retransmitted while held, and acknowledged 0.5 s after the FINs crossed (the "
               "router delays, never drops); simultaneous_close on both sides: ss showed "
               "both in CLOSING"]),
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
        if peak and peak[0] >= time_wait_limit(ctx, side):
            add(f"time_wait:{side}", f"{peak[0]} at once, peak on {peak[1]}")
    return out


#: Which audit keys a declared row accounts for.
COVERS: dict[str, Callable[[str], list[str]]] = {
    "refused": lambda s: [f"rst:{s}", "no_answer"],
    "syn_unanswered": lambda s: [f"rtx_syn:{s}", "no_answer"],
    "listen_overflow": lambda s: ["rtx_syn:client", f"rtx_synack:{s}"],
    "handshake_incomplete": lambda s: [f"rtx_synack:{s}"],
    "rst_on_close_unread_data": lambda s: [f"rst:{s}"],
    "abortive_close": lambda s: [f"rst:{s}"],
    "lingering_close_wait": lambda s: [f"close_wait:{s}"],
    "fin_wait_2_timeout": lambda s: [],
    "missing_final_ack": lambda s: [f"rtx_fin:{s}"],
    "final_ack_delayed": lambda s: [f"rtx_fin:{s}"],
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
