"""The file engine: the stages for capture files, wired as `tcplife.engines.wiring` wires them.

capture source -> Segments -> Tracker (detectors watching) -> events -> Collector ->
tables (`Result`).
Owns: `analyze()` and `Result`. Nothing downstream calls back upstream. Imports no
pandas: `Result` builds its DataFrames when they are first asked for, and the command
line reads its tables as `tcplife.output.rows.Rows` instead.
"""

from __future__ import annotations

import gc
import glob
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Union

from tcplife.capture import ReadStats
from tcplife.capture.bpf import CaptureFilter, as_filter
from tcplife.capture.columns import Batch
from tcplife.capture.merge import first_times, merged_batches, merged_segments
from tcplife.capture.sources import find_captures
from tcplife.core.events import Event
from tcplife.core.options import Options
from tcplife.core.segment import Segment
from tcplife.detect import DetectorSet
from tcplife.engines.drive import drive
from tcplife.engines.wiring import new_tracker
from tcplife.output import schema
from tcplife.output.collect import Collector
from tcplife.output.framemap import several, with_files
from tcplife.output.rows import Rows
from tcplife.output.snapshot import state_at_rows
from tcplife.output.times import parse_time

if TYPE_CHECKING:
    import pandas as pd

#: the tables `analyze` can keep
TABLES = schema.TABLES
SCHEMAS: dict[str, schema.Schema] = {
    "connections": schema.CONNECTIONS, "transitions": schema.TRANSITIONS,
    "anomalies": schema.ANOMALIES, "oddities": schema.ODDITIES}

Source = Union[str, "os.PathLike[str]", IO[bytes]]


@dataclass
class LazyTable:
    """A table an engine can give two ways, each built only when first asked for:
    ``rows`` (`Rows`, plain Python values, no pandas) and ``frame`` (a DataFrame).
    ``numbered``: the frame with frames numbered in the order they were read, without
    the file columns of several captures (`Result.read_order`), where those differ."""

    rows: Callable[[], Rows]
    frame: Callable[[], Any]
    count: Callable[[], int]
    numbered: Callable[[], Any] | None = None


class Result:
    """What `analyze` returns: the tables of the contract, plus what the reader saw.

    ``connections``, ``transitions``, ``anomalies`` and ``oddities`` are DataFrames,
    built on first use (importing pandas then); `table` gives a table as it is at hand
    (`Rows` where pandas has not been needed), which is what the command line prints.
    """

    def __init__(self, connections: Any = None, transitions: Any = None,
                 anomalies: Any = None, oddities: Any = None, *,
                 stats: ReadStats, options: Options, sources: list[str] | None = None,
                 connection_frames: Callable[[int], Iterator[Any]] | None = None,
                 connection_rows: Callable[[int], Iterator[Rows]] | None = None) -> None:
        #: per table: a DataFrame, `Rows`, a `LazyTable`, or None (empty)
        self._tables: dict[str, Any] = {"connections": connections,
                                        "transitions": transitions,
                                        "anomalies": anomalies, "oddities": oddities}
        self._frames: dict[str, Any] = {}
        self._rows: dict[str, Rows] = {}
        self.stats = stats
        self.options = options
        self.sources: list[str] = list(sources or [])
        #: set when `analyze` was asked to ``stream_connections``: the connections table,
        #: in pieces of a given size, built from compact columns as they are read
        self.connection_frames = connection_frames
        self.connection_rows = connection_rows

    # --- the tables -----------------------------------------------------------------

    def _frame(self, name: str) -> pd.DataFrame:
        frame = self._frames.get(name)
        if frame is None:
            held = self._tables[name]
            if isinstance(held, LazyTable):
                frame = held.frame()
            elif isinstance(held, Rows):
                frame = _frames().frame_from_rows(held)
            elif held is None:
                frame = _frames().frame_from_rows(Rows.empty(SCHEMAS[name]))
            else:
                frame = held
            self._frames[name] = frame
        return frame

    def _set(self, name: str, value: Any) -> None:
        self._tables[name] = value
        self._frames.pop(name, None)
        self._rows.pop(name, None)

    connections = property(lambda self: self._frame("connections"),
                           lambda self, v: self._set("connections", v),
                           doc="One row per connection instance (a DataFrame).")
    transitions = property(lambda self: self._frame("transitions"),
                           lambda self, v: self._set("transitions", v),
                           doc="One row per state change of one side (a DataFrame).")
    anomalies = property(lambda self: self._frame("anomalies"),
                         lambda self, v: self._set("anomalies", v),
                         doc="One row per anomaly (a DataFrame).")
    oddities = property(lambda self: self._frame("oddities"),
                        lambda self, v: self._set("oddities", v),
                        doc="One row per surprise the tracker went past (a DataFrame).")

    def table(self, name: str) -> Any:
        """Table ``name`` as it is at hand: the DataFrame if one was built or given, else
        `Rows` (built without pandas). Filters, the summary, the views and the writers
        take either."""
        if name in self._frames:
            return self._frames[name]
        rows = self._rows.get(name)
        if rows is not None:
            return rows
        held = self._tables[name]
        if isinstance(held, LazyTable):
            rows = self._rows[name] = held.rows()
            return rows
        if held is None:
            return Rows.empty(SCHEMAS[name])
        return held

    def read_order(self, name: str) -> pd.DataFrame:
        """Table ``name`` as a DataFrame whose frames are numbered in the order they were
        read (several captures merged by time, one count over all; no file columns):
        what re-reading the captures for their packets matches against. The same as
        the table itself for one capture."""
        held = self._tables[name]
        if isinstance(held, LazyTable) and held.numbered is not None:
            return held.numbered()
        return self._frame(name)

    def count(self, name: str) -> int:
        """Rows of table ``name``, without building it."""
        if name in self._frames:
            return len(self._frames[name])
        held = self._tables[name]
        if isinstance(held, LazyTable):
            return held.count()
        return 0 if held is None else len(held)

    def replace(self, **tables: Any) -> Result:
        """A copy with some tables replaced (DataFrames or `Rows`)."""
        out = Result(**{name: self.table(name) if name not in self._frames else
                        self._frames[name] for name in TABLES},
                     stats=self.stats, options=self.options, sources=self.sources)
        for name, value in tables.items():
            if name not in TABLES:
                raise TypeError(f"unknown table {name!r}")
            out._set(name, value)
        return out

    @property
    def warnings(self) -> list[str]:
        return self.stats.warnings

    def iter_connections(self, size: int = 50_000) -> Iterator[pd.DataFrame]:
        """The ``connections`` table as consecutive frames of at most ``size`` rows (with
        ``analyze(..., stream_connections=True)``, without ever holding it whole)."""
        if self.connection_frames is not None:
            yield from self.connection_frames(size)
            return
        frame = self.connections
        for start in range(0, len(frame), size):
            yield frame.iloc[start:start + size]

    def iter_connection_rows(self, size: int = 50_000) -> Iterator[Any]:
        """`iter_connections` as `Rows` where the engine can give them (no pandas), else
        as DataFrame pieces."""
        if self.connection_rows is not None:
            yield from self.connection_rows(size)
            return
        if self.connection_frames is not None:
            yield from self.connection_frames(size)
            return
        table = self.table("connections")
        if isinstance(table, Rows):
            for start in range(0, len(table), size):
                yield table.take(list(range(start, min(start + size, len(table)))))
            return
        for start in range(0, len(table), size):
            yield table.iloc[start:start + size]

    def at_ns(self, when: float | int | str | datetime | Any) -> int:
        """``when`` (any form of `tcplife.output.times`) as integer ns; a time outside the
        capture gives a `UserWarning` naming its span."""
        ns, notes = parse_time(when).resolve(self.stats.first_ts_ns, self.stats.last_ts_ns)
        for note in notes:
            warnings.warn(note, UserWarning, stacklevel=3)
        return ns

    def state_at(self, when: float | int | str | datetime | pd.Timestamp) -> pd.DataFrame:
        """Like ``ss -tan`` at ``when``: one row per side of each connection that is not
        CLOSED at that instant. ``when`` takes the CLI's forms (`tcplife.output.times`): epoch
        seconds, ISO 8601, a datetime, ``HH:MM:SS[.ffffff]`` on the capture's date,
        ``"start"``, ``"end"`` (what ``client_state``/``server_state`` say), ``"+S"``
        after the first frame, ``"-S"`` before the last. A time outside the capture gives
        a `UserWarning` naming its span."""
        ns = self.at_ns(when)
        return _frames().frame_from_rows(state_at_rows(self.connections, self.transitions,
                                                       ns))

    def summary(self) -> dict[str, Any]:
        """The summary ``tcplife analyze`` prints under its table, as data
        (`tcplife.output.summary.summarize`): states at the capture's end, what was open then,
        close kinds, anomalies by severity and kind, the capture's counters."""
        from tcplife.output.summary import summarize

        return summarize(self._best("connections"), self.stats,
                         transitions=self._best("transitions"),
                         anomalies=self._best("anomalies"))

    def _best(self, name: str) -> Any:
        """Table ``name`` as `Rows` if they were built already, else as the DataFrame
        (the Python API's own form)."""
        return self._rows[name] if name in self._rows else self._frame(name)

    def plot_timeline(self, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
        """A chart of each side's states over time (a matplotlib Figure; saved to ``path``
        if given). Needs matplotlib; see `tcplife.output.plot.plot_timeline` for the options."""
        from tcplife.output.plot import plot_timeline

        return plot_timeline(self, path, **kwargs)

    def __repr__(self) -> str:
        return "\n".join(self._describe())

    def _describe(self) -> list[str]:
        """A few lines of counts: what `repr` shows (a notebook cell's output)."""
        s = self.stats
        names = ", ".join(os.path.basename(n) or n for n in self.sources) or "?"
        if s.first_ts_ns is not None and s.last_ts_ns is not None:
            from tcplife.output.formats import clock

            span = (f", {clock(s.first_ts_ns, with_date=True)} – "
                    f"{clock(s.last_ts_ns)} UTC ({(s.last_ts_ns - s.first_ts_ns) / 1e9:.3f} s)")
        else:
            span = ""
        lines = [f"<tcplife Result: {names}: {s.frames} frames, {s.tcp_segments} TCP "
                 f"segments{span}>"]
        counts = {name: self.count(name) for name in TABLES}
        lines.append("  " + ", ".join(f"{n} {_plural(name, n)}" for name, n in counts.items()))
        if counts["anomalies"]:
            by: dict[str, int] = {}
            from tcplife.output.rows import column_of

            for severity in column_of(self.table("anomalies"), "severity"):
                by[str(severity)] = by.get(str(severity), 0) + 1
            lines.append("  anomalies by severity: " + ", ".join(
                f"{by[sev]} {sev}{'s' if by[sev] > 1 and sev != 'info' else ''}"
                for sev in ("error", "warning", "info") if sev in by))
        if s.warnings:
            lines.append(f"  {len(s.warnings)} reader warning"
                         f"{'s' if len(s.warnings) > 1 else ''} (.warnings)")
        lines.append("  (DataFrames: .connections .transitions .anomalies .oddities; "
                     ".summary(); .state_at(when))")
        return lines


def _frames() -> Any:
    """`tcplife.output.frames`, imported when a DataFrame is first wanted (it imports pandas)."""
    from tcplife.output import frames

    return frames


def _expand_sources(sources: list[Source]) -> tuple[list[Source], list[str]]:
    """A directory or a glob among ``sources`` stands for its captures (natural name
    order), as on the command line: its other files are skipped, with the warnings
    returned; a path to one file stays as it is (the reader says if it is no capture)."""
    out: list[Source] = []
    skipped: list[str] = []
    for source in sources:
        if isinstance(source, (str, os.PathLike)):
            text = os.fspath(source)
            if os.path.isdir(text) or (not os.path.exists(text) and glob.has_magic(text)):
                found = find_captures([text])
                out.extend(found.files)
                skipped.extend(found.warnings)
                continue
        out.append(source)
    return out, skipped


_SINGULAR = {"connections": "connection", "transitions": "transition",
             "anomalies": "anomaly", "oddities": "oddity"}


def _plural(name: str, n: int) -> str:
    """A table's name for ``n`` of its rows (the names are plurals)."""
    return _SINGULAR.get(name, name) if n == 1 else name


def _source_name(source: Source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "name", "<stream>") if isinstance(getattr(source, "name", None),
                                                             str) else "<stream>"


def iter_segments(sources: Sequence[Source], stats: ReadStats, *,
                  firsts: Sequence[int | None] | None = None,
                  capture_filter: str | CaptureFilter | None = None) -> Iterator[Segment]:
    """Segments of several captures as one capture, merged by time as mergecap merges
    them, whatever order they are given in (`tcplife.capture.merge`); frames are numbered
    in that order and ``stats.locate(frame)`` says which file and frame each is.
    ``firsts``: their first times if known (`tcplife.capture.merge.first_times`).
    ``capture_filter``: a BPF expression; frames it leaves out keep their numbers."""
    return merged_segments(list(sources), stats, firsts=firsts,
                           capture_filter=capture_filter)


#: capture bytes per batch read; `tcplife.engines.drive` joins four of them where a few busy flows
#: make long runs. Batches of many short connections stay this small: their rows become
#: Python values a batch at a time (8 MiB cost ~20 MB more peak RSS on the *short*
#: benchmark), while 2 MiB batches of *keepalive* slowed it ~40 % unjoined (fewer of each
#: flow's packets per batch: runs fell under `tcplife.engines.drive.LONG_RUN`)
BATCH_BYTES = 2 << 20


def iter_batches(sources: Sequence[Source], stats: ReadStats, *,
                 firsts: Sequence[int | None] | None = None,
                 capture_filter: str | CaptureFilter | None = None) -> Iterator[Batch]:
    """The segments of `iter_segments` as `Batch`es, read in bulk by
    `tcplife.capture.fastread` (which promises the same segments and the same stats as the
    plain reader), merged and numbered as in `iter_segments`."""
    return merged_batches(list(sources), stats, firsts=firsts,
                          capture_filter=capture_filter, batch_bytes=BATCH_BYTES)


def resolve_options(options: Options | None, tables: Iterable[str],
                    timeouts: dict[str, float]) -> Options:
    """The checks every engine makes of its arguments: known table names, and either
    ``options`` or timeout keywords; returns the options to use."""
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown tables {sorted(unknown)}; choose from {TABLES}")
    if options is None:
        return Options(**timeouts)
    if timeouts:
        raise TypeError("give either options= or timeout keywords, not both")
    return options


class Sink:
    """What takes a run's events: a `Collector` (and ``on_event``), fed each list of events
    as it comes (call it), then `result` with the events of the end of input. The file
    engine's tracker has judged them already (its detectors watch it: `new_tracker`); with
    ``judge`` the sink runs the detectors itself, on events that no tracker judged (the
    Dask merge replays its partitions' events), exactly as a tracker's hook runs them."""

    def __init__(self, options: Options, tables: Iterable[str],
                 on_event: Callable[[Event], None] | None = None,
                 stream_connections: bool = False, judge: bool = False) -> None:
        self.options = options
        self.collector = Collector(tables)
        self.on_event = on_event
        self.detectors = DetectorSet(options) if judge else None
        self.stream_connections = stream_connections

    def __call__(self, events: list[Event]) -> None:
        if self.detectors is not None and events:
            events += self.detectors.events(events)  # as `Tracker.feed` does
        if self.on_event is not None:
            for ev in events:
                self.on_event(ev)
        self.collector.add(events)

    def result(self, final: Iterable[list[Event]], stats: ReadStats,
               sources: list[str]) -> Result:
        """Feed ``final`` (the tracker's `finish_chunks`: `InputEnded` first; with
        ``judge``, then the detectors' own end); build the tables."""
        for events in final:
            self(events)
        if self.detectors is not None:
            self(self.detectors.ended())
        return collected_result(self.collector, stats, self.options, sources,
                                self.stream_connections)


def collected_result(c: Collector, stats: ReadStats, options: Options, sources: list[str],
                     stream_connections: bool = False) -> Result:
    """The `Result` of a collector's tables, each built (as `Rows` or a DataFrame) only
    when asked for."""
    def trans_count() -> int:
        order = c.transition_order()
        return 0 if order is None else len(order)

    def named(make: Callable[..., Any]) -> Callable[..., Any]:
        """A table maker whose frames name their files (several captures)."""
        if not several(stats):
            return make
        return lambda *args: with_files(make(*args), stats)

    def table(rows: Callable[[], Rows], frame: Callable[[], Any],
              count: Callable[[], int]) -> LazyTable:
        return LazyTable(named(rows), named(frame), count,
                         frame if several(stats) else None)

    def named_parts(make: Callable[[int], Iterator[Any]]) -> Callable[[int], Iterator[Any]]:
        if not several(stats):
            return make
        return lambda size: (with_files(part, stats) for part in make(size))

    tables = {
        "connections": None if stream_connections else table(
            c.all_connection_rows, lambda: _frames().connections_frame(c),
            lambda: len(c._conns)),
        "transitions": table(c.transition_rows, lambda: _frames().transitions_frame(c),
                             trans_count),
        "anomalies": table(c.anomaly_rows, lambda: _frames().anomalies_frame(c),
                           lambda: len(c.anomalies)),
        "oddities": table(c.oddity_rows, lambda: _frames().oddities_frame(c),
                          lambda: len(c.oddities)),
    }
    return Result(**tables, stats=stats, options=options, sources=sources,
                  connection_frames=named_parts(
                      lambda size: _frames().connection_frames(c, size))
                  if stream_connections else None,
                  connection_rows=named_parts(c.connection_rows)
                  if stream_connections else None)


def analyze(source: Source | list[Source], *, options: Options | None = None,
            on_event: Callable[[Event], None] | None = None, fast: bool = True,
            tables: Iterable[str] = TABLES,
            progress: Callable[[int, int | None], None] | None = None,
            stream_connections: bool = False,
            capture_filter: str | CaptureFilter | None = None, core: str | None = None,
            **timeouts: float) -> Result:
    """Analyse one capture (a path, ``"-"`` for stdin, or a binary file object) or a list
    of captures as one, merged by time as mergecap merges them whatever their order
    (overlapping captures get a warning; ``result.stats.locate(frame)`` gives the file
    and frame within it of any frame number). ``capture_filter``: a BPF expression, as
    ``tcpdump -r FILE EXPR`` takes it (libpcap compiles it; `FilterError`, a ValueError,
    if it will not): frames it leaves out are counted in ``stats.filtered_out`` and keep
    their numbers. Timeouts (seconds) override Linux's defaults:
    ``time_wait``, ``fin_wait_2``, ``syn_sent``, ``syn_received``, ``close_wait_linger``,
    ``idle``, ``closed_linger``.

    Raises `tcplife.CaptureError` only when the input cannot be read at all; a truncated or
    partly corrupt capture is analysed up to the damage, with a warning in ``warnings``.
    ``fast=False`` feeds every segment to the tracker one by one (the plain path, which the
    fast path must equal; see `tcplife.engines.drive`). ``tables`` names the tables to keep
    (of `TABLES`); the others come back empty, with their columns, and cost no memory:
    ``tables=("connections",)`` is how a big capture's summary stays small.
    ``progress(bytes_read, total_bytes)`` is called as the captures are read (total None
    when a source has no size, e.g. a pipe). ``stream_connections=True`` leaves
    ``connections`` empty and gives the table through `Result.iter_connections` instead,
    a frame at a time, for writers that need not hold it whole.
    ``core``: "python" (the core's `new_tracker`), "c" (the compiled reader and pipeline,
    `tcplife.engines.cpipeline`: the same events, a Python object per event and none per
    segment; `EngineUnavailable` if it was not built) or "auto" (the compiled one where
    `tcplife.native.loader.use_engine` says so); default: ``$TCPLIFE_CORE``, else "auto".
    The compiled pipeline runs the fast path's batches (``fast=False`` is the Python
    core's plain path).
    """
    options = resolve_options(options, tables, timeouts)
    from tcplife.native.loader import requested, use_engine

    auto = requested(core) == "auto"
    compiled = use_engine(core) and fast
    if compiled and auto:
        from tcplife.engines.cpipeline import runs_as_python

        compiled = runs_as_python(options)
    source_list = list(source) if isinstance(source, (list, tuple)) else [source]
    sources, skipped = _expand_sources(source_list)
    flt = as_filter(capture_filter)
    if flt is not None:
        flt.check()
    firsts = first_times(sources)  # before `watch`, whose streams cannot be read twice
    if progress is not None:
        from tcplife.engines.progress import watch
        sources = watch(sources, progress)
    stats = ReadStats()
    stats.warnings.extend(skipped)
    consume = Sink(options, tables, on_event, stream_connections)
    names = [_source_name(s) for s in sources]
    if compiled:
        try:
            return _analyze_compiled(iter_batches(sources, stats, firsts=firsts,
                                                  capture_filter=flt),
                                     options, consume, stats, names)
        except (ValueError, RuntimeError):
            # the engine refused a value (e.g. a time before 1970): "auto" reads the
            # captures again with the Python core where that is possible and unseen
            replayable = all(isinstance(s, (str, os.PathLike)) and os.fspath(s) != "-"
                             for s in source_list)
            if not (auto and replayable and on_event is None):
                raise
            return analyze(source_list, options=options, fast=fast, tables=tables,
                           progress=progress, stream_connections=stream_connections,
                           capture_filter=capture_filter, core="python")
    tracker = new_tracker(options)

    # Millions of small, acyclic objects: the cyclic collector's full passes cost a third
    # of the run time on big captures and find nothing; it is paused while reading.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        if fast:
            drive(iter_batches(sources, stats, firsts=firsts, capture_filter=flt), tracker,
                  consume)
        else:
            for seg in iter_segments(sources, stats, firsts=firsts, capture_filter=flt):
                events = tracker.feed(seg)
                if events:
                    consume(events)
    finally:
        if gc_was_on:
            gc.enable()
    return consume.result(tracker.finish_chunks(end_ns=stats.last_ts_ns), stats, names)


def _analyze_compiled(batches: Iterable[Batch], options: Options, consume: Sink,
                      stats: ReadStats, names: list[str]) -> Result:
    """`analyze`'s loop on the compiled pipeline: each batch's events (in the order
    `new_tracker` gives them) to ``consume``, then `finish`'s. A row the engine refuses
    raises (`ValueError`, `RuntimeError`: ``refused`` says why)."""
    from tcplife.engines.cpipeline import CPipeline

    pipeline = CPipeline(options)
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for batch in batches:
            if len(batch):
                events = pipeline.feed_batch(batch)
                if events:
                    consume(events)
        final = pipeline.finish(stats.last_ts_ns)
    finally:
        if gc_was_on:
            gc.enable()
    return consume.result([final], stats, names)


