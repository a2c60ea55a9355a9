"""How the layers are wired: the one place that builds a tracker as the engines run it
(tracker -> detectors -> tables).

Owns: `new_tracker`, the core's `Tracker` watched through its one observer hook
(`tcplife.core.observe`) by the peers' replays (Zeek, Wireshark, Suricata:
`tcplife.peers.PeerObserver`) and the anomaly detectors (`tcplife.detect.DetectorSet`),
whose verdicts come with the events of the call that ended each connection and, last,
those across connections at the end of `Tracker.finish`; and `run`, the whole loop as an
embedder writes it (segments in, every list of events to a consumer such as a
`tcplife.output.collect.Collector`'s ``add``). Every engine (file, live, Dask) and the test
helpers build their tracker here, so that a tracker in a test is the tracker of a run.

The detectors learn the capture's end from the events alone: the tracker's `InputEnded`
(the first event of `Tracker.finish`), and the `ClockAdvanced` of `Tracker.advance` (the
live mode's wall clock). Nobody sets it from outside.
Knows nothing of captures, tables or the terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tcplife.core.events import Event
from tcplife.core.observe import Observer, Observers
from tcplife.core.options import Options
from tcplife.core.segment import Segment
from tcplife.core.timers import Timers
from tcplife.core.tracker import Tracker
from tcplife.detect import DetectorSet
from tcplife.peers import PeerObserver


def new_tracker(options: Options | None = None, observer: PeerObserver | None = None,
                timers: Timers | None = None, *, detectors: DetectorSet | None = None,
                judge: bool = True) -> Tracker:
    """A tracker watched by the peers' replays (``observer``: a `PeerObserver`, or one
    that extends it, as the Dask engine's does) and, with ``judge``, by the anomaly
    detectors (``detectors``: a `DetectorSet` of one's own; default: the default
    detectors of ``options``). Without ``judge`` its events carry no verdict (the Dask
    engine's partitions: the merge judges)."""
    options = options or Options()
    peers = observer if observer is not None else PeerObserver()
    watching: Observer = peers
    if judge:
        watching = Observers(peers, detectors if detectors is not None
                             else DetectorSet(options))
    return Tracker(options, watching, timers)


def run(tracker: Tracker, segments: Iterable[Segment], emit: Callable[[list[Event]], object],
        end_ns: int | None = None) -> None:
    """Feed ``segments`` to ``tracker`` and finish it at ``end_ns`` (default: the latest
    segment's time); ``emit`` gets each list of events that is not empty."""
    feed = tracker.feed
    for seg in segments:
        events = feed(seg)
        if events:
            emit(events)
    for events in tracker.finish_chunks(end_ns=end_ns):
        emit(events)
