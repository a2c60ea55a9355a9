"""Runs of a steady connection's segments applied in bulk, over the core's public view.

Owns: `absorb` (a run given as rows of Python values, one by one) and `absorb_columns`
(a long run given as numpy columns, vectorised), and the counters they move. Both work
through `tcplife.core.steady`: a `Steady` view from `Tracker.steady`, and the rule
`changes_nothing` of which segment changes nothing but counters, which `absorb` calls for
each row; `absorb_columns` is its vectorised form, which must stop at exactly the row
where `absorb` stops and leave the same state (tests/test_fastpath.py, row by row, and
both against `Tracker.feed`). Neither
fires timers: a steady connection has none, and other connections' wait for the next
`Tracker.feed`, which fires them at their own deadlines, so the events are the same.
`tcplife.engines.drive` decides which segments are offered here.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tcplife.core.seq import seq_diff
from tcplife.core.steady import DUPLICATE_NS, HALF, MASK32, Steady, changes_nothing
from tcplife.core.tracker import Tracker

_MOD = 1 << 32
#: Sequence numbers further than this from a side's current values end a vectorised run:
#: `absorb_columns` makes them linear around those values, which holds only nearby.
_FAR = 1 << 30

Row = tuple[int, int, bool, int, int, int, int, int]


def absorb(tracker: Tracker, view: Steady, rows: Iterable[Row]) -> int:
    """Apply a run of segments of the steady connection ``view``, each (frame, ts_ns,
    from_client, seq, ack, flags, payload_len, window), exactly as `Tracker.feed` would,
    as long as each is one that `changes_nothing`. Returns how many it applied (a prefix);
    the caller feeds the next one normally. Each changes what `Tracker.feed` would change
    of its sender, written here for such a segment only (its data, if any, starts at
    SND.NXT and is all new)."""
    c, s, peers = view.client, view.server, view.peers
    peers_ok = peers.fast_rows()
    idle, c0, s0 = peers.inactivity_ns(), c.packets, s.packets
    last = view.last_ts
    n = last_frame = 0
    for frame, ts, from_client, seq, ack, flags, plen, win in rows:
        if from_client:
            a, b = c, s
        else:
            a, b = s, c
        key = (seq, ack, flags, plen, win)
        if not changes_nothing(a, b, last, idle, ts, key):
            break
        if plen:
            end = (seq + plen) & MASK32
            hi = a.data_hi
            if hi is None:
                a.bytes += plen
            else:
                d = (end - hi) & MASK32
                a.bytes += plen if plen < d else d
            a.data_hi = end
            a.last_data_ns = a.last_payload_ns = ts
            a.rtx_run_start_ns = None
            a.snd_nxt = end  # (the rule: the data starts at SND.NXT)
        a.rtx_run = 0
        if 0 < (ack - a.max_ack) & MASK32 < HALF:  # type: ignore[operator]
            a.max_ack = ack
        a.window = win
        a.last_key = key
        a.last_ns = ts
        a.packets += 1
        if ts > last:
            last = ts
        last_frame = frame
        n += 1
        if not peers_ok[from_client][plen > 0]:  # the side's first ACK / data: Zeek's A/D
            peers.first_letter(from_client, plen > 0)
            peers_ok = peers.fast_rows()
    if n:
        _absorbed(tracker, view, n, last, last_frame, c0, s0)
    return n


def _absorbed(tracker: Tracker, view: Steady, n: int, last_ts: int, last_frame: int,
              c0: int, s0: int) -> None:
    """A run of ``n`` segments was counted: the connection's counters, the peer recorders
    (the sides' packet counts were ``c0``, ``s0`` before it) and the tracker's clock."""
    c, s = view.client, view.server
    view.commit(n, last_ts, last_frame)
    view.peers.absorbed(c.snd_nxt, s.snd_nxt, c.max_ack, s.max_ack,  # type: ignore[arg-type]
                        view.last_ts, c.packets - c0, s.packets - s0)
    tracker.saw(view.last_ts)


def absorb_columns(tracker: Tracker, view: Steady, from_client: np.ndarray,
                   frame: np.ndarray, ts: np.ndarray, seq: np.ndarray, ack: np.ndarray,
                   flags: np.ndarray, plen: np.ndarray, win: np.ndarray) -> int:
    """`absorb` for a long run given as int64 arrays (``from_client`` boolean), with
    ACK set and none of SYN, FIN, RST: the rule `changes_nothing` for each row and
    `absorb`'s counters for the run, computed with running maxima over sequence numbers made linear
    around the sides' current values. Both sides in one pass: a side's running maximum
    skips the other side's rows, so at any row it is what that side had sent before it.
    One difference: a row more than 2**30 from those values ends the run here (the plain
    rules of modular comparison then apply, through `Tracker.feed`), which `absorb` may
    have taken."""
    c, s = view.client, view.server
    assert c.snd_nxt is not None and s.snd_nxt is not None
    assert c.max_ack is not None and s.max_ack is not None
    his = []
    for ep in (c, s):
        hi0 = -_MOD if ep.data_hi is None else seq_diff(ep.data_hi, ep.snd_nxt)
        if hi0 != -_MOD and abs(hi0) >= _FAR:
            return 0
        his.append(hi0)
    n = len(frame)
    fc, fs = from_client, ~from_client
    data = plen > 0

    def rel(col: np.ndarray, to_c: int, to_s: int) -> np.ndarray:
        """`seq_diff` of each row of col and its side's value."""
        return ((col - np.where(fc, to_c - HALF, to_s - HALF)) & MASK32) - HALF

    s_rel = rel(seq, c.snd_nxt, s.snd_nxt)
    a_rel = rel(ack, c.max_ack, s.max_ack)
    end = s_rel + plen
    # Before each row (n + 1 values: the last is after every row), relative to the
    # side's: what the client, the server had sent (SND.NXT, at least 0), the highest
    # data end of the client, of the server (at least what it was).
    masks = np.stack((fc, fs, fc & data, fs & data))
    start = np.array([[0], [0], [his[0]], [his[1]]], dtype=np.int64)
    most = np.empty((4, n + 1), dtype=np.int64)
    most[:, :1] = start
    np.maximum.accumulate(np.where(masks, end, -_MOD), axis=1, out=most[:, 1:])
    np.maximum(most[:, 1:], start, out=most[:, 1:])
    sent_c, sent_s, hi_c, hi_s = most
    nxt_before = np.where(fc, sent_c[:-1], sent_s[:-1])
    hi_before = np.where(fc, hi_c[:-1], hi_s[:-1])
    # `changes_nothing`, row by row, in its order:
    # an ACK of more than the peer sent so far
    bad = rel(ack, s.snd_nxt, c.snd_nxt) > np.where(fc, sent_s[:-1], sent_c[:-1])
    bad |= (np.abs(s_rel) >= _FAR) | (np.abs(a_rel) >= _FAR)  # (this form's own limit)
    bad |= (plen <= 1) & (nxt_before - s_rel == 1)  # keep-alive shape
    bad |= data & (end <= hi_before)  # retransmitted data
    # a zero window; data not exactly at SND.NXT; a bare ACK beyond it
    bad |= (win == 0) | np.where(data, s_rel != nxt_before, s_rel > nxt_before)
    # A duplicate: the side's previous segment again (seq and ack first; the other
    # fields only where those repeat), within DUPLICATE_NS.
    row = np.arange(n)
    last_c = np.maximum.accumulate(np.where(fc, row, -1))  # the side's last row so far
    last_s = np.maximum.accumulate(np.where(fc, -1, row))
    prev = np.empty(n, dtype=np.int64)
    prev[0] = -1
    np.copyto(prev[1:], np.where(fc[1:], last_c[:-1], last_s[:-1]))
    q = np.maximum(prev, 0)
    same = (prev >= 0) & (seq[q] == seq) & (ack[q] == ack)
    if same.any():
        at = same.nonzero()[0]
        q = q[at]
        for col in (flags, plen, win):
            same[at] &= col[at] == col[q]
        same[at] &= (ts[at] - ts[q]) <= DUPLICATE_NS
    for ep, side in ((c, fc), (s, fs)):
        if side.any():
            i = int(side.argmax())
            same[i] = ((int(seq[i]), int(ack[i]), int(flags[i]), int(plen[i]),
                        int(win[i])) == ep.last_key
                       and int(ts[i]) - ep.last_ns <= DUPLICATE_NS)  # type: ignore[operator]
    bad |= same
    # Zeek's inactivity timer: that long after the connection's previous segment
    before = np.maximum.accumulate(np.concatenate(([view.last_ts], ts[:-1])))
    bad |= ts - before >= view.peers.inactivity_ns()
    stop = int(bad.argmax()) if bad.any() else n
    if stop == 0:
        return 0
    # `absorb`'s counters for rows [0, stop), side by side
    peers = view.peers
    peers_ok = peers.fast_rows()
    c0, s0 = c.packets, s.packets
    firsts: list[tuple[int, bool, bool]] = []
    for ep, side, sent, hi, last, is_c in ((c, fc, sent_c, hi_c, last_c, True),
                                           (s, fs, sent_s, hi_s, last_s, False)):
        mine = side[:stop]
        m = int(np.count_nonzero(mine))
        if m == 0:
            continue
        for ok, want in zip(peers_ok[is_c], (False, True), strict=True):
            if not ok:  # the side's first ACK / data: Zeek's A / D
                kind = mine & (data[:stop] if want else ~data[:stop])
                if kind.any():
                    firsts.append((int(kind.argmax()), is_c, want))
        base = ep.snd_nxt
        assert base is not None and ep.max_ack is not None
        top = int(sent[stop])
        if top > 0:
            ep.snd_nxt = (base + top) % _MOD
        mine_data = mine & data[:stop]
        if mine_data.any():
            # new bytes: the part above the highest data end before (all of it if
            # none: end - (-2**32) is more than any length)
            ep.bytes += int(np.minimum(plen[:stop], end[:stop] - hi_before[:stop])
                            .sum(where=mine_data))
            ep.data_hi = (base + int(hi[stop])) % _MOD  # each one raised it
            i = stop - 1 - int(mine_data[::-1].argmax())
            ep.last_data_ns = ep.last_payload_ns = int(ts[i])
            ep.rtx_run_start_ns = None
        amax = int(a_rel[:stop].max(where=mine, initial=-_MOD))
        if amax > 0:
            ep.max_ack = (ep.max_ack + amax) % _MOD
        i = int(last[stop - 1])
        ep.rtx_run = 0
        ep.window = int(win[i])
        ep.last_key = (int(seq[i]), int(ack[i]), int(flags[i]), int(plen[i]), int(win[i]))
        ep.last_ns = int(ts[i])
        ep.packets += m
    for _, from_client_, is_data in sorted(firsts):
        peers.first_letter(from_client_, is_data)
    _absorbed(tracker, view, stop, int(ts[:stop].max()), int(frame[stop - 1]), c0, s0)
    return stop
