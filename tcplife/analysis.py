"""The one place that wires the stages together for capture files.

capture source -> Segments -> Tracker -> events -> Collector -> DataFrames (`Result`).
Owns: `analyze()` and `Result`. Nothing downstream calls back upstream.
"""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Union

import pandas as pd

from tcplife.capture import ReadStats
from tcplife.capture.bpf import CaptureFilter, as_filter
from tcplife.capture.columns import Batch
from tcplife.capture.merge import first_times, merged_batches, merged_segments
from tcplife.detect import DetectorSet
from tcplife.drive import drive
from tcplife.events import Event
from tcplife.frames import CONNECTION_COLUMNS, Collector, empty_frame
from tcplife.frames import state_at as _state_at
from tcplife.options import Options
from tcplife.segment import Segment
from tcplife.times import parse_time
from tcplife.tracker import Tracker

#: the tables `analyze` can keep
TABLES = ("connections", "transitions", "anomalies", "oddities")

Source = Union[str, "os.PathLike[str]", IO[bytes]]


@dataclass
class Result:
    """What `analyze` returns: the tables of the contract, plus what the reader saw."""

    connections: pd.DataFrame
    transitions: pd.DataFrame
    anomalies: pd.DataFrame
    oddities: pd.DataFrame
    stats: ReadStats
    options: Options
    sources: list[str] = field(default_factory=list)
    #: set when `analyze` was asked to ``stream_connections``: the connections table,
    #: in frames of a given size, built from compact columns as they are read
    connection_frames: Callable[[int], Iterator[pd.DataFrame]] | None = field(
        default=None, repr=False, compare=False)

    @property
    def warnings(self) -> list[str]:
        return self.stats.warnings

    def iter_connections(self, size: int = 50_000) -> Iterator[pd.DataFrame]:
        """The ``connections`` table as consecutive frames of at most ``size`` rows (with
        ``analyze(..., stream_connections=True)``, without ever holding it whole)."""
        if self.connection_frames is not None:
            yield from self.connection_frames(size)
            return
        for start in range(0, len(self.connections), size):
            yield self.connections.iloc[start:start + size]

    def state_at(self, when: float | int | str | datetime | pd.Timestamp) -> pd.DataFrame:
        """Like ``ss -tan`` at ``when``: one row per side of each connection that is not
        CLOSED at that instant. ``when`` takes the CLI's forms (`tcplife.times`): epoch
        seconds, ISO 8601, a datetime, ``HH:MM:SS[.ffffff]`` on the capture's date,
        ``"start"``, ``"end"`` (what ``client_state``/``server_state`` say), ``"+S"``
        after the first frame, ``"-S"`` before the last. A time outside the capture gives
        a `UserWarning` naming its span."""
        ns, notes = parse_time(when).resolve(self.stats.first_ts_ns, self.stats.last_ts_ns)
        for note in notes:
            warnings.warn(note, UserWarning, stacklevel=2)
        return _state_at(self.connections, self.transitions,
                         pd.Timestamp(ns, unit="ns", tz="UTC"))

    def summary(self) -> dict[str, Any]:
        """The summary ``tcplife analyze`` prints under its table, as data
        (`tcplife.summary.summarize`): states at the capture's end, what was open then,
        close kinds, anomalies by severity and kind, the capture's counters."""
        from tcplife.summary import summarize

        return summarize(self.connections, self.stats, self.transitions, self.anomalies)

    def plot_timeline(self, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
        """A chart of each side's states over time (a matplotlib Figure; saved to ``path``
        if given). Needs matplotlib; see `tcplife.plot.plot_timeline` for the options."""
        from tcplife.plot import plot_timeline

        return plot_timeline(self, path, **kwargs)


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


#: capture bytes per batch read; `tcplife.drive` joins four of them where a few busy flows
#: make long runs. Batches of many short connections stay this small: their rows become
#: Python values a batch at a time (8 MiB cost ~20 MB more peak RSS on the *short*
#: benchmark), while 2 MiB batches of *keepalive* slowed it ~40 % unjoined (fewer of each
#: flow's packets per batch: runs fell under `tcplife.drive.LONG_RUN`)
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
    """What every engine runs after the tracker: the anomaly detectors and the collector,
    fed the tracker's events as they come (call it with a list of events), then
    `result` with the events of the end of input."""

    def __init__(self, options: Options, tables: Iterable[str],
                 on_event: Callable[[Event], None] | None = None,
                 stream_connections: bool = False) -> None:
        self.options = options
        self.detectors = DetectorSet(options)
        self.collector = Collector(tables)
        self.on_event = on_event
        self.stream_connections = stream_connections

    def __call__(self, events: list[Any]) -> None:
        events = events + self.detectors.feed(events)
        if self.on_event is not None:
            for ev in events:
                self.on_event(ev)
        self.collector.add(events)

    def result(self, final: Iterable[list[Event]], stats: ReadStats,
               sources: list[str]) -> Result:
        """Feed ``final`` (the tracker's `finish_chunks`) once the capture's end is known,
        then the detectors' own end; build the tables."""
        self.detectors.end_input(stats.last_ts_ns)  # its last frame, of any kind
        for events in final:
            self(events)
        self(list(self.detectors.finish()))
        c = self.collector
        if self.stream_connections:
            return Result(connections=empty_frame(CONNECTION_COLUMNS),
                          transitions=c.transitions(), anomalies=c.anomalies_frame(),
                          oddities=c.oddities_frame(), stats=stats, options=self.options,
                          sources=sources, connection_frames=c.connection_frames)
        return Result(connections=c.connections(), transitions=c.transitions(),
                      anomalies=c.anomalies_frame(), oddities=c.oddities_frame(),
                      stats=stats, options=self.options, sources=sources)


def analyze(source: Source | list[Source], *, options: Options | None = None,
            on_event: Callable[[Event], None] | None = None, fast: bool = True,
            tables: Iterable[str] = TABLES,
            progress: Callable[[int, int | None], None] | None = None,
            stream_connections: bool = False,
            capture_filter: str | CaptureFilter | None = None, **timeouts: float) -> Result:
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
    fast path must equal; see `tcplife.drive`). ``tables`` names the tables to keep
    (of `TABLES`); the others come back empty, with their columns, and cost no memory:
    ``tables=("connections",)`` is how a big capture's summary stays small.
    ``progress(bytes_read, total_bytes)`` is called as the captures are read (total None
    when a source has no size, e.g. a pipe). ``stream_connections=True`` leaves
    ``connections`` empty and gives the table through `Result.iter_connections` instead,
    a frame at a time, for writers that need not hold it whole.
    """
    options = resolve_options(options, tables, timeouts)
    sources: list[Source] = list(source) if isinstance(source, (list, tuple)) else [source]
    flt = as_filter(capture_filter)
    if flt is not None:
        flt.check()
    firsts = first_times(sources)  # before `watch`, whose streams cannot be read twice
    if progress is not None:
        from tcplife.progress import watch
        sources = watch(sources, progress)
    stats = ReadStats()
    tracker = Tracker(options)
    consume = Sink(options, tables, on_event, stream_connections)

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
    return consume.result(tracker.finish_chunks(end_ns=stats.last_ts_ns), stats,
                          [_source_name(s) for s in sources])


