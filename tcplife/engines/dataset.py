"""The tables of a Dask analysis written as a Parquet dataset by the workers themselves.

Owns: `ParquetDataset` (what ``analyze_dask(..., parquet_dir=...)`` returns), the layout
(one directory per table, one part file per flow partition) and the stages that follow
tracking when the tables stay on the workers:

Every stage leaves its data in the spool (`tcplife.engines.spool`, a hidden directory in the
dataset's, unless ``spool_dir`` says otherwise) and hands Dask only where it is, so a
worker's memory holds one partition at a time per thread, never the capture:

1. ``_index`` (per partition, in its tracking task: `index_partition`): the first frame
   of each connection and ``tcp.stream``, and a compact account of the running capture
   end at each connection's end (see below); written to the spool with the partition's
   events (`Tracked` says where).
2. The client turns the first frames into the global numbering (local id -> global id,
   one small integer array per partition): ``conn_id`` and ``tcp_stream`` by first frame;
   each partition's maps go to the spool (``_save_numbers``).
3. ``_capture_ends`` (in the partition's ``_finish`` task): the capture end other
   partitions had reached when each of this partition's connections ended (`_lookup` on
   each other partition's steps, read from the spool one partition at a time).
4. ``_finish`` (per partition): events renumbered, the per-connection detectors and the
   `Collector`, exactly as `tcplife.engines.analysis.Sink` runs them; the transitions and oddities
   parts written at once; the cross-connection detector (`TimeWaitAccumulation`, per host)
   only gathers its TIME_WAIT intervals, bucketed by host, and the first packet of its
   earliest connection. The connections and anomalies (a `Collector` of their compact
   columns) and the intervals go to the spool.
5. ``_time_wait`` (per host bucket): the per-host verdicts over every partition's intervals,
   from the capture's span (the earliest first packet of every partition to the capture's
   end); the few anomalies come back to the client, which routes each to the partition
   that owns its connection.
6. ``_write`` (per partition): those anomalies added, the connections and anomalies
   parts built and written.

The client holds the file list, the read stats, the numbering arrays (8 bytes per
connection) and the time-wait anomalies; never an event or a table row.

The running capture end: `DetectorSet` hands each connection's verdict the latest time seen
so far (transitions with a frame, and connections' last packets) in event order, and the
end of input raises it to the capture's last frame. The order is the one the in-memory
merge (`tcplife.engines.distributed._merged_events`) produces, one process's order when timestamps
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tcplife import detect
from tcplife.capture import ReadStats
from tcplife.core.events import (
    Anomaly,
    ClockAdvanced,
    ConnectionEnded,
    ConnectionStarted,
    Event,
    InputEnded,
    Oddity,
    PortReuse,
    Retraction,
    Transition,
)
from tcplife.core.options import Options
from tcplife.detect import (
    DetectorSet,
    ListenOverflow,
    PerConnection,
    Spans,
    TimeWaitAccumulation,
)
from tcplife.engines.spool import dump, load_array, save_arrays, undump
from tcplife.output.formats import OutputError
from tcplife.output.framemap import slim, with_file_columns, with_files
from tcplife.output.frames import (
    ANOMALY_COLUMNS,
    CONNECTION_COLUMNS,
    ODDITY_COLUMNS,
    TRANSITION_COLUMNS,
    Collector,
    anomalies_frame,
    connections_frame,
    empty_frame,
    oddities_frame,
    transitions_frame,
    widened,
)
from tcplife.output.schema import FILE_COLUMNS

#: each table's columns and dtypes
SCHEMAS: dict[str, dict[str, Any]] = {
    "connections": CONNECTION_COLUMNS, "transitions": TRANSITION_COLUMNS,
    "anomalies": ANOMALY_COLUMNS, "oddities": ODDITY_COLUMNS}
#: a stable sort by these columns puts the dataset's rows in the order of `analyze`'s
#: rows sorted the same way (ties keep the order one process emitted them in)
SORT_KEYS: dict[str, list[str]] = {
    "connections": ["conn_id"], "transitions": ["conn_id", "ts_ns"],
    "anomalies": ["conn_id", "ts_ns"], "oddities": ["conn_id", "ts_ns"]}

#: the first element of the key of the events the end of input emits (`Tracker.finish`),
#: after every packet's (`tcplife.engines.distributed.KeyedObserver`, which imports it)
END_KEY = 1 << 64
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
    the values present, lists as arrays); stable-sorted by `SORT_KEYS` if ``sort``. The
    file columns of several captures are kept where the dataset has them."""
    schema = SCHEMAS[table]
    if set(FILE_COLUMN_NAMES) & set(frame.columns):
        schema = with_file_columns(schema)
    out = {}
    for name, dtype in schema.items():
        column = frame[name]
        if dtype == "object":
            lists = pd.Series([None] * len(column), dtype="object")
            lists[:] = [list(v) for v in column]
            out[name] = lists
        elif isinstance(dtype, pd.CategoricalDtype):
            out[name] = column.astype(widened(dtype, column.unique())).reset_index(drop=True)
        else:
            out[name] = column.astype(dtype).reset_index(drop=True)
    frame = pd.DataFrame(out)
    if sort:
        frame = frame.sort_values(SORT_KEYS[table], kind="stable", ignore_index=True)
    return frame


def arrow_schema(table: str, files: bool = False) -> Any:
    """The Parquet schema of a table: one for every part, empty or not. ``files``: with
    the file columns of several captures (`tcplife.output.framemap`)."""
    import pyarrow as pa

    columns = with_file_columns(SCHEMAS[table]) if files else SCHEMAS[table]
    schema = pa.Schema.from_pandas(empty_frame(columns), preserve_index=False)
    for i, f in enumerate(schema):
        if columns[f.name] == "object":  # lists: a connection's anomaly kinds,
            item = pa.int64() if f.name == "frames" else pa.string()  # a row's frames
            schema = schema.set(i, pa.field(f.name, pa.list_(item)))
    return schema


#: the file columns several captures add (`tcplife.output.framemap`)
FILE_COLUMN_NAMES = tuple(name for name, _ in FILE_COLUMNS.values())



def renumber(ev: Event, conn_id: Callable[[int], int], stream: Callable[[int], int],
             tid: int | None = None) -> Event:
    """A partition's event with the whole set's ``conn_id`` and ``tcp_stream`` numbers
    (``conn_id``, ``stream``: partition-local number -> global), and ``tid`` if given (a
    new event: events are immutable)."""
    if isinstance(ev, (Transition, Retraction)):
        if tid is None:
            return ev._replace(conn_id=conn_id(ev.conn_id))
        return ev._replace(conn_id=conn_id(ev.conn_id), tid=tid)
    if isinstance(ev, ConnectionStarted):
        return ev._replace(conn_id=conn_id(ev.conn_id))
    if isinstance(ev, Oddity):
        if isinstance(ev.facts, PortReuse):
            old = conn_id(ev.facts.old_conn_id)
            facts = replace(ev.facts, old_conn_id=old)
            return ev._replace(conn_id=conn_id(ev.conn_id), facts=facts,
                               detail=facts.sentence())
        return ev._replace(conn_id=conn_id(ev.conn_id))
    if isinstance(ev, ConnectionEnded):
        rec = ev.record
        peers = rec.peers
        if peers is not None:
            peers = replace(peers, tcp_stream=stream(peers.tcp_stream),
                            tcp_streams=sorted(stream(s) for s in peers.tcp_streams))
        new = conn_id(rec.conn_id)
        # what the detectors judge it by, with the global id too (their ``tid``s stay the
        # partition's: they order the connection's own transitions, as the global ones do)
        return ev._replace(record=rec._replace(conn_id=new, peers=peers),
                           transitions=[t._replace(conn_id=new) for t in ev.transitions],
                           notes=[renumber(n, conn_id, stream) for n in ev.notes])
    return ev


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

    def arrays(self) -> dict[str, np.ndarray]:
        return {"conn_first": self.conn_first, "stream_first": self.stream_first,
                "ends_keys": self.ends.keys, "ends_at_end": self.ends.at_end,
                "own": self.own, "steps_keys": self.steps.keys,
                "steps_values": self.steps.values}


@dataclass(frozen=True)
class Tracked:
    """A tracked partition (`tcplife.engines.distributed._PartitionOut`) and its `_index`, written
    to the spool by its tracking task: what stays in Dask's memory is where they are."""

    p: int
    spool: str
    latest: int  #: `_Index.latest`

    @property
    def prefix(self) -> str:
        return os.path.join(self.spool, f"p{self.p:05d}")

    def array(self, name: str) -> np.ndarray:
        """One of `_Index.arrays`, memory-mapped."""
        return load_array(self.prefix, name)


def index_partition(out: Any, p: int, spool: str) -> Tracked:
    """The partition's events and their `_index`, to the spool."""
    index = _index(out, p)
    tracked = Tracked(p, spool, index.latest)
    save_arrays(tracked.prefix, index.arrays())
    dump(out, tracked.prefix + ".events.pkl")
    return tracked


def _places(rows: list[tuple[int, ...]], p: int) -> np.ndarray:
    """(at_end, k0..k4) rows -> bytes that sort as the tuples ``(at_end, key, p)`` do
    (``END_KEY`` above every time; signed values order-preserved as unsigned)."""
    if not rows:
        return np.empty(0, dtype="S56")
    signed = np.array(rows, dtype=np.int64)
    a = signed.view(np.uint64)
    a[:, 1:] ^= _SIGN
    a[signed[:, 1] == -1, 1] = _TOP  # -1 stands for END_KEY, above every time
    whole = np.empty((len(rows), 7), dtype=np.uint64)
    whole[:, :6] = a
    whole[:, 6] = p
    return whole.astype(">u8").view("S56").ravel()


def _index(out: Any, p: int) -> _Index:
    """Scan a tracked partition (`tcplife.engines.distributed._PartitionOut`) once."""
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
        at_end = int(key[0] == END_KEY)
        parts[at_end].append((at_end, -1 if place[0] == END_KEY else place[0], *place[1:]))
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


def _numbering(t: Tracked) -> tuple[np.ndarray, np.ndarray]:
    return np.array(t.array("conn_first")), np.array(t.array("stream_first"))


def _save_numbers(t: Tracked, numbers: tuple[np.ndarray, np.ndarray]) -> None:
    """The partition's maps (local conn_id, tcp.stream -> global), beside its index."""
    save_arrays(t.prefix, {"conn_ids": numbers[0], "streams": numbers[1]})


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


def _capture_ends(t: Tracked, n: int, last_ts_ns: int | None) -> np.ndarray:
    """Per connection end of the partition, in order, the running capture end one
    process hands its verdict: the maximum of its own and of every other partition's
    (`_lookup`, each other partition's steps read from the spool in turn)."""
    ends = _Ends(t.array("ends_keys"), t.array("ends_at_end"))
    capture_end = np.array(t.array("own"), dtype=np.int64)
    for q in range(n):
        if q != t.p:
            other = Tracked(q, t.spool, 0)
            steps = _Steps(other.array("steps_keys"), other.array("steps_values"))
            np.maximum(capture_end, _lookup(ends, steps), out=capture_end)
    if last_ts_ns is not None:  # the end of input: the capture's last frame, any kind
        at_end = np.asarray(ends.at_end)
        capture_end[at_end] = np.maximum(capture_end[at_end], last_ts_ns)
    return capture_end


# ------------------------------------------------------------- 4. detectors and tables
#: the tables `_finish` writes at once; the others wait for `_time_wait`'s anomalies
_AT_ONCE = ("transitions", "oddities")


@dataclass(frozen=True)
class _Finished:
    """A finished partition: the rows of the tables written so far, and where in the
    spool the rest is (the collector of connections and anomalies; per host bucket, the
    TIME_WAIT intervals, None for none); the first packet of its earliest connection."""

    rows: dict[str, int]
    collector: str
    time_wait: list[str | None]
    since_ns: int | None = None
    #: per service bucket, the SYN-ACKs and unanswered connections `ListenOverflow`
    #: gathered (None for none)
    listen: list[str | None] = field(default_factory=list)


def _host_bucket(host: str, buckets: int) -> int:
    digest = hashlib.blake2b(host.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % buckets


def _finish(t: Tracked, n: int, options: Options, tables: tuple[str, ...],
            last_ts_ns: int | None, directory: str,
            fmap: ReadStats | None = None) -> _Finished:
    """Stage 4: the events renumbered (by the maps `_save_numbers` wrote), the
    per-connection detectors and the `Collector`; the transitions and oddities written
    at once."""
    out = undump(t.prefix + ".events.pkl")
    capture_end = _capture_ends(t, n, last_ts_ns)
    conn_of = t.array("conn_ids").tolist().__getitem__
    stream_list = t.array("streams").tolist()

    def stream_of(local: int) -> int:
        return stream_list[local] if 0 <= local < len(stream_list) else -1

    # The plain TIME_WAIT sweep: the bounded one drops intervals away from this
    # partition's own peak, which another partition's intervals may make the host's.
    # The service's answers from other partitions decide an unanswered SYN: every one is
    # gathered and judged per service bucket (`_listen`).
    detectors = DetectorSet(options, [
        d.plain() if isinstance(d, TimeWaitAccumulation)
        else ListenOverflow(options, defer=True) if isinstance(d, ListenOverflow) else d
        for d in detect.default_detectors(options)])
    cross = [d for d in detectors.detectors if not isinstance(d, PerConnection)]
    if not all(isinstance(d, (TimeWaitAccumulation, ListenOverflow)) for d in cross):
        raise NotImplementedError("a cross-connection detector other than "
                                  "TimeWaitAccumulation and ListenOverflow cannot run per "
                                  "partition")
    now = Collector(name for name in tables if name in _AT_ONCE)
    later = Collector(name for name in tables if name not in _AT_ONCE)
    during: list[Event] = []
    at_end: list[Event] = [InputEnded(last_ts_ns or 0)]  # as one tracker's end begins
    for key, ev in out.keyed:
        ev = renumber(ev, conn_of, stream_of)
        (at_end if key[0] == END_KEY else during).append(ev)
    del out
    # Each connection is judged at the capture end one process had reached when it
    # ended (`_capture_ends`: other partitions' events too): a clock event before it.
    ends = iter(capture_end.tolist())
    for events in (during, at_end):
        batch = [x for ev in events for x in (
            (ClockAdvanced(next(ends)), ev) if isinstance(ev, ConnectionEnded) else (ev,))]
        batch += detectors.events(batch)  # as a tracker's hook judges (`Tracker.feed`)
        now.add(batch)
        later.add(batch)
    del batch
    del during, at_end
    rows = _write_tables(now, directory, t.p, tuple(x for x in tables if x in _AT_ONCE),
                         fmap)
    del now
    spans: list[dict[str, Spans]] = [{} for _ in range(n)]
    listen: list[_Listen] = [_Listen({}, []) for _ in range(n)]
    waits = [d for d in cross if isinstance(d, TimeWaitAccumulation)]
    since = [d.since_ns for d in waits if d.since_ns is not None]
    for detector in waits:
        for host, intervals in detector.intervals.items():
            spans[_host_bucket(host, n)].setdefault(host, Spans()).extend(intervals)
    for lo in (d for d in cross if isinstance(d, ListenOverflow)):
        for service, answers in lo.answers.items():
            listen[_host_bucket(service[0], n)].answers[service] = \
                np.array(answers, dtype=np.int64).reshape(-1, 2)
        for u in lo.pending:
            listen[_host_bucket(u.service[0], n)].pending.append(u)
    return _Finished(rows, dump(later, t.prefix + ".collector.pkl"),
                     [dump(bucket, f"{t.prefix}.b{b:05d}.spans.pkl") if bucket else None
                      for b, bucket in enumerate(spans)], min(since, default=None),
                     [dump(bucket, f"{t.prefix}.b{b:05d}.listen.pkl")
                      if bucket.pending or bucket.answers else None
                      for b, bucket in enumerate(listen)])


@dataclass
class _Listen:
    """One partition's share of a service bucket for `ListenOverflow`: per service its
    SYN-ACKs as (time, conn_id) rows, and its connections left unanswered."""

    answers: dict[tuple[str, int], np.ndarray]
    pending: list[Any]


def _service_key(service: tuple[str, int]) -> str:
    return f"{service[0]}|{service[1]}"


def _listen_bucket(finished: _Finished, b: int) -> str | None:
    return finished.listen[b] if finished.listen else None


def _listen(pieces: list[str | None], options: Options) -> list[tuple[str, Anomaly]]:
    """`ListenOverflow` over one bucket of server hosts (all of a host's services in one
    bucket: whether the host answered on other ports tells a filter from a dead host):
    every partition's SYN-ACKs from them and every connection they left unanswered,
    judged together."""
    detector = ListenOverflow(options, defer=True)
    for piece in pieces:
        if piece is None:
            continue
        part: _Listen = undump(piece)
        for service, rows in part.answers.items():
            detector.answers[service].extend(map(tuple, rows.tolist()))
        detector.pending += part.pending
    detector.pending.sort(key=lambda u: (u.times[0], u.conn_id))
    return [(_service_key(u.service), a) for u in list(detector.pending)
            for a in detector.judge(u)]


def _bucket(finished: _Finished, b: int) -> tuple[str | None, int | None]:
    return finished.time_wait[b], finished.since_ns


# ------------------------------------------------------------- 5. per host
def _time_wait(pieces: list[tuple[str | None, int | None]], options: Options,
               capture_end: int) -> list[tuple[str, Anomaly]]:
    """`TimeWaitAccumulation.finish` over one bucket of hosts (every partition's
    intervals of them, read from the spool), with each host; every partition's earliest
    first packet makes the capture's span."""
    hosts: dict[str, Spans] = {}
    for piece, _ in pieces:
        for host, intervals in (undump(piece) if piece is not None else {}).items():
            hosts.setdefault(host, Spans()).extend(intervals)
    since = min((s for _, s in pieces if s is not None), default=None)
    [rule] = [d for d in detect.default_detectors(options)
              if isinstance(d, TimeWaitAccumulation)]
    found = []
    for host in sorted(hosts):
        detector = rule.plain()
        detector.intervals, detector.since_ns = {host: hosts[host]}, since
        found += [(host, a) for a in detector.finish(capture_end)]
    return found


# ------------------------------------------------------------- 6. writing
def part_name(p: int) -> str:
    return f"part-{p:05d}.parquet"


def _write_tables(c: Collector, directory: str, p: int, tables: tuple[str, ...],
                 fmap: ReadStats | None = None) -> dict[str, int]:
    """The partition's part of each of ``tables``, built from ``c``; their rows.
    ``fmap``: the frame map of several captures (`tcplife.output.framemap.slim`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    build = {"connections": connections_frame, "transitions": transitions_frame,
             "anomalies": anomalies_frame, "oddities": oddities_frame}
    rows = {}
    for table in tables:
        frame = build[table](c)
        if fmap is not None:
            frame = with_files(frame, fmap)
        arrow = pa.Table.from_pandas(frame, schema=arrow_schema(table, fmap is not None),
                                     preserve_index=False)
        pq.write_table(arrow, os.path.join(directory, table, part_name(p)))
        rows[table] = len(frame)
        del frame, arrow
    return rows


def _write(finished: _Finished, directory: str, p: int, extra: list[Anomaly],
           tables: tuple[str, ...], fmap: ReadStats | None = None) -> dict[str, int]:
    """Stage 6: the tables `_finish` left, with the time-wait anomalies added."""
    c: Collector = undump(finished.collector)
    c.add(extra)
    return {**finished.rows,
            **_write_tables(c, directory, p, tuple(t for t in tables if t not in _AT_ONCE),
                            fmap)}


def prepare_directory(directory: Path, tables: tuple[str, ...]) -> None:
    """The table directories, emptied of the part files of an earlier run (fewer
    partitions now would leave stale parts in the dataset)."""
    for table in tables:
        (directory / table).mkdir(parents=True, exist_ok=True)
        for old in (directory / table).glob("part-*.parquet"):
            old.unlink()


def write_metadata(dataset: ParquetDataset) -> None:
    from tcplife.version import __version__

    stats = asdict(dataset.stats)
    stats["link_types"] = {str(k): v for k, v in dataset.stats.link_types.items()}
    meta = {"tcplife_version": __version__, "sources": dataset.sources, "stats": stats,
            "options": asdict(dataset.options), "rows": dataset.rows}
    (dataset.directory / "capture.json").write_text(json.dumps(meta, indent=2) + "\n",
                                                    encoding="utf-8")


# ------------------------------------------------------------- the client's part
def write_dataset(client: Any, tracked: list[Any], stats: ReadStats, options: Options,
                  tables: tuple[str, ...], paths: list[str],
                  directory: str | os.PathLike[str], spool: str,
                  homes: list[list[str] | None] | None = None) -> ParquetDataset:
    """Stages 2-6 on the tracked partitions (futures of `Tracked`, from `index_partition`),
    which left their events and index in ``spool``. ``homes``: per partition, the worker
    its tracking was given (its later tasks prefer it too)."""
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

    done: list[Tracked] = client.gather(tracked)
    tracked.clear()  # the caller's futures too: nothing of them stays in Dask's memory
    numbering = client.gather([at(p, _numbering, t) for p, t in enumerate(done)])
    conn_ids = global_numbers([conns for conns, _ in numbering])
    streams = global_numbers([s for _, s in numbering])
    latest = max([0, *(t.latest for t in done),
                  *([stats.last_ts_ns] if stats.last_ts_ns is not None else [])])
    del numbering
    # The maps go into the spool, where each partition's finishing task reads its own;
    # as the saving tasks' arguments (scattered, they would stay in the workers' memory
    # until Dask released them, which it may do after the finishing tasks started).
    client.gather([at(p, _save_numbers, done[p], (conn_ids[p], streams[p]), pure=False)
                   for p in range(n)])
    del streams
    fmap = slim(stats)
    finished = [at(p, _finish, done[p], n, options, tables, stats.last_ts_ns, str(root),
                   fmap, pure=False) for p in range(n)]
    found = client.gather([client.submit(_time_wait, [at(p, _bucket, f, b)
                                                      for p, f in enumerate(finished)],
                                         options, latest)
                           for b in range(n)])
    found += client.gather([client.submit(_listen, [at(p, _listen_bucket, f, b)
                                                    for p, f in enumerate(finished)],
                                          options)
                            for b in range(n)])
    owner = np.empty(sum(len(c) for c in conn_ids), dtype=np.int32)
    for p, ids in enumerate(conn_ids):
        owner[ids] = p
    extra: list[list[Anomaly]] = [[] for _ in range(n)]
    for _, anomaly in sorted((pair for bucket in found for pair in bucket),
                             key=lambda pair: pair[0]):
        extra[int(owner[anomaly.conn_id])].append(anomaly)
    counts = client.gather([at(p, _write, f, str(root), p, extra[p], tables, fmap,
                               pure=False) for p, f in enumerate(finished)])
    rows = {t: sum(c[t] for c in counts) for t in tables}
    dataset = ParquetDataset(root, rows, stats, options, paths)
    write_metadata(dataset)
    return dataset
