"""The one public hook on the tracker: an `Observer` watches what it does, as it does it.

Owns: the `Observer` base class (every method a no-op, override what you need), `Observers`
(several observers as one), the `Watcher` protocol (what an observer keeps per connection
instance) and `overrides` (which hooks an observer really uses: the tracker calls no other).
The tracker calls an observer in a fixed order, so that what an observer sees does not
depend on how the tracker is written:

- `segment` for every segment, before the tracker looks at it (Wireshark's stream
  numbering sees every segment, whichever instance it goes to);
- `opened` when a segment starts a connection instance: its return value (a `Watcher`, or
  None) is fed that instance's segments (`Watcher.feed`) and summarised into its record
  (`Watcher.summary` -> `ConnectionRecord.peers`);
- `timer_armed` when a timer is armed, `timer_firing` just before one fires and
  `timer_fired` with the events its firing produced (an engine that must date or key the
  events of each timer, such as the Dask engine, needs no more);
- `events` with the events of each call of the tracker that produced any (`feed`,
  `advance`, `give_up_*`, each list of `finish_chunks`), once they are all made: what it
  returns is appended to that call's events. It may replace an item of the list by an
  updated copy (events are immutable; the list is the call's);
- `ended` once the input's end was handled (after `finish`'s last events went to
  `events`): what it returns ends `finish`'s events.

The peers' replays (`tcplife.peers.PeerObserver`) and the Dask engine's keying watch the
segments and timers; the anomaly detectors (`tcplife.detect.DetectorSet`) watch the events
and add their verdicts. `tcplife.engines.wiring` puts them together.
"""

from __future__ import annotations

from collections.abc import Callable
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

    def events(self, events: list[Event]) -> list[Event]:
        """The events of one call of the tracker (never empty); returns what to add."""
        return []

    def ended(self) -> list[Event]:
        """The input's end was handled; returns what to add at the very end."""
        return []


#: the hooks, in the order the docstring gives them
HOOKS = ("segment", "opened", "timer_armed", "timer_firing", "timer_fired", "events", "ended")


def overrides(observer: Observer | None, hook: str) -> bool:
    """Does ``observer`` do something on ``hook``? (the tracker calls no hook that does
    nothing: an observer of segments costs no call per event, and the other way round)"""
    if observer is None:
        return False
    method = getattr(observer, hook)
    return getattr(method, "__func__", method) is not getattr(Observer, hook)


class Observers(Observer):
    """Several observers as one, each hook called on them in the order given. At most one
    may watch instances (`opened`): its `Watcher` summarises a record's ``peers``."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers
        for hook in HOOKS:
            using = [getattr(o, hook) for o in observers if overrides(o, hook)]
            if len(using) == 1:  # one call, not a loop (per segment or per event)
                setattr(self, hook, using[0])
            elif len(using) > 1:
                if hook == "opened":
                    raise ValueError("only one observer may watch connection instances "
                                     "(`opened`): its summary is the record's peers")
                setattr(self, hook, _all(using, hook))
            # none: the class's no-op, which `overrides` sees as nothing to call


def _all(calls: list[Callable[..., Any]], hook: str) -> Callable[..., Any]:
    if hook == "events":
        def added(events: list[Event]) -> list[Event]:
            # each sees the call's events with what the ones before it added (and replaced)
            n = len(events)
            for call in calls:
                events += call(events)
            more = events[n:]
            del events[n:]
            return more
        return added
    if hook == "ended":
        def last() -> list[Event]:
            return [ev for call in calls for ev in call()]
        return last

    def each(*args: Any) -> None:
        for call in calls:
            call(*args)
    return each
