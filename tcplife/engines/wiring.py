"""How the layers are wired: the one place that builds a tracker as the engines run it.

Owns: `new_tracker`, the core's `Tracker` with the peers' replays (Zeek, Wireshark,
Suricata: `tcplife.peers.PeerObserver`) watching it. Every engine (file, live, Dask) and the
test helpers build their tracker here, so that a tracker in a test is the tracker of a run.
"""

from __future__ import annotations

from tcplife.core.options import Options
from tcplife.core.timers import Timers
from tcplife.core.tracker import Tracker
from tcplife.peers import PeerObserver


def new_tracker(options: Options | None = None, observer: PeerObserver | None = None,
                timers: Timers | None = None) -> Tracker:
    """A tracker watched by the peers' replays (``observer``: a `PeerObserver`, or one
    that extends it, as the Dask engine's does)."""
    return Tracker(options, observer if observer is not None else PeerObserver(), timers)
