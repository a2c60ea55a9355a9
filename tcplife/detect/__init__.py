"""Anomaly detectors: small plug-ins fed by the tracker's events.

Owns: `DetectorSet` (which feeds them: an observer of the tracker, `tcplife.core.observe`)
and `default_detectors` (which ones run), and names
every detector of the contract's anomaly kinds, each in the module that writes its sentence:

- `tcplife.detect.view`: what a detector sees (`ConnView`), the `Detector` protocol,
  `PerConnection`, and the helpers of the sentences (`clock`, `secs`);
- `tcplife.detect.handshake`: `Refused`, `ListenOverflow` (also ``syn_unanswered``),
  `HandshakeIncomplete`;
- `tcplife.detect.closing`: `Resets`, `LingeringCloseWait`, `FinWait2Timeout`,
  `MissingFinalAck`, `SimultaneousClose`, `SimultaneousOpen`;
- `tcplife.detect.notes`: `Notes` (the kinds the tracker notes directly);
- `tcplife.detect.time_wait`: `TimeWaitAccumulation`, `BoundedTimeWaitAccumulation`,
  `TimeWaitLimits`, over `tcplife.detect.spans` (`Spans`, the numpy sweeps).

A detector sees one finished connection at a time (`ConnView`: its record, its final
transitions with retractions applied, and the tracker's notes), like Zeek's
end-of-connection verdict, and may keep state across connections (TIME_WAIT accumulation).
Knows nothing of captures, pandas or the terminal; never calls back into the tracker.

The TIME_WAIT names are imported on first use (PEP 562), so ``import tcplife.detect``
does not load numpy until a TIME_WAIT detector is built (`default_detectors`) or named.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tcplife.core.events import (
    Anomaly,
    ClockAdvanced,
    ConnectionEnded,
    ConnectionRecord,
    Event,
    InputEnded,
    Oddity,
    Transition,
)
from tcplife.core.observe import Observer
from tcplife.core.options import NS, Options
from tcplife.detect.closing import (
    MIN_RTO_NS,
    FinWait2Timeout,
    LingeringCloseWait,
    MissingFinalAck,
    Resets,
    SimultaneousClose,
    SimultaneousOpen,
)
from tcplife.detect.handshake import HandshakeIncomplete, ListenOverflow, Refused
from tcplife.detect.notes import Notes
from tcplife.detect.view import (
    FOREVER,
    ConnView,
    Detector,
    PerConnection,
    clock,
    secs,
)

if TYPE_CHECKING:
    from tcplife.detect.spans import Service, Spans
    from tcplife.detect.time_wait import (
        BoundedTimeWaitAccumulation,
        TimeWaitAccumulation,
        TimeWaitLimits,
    )

#: the names whose modules import numpy: public name -> the module that defines it
_LAZY: dict[str, str] = {
    "Service": "tcplife.detect.spans", "Spans": "tcplife.detect.spans",
    "TimeWaitAccumulation": "tcplife.detect.time_wait",
    "BoundedTimeWaitAccumulation": "tcplife.detect.time_wait",
    "TimeWaitLimits": "tcplife.detect.time_wait",
}

__all__ = ["MIN_RTO_NS", "BoundedTimeWaitAccumulation", "ConnView", "Detector", "DetectorSet",
           "FinWait2Timeout", "HandshakeIncomplete", "LingeringCloseWait", "ListenOverflow",
           "MissingFinalAck", "Notes", "PerConnection", "Refused", "Resets", "Service",
           "SimultaneousClose", "SimultaneousOpen", "Spans", "TimeWaitAccumulation",
           "TimeWaitLimits", "clock", "default_detectors", "secs"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def default_detectors(options: Options) -> list[Detector]:
    from tcplife.detect.time_wait import BoundedTimeWaitAccumulation, TimeWaitLimits

    # A connection ends at the latest closed_linger after its last packet, and a TIME_WAIT
    # that began before that packet lasted at most time_wait: intervals that ended longer
    # ago than this cannot overlap one still to come (a minute more for clock jitter).
    horizon = options.closed_linger_ns + options.time_wait_ns + 60 * NS
    return [Refused(), ListenOverflow(options), HandshakeIncomplete(), Resets(),
            LingeringCloseWait(), FinWait2Timeout(), MissingFinalAck(), SimultaneousClose(),
            SimultaneousOpen(), Notes(),
            BoundedTimeWaitAccumulation(int(options.time_wait_threshold), horizon,
                                        TimeWaitLimits.of(options))]


class DetectorSet(Observer):
    """Feeds the detectors: when a connection ends, hands them a `ConnView` of it (its
    transitions and notes come with its `ConnectionEnded`), with the running capture end.

    It watches a tracker through the observer hook (`events`: the verdicts on the
    connections a call ended, appended to its events; `ended`: the verdicts across
    connections, last), or is handed events replayed (the Dask merge) the same way.

    The capture end is learnt from the events fed, never set from outside: the latest
    transition with a frame, or connection end, seen so far; a `ClockAdvanced` (time that
    passed with no packet to show it); and `InputEnded`, which also says the input is over
    (the events after it are the end's, `Tracker.finish`)."""

    def __init__(self, options: Options, detectors: list[Detector] | None = None) -> None:
        self.options = options
        self.detectors = detectors if detectors is not None else default_detectors(options)
        #: the running capture end (read it; the events fed move it)
        self.capture_end_ns = 0
        self.input_ended = False
        #: detectors that also follow the transitions as they happen (`on_transition`)
        self._watchers = [d.on_transition for d in self.detectors  # type: ignore[attr-defined]
                          if hasattr(d, "on_transition")]

    def events(self, events: list[Event]) -> list[Event]:
        """The verdicts on the connections ``events`` end. A `ConnectionEnded` of the end
        of input is settled at the capture's end: replaced, in ``events``, by the same end
        with its record settled (events are immutable; the list is the caller's)."""
        out: list[Event] = []
        for i, ev in enumerate(events):
            if isinstance(ev, Transition):
                if ev.frame is not None and ev.ts_ns > self.capture_end_ns:
                    self.capture_end_ns = ev.ts_ns
                for watch in self._watchers:
                    watch(ev)
            elif isinstance(ev, ConnectionEnded):
                rec = ev.record
                self.capture_end_ns = max(self.capture_end_ns, rec.last_ts_ns)
                if ev.at_end:
                    # Its states are those at the capture's end once the input has ended;
                    # an engine that ended it earlier than one process would have (a
                    # partition's own end, `tcplife.engines.distributed`) hands it over before
                    # then: one process ended it before the end, after its timeouts.
                    rec = rec.settled(ev.transitions,
                                      self.capture_end_ns if self.input_ended else FOREVER)
                    events[i] = ev._replace(record=rec)
                out += self.judge(rec, ev.transitions, ev.notes, self.capture_end_ns)
            elif isinstance(ev, (ClockAdvanced, InputEnded)):
                self.capture_end_ns = max(self.capture_end_ns, ev.ts_ns)
                if isinstance(ev, InputEnded):
                    self.input_ended = True
        return out

    def judge(self, record: ConnectionRecord, transitions: list[Transition],
              notes: list[Oddity], capture_end_ns: int, *,
              skip: tuple[type, ...] = ()) -> list[Anomaly]:
        """The detectors' verdicts on one connection (but those of the ``skip`` types)."""
        view = ConnView(record, transitions, notes, capture_end_ns, self.options)
        return [a for d in self.detectors if not isinstance(d, skip)
                for a in d.on_connection(view)]

    def ended(self) -> list[Event]:
        """The input is over: the detectors' own end (verdicts across connections)."""
        return [a for d in self.detectors for a in d.finish(self.capture_end_ns)]
