"""The compiled pipeline (`tcplife._engine.Pipeline`, engine/pipeline*.c) seen from Python:
the compiled tracker watched by the compiled peers' replays and anomaly detectors, the
twin of `tcplife.engines.wiring.new_tracker` (`Tracker(options, Observers(PeerObserver(),
DetectorSet(options)))`).

Owns: `CPipeline`, which feeds `Batch`es to the engine's pipeline (handing it the texts of
the batch's new IPv6 addresses first: the detectors compare and print addresses) and turns
the events it returns into the core's events: the tracker's as `tcplife.engines.ctrack`
converts them, each `ConnectionEnded`'s record with its `PeerSummary`
(`tcplife.peers.creplay.to_summary`), each `Anomaly` as `tcplife.detect.cdetect` converts
it. So its events compare with ``==`` against those of ``new_tracker(options)``, one
Python object per event and none per segment. What the engine cannot follow it refuses
with an exception (``refused`` says why), so that a caller can fall back to Python.
"""

from __future__ import annotations

from typing import Any

from tcplife.capture.columns import V6_BASE, AddressBook, Batch
from tcplife.core.events import ConnectionEnded, Event
from tcplife.core.options import Options
from tcplife.detect.cdetect import anomaly, options_values
from tcplife.engines.ctrack import ENDED, convert, option_values
from tcplife.native import loader
from tcplife.peers.creplay import to_summary

#: the pipeline's own event code (engine/track.h: TL_E_ANOMALY)
ANOMALY = 7


class CPipeline:
    """The compiled pipeline, fed `Batch`es, giving `new_tracker`'s events. ``engine``:
    the compiled module (default: `tcplife.native.loader.engine()`)."""

    def __init__(self, options: Options | None = None, engine: Any = None) -> None:
        self.options = options or Options()
        module = engine if engine is not None else loader.engine()
        self.engine = module.Pipeline(module.Tracker(option_values(self.options)),
                                      options_values(self.options))
        self.book: AddressBook | None = None
        self._v6 = 0  #: IPv6 texts handed over so far

    def _names(self, book: AddressBook) -> None:
        if self.book is None:
            self.book = book
        elif book is not self.book:
            raise ValueError("every batch of one pipeline must share one AddressBook")
        n = len(book.v6_keys)
        if n > self._v6:
            self.engine.names([book.names[V6_BASE + i] for i in range(self._v6, n)])
            self._v6 = n

    def feed_batch(self, batch: Batch) -> list[Event]:
        """Feed every row of ``batch``; return the events (`Tracker.feed`'s per segment,
        each call's anomalies after its events)."""
        self.feed_columns(batch)
        return self.take()

    def feed_columns(self, batch: Batch) -> int:
        """Feed ``batch`` without taking the events: how many are pending."""
        self._names(batch.book)
        return int(self.engine.feed(*(getattr(batch, c) for c in Batch.COLUMNS)))

    def advance(self, now_ns: int) -> list[Event]:
        self.engine.advance(now_ns)
        return self.take()

    def finish(self, end_ns: int | None = None) -> list[Event]:
        """`Tracker.finish`'s events with the detectors' verdicts (`InputEnded` first, the
        verdicts across connections last)."""
        self.engine.finish(end_ns)
        return self.take()

    @property
    def refused(self) -> str | None:
        """None, or why the engine's pipeline stopped (fall back to Python)."""
        return self.engine.refused  # type: ignore[no-any-return]

    def take(self) -> list[Event]:
        """The pending events as the core's types."""
        book = self.book if self.book is not None else AddressBook()
        return convert_events(self.engine.take(), book.name)


def convert_events(raw: list[tuple[Any, ...]], name: Any) -> list[Event]:
    """The pipeline's event tuples as the core's events (``name``: `AddressBook.name`)."""
    out: list[Event] = []
    run: list[tuple[Any, ...]] = []  # tracker events in a row: converted together
    for t in raw:
        kind = t[0]
        if kind == ANOMALY:
            if run:
                out += convert(run, name)
                run = []
            out.append(anomaly(t[1]))
        elif kind == ENDED:
            if run:
                out += convert(run, name)
                run = []
            ended: ConnectionEnded = convert([t[:5]], name)[0]  # type: ignore[assignment]
            summary = t[5]
            if summary is not None:
                ended = ended._replace(record=ended.record._replace(peers=to_summary(summary)))
            out.append(ended)
        else:
            run.append(t)
    if run:
        out += convert(run, name)
    return out
