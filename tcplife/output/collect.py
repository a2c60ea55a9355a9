"""Events in, table rows out: the columnar collector of the public tables (no pandas).

Owns: `Collector`, which turns the tracker's and detectors' events into the rows of
``connections``, ``transitions`` (dropping retracted ones), ``anomalies`` and
``oddities`` in compact buffers, and hands them out as `tcplife.output.rows.Rows` (plain
values, for the command line) or, through `tcplife.output.frames`, as DataFrames. Also the
values of one connection's row (`connection_row`) and the Wireshark stream match. Knows
nothing of captures, pandas or the terminal; the schemas are `tcplife.output.schema`'s.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from tcplife.core.events import (
    Anomaly,
    ConnectionEnded,
    ConnectionRecord,
    Event,
    Oddity,
    Retraction,
    Transition,
)
from tcplife.output import schema
from tcplife.output.rows import Rows


class Columns:
    """Append-only columns in compact buffers, one per schema column: integers, floats and
    booleans in `array.array`s (the spec's width: 1 to 8 bytes a row), text and
    categories as integer codes into a table of their distinct values, lists as Python
    objects. About 60 bytes a transition instead of the ~500 of Python objects, so a big
    capture's tables fit."""

    def __init__(self, specs: schema.Schema) -> None:
        self.schema = specs
        self.kinds: dict[str, str] = {}
        self.data: dict[str, Any] = {}
        self.codes: dict[str, dict[Any, int]] = {}
        for name, spec in specs.items():
            kind = _kind(spec)
            self.kinds[name] = kind
            self.data[name] = (array(_NARROW.get(spec, "q")) if kind == "int"
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

    def array(self, name: str) -> np.ndarray:
        """A numeric column as a numpy view of its buffer."""
        buf = self.data[name]
        return np.frombuffer(buf, dtype=np.dtype(buf.typecode))

    def lists(self, order: np.ndarray | None = None) -> dict[str, list[Any]]:
        """The columns as lists of plain values (in ``order``, positions, if given):
        text and categories as str, null as None, booleans as bool."""
        out: dict[str, list[Any]] = {}
        at = None if order is None else order.tolist()
        for name, kind in self.kinds.items():
            buf = self.data[name]
            if kind == "obj":
                out[name] = list(buf) if at is None else [buf[i] for i in at]
                continue
            values = buf.tolist() if at is None else self.array(name)[order].tolist()
            if kind == "code":
                table = list(self.codes[name])
                out[name] = [table[c] for c in values]
            elif kind == "nint":
                out[name] = [None if v == -1 else v for v in values]
            elif kind == "bool":
                out[name] = [bool(v) for v in values]
            else:
                out[name] = values
        return out


#: integer specs kept narrower than 8 bytes (array typecodes of their width)
_NARROW = {"int8": "b", "int16": "h", "int32": "i"}


def _kind(spec: str) -> str:
    if spec == "time":
        return "time"
    if spec.startswith("cat:") or spec == "string":
        return "code"
    if spec == "Int64":
        return "nint"
    if spec == "float64":
        return "float"
    if spec == "bool":
        return "bool"
    if spec in ("int64", "int32", "int16", "int8"):
        return "int"
    return "obj"


#: connection columns the collector does not store per row (built with the tables)
DERIVED = ("anomalies", "tcp_stream_match", "tcp_streams", "first_ts", "last_ts",
           "duration", "first_time", "last_time")
_NO_KINDS: frozenset[str] = frozenset()

#: transition columns as collected (``ts`` and ``time`` are derived from ``ts_ns``)
TRANSITION_BUFFER = {"tid": "int64", **{k: v for k, v in schema.TRANSITIONS.items()
                                        if k not in ("ts", "time")}}


class Collector:
    """Accumulates events in compact columns (`Columns`); gives the tables as `Rows`
    (``*_rows``; `tcplife.output.frames` makes DataFrames of a collector's tables)."""

    def __init__(self, tables: Iterable[str] = ("connections", "transitions", "anomalies",
                                                  "oddities")) -> None:
        self.tables = frozenset(tables)
        self._trans = Columns(TRANSITION_BUFFER)
        self._retracted: set[int] = set()
        self._conns = Columns({k: v for k, v in schema.CONNECTIONS.items()
                               if k not in DERIVED})
        #: row -> ``tcp_streams``, for the rows where it is not just ``tcp_stream`` (rare:
        #: a text per row in the columns' code table cost ~100 bytes a connection)
        self._other_streams: dict[int, str] = {}
        self._kinds: dict[int, frozenset[str]] = {}  #: conn_id -> anomaly kinds
        self._kind_sets: dict[frozenset[str], frozenset[str]] = {}  #: one object per set
        self.oddities: list[Oddity] = []
        self.anomalies: list[Anomaly] = []

    def add(self, events: Iterable[Event]) -> None:
        """Keep what the tables need of ``events``; the others (`ConnectionStarted`, the
        end of input and the clock: `InputEnded`, `ClockAdvanced`) are passed over."""
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

    # --- the connections ------------------------------------------------------------

    def connection_parts(self, size: int) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
        """The ``connections`` rows in conn_id order, ``size`` at a time: (positions into
        the compact columns, the derived columns as lists: ``anomalies``,
        ``tcp_streams``, ``tcp_stream_match``)."""
        c = self._conns
        if not len(c):
            return
        ids = c.array("conn_id")
        order = np.argsort(ids, kind="stable")
        stream = c.array("tcp_stream")
        other = self._other_streams
        owners = stream_owners(stream, other)
        kinds = self._kinds
        for start in range(0, len(order), size):
            part = order[start:start + size]
            texts = [other.get(row, str(s)) for row, s in zip(part.tolist(),
                                                             stream[part].tolist(),
                                                             strict=True)]
            yield part, {
                "anomalies": [sorted(kinds.get(i, ())) for i in ids[part].tolist()],
                "tcp_streams": texts, "tcp_stream_match": stream_match(texts, owners)}

    def connection_rows(self, size: int | None = None) -> Iterator[Rows]:
        """The ``connections`` table in conn_id order as `Rows` of ``size`` rows (all in
        one if None); their concatenation is the whole table."""
        c = self._conns
        for part, derived in self.connection_parts(size or max(1, len(c))):
            cols = c.lists(part)
            cols.update(derived)
            first, last = cols["first_ts_ns"], cols["last_ts_ns"]
            cols["first_ts"] = [f / 1e9 for f in first]
            cols["last_ts"] = [x / 1e9 for x in last]
            cols["duration"] = [(x - f) / 1e9 for f, x in zip(first, last, strict=True)]
            cols["first_time"], cols["last_time"] = first, last
            yield Rows(schema.CONNECTIONS, {n: cols[n] for n in schema.CONNECTIONS})

    def all_connection_rows(self) -> Rows:
        parts = list(self.connection_rows())
        return parts[0] if parts else Rows.empty(schema.CONNECTIONS)

    # --- the transitions ------------------------------------------------------------

    def transition_order(self) -> np.ndarray | None:
        """Positions of the kept transitions in (time, tid) order; None when none."""
        t = self._trans
        if not len(t):
            return None
        tid, ts = t.array("tid"), t.array("ts_ns")
        keep = np.ones(len(tid), dtype=bool)
        if self._retracted:
            keep = ~np.isin(tid, np.fromiter(self._retracted, dtype=np.int64))
        rows = np.flatnonzero(keep)
        return rows[np.lexsort((tid[rows], ts[rows]))]

    def transition_rows(self) -> Rows:
        order = self.transition_order()
        if order is None:
            return Rows.empty(schema.TRANSITIONS)
        cols = self._trans.lists(order)
        cols["ts"] = [t / 1e9 for t in cols["ts_ns"]]
        cols["time"] = cols["ts_ns"]
        return Rows(schema.TRANSITIONS, {n: cols[n] for n in schema.TRANSITIONS})

    # --- anomalies and oddities -----------------------------------------------------

    def sorted_anomalies(self) -> list[Anomaly]:
        # a total order: engines that meet the rows in different orders give one table
        return sorted(self.anomalies, key=lambda a: (a.ts_ns, a.conn_id, a.side, a.kind))

    def anomaly_rows(self) -> Rows:
        return timed_rows(self.sorted_anomalies(), schema.ANOMALIES)

    def oddity_rows(self) -> Rows:
        return timed_rows(sorted(self.oddities, key=lambda o: o.ts_ns), schema.ODDITIES)


def timed_rows(items: list[Any], specs: schema.Schema) -> Rows:
    """Rows from events that carry ``ts_ns``: attributes of the same name, plus the float
    ``ts`` and ``time`` (ns) derived from ``ts_ns``; ``frames`` as a list."""
    cols: dict[str, list[Any]] = {name: [] for name in specs}
    for item in items:
        for name in specs:
            if name == "ts":
                cols[name].append(item.ts_ns / 1e9)
            elif name == "time":
                cols[name].append(item.ts_ns)
            elif name == "frames":  # the evidence frames, as a list
                cols[name].append(list(item.frames))
            else:
                cols[name].append(getattr(item, name))
    return Rows(specs, cols)


def connection_row(r: ConnectionRecord) -> dict[str, Any]:
    """A record's values for the ``connections`` columns, as the collector stores them
    (times in ns; without ``anomalies`` and ``tcp_stream_match``, which need other rows)."""
    return {
        "conn_id": r.conn_id, "ip_version": r.ip_version, "client_addr": r.client_addr,
        "client_port": r.client_port, "server_addr": r.server_addr,
        "server_port": r.server_port, **seconds(r.first_ts_ns, r.last_ts_ns),
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


def seconds(first_ns: Any, last_ns: Any) -> dict[str, Any]:
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


def stream_owners(stream: np.ndarray, other: dict[int, str]) -> dict[str, int]:
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


def stream_match(tcp_streams: list[str], owners: dict[str, int]) -> list[str]:
    """``split``: the instance's segments fall in several tcp.streams; ``merged``: one of
    its tcp.streams also holds another instance (Wireshark did not split where tcplife
    did; ``owners``: `stream_owners`). ``tcp_streams`` is the numbers joined by
    commas."""
    out = []
    for text in tcp_streams:
        streams = text.split(",") if text else []
        split = len(streams) > 1
        merged = any(owners.get(stream, 1) > 1 for stream in streams)
        out.append("split+merged" if split and merged else
                   "split" if split else "merged" if merged else "same")
    return out
