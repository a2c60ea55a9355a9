"""Several captures read as one, merged by time the way ``mergecap`` merges them.

Owns: the order in which frames of several captures are delivered, and the frame map
(`ReadStats.files` and runs) that says where each delivered frame came from. Frames are
numbered from 1 in that order, whatever order the captures were given in.

The rule is mergecap's (Wireshark 4.0, checked on this machine): repeatedly take the
frame with the earliest time among the next frames of all files; of equal times, the
file given *later* first (`mergecap -w out a b` puts b's frame before a's at the same
instant). Each file's own order is kept, even where its times go backwards.

How it stays cheap: each file's first time is read first (`first_times`: its header and
first record only), and a file is opened only when its first frame comes due. Where files
do not overlap in time (a ring buffer's files, in any order), one file is open at a time
and its frames go out as it reads them: the only per-frame cost is one vectorised
comparison with the next file's first time. Where they overlap, frames go out in runs
(all the frames of one file that come before the next frame of any other), which is a
frame-by-frame merge where they interleave, and a warning names the files. Both readers
merge the same way: `merged_segments` (the plain reader's `Segment`s) and `merged_batches`
(the bulk reader's `Batch`es, split where a run ends), so the fast path still equals the
plain one, stats and frame map included. Each file's `ReadStats` is added in when the
file ends. Must not know about connection state.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

import numpy as np

from tcplife.core.segment import Segment

from .bpf import CaptureFilter, as_filter
from .columns import Batch
from .decode import Decoder
from .errors import CaptureError
from .fastread import read_batches
from .files import Source, open_capture, source_name
from .reader import FrameDecoder, read_segments
from .records import Record, iter_records
from .stats import ReadStats

#: the merge key of a frame: (time, -(position of its file in the arguments))
Key = tuple[int, int]
T = TypeVar("T")


def first_time(source: Source) -> int | None:
    """The time (ns) of `source`'s first frame, read from its head only; None when it
    has none, or when it is a stream that cannot be read twice (it is then opened first
    when merging). Raises `CaptureError` where the capture cannot be read."""
    rewind = None
    if not isinstance(source, (str, os.PathLike)):
        try:
            if not source.seekable():
                return None
            rewind = source.tell()
        except (AttributeError, OSError, ValueError):
            return None
    elif os.fspath(source) == "-":
        return None
    try:
        opened = open_capture(source)
        try:
            first = next(iter_records(opened, ReadStats()), None)
        finally:
            opened.close()
    finally:
        if rewind is not None:
            source.seek(rewind)  # type: ignore[union-attr]
    return None if first is None else first[1]


def first_times(sources: Sequence[Source]) -> list[int | None]:
    """`first_time` of each source (none read for a single source: it needs no order)."""
    if len(sources) < 2:
        return [None] * len(sources)
    return [first_time(s) for s in sources]


def time_order(sources: Sequence[T], firsts: Sequence[int | None]) -> list[T]:
    """`sources` in merge order of their first frames (mergecap's tie rule); those
    without a known first time first, in their order."""
    unknown = [s for s, t in zip(sources, firsts, strict=True) if t is None]
    known = sorted((t, -i) for i, t in enumerate(firsts) if t is not None)
    return unknown + [sources[-i] for _t, i in known]


def overlap_warning(names: Sequence[str]) -> str:
    return (f"captures overlap in time: {', '.join(names)}; their frames were merged by "
            "timestamp (as mergecap does); each row's file and frame (counted within that "
            "file) say where it came from")


# --- cursors: one open file each ---------------------------------------------------------


class _Cursor(Generic[T]):
    """One open capture: its next frame's time (`head`, None at its end), and `take`."""

    name: str
    stats: ReadStats
    head: int | None
    done: int = 0  #: frames taken so far

    def __init__(self, index: int) -> None:
        self.index = index
        self.stats = ReadStats()

    def take(self, limit: Key | None, delta: int) -> list[T]:
        """Frames while their key is before `limit` (all if None); frame numbers
        shifted by `delta`. Sets `head` and `done`."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _RecordCursor(_Cursor[Segment]):
    def __init__(self, index: int, source: Source, capture_filter: CaptureFilter | None,
                 verify_checksums: bool) -> None:
        super().__init__(index)
        self.opened = open_capture(source)
        self.name = self.opened.name
        try:
            self.records: Iterator[Record] = iter_records(self.opened, self.stats)
            self.next: Record | None = next(self.records, None)
        except BaseException:
            self.opened.close()
            raise
        self.decode = FrameDecoder(Decoder(self.stats, self.name, verify_checksums),
                                   capture_filter).decode
        self.head = None if self.next is None else self.next[1]

    def take(self, limit: Key | None, delta: int) -> list[Segment]:
        out: list[Segment] = []
        rec = self.next
        decode, records = self.decode, self.records
        stop_ts, strict = (limit[0], self.index > -limit[1]) if limit else (None, True)
        taken = 0
        while rec is not None:
            ts = rec[1]
            if stop_ts is not None and (ts > stop_ts or (ts == stop_ts and not strict)):
                break
            seg = decode(*rec)
            if seg is not None:
                out.append(seg._replace(frame=seg.frame + delta) if delta else seg)
            taken += 1
            rec = next(records, None)
        self.next = rec
        self.done += taken
        self.head = None if rec is None else rec[1]
        return out

    def close(self) -> None:
        self.opened.close()


class _BatchCursor(_Cursor[Batch]):
    def __init__(self, index: int, source: Source, capture_filter: CaptureFilter | None,
                 verify_checksums: bool, batch_bytes: int) -> None:
        super().__init__(index)
        self.name = source_name(source)
        self.walks: Iterator[tuple[Batch | None, int, np.ndarray]] = read_batches(
            source, self.stats, verify_checksums=verify_checksums, batch_bytes=batch_bytes,
            capture_filter=capture_filter, frame_times=True)  # type: ignore[assignment]
        if self.stats.files:
            self.name = self.stats.files[0]
        self.pos = 0
        self.walk = next(self.walks, None)
        self.head = None if self.walk is None else int(self.walk[2][0])

    def take(self, limit: Key | None, delta: int) -> list[Batch]:
        out: list[Batch] = []
        while self.walk is not None:
            batch, first, times = self.walk
            p = self.pos
            end = len(times)
            if limit is not None:
                rest = times[p:]
                late = rest > limit[0] if self.index > -limit[1] else rest >= limit[0]
                if late.any():
                    end = p + int(np.argmax(late))
            if batch is not None and end > p:
                if p == 0 and end == len(times):
                    piece = batch
                else:
                    a, b = np.searchsorted(batch.frame, (first + p + 1, first + end + 1))
                    piece = batch.rows(int(a), int(b))
                if len(piece):
                    if delta:
                        piece = Batch(piece.book, piece.frame + delta,
                                      *(getattr(piece, c) for c in Batch.COLUMNS[1:]))
                    out.append(piece)
            self.done += end - p
            self.pos = end
            if end < len(times):
                self.head = int(times[end])
                return out
            self.walk = next(self.walks, None)
            self.pos = 0
        self.head = None
        return out

    def close(self) -> None:
        close = getattr(self.walks, "close", None)
        if close is not None:
            close()


# --- the merge ---------------------------------------------------------------------------


def _merge(n: int, firsts: Sequence[int | None], open_cursor: Callable[[int], _Cursor[T]],
           stats: ReadStats) -> Iterator[list[T]]:
    """The k-way merge of the module docstring over cursors opened as they come due."""
    cursors: dict[int, _Cursor[T]] = {}
    file_index: dict[int, int] = {}
    heap: list[tuple[int, int, int]] = []  # (time, -i, i): a cursor's head or a first time
    next_frame = stats.frames + 1
    overlapping: dict[int, None] = {}
    finished: list[ReadStats] = []

    def start(i: int) -> None:
        cursor = cursors[i] = open_cursor(i)
        file_index[i] = stats.add_file(cursor.name)
        for j, other in cursors.items():
            if j != i and other.head is not None and cursor.head is not None:
                overlapping[j] = overlapping[i] = None
        settle(cursor)

    def settle(cursor: _Cursor[T]) -> None:
        if cursor.head is not None:
            heapq.heappush(heap, (cursor.head, -cursor.index, cursor.index))
        else:
            cursor.close()
            finished.append(cursor.stats)

    try:
        for i in range(n):
            if firsts[i] is None:
                start(i)
        for i in range(n):
            if firsts[i] is not None:
                heapq.heappush(heap, (firsts[i], -i, i))  # type: ignore[arg-type]
        while heap:
            _ts, _neg, i = heapq.heappop(heap)
            cursor = cursors.get(i)
            if cursor is None:
                start(i)
                continue
            limit = heap[0][:2] if heap else None
            before = cursor.done
            items = cursor.take(limit, next_frame - (before + 1))
            if cursor.done > before:
                stats.add_run(next_frame, file_index[i], before + 1)
                next_frame += cursor.done - before
            settle(cursor)
            if items:
                yield items
    finally:
        for cursor in cursors.values():
            if cursor.head is not None:
                cursor.close()
    for file_stats in finished:
        stats.merge(file_stats, frame_map=False)
    if overlapping:
        stats.warnings.append(overlap_warning([cursors[i].name for i in sorted(
            overlapping, key=lambda i: file_index[i])]))


def merged_segments(sources: Sequence[Source], stats: ReadStats, *,
                    firsts: Sequence[int | None] | None = None,
                    capture_filter: str | CaptureFilter | None = None,
                    verify_checksums: bool = True) -> Iterator[Segment]:
    """The `Segment`s of several captures merged by time (module docstring), numbered in
    that order; `stats` gets every file's counts and the frame map once read. ``firsts``:
    `first_times` of the sources, if already known. A single source is read as is."""
    flt = as_filter(capture_filter)
    if len(sources) == 1:
        file_stats = ReadStats()
        yield from read_segments(sources[0], file_stats, verify_checksums=verify_checksums,
                                 capture_filter=flt)
        stats.merge(file_stats)
        return
    if firsts is None:
        firsts = first_times(sources)
    for items in _merge(len(sources), firsts, lambda i: _RecordCursor(
            i, sources[i], flt, verify_checksums), stats):
        yield from items


def merged_batches(sources: Sequence[Source], stats: ReadStats, *,
                   firsts: Sequence[int | None] | None = None,
                   capture_filter: str | CaptureFilter | None = None,
                   verify_checksums: bool = True,
                   batch_bytes: int = 2 << 20) -> Iterator[Batch]:
    """`merged_segments` as `Batch`es, read in bulk (`tcplife.capture.fastread`)."""
    flt = as_filter(capture_filter)
    if len(sources) == 1:
        file_stats = ReadStats()
        yield from read_batches(sources[0], file_stats, verify_checksums=verify_checksums,
                                batch_bytes=batch_bytes, capture_filter=flt)
        stats.merge(file_stats)
        return
    if firsts is None:
        firsts = first_times(sources)
    for items in _merge(len(sources), firsts, lambda i: _BatchCursor(
            i, sources[i], flt, verify_checksums, batch_bytes), stats):
        yield from items


__all__ = ["CaptureError", "first_time", "first_times", "merged_batches", "merged_segments",
           "time_order"]
