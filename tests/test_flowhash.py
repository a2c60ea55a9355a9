"""The one flow hash (tcplife.capture.flowhash) and its two users: the fast path's grouping
of a batch's rows by flow (exact even when the hash collides) and the Dask partitioner
(the same partition for a flow in either direction and in any file)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcplife.capture.columns import AddressBook, Batch
from tcplife.capture.flowhash import flow_hash
from tcplife.core.segment import ACK, Segment
from tcplife.engines import drive
from tcplife.engines.distributed import flow_partition

ADDRS = ["10.0.0.1", "10.0.0.2", "192.168.7.9", "2001:db8::1", "2001:db8::2", "fe80::5",
         "::ffff:10.0.0.1"]
ENDPOINTS = st.tuples(st.sampled_from(ADDRS), st.sampled_from([80, 443, 40000, 65535]))
FLOWS = st.lists(st.tuples(ENDPOINTS, ENDPOINTS), min_size=1, max_size=30)


def _segments(flows: list[tuple[tuple[str, int], tuple[str, int]]]) -> list[Segment]:
    return [Segment(i + 1, i * 1000, 6 if ":" in a else 4, a, ap, b, bp, 0, 0, ACK, 0,
                    100, -1, -1, -1)
            for i, ((a, ap), (b, bp)) in enumerate(flows)]


def _reversed(seg: Segment) -> Segment:
    return seg._replace(src=seg.dst, sport=seg.dport, dst=seg.src, dport=seg.sport)


@settings(max_examples=100, deadline=None)
@given(FLOWS, st.randoms(use_true_random=False))
def test_hash_ignores_direction_and_the_read(flows, rnd) -> None:
    segments = _segments(flows)
    here = flow_hash(Batch.from_segments(segments, AddressBook()))
    # the other direction, read by a book that met the addresses in another order (IPv6
    # keys are numbered by the read)
    book = AddressBook()
    shuffled = ADDRS[:]
    rnd.shuffle(shuffled)
    for a in shuffled:
        book.key_text(a)
    there = flow_hash(Batch.from_segments([_reversed(s) for s in segments], book))
    assert here.dtype == np.uint64
    assert np.array_equal(here, there)
    for nparts in (1, 3, 8):
        part = flow_partition(Batch.from_segments(segments, AddressBook()), nparts)
        assert ((part >= 0) & (part < nparts)).all()
        assert np.array_equal(part, (here % np.uint64(nparts)).astype(np.int64))


def test_hash_tells_flows_apart() -> None:
    flows = [((a, p), ("10.9.9.9", 80)) for a in ADDRS for p in (1, 2, 3)]
    h = flow_hash(Batch.from_segments(_segments(flows), AddressBook()))
    assert len(set(h.tolist())) == len(flows)


def test_v6_hashes_grow_with_the_book() -> None:
    book = AddressBook()
    book.key_text("2001:db8::1")
    first = book.v6_hashes().copy()
    book.key_text("2001:db8::2")
    book.key_text("10.0.0.1")
    both = book.v6_hashes()
    assert len(first) == 1 and len(both) == 2 and both[0] == first[0]
    other = AddressBook()
    other.key_text("2001:db8::2")
    assert other.v6_hashes()[0] == both[1]


def _groups(flow: np.ndarray, segments: list[Segment]) -> set[frozenset[int]]:
    """The rows of each flow number, and the endpoint pair of each, checked together."""
    pairs: dict[int, frozenset[tuple[str, int]]] = {}
    for f, s in zip(flow.tolist(), segments, strict=True):
        pair = frozenset({(s.src, s.sport), (s.dst, s.dport)})
        assert pairs.setdefault(f, pair) == pair, "two flows share a number"
    return {frozenset(np.flatnonzero(flow == f).tolist()) for f in pairs}


@pytest.mark.parametrize("collide", [False, True])
@settings(max_examples=50, deadline=None)
@given(flows=FLOWS)
def test_drive_groups_rows_by_flow_exactly(collide: bool, flows) -> None:
    segments = _segments(flows) + [_reversed(s) for s in _segments(flows)]
    batch = Batch.from_segments(segments, AddressBook())
    with pytest.MonkeyPatch.context() as mp:
        if collide:  # every flow on one hash: the grouping must still be exact
            mp.setattr(drive, "flow_hash", lambda b: np.zeros(len(b), dtype=np.uint64))
        flow, _, _ = drive._flow_ids(batch)
    want: dict[frozenset[tuple[str, int]], set[int]] = {}
    for i, s in enumerate(segments):
        want.setdefault(frozenset({(s.src, s.sport), (s.dst, s.dport)}), set()).add(i)
    assert _groups(flow, segments) == {frozenset(v) for v in want.values()}
