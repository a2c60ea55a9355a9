"""Events in, pandas DataFrames out: the schemas of the public tables, declared once.

Owns: the column lists and dtypes of ``connections``, ``transitions``, ``anomalies`` and
``state_at``, the columnar collector that turns the tracker's events into them (dropping
retracted transitions), and the ``state_at`` computation. Every exporter and the CLI use
these schemas. Knows nothing of captures or the terminal.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from tcplife.events import (
    Anomaly,
    ConnectionEnded,
    ConnectionRecord,
    Event,
    Oddity,
    Retraction,
    Transition,
)
from tcplife.peers.suricata import STATES as SURICATA_STATES
from tcplife.states import CLOSE_KINDS, SIDES, STATE_ORDER, State

STATE_DTYPE = pd.CategoricalDtype(list(STATE_ORDER))
SIDE_DTYPE = pd.CategoricalDtype(list(SIDES))
CLOSE_KIND_DTYPE = pd.CategoricalDtype(list(CLOSE_KINDS))
ZEEK_CONN_STATE_DTYPE = pd.CategoricalDtype(["S0", "S1", "SF", "REJ", "S2", "S3", "RSTO",
                                             "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH"])
SURICATA_STATE_DTYPE = pd.CategoricalDtype(list(SURICATA_STATES))
#: ``tcp_stream_match``: does Wireshark's tcp.stream hold exactly this instance?
STREAM_MATCH_DTYPE = pd.CategoricalDtype(["same", "split", "merged", "split+merged"])
TIME_DTYPE = "datetime64[ns, UTC]"

#: column -> dtype, in the order of the contract (extra columns after).
CONNECTION_COLUMNS: dict[str, Any] = {
    "conn_id": "int64", "ip_version": "int8", "client_addr": "string",
    "client_port": "int32", "server_addr": "string", "server_port": "int32",
    "first_ts": "float64", "last_ts": "float64", "duration": "float64", "packets": "int64",
    "client_bytes": "int64", "server_bytes": "int64", "client_state": STATE_DTYPE,
    "server_state": STATE_DTYPE, "close_kind": CLOSE_KIND_DTYPE, "anomalies": "object",
    "role_inferred": "bool", "mid_stream": "bool",
    "first_time": TIME_DTYPE, "last_time": TIME_DTYPE, "first_frame": "int64",
    "last_frame": "int64", "client_packets": "int64", "server_packets": "int64",
    "client_initial_state": STATE_DTYPE, "server_initial_state": STATE_DTYPE,
    "first_ts_ns": "int64", "last_ts_ns": "int64",
    # What the peers would say (tcplife.peers; README "Side by side with Zeek, Wireshark,
    # Suricata").
    "zeek_conn_state": ZEEK_CONN_STATE_DTYPE, "zeek_history": "string",
    "zeek_orig": SIDE_DTYPE, "zeek_orig_bytes": "int64", "zeek_resp_bytes": "int64",
    "zeek_duration": "float64", "tcp_stream": "int64", "tcp_streams": "string",
    "tcp_stream_match": STREAM_MATCH_DTYPE, "suricata_state": SURICATA_STATE_DTYPE,
}
TRANSITION_COLUMNS: dict[str, Any] = {
    "conn_id": "int64", "ts": "float64", "side": SIDE_DTYPE, "addr": "string",
    "port": "int32", "from_state": STATE_DTYPE, "to_state": STATE_DTYPE, "event": "string",
    "frame": "Int64", "inferred": "bool", "time": TIME_DTYPE, "ts_ns": "int64",
}
ANOMALY_COLUMNS: dict[str, Any] = {
    "conn_id": "int64", "ts": "float64", "side": "string", "kind": "string",
    "frame": "Int64", "detail": "string", "time": TIME_DTYPE, "ts_ns": "int64",
}
ODDITY_COLUMNS: dict[str, Any] = {
    "conn_id": "int64", "ts": "float64", "side": "string", "name": "string",
    "frame": "Int64", "detail": "string", "time": TIME_DTYPE, "ts_ns": "int64",
}
STATE_AT_COLUMNS: dict[str, Any] = {
    "conn_id": "int64", "side": SIDE_DTYPE, "local_addr": "string", "local_port": "int32",
    "remote_addr": "string", "remote_port": "int32", "state": STATE_DTYPE,
    "since": "float64",
}


def empty_frame(schema: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in schema.items()})


def _frame(columns: dict[str, list[Any]], schema: dict[str, Any]) -> pd.DataFrame:
    if not columns or not next(iter(columns.values())):
        return empty_frame(schema)
    data = {}
    for name, dtype in schema.items():
        values = columns[name]
        if dtype == TIME_DTYPE:
            data[name] = pd.to_datetime(np.asarray(values, dtype="int64"), unit="ns", utc=True)
        elif dtype == "object":
            series = pd.Series([None] * len(values), dtype="object")
            series[:] = values
            data[name] = series
        else:
            data[name] = pd.Series(values, dtype=dtype)
    return pd.DataFrame(data)


class Collector:
    """Accumulates events column by column; `frames()` builds the DataFrames."""

    def __init__(self) -> None:
        self._trans: dict[str, list[Any]] = {k: [] for k in
                                             ("tid", "conn_id", "ts_ns", "side", "addr",
                                              "port", "from_state", "to_state", "event",
                                              "frame", "inferred")}
        self._retracted: set[int] = set()
        self.records: list[ConnectionRecord] = []
        self.oddities: list[Oddity] = []
        self.anomalies: list[Anomaly] = []

    def add(self, events: Iterable[Event]) -> None:
        t = self._trans
        for ev in events:
            if isinstance(ev, Transition):
                t["tid"].append(ev.tid)
                t["conn_id"].append(ev.conn_id)
                t["ts_ns"].append(ev.ts_ns)
                t["side"].append(ev.side)
                t["addr"].append(ev.addr)
                t["port"].append(ev.port)
                t["from_state"].append(ev.from_state.value)
                t["to_state"].append(ev.to_state.value)
                t["event"].append(ev.event)
                t["frame"].append(ev.frame)
                t["inferred"].append(ev.inferred)
            elif isinstance(ev, Retraction):
                self._retracted.add(ev.tid)
            elif isinstance(ev, ConnectionEnded):
                self.records.append(ev.record)
            elif isinstance(ev, Oddity):
                self.oddities.append(ev)
            elif isinstance(ev, Anomaly):
                self.anomalies.append(ev)

    def connections(self) -> pd.DataFrame:
        recs = sorted(self.records, key=lambda r: r.conn_id)
        kinds: dict[int, set[str]] = {}
        for a in self.anomalies:
            kinds.setdefault(a.conn_id, set()).add(a.kind)
        cols: dict[str, list[Any]] = {name: [] for name in CONNECTION_COLUMNS}
        for r in recs:
            cols["conn_id"].append(r.conn_id)
            cols["ip_version"].append(r.ip_version)
            cols["client_addr"].append(r.client_addr)
            cols["client_port"].append(r.client_port)
            cols["server_addr"].append(r.server_addr)
            cols["server_port"].append(r.server_port)
            cols["first_ts"].append(r.first_ts_ns / 1e9)
            cols["last_ts"].append(r.last_ts_ns / 1e9)
            cols["duration"].append((r.last_ts_ns - r.first_ts_ns) / 1e9)
            cols["packets"].append(r.packets)
            cols["client_bytes"].append(r.client_bytes)
            cols["server_bytes"].append(r.server_bytes)
            cols["client_state"].append(r.client_state.value)
            cols["server_state"].append(r.server_state.value)
            cols["close_kind"].append(r.close_kind)
            cols["anomalies"].append(sorted(kinds.get(r.conn_id, ())))
            cols["role_inferred"].append(r.role_inferred)
            cols["mid_stream"].append(r.mid_stream)
            cols["first_time"].append(r.first_ts_ns)
            cols["last_time"].append(r.last_ts_ns)
            cols["first_frame"].append(r.first_frame)
            cols["last_frame"].append(r.last_frame)
            cols["client_packets"].append(r.client_packets)
            cols["server_packets"].append(r.server_packets)
            cols["client_initial_state"].append(r.client_initial_state.value)
            cols["server_initial_state"].append(r.server_initial_state.value)
            cols["first_ts_ns"].append(r.first_ts_ns)
            cols["last_ts_ns"].append(r.last_ts_ns)
            _peer_columns(cols, r)
        _stream_match(cols)
        return _frame(cols, CONNECTION_COLUMNS)

    def transitions(self) -> pd.DataFrame:
        t = self._trans
        keep = [i for i, tid in enumerate(t["tid"]) if tid not in self._retracted]
        order = sorted(keep, key=lambda i: (t["ts_ns"][i], t["tid"][i]))
        cols = {name: [t[name][i] for i in order] for name in t}
        cols["ts"] = [ns / 1e9 for ns in cols["ts_ns"]]
        cols["time"] = cols["ts_ns"]
        return _frame(cols, TRANSITION_COLUMNS)

    def anomalies_frame(self) -> pd.DataFrame:
        return _timed_rows(sorted(self.anomalies, key=lambda a: (a.ts_ns, a.conn_id)),
                           ANOMALY_COLUMNS)

    def oddities_frame(self) -> pd.DataFrame:
        return _timed_rows(sorted(self.oddities, key=lambda o: o.ts_ns), ODDITY_COLUMNS)


def _peer_columns(cols: dict[str, list[Any]], r: ConnectionRecord) -> None:
    p = r.peers
    assert p is not None
    cols["zeek_conn_state"].append(p.zeek_conn_state)
    cols["zeek_history"].append(p.zeek_history)
    cols["zeek_orig"].append(p.zeek_orig)
    cols["zeek_orig_bytes"].append(p.zeek_orig_bytes)
    cols["zeek_resp_bytes"].append(p.zeek_resp_bytes)
    cols["zeek_duration"].append(p.zeek_duration_ns / 1e9)
    cols["tcp_stream"].append(p.tcp_stream)
    cols["tcp_streams"].append(list(p.tcp_streams))
    cols["suricata_state"].append(p.suricata_state)


def _stream_match(cols: dict[str, list[Any]]) -> None:
    """``split``: the instance's segments fall in several tcp.streams; ``merged``: one of
    its tcp.streams also holds another instance (Wireshark did not split where tcplife
    did). ``tcp_streams`` becomes text, the numbers joined by commas."""
    owners: dict[int, int] = {}
    for streams in cols["tcp_streams"]:
        for stream in streams:
            owners[stream] = owners.get(stream, 0) + 1
    for streams in cols["tcp_streams"]:
        split = len(streams) > 1
        merged = any(owners[stream] > 1 for stream in streams)
        cols["tcp_stream_match"].append("split+merged" if split and merged else
                                        "split" if split else "merged" if merged else "same")
    cols["tcp_streams"] = [",".join(map(str, streams)) for streams in cols["tcp_streams"]]


def _timed_rows(items: list[Any], schema: dict[str, Any]) -> pd.DataFrame:
    """Rows from events that carry ``ts_ns``: attributes of the same name, plus the float
    ``ts`` and the datetime ``time`` derived from ``ts_ns``."""
    cols: dict[str, list[Any]] = {name: [] for name in schema}
    for item in items:
        for name in schema:
            if name == "ts":
                cols[name].append(item.ts_ns / 1e9)
            elif name == "time":
                cols[name].append(item.ts_ns)
            else:
                cols[name].append(getattr(item, name))
    return _frame(cols, schema)


def to_ns(when: float | int | str | datetime | pd.Timestamp) -> int:
    """Epoch seconds (float/int), an ISO 8601 string or a datetime -> integer ns.
    Naive datetimes and ISO strings without an offset are taken as UTC."""
    if isinstance(when, bool):
        raise TypeError("a time must be epoch seconds, an ISO string or a datetime")
    if isinstance(when, (int, float, np.integer, np.floating)):
        # Round through microseconds text to avoid float noise in the ns digits.
        return int(round(float(when) * 1e6)) * 1000 if isinstance(when, (float, np.floating)) \
            else int(when) * 1_000_000_000
    if isinstance(when, str):
        text = when.strip()
        try:
            return to_ns(float(text))
        except ValueError:
            pass
        stamp = pd.Timestamp(text)
    else:
        stamp = pd.Timestamp(when)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.value)


def state_at(connections: pd.DataFrame, transitions: pd.DataFrame,
             when: float | int | str | datetime | pd.Timestamp) -> pd.DataFrame:
    """Each side of each connection alive at ``when``, like ``ss -tan`` then.

    A side is listed unless its state is CLOSED. The initial state holds from the
    connection's first packet until the side's first transition.
    """
    t_ns = to_ns(when)
    conns = connections[connections["first_ts_ns"] <= t_ns]
    if conns.empty:
        return empty_frame(STATE_AT_COLUMNS)
    trans = transitions[transitions["ts_ns"] <= t_ns]
    last = trans.groupby(["conn_id", "side"], observed=True, sort=False).tail(1)
    latest = {(int(c), str(s)): (str(st), ts) for c, s, st, ts in
              zip(last["conn_id"], last["side"], last["to_state"], last["ts"], strict=True)}
    cols: dict[str, list[Any]] = {name: [] for name in STATE_AT_COLUMNS}
    for row in conns.itertuples(index=False):
        for side in SIDES:
            other = "server" if side == "client" else "client"
            found = latest.get((int(row.conn_id), side))
            if found is None:
                state, since = str(getattr(row, f"{side}_initial_state")), row.first_ts
            else:
                state, since = found
            if state == State.CLOSED.value:
                continue
            cols["conn_id"].append(row.conn_id)
            cols["side"].append(side)
            cols["local_addr"].append(getattr(row, f"{side}_addr"))
            cols["local_port"].append(getattr(row, f"{side}_port"))
            cols["remote_addr"].append(getattr(row, f"{other}_addr"))
            cols["remote_port"].append(getattr(row, f"{other}_port"))
            cols["state"].append(state)
            cols["since"].append(since)
    return _frame(cols, STATE_AT_COLUMNS)
