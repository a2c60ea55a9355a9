"""Which frames belong to which connection: the per-packet rows of chosen connections.

Owns: re-reading captures for the segments of some connections (the analysis keeps no
packets), the ``packets`` table (one row per segment, with Wireshark-style relative
sequence numbers and each side's state after it), and the equivalent tshark display
filter. Knows nothing of the terminal or click; the tracker is not involved: segments are
matched to connection instances by 4-tuple and frame range, as the connections table
reports them (where two instances of one 4-tuple overlap, see `_Matcher.match`; the
tests check the counts against the tracker's on every sample capture).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from tcplife.capture import ReadStats
from tcplife.core.segment import Segment
from tcplife.engines.analysis import Source, iter_segments
from tcplife.output.frames import SIDE_DTYPE, STATE_DTYPE, TIME_DTYPE, typed_frame

#: Wireshark's flag names, in its order (bit order).
FLAG_NAMES = ((0x01, "FIN"), (0x02, "SYN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"),
              (0x20, "URG"), (0x40, "ECE"), (0x80, "CWR"))
ACK = 0x10
MOD = 1 << 32

#: One row per TCP segment of a connection. ``rel_seq``/``rel_ack`` count from the first
#: sequence number seen from each side (its ISN when the SYN was captured), as Wireshark's
#: relative sequence numbers do; ``ack``/``rel_ack`` are null without the ACK flag;
#: ``client_state``/``server_state`` are each side's state once this segment was seen.
PACKET_COLUMNS: dict[str, Any] = {
    "conn_id": "int64", "frame": "int64", "ts": "float64", "rel_ts": "float64",
    "sender": SIDE_DTYPE, "src_addr": "string", "src_port": "int32", "dst_addr": "string",
    "dst_port": "int32", "flags": "string", "seq": "int64", "ack": "Int64",
    "rel_seq": "int64", "rel_ack": "Int64", "len": "int64", "window": "int32",
    "client_state": STATE_DTYPE, "server_state": STATE_DTYPE, "time": TIME_DTYPE,
    "ts_ns": "int64",
}


def flag_names(flags: int) -> str:
    """Wireshark's flag text without brackets: ``SYN, ACK``; ``<none>`` for no flag."""
    return ", ".join(name for bit, name in FLAG_NAMES if flags & bit) or "<none>"


class _Matcher:
    """4-tuple + frame range -> conn_id, for the chosen connections."""

    def __init__(self, connections: pd.DataFrame) -> None:
        self.by_tuple: dict[tuple[str, int, str, int], list[tuple[int, int, int, str]]] = {}
        for row in connections.itertuples(index=False):
            c = (str(row.client_addr), int(row.client_port))
            s = (str(row.server_addr), int(row.server_port))
            span = (int(row.first_frame), int(row.last_frame), int(row.conn_id))
            self.by_tuple.setdefault((*c, *s), []).append((*span, "client"))
            self.by_tuple.setdefault((*s, *c), []).append((*span, "server"))
        self.last_frame = max((int(f) for f in connections["last_frame"]), default=0)

    def match(self, seg: Segment) -> tuple[int, str] | None:
        """The instance whose first frame this is; else the oldest instance whose frame
        range holds it: where a new instance's SYN arrives while the old one still has
        packets in flight (a challenge ACK, an RST), those belong to the old one, as the
        tracker counts them."""
        found = None
        for first, last, conn_id, sender in self.by_tuple.get(
                (seg.src, seg.sport, seg.dst, seg.dport), ()):
            if seg.frame == first:
                return conn_id, sender
            if found is None and first <= seg.frame <= last:
                found = conn_id, sender
        return found


def read_packets(sources: Sequence[Source], connections: pd.DataFrame,
                 transitions: pd.DataFrame, *,
                 capture_filter: str | None = None) -> pd.DataFrame:
    """The segments of the connections in ``connections`` (rows of the connections
    table), read again from ``sources`` (the captures analysed, merged by time as the
    analysis merged them; file objects are read from where they stand) with the analysis'
    ``capture_filter``. Reading stops after the last frame of the last chosen
    connection."""
    matcher = _Matcher(connections)
    rows: list[tuple[int, str, Segment]] = []
    if len(connections):
        for seg in iter_segments(sources, ReadStats(), capture_filter=capture_filter):
            if seg.frame > matcher.last_frame:
                break
            found = matcher.match(seg)
            if found is not None:
                rows.append((*found, seg))
    return packet_frame(rows, connections, transitions)


def packet_frame(rows: Iterable[tuple[int, str, Segment]], connections: pd.DataFrame,
                 transitions: pd.DataFrame) -> pd.DataFrame:
    """(conn_id, sender side, segment) in capture order -> the ``packets`` table."""
    cols: dict[str, list[Any]] = {name: [] for name in PACKET_COLUMNS}
    base: dict[tuple[int, str], int] = {}
    first_ns = dict(zip(connections["conn_id"], connections["first_ts_ns"], strict=True))
    states = _StateReplay(transitions, connections)
    for conn_id, sender, seg in rows:
        peer = "server" if sender == "client" else "client"
        own = base.setdefault((conn_id, sender), seg.seq)
        has_ack = bool(seg.flags & ACK)
        peer_base = base.get((conn_id, peer))
        if has_ack and peer_base is None:  # the peer not seen yet: its ISN is ack - 1
            peer_base = base[(conn_id, peer)] = (seg.ack - 1) % MOD
        client_state, server_state = states.after(conn_id, seg.frame, seg.ts_ns)
        cols["conn_id"].append(conn_id)
        cols["frame"].append(seg.frame)
        cols["ts"].append(seg.ts_ns / 1e9)
        cols["rel_ts"].append((seg.ts_ns - int(first_ns[conn_id])) / 1e9)
        cols["sender"].append(sender)
        cols["src_addr"].append(seg.src)
        cols["src_port"].append(seg.sport)
        cols["dst_addr"].append(seg.dst)
        cols["dst_port"].append(seg.dport)
        cols["flags"].append(flag_names(seg.flags))
        cols["seq"].append(seg.seq)
        cols["ack"].append(seg.ack if has_ack else None)
        cols["rel_seq"].append((seg.seq - own) % MOD)
        cols["rel_ack"].append((seg.ack - peer_base) % MOD if has_ack else None)
        cols["len"].append(seg.payload_len)
        cols["window"].append(seg.window)
        cols["client_state"].append(client_state)
        cols["server_state"].append(server_state)
        cols["time"].append(seg.ts_ns)
        cols["ts_ns"].append(seg.ts_ns)
    return typed_frame(cols, PACKET_COLUMNS)


class _StateReplay:
    """Each side's state after a given frame, replayed from the transitions table: a
    transition applies from its frame on, a timeout (no frame) from its time on."""

    def __init__(self, transitions: pd.DataFrame, connections: pd.DataFrame) -> None:
        self.steps: dict[tuple[int, str], list[tuple[int | None, int, str]]] = {}
        self.initial: dict[tuple[int, str], str] = {}
        for row in connections.itertuples(index=False):
            for side in ("client", "server"):
                self.initial[(int(row.conn_id), side)] = str(getattr(row, f"{side}_initial_state"))
        for row in transitions.itertuples(index=False):
            key = (int(row.conn_id), str(row.side))
            frame = None if pd.isna(row.frame) else int(row.frame)
            self.steps.setdefault(key, []).append((frame, int(row.ts_ns), str(row.to_state)))

    def state(self, conn_id: int, side: str, frame: int, ts_ns: int) -> str | None:
        key = (conn_id, side)
        current = self.initial.get(key)
        for step_frame, step_ns, to_state in self.steps.get(key, ()):
            if (step_frame is not None and step_frame <= frame) or \
                    (step_frame is None and step_ns <= ts_ns):
                current = to_state
        return current

    def after(self, conn_id: int, frame: int, ts_ns: int) -> tuple[str | None, str | None]:
        return (self.state(conn_id, "client", frame, ts_ns),
                self.state(conn_id, "server", frame, ts_ns))


def tshark_filter(conn: Any) -> str:
    """A tshark/Wireshark display filter (``-Y``) for the frames of one connection
    instance (a row of the connections table): its 4-tuple within its frame range."""
    ip = "ipv6" if int(conn.ip_version) == 6 else "ip"
    c, cp = conn.client_addr, int(conn.client_port)
    s, sp = conn.server_addr, int(conn.server_port)

    def way(a: Any, ap: int, b: Any, bp: int) -> str:
        return f"{ip}.src=={a} && tcp.srcport=={ap} && {ip}.dst=={b} && tcp.dstport=={bp}"

    return (f"(({way(c, cp, s, sp)}) || ({way(s, sp, c, cp)})) && "
            f"frame.number>={int(conn.first_frame)} && frame.number<={int(conn.last_frame)}")
