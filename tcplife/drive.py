"""Feeding batches of segments to the tracker, the steady majority in bulk.

Owns: the fast path's loop. Most segments of an established connection change no state: an
in-order ACK or data segment while both sides are ESTABLISHED. numpy finds, per batch, the
runs of such candidate segments of each flow; the tracker (`Tracker.steady`,
`Tracker.absorb`) applies a run's counters in one call, as long as each segment is one that
changes nothing, and every other segment goes through `Tracker.feed` in capture order, as
in the plain path. The state logic stays in the tracker; this module only decides which
call each segment takes. tests/test_drive.py proves the tables equal the plain path's.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

import numpy as np

from .capture.columns import Batch
from .events import Event
from .segment import ACK, FIN, RST, SYN
from .tracker import Tracker

_K = np.uint64(0x9E3779B97F4A7C15)

#: Runs at least this long are absorbed with numpy (`Tracker.absorb_columns`); shorter ones
#: row by row (`Tracker.absorb`), where numpy's per-call cost would dominate.
LONG_RUN = 64


def drive(batches: Iterable[Batch], tracker: Tracker,
          emit: Callable[[list[Event]], None]) -> None:
    """Feed every batch to ``tracker``; ``emit`` receives the events as they come."""
    for batch in batches:
        if len(batch):
            _drive_batch(batch, tracker, emit)


def _flow_ids(batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A direction-agnostic flow number per row, and each row's endpoint keys."""
    sender = (batch.src << 16) | batch.sport
    receiver = (batch.dst << 16) | batch.dport
    lo, hi = np.minimum(sender, receiver), np.maximum(sender, receiver)
    h = lo.astype(np.uint64) * _K ^ hi.astype(np.uint64)
    uniq, flow = np.unique(h, return_inverse=True)
    # A hash collision would merge two flows: check, and key exactly if one happened.
    first = np.full(len(uniq), -1, dtype=np.int64)
    first[flow[::-1]] = np.arange(len(flow))[::-1]
    if not (np.array_equal(lo[first[flow]], lo) and np.array_equal(hi[first[flow]], hi)):
        pairs = np.stack([lo, hi], axis=1)
        _, flow = np.unique(pairs, axis=0, return_inverse=True)
        flow = flow.reshape(-1)
    return flow, sender, receiver


def _drive_batch(batch: Batch, tracker: Tracker, emit: Callable[[list[Event]], None]) -> None:
    n = len(batch)
    flags = batch.flags
    cand = ((flags & (SYN | FIN | RST)) == 0) & ((flags & ACK) != 0)
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
    frame, ts, seq, ack = (batch.frame.tolist(), batch.ts_ns.tolist(), batch.seq.tolist(),
                           batch.ack.tolist())
    flg, plen, win, snd, rcv = (flags.tolist(), batch.payload_len.tolist(),
                                batch.window.tolist(), sender.tolist(), receiver.tolist())
    src, sport, dst, dport = (batch.src.tolist(), batch.sport.tolist(), batch.dst.tolist(),
                              batch.dport.tolist())
    name = batch.book.name
    feed, steady, absorb = tracker.feed, tracker.steady, tracker.absorb
    absorb_columns = tracker.absorb_columns

    def run_at(pos: int, end: int) -> None:
        """Apply the run order[pos:end] from its first segment on; defer what is left."""
        r = order_l[pos]
        conn = steady(name(src[r]), sport[r], name(dst[r]), dport[r])
        k = 0
        if conn is not None:
            client_key = snd[r] if (conn.client.addr == name(src[r])
                                    and conn.client.port == sport[r]) else rcv[r]
            if end - pos >= LONG_RUN:
                ix = order[pos:end]
                k = absorb_columns(conn, sender[ix] == client_key, batch.frame[ix],
                                   batch.ts_ns[ix], batch.seq[ix], batch.ack[ix], flags[ix],
                                   batch.payload_len[ix], batch.window[ix])
            else:
                k = absorb(conn, ((frame[x], ts[x], snd[x] == client_key, seq[x], ack[x],
                                   flg[x], plen[x], win[x]) for x in order_l[pos:end]))
        if k == 0:  # not steady, or a segment that changes something: the plain way
            events = feed(batch.segment(r))
            if events:
                emit(events)
            k = 1
        if pos + k < end:
            heapq.heappush(deferred, (order_l[pos + k], pos + k, end))

    deferred: list[tuple[int, int, int]] = []
    for row, run in zip(item_rows, item_run, strict=True):
        while deferred and deferred[0][0] < row:
            _, pos, end = heapq.heappop(deferred)
            run_at(pos, end)
        if run < 0:
            events = feed(singles[row])
            if events:
                emit(events)
        else:
            run_at(starts_l[run], ends_l[run])
    while deferred:
        _, pos, end = heapq.heappop(deferred)
        run_at(pos, end)
