"""Events in, pandas DataFrames out: the schemas of the public tables, declared once.

Owns: the column lists and dtypes of ``connections``, ``transitions``, ``anomalies`` and
``state_at``, the columnar collector that turns the tracker's events into them (dropping
retracted transitions), and the ``state_at`` computation. Every exporter and the CLI use
these schemas. Knows nothing of captures or the terminal.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
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
from tcplife.states import CLOSE_KINDS, CONFIDENCES, SEVERITIES, SIDES, STATE_ORDER, State

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
    "server_state": STATE_DTYPE, "client_eventual_state": STATE_DTYPE,
    "server_eventual_state": STATE_DTYPE, "close_kind": CLOSE_KIND_DTYPE, "anomalies": "object",
    "role_inferred": "bool", "mid_stream": "bool",
    "first_time": TIME_DTYPE, "last_time": TIME_DTYPE, "first_frame": "int64",
    "last_frame": "int64", "client_packets": "int64", "server_packets": "int64",
    "client_initial_state": STATE_DTYPE, "server_initial_state": STATE_DTYPE,
    "first_ts_ns": "int64", "last_ts_ns": "int64",
    # What the peers would say (tcplife.peers; README "Side by side with Zeek, Wireshark,
    # Suricata").
    "zeek_conn_state": ZEEK_CONN_STATE_DTYPE, "zeek_history": "string",
    "zeek_orig": SIDE_DTYPE, "zeek_orig_bytes": "int64", "zeek_resp_bytes": "int64",
    "zeek_duration": "float64", "zeek_records": "int64", "zeek_later_records": "string",
    "tcp_stream": "int64", "tcp_streams": "string",
    "tcp_stream_match": STREAM_MATCH_DTYPE, "suricata_state": SURICATA_STATE_DTYPE,
}
TRANSITION_COLUMNS: dict[str, Any] = {
    "conn_id": "int64", "ts": "float64", "side": SIDE_DTYPE, "addr": "string",
    "port": "int32", "from_state": STATE_DTYPE, "to_state": STATE_DTYPE, "event": "string",
    "frame": "Int64", "inferred": "bool", "time": TIME_DTYPE, "ts_ns": "int64",
}
SEVERITY_DTYPE = pd.CategoricalDtype(list(SEVERITIES), ordered=True)  #: worst first
CONFIDENCE_DTYPE = pd.CategoricalDtype(list(CONFIDENCES), ordered=True)
ANOMALY_COLUMNS: dict[str, Any] = {
    "conn_id": "int64", "ts": "float64", "side": "string", "kind": "string",
    "frame": "Int64", "detail": "string", "severity": SEVERITY_DTYPE,
    "confidence": CONFIDENCE_DTYPE, "frames": "object", "time": TIME_DTYPE, "ts_ns": "int64",
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


class _Columns:
    """Append-only columns in compact buffers, one per schema column: integers, floats and
    booleans in `array.array`s (the dtype's width: 1 to 8 bytes a row), text and
    categories as integer codes into a table of their distinct values, lists as Python
    objects. About 60 bytes a transition instead of the ~500 of Python objects, so a big
    capture's tables fit."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.kinds: dict[str, str] = {}
        self.data: dict[str, Any] = {}
        self.codes: dict[str, dict[Any, int]] = {}
        for name, dtype in schema.items():
            kind = _kind(dtype)
            self.kinds[name] = kind
            self.data[name] = (array(_NARROW.get(dtype, "q")) if kind == "int"
                               else array("i") if kind == "code"  # < 2**31 values
                               else array("q") if kind in ("nint", "time")
                               else array("d") if kind == "float"
                               else array("b") if kind == "bool" else [])
            if kind == "code":
                self.codes[name] = {}

    def __len__(self) -> int:
        return len(next(iter(self.data.values()))) if self.data else 0

    def append(self, row: dict[str, Any]) -> None:
        for name, kind in self.kinds.items():
            value = row[name]
            if kind == "code":
                table = self.codes[name]
                code = table.get(value)
                if code is None:
                    code = table[value] = len(table)
                self.data[name].append(code)
            elif kind == "nint":
                self.data[name].append(-1 if value is None else value)
            else:
                self.data[name].append(value)

    def frame(self, order: np.ndarray | None = None) -> pd.DataFrame:
        """The DataFrame of the rows (in ``order``, positions into the rows, if given)."""
        if not len(self):
            return empty_frame(self.schema)
        return pd.DataFrame(self.columns(order))

    def columns(self, order: np.ndarray | None = None) -> dict[str, Any]:
        """`frame`'s columns, by name."""
        out: dict[str, Any] = {}
        for name, dtype in self.schema.items():
            kind, buf = self.kinds[name], self.data[name]
            if kind == "obj":
                values = buf if order is None else [buf[i] for i in order.tolist()]
                series = pd.Series([None] * len(values), dtype="object")
                series[:] = values
                out[name] = series
                continue
            arr = np.frombuffer(buf, dtype=np.dtype(buf.typecode))
            if order is not None:
                arr = arr[order]
            if kind == "code":
                table = list(self.codes[name])
                if isinstance(dtype, pd.CategoricalDtype):
                    cats = list(dtype.categories)
                    remap = np.array([cats.index(v) for v in table], dtype=np.int64)
                    out[name] = pd.Categorical.from_codes(remap[arr], dtype=dtype)
                else:
                    values = np.array(table, dtype=object)[arr]
                    out[name] = pd.array(values, dtype=dtype)
            elif kind == "time":
                out[name] = pd.to_datetime(arr, unit="ns", utc=True)
            elif kind == "nint":
                out[name] = pd.arrays.IntegerArray(arr.copy(), arr == -1).astype(dtype)
            elif kind == "bool":
                out[name] = arr.astype(bool)
            else:
                out[name] = pd.Series(arr, dtype=dtype)
        return out


#: integer dtypes kept narrower than 8 bytes (array typecodes of their width)
_NARROW = {"int8": "b", "int16": "h", "int32": "i"}


def _kind(dtype: Any) -> str:
    if dtype == TIME_DTYPE:
        return "time"
    if isinstance(dtype, pd.CategoricalDtype) or dtype == "string":
        return "code"
    if dtype == "Int64":
        return "nint"
    if dtype == "float64":
        return "float"
    if dtype == "bool":
        return "bool"
    if dtype in ("int64", "int32", "int16", "int8"):
        return "int"
    return "obj"


#: connection columns the collector does not store per row (built with the frames)
_DERIVED = ("anomalies", "tcp_stream_match", "tcp_streams", "first_ts", "last_ts",
            "duration", "first_time", "last_time")
_NO_KINDS: frozenset[str] = frozenset()

#: transition columns as collected (``ts`` and ``time`` are derived from ``ts_ns``)
_TRANSITION_BUFFER = {"tid": "int64", **{k: v for k, v in TRANSITION_COLUMNS.items()
                                         if k not in ("ts", "time")}}


class Collector:
    """Accumulates events in compact columns (`_Columns`); builds the DataFrames."""

    def __init__(self, tables: Iterable[str] = ("connections", "transitions", "anomalies",
                                                  "oddities")) -> None:
        self.tables = frozenset(tables)
        self._trans = _Columns(_TRANSITION_BUFFER)
        self._retracted: set[int] = set()
        self._conns = _Columns({k: v for k, v in CONNECTION_COLUMNS.items()
                                if k not in _DERIVED})
        #: row -> ``tcp_streams``, for the rows where it is not just ``tcp_stream`` (rare:
        #: a text per row in the columns' code table cost ~100 bytes a connection)
        self._other_streams: dict[int, str] = {}
        self._kinds: dict[int, frozenset[str]] = {}  #: conn_id -> anomaly kinds
        self._kind_sets: dict[frozenset[str], frozenset[str]] = {}  #: one object per set
        self.oddities: list[Oddity] = []
        self.anomalies: list[Anomaly] = []

    def add(self, events: Iterable[Event]) -> None:
        keep_trans = "transitions" in self.tables
        for ev in events:
            if isinstance(ev, Transition):
                if keep_trans:
                    self._trans.append({
                        "tid": ev.tid, "conn_id": ev.conn_id, "ts_ns": ev.ts_ns,
                        "side": ev.side, "addr": ev.addr, "port": ev.port,
                        "from_state": ev.from_state.value, "to_state": ev.to_state.value,
                        "event": ev.event, "frame": ev.frame, "inferred": ev.inferred})
            elif isinstance(ev, Retraction):
                if keep_trans:
                    self._retracted.add(ev.tid)
            elif isinstance(ev, ConnectionEnded):
                if "connections" in self.tables:
                    row = connection_row(ev.record)
                    streams = row["tcp_streams"]
                    if streams != str(row["tcp_stream"]):
                        self._other_streams[len(self._conns)] = streams
                    self._conns.append(row)
            elif isinstance(ev, Oddity):
                if "oddities" in self.tables:
                    self.oddities.append(ev)
            elif isinstance(ev, Anomaly):
                kinds = self._kinds.get(ev.conn_id, _NO_KINDS)
                if ev.kind not in kinds:
                    more = kinds | {ev.kind}
                    self._kinds[ev.conn_id] = self._kind_sets.setdefault(more, more)
                if "anomalies" in self.tables:
                    self.anomalies.append(ev)

    def connections(self) -> pd.DataFrame:
        """The whole ``connections`` table, in conn_id order."""
        frames = list(self.connection_frames(max(1, len(self._conns))))
        return frames[0] if frames else empty_frame(CONNECTION_COLUMNS)

    def connection_frames(self, size: int) -> Iterator[pd.DataFrame]:
        """The ``connections`` table in conn_id order as frames of ``size`` rows (their
        concatenation is `connections`): a writer holds one of them at a time, beside
        the compact columns, instead of the whole table."""
        c = self._conns
        if not len(c):
            return
        ids = np.frombuffer(c.data["conn_id"], dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        stream = np.frombuffer(c.data["tcp_stream"], dtype=np.int64)
        other = self._other_streams
        owners = _stream_owners(stream, other)
        kinds = self._kinds
        names = list(CONNECTION_COLUMNS)
        for start in range(0, len(order), size):
            part = order[start:start + size]
            cols = c.columns(part)
            anomalies = pd.Series([None] * len(part), dtype="object")
            anomalies[:] = [sorted(kinds.get(i, ())) for i in ids[part].tolist()]
            texts = [other.get(row, str(s)) for row, s in zip(part.tolist(),
                                                             stream[part].tolist(),
                                                             strict=True)]
            first, last = cols["first_ts_ns"].to_numpy(), cols["last_ts_ns"].to_numpy()
            cols.update(
                anomalies=anomalies,
                tcp_streams=pd.array(texts, dtype=CONNECTION_COLUMNS["tcp_streams"]),
                tcp_stream_match=_stream_match(texts, owners),
                **_seconds(first, last),  # the floats `connection_row` gives
                first_time=pd.to_datetime(first, unit="ns", utc=True),
                last_time=pd.to_datetime(last, unit="ns", utc=True))
            frame = pd.DataFrame({name: cols[name] for name in names})
            if start:
                frame.index += start
            yield frame

    def transitions(self) -> pd.DataFrame:
        t = self._trans
        if not len(t):
            return empty_frame(TRANSITION_COLUMNS)
        tid = np.frombuffer(t.data["tid"], dtype=np.int64)
        ts = np.frombuffer(t.data["ts_ns"], dtype=np.int64)
        keep = np.ones(len(tid), dtype=bool)
        if self._retracted:
            keep = ~np.isin(tid, np.fromiter(self._retracted, dtype=np.int64))
        rows = np.flatnonzero(keep)
        order = rows[np.lexsort((tid[rows], ts[rows]))]
        frame = t.frame(order)
        ts_ns = frame["ts_ns"].to_numpy()
        frame.insert(1, "ts", ts_ns / 1e9)
        frame["time"] = pd.to_datetime(ts_ns, unit="ns", utc=True)
        return frame[list(TRANSITION_COLUMNS)]

    def anomalies_frame(self) -> pd.DataFrame:
        # a total order: engines that meet the rows in different orders give one table
        return _timed_rows(sorted(self.anomalies,
                                  key=lambda a: (a.ts_ns, a.conn_id, a.side, a.kind)),
                           ANOMALY_COLUMNS)

    def oddities_frame(self) -> pd.DataFrame:
        return _timed_rows(sorted(self.oddities, key=lambda o: o.ts_ns), ODDITY_COLUMNS)


def connection_row(r: ConnectionRecord) -> dict[str, Any]:
    """A record's values for the ``connections`` columns, as the collector stores them
    (times in ns; without ``anomalies`` and ``tcp_stream_match``, which need other rows)."""
    return {
        "conn_id": r.conn_id, "ip_version": r.ip_version, "client_addr": r.client_addr,
        "client_port": r.client_port, "server_addr": r.server_addr,
        "server_port": r.server_port, **_seconds(r.first_ts_ns, r.last_ts_ns),
        "packets": r.packets, "client_bytes": r.client_bytes,
        "server_bytes": r.server_bytes, "client_state": r.client_state.value,
        "server_state": r.server_state.value,
        "client_eventual_state": (r.client_eventual_state or r.client_state).value,
        "server_eventual_state": (r.server_eventual_state or r.server_state).value,
        "close_kind": r.close_kind,
        "role_inferred": r.role_inferred, "mid_stream": r.mid_stream,
        "first_time": r.first_ts_ns, "last_time": r.last_ts_ns,
        "first_frame": r.first_frame, "last_frame": r.last_frame,
        "client_packets": r.client_packets, "server_packets": r.server_packets,
        "client_initial_state": r.client_initial_state.value,
        "server_initial_state": r.server_initial_state.value,
        "first_ts_ns": r.first_ts_ns, "last_ts_ns": r.last_ts_ns,
        **peer_columns(r),
    }


def _seconds(first_ns: Any, last_ns: Any) -> dict[str, Any]:
    """``first_ts``, ``last_ts`` and ``duration`` from the nanosecond times (ints, or
    int64 arrays: the same floats)."""
    return {"first_ts": first_ns / 1e9, "last_ts": last_ns / 1e9,
            "duration": (last_ns - first_ns) / 1e9}


def peer_columns(r: ConnectionRecord) -> dict[str, Any]:
    p = r.peers
    assert p is not None
    return {
        "zeek_conn_state": p.zeek_conn_state, "zeek_history": p.zeek_history,
        "zeek_orig": p.zeek_orig, "zeek_orig_bytes": p.zeek_orig_bytes,
        "zeek_resp_bytes": p.zeek_resp_bytes, "zeek_duration": p.zeek_duration_ns / 1e9,
        "zeek_records": p.zeek_records, "zeek_later_records": p.zeek_later_json,
        "tcp_stream": p.tcp_stream, "tcp_streams": ",".join(map(str, p.tcp_streams)),
        "suricata_state": p.suricata_state,
    }


def _stream_owners(stream: np.ndarray, other: dict[int, str]) -> dict[str, int]:
    """How many rows (instances) each tcp.stream number appears in, over all rows:
    ``stream``, each row's ``tcp_stream``, is its only one except where ``other`` (row ->
    ``tcp_streams``) says otherwise. Only numbers held by more than one row are kept."""
    single = np.ones(len(stream), dtype=bool)
    single[list(other)] = False
    numbers, counts = np.unique(stream[single], return_counts=True)
    owners = {str(k): n for k, n in zip(numbers[counts > 1].tolist(),
                                          counts[counts > 1].tolist(), strict=True)}
    rare: dict[str, int] = {}
    for text in other.values():
        for s in text.split(",") if text else ():
            rare[s] = rare.get(s, 0) + 1
    singles = set(numbers[counts == 1].tolist())
    for s, n in rare.items():
        n += owners.get(s, 0) + (int(s) in singles)
        if n > 1:
            owners[s] = n
    return owners


def _stream_match(tcp_streams: list[str], owners: dict[str, int]) -> pd.Categorical:
    """``split``: the instance's segments fall in several tcp.streams; ``merged``: one of
    its tcp.streams also holds another instance (Wireshark did not split where tcplife
    did; ``owners``: `_stream_owners`). ``tcp_streams`` is the numbers joined by
    commas."""
    out = []
    for text in tcp_streams:
        streams = text.split(",") if text else []
        split = len(streams) > 1
        merged = any(owners.get(stream, 1) > 1 for stream in streams)
        out.append("split+merged" if split and merged else
                   "split" if split else "merged" if merged else "same")
    return pd.Categorical(out, dtype=STREAM_MATCH_DTYPE)


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
            elif name == "frames":  # the evidence frames, as a list
                cols[name].append(list(item.frames))
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
