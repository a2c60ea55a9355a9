"""Live mode: the file mode's analysis driven by an interface, as it happens.

Owns: `live()` and `LiveSession`, the loop that feeds a live packet source to the same
`Tracker`, with its detectors watching (`tcplife.engines.wiring.new_tracker`), and table
schemas as `tcplife.analyze`; the wall clock between
packets (timers fire when their deadline passes, not when the next packet comes); early
notice of a CLOSE_WAIT that lingers; the run's end (what is open judged at the stop, nothing
dated after it); bounded memory (idle flows given up, a cap on tracked flows, a bounded
history of finished connections); and the DataFrames of what was seen so far. Knows
nothing of click or the terminal (that is `tcplife.cli.live`).

Time. The tracker's time comes from packet timestamps, as in file mode. When the source has
nothing to read, the clock is moved on to the wall clock less `CLOCK_LAG` (packets wait up
to a read timeout in the kernel before we see them, and one arriving with an earlier
timestamp than a timer already fired would be judged differently from the file mode).
Under load every read returns packets, and their own timestamps drive the timers exactly as
in file mode.

The end of a run is a moment. At ``duration``, `stop()` (Ctrl-C), the end of a source's
input or when the consumer leaves the loop, the run ends at the wall clock of that moment
(`Stopped`, ``LiveCounters.end_ns``): the timers due by then fire, and every connection
still open is judged at that instant, as the file mode judges one at its last frame. A
CLOSE_WAIT silent since its FIN is measured to the stop, so the `EarlyAnomaly` announced
during the run is confirmed by the final `Anomaly`. Nothing is dated after the stop: the
timeouts still pending then (a TIME_WAIT, an orphaned FIN_WAIT_2) are not fired into the
future as events; a record's ``*_eventual_state`` still says where each side would go.
While the run goes on, the detectors' "end of the capture" is the tracker's clock: a timer
that fired on the clock happened within the run. They learn it from the tracker's events:
the `ClockAdvanced` before what the clock moving on (or a flow given up as it stands)
produced, and `InputEnded` at the end.

Same answer as the file. The final tables (`LiveSession.result()` after the end) are those
that `tcplife.analyze` gives on the `write=` capture of the same run, when the run ends at
that capture's last frame (end of input), but for the transitions dated after it (the file
mode lists the pending timeouts at their deadlines; a live run does not): the same tracker
and detectors see the same segments and timers in the same order. A run stopped later than
its last frame judges what is open at the later instant (`Result.state_at` of the file
mode at the stop gives its states). Two live-only mechanisms break that equality only
when they act, and both are counted and reported: a flow silent for longer than ``idle``
is given up (ended as it stands), and past ``max_flows`` the least recently active flows
are dropped. Early notices (`EarlyAnomaly`) are live only: the detector's final verdict
comes when the connection ends.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tcplife.capture.stats import ReadStats
from tcplife.core.events import (
    Anomaly,
    ClockAdvanced,
    ConnectionEnded,
    ConnectionRecord,
    ConnectionStarted,
    Event,
    InputEnded,
    Oddity,
    Retraction,
    Transition,
)
from tcplife.core.options import NS, Options
from tcplife.core.segment import Segment
from tcplife.core.states import CERTAIN, CLIENT, SERVER, State
from tcplife.detect import ConnView, DetectorSet, LingeringCloseWait
from tcplife.engines.wiring import new_tracker

if TYPE_CHECKING:  # the modules below import numpy: a run imports them when it needs them
    import pandas as pd

    from tcplife.engines.analysis import Result

#: How far behind the wall clock the tracker's clock is moved when no packet is waiting.
CLOCK_LAG = 0.5
#: How often the session yields a `Tick` (the screen's refresh rate).
TICK = 0.25
#: Frames taken from the kernel per turn of the loop: under load a turn stays short, so
#: the screen refreshes, timers and Ctrl-C are seen, and --duration is kept.
READ_LIMIT = 4096
#: Batches at least this long go through the fast path (`tcplife.engines.drive`).
BATCH_FAST = 256


class PacketSource(Protocol):
    """What the session reads from: `tcplife.capture.live.LiveCapture`, or a test double.
    A source whose input can end may say so with a true ``exhausted`` attribute: the run
    then stops ("end of input") at that moment."""

    stats: ReadStats
    frames: int

    def read(self, wait: float = ..., limit: int = ...) -> list[Segment]: ...

    def update_stats(self) -> Any: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class EarlyAnomaly:
    """An anomaly noticed on the clock while its connection is still open (live only):
    the detectors' verdict (`Anomaly`) comes when the connection ends."""

    conn_id: int
    ts_ns: int
    side: str
    kind: str
    frame: int | None
    detail: str
    severity: str = "warning"  #: as the `Anomaly` that would say it
    confidence: str = CERTAIN


@dataclass(slots=True)
class LiveWarning:
    """Something the person watching must know: the flow cap was reached, drops, ..."""

    ts_ns: int
    kind: str  #: ``flow_cap``, ``drops``, ``given_up``
    detail: str


@dataclass(slots=True)
class Stopped:
    """The run's end, yielded last: what was still open was judged at ``ts_ns``, and no
    event is dated after it."""

    ts_ns: int
    reason: str  #: ``duration``, ``count``, ``interrupted``, ``end of input``, ...


@dataclass(slots=True)
class Tick:
    """Yielded a few times a second, events or not, so a screen can refresh."""

    now_ns: int


@dataclass
class LiveCounters:
    """What the session has seen so far (the summary)."""

    frames: int = 0
    segments: int = 0
    kernel_drops: int = 0
    interface_drops: int = 0
    received: int = 0
    connections: int = 0
    open: int = 0
    closed: int = 0
    given_up_idle: int = 0
    given_up_cap: int = 0
    history_dropped: int = 0
    started_ns: int = 0
    stopped_ns: int | None = None
    stop_reason: str = ""
    #: the instant the run ended, at which what was still open was judged
    end_ns: int | None = None
    close_kinds: dict[str, int] = field(default_factory=dict)
    anomalies: dict[str, int] = field(default_factory=dict)
    early: dict[str, int] = field(default_factory=dict)
    #: early notices that no final verdict confirmed (the tracker revised its reading)
    unconfirmed: dict[str, int] = field(default_factory=dict)
    #: sides still open when the run ended, per state
    open_at_end: dict[str, int] = field(default_factory=dict)
    #: the longest CLOSE_WAIT still open when the run ended (ns), if any
    oldest_close_wait_ns: int | None = None


LiveEvent = Event | EarlyAnomaly | LiveWarning | Tick | Stopped


class _History:
    """Finished connections kept for `LiveSession.result()`: at most ``keep`` of them
    (oldest dropped first), with their final transitions and anomalies; plus the
    transitions of the connections still open."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.finished: OrderedDict[int, tuple[ConnectionRecord, list[Transition],
                                              list[Anomaly]]] = OrderedDict()
        self.open: dict[int, dict[int, Transition]] = {}
        self.dropped = 0
        self.late_anomalies: list[Anomaly] = []

    def add(self, ev: Event) -> None:
        if isinstance(ev, Transition):
            self.open.setdefault(ev.conn_id, {})[ev.tid] = ev
        elif isinstance(ev, Retraction):
            self.open.get(ev.conn_id, {}).pop(ev.tid, None)
        elif isinstance(ev, ConnectionEnded):
            rec = ev.record
            trans = sorted(self.open.pop(rec.conn_id, {}).values(),
                           key=lambda t: (t.ts_ns, t.tid))
            if self.keep <= 0:
                self.dropped += 1
                return
            self.finished[rec.conn_id] = (rec, trans, [])
            while len(self.finished) > self.keep:
                self.finished.popitem(last=False)
                self.dropped += 1
        elif isinstance(ev, Anomaly):
            kept = self.finished.get(ev.conn_id)
            if kept is not None:
                kept[2].append(ev)
            elif ev.conn_id not in self.open:
                self.late_anomalies.append(ev)  # e.g. time_wait_accumulation at the end
                del self.late_anomalies[:-self.keep or None]


class LiveSession:
    """One live run: iterate it for events (`Transition`, `Retraction`, `Anomaly`,
    `ConnectionEnded`, `ConnectionStarted`, `EarlyAnomaly`, `LiveWarning`, `Tick`);
    `result()` gives the DataFrames of what was seen so far, `counters` the summary.

    The loop ends at ``duration`` seconds, after ``count`` frames, when `stop()` is called
    (from a signal handler, another thread or the loop's consumer), when the source's input
    ends, or when the consumer stops iterating. The end is the wall clock of that moment:
    the timers due by then fire, every connection still open is judged at that instant
    (its record's states are those at the stop, its eventual states those after the
    timeouts still pending), and a `Stopped` event closes the stream; no event is dated
    after it.
    """

    def __init__(self, source: PacketSource, options: Options | None = None, *,
                 duration: float | None = None, count: int | None = None,
                 max_flows: int = 100_000, history: int = 10_000, name: str = "live",
                 wall_ns: Callable[[], int] = time.time_ns,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.options = options or Options()
        self.duration = duration
        self.count = count
        self.max_flows = max_flows
        self.name = name
        self._wall_ns = wall_ns
        self._monotonic = monotonic
        #: the anomaly detectors, watching the tracker (their verdicts come with its events)
        self.detectors = DetectorSet(self.options)
        self.tracker = new_tracker(self.options, detectors=self.detectors)
        #: the early notice of a CLOSE_WAIT: the detector's sentence, while it lasts
        self._lingering = LingeringCloseWait(ongoing=True)
        self.history = _History(history)
        self.counters = LiveCounters(started_ns=wall_ns())
        self._stopping = False
        self._finished = False
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._close_wait: dict[tuple[int, str], tuple[int, int, int | None]] = {}
        self._close_wait_due: list[tuple[int, int, str, int]] = []  # (due, conn, side, tid)
        self._early_done: dict[int, set[tuple[str, str]]] = {}
        self._judged: set[int] = set()
        self._unconfirmed: dict[tuple[int, str, str], None] = {}  # early, no verdict yet
        self._end_ns: int | None = None  # set when the run ends
        self._beyond: set[int] = set()  # tids of transitions dated after the end
        self._cap_warned = False
        self._dropped_seen = 0

    # ------------------------------------------------------------------ control
    def stop(self, reason: str = "stopped") -> None:
        """End the run at the next turn of the loop (safe from a signal handler)."""
        if not self._stopping:
            self.counters.stop_reason = reason
        self._stopping = True

    def __iter__(self) -> Iterator[LiveEvent]:
        return self.events()

    def events(self) -> Iterator[LiveEvent]:
        try:
            yield from self._loop()
        finally:
            if not self._finished:
                for _ev in self._finish():
                    pass

    def run(self) -> Result:
        """Consume the whole run; return the final tables."""
        for _ in self:
            pass
        return self.result()

    def start(self, keep_events: int = 10_000) -> LiveSession:
        """Run in a background thread (for a notebook): ``result()`` may be called at any
        time, ``recent`` holds the last ``keep_events`` events, `stop()` then `join()`."""
        self.recent: deque[LiveEvent] = deque(maxlen=keep_events)

        def consume() -> None:
            try:
                for ev in self:
                    if not isinstance(ev, Tick):
                        self.recent.append(ev)
            except BaseException as exc:  # handed to join()
                self._error = exc

        self._thread = threading.Thread(target=consume, name="tcplife-live", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        """Wait for a `start()`ed run to end (after `stop()`, duration or count); raise
        what ended it if it failed."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self._error is not None:
            raise self._error

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> Iterator[LiveEvent]:
        start = self._monotonic()
        end = None if self.duration is None else start + self.duration
        next_tick = start + TICK
        next_housekeeping = start + 1.0
        source = self.source
        while not self._stopping:
            now = self._monotonic()
            if end is not None and now >= end:
                self.stop("duration")
                break
            wait = min(next_tick, end if end is not None else next_tick) - now
            limit = READ_LIMIT
            if self.count is not None:
                limit = self.count - source.frames
                if limit <= 0:
                    self.stop("count")
                    break
            segments = source.read(max(0.0, wait), limit)
            with self._lock:  # `result()` from another thread waits for this turn
                if segments:
                    yield from self._consume_segments(segments)
                elif getattr(source, "exhausted", False):
                    self.stop("end of input")
                elif not self._stopping:
                    # Nothing waiting: the wall clock may move the tracker's clock on.
                    target = self._wall_ns() - int(CLOCK_LAG * NS)
                    if self.tracker.now_ns is not None and target > self.tracker.now_ns:
                        yield from self._consume(self._advance(target))
                yield from self._early_notices()
                now = self._monotonic()
                if now >= next_housekeeping:
                    next_housekeeping = now + 1.0
                    yield from self._housekeeping()
            if now >= next_tick:
                next_tick = now + TICK
                yield Tick(self._wall_ns())
            if self.count is not None and source.frames >= self.count:
                self.stop("count")
        with self._lock:
            yield from self._finish()

    def _advance(self, now_ns: int) -> list[Event]:
        """Move the tracker's clock on to ``now_ns`` (the timers due by then fire). The
        capture seen so far reaches that instant: for the detectors (`ClockAdvanced`,
        first), what a timer did by then happened within the run (the file mode's end is
        its last frame)."""
        return self.tracker.advance(now_ns)

    def _consume_segments(self, segments: list[Segment]) -> Iterator[LiveEvent]:
        self.counters.segments += len(segments)
        if len(segments) >= BATCH_FAST:
            from tcplife.capture.columns import AddressBook, Batch
            from tcplife.engines.drive import drive

            out: list[Event] = []
            drive([Batch.from_segments(segments, AddressBook())], self.tracker, out.extend)
            yield from self._consume(out)
        else:
            feed = self.tracker.feed
            for seg in segments:
                events = feed(seg)
                if events:
                    yield from self._consume(events)
        if self.tracker.open_count() > self.max_flows:
            yield from self._enforce_cap()

    def _consume(self, events: list[Event]) -> Iterator[LiveEvent]:
        """The events out, the detectors' verdicts last (the tracker's observer adds them
        to the events of the call that ended each connection; at the end of input, those
        across connections too), whose kinds reach the rows of the connections they judge
        ending in the same call."""
        if not events:
            return
        found = [e for e in events if type(e) is Anomaly]
        if found:
            # the kinds on the record of the connection they judge, for its row
            events = [e for e in events if type(e) is not Anomaly]
            kinds: dict[int, tuple[str, ...]] = {}
            for a in found:
                kinds[a.conn_id] = (*kinds.get(a.conn_id, ()), a.kind)
            events = [e._replace(record=e.record._replace(
                          anomalies=e.record.anomalies + kinds[e.record.conn_id]))
                      if isinstance(e, ConnectionEnded) and e.record.conn_id in kinds
                      else e for e in events] + found
        counters = self.counters
        end, beyond = self._end_ns, self._beyond
        ended: list[int] = []
        for ev in events:
            if end is not None:  # the run has ended: nothing is dated after its end
                if isinstance(ev, Transition) and ev.ts_ns > end:
                    beyond.add(ev.tid)  # a pending timeout: the eventual states say it
                    continue
                if isinstance(ev, Retraction) and ev.tid in beyond:
                    continue
            self.history.add(ev)
            if isinstance(ev, Transition):
                key = (ev.conn_id, ev.side)
                if ev.to_state is State.CLOSE_WAIT:
                    self._close_wait[key] = (ev.tid, ev.ts_ns, ev.frame)
                    heapq.heappush(self._close_wait_due, (
                        ev.ts_ns + self.options.close_wait_linger_ns, ev.conn_id, ev.side,
                        ev.tid))
                else:
                    self._close_wait.pop(key, None)
            elif isinstance(ev, Retraction):
                key = (ev.conn_id, ev.side)
                held = self._close_wait.get(key)
                if held is not None and held[0] == ev.tid:
                    del self._close_wait[key]
            elif isinstance(ev, ConnectionStarted):
                counters.connections += 1
            elif isinstance(ev, ConnectionEnded):
                counters.closed += 1
                kind = ev.record.close_kind
                counters.close_kinds[kind] = counters.close_kinds.get(kind, 0) + 1
                if ev.at_end:
                    self._count_open_at_end(ev.record)
                for side in (CLIENT, SERVER):
                    self._close_wait.pop((ev.record.conn_id, side), None)
                self._early_done.pop(ev.record.conn_id, None)
                self._judged.discard(ev.record.conn_id)
                ended.append(ev.record.conn_id)
            elif isinstance(ev, Anomaly):
                counters.anomalies[ev.kind] = counters.anomalies.get(ev.kind, 0) + 1
                self._unconfirmed.pop((ev.conn_id, ev.side, ev.kind), None)
            elif isinstance(ev, (Oddity, ClockAdvanced, InputEnded)):
                continue  # for the detectors, not for the person watching
            yield ev
        if ended and self._unconfirmed:  # their verdicts came with them: what is left,
            gone = set(ended)             # the final verdict did not confirm
            for key in [k for k in self._unconfirmed if k[0] in gone]:
                del self._unconfirmed[key]
                counters.unconfirmed[key[2]] = counters.unconfirmed.get(key[2], 0) + 1
        yield from self._judge_closed(events)

    def _count_open_at_end(self, rec: ConnectionRecord) -> None:
        """The summary's "open when it stopped": each side not closed at the end."""
        counters = self.counters
        for side in (CLIENT, SERVER):
            state = getattr(rec, f"{side}_state")
            if state in (State.CLOSED, State.LISTEN):
                continue
            counters.open_at_end[state.value] = counters.open_at_end.get(state.value, 0) + 1
            held = self._close_wait.get((rec.conn_id, side))
            if state is State.CLOSE_WAIT and held is not None and self._end_ns is not None:
                age = self._end_ns - held[1]
                if counters.oldest_close_wait_ns is None or age > counters.oldest_close_wait_ns:
                    counters.oldest_close_wait_ns = age

    def _judge_closed(self, events: list[Event]) -> Iterator[LiveEvent]:
        """A connection whose sides are both done (CLOSED, TIME_WAIT) is judged at once by
        the per-connection detectors, as it stands: the file mode waits ``closed_linger``
        for late packets before its verdict, which the live screen should not."""
        done = (State.CLOSED, State.TIME_WAIT, State.LISTEN)
        judged = self._judged
        conn_ids = {e.conn_id for e in events
                    if isinstance(e, Transition) and e.to_state in done
                    and e.conn_id not in judged}
        for conn_id in sorted(conn_ids):
            recs = self.tracker.snapshot(conn_id)
            if not recs or recs[0].client_state not in done or recs[0].server_state not in done:
                continue
            judged.add(conn_id)  # once: what comes later is for the final verdict
            trans, notes = self.tracker.judged_by(conn_id)
            # TimeWaitAccumulation judges all connections together, at the end
            from tcplife.detect.time_wait import TimeWaitAccumulation

            detectors = self.detectors
            for a in detectors.judge(recs[0], trans, notes,
                                     max(detectors.capture_end_ns, recs[0].last_ts_ns),
                                     skip=(TimeWaitAccumulation,)):
                yield from self._early(EarlyAnomaly(a.conn_id, a.ts_ns, a.side, a.kind,
                                                    a.frame, a.detail, a.severity,
                                                    a.confidence))

    def _early(self, ev: EarlyAnomaly) -> Iterator[LiveEvent]:
        done = self._early_done.setdefault(ev.conn_id, set())
        if (ev.side, ev.kind) not in done:
            done.add((ev.side, ev.kind))
            self.counters.early[ev.kind] = self.counters.early.get(ev.kind, 0) + 1
            self._unconfirmed[(ev.conn_id, ev.side, ev.kind)] = None
            yield ev

    def _early_notices(self) -> Iterator[LiveEvent]:
        """A side in CLOSE_WAIT for ``close_wait_linger`` by the tracker's clock, that was
        seen acknowledging the FIN (as the detector requires): noticed now."""
        now = self.tracker.now_ns
        due = self._close_wait_due
        if now is None:
            return
        while due and due[0][0] <= now:
            _, conn_id, side, tid = heapq.heappop(due)
            held = self._close_wait.get((conn_id, side))
            if held is None or held[0] != tid:
                continue  # it left CLOSE_WAIT, or that transition was withdrawn
            recs = self.tracker.snapshot(conn_id)
            if not recs:
                continue
            last = getattr(recs[0], f"{side}_last_ts_ns")
            if last is None or last < held[1]:  # its ACK of the FIN not seen yet: look again
                heapq.heappush(due, (now + NS, conn_id, side, tid))
                continue
            view = ConnView(recs[0], *self.tracker.judged_by(conn_id), now, self.options)
            for a in self._lingering.on_connection(view):
                if a.side == side and a.ts_ns == held[1]:  # the detector's sentence, now
                    yield from self._early(EarlyAnomaly(conn_id, now, side, a.kind, a.frame,
                                                        a.detail, a.severity, a.confidence))

    def _housekeeping(self) -> Iterator[LiveEvent]:
        """Once a second: give up idle flows, refresh the drop counts."""
        now = self.tracker.now_ns
        if now is not None:
            before = now - self.options.idle_ns
            # judged as they stand now: silent until this instant of the run
            events = self.tracker.give_up_idle(before)  # (`ClockAdvanced` to now, first)
            self.counters.given_up_idle += sum(isinstance(e, ConnectionEnded) for e in events)
            yield from self._consume(events)
        yield from self._refresh_drops()

    def _refresh_drops(self) -> Iterator[LiveEvent]:
        st = self.source.update_stats()
        counters = self.counters
        counters.frames = self.source.frames
        counters.open = self.tracker.open_count()
        counters.history_dropped = self.history.dropped
        if st is None:
            return
        counters.kernel_drops = int(getattr(st, "dropped", 0))
        counters.interface_drops = int(getattr(st, "if_dropped", 0))
        counters.received = int(getattr(st, "received", 0))
        total = counters.kernel_drops + counters.interface_drops
        if total > self._dropped_seen:
            self._dropped_seen = total
            yield LiveWarning(self._wall_ns(), "drops",
                              f"{total} packets dropped so far by the kernel or interface "
                              "(the analysis could not keep up, or the buffer is too small): "
                              "states of the affected connections may be wrong")

    def _enforce_cap(self) -> Iterator[LiveEvent]:
        excess = self.tracker.open_count() - self.max_flows
        n = excess + max(1, self.max_flows // 10)  # make room in steps, not per packet
        events = self.tracker.give_up_oldest(n)  # judged as they stand now
        self.counters.given_up_cap += sum(isinstance(e, ConnectionEnded) for e in events)
        if not self._cap_warned:
            self._cap_warned = True
            yield LiveWarning(self._wall_ns(), "flow_cap",
                              f"more than {self.max_flows} flows tracked at once (max_flows): "
                              "the least recently active ones are given up and reported as "
                              "they stood; raise the cap or narrow the capture filter")
        yield from self._consume(events)

    def _finish(self) -> Iterator[LiveEvent]:
        """The run's end: the wall clock of this moment (or the last frame, if later) is
        the end at which every connection still open is judged."""
        if self._finished:
            return
        self._finished = True
        self.counters.stop_reason = self.counters.stop_reason or "stopped"
        try:
            self.source.flush()
        finally:
            try:
                end = self._wall_ns()
                for ts in (self.source.stats.last_ts_ns, self.tracker.now_ns):
                    if ts is not None and ts > end:
                        end = ts
                self.counters.end_ns = end
                yield from self._consume(self._advance(end))  # timers due by the end
                self._end_ns = end  # from here on, nothing dated after it is emitted
                yield from self._consume(self.tracker.finish(end_ns=end))
                for key in self._unconfirmed:
                    self.counters.unconfirmed[key[2]] = \
                        self.counters.unconfirmed.get(key[2], 0) + 1
                self._unconfirmed.clear()
                yield Stopped(end, self.counters.stop_reason)
            finally:
                self.source.close()
                self.counters.stopped_ns = self._wall_ns()
                for _ in self._refresh_drops():
                    pass

    # ------------------------------------------------------------------ tables
    def result(self) -> Result:
        """The tables of what was seen so far (the same schemas as `tcplife.analyze`):
        the finished connections kept in the history (the newest ``history`` of them),
        and, while the run goes on, the open connections as they stand (their states now,
        close_kind ``open``)."""
        with self._lock:
            return self._result()

    def _result(self) -> Result:
        from tcplife.engines.analysis import Result
        from tcplife.output.frames import (
            Collector,
            anomalies_frame,
            connections_frame,
            transitions_frame,
        )

        collector = Collector()
        for rec, trans, anomalies in self.history.finished.values():
            collector.add([*trans, ConnectionEnded(rec), *anomalies])
        if not self._finished:
            for rec in self.tracker.snapshot():
                collector.add([*sorted(self.history.open.get(rec.conn_id, {}).values(),
                                       key=lambda t: (t.ts_ns, t.tid)), ConnectionEnded(rec)])
        collector.add(self.history.late_anomalies)
        return Result(connections=connections_frame(collector),
                      transitions=transitions_frame(collector),
                      anomalies=anomalies_frame(collector),
                      stats=self.source.stats, options=self.options, sources=[self.name])

    def open_connections(self) -> pd.DataFrame:
        """The connections still tracked, as they stand (for a screen)."""
        from tcplife.output.frames import Collector, connections_frame

        collector = Collector()
        with self._lock:
            collector.add([ConnectionEnded(r) for r in self.tracker.snapshot()])
        return connections_frame(collector)


def live(iface: str = "any", bpf: str | None = None, *, duration: float | None = None,
         count: int | None = None, write: str | os.PathLike[str] | None = None,
         snaplen: int | None = None, buffer_mb: int | None = None, promisc: bool = False,
         max_flows: int = 100_000, history: int = 10_000, options: Options | None = None,
         user: str | None = None, user_chosen: bool = True,
         **timeouts: float) -> LiveSession:
    """Capture on ``iface`` (``"any"``, ``"lo"``, ``"eth0"``...) with an optional BPF
    filter in tcpdump syntax, and analyse as it happens. Returns a `LiveSession`: iterate
    it for events, call ``.result()`` for the DataFrames so far, ``.stop()`` to end.
    ``write`` keeps every captured frame in a pcap file that `tcplife.analyze` reads back to
    the same tables. Timeouts as for `analyze` (``idle`` is when a silent flow is given up).
    ``user``: once the interface is open, the process gives up root and runs as this user
    (or, started with capabilities instead of root, gives them up): see
    `tcplife.capture.privileges`. None (the default here; the command line's is "nobody")
    keeps the process as it is: a program that embeds tcplife decides for itself.
    ``user_chosen`` False: ``user`` is a default, and the run stays root (giving up its
    capabilities) where that user could not read Python's installation.

    Raises `tcplife.CaptureError` with a one-line reason when the interface cannot be
    opened (no such interface, no permission: root or CAP_NET_RAW is needed, bad filter).
    """
    from tcplife.capture.live import DEFAULT_BUFFER_MB, DEFAULT_SNAPLEN, LiveCapture

    if options is None:
        options = Options(**timeouts)
    elif timeouts:
        raise TypeError("give either options= or timeout keywords, not both")
    source = LiveCapture(iface, bpf, snaplen=snaplen or DEFAULT_SNAPLEN,
                         buffer_mb=buffer_mb or DEFAULT_BUFFER_MB, promisc=promisc,
                         write=write, user=user, user_chosen=user_chosen)
    return LiveSession(source, options, duration=duration, count=count, max_flows=max_flows,
                       history=history, name=f"live:{iface}")
