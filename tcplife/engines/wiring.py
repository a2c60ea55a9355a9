"""How the layers are wired: the one place that builds a tracker as the engines run it, and
the one chain that follows it (tracker -> detectors -> tables).

Owns: `new_tracker`, the core's `Tracker` with the peers' replays (Zeek, Wireshark,
Suricata: `tcplife.peers.PeerObserver`) watching it; and `Pipeline`, which hands the
tracker's events to the anomaly detectors (`tcplife.detect.DetectorSet`) and the events
with the detectors' verdicts to a consumer (a `tcplife.output.collect.Collector`'s
``add``, a callback). Every engine (file, live, Dask) and the test helpers build their
tracker and their pipeline here, so that a tracker in a test is the tracker of a run.

The detectors learn the capture's end from the events alone: the tracker's `InputEnded`
(the first event of `Tracker.finish`), and the `ClockAdvanced` an engine feeds when time
passes with no packet to show it (the live mode's wall clock). Nobody sets it from outside.
Knows nothing of captures, tables or the terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tcplife.core.events import Anomaly, Event
from tcplife.core.options import Options
from tcplife.core.timers import Timers
from tcplife.core.tracker import Tracker
from tcplife.detect import DetectorSet
from tcplife.peers import PeerObserver


def new_tracker(options: Options | None = None, observer: PeerObserver | None = None,
                timers: Timers | None = None) -> Tracker:
    """A tracker watched by the peers' replays (``observer``: a `PeerObserver`, or one
    that extends it, as the Dask engine's does)."""
    return Tracker(options, observer if observer is not None else PeerObserver(), timers)


class Pipeline:
    """The detectors behind a tracker, and what takes their output.

    Call it with each list of events the tracker returns (`Tracker.feed`, `advance`,
    `drive`'s ``emit``, each of `finish_chunks`), in the order they came: it returns the
    events followed by the verdicts of the connections they ended, and hands the same list
    to ``emit``. After the end of input's events (`finish`, or calls ending with those of
    `Tracker.finish`), `end` runs the detectors' own end (verdicts across connections:
    TIME_WAIT accumulation). ``detectors``: a `DetectorSet` of one's own (default: the
    default detectors of ``options``)."""

    def __init__(self, options: Options, emit: Callable[[list[Event]], object] | None = None,
                 detectors: DetectorSet | None = None) -> None:
        self.detectors = detectors if detectors is not None else DetectorSet(options)
        self.emit = emit

    def __call__(self, events: list[Event]) -> list[Event]:
        found = self.detectors.feed(events)  # (settles the ends of input in ``events``)
        out: list[Event] = [*events, *found]
        if self.emit is not None:
            self.emit(out)
        return out

    def end(self) -> list[Anomaly]:
        """The detectors' own end, once the input's end was fed: their last verdicts."""
        found = self.detectors.finish()
        if self.emit is not None:
            self.emit(list(found))
        return found

    def finish(self, final: Iterable[list[Event]]) -> None:
        """The end of input: ``final`` (the tracker's `finish_chunks`, `InputEnded` first),
        then `end`."""
        for events in final:
            self(events)
        self.end()
