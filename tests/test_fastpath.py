"""The fast path's rule, held to the tracker and to itself.

`tcplife.core.steady.changes_nothing` says which segment of a steady connection changes
nothing but counters; `tcplife.engines.fastpath.absorb` applies runs by it, and
`absorb_columns` is its vectorised form. Three trackers are fed the same generated
conversation (in-order data and ACKs, with duplicates, keep-alives, retransmissions, holes,
zero windows, ACKs of data the capture missed, long silences, sequence numbers wrapping):
one through `Tracker.feed` only, one through `absorb` wherever its connection is steady,
one through `absorb_columns`. At every run:

- the vectorised rule stops at exactly the row where the scalar one does (but for rows
  beyond the range its linear form holds in, 2**30 from the sides' values, where it stops
  earlier and `feed` then changes nothing either);
- every row the scalar rule lets through makes `Tracker.feed` emit nothing, and leaves the
  sides, the connection's record and the peer replays as `feed` leaves them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tcplife.core.segment import ACK, FIN, RST, SYN, Segment
from tcplife.core.seq import seq_diff
from tcplife.core.steady import DUPLICATE_NS, Steady, changes_nothing
from tcplife.core.tracker import Tracker
from tcplife.engines.fastpath import absorb, absorb_columns
from tcplife.engines.wiring import new_tracker

from builder import Conv, Host

KINDS = ["data", "data", "data", "ack", "ack", "dup", "keep", "keep1", "rtx", "overlap",
         "hole", "ack_ahead", "gap", "old_ack", "far_ack", "zero", "idle", "big"]
STEP = st.tuples(st.sampled_from("cs"), st.sampled_from(KINDS),
                 st.sampled_from([1, 20, 500, 50_000]))  # microseconds before it
ISNS = st.sampled_from([1000, (1 << 32) - 300, (1 << 31) - 200, 5_000_000])


def _conversation(steps: list[tuple[str, str, int]], c_isn: int, s_isn: int,
                  timestamps: bool) -> list[Segment]:
    cv = Conv(client=Host("10.0.0.1", 40000, c_isn), server=Host("10.0.0.2", 80, s_isn),
              timestamps=timestamps)
    cv.handshake()
    cv.c(0, 10, dt=0.001)
    cv.s(0, 10, dt=0.001)
    last: dict[str, Segment] = {}
    for who, kind, us in steps:
        src = cv.client if who == "c" else cv.server
        dst = cv.server if who == "c" else cv.client
        dt = us / 1e6
        nxt = src.snd_nxt
        if kind == "dup" and who in last:
            # the side's previous segment captured again
            prev = last[who]
            cv.frame += 1
            cv.t += 5e-5 if us < 100 else dt
            seg = prev._replace(frame=cv.frame, ts_ns=int(round(cv.t * 1e9)))
            cv.segments.append(seg)
            continue
        if kind in ("data", "dup"):
            seg = cv.send(who, 0, 100, dt=dt)
        elif kind == "big":
            seg = cv.send(who, 0, 1448, dt=dt)
        elif kind == "ack":
            seg = cv.send(who, ACK, dt=dt)
        elif kind in ("keep", "keep1"):
            seg = cv.send(who, ACK, 0 if kind == "keep" else 1, dt=dt,
                          seq=(nxt - 1) & 0xFFFFFFFF)
        elif kind == "rtx":
            seg = cv.send(who, ACK, 100, dt=dt, seq=(nxt - 100) & 0xFFFFFFFF)
        elif kind == "overlap":  # old bytes and new ones: not exactly at SND.NXT
            seg = cv.send(who, ACK, 100, dt=dt, seq=(nxt - 50) & 0xFFFFFFFF)
            src.snd_nxt = (nxt + 50) & 0xFFFFFFFF
        elif kind == "hole":  # data the capture missed before it
            seg = cv.send(who, ACK, 100, dt=dt, seq=(nxt + 100) & 0xFFFFFFFF)
            src.snd_nxt = (nxt + 200) & 0xFFFFFFFF
        elif kind == "ack_ahead":  # a bare ACK claiming sequence space beyond SND.NXT
            seg = cv.send(who, ACK, dt=dt, seq=(nxt + 7) & 0xFFFFFFFF)
        elif kind == "gap":  # acknowledges data the capture never saw
            seg = cv.send(who, ACK, dt=dt, ack=(dst.snd_nxt + 30) & 0xFFFFFFFF)
        elif kind == "old_ack":
            seg = cv.send(who, ACK, dt=dt, ack=(dst.snd_nxt - 40) & 0xFFFFFFFF)
        elif kind == "far_ack":  # far behind: beyond `absorb_columns`' linear range
            seg = cv.send(who, ACK, dt=dt, ack=(dst.snd_nxt - (1 << 30) - 5) & 0xFFFFFFFF)
        elif kind == "zero":
            seg = cv.send(who, ACK, dt=dt, window=0)
        else:  # "idle": longer than Zeek's inactivity timeout
            seg = cv.send(who, 0, 100, dt=301.0)
        last[who] = seg
    return cv.segments


def _candidate(seg: Segment) -> bool:
    return seg.flags & (SYN | FIN | RST | ACK) == ACK


def _row(seg: Segment, view: Steady) -> tuple[int, int, bool, int, int, int, int, int]:
    from_client = seg.src == view.client.addr and seg.sport == view.client.port
    return (seg.frame, seg.ts_ns, from_client, seg.seq, seg.ack, seg.flags,
            seg.payload_len, seg.window)


def _scalar(tracker: Tracker, view: Steady, run: list[Segment]) -> int:
    return absorb(tracker, view, (_row(seg, view) for seg in run))


def _vector(tracker: Tracker, view: Steady, run: list[Segment]) -> int:
    cols = list(zip(*(_row(seg, view) for seg in run), strict=True))
    frame, ts, fc, seq, ack, flags, plen, win = (np.array(c, dtype=np.int64) for c in cols)
    return absorb_columns(tracker, view, fc.astype(bool), frame, ts, seq, ack, flags, plen,
                          win)


def _far(tracker: Tracker, seg: Segment) -> bool:
    """Is ``seg`` beyond the range `absorb_columns` compares sequence numbers in?"""
    view = tracker.steady(seg.src, seg.sport, seg.dst, seg.dport)
    assert view is not None
    a = view.client if seg.sport == view.client.port else view.server
    return (abs(seq_diff(seg.seq, a.snd_nxt)) >= 1 << 30  # type: ignore[arg-type]
            or abs(seq_diff(seg.ack, a.max_ack)) >= 1 << 30)  # type: ignore[arg-type]


def _vector_to(tracker: Tracker, run: list[Segment], k: int) -> None:
    """`absorb_columns` over ``run`` stops where `absorb` did, at row ``k``, but for
    (its one difference) rows too far for its linear form, which go through `feed` and
    change nothing there either."""
    pos = 0
    while True:
        view = tracker.steady(run[0].src, run[0].sport, run[0].dst, run[0].dport)
        assert view is not None
        pos += _vector(tracker, view, run[pos:]) if pos < len(run) else 0
        if pos >= k:
            assert pos == k, "the vectorised rule stops after the scalar one"
            return
        assert _far(tracker, run[pos]), "the vectorised rule stops before the scalar one"
        assert tracker.feed(run[pos]) == []
        pos += 1


def _state(tracker: Tracker, seg: Segment) -> object:
    """What a step may change: the records as they stand, and both sides if steady."""
    view = tracker.steady(seg.src, seg.sport, seg.dst, seg.dport)
    sides = None if view is None else (view.client, view.server)
    return tracker.snapshot(), sides, tracker.now_ns


def _check(segments: list[Segment], make: Callable[[], Tracker] = new_tracker) -> None:
    plain, scalar, vector = make(), make(), make()
    ends: list[list[object]] = [[], [], []]
    i, runs = 0, 0
    while i < len(segments):
        seg = segments[i]
        view_s = scalar.steady(seg.src, seg.sport, seg.dst, seg.dport)
        assert (view_s is None) == (vector.steady(seg.src, seg.sport, seg.dst, seg.dport)
                                    is None)
        if view_s is None or not _candidate(seg):
            for n, t in enumerate((plain, scalar, vector)):
                ends[n] += t.feed(seg)
            i += 1
            continue
        j = i
        while j < len(segments) and _candidate(segments[j]):
            j += 1
        run = segments[i:j]
        k = _scalar(scalar, view_s, run)
        _vector_to(vector, run, k)
        runs += 1
        for seg_ in run[:k]:
            assert plain.feed(seg_) == [], "an absorbed segment changes something"
        assert _state(plain, seg) == _state(scalar, seg) == _state(vector, seg)
        if k < len(run):  # the plain way for the segment the rule stopped at
            for n, t in enumerate((plain, scalar, vector)):
                ends[n] += t.feed(run[k])
            k += 1
        i += k
    for n, t in enumerate((plain, scalar, vector)):
        ends[n] += t.finish()
    assert runs
    assert ends[1] == ends[0]
    assert ends[2] == ends[0]


@settings(max_examples=150, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=40), ISNS, ISNS, st.booleans())
def test_absorb_paths_stop_where_the_rule_does_and_change_what_feed_does(
        steps: list[tuple[str, str, int]], c_isn: int, s_isn: int,
        timestamps: bool) -> None:
    _check(_conversation(steps, c_isn, s_isn, timestamps))


def test_absorb_paths_without_a_watcher() -> None:
    """A tracker nothing watches (no peers' replays) has steady connections too."""
    steps = [("c", "data", 20), ("s", "ack", 20)] * 10 + [("c", "rtx", 20)] + [
        ("c", "big", 1), ("s", "ack", 1)] * 10
    _check(_conversation(steps, 1000, (1 << 32) - 300, False), Tracker)


def _steady_pair() -> tuple[Tracker, Steady, Conv]:
    cv = Conv()
    cv.handshake()
    cv.c(0, 10, dt=0.001)
    cv.s(ACK, dt=0.001)
    tracker = new_tracker()
    for seg in cv.segments:
        tracker.feed(seg)
    view = tracker.steady("10.0.0.1", 40000, "10.0.0.2", 80)
    assert view is not None
    return tracker, view, cv


def _rule(view: Steady, seg: Segment, last_ts: int) -> bool:
    a, b = (view.client, view.server) if seg.sport == 40000 else (view.server, view.client)
    return changes_nothing(a, b, last_ts, view.peers.inactivity_ns(), seg.ts_ns,
                           (seg.seq, seg.ack, seg.flags, seg.payload_len, seg.window))


CASES: dict[str, tuple[Callable[[Conv], Segment], bool]] = {
    "in-order data": (lambda cv: cv.c(0, 100), True),
    "bare ACK": (lambda cv: cv.s(ACK), True),
    "zero window": (lambda cv: cv.s(ACK, window=0), False),
    "keep-alive": (lambda cv: cv.c(ACK, seq=(cv.client.snd_nxt - 1) & 0xFFFFFFFF), False),
    "retransmission": (lambda cv: cv.c(ACK, 10, seq=(cv.client.snd_nxt - 10)), False),
    "data past a hole": (lambda cv: cv.c(ACK, 10, seq=(cv.client.snd_nxt + 10)), False),
    "ACK of unseen data": (lambda cv: cv.s(ACK, ack=cv.client.snd_nxt + 5), False),
    "FIN": (lambda cv: cv.c(FIN | ACK), False),
    "after Zeek's inactivity": (lambda cv: cv.c(0, 100, dt=300.0), False),
}


def test_rule_cases() -> None:
    """The rule, case by case, on a steady connection (each case from the same start)."""
    for name, (make, expected) in CASES.items():
        tracker, view, cv = _steady_pair()
        last_ts = cv.segments[-1].ts_ns
        seg = make(cv)
        assert _rule(view, seg, last_ts) is expected, name
        assert (tracker.feed(seg) == []) or not expected, name


def test_rule_duplicate() -> None:
    tracker, view, cv = _steady_pair()
    seg = cv.c(0, 100)
    assert _rule(view, seg, cv.segments[-2].ts_ns)
    assert absorb(tracker, view, [_row(seg, view)]) == 1
    again = seg._replace(frame=seg.frame + 1, ts_ns=seg.ts_ns + DUPLICATE_NS)
    assert not _rule(view, again, seg.ts_ns)
    later = again._replace(ts_ns=seg.ts_ns + DUPLICATE_NS + 1)
    assert _rule(view, later, seg.ts_ns) is False  # same bytes again: a retransmission


def test_steady_view_only_when_steady() -> None:
    cv = Conv()
    tracker = new_tracker()
    cv.c(SYN, ack=0)
    tracker.feed(cv.segments[-1])
    assert tracker.steady("10.0.0.1", 40000, "10.0.0.2", 80) is None  # handshake
    cv.s(SYN | ACK)
    cv.c(ACK)
    cv.c(0, 10)
    for seg in cv.segments[1:]:
        tracker.feed(seg)
    view = tracker.steady("10.0.0.2", 80, "10.0.0.1", 40000)  # either direction
    assert view is not None and view.client.port == 40000
    assert tracker.steady("10.0.0.9", 80, "10.0.0.1", 40000) is None  # unknown flow
    tracker.feed(cv.c(FIN | ACK))
    assert tracker.steady("10.0.0.1", 40000, "10.0.0.2", 80) is None  # closing


def test_commit_moves_the_counters_and_the_clock() -> None:
    tracker, view, cv = _steady_pair()
    before = tracker.snapshot()[0]
    segs = [cv.c(0, 100), cv.s(ACK), cv.c(0, 100)]
    assert absorb(tracker, view, [_row(s, view) for s in segs]) == 3
    after = tracker.snapshot()[0]
    assert after.packets == before.packets + 3
    assert after.client_bytes == before.client_bytes + 200
    assert after.last_frame == segs[-1].frame
    assert after.last_ts_ns == tracker.now_ns == segs[-1].ts_ns
