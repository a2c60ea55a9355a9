"""A directory of rotated captures analysed on a Dask cluster, as one capture.

Owns: `analyze_dask` and its three stages. (1) One task per file reads it with the bulk
reader (`read_batches`) and cuts its segments by a direction-agnostic flow hash into
partitions; it also returns the file's `ReadStats` (frame count, so that frame numbers
continue across files exactly as `analyze` numbers them). (2) One task per partition
feeds its segments, in capture order across file boundaries, to the same `Tracker` as
`analyze` (through `drive`): every connection's segments meet in one partition, so each
connection's events are the ones `analyze` produces, with partition-local ``conn_id``,
``tid`` and ``tcp.stream`` numbers. Each event is tagged with where the single-process
run would have emitted it (`KeyedObserver`). (3) The client merges: ``conn_id`` and
``tcp_stream`` renumbered by first frame (the contract's numbering), transitions re-keyed,
and the events replayed in the single-process order through `DetectorSet` and `Collector`
(so cross-connection detectors, the running capture end and the tie order of rows are the
single process's).

With ``parquet_dir``, stage (3) is not run: the tables are finished and written by the
workers (`tcplife.engines.dataset`), which this module hands the tracked partitions.

Memory: through a spool (`tcplife.engines.spool`: ``spool_dir``; else ``parquet_dir``; else, on
the local cluster, the temporary directory; else each worker's own scratch directory), a
read task writes its file's columns, partition by partition and read batch by read batch,
to one spool file and returns only the file's head (stats, last time and frame, per
partition a `Piece` and its ``_gaps`` tail); a partition task reads only its pieces (from
a worker's own spool, the worker that read the file sends them: `WorkerPiece`). So a worker
holds one read batch (`_READ_BYTES` of capture, plus the file's partition and time columns)
while reading a file, one partition while tracking it (its segments, then its events), per
thread, and between tasks only those handles: a few hundred bytes per file and partition,
not the capture (tests/test_dask_memory.py). The tracked partitions of an in-memory
`Result` are fetched by the client as each is done; the client holds the result tables, as
`analyze` does (none with ``parquet_dir``). Knows nothing of the CLI.

Timers: one process fires a timer at the first segment, of any connection, stamped at or
after its deadline. With timestamps in order, a partition's next segment or the end does
the same; where they go backwards, each partition row carries the latest time other
partitions' segments reached since its previous row (`_gaps`), and time advances to it.
The running maximum of those times is the set's clock at each row, and the key of a
segment's events (`KeyedObserver.clock_at`): capture order, even where stamps step back.

Where the result may differ from `analyze` on the concatenation: a timer armed by another
timer (the eviction after a TIME_WAIT expires) due at the same nanosecond as a timer of
another partition (their rows' tie order follows the frame that armed the first timer, not
the single process's arming order); a timer whose deadline the clock passed (a segment
stamped ahead of later ones) fires, in one process, at the next segment stamped past it,
but is keyed before the next segment: the order of events (and so the running capture end
the detectors are given) may differ, tests/test_distributed.py pins a case; a step back of
more than a read batch, which `analyze`'s fast path does not see (docs/dask.md, Limits).
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from tcplife.capture import CaptureError, ReadStats
from tcplife.capture.bpf import as_filter
from tcplife.capture.columns import V6_BASE, AddressBook, Batch
from tcplife.capture.fastread import read_batches
from tcplife.capture.flowhash import flow_hash
from tcplife.capture.merge import first_times, overlap_warning, time_order
from tcplife.capture.sources import capture_files as capture_files  # re-exported
from tcplife.core.events import (
    ConnectionEnded,
    ConnectionStarted,
    Event,
    InputEnded,
    Retraction,
    Transition,
)
from tcplife.core.options import Options
from tcplife.core.segment import Segment
from tcplife.core.timers import Timer, Timers
from tcplife.core.tracker import Tracker
from tcplife.engines.analysis import TABLES, Result, Sink, resolve_options
from tcplife.engines.dataset import (
    END_KEY,
    ParquetDataset,
    Tracked,
    index_partition,
    renumber,
    write_dataset,
)
from tcplife.engines.drive import drive
from tcplife.engines.spool import (
    Appender,
    Piece,
    WorkerPiece,
    WorkerSpool,
    load,
    spool,
    worker_directory,
    worker_spool,
)
from tcplife.engines.wiring import new_tracker
from tcplife.peers import PeerObserver

#: capture bytes per batch a read task reads (and, with a spool, writes) at a time
_READ_BYTES = 8 << 20
#: rows per `Batch` fed to `drive` in a partition task
_BATCH_ROWS = 1 << 16
_CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".gz", ".dmp")



# ---------------------------------------------------------------------- inputs
# ---------------------------------------------------------------------- stage 1: read
@dataclass
class _FileRead:
    """What a read task returns: the file's stats and its segments by partition (in the
    spool, if there is one)."""

    stats: ReadStats
    last_seg_ts: int | None  #: the latest TCP segment time in the file
    last_seg_frame: int  #: the file-local frame number of its last TCP segment (0: none)
    #: per partition, where in the spool its `Batch` columns and ``gap_max`` are
    parts: list[Piece]
    v6_names: dict[int, str] = field(default_factory=dict)  #: IPv6 key -> text
    tails: list[int] = field(default_factory=list)  #: per partition, see `_gaps`

    def __sizeof__(self) -> int:  # for Dask (see `_PartitionOut.__sizeof__`)
        return 100 * len(self.parts) + 4096


def flow_partition(batch: Batch, nparts: int) -> np.ndarray:
    """Each row's partition: its flow's hash (`flow_hash`: either direction, and
    independent of the file, whose IPv6 keys are per-read) modulo ``nparts``."""
    return (flow_hash(batch) % np.uint64(nparts)).astype(np.int64)


#: the columns of a partition's rows a read task hands its partition task
_COLUMNS = (*Batch.COLUMNS, "gap_max")


def _read_file(path: str, nparts: int, spool: str | WorkerSpool, n: int = 0,
               capture_filter: str | None = None) -> _FileRead:
    """The ``n``-th file of the set, cut into partitions, whose columns go to a file in the
    ``spool`` (``read-NNNNN.bin``; in this worker's own directory for a `WorkerSpool`)
    batch by batch as they are read, not into the task's result. ``capture_filter``: a
    BPF expression (`tcplife.capture.bpf`)."""
    stats = ReadStats()
    if isinstance(spool, WorkerSpool):
        sink = Appender(os.path.join(worker_directory(spool), f"read-{n:05d}.bin"), nparts,
                        _COLUMNS, kind=WorkerPiece)
    else:
        sink = Appender(os.path.join(spool, f"read-{n:05d}.bin"), nparts, _COLUMNS)
    last_frame = 0
    book: AddressBook | None = None
    all_part: list[np.ndarray] = []
    all_ts: list[np.ndarray] = []
    try:
        for batch in read_batches(path, stats, batch_bytes=_READ_BYTES,
                                  capture_filter=capture_filter):
            book = batch.book
            part = flow_partition(batch, nparts)
            all_part.append(part)
            all_ts.append(batch.ts_ns)
            last_frame = int(batch.frame[-1])
            order = np.argsort(part, kind="stable")
            bounds = np.searchsorted(part[order], np.arange(nparts + 1))
            for p in range(nparts):
                rows = order[bounds[p]:bounds[p + 1]]
                if len(rows):
                    sink.add(p, {c: getattr(batch, c)[rows] for c in Batch.COLUMNS})
        part = np.concatenate(all_part) if all_part else np.empty(0, dtype=np.int64)
        ts = np.concatenate(all_ts) if all_ts else np.empty(0, dtype=np.int64)
        del all_part, all_ts
        gaps, tails = _gaps(part, ts, nparts)
        for p, gap in enumerate(gaps):
            if gap is not None:
                sink.add(p, {"gap_max": gap})
    finally:
        parts = sink.close()
    v6 = {k: book.names[k] for k in book.v6_keys.values()} if book is not None else {}
    last_ts = int(ts.max()) if len(ts) else None
    return _FileRead(stats, last_ts, last_frame, parts, v6, tails)


_NO_TIME = np.iinfo(np.int64).min


def _gaps(part: np.ndarray, ts: np.ndarray, nparts: int
          ) -> tuple[list[np.ndarray | None], list[int]]:
    """Where timestamps go backwards, one process fires a timer at any later-stamped
    segment, of any connection (`Tracker.advance`). So each partition row gets
    ``gap_max``: the latest time among the file's segments of other partitions since the
    partition's previous row (`_NO_TIME` if none); None for a partition without rows.
    Also returns, per partition, the latest time after its last row in the file (the
    whole file's if it has none), carried to the next file's first row."""
    gaps: list[np.ndarray | None] = []
    tails = []
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(nparts + 1))
    padded = np.append(ts, _NO_TIME)
    for p in range(nparts):
        rows = order[bounds[p]:bounds[p + 1]]
        if not len(rows):
            gaps.append(None)
            tails.append(int(ts.max()) if len(ts) else int(_NO_TIME))
            continue
        starts = np.concatenate(([0], rows[:-1] + 1))
        gap = np.maximum.reduceat(padded, np.stack([starts, rows], axis=1).ravel())[::2]
        gap[starts >= rows] = _NO_TIME
        gaps.append(gap)
        after = ts[rows[-1] + 1:]
        tails.append(int(after.max()) if len(after) else int(_NO_TIME))
    return gaps, tails


#: a partition's piece of a file: where its columns are (a `WorkerPiece` moved to another
#: worker arrives as the columns themselves), the file's IPv6 names, its `_gaps` tail
_Part = tuple[dict[str, np.ndarray] | Piece, dict[int, str], int]


def _head(read: _FileRead) -> tuple[ReadStats, int | None, int]:
    return read.stats, read.last_seg_ts, read.last_seg_frame


def _part_of(read: _FileRead, p: int) -> _Part:
    return read.parts[p], read.v6_names, read.tails[p]


# ---------------------------------------------------------------------- stage 2: track
Key = tuple[int, int, int, int, int]


class KeyedObserver(PeerObserver):
    """The peers' observer plus a key per event of the tracker it watches: where `analyze`
    (one tracker fed every segment of every partition) would have emitted it. Segment
    events: at their segment ``(ts, 1, frame, 0, n)``. A timer fires, in one process, at
    the first segment after it was armed whose time reaches its deadline, in (deadline,
    arming) order: ``(deadline, 0, arming frame, 0, n)``; one due at or before its arming
    time fires at the next segment ``(armed ts, 1, arming frame, 1, n)``; one due after the
    last segment of the whole set fires at the end ``(END_KEY, 0, deadline, arming frame, n)``;
    one armed by a firing timer and due by that timer's deadline takes its key. The
    connections still open at the end: ``(END_KEY, 1, first frame, 0, 0)``.

    Public seams only: the tracker's observer hook (`tcplife.core.observe`: every segment,
    every timer armed, firing and fired with its events), its `Timers`, the events `feed`
    returns (`keyed_segment_events`, given as `drive`'s ``emit``) and the Wireshark
    numbering callback (`streams`)."""

    #: arming records of timers no longer in the heap are dropped past this many
    PRUNE_AT = 4096

    def __init__(self, last_ts: int, last_frame: int) -> None:
        super().__init__(self._new_stream)
        self.keyed: list[tuple[Key, Event]] = []
        self.streams: dict[int, int] = {}  #: local tcp.stream -> its first frame
        self.timers: Timers | None = None  #: the watched tracker's (`watch`)
        self._last_ts, self._last_frame = last_ts, last_frame
        self._frame = self._ts = 0  #: the arming context: frame and time
        self._pushed: dict[int, tuple[int, int]] = {}  #: timer seq -> arming context
        self._inherit: dict[int, tuple[int, ...]] = {}  #: timer seq -> its parent's key
        self._timer_events = 0  #: events the timers produced since the last segment
        self._firing: tuple[tuple[int, ...], tuple[int, int], int] | None = None
        self._clock_frames = self._clock = np.empty(0, dtype=np.int64)

    def watch(self, tracker: Tracker) -> Tracker:
        self.timers = tracker.timers
        return tracker

    def _new_stream(self, stream: int, seg: Segment) -> None:
        self.streams[stream] = seg.frame

    def clock_at(self, frames: np.ndarray, clock: np.ndarray) -> None:
        """Per row of the partition (by frame), the latest time any segment of the whole
        set had reached by then: the key of its events, so that they sort in capture
        order even where a stamp steps back (equal to the row's own time when times are
        in order)."""
        self._clock_frames, self._clock = frames, clock

    def _clock_of(self, seg: Segment) -> int:
        i = int(np.searchsorted(self._clock_frames, seg.frame))
        if i < len(self._clock_frames) and self._clock_frames[i] == seg.frame:
            return int(self._clock[i])
        return seg.ts_ns  # pragma: no cover - every fed segment is a row of the partition

    def segment(self, seg: Segment) -> None:
        super().segment(seg)
        self._frame, self._ts = seg.frame, self._clock_of(seg)
        self._timer_events = 0

    def keyed_segment_events(self, events: list[Event]) -> None:
        """`drive`'s ``emit``: what `Tracker.feed` returned, the events of the timers it
        fired first (keyed already) and then the segment's own."""
        n = len(self.keyed)
        clock, frame = self._ts, self._frame
        self.keyed.extend(((clock, 1, frame, 0, n + i), ev)
                          for i, ev in enumerate(events[self._timer_events:]))
        self._timer_events = 0

    def finishing(self) -> None:
        self._timer_events = 0

    def keyed_end_events(self, events: list[Event]) -> None:
        """What `Tracker.finish` returned: its `InputEnded` (the merge emits the set's
        own), its timers' events, then the connections still open at the end."""
        self.keyed.extend(((END_KEY, 1, ev.record.first_frame, 0, 0), ev)
                          for ev in events[1 + self._timer_events:]
                          if isinstance(ev, ConnectionEnded))

    def timer_armed(self, timer: Timer) -> None:
        if self._firing is not None:
            key, context, deadline = self._firing
            self._pushed[timer.seq] = context
            if timer.deadline <= deadline:
                self._inherit[timer.seq] = key
            return
        self._pushed[timer.seq] = (self._frame, self._ts)
        timers = self.timers
        if timers is not None and len(self._pushed) > 2 * len(timers) + self.PRUNE_AT:
            live = {entry.seq for entry in timers}
            self._pushed = {k: v for k, v in self._pushed.items() if k in live}
            self._inherit = {k: v for k, v in self._inherit.items() if k in live}

    def timer_firing(self, timer: Timer) -> None:
        deadline = timer.deadline
        frame, ts = self._pushed.pop(timer.seq, (self._frame, self._ts))
        key = self._inherit.pop(timer.seq, None)
        if key is None:
            if deadline <= ts and frame < self._last_frame:
                key = (ts, 1, frame, 1)
            elif deadline > ts and deadline <= self._last_ts:
                key = (deadline, 0, frame, 0)
            else:
                key = (END_KEY, 0, deadline, frame)
        # what a timer arms, it arms then
        self._firing = (key, (frame, max(deadline, ts)), deadline)

    def timer_fired(self, timer: Timer, events: list[Event]) -> None:
        assert self._firing is not None
        key = self._firing[0]
        self._firing = None
        n = len(self.keyed)
        self.keyed.extend(((*key, n + i), ev) for i, ev in enumerate(events))  # type: ignore[misc]
        self._timer_events += len(events)


@dataclass
class _PartitionOut:
    keyed: list[tuple[Key, Event]]
    streams: dict[int, int]

    def __sizeof__(self) -> int:
        # What Dask's scheduler and spilling go by (its default for an object is ~50
        # bytes, which let it move whole partitions between workers as if free): an
        # estimate, a key tuple and an event of a few attributes each.
        return 450 * len(self.keyed) + 100 * len(self.streams)


def _track_and_index(pieces: list[_Part], offsets: list[int], options: Options,
                     last_ts: int, last_frame: int, p: int, spool: str) -> Tracked:
    """`_track_partition` and, in the same task, what the dataset's stages need of it,
    written to the spool (`tcplife.engines.dataset.index_partition`)."""
    out = _track_partition(pieces, offsets, options, last_ts, last_frame)
    return index_partition(out, p, spool)


def _track_partition(pieces: list[_Part], offsets: list[int], options: Options,
                     last_ts: int, last_frame: int) -> _PartitionOut:
    book = AddressBook()
    cols: dict[str, list[np.ndarray]] = {c: [] for c in _COLUMNS}
    carry = int(_NO_TIME)  # the latest time since this partition's last row
    for (stored, v6_names, tail), offset in zip(pieces, offsets, strict=True):
        part = load(stored)
        if not len(part["frame"]):
            carry = max(carry, tail)
            continue
        for c in _COLUMNS:
            col = part[c]
            if c == "frame":
                col = col + offset
            elif c == "gap_max":
                col = col.copy()
                col[0] = max(int(col[0]), carry)
            elif c in ("src", "dst"):
                v6 = col >= V6_BASE
                if v6.any():  # per-read IPv6 keys -> this partition's keys
                    col = col.copy()
                    uniq, inv = np.unique(col[v6], return_inverse=True)
                    keys = np.array([book.key_text(v6_names[int(k)]) for k in uniq],
                                    dtype=np.int64)
                    col[v6] = keys[inv]
            cols[c].append(col)
        carry = tail
    keyed = KeyedObserver(last_ts, last_frame)
    tracker = keyed.watch(new_tracker(options, keyed, judge=False))
    if cols["frame"]:
        whole = {c: np.concatenate(v) for c, v in cols.items()}
        del cols
        drive(_batches(whole, book, tracker, keyed), tracker, keyed.keyed_segment_events,
              lookahead=False)
    keyed.finishing()
    keyed.keyed_end_events(tracker.finish())
    return _PartitionOut(keyed.keyed, keyed.streams)


def _batches(whole: dict[str, np.ndarray], book: AddressBook, tracker: Tracker,
             keyed: KeyedObserver) -> Iterator[Batch]:
    """The partition's rows as batches; before a row that other partitions' segments
    stamped later than it precede, time advances to theirs (as in one process)."""
    gap = whole.pop("gap_max")
    n = len(gap)
    keyed.clock_at(whole["frame"], np.maximum.accumulate(np.maximum(gap, whole["ts_ns"])))
    late = np.flatnonzero(gap > whole["ts_ns"]).tolist()
    cuts = sorted({0, n, *late, *range(0, n, _BATCH_ROWS)})
    late_set = set(late)
    for a, b in zip(cuts, cuts[1:], strict=False):
        if a in late_set:
            tracker.advance(int(gap[a]))
        yield Batch(book, **{c: v[a:b] for c, v in whole.items()})


# ---------------------------------------------------------------------- stage 3: merge
def _stream_number(numbers: dict[int, int], local: int) -> int:
    return numbers.get(local, -1)


def _merged_events(outs: list[_PartitionOut]) -> Iterator[tuple[bool, Event]]:
    """Every partition's events, renumbered as one tracker numbers them, in the order one
    tracker emits them; with a flag: emitted by the end of input."""
    conn_first: dict[tuple[int, int], int] = {}
    stream_first: list[tuple[int, int, int]] = []
    for p, out in enumerate(outs):
        for _, ev in out.keyed:
            if isinstance(ev, ConnectionStarted):
                conn_first[(p, ev.conn_id)] = ev.frame
        stream_first += [(frame, p, s) for s, frame in out.streams.items()]
    conn_ids: list[dict[int, int]] = [{} for _ in outs]
    for i, (_, (p, c)) in enumerate(sorted((f, pc) for pc, f in conn_first.items())):
        conn_ids[p][c] = i
    streams: list[dict[int, int]] = [{} for _ in outs]
    for i, (_, p, s) in enumerate(sorted(stream_first)):
        streams[p][s] = i
    conn_fn = [ids.__getitem__ for ids in conn_ids]
    stream_fn = [functools.partial(_stream_number, ids) for ids in streams]
    # A k-way merge: each partition's own emission order is kept even where its keys are
    # out of order (timestamps that go backwards), so a retraction follows its transition.
    merged = heapq.merge(*([(key, p, ev) for key, ev in out.keyed]
                           for p, out in enumerate(outs)), key=lambda x: (x[0], x[1]))
    tids: dict[tuple[int, int], int] = {}
    for key, p, ev in merged:
        tid = None
        if isinstance(ev, Transition):
            tid = tids[(p, ev.tid)] = len(tids)
        elif isinstance(ev, Retraction):
            tid = tids[(p, ev.tid)]
        yield key[0] == END_KEY, renumber(ev, conn_fn[p], stream_fn[p], tid)


# ---------------------------------------------------------------------- the entry point
@contextlib.contextmanager
def _client(scheduler: Any) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    if scheduler is not None and not isinstance(scheduler, str):
        yield scheduler  # a Client of the caller's: theirs to close
        return
    if scheduler is None:
        with LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            yield client
    else:
        with Client(scheduler) as client:
            yield client


#: the default partitions hold about this much capture each, so that a worker's memory,
#: bounded by the partition, does not grow with the set by default
PARTITION_BYTES = 256 << 20


def default_partitions(paths: list[str], threads: int) -> int:
    """Twice the workers' threads, or one partition per `PARTITION_BYTES` of the files
    (as stored: gzip counts compressed) if that is more."""
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += os.path.getsize(path)
    return max(2 * threads, -(-total // PARTITION_BYTES))


def _workers(client: Any) -> int:
    return max(1, sum(client.nthreads().values()))


_Sources = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
_Dir = str | os.PathLike[str]


@overload
def analyze_dask(source: _Sources, *, scheduler: Any = ..., partitions: int | None = ...,
                 options: Options | None = ...,
                 on_event: Callable[[Event], None] | None = ...,
                 tables: Iterable[str] = ..., parquet_dir: None = ...,
                 spool_dir: _Dir | None = ..., capture_filter: str | None = ...,
                 **timeouts: float) -> Result: ...


@overload
def analyze_dask(source: _Sources, *, scheduler: Any = ..., partitions: int | None = ...,
                 options: Options | None = ...,
                 on_event: Callable[[Event], None] | None = ...,
                 tables: Iterable[str] = ..., parquet_dir: _Dir,
                 spool_dir: _Dir | None = ..., capture_filter: str | None = ...,
                 **timeouts: float) -> ParquetDataset: ...


def analyze_dask(source: _Sources, *,
                 scheduler: Any = None, partitions: int | None = None,
                 options: Options | None = None,
                 on_event: Callable[[Event], None] | None = None,
                 tables: Iterable[str] = TABLES,
                 parquet_dir: _Dir | None = None,
                 spool_dir: _Dir | None = None, capture_filter: str | None = None,
                 **timeouts: float) -> Result | ParquetDataset:
    """`tcplife.analyze` of the captures of a directory, a glob or a list (as one capture,
    ordered by their first frames' times as `analyze` orders them), computed on a Dask
    cluster; the same `Result`, frame map included. The files are read in parallel, so
    files that overlap in time (which `analyze` merges frame by frame) are a
    `CaptureError` here, found once they are read. ``capture_filter``: a BPF expression,
    as `analyze`'s.

    ``parquet_dir``: instead of a `Result`, the workers write the ``tables`` as a Parquet
    dataset there (``DIR/connections/part-00000.parquet``, ...; one part per partition,
    parts of an earlier run removed) and a `tcplife.engines.dataset.ParquetDataset` comes back:
    no table passes through this process, so the result may be larger than its memory.
    Rows equal `analyze`'s once both are stable-sorted by
    `tcplife.engines.dataset.SORT_KEYS` (``ParquetDataset.read`` does that); ``on_event`` is
    not available then.

    ``spool_dir``: a directory every worker reaches at that path, where the stages leave
    their data for the next one (in a hidden subdirectory, removed afterwards) instead of
    in the workers' memory. Default: with ``parquet_dir``, that directory; else, with the
    local cluster (``scheduler`` None), the system's temporary directory; else each worker's
    own scratch directory (a partition's pieces then reach the worker that tracks it
    through Dask, from the workers that read them).

    ``scheduler``: None for a `LocalCluster` on this machine's cores (one single-threaded
    worker process each), a scheduler address (``"tcp://host:8786"``) or a
    `distributed.Client`. ``partitions``: how many flow partitions (default
    `default_partitions`); the result does not depend on it. ``on_event`` receives the events
    in the single process's order, but only once every partition is done.
    """
    from distributed import wait

    options = resolve_options(options, tables, timeouts)
    if parquet_dir is not None and on_event is not None:
        raise ValueError("on_event needs the events in this process: not with parquet_dir")
    paths = capture_files(source)
    if not paths:
        raise FileNotFoundError(f"no capture files in {os.fspath(source)!r}"  # type: ignore
                                if isinstance(source, (str, os.PathLike)) else "no captures")
    flt = as_filter(capture_filter)
    if flt is not None:
        capture_filter = flt.check().expression
    firsts = first_times(paths)
    given = time_order(list(range(len(paths))), firsts)  # the arguments' positions
    paths = [paths[i] for i in given]
    parent = _spool_parent(spool_dir, parquet_dir, scheduler)
    with _client(scheduler) as client, \
            (spool(parent) if parent is not None else worker_spool(client)) as where:
        nparts = partitions or default_partitions(paths, _workers(client))
        reads = [client.submit(_read_file, path, nparts, where, n, capture_filter,
                               pure=False)
                 for n, path in enumerate(paths)]
        # The tasks on a file's read run where it was read (a preference: one run
        # elsewhere, as after a lost worker, gets the read moved, and a read of a worker's
        # own spool then carries all its columns: `tcplife.engines.spool.WorkerPiece`).
        wait(reads)
        holders = client.who_has(reads)
        at_reader = [{"workers": list(holders[r.key]), "allow_other_workers": True}
                     if holders.get(r.key) else {} for r in reads]
        heads = client.gather([client.submit(_head, r, **at)
                               for r, at in zip(reads, at_reader, strict=True)])
        _check_sequential(paths, [(firsts[i], -i) for i in given], heads)
        offsets, frames = [], 0
        last_ts, last_frame = -1, 0
        for file_stats, file_last_ts, file_last_frame in heads:
            offsets.append(frames)
            if file_last_ts is not None:
                last_ts = max(last_ts, file_last_ts)
                last_frame = frames + file_last_frame
            frames += file_stats.frames
        stats = ReadStats()
        for file_stats, *_ in heads:
            stats.merge(file_stats)
        # Partitions dealt round the worker threads (a preference, not a rule): left to
        # itself the scheduler may queue two on one worker while another waits.
        # The pieces first, and before any tracking: a piece is taken on the worker that
        # read its file, whose thread a partition being tracked would otherwise hold.
        slots = [w for w, n in sorted(client.nthreads().items()) for _ in range(n)]
        homes = [[slots[p % len(slots)]] if slots else None for p in range(nparts)]
        pieces = [[client.submit(_part_of, r, p, priority=1, **at)
                   for r, at in zip(reads, at_reader, strict=True)]
                  for p in range(nparts)]
        track: Callable[..., Any] = (_track_partition if parquet_dir is None
                                     else _track_and_index)
        tracked = [client.submit(track, pieces[p], offsets, options, last_ts, last_frame,
                                 *(() if parquet_dir is None else (p, where)), pure=False,
                                 workers=homes[p], allow_other_workers=True)
                   for p in range(nparts)]
        del reads, pieces
        if parquet_dir is not None:
            assert isinstance(where, str)  # a dataset always has its shared spool
            return write_dataset(client, tracked, stats, options, tuple(tables), paths,
                                 parquet_dir, where, homes)
        outs = _gather_each(client, tracked)
    return _result(outs, stats, options, tables, on_event, paths)


def _check_sequential(paths: list[str], keys: list[tuple[int | None, int]],
                      heads: list[tuple[ReadStats, int | None, int]]) -> None:
    """`CaptureError` where a file (in time order) has a frame after the next file's first
    (merge ``keys``: first time, minus the position in the arguments: mergecap's rule),
    which `analyze` would merge frame by frame and the parallel reads cannot. A file's
    latest time is taken as the later of its last frame's and its latest TCP segment's."""
    for k in range(len(paths) - 1):
        stats, last_seg, _ = heads[k]
        latest = max((t for t in (stats.last_ts_ns, last_seg) if t is not None), default=None)
        first_next, neg_next = keys[k + 1]
        if latest is None or first_next is None:
            continue
        if (latest, keys[k][1]) > (first_next, neg_next):
            a, b = paths[k], paths[k + 1]
            raise CaptureError(overlap_warning([a, b]).split(";")[0] + ": --engine dask "
                               "reads files one after the other; use --engine single, or "
                               f"merge them first: mergecap -w merged.pcap {a} {b}")


def _spool_parent(spool_dir: _Dir | None, parquet_dir: _Dir | None,
                  scheduler: Any) -> _Dir | None:
    """Where the spool goes: ``spool_dir``; else ``parquet_dir`` (the workers write there
    anyway); else, for the local cluster, the temporary directory; else (None) each
    worker's own scratch directory (`tcplife.engines.spool.WorkerSpool`)."""
    if spool_dir is not None:
        return spool_dir
    if parquet_dir is not None:
        return parquet_dir
    return tempfile.gettempdir() if scheduler is None else None


def _gather_each(client: Any, futures: list[Any]) -> list[Any]:
    """The futures' results, each fetched (and released on the workers) as soon as it is
    done: a worker does not keep every partition it tracked until the last is done."""
    from distributed import as_completed

    where = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    pending = as_completed(futures, with_results=True)
    futures.clear()
    for future, result in pending:
        results[where[future.key]] = result
        del future, result
    return results


def _result(outs: list[_PartitionOut], stats: ReadStats, options: Options,
            tables: Iterable[str], on_event: Callable[[Event], None] | None,
            paths: list[str]) -> Result:
    """Detectors and collector over the merged events, exactly as `analyze` runs them."""
    consume = Sink(options, tables, on_event, judge=True)
    during: list[Event] = []
    at_end: list[Event] = [InputEnded(stats.last_ts_ns or 0)]  # one tracker's end, first
    for ending, ev in _merged_events(outs):
        (at_end if ending else during).append(ev)
        if len(during) >= 4096:
            consume(during)
            during = []
    consume(during)
    return consume.result([at_end], stats, paths)
