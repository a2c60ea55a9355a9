"""One host's TIME_WAIT intervals as integer columns (`Spans`), and the numpy sweeps over
them that `tcplife.detect.time_wait` judges by: the busiest instant (`sweep`) and the busiest
window of TIME_WAIT starts (`busiest`, `busier`). The only module of the detectors that
imports numpy. Knows nothing of limits, options or sentences.
"""

from __future__ import annotations

from array import array

import numpy as np

from tcplife.core.states import CLIENT, SERVER

Span = tuple[int, int, int, str, "int | None"]  #: TIME_WAIT start, end, conn_id, side, frame
_SIDE_CODE = {CLIENT: 0, SERVER: 1}


#: a server's address and port: the service a client's TIME_WAIT sockets are towards
Service = tuple[str, int]
SpanKey = tuple[int, int, int, int, int]  #: a span's columns: start, end, conn_id, side, frame


def unkey(key: SpanKey) -> Span:
    start, end, conn_id, side, frame = key
    return start, end, conn_id, (CLIENT, SERVER)[side], None if frame < 0 else frame


class Spans:
    """One host's TIME_WAIT intervals as six integer columns (about 48 bytes each, not
    the ~250 of a tuple of Python ints): start, end, conn_id, side (0 client, 1 server),
    frame (-1 for none), service (a client's TIME_WAIT: the server address and port it
    was towards, as a position in ``services``; -1 for a server's)."""

    __slots__ = ("cols", "services", "_codes")

    def __init__(self) -> None:
        self.cols = tuple(array("q") for _ in range(6))
        self.services: list[Service] = []
        self._codes: dict[Service, int] = {}

    def __len__(self) -> int:
        return len(self.cols[0])

    def append(self, span: Span, service: Service | None = None) -> None:
        start, end, conn_id, side, frame = span
        for col, value in zip(self.cols, (start, end, conn_id, _SIDE_CODE[side],
                                          -1 if frame is None else frame,
                                          -1 if service is None else self._code(service)),
                              strict=True):
            col.append(value)

    def _code(self, service: Service) -> int:
        code = self._codes.get(service)
        if code is None:
            code = self._codes[service] = len(self.services)
            self.services.append(service)
        return code

    def extend(self, other: Spans) -> None:
        # the other's service positions as ours (the last entry maps a server's -1 to -1)
        remap = np.array([*(self._code(s) for s in other.services), -1], dtype=np.int64)
        codes = remap[np.frombuffer(other.cols[5], dtype=np.int64)]
        for col, more in zip(self.cols[:5], other.cols[:5], strict=True):
            col.extend(more)
        self.cols[5].frombytes(codes.tobytes())

    def arrays(self) -> list[np.ndarray]:
        return [np.frombuffer(c, dtype=np.int64) for c in self.cols]

    def keep(self, mask: np.ndarray) -> None:
        self.cols = tuple(array("q", a[mask].tobytes()) for a in self.arrays())

    def subset(self, rows: np.ndarray) -> Spans:
        """The intervals at positions ``rows``, with this one's ``services`` (shared: read
        them, do not append to the subset)."""
        out = Spans()
        out.cols = tuple(array("q", a[rows].tobytes()) for a in self.arrays())
        out.services, out._codes = self.services, self._codes
        return out

    def key(self, i: int) -> SpanKey:
        start, end, conn_id, side, frame = (int(c[i]) for c in self.cols[:5])
        return start, end, conn_id, side, frame

    def span(self, i: int) -> Span:
        return unkey(self.key(i))

    def service(self, i: int) -> Service | None:
        code = self.cols[5][i]
        return None if code < 0 else self.services[code]

    def groups(self) -> list[tuple[Service | None, np.ndarray]]:
        """Who holds the intervals, as the limits count them: per service, the positions
        of the host's TIME_WAIT sockets as a client towards it (services in order), then
        those as a server (None), from every client."""
        codes = self.arrays()[5]
        if not len(codes):
            return []
        order = np.argsort(codes, kind="stable")
        found, first = np.unique(codes[order], return_index=True)
        parts = np.split(order, first[1:])
        out = [(self.services[int(c)], rows) for c, rows in zip(found, parts, strict=True)
               if c >= 0]
        out.sort(key=lambda group: group[0])
        return out + [(None, rows) for c, rows in zip(found, parts, strict=True) if c < 0]


def sweep(spans: Spans, cutoff: int | None = None) -> tuple[int, np.ndarray, np.ndarray]:
    """The busiest instant of ``spans`` (up to ``cutoff``, if given): the count, and the
    interval whose start first reached it, as positions (empty if none); with every
    interval active then. Edges in time order, an end before a start at the same instant,
    ties by the intervals' (start, end, conn_id, side, frame): the order in which a sweep
    over the tuples meets them."""
    cols = spans.arrays()[:5]
    n = len(cols[0])
    if not n:
        return 0, np.empty(0, np.int64), np.empty(0, np.int64)
    ts = np.concatenate((cols[0], cols[1]))
    delta = np.concatenate((np.ones(n, np.int64), -np.ones(n, np.int64)))
    idx = np.concatenate((np.arange(n), np.arange(n)))
    fields = [c[idx] for c in cols]
    order = np.lexsort((*reversed(fields), delta, ts))  # last key sorts first
    if cutoff is not None:
        order = order[ts[order] <= cutoff]
    if not len(order):
        return 0, np.empty(0, np.int64), np.empty(0, np.int64)
    count = np.cumsum(delta[order])
    peak = int(count.max())
    if peak <= 0:
        return 0, np.empty(0, np.int64), np.empty(0, np.int64)
    first = int(np.argmax(count == peak))
    # active at that edge: started at or before it, not ended at or before it
    pos = np.empty(2 * n, np.int64)
    pos[order] = np.arange(len(order))
    unseen = np.full(2 * n, len(order), np.int64)
    unseen[order] = pos[order]
    active = np.flatnonzero((unseen[:n] <= first) & (unseen[n:] > first))
    return peak, np.array([idx[order[first]]]), active


Window = tuple[int, SpanKey]  #: how many TIME_WAIT starts a window holds; its first interval


def busiest(spans: Spans, window_ns: int | None,
             last_anchor: int | None = None) -> Window | None:
    """The window that holds the most TIME_WAIT starts of ``spans``: windows of
    ``window_ns`` (half-open, as TIME_WAIT itself: one that starts as another ends does not
    overlap it) beginning at each interval's start, in the sweep's order (start, end,
    conn_id, side, frame), the first with the most; ``window_ns`` None: one window holding
    them all. ``last_anchor``: only windows beginning at or before it. None if none."""
    cols = spans.arrays()[:5]
    n = len(cols[0])
    order = np.lexsort(tuple(reversed(cols)))
    starts = cols[0][order]
    if window_ns is None:
        counts = np.array([n]) if n else np.empty(0, np.int64)
    else:
        counts = np.searchsorted(starts, starts + window_ns, side="left") - np.arange(n)
        if last_anchor is not None:
            counts = counts[:int(np.searchsorted(starts, last_anchor, side="right"))]
    if not len(counts):
        return None
    i = int(np.argmax(counts))  # the first of the most
    j = int(order[i])
    start, end, conn_id, side, frame = (int(c[j]) for c in cols)
    return int(counts[i]), (start, end, conn_id, side, frame)


def busier(a: Window | None, b: Window | None) -> Window | None:
    """The window with more starts; of two with as many, the one that begins first."""
    if a is None or b is None:
        return a if b is None else b
    return a if (-a[0], a[1]) <= (-b[0], b[1]) else b
