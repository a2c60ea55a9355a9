"""Feeding batches of segments to the tracker, the steady majority in bulk.

Owns: the fast path's loop. Most segments of an established connection change no state: an
in-order ACK or data segment while both sides are ESTABLISHED. numpy finds, per batch, the
runs of such candidate segments of each flow; `tcplife.engines.fastpath` applies a run's
counters in one call through the tracker's view of a steady connection (`Tracker.steady`),
as long as each segment is one that changes nothing (`tcplife.core.steady`), and every
other segment goes through `Tracker.feed` in capture order, as in the plain path. The
state logic stays in the core; this module only decides which call each segment takes.
tests/test_drive.py proves the tables equal the plain path's.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from tcplife.capture.columns import Batch
from tcplife.capture.flowhash import flow_hash
from tcplife.core.events import Event
from tcplife.core.segment import ACK, FIN, RST, SYN, Segment
from tcplife.core.tracker import Tracker
from tcplife.engines.fastpath import absorb, absorb_columns

_new_segment = tuple.__new__

#: Runs at least this long are absorbed with numpy (`fastpath.absorb_columns`); shorter ones
#: row by row (`fastpath.absorb`), where numpy's per-call cost would dominate.
LONG_RUN = 64
#: The most rows one `fastpath.absorb_columns` call looks at.
WINDOW = 2048
#: A batch of mostly short runs is driven this many rows at a time (see `_drive_batch`)
SHORT_SLICE = 16384
#: After a batch of mostly long runs, this many of the source's batches are joined into the
#: next one (`_grouped`)
GROUP = 4


def drive(batches: Iterable[Batch], tracker: Tracker,
          emit: Callable[[list[Event]], None], *, lookahead: bool = True) -> None:
    """Feed every batch to ``tracker``; ``emit`` receives the events as they come. Each
    batch is fed once the next one is known (its earliest timestamp bounds what may be
    absorbed: see `_drive_batch`); the last one is fed when the input ends. Without
    ``lookahead`` each batch is fed as it comes (for a source whose iteration acts on the
    tracker, as `tcplife.engines.distributed`'s does)."""
    grouping = _Grouping()
    it = _grouped(iter(batches), grouping) if lookahead else iter(batches)
    cur = next(it, None)
    while cur is not None:
        nxt = next(it, None) if lookahead else None
        while nxt is not None and not len(nxt):
            nxt = next(it, None)
        if not lookahead:
            if len(cur):
                _drive_batch(cur, tracker, emit, None)
            cur = next(it, None)
            continue
        if len(cur):
            short = _drive_batch(cur, tracker, emit,
                                 None if nxt is None else int(nxt.ts_ns.min()))
            grouping.size = 1 if short else GROUP
        cur = nxt


class _Grouping:
    """How many of the source's batches `_grouped` joins into the next one it yields."""

    size = 1


def _grouped(batches: Iterator[Batch], grouping: _Grouping) -> Iterator[Batch]:
    """The source's batches, ``grouping.size`` joined into one at a time. Traffic of long
    runs (a few busy flows) is driven in bigger batches, where more of each flow's run is
    one numpy call; traffic of short runs (many short connections) in the source's own
    small ones, whose rows become Python values a batch at a time. Any cut gives the same
    events (tests/test_drive.py)."""
    for first in batches:
        parts = [first]
        while len(parts) < grouping.size:
            more = next(batches, None)
            if more is None:
                break
            parts.append(more)
        yield parts[0] if len(parts) == 1 else Batch.joined(parts)


def _flow_ids(batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A flow number per row, the same in both directions (`flow_hash`, made exact), and
    each row's sender and receiver keys."""
    sender = (batch.src << 16) | batch.sport
    receiver = (batch.dst << 16) | batch.dport
    uniq, flow = np.unique(flow_hash(batch), return_inverse=True)
    # A hash collision would merge two flows: check, and key exactly if one happened.
    lo, hi = np.minimum(sender, receiver), np.maximum(sender, receiver)
    first = np.full(len(uniq), -1, dtype=np.int64)
    first[flow[::-1]] = np.arange(len(flow))[::-1]
    if not (np.array_equal(lo[first[flow]], lo) and np.array_equal(hi[first[flow]], hi)):
        pairs = np.stack([lo, hi], axis=1)
        _, flow = np.unique(pairs, axis=0, return_inverse=True)
        flow = flow.reshape(-1)
    return flow, sender, receiver


def _drive_batch(batch: Batch, tracker: Tracker, emit: Callable[[list[Event]], None],
                 next_min: int | None = None) -> bool:
    """``next_min``: the earliest timestamp of the next batch (None: the input ends).
    Returns whether short runs held most of its rows."""
    n = len(batch)
    flags = batch.flags
    cand = ((flags & (SYN | FIN | RST)) == 0) & ((flags & ACK) != 0)
    ts = batch.ts_ns
    if (n > 1 and (ts[1:] < ts[:-1]).any()) or (next_min is not None and next_min < ts[-1]):
        # Time goes backwards. Absorbed segments fire no timers (the plain path fires
        # them at every segment), and a run is absorbed before the other flows' segments
        # between its rows: a segment captured later but stamped earlier would be fed
        # before a timer the plain path fired at an absorbed, later-stamped segment. So a
        # segment stamped after any that follows it (in this batch or the next one's
        # earliest) is fed, not absorbed. (A step back of more than a whole batch is not
        # seen: the two paths may then disagree.)
        later = np.minimum.accumulate(ts[::-1])[::-1]
        bound = np.empty(n, dtype=ts.dtype)
        bound[:-1] = later[1:]
        bound[-1] = next_min if next_min is not None else ts[-1]
        if next_min is not None:
            np.minimum(bound, next_min, out=bound)
        cand &= ts <= bound
    flow, sender, receiver = _flow_ids(batch)
    order = np.argsort(flow, kind="stable")  # rows grouped by flow, capture order within
    fo, co = flow[order], cand[order]
    same_flow = np.zeros(n, dtype=bool)
    same_flow[1:] = fo[1:] == fo[:-1]
    prev_cand = np.zeros(n, dtype=bool)
    prev_cand[1:] = co[:-1]
    starts = np.flatnonzero(co & ~(same_flow & prev_cand))  # positions in ``order``
    ends = np.empty_like(starts)  # one past each run's last position
    if len(starts):
        cont = np.zeros(n, dtype=bool)  # the next position continues the run
        cont[:-1] = same_flow[1:] & co[1:]
        lasts = np.flatnonzero(co & ~cont)
        ends = lasts[np.searchsorted(lasts, starts)] + 1

    single = np.flatnonzero(~cand)  # rows fed one by one, in capture order
    run_first = order[starts]
    item_rows = np.concatenate([single, run_first])
    item_run = np.concatenate([np.full(len(single), -1), np.arange(len(starts))])
    by_row = np.argsort(item_rows, kind="stable")
    item_rows, item_run = item_rows[by_row].tolist(), item_run[by_row].tolist()

    singles = dict(zip(single.tolist(), batch.segments(single), strict=True))
    order_l = order.tolist()
    starts_l, ends_l = starts.tolist(), ends.tolist()
    feed, steady = tracker.feed, tracker.steady
    name = batch.book.name
    # Rows of short runs are read as Python values; when long runs hold most rows, only
    # theirs are converted (per run), not the whole batch's columns.
    lengths = ends - starts
    short_rows = int(lengths[lengths < LONG_RUN].sum())
    if short_rows * 4 >= n and n > SHORT_SLICE:
        # Mostly short runs: their rows become Python values, a few hundred bytes each;
        # in slices, to bound that. A slice's bound on absorbing (``next_min``) is the
        # earliest time after it in this batch or the next, as for the whole batch; a
        # run cut at a slice's end goes on in the next (any cut gives the same events).
        for a in range(0, n, SHORT_SLICE):
            b = min(n, a + SHORT_SLICE)
            later = int(ts[b:].min()) if b < n else None
            if next_min is not None:
                later = next_min if later is None else min(later, next_min)
            _drive_batch(batch.rows(a, b), tracker, emit, later)
        return True
    if short_rows * 4 >= n:
        cols = [c.tolist() for c in (batch.frame, batch.ts_ns, sender, batch.seq, batch.ack,
                                     flags, batch.payload_len, batch.window)]
        whole = {c: getattr(batch, c).tolist() for c in Batch.COLUMNS}
        whole["flags"], whole["frame"] = cols[5], cols[0]

        def segment_at(r: int) -> Segment:
            w = whole
            return _new_segment(Segment, (
                w["frame"][r], w["ts_ns"][r], w["ip_version"][r], name(w["src"][r]),
                w["sport"][r], name(w["dst"][r]), w["dport"][r], w["seq"][r], w["ack"][r],
                w["flags"][r], w["payload_len"][r], w["window"][r], w["wscale"][r],
                w["tsval"][r], w["tsecr"][r]))
    else:
        cols = []
        segment_at = batch.segment
    src, sport, dst, dport = batch.src, batch.sport, batch.dst, batch.dport
    by_flow: list[np.ndarray] = []

    def short_rows_of(ix: list[int], client_key: int) -> Iterable[tuple[int, ...]]:
        if cols:
            frame, ts, snd, seq, ack, flg, plen, win = cols
            return ((frame[x], ts[x], snd[x] == client_key, seq[x], ack[x], flg[x], plen[x],
                     win[x]) for x in ix)
        sel = np.asarray(ix)
        return zip(batch.frame[sel].tolist(), batch.ts_ns[sel].tolist(),
                   (sender[sel] == client_key).tolist(), batch.seq[sel].tolist(),
                   batch.ack[sel].tolist(), flags[sel].tolist(),
                   batch.payload_len[sel].tolist(), batch.window[sel].tolist(), strict=True)

    def run_at(pos: int, end: int, known_bad: bool = False) -> None:
        """Apply the run order[pos:end] from its first segment on; defer what is left.
        ``known_bad``: the first segment is one `absorb_columns` stopped at (it goes
        through `feed` without being examined again)."""
        r = order_l[pos]
        k = 0
        view = None
        if not known_bad:
            s_name, d_name, s_port = name(int(src[r])), name(int(dst[r])), int(sport[r])
            view = steady(s_name, s_port, d_name, int(dport[r]))
        stopped = False
        if view is not None:
            client_key = int(sender[r] if (view.client.addr == s_name
                                           and view.client.port == s_port) else receiver[r])
            if end - pos >= LONG_RUN:
                # At most WINDOW rows per call: a segment that stops the run (a
                # retransmission, say) costs a window's work, not the rest of the run's.
                if not by_flow:  # the columns in flow order, once: a run is then a slice
                    by_flow.extend(c[order] for c in (
                        sender, batch.frame, batch.ts_ns, batch.seq, batch.ack, flags,
                        batch.payload_len, batch.window))
                cut = slice(pos, min(end, pos + WINDOW))
                snd_o, *rest = (c[cut] for c in by_flow)
                k = absorb_columns(tracker, view, snd_o == client_key, *rest)
                stopped = 0 < k < len(snd_o)
            else:
                k = absorb(tracker, view, short_rows_of(order_l[pos:end], client_key))
                stopped = 0 < k < end - pos
        if k == 0:  # not steady, or a segment that changes something: the plain way
            events = feed(segment_at(r))
            if events:
                emit(events)
            k = 1
        if pos + k < end:
            heapq.heappush(deferred, (order_l[pos + k], pos + k, end, stopped))

    deferred: list[tuple[int, int, int, bool]] = []
    for row, run in zip(item_rows, item_run, strict=True):
        while deferred and deferred[0][0] < row:
            _, pos, end, bad = heapq.heappop(deferred)
            run_at(pos, end, bad)
        if run < 0:
            events = feed(singles[row])
            if events:
                emit(events)
        else:
            run_at(starts_l[run], ends_l[run])
    while deferred:
        _, pos, end, bad = heapq.heappop(deferred)
        run_at(pos, end, bad)
    return short_rows * 4 >= n
