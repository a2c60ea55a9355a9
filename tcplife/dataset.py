"""The tables of a Dask analysis written as a Parquet dataset by the workers themselves.

Owns: `ParquetDataset` (what ``analyze_dask(..., parquet_dir=...)`` returns), the layout
(one directory per table, one part file per flow partition) and the stages that follow
tracking when the tables stay on the workers:

1. ``_index`` (per partition, in its tracking task: `index_partition`): the first frame
   of each connection and ``tcp.stream``, and a compact account of the running capture
   end at each connection's end (see below).
2. The client turns the first frames into the global numbering (local id -> global id,
   one small integer array per partition): ``conn_id`` and ``tcp_stream`` by first frame.
3. ``_lookup`` (one task per pair of partitions): the capture end other partitions had
   reached when each of this partition's connections ended.
4. ``_finish`` (per partition): events renumbered, the per-connection detectors and the
   `Collector`, exactly as `tcplife.analysis.Sink` runs them; the cross-connection detector
   (`TimeWaitAccumulation`, per host) only gathers its TIME_WAIT intervals, bucketed by
   host.
5. ``_time_wait`` (per host bucket): the per-host peaks over every partition's intervals;
   the few anomalies come back to the client, which routes each to the partition that
   owns its connection.
6. ``_write`` (per partition): those anomalies added, the tables built and written.

The client holds the file list, the read stats, the numbering arrays (8 bytes per
connection) and the time-wait anomalies; never an event or a table row.

The running capture end: `DetectorSet` hands each connection's verdict the latest time seen
so far (transitions with a frame, and connections' last packets) in event order, and the
end of input raises it to the capture's last frame. The order is the one the in-memory
merge (`tcplife.distributed._merged_events`) produces, one process's order when timestamps
are in order: a k-way merge, which equals a sort by (prefix maximum of the partition's
keys, partition) within each partition's emission order; ``_index`` encodes that as
fixed-width byte strings so other partitions can binary-search it.

Also owns `renumber` (partition-local numbers -> the set's, on one event), which the
in-memory merge uses too. Knows nothing of the CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tcplife import detect
from tcplife.capture import ReadStats
from tcplife.detect import DetectorSet, PerConnection, Spans, TimeWaitAccumulation
from tcplife.events import (
    Anomaly,
    ConnectionEnded,
    ConnectionStarted,
    Event,
    Oddity,
    Retraction,
    Transition,
)
from tcplife.frames import (
    ANOMALY_COLUMNS,
    CONNECTION_COLUMNS,
    ODDITY_COLUMNS,
    TRANSITION_COLUMNS,
    Collector,
    empty_frame,
)
from tcplife.options import Options
from tcplife.output import OutputError

#: each table's columns and dtypes
SCHEMAS: dict[str, dict[str, Any]] = {
    "connections": CONNECTION_COLUMNS, "transitions": TRANSITION_COLUMNS,
    "anomalies": ANOMALY_COLUMNS, "oddities": ODDITY_COLUMNS}
#: a stable sort by these columns puts the dataset's rows in the order of `analyze`'s
#: rows sorted the same way (ties keep the order one process emitted them in)
SORT_KEYS: dict[str, list[str]] = {
    "connections": ["conn_id"], "transitions": ["conn_id", "ts_ns"],
    "anomalies": ["conn_id", "ts_ns"], "oddities": ["conn_id", "ts_ns"]}

_END = 1 << 64  #: tcplife.distributed._END (that module imports this one; a test checks)
_SIGN = np.uint64(1 << 63)
_TOP = np.uint64((1 << 64) - 1)


@dataclass
class ParquetDataset:
    """What ``analyze_dask(..., parquet_dir=DIR)`` returns: where the tables are, and what
    the reader saw. ``DIR/<table>/part-NNNNN.parquet``, one part per flow partition
    (``pandas.read_parquet(DIR / "connections")`` reads a table), and ``DIR/capture.json``
    (sources, reader stats, options, row counts)."""

    directory: Path
    rows: dict[str, int]
    stats: ReadStats
    options: Options
    sources: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return self.stats.warnings

    def read(self, table: str, *, sort: bool = True) -> pd.DataFrame:
        """A whole table in memory, with the dtypes of `tcplife.Result`'s (categories,
        ``anomalies`` as lists); ``sort``: stable-sorted by `SORT_KEYS` (equal to
        `analyze`'s table sorted the same way)."""
        return restore(pd.read_parquet(self.directory / table), table, sort)


def restore(frame: pd.DataFrame, table: str, sort: bool = True) -> pd.DataFrame:
    """A table read back from Parquet with `Result`'s dtypes (Parquet keeps categories as
    the values present, lists as arrays); stable-sorted by `SORT_KEYS` if ``sort``."""
    schema = SCHEMAS[table]
    out = {}
    for name, dtype in schema.items():
        column = frame[name]
        if dtype == "object":
            lists = pd.Series([None] * len(column), dtype="object")
            lists[:] = [list(v) for v in column]
            out[name] = lists
        else:
            out[name] = column.astype(dtype).reset_index(drop=True)
    frame = pd.DataFrame(out)
    if sort:
        frame = frame.sort_values(SORT_KEYS[table], kind="stable", ignore_index=True)
    return frame


def arrow_schema(table: str) -> Any:
    """The Parquet schema of a table: one for every part, empty or not."""
    import pyarrow as pa

    schema = pa.Schema.from_pandas(empty_frame(SCHEMAS[table]), preserve_index=False)
    for i, f in enumerate(schema):
        if SCHEMAS[table][f.name] == "object":  # the anomaly kinds of a connection
            schema = schema.set(i, pa.field(f.name, pa.list_(pa.string())))
    return schema


_REUSE = re.compile(r"(reuses the 4-tuple of connection )(\d+)")


def renumber(ev: Event, conn_id: Callable[[int], int], stream: Callable[[int], int]) -> None:
    """A partition's event, in place, with the whole set's ``conn_id`` and ``tcp_stream``
    numbers (``conn_id``, ``stream``: partition-local number -> global); ``tid`` is left
    to the caller."""
    if isinstance(ev, (Transition, Retraction, ConnectionStarted)):
        ev.conn_id = conn_id(ev.conn_id)
    elif isinstance(ev, Oddity):
        if ev.name == "port_reuse":
            ev.detail = _REUSE.sub(lambda m: m.group(1) + str(conn_id(int(m.group(2)))),
                                   ev.detail)
        ev.conn_id = conn_id(ev.conn_id)
    elif isinstance(ev, ConnectionEnded):
        rec = ev.record
        rec.conn_id = conn_id(rec.conn_id)
        peers = rec.peers
        if peers is not None:
            peers.tcp_stream = stream(peers.tcp_stream)
            peers.tcp_streams = sorted(stream(s) for s in peers.tcp_streams)


# ------------------------------------------------------------- 1. the partition's index
@dataclass
class _Ends:
    """Per connection end (``ConnectionEnded``, in the order ``_finish`` meets them): its
    place in the merge's event order, as a byte string comparable across partitions, and
    whether the end of input emitted it."""

    keys: np.ndarray
    at_end: np.ndarray


@dataclass
class _Steps:
    """The partition's running capture end as a step function of the same places."""

    keys: np.ndarray
    values: np.ndarray


@dataclass
class _Index:
    conn_first: np.ndarray  #: local conn_id -> first frame
    stream_first: np.ndarray  #: local tcp.stream -> first frame
    ends: _Ends
    own: np.ndarray  #: per end: the capture end from this partition's own events
    steps: _Steps
    latest: int  #: the partition's latest capture-end contribution

    def __sizeof__(self) -> int:  # for Dask (see `tcplife.distributed._PartitionOut`)
        return sum(a.nbytes for a in (self.conn_first, self.stream_first, self.own,
                                      self.ends.keys, self.ends.at_end, self.steps.keys,
                                      self.steps.values)) + 1024


@dataclass
class Tracked:
    """A tracked partition (`tcplife.distributed._PartitionOut`) with its `_index`,
    made by one task so that both stay on the worker that tracked it."""

    out: Any
    index: _Index

    def __sizeof__(self) -> int:
        return sys.getsizeof(self.out) + sys.getsizeof(self.index)


def index_partition(out: Any, p: int) -> Tracked:
    return Tracked(out, _index(out, p))


def _places(rows: list[tuple[int, ...]], p: int) -> np.ndarray:
    """(at_end, k0..k4) rows -> bytes that sort as the tuples ``(at_end, key, p)`` do
    (``_END`` above every time; signed values order-preserved as unsigned)."""
    if not rows:
        return np.empty(0, dtype="S56")
    signed = np.array(rows, dtype=np.int64)
    a = signed.view(np.uint64)
    a[:, 1:] ^= _SIGN
    a[signed[:, 1] == -1, 1] = _TOP  # -1 stands for _END, above every time
    whole = np.empty((len(rows), 7), dtype=np.uint64)
    whole[:, :6] = a
    whole[:, 6] = p
    return whole.astype(">u8").view("S56").ravel()


def _index(out: Any, p: int) -> _Index:
    """Scan a tracked partition (`tcplife.distributed._PartitionOut`) once."""
    conn_first: dict[int, int] = {}
    parts: tuple[list[tuple[int, ...]], list[tuple[int, ...]]] = ([], [])
    values: tuple[list[int], list[int]] = ([], [])
    ends: tuple[list[bool], list[bool]] = ([], [])
    place: tuple[int, ...] | None = None
    for key, ev in out.keyed:
        if place is None or key > place:
            place = key  # the merge's order: the prefix maximum of the keys
        if isinstance(ev, Transition):
            if ev.frame is None:
                continue
            value, is_end = ev.ts_ns, False
        elif isinstance(ev, ConnectionEnded):
            value, is_end = ev.record.last_ts_ns, True
        elif isinstance(ev, ConnectionStarted):
            conn_first[ev.conn_id] = ev.frame
            continue
        else:
            continue
        at_end = int(key[0] == _END)
        parts[at_end].append((at_end, -1 if place[0] == _END else place[0], *place[1:]))
        values[at_end].append(value)
        ends[at_end].append(is_end)
    keys = _places(parts[0] + parts[1], p)
    running = np.maximum.accumulate(np.maximum(np.array(values[0] + values[1],
                                                        dtype=np.int64), 0)) \
        if keys.size else np.empty(0, dtype=np.int64)
    is_end = np.array(ends[0] + ends[1], dtype=bool)
    rises = np.ones(len(running), dtype=bool)
    rises[1:] = running[1:] > running[:-1]
    at_end = np.zeros(len(keys), dtype=bool)
    at_end[len(parts[0]):] = True
    streams = out.streams
    return _Index(
        conn_first=np.array([conn_first[c] for c in range(len(conn_first))], dtype=np.int64),
        stream_first=np.array([streams[s] for s in range(len(streams))], dtype=np.int64),
        ends=_Ends(keys[is_end], at_end[is_end]), own=running[is_end],
        steps=_Steps(keys[rises], running[rises]),
        latest=int(running[-1]) if len(running) else 0)


def _numbering(t: Tracked) -> tuple[np.ndarray, np.ndarray, int]:
    return t.index.conn_first, t.index.stream_first, t.index.latest


def _ends_of(t: Tracked) -> _Ends:
    return t.index.ends


def _steps_of(t: Tracked) -> _Steps:
    return t.index.steps


def global_numbers(firsts: list[np.ndarray]) -> list[np.ndarray]:
    """Per partition, local number -> global number, numbering by first frame (ties, which
    cannot happen for distinct connections, by partition then local number)."""
    frames = np.concatenate(firsts) if firsts else np.empty(0, dtype=np.int64)
    part = np.concatenate([np.full(len(f), p) for p, f in enumerate(firsts)]) \
        if firsts else np.empty(0, dtype=np.int64)
    local = np.concatenate([np.arange(len(f)) for f in firsts]) \
        if firsts else np.empty(0, dtype=np.int64)
    rank = np.empty(len(frames), dtype=np.int64)
    rank[np.lexsort((local, part, frames))] = np.arange(len(frames))
    bounds = np.cumsum([0, *map(len, firsts)])
    return [rank[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# ------------------------------------------------------------- 3. capture ends
def _lookup(ends: _Ends, steps: _Steps) -> np.ndarray:
    """For each of one partition's connection ends, another partition's running capture
    end just before it."""
    i = np.searchsorted(steps.keys, ends.keys, side="left") - 1
    if not len(steps.values):
        return np.zeros(len(i), dtype=np.int64)
    return np.where(i >= 0, steps.values[np.maximum(i, 0)], 0)


# ------------------------------------------------------------- 4. detectors and tables
@dataclass
class _Finished:
    collector: Collector
    time_wait: list[dict[str, Spans]]  #: per host bucket: host -> TIME_WAIT intervals

    def __sizeof__(self) -> int:  # for Dask: the compact columns, the lists of rows
        c = self.collector
        rows = len(c._trans) + len(c._conns) + len(c.oddities) + len(c.anomalies)
        return 100 * rows + 150 * sum(len(v) for b in self.time_wait for v in b.values())


def _host_bucket(host: str, buckets: int) -> int:
    digest = hashlib.blake2b(host.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % buckets


def _finish(t: Tracked, others: list[np.ndarray], numbers: tuple[np.ndarray, np.ndarray],
            options: Options, tables: tuple[str, ...], last_ts_ns: int | None,
            buckets: int) -> _Finished:
    """Stage 4. ``numbers``: this partition's (conn_id, tcp.stream) maps, local -> global;
    ``others``: `_lookup`'s answers from every other partition."""
    out, index = t.out, t.index
    conn_ids, streams = numbers
    capture_end = index.own.copy()
    for other in others:
        np.maximum(capture_end, other, out=capture_end)
    if last_ts_ns is not None:  # the end of input: the capture's last frame, any kind
        capture_end[index.ends.at_end] = np.maximum(capture_end[index.ends.at_end],
                                                    last_ts_ns)
    conn_of = conn_ids.tolist().__getitem__
    stream_list = streams.tolist()

    def stream_of(local: int) -> int:
        return stream_list[local] if 0 <= local < len(stream_list) else -1

    # The plain TIME_WAIT sweep: the bounded one drops intervals away from this
    # partition's own peak, which another partition's intervals may make the host's.
    detectors = DetectorSet(options, [
        TimeWaitAccumulation(d.threshold) if isinstance(d, TimeWaitAccumulation) else d
        for d in detect.default_detectors(options)])
    cross = [d for d in detectors.detectors if not isinstance(d, PerConnection)]
    if not all(isinstance(d, TimeWaitAccumulation) for d in cross):
        raise NotImplementedError("a cross-connection detector other than "
                                  "TimeWaitAccumulation cannot run per partition")
    collector = Collector(tables)
    during: list[Event] = []
    at_end: list[Event] = []
    for key, ev in out.keyed:
        renumber(ev, conn_of, stream_of)
        (at_end if key[0] == _END else during).append(ev)
    out.keyed = []  # the keys go (this task is the events' last user); the events stay
    ends = iter(capture_end.tolist())
    for events in (during, at_end):
        run: list[Event] = []
        for ev in events:
            run.append(ev)
            if isinstance(ev, ConnectionEnded):
                detectors.capture_end_ns = next(ends)
                collector.add(run + detectors.feed(run))
                run = []
        collector.add(run + detectors.feed(run))
    spans: list[dict[str, Spans]] = [{} for _ in range(buckets)]
    for detector in cross:
        for host, intervals in detector.intervals.items():  # type: ignore[attr-defined]
            spans[_host_bucket(host, buckets)].setdefault(host, Spans()).extend(intervals)
    return _Finished(collector, spans)


def _bucket(finished: _Finished, b: int) -> dict[str, Spans]:
    return finished.time_wait[b]


# ------------------------------------------------------------- 5. per host
def _time_wait(pieces: list[dict[str, Spans]], threshold: int,
               capture_end: int) -> list[tuple[str, Anomaly]]:
    """`TimeWaitAccumulation.finish` over one bucket of hosts, with each host."""
    hosts: dict[str, Spans] = {}
    for piece in pieces:
        for host, intervals in piece.items():
            hosts.setdefault(host, Spans()).extend(intervals)
    found = []
    for host in sorted(hosts):
        detector = TimeWaitAccumulation(threshold)
        detector.intervals = {host: hosts[host]}
        found += [(host, a) for a in detector.finish(capture_end)]
    return found


# ------------------------------------------------------------- 6. writing
def part_name(p: int) -> str:
    return f"part-{p:05d}.parquet"


def _write(finished: _Finished, directory: str, p: int, extra: list[Anomaly],
           tables: tuple[str, ...]) -> dict[str, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    c = finished.collector
    c.add(extra)
    build = {"connections": c.connections, "transitions": c.transitions,
             "anomalies": c.anomalies_frame, "oddities": c.oddities_frame}
    rows = {}
    for table in tables:
        frame = build[table]()
        arrow = pa.Table.from_pandas(frame, schema=arrow_schema(table), preserve_index=False)
        pq.write_table(arrow, os.path.join(directory, table, part_name(p)))
        rows[table] = len(frame)
        del frame, arrow
    return rows


def prepare_directory(directory: Path, tables: tuple[str, ...]) -> None:
    """The table directories, emptied of the part files of an earlier run (fewer
    partitions now would leave stale parts in the dataset)."""
    for table in tables:
        (directory / table).mkdir(parents=True, exist_ok=True)
        for old in (directory / table).glob("part-*.parquet"):
            old.unlink()


def write_metadata(dataset: ParquetDataset) -> None:
    from tcplife import __version__

    stats = asdict(dataset.stats)
    stats["link_types"] = {str(k): v for k, v in dataset.stats.link_types.items()}
    meta = {"tcplife_version": __version__, "sources": dataset.sources, "stats": stats,
            "options": asdict(dataset.options), "rows": dataset.rows}
    (dataset.directory / "capture.json").write_text(json.dumps(meta, indent=2) + "\n",
                                                    encoding="utf-8")


# ------------------------------------------------------------- the client's part
def write_dataset(client: Any, tracked: list[Any], stats: ReadStats, options: Options,
                  tables: tuple[str, ...], paths: list[str],
                  directory: str | os.PathLike[str],
                  homes: list[list[str] | None] | None = None) -> ParquetDataset:
    """Stages 2-6 on the tracked partitions (futures of `Tracked`, from `index_partition`).
    ``homes``: per partition, the worker its tracking was given (its later tasks prefer
    it too: the partition's events are costly to move)."""
    try:
        import pyarrow  # noqa: F401  (the workers need it too)
    except ImportError as exc:  # pragma: no cover - pyarrow is an optional dependency
        raise OutputError("a Parquet dataset needs pyarrow: pip install "
                          "'tcplife[parquet]'") from exc
    root = Path(directory)
    prepare_directory(root, tables)
    n = len(tracked)
    homes = homes or [None] * n

    def at(p: int, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return client.submit(fn, *args, workers=homes[p], allow_other_workers=True,
                             **kwargs)

    numbering = client.gather([at(p, _numbering, t) for p, t in enumerate(tracked)])
    conn_ids = global_numbers([conns for conns, _, _ in numbering])
    streams = global_numbers([s for _, s, _ in numbering])
    latest = max([0, *(latest for _, _, latest in numbering),
                  *([stats.last_ts_ns] if stats.last_ts_ns is not None else [])])
    del numbering
    ends = [at(p, _ends_of, t) for p, t in enumerate(tracked)]
    steps = [at(p, _steps_of, t) for p, t in enumerate(tracked)]
    # The maps go straight to the workers (scattered), not through the task graph.
    maps = client.scatter([(conn_ids[p], streams[p]) for p in range(n)])
    del streams
    finished = [at(p, _finish, tracked[p],
                   [at(q, _lookup, ends[p], steps[q]) for q in range(n) if q != p],
                   maps[p], options, tables, stats.last_ts_ns, n, pure=False)
                for p in range(n)]
    del ends, steps, maps
    tracked.clear()  # the caller's futures too: the workers free the events once finished
    found = client.gather([client.submit(_time_wait, [at(p, _bucket, f, b)
                                                      for p, f in enumerate(finished)],
                                         int(options.time_wait_threshold), latest)
                           for b in range(n)])
    owner = np.empty(sum(len(c) for c in conn_ids), dtype=np.int32)
    for p, ids in enumerate(conn_ids):
        owner[ids] = p
    extra: list[list[Anomaly]] = [[] for _ in range(n)]
    for _, anomaly in sorted((pair for bucket in found for pair in bucket),
                             key=lambda pair: pair[0]):
        extra[int(owner[anomaly.conn_id])].append(anomaly)
    counts = client.gather([at(p, _write, f, str(root), p, extra[p], tables, pure=False)
                            for p, f in enumerate(finished)])
    rows = {t: sum(c[t] for c in counts) for t in tables}
    dataset = ParquetDataset(root, rows, stats, options, paths)
    write_metadata(dataset)
    return dataset
