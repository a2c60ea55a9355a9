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

from itertools import islice
from typing import Any

import numpy as np

from tcplife.capture.columns import V6_BASE, AddressBook, Batch
from tcplife.core.events import ConnectionEnded, Event, Oddity, Retraction, Transition
from tcplife.core.options import Options
from tcplife.detect.cdetect import anomaly, options_values
from tcplife.engines.ctrack import ENDED, convert, option_values
from tcplife.native import loader
from tcplife.peers.creplay import to_summary

#: the pipeline's own event code (engine/track.h: TL_E_ANOMALY)
ANOMALY = 7


def runs_as_python(options: Options, engine: Any = None) -> bool:
    """Would the compiled pipeline give what `new_tracker(options)` gives here? Not when
    the Python detectors are not the default ones the engine ports (a plug-in or a test
    added or replaced one, or patched a method of one)."""
    from tcplife import detect

    module = engine if engine is not None else loader.engine()
    found = detect.DetectorSet(options).detectors
    if tuple(type(d).__name__ for d in found) != tuple(module.Detectors.detectors()):
        return False
    for d in found:
        cls = type(d)
        if not cls.__module__.startswith("tcplife.detect") \
                or getattr(detect, cls.__name__, cls) is not cls:
            return False
        for klass in cls.__mro__[:-1]:
            for name, fn in vars(klass).items():
                if callable(fn) and not name.startswith("__") and \
                        getattr(fn, "__module__", klass.__module__) != klass.__module__:
                    return False
    return True


class CPipeline:
    """The compiled pipeline, fed `Batch`es, giving `new_tracker`'s events. ``engine``:
    the compiled module (default: `tcplife.native.loader.engine()`)."""

    def __init__(self, options: Options | None = None, engine: Any = None) -> None:
        self.options = options or Options()
        module = engine if engine is not None else loader.engine()
        self.engine = module.Pipeline(module.Tracker(option_values(self.options)),
                                      options_values(self.options))
        #: the pipeline's own address keys: each read has its book (several captures
        #: merged: several books), whose IPv6 keys number its own addresses
        self.book = AddressBook()
        self._v6 = 0  #: IPv6 texts handed over so far
        #: per batch book (by id, the book kept alive): its IPv6 keys' keys in `book`, and
        #: whether they are the same (one read: no column is copied)
        self._maps: dict[int, tuple[AddressBook, list[int], list[bool]]] = {}
        self.shared = Shared()

    def _rekey(self, batch: Batch) -> Batch:
        """``batch`` with its addresses as keys of `book`; the new IPv6 texts handed to
        the engine."""
        book = batch.book
        entry = self._maps.get(id(book))
        if entry is None:
            entry = self._maps[id(book)] = (book, [], [True])
        _, table, same = entry
        if len(book.v6_keys) > len(table):
            for packed, key in islice(book.v6_keys.items(), len(table), None):
                if key != V6_BASE + len(table):
                    raise ValueError("an AddressBook whose IPv6 keys are not numbered in order")
                mine = self.book.key_v6(packed)
                same[0] = same[0] and mine == key
                table.append(mine)
        n = len(self.book.v6_keys)
        if n > self._v6:
            self.engine.names([self.book.names[V6_BASE + i] for i in range(self._v6, n)])
            self._v6 = n
        if same[0]:
            return batch
        keys = np.asarray(table, dtype=np.int64)

        def remap(col: np.ndarray) -> np.ndarray:
            v6 = col >= V6_BASE
            if not v6.any():
                return col
            col = col.copy()
            col[v6] = keys[col[v6] - V6_BASE]
            return col

        columns = {c: getattr(batch, c) for c in Batch.COLUMNS}
        columns["src"], columns["dst"] = remap(columns["src"]), remap(columns["dst"])
        return Batch(self.book, *(columns[c] for c in Batch.COLUMNS))

    def feed_batch(self, batch: Batch) -> list[Event]:
        """Feed every row of ``batch``; return the events (`Tracker.feed`'s per segment,
        each call's anomalies after its events)."""
        self.feed_columns(batch)
        return self.take()

    def feed_columns(self, batch: Batch) -> int:
        """Feed ``batch`` without taking the events: how many are pending."""
        batch = self._rekey(batch)
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
        return self.shared.convert(self.engine.take(), self.book.name)


class Shared:
    """The core's `ConnectionEnded` holds the very `Transition` and `Oddity` objects its
    connection's events were (a consumer may count on it: tests/test_drive.py): the
    open connections' ones, by tid and by connection, until their end."""

    def __init__(self) -> None:
        self.trans: dict[int, Transition] = {}
        self.notes: dict[int, list[Oddity]] = {}

    def convert(self, raw: list[tuple[Any, ...]], name: Any) -> list[Event]:
        """The pipeline's event tuples as the core's events (``name``: `AddressBook.name`)."""
        out: list[Event] = []
        for t in raw:
            kind = t[0]
            if kind == ANOMALY:
                out.append(anomaly(t[1]))
                continue
            ev = convert([t[:5]] if kind == ENDED else [t], name)[0]
            if isinstance(ev, Transition):
                self.trans[ev.tid] = ev
            elif isinstance(ev, Oddity):
                self.notes.setdefault(ev.conn_id, []).append(ev)
            elif isinstance(ev, Retraction):
                self.trans.pop(ev.tid, None)
            elif isinstance(ev, ConnectionEnded):
                ev = self._ended(ev, t[5])
            out.append(ev)
        return out

    def _ended(self, ev: ConnectionEnded, summary: Any) -> ConnectionEnded:
        trans = [self.trans.pop(t.tid, t) for t in ev.transitions]
        trans = [a if a == b else b for a, b in zip(trans, ev.transitions, strict=True)]
        notes = self.notes.pop(ev.record.conn_id, [])
        if notes != ev.notes:
            notes = ev.notes
        record = ev.record if summary is None else ev.record._replace(
            peers=to_summary(summary))
        return ev._replace(record=record, transitions=trans, notes=notes)
