"""`TimeWaitAccumulation` (``time_wait_accumulation``): TIME_WAIT sockets of one host piling
up towards a limit (`TimeWaitLimits`), judged across connections at the end by peak and by
projected rate; and `BoundedTimeWaitAccumulation`, the same rule with bounded memory over
long captures. The intervals and their sweeps are `tcplife.detect.spans`'.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from tcplife.core.events import Anomaly
from tcplife.core.options import NS, Options
from tcplife.core.states import (
    CERTAIN,
    CLIENT,
    DEFAULT_SEVERITY,
    ERROR,
    LIKELY,
    SERVER,
    TIME_WAIT,
    WARNING,
)
from tcplife.detect.spans import (
    Service,
    SpanKey,
    Spans,
    Window,
    busier,
    busiest,
    sweep,
    unkey,
)
from tcplife.detect.view import FOREVER, ConnView, clock, secs


@dataclass(frozen=True)
class TimeWaitLimits:
    """What a host's TIME_WAIT sockets are judged against (from `Options`): how long one
    lasts, the clients' ephemeral port range, tcp_max_tw_buckets, and the share of the
    limit that makes an accumulation."""

    time_wait_ns: int
    port_low: int
    port_high: int
    max_tw_buckets: int
    share: float

    @classmethod
    def of(cls, options: Options) -> TimeWaitLimits:
        return cls(options.time_wait_ns, int(options.port_range_low),
                   int(options.port_range_high), int(options.max_tw_buckets),
                   float(options.time_wait_share))

    @property
    def ports(self) -> int:
        return self.port_high - self.port_low + 1


@dataclass(frozen=True)
class _Pile:
    """One holder's TIME_WAIT figures (`TimeWaitAccumulation`): a host as the client
    towards ``service``, or as the server (``service`` None)."""

    host: str
    service: Service | None
    limit: int
    peak: int
    peak_at: SpanKey | None  #: the interval whose start reached the peak
    starts: int  #: TIME_WAIT starts in the rate's window
    window_at: SpanKey | None  #: the window's first interval
    window_ns: int  #: the rate's window
    whole: bool  #: the window is the capture's span (shorter than time_wait)
    observed_ns: int  #: the capture's span

    @property
    def rate(self) -> float:
        """New TIME_WAIT sockets per second."""
        return self.starts * NS / self.window_ns if self.window_ns > 0 else 0.0

    def projection(self, time_wait_ns: int) -> float:
        """The count the rate holds at once in a steady state: rate x time_wait."""
        return self.starts * time_wait_ns / self.window_ns if self.window_ns > 0 else 0.0


def _count(n: float) -> str:
    return f"{round(n):,}"


@dataclass
class TimeWaitAccumulation:
    """Sockets in TIME_WAIT piling up towards a limit of the host that holds them.

    The side that closes first holds its 4-tuple in TIME_WAIT for ``time_wait`` (60 s on
    Linux). Who holds them decides the limit (`TimeWaitLimits`, from `Options`):

    - a client: per server address and port (the service), the ephemeral port range
      (``port_range_high - port_range_low + 1``, 28,232 by Linux's default 32768-60999):
      a 4-tuple must be unique, so one client address holds at most that many sockets
      towards one service, TIME_WAIT ones included, and then connect() fails with
      EADDRNOTAVAIL;
    - a server: ``max_tw_buckets`` (net.ipv4.tcp_max_tw_buckets, 262,144) for all its
      TIME_WAIT sockets as a server, from every client together; past it the kernel closes
      sockets at once without TIME_WAIT (TcpExtTCPTimeWaitOverflow).

    Per holder (one client address towards one service; one server address), two
    figures:

    - the peak: the most of its sockets in TIME_WAIT at once (a sweep over the
      intervals, measured: confidence ``certain``);
    - the projection: the rate of new TIME_WAIT sockets times ``time_wait``, the count that
      rate holds at once in a steady state (confidence ``likely``). The rate is taken over
      the busiest window of ``time_wait`` (the window holding the most TIME_WAIT starts;
      each window begins at a start) when the capture lasts at least ``time_wait`` (from
      the first packet of the first connection to the capture's end), since a steady rate
      holds exactly its last ``time_wait`` of starts at once; the projection is then the
      count in that window, and it exceeds the peak only by the TIME_WAITs cut short (a
      reusing SYN, an RST). A shorter capture is one window, its whole span (at least
      1 s: a per-second rate needs a second of evidence, so that a few connections in a
      few milliseconds project nothing), and the projection extrapolates it to
      ``time_wait``, which the capture cannot show.

    A holder is reported (one row: per (client, service), per server) when its peak or
    its projection passes ``time_wait_share`` of its limit; ``time_wait_threshold`` stays a
    plain count per host that also triggers it: when the most TIME_WAIT sockets of one
    host at once (all holders together) reach it, the holder of the interval that reached
    that peak is reported. Severity ``error`` when the peak or the projection reaches the
    limit itself, else ``warning``; confidence ``certain`` when a measured count (the peak
    past the share, the host's count over the threshold) triggered the row, ``likely``
    when only the projection did. The row's connection and frame: the interval that
    reached the holder's peak when the peak triggered it, else the one that reached the
    host's count, else the first of the rate's window; its frames are those three.

    Without ``limits``, only the count per host is judged (one row per host).
    """

    threshold: int
    limits: TimeWaitLimits | None = None
    intervals: dict[str, Spans] = field(default_factory=lambda: defaultdict(Spans))
    #: the first packet of the earliest connection seen: where the capture's span begins
    since_ns: int | None = None

    def plain(self) -> TimeWaitAccumulation:
        """A new detector judging by the same rule, keeping every interval."""
        return TimeWaitAccumulation(self.threshold, self.limits)

    def on_connection(self, v: ConnView) -> Iterable[Anomaly]:
        r = v.record
        if self.since_ns is None or r.first_ts_ns < self.since_ns:
            self.since_ns = r.first_ts_ns
        for side in (CLIENT, SERVER):
            trans = v.side_transitions(side)
            for i, t in enumerate(trans):
                if t.to_state == TIME_WAIT:
                    end = trans[i + 1].ts_ns if i + 1 < len(trans) else FOREVER
                    service = (r.server_addr, r.server_port) if side == CLIENT else None
                    self.intervals[getattr(r, f"{side}_addr")].append(
                        (t.ts_ns, end, r.conn_id, side, t.frame), service)
        return ()

    def finish(self, capture_end_ns: int) -> Iterable[Anomaly]:
        for host, spans in sorted(self.intervals.items()):
            yield from self._judge_host(host, spans, capture_end_ns)

    def _earlier_window(self, host: str, service: Service | None) -> Window | None:
        """The busiest window among intervals no longer kept (`BoundedTimeWaitAccumulation`)."""
        return None

    def _judge_host(self, host: str, spans: Spans, capture_end_ns: int) -> Iterable[Anomaly]:
        peak, at, _ = sweep(spans)
        counted = bool(len(at)) and peak >= self.threshold
        if self.limits is None:
            if counted:
                yield self._count_row(host, peak, spans.key(int(at[0])))
            return
        observed = capture_end_ns - self.since_ns if self.since_ns is not None else 0
        for service, rows in spans.groups():
            pile = self._measure(host, service, spans.subset(rows), observed)
            by_count = counted and spans.service(int(at[0])) == service
            row = self._pile_row(pile, peak if by_count else None,
                                 spans.key(int(at[0])) if by_count else None)
            if row is not None:
                yield row

    def _measure(self, host: str, service: Service | None, spans: Spans,
                 observed_ns: int) -> _Pile:
        limits = self.limits
        assert limits is not None
        time_wait = limits.time_wait_ns
        peak, at, _ = sweep(spans)
        whole = observed_ns < time_wait
        window = busiest(spans, None if whole else time_wait)
        if not whole:
            window = busier(window, self._earlier_window(host, service))
        starts, window_at = window if window is not None else (0, None)
        return _Pile(host, service, limits.ports if service is not None else
                     limits.max_tw_buckets, peak,
                     spans.key(int(at[0])) if len(at) else None, starts, window_at,
                     min(time_wait, max(observed_ns, NS)), whole, observed_ns)

    def _pile_row(self, p: _Pile, host_peak: int | None,
                  host_at: SpanKey | None) -> Anomaly | None:
        """The row of one holder, if a rule reports it (``host_peak``: the host's count, when
        it reached the threshold on an interval of this holder, ``host_at``)."""
        limits = self.limits
        assert limits is not None
        projection = p.projection(limits.time_wait_ns)
        bar = limits.share * p.limit
        by_peak, by_rate = p.peak > bar, projection > bar
        if not (by_peak or by_rate or host_at is not None):
            return None
        key = (p.peak_at if by_peak else host_at if host_at is not None else p.window_at)
        assert key is not None
        start, end, conn_id, side, frame = unkey(key)
        frames = tuple(dict.fromkeys(f for k in (key, p.peak_at, host_at, p.window_at)
                                     if k is not None and (f := unkey(k)[4]) is not None))
        at_limit = p.peak >= p.limit or projection >= p.limit
        return Anomaly(conn_id, start, side, "time_wait_accumulation", frame,
                       self._pile_sentence(p, projection, host_peak),
                       ERROR if at_limit else WARNING,
                       CERTAIN if by_peak or host_at is not None else LIKELY, frames,
                       ((side, TIME_WAIT, start),) if end > start else ())

    def _pile_sentence(self, p: _Pile, projection: float, host_peak: int | None) -> str:
        limits = self.limits
        assert limits is not None
        share = f"{limits.share:.0%}"
        peak_at = f" at {clock(unkey(p.peak_at)[0])}" if p.peak_at is not None else ""
        if p.service is not None:
            addr, port = p.service
            service = f"{addr}:{port}" if ":" not in addr else f"[{addr}]:{port}"
            holder = f"towards {service}{peak_at} (as the client)"
            limit = (f"{p.limit:,} (ephemeral ports {limits.port_low}-{limits.port_high}: one "
                     "client address holds at most that many sockets towards one server "
                     "address and port)")
            advice = (f"once every port is held, connect() to {service} fails "
                      "(EADDRNOTAVAIL): reuse connections (keep-alive, pooling), let the "
                      "server close first, or widen net.ipv4.ip_local_port_range")
        else:
            holder = f"as the server{peak_at} (from every client together)"
            limit = (f"{p.limit:,} (net.ipv4.tcp_max_tw_buckets: the most TIME_WAIT sockets "
                     "the kernel keeps)")
            advice = ("past the limit the kernel closes sockets at once, without TIME_WAIT "
                      "(TcpExtTCPTimeWaitOverflow), so late segments of old connections "
                      "may reach new ones: let the clients close first, or reuse "
                      "connections (keep-alive)")
        if p.whole:
            window = f"in the capture's {secs(max(p.observed_ns, 0))}"
            if p.observed_ns < NS:
                window += ", rated over 1 s"
        else:
            window = f"in the busiest {secs(p.window_ns)}"
            if p.window_at is not None:
                window += f", from {clock(unkey(p.window_at)[0])}"
        bar = limits.share * p.limit
        reasons = []
        if p.peak >= p.limit:
            reasons.append("the peak reached the limit")
        elif p.peak > bar:
            reasons.append(f"the peak passed {share} of the limit")
        if projection >= p.limit:
            reasons.append("the projection reaches the limit")
        elif projection > bar:
            reasons.append(f"the projection passes {share} of the limit")
        if host_peak is not None:
            reasons.append(f"the host's {host_peak:,} sockets in TIME_WAIT at once reached "
                           f"time_wait_threshold {self.threshold:,}")
        return (f"host {p.host} had {p.peak:,} sockets in TIME_WAIT at once {holder}, and "
                f"{p.starts:,} new ones {window} ({p.rate:,.1f}/s), which over the "
                f"{secs(limits.time_wait_ns)} of TIME_WAIT would hold {_count(projection)} "
                f"at once; the limit is {limit}, {share} of it {_count(bar)}; "
                + " and ".join(reasons) + ": " + advice)

    def _count_row(self, host: str, peak: int, key: SpanKey) -> Anomaly:
        start, _end, conn_id, side, frame = unkey(key)
        return Anomaly(conn_id, start, side, "time_wait_accumulation", frame,
                       severity=DEFAULT_SEVERITY["time_wait_accumulation"],
                       frames=() if frame is None else (frame,), detail=
                       f"host {host} had {peak} sockets in TIME_WAIT at once at "
                       f"{clock(start)} (threshold {self.threshold}): it closes "
                       "many short connections first; each holds its 4-tuple for "
                       "60 s, and ephemeral ports can run out: reuse connections "
                       "(keep-alive) or let the peer close first")


class BoundedTimeWaitAccumulation(TimeWaitAccumulation):
    """`TimeWaitAccumulation` whose memory stays bounded over hours: per host, the TIME_WAIT
    intervals that ended long ago (``horizon_ns`` before the newest connection's end) are
    dropped, except those active at the busiest instant so far (of the host, and of each
    holder), which are enough for the parent's sweep to find the same peaks at the same
    instants. With ``limits``, the rate's windows need the starts too: a window that begins
    ``time_wait`` before that cutoff or earlier holds no start still to come, so the
    busiest of those is remembered per holder and only the intervals that began later
    are kept for the windows still open."""

    def __init__(self, threshold: int, horizon_ns: int,
                 limits: TimeWaitLimits | None = None) -> None:
        super().__init__(threshold, limits)
        self.horizon_ns = horizon_ns
        self.fold_every = 4096  #: new intervals of a host between two folds, at least
        self._fold_at: dict[str, int] = {}
        self._windows: dict[tuple[str, Service | None], Window] = {}

    def on_connection(self, v: ConnView) -> Iterable[Anomaly]:
        super().on_connection(v)
        cutoff = v.capture_end_ns - self.horizon_ns
        for host, spans in self.intervals.items():
            if len(spans) > self._fold_at.get(host, self.fold_every):
                self._fold(host, cutoff)
                kept = len(self.intervals[host])
                # amortised O(log n) each
                self._fold_at[host] = kept + max(self.fold_every, kept // 4)
        return ()

    def _fold(self, host: str, cutoff: int) -> None:
        spans = self.intervals[host]
        cols = spans.arrays()
        _, _, best = sweep(spans, cutoff)
        keep = cols[1] > cutoff
        keep[best] = True
        if self.limits is not None:
            time_wait = self.limits.time_wait_ns
            keep |= cols[0] > cutoff - time_wait
            for service, rows in spans.groups():
                holder = spans.subset(rows)
                _, _, best = sweep(holder, cutoff)
                keep[rows[best]] = True
                closed = busiest(holder, time_wait, last_anchor=cutoff - time_wait)
                if closed is not None:
                    self._windows[host, service] = busier(
                        self._windows.get((host, service)), closed)  # type: ignore[assignment]
        spans.keep(keep)

    def _earlier_window(self, host: str, service: Service | None) -> Window | None:
        return self._windows.get((host, service))
