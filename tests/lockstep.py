"""Lockstep: the same segments to the Python `Tracker` and the compiled one (`CTracker`),
and the first event where they differ, with its context.

Owns: `lockstep` (batches in, a `Difference` or None out), `lockstep_segments` (the same
for a list of `Segment`s) and `Difference` (the segment being fed, both events, the
connection's previous events, printable). The Python tracker runs without an observer,
as the compiled one does: records with ``peers=None``, no `Anomaly`. With
``pipeline=True`` the whole of `tcplife.engines.wiring.new_tracker` (peers and detectors)
against the compiled pipeline (`tcplife.engines.cpipeline.CPipeline`): records with their
`PeerSummary`, the `Anomaly` verdicts where the Python puts them.

Run on a capture: ``python tests/lockstep.py [--pipeline] CAPTURE...``.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tcplife.capture.columns import AddressBook, Batch
from tcplife.core.events import ConnectionEnded, Event
from tcplife.core.options import Options
from tcplife.core.segment import Segment
from tcplife.core.tracker import Tracker
from tcplife.engines.cpipeline import CPipeline
from tcplife.engines.ctrack import CTracker
from tcplife.engines.wiring import new_tracker
from tcplife.native.loader import EngineUnavailable, engine

try:
    ENGINE = engine()
except EngineUnavailable:  # not built (or refused): the tests that need it say so
    ENGINE = None

#: how many previous events of the differing connection a `Difference` shows
CONTEXT = 12


def conn_of(event: Event | None) -> int | None:
    if event is None:
        return None
    if isinstance(event, ConnectionEnded):
        return event.record.conn_id
    return getattr(event, "conn_id", None)


@dataclass
class Difference:
    """The first event where the two trackers differ."""

    index: int  #: the event's position in the whole stream
    segment: Segment | None  #: the segment being fed (None: at the end, in finish)
    python: Event | None  #: the Python tracker's event there (None: it had no more)
    compiled: Event | None  #: the compiled tracker's
    previous: list[Event] = field(default_factory=list)  #: the connection's events before

    def __str__(self) -> str:
        lines = [f"first difference at event {self.index}",
                 f"  segment:  {self.segment}" if self.segment is not None
                 else "  while finishing",
                 f"  python:   {self.python!r}", f"  compiled: {self.compiled!r}"]
        if self.previous:
            lines.append("  the connection's previous events:")
            lines += [f"    {e!r}" for e in self.previous]
        return "\n".join(lines)


class _Lockstep:
    def __init__(self, options: Options | None, pipeline: bool = False) -> None:
        self.py = new_tracker(options or Options()) if pipeline else Tracker(options)
        self.c: CTracker | CPipeline = (CPipeline(options, ENGINE) if pipeline
                                        else CTracker(options, ENGINE))
        self.index = 0
        self.recent: dict[int, deque[Event]] = {}
        self.events = 0

    def compare(self, py_events: list[Event], owners: list[Segment | None],
                c_events: list[Event]) -> Difference | None:
        for i in range(max(len(py_events), len(c_events))):
            p = py_events[i] if i < len(py_events) else None
            c = c_events[i] if i < len(c_events) else None
            if p != c:
                conn = conn_of(p) if p is not None else conn_of(c)
                seg = owners[i] if i < len(owners) else (owners[-1] if owners else None)
                return Difference(self.index + i, seg, p, c,
                                  list(self.recent.get(conn, ())) if conn is not None else [])
            conn = conn_of(p)
            if conn is not None:
                self.recent.setdefault(conn, deque(maxlen=CONTEXT)).append(p)  # type: ignore[arg-type]
                if isinstance(p, ConnectionEnded):
                    del self.recent[conn]
        self.index += len(py_events)
        self.events += len(py_events)
        return None

    def batch(self, batch: Batch, segments: Sequence[Segment] | None = None) -> Difference | None:
        segs = batch.segments() if segments is None else segments
        py_events: list[Event] = []
        owners: list[Segment | None] = []
        feed = self.py.feed
        for seg in segs:
            evs = feed(seg)
            py_events += evs
            owners += [seg] * len(evs)
        return self.compare(py_events, owners, self.c.feed_batch(batch))

    def finish(self, end_ns: int | None) -> Difference | None:
        py_events = self.py.finish(end_ns)
        return self.compare(py_events, [], self.c.finish(end_ns))


def lockstep(batches: Iterable[Batch], options: Options | None = None,
             end_ns: int | None = None, stats: dict[str, Any] | None = None,
             pipeline: bool = False) -> Difference | None:
    """Feed ``batches`` to both trackers (``pipeline``: both pipelines), then finish both
    (at ``end_ns``); the first difference, or None when every event is equal. ``stats``
    gets the counts."""
    run = _Lockstep(options, pipeline)
    segments = 0
    for batch in batches:
        segments += len(batch)
        diff = run.batch(batch)
        if diff is not None:
            return diff
    diff = run.finish(end_ns)
    if stats is not None:
        stats.update(segments=segments, events=run.events)
    return diff


def lockstep_segments(segments: Sequence[Segment], options: Options | None = None,
                      end_ns: int | None = None, chunk: int = 0,
                      pipeline: bool = False) -> Difference | None:
    """`lockstep` over ``segments`` (any reader's, or a generator's), in batches of
    ``chunk`` rows (0: one batch)."""
    if not segments:
        return lockstep([], options, end_ns, pipeline=pipeline)
    book = AddressBook()
    size = chunk or len(segments)
    batches = [Batch.from_segments(segments[i:i + size], book)
               for i in range(0, len(segments), size)]
    run = _Lockstep(options, pipeline)
    for i, batch in enumerate(batches):
        diff = run.batch(batch, segments[i * size:(i + 1) * size])
        if diff is not None:
            return diff
    return run.finish(end_ns)


def main(argv: list[str]) -> int:
    from tcplife.capture.fastread import read_batches  # noqa: PLC0415

    pipeline = "--pipeline" in argv
    bad = 0
    for path in [a for a in argv if a != "--pipeline"]:
        stats: dict[str, Any] = {}
        diff = lockstep(read_batches(path), stats=stats, pipeline=pipeline)
        if diff is None:
            print(f"{path}: equal ({stats['segments']} segments, {stats['events']} events)")
        else:
            bad += 1
            print(f"{path}: DIFFERS\n{diff}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
