"""The one public hook on the tracker: an `Observer` watches what it does, as it does it.

Owns: the `Observer` base class (every method a no-op, override what you need) and the
`Watcher` protocol (what an observer keeps per connection instance). The tracker calls an
observer in a fixed order, so that what an observer sees does not depend on how the
tracker is written:

- `segment` for every segment, before the tracker looks at it (Wireshark's stream
  numbering sees every segment, whichever instance it goes to);
- `opened` when a segment starts a connection instance: its return value (a `Watcher`, or
  None) is fed that instance's segments (`Watcher.feed`) and summarised into its record
  (`Watcher.summary` -> `ConnectionRecord.peers`);
- `timer_armed` when a timer is armed, `timer_firing` just before one fires and
  `timer_fired` with the events its firing produced (an engine that must date or key the
  events of each timer, such as the Dask engine, needs no more).

The peers' replays (`tcplife.peers.PeerObserver`) and the Dask engine's keying are
observers. Anomaly detectors read the events instead (`tcplife.engines.wiring`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tcplife.core.events import Event
    from tcplife.core.segment import Segment
    from tcplife.core.timers import Timer


class Watcher(Protocol):
    """What an observer keeps about one connection instance."""

    def feed(self, seg: Segment, from_client: bool) -> None: ...

    def summary(self) -> Any: ...


class Observer:
    """Watches a tracker. Every method does nothing: override the ones you need."""

    def segment(self, seg: Segment) -> None:
        """Every segment fed to the tracker, first."""

    def opened(self, conn_id: int, seg: Segment, sender_is_client: bool) -> Watcher | None:
        """``seg`` starts connection instance ``conn_id``; return what watches it."""
        return None

    def timer_armed(self, timer: Timer) -> None:
        """A timer was armed (the segment being handled, or the timer firing, armed it)."""

    def timer_firing(self, timer: Timer) -> None:
        """``timer`` is about to fire (it may turn out stale and do nothing)."""

    def timer_fired(self, timer: Timer, events: list[Event]) -> None:
        """``timer`` fired; ``events`` are what it produced (often none)."""


def watches_timers(observer: Observer) -> bool:
    """Does ``observer`` override a timer hook? (the tracker calls none otherwise)"""
    cls = type(observer)
    return any(getattr(cls, name) is not getattr(Observer, name)
               for name in ("timer_armed", "timer_firing", "timer_fired"))
