"""The fast path (tcplife.engines.drive: steady runs absorbed in bulk) gives the plain
path's tables.

Every capture in sample_pcaps/ and ../shared/corpus/pcaps, and generated conversations with
loss, retransmission, reordering, duplicates and port reuse, is analysed both ways; every
table must be equal, row for row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import tcplife

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "pcaps"
SAMPLES = ROOT / "sample_pcaps"
CAPTURES = sorted((ROOT / "sample_pcaps").glob("*.pcap*")) + (
    sorted(CORPUS.glob("*.pcap*")) if CORPUS.is_dir() else [])


def assert_same(fast: tcplife.Result, plain: tcplife.Result) -> None:
    for table in ("connections", "transitions", "anomalies", "oddities"):
        pd.testing.assert_frame_equal(getattr(fast, table), getattr(plain, table),
                                      obj=table)


# (64, 2048, 16384): the defaults; (1, 3, ...): every run through numpy, three rows per
# numpy call; (..., 5): batches of short runs driven five rows at a time
@pytest.mark.parametrize(("long_run", "window", "short_slice"),
                         [(64, 2048, 16384), (1, 3, 16384), (64, 2048, 5)])
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_fast_path_equals_plain_path(path: Path, long_run: int, window: int,
                                     short_slice: int,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tcplife.engines.drive.LONG_RUN", long_run)
    monkeypatch.setattr("tcplife.engines.drive.WINDOW", window)
    monkeypatch.setattr("tcplife.engines.drive.SHORT_SLICE", short_slice)
    assert_same(tcplife.analyze(path), tcplife.analyze(path, fast=False))


# Generated traffic: several interleaved conversations with retransmissions, duplicates,
# keep-alives, reordering, losses (before and after the capture point), RSTs and port
# reuse, cut into batches anywhere.

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tcplife.capture.columns import AddressBook, Batch  # noqa: E402
from tcplife.core.events import ConnectionEnded  # noqa: E402
from tcplife.core.options import Options  # noqa: E402
from tcplife.core.segment import Segment  # noqa: E402
from tcplife.engines.drive import drive  # noqa: E402
from tcplife.engines.wiring import new_tracker  # noqa: E402

from builder import ACK, FIN, RST, SYN, Conv, Host  # noqa: E402

OPS = st.sampled_from(["c_data", "s_data", "c_ack", "s_ack", "c_rtx", "s_rtx", "c_keep",
                       "dup", "swap", "c_lost", "c_fin", "s_fin", "s_rst", "reuse",
                       "c_big", "wait", "s_overlap", "c_miss"])


def _conversation(ops: list[str], port: int, t0: float) -> list[Segment]:
    # TCP timestamps on every other conversation (the first, the third)
    cv = Conv(client=Host("10.0.0.1", port, 1000 + port), t=t0, timestamps=port % 2 == 0)
    cv.handshake()
    for op in ops:
        who, _, what = op.partition("_")
        send = cv.c if who == "c" else cv.s
        host = cv.client if who == "c" else cv.server
        if what == "data":
            send(0, 100, dt=0.001)
        elif what == "big":
            send(0, 1448, dt=0.0001)
        elif what == "ack":
            send(ACK, dt=0.001)
        elif what == "rtx":
            send(0, 100, seq=(host.snd_nxt - 100) & 0xFFFFFFFF, dt=0.2)
        elif what == "overlap":  # 50 old bytes and 100 new ones
            start = (host.snd_nxt - 50) & 0xFFFFFFFF
            send(0, 150, seq=start, dt=0.001)
            host.snd_nxt = (start + 150) & 0xFFFFFFFF
        elif what == "keep":
            send(ACK, seq=(host.snd_nxt - 1) & 0xFFFFFFFF, dt=1)
        elif what == "lost":
            send(0, 100, lost="after", dt=0.001)
        elif what == "miss":  # delivered, not captured: the peer's ACKs leave a gap
            send(0, 100, lost="unseen", dt=0.001)
        elif what == "fin":
            send(FIN, dt=0.001)
        elif what == "rst":
            send(RST | ACK, dt=0.001)
        elif op == "dup" and cv.segments:
            last = cv.segments[-1]
            cv.segments.append(last._replace(ts_ns=last.ts_ns + 10_000))
        elif op == "swap" and len(cv.segments) > 4:
            a, b = cv.segments[-2], cv.segments[-1]
            cv.segments[-2:] = [b._replace(ts_ns=a.ts_ns), a._replace(ts_ns=b.ts_ns)]
        elif op == "reuse":
            cv.client.isn = cv.client.snd_nxt = (cv.client.snd_nxt + 77777) & 0xFFFFFFFF
            cv.server.isn = cv.server.snd_nxt = (cv.server.snd_nxt + 55555) & 0xFFFFFFFF
            cv.client.rcv_nxt = cv.server.rcv_nxt = None
            cv.c(SYN, ack=0, dt=0.5)
            cv.s(SYN | ACK)
            cv.c(ACK)
        elif op == "wait":
            cv.wait(30)
    return cv.segments


def _events_plain(segments: list[Segment]) -> list[object]:
    tracker = new_tracker()
    out: list[object] = []
    for seg in segments:
        out.extend(tracker.feed(seg))
    out.extend(tracker.finish())
    return out


def _events_fast(segments: list[Segment], size: int) -> list[object]:
    tracker, out, book = new_tracker(), [], AddressBook()
    batches = [Batch.from_segments(segments[i:i + size], book)
               for i in range(0, len(segments), size)]
    drive(batches, tracker, out.extend)
    out.extend(tracker.finish())
    return out


# (1, 2, ...): numpy; (..., 3): batches of short runs in slices of three rows
@pytest.mark.parametrize(("long_run", "window", "short_slice"),
                         [(64, 2048, 16384), (1, 2, 16384), (64, 2048, 3)])
@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(OPS, max_size=25), min_size=1, max_size=3),
       st.integers(min_value=1, max_value=40))
def test_fast_path_events_equal_plain_path(long_run: int, window: int, short_slice: int,
                                           convs: list[list[str]], size: int) -> None:
    import tcplife.engines.drive as drive_mod

    saved = drive_mod.LONG_RUN, drive_mod.WINDOW, drive_mod.SHORT_SLICE
    drive_mod.LONG_RUN, drive_mod.WINDOW = long_run, window
    drive_mod.SHORT_SLICE = short_slice
    try:
        _check_equal(convs, size)
    finally:
        drive_mod.LONG_RUN, drive_mod.WINDOW, drive_mod.SHORT_SLICE = saved


def _check_equal(convs: list[list[str]], size: int) -> None:
    segments: list[Segment] = []
    for i, ops in enumerate(convs):
        segments += _conversation(ops, 40000 + i, 1_700_000_000.0 + 0.0003 * i)
    segments.sort(key=lambda s: s.ts_ns)
    segments = [s._replace(frame=i + 1) for i, s in enumerate(segments)]
    assert _events_fast(segments, size) == _events_plain(segments)


@pytest.mark.parametrize("ops", [["c_miss", "s_ack", "s_ack"],
                                 ["c_data", "c_miss", "s_ack", "s_data", "c_ack", "s_ack"]])
@pytest.mark.parametrize("size", [2, 100])
def test_runs_stop_at_an_ack_of_data_the_capture_missed(ops: list[str], size: int,
                                                         monkeypatch) -> None:
    """The server acknowledges client data the capture dropped: Zeek records a gap (``G``)
    there, so that ACK goes through `feed`, not into a run (every run through numpy)."""
    monkeypatch.setattr("tcplife.engines.drive.LONG_RUN", 1)
    monkeypatch.setattr("tcplife.engines.drive.WINDOW", 2)
    segments = _conversation(ops, 40000, 1_700_000_000.0)
    plain = _events_plain(segments)
    assert "G" in plain[-1].record.peers.zeek_history  # type: ignore[attr-defined]
    assert _events_fast(segments, size) == plain


@pytest.mark.parametrize("name", ["many_short.client.pcap", "port_reuse_close_wait.client.pcap",
                                  "port_reuse_after_time_wait.client.pcap"])
@pytest.mark.parametrize("size", [1, 2, 5, 1000])
def test_connections_in_pieces_equal_the_whole_table(name: str, size: int) -> None:
    """``stream_connections``: the table comes in frames of ``size`` rows whose
    concatenation is the table `analyze` builds whole (tcp_stream_match's "merged", which
    looks at other rows, included: port_reuse_close_wait has it)."""
    whole = tcplife.analyze(SAMPLES / name).connections
    streamed = tcplife.analyze(SAMPLES / name, stream_connections=True)
    assert streamed.connections.empty and list(streamed.connections) == list(whole)
    pieces = list(streamed.iter_connections(size))
    assert all(len(p) <= size for p in pieces)
    pd.testing.assert_frame_equal(pd.concat(pieces), whole)
    pd.testing.assert_frame_equal(pd.concat(tcplife.analyze(SAMPLES / name)
                                            .iter_connections(size)), whole)


# ConnectionEnded carries the transitions and notes the detectors judge it by: exactly
# what a consumer that kept every Transition (dropping retracted ones) and Oddity of the
# connection would have, the same objects, in (ts_ns, tid) order.
class _Accumulator:
    def __init__(self) -> None:
        self.trans: dict[int, dict[int, object]] = {}
        self.notes: dict[int, list[object]] = {}
        self.ended = 0

    def __call__(self, ev: object) -> None:
        from tcplife.core.events import ConnectionEnded, Oddity, Retraction, Transition

        if isinstance(ev, Transition):
            self.trans.setdefault(ev.conn_id, {})[ev.tid] = ev
        elif isinstance(ev, Retraction):
            del self.trans[ev.conn_id][ev.tid]
        elif isinstance(ev, Oddity):
            self.notes.setdefault(ev.conn_id, []).append(ev)
        elif isinstance(ev, ConnectionEnded):
            conn_id = ev.record.conn_id
            kept = sorted(self.trans.pop(conn_id, {}).values(),
                          key=lambda t: (t.ts_ns, t.tid))  # type: ignore[attr-defined]
            assert len(ev.transitions) == len(kept)
            assert all(a is b for a, b in zip(ev.transitions, kept, strict=True))
            notes = self.notes.pop(conn_id, [])
            assert len(ev.notes) == len(notes)
            assert all(a is b for a, b in zip(ev.notes, notes, strict=True))
            self.ended += 1


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_connection_ended_carries_its_transitions_and_notes(path: Path) -> None:
    acc = _Accumulator()
    result = tcplife.analyze(path, on_event=acc)
    assert acc.ended == len(result.connections)
    assert not any(acc.trans.values()) and not any(acc.notes.values())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(OPS, max_size=25), min_size=1, max_size=3))
def test_connection_ended_carries_its_transitions_generated(convs: list[list[str]]) -> None:
    segments: list[Segment] = []
    for i, ops in enumerate(convs):
        segments += _conversation(ops, 40000 + i, 1_700_000_000.0 + 0.0003 * i)
    segments.sort(key=lambda s: s.ts_ns)
    acc = _Accumulator()
    for ev in _events_plain([s._replace(frame=i + 1) for i, s in enumerate(segments)]):
        acc(ev)
    assert acc.ended >= 1
    assert not any(acc.trans.values()) and not any(acc.notes.values())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 6), st.lists(st.integers(0, 6), max_size=3)),
                max_size=30))
def test_stream_match_from_compact_streams(rows: list[tuple[int, list[int]]]) -> None:
    """The collector keeps ``tcp_streams`` only where it is not just ``tcp_stream``; the
    "merged" count over all rows must be the one the full texts give."""
    import numpy as np

    from tcplife.output.collect import stream_match, stream_owners

    texts, first, other = [], [], {}
    for i, (stream, more) in enumerate(rows):
        streams = sorted({stream, *more} - {-1}) if stream >= 0 else []
        text = ",".join(map(str, streams))
        texts.append(text)
        first.append(stream if stream >= 0 else -1)
        if text != str(first[-1]):
            other[i] = text
    brute: dict[str, int] = {}
    for text in texts:
        for s in text.split(",") if text else ():
            brute[s] = brute.get(s, 0) + 1
    owners = stream_owners(np.array(first, dtype=np.int64), other)
    assert stream_match(texts, owners) == stream_match(texts, brute)
    assert {k: v for k, v in brute.items() if v > 1} == owners


@pytest.mark.parametrize("short_slice", [2, 3, 16384])
@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(OPS, max_size=25), min_size=1, max_size=3),
       st.integers(min_value=1, max_value=40), st.randoms(use_true_random=False))
def test_fast_path_with_timestamps_stepping_back(short_slice: int, convs: list[list[str]],
                                                 size: int, rng: Any) -> None:
    """Adjacent segments whose stamps are swapped (capture order kept: a step back), also
    where a batch of short runs is driven in slices: the events equal the plain path's.
    (These steps are too small to move a timer: the bound a slice puts on absorbing is
    checked by tests/test_distributed.py's jittered seeds, which fail without it.)"""
    import tcplife.engines.drive as drive_mod

    segments: list[Segment] = []
    for i, ops in enumerate(convs):
        segments += _conversation(ops, 40000 + i, 1_700_000_000.0 + 0.0003 * i)
    segments.sort(key=lambda s: s.ts_ns)
    ts = [s.ts_ns for s in segments]
    for i in range(len(ts) - 1):
        if rng.random() < 0.2:
            ts[i], ts[i + 1] = ts[i + 1] + 1, ts[i]
    segments = [s._replace(frame=i + 1, ts_ns=t) for i, (s, t) in enumerate(
        zip(segments, ts, strict=True))]
    saved = drive_mod.SHORT_SLICE
    drive_mod.SHORT_SLICE = short_slice
    try:
        assert _events_fast(segments, size) == _events_plain(segments)
    finally:
        drive_mod.SHORT_SLICE = saved


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_fast_path_with_a_time_wait_taken_on_its_timestamp(size: int) -> None:
    """A bulk transfer with TCP timestamps (absorbed in runs), the server's TIME_WAIT, and a
    SYN reusing the 4-tuple with a lower ISN but a newer TSval: the fast path takes it at
    the SYN as the plain path does."""
    import tcplife.engines.drive as drive_mod

    cv = Conv(timestamps=True)
    cv.handshake()
    for _ in range(300):
        cv.c(0, 1448, dt=0.0001)
        cv.s(ACK, dt=0.0001)
    cv.s(FIN)
    cv.c(ACK)
    cv.c(FIN)
    cv.s(ACK)
    cv.wait(1)
    cv.client.isn = cv.client.snd_nxt = (cv.client.snd_nxt - 10_000_000) & 0xFFFFFFFF
    cv.client.rcv_nxt = cv.server.rcv_nxt = None
    cv.c(SYN, ack=0)
    cv.s(SYN | ACK)
    cv.c(ACK)
    for _ in range(100):
        cv.c(0, 1448, dt=0.0001)
        cv.s(ACK, dt=0.0001)
    saved = drive_mod.LONG_RUN
    drive_mod.LONG_RUN = 8
    try:
        fast = _events_fast(cv.segments, size)
    finally:
        drive_mod.LONG_RUN = saved
    assert fast == _events_plain(cv.segments)
    assert any(getattr(e, "event", "") == "recv SYN (new incarnation: newer timestamp)"
               for e in fast)


def test_fast_path_keeps_the_tracker_clock() -> None:
    """The bulk paths move `Tracker.now_ns` as `feed` does, so a tracker driven in bulk
    and finished without an explicit end takes its records' end states at the same
    instant as one fed segment by segment (it stayed at the last segment fed one by one,
    before the bulk run: here a TIME_WAIT of another connection expired in between)."""
    first = Conv(client=Host("10.0.0.1", 40001, 1000))
    first.handshake()
    first.c(FIN)
    first.s(FIN)
    first.c(ACK)  # client TIME_WAIT from here, 1 s (time_wait=1) ...
    bulk = Conv(client=Host("10.0.0.1", 40002, 5000))
    bulk.t = first.t
    bulk.handshake()
    for _ in range(400):  # ... while a steady transfer runs 4 s, the capture ending in it
        bulk.s(0, 1000, dt=0.005)
        bulk.c(ACK, dt=0.005)
    segs = sorted(first.segments + bulk.segments, key=lambda s: s.ts_ns)
    segs = [s._replace(frame=i + 1) for i, s in enumerate(segs)]
    fast, plain = new_tracker(Options(time_wait=1)), new_tracker(Options(time_wait=1))
    fast_out: list[Any] = []
    drive([Batch.from_segments(segs, AddressBook())], fast, fast_out.extend)
    plain_out = [ev for seg in segs for ev in plain.feed(seg)]
    assert fast.now_ns == plain.now_ns == segs[-1].ts_ns
    ended = [sorted((e.record.conn_id, e.record.client_state, e.record.server_state)
                    for e in out if isinstance(e, ConnectionEnded))
             for out in (fast_out + fast.finish(), plain_out + plain.finish())]
    assert ended[0] == ended[1]
