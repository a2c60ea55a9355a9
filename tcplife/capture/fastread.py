"""The fast capture reader: a capture source in, `Batch`es of TCP segments (numpy columns) out.

Owns: `read_batches` and its promise: concatenating ``batch.segments()`` over its batches
gives exactly what `read_segments` yields for the same input, its `ReadStats` end up equal
field by field (warnings included, in the same order), and it raises `CaptureError` exactly
when `read_segments` does. Owns how that is made fast, and nothing else: the file formats
stay defined by records.py (whose header checks, `_Input` warnings and `_interface` parser
are reused), frame decoding by decode.py (whose `Decoder` decodes every frame not decoded
in bulk here), the batch by columns.py. Knows nothing of connection state.

This module wires the pipeline below; its parts live beside it: the buffer in
fastbuffer.py (`Stream`), the record walk (1.) in fastwalk.py (`PcapWalker`,
`PcapngWalker`), the bulk decode and the rest (2., 3.) in fastdecode.py (`BulkDecoder`).

Every source goes through one pipeline: the capture after its file header is read into one
reusable numpy buffer, the complete records in it are walked and decoded in bulk, and so
on. An uncompressed regular file (a path, ``"-"`` redirected from a file, a file object)
is read straight into the buffer `_UNIT` bytes (4 MiB, or ``batch_bytes`` if smaller) at a
time, so that every pass over them hits the CPU cache, and a batch is yielded per
``batch_bytes`` of capture (the compiled reader, whose passes cost less than the joining
of batches, reads `_UNIT_COMPILED` at a time: a default batch, nothing to join). Any
other source (gzip, a pipe, any stream) is read exactly as records.py reads it (same
sizes, at the same moments), so it ends, fails or waits for more input at the same byte;
from a pipe or stream, a batch is yielded after every read, before the next one may wait
(a live ``tcpdump -w - |`` is not held back).

1. **Record walk in numpy.** pcap: every byte position whose 2 bytes equal the high half of
   the next record's ``ts_sec`` is a candidate header; pcapng: every 4-aligned word that
   reads 6 (an Enhanced Packet Block). Each candidate's length says where its successor
   starts; candidates without a predecessor are pruned, and the chain is checked link by
   link from the known start, so the records kept are exactly those a sequential walk
   finds. Where the chain breaks (another pcapng block type, a jump of ``ts_sec``'s high
   half, an odd interface timestamp resolution, damage, the buffer's end), records are
   walked one by one with records.py's checks, order and wording, then numpy takes over
   again (less eagerly after walks that found little). Damage ends the read where and with
   the warning the plain reader gives.
2. **Bulk decode.** The first 128 bytes of every frame are copied into one array (one row
   each; link header, IPv4 header with options, TCP header fit), and the fields and every
   counter are computed column-wise, as decode.py computes them: undecodable, non-TCP,
   fragments, truncated (snap length), unverified and bad checksums. The TCP checksum is
   one ``np.add.reduceat`` over 32-bit words per segment (addresses and segment are one
   range; little-endian words, which mod 0xFFFF is 256 times the big-endian sum); the
   window-scale option of SYNs and the timestamp option of every segment are
   `decode.window_scale`'s and `decode.timestamps`' walks, vectorised, with Linux's
   option layouts read directly. Link types in bulk: Ethernet with up to two VLAN tags,
   Linux SLL and SLL2, NULL/LOOP, raw IP (1, 113, 276, 0, 108, 12, 14, 101, 228, 229);
   IPv4 with or without options; IPv6 without extension headers.
3. **The rest one by one**: unknown link types, three or more VLAN tags, IPv4 first
   fragments (MF) and IP length 0 (TSO), IPv6 extension headers and length 0, frames
   shorter on the wire than their IP length go through the plain `Decoder`, in frame order
   (walk warnings re-ordered around its own), and are merged back by frame number.

**The compiled reader.** Where `creader.compiled_reader` gives it (``tcplife._engine``
loaded and ``TCPLIFE_CORE`` is not ``python``), C loops replace the numpy ones of 1.
and 2. (engine/read_walk.c: a sequential walk of every record records.py takes without
a word; engine/decode.c: the frames 2. takes, decoded as decode.py does); the rest (the
one-by-one walk, warnings, 3.) is the same Python, and so is the output, column for
column.

A pcapng time beyond int64 nanoseconds (after the year 2262, or before 1678) is replaced
by the previous packet's, with records.py's warning, so every time fits a `Batch`. Where a
regular file fails to read (an I/O error), the plain reader and this one may stop at
different records: they read it in differently sized pieces.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Callable, Iterator

import numpy as np

from .bpf import CaptureFilter, as_filter
from .columns import AddressBook, Batch
from .creader import compiled_reader
from .decode import Decoder
from .fastbuffer import INT64_MAX, INT64_MIN, Stream
from .fastdecode import BulkDecoder
from .fastwalk import PcapngWalker, PcapWalker, Records, Walker
from .files import OpenedCapture, Source, open_capture
from .records import _Input, _pcap_header, _pcapng_first_block
from .stats import ReadStats

__all__ = ["read_batches"]

#: bytes read and decoded at a time (a batch is made of several when batch_bytes is larger):
#: small enough for every pass over them to find them in the CPU cache
_UNIT = 4 << 20
_UNIT_COMPILED = 8 << 20


# --- entry ----------------------------------------------------------------------------


def read_batches(
    source: Source,
    stats: ReadStats | None = None,
    *,
    verify_checksums: bool = True,
    batch_bytes: int = 8 << 20,
    capture_filter: str | CaptureFilter | None = None,
    frame_times: bool = False,
    core: str | None = None,
) -> Iterator[Batch]:
    """Yield the TCP segments of a capture as `Batch`es, in capture order.

    Same arguments, same `CaptureError` (raised here, before anything is yielded) and same
    `stats` as `read_segments`; see the module docstring for the equivalence promised.
    Every batch holds at least one segment and all share one `AddressBook`. A batch covers
    about ``batch_bytes`` (at least 4 KiB) of capture; from a pipe or other stream that is
    not a regular file, whatever one read brought (nothing is held back waiting for more).

    ``frame_times=True`` (for `tcplife.capture.merge`) yields instead, per walk of the
    buffer, ``(batch or None, frames before it, time of each of its frames)``: the times
    of every frame the walk found, TCP or not, kept by the filter or not, in order.

    `core` picks who walks and decodes in bulk (`creader.compiled_reader`; None:
    ``TCPLIFE_CORE``): the compiled reader when the engine loaded (``"auto"``), the numpy
    code (``"python"``), or the compiled reader or `EngineUnavailable` (``"c"``); the
    output is the same.
    """
    if stats is None:
        stats = ReadStats()
    engine = compiled_reader(core)
    size = max(int(batch_bytes), 1 << 12)
    regular = _is_regular_file(source)
    opened = open_capture(source)
    closer: Callable[[], None] | None = None
    try:
        inp = _Input(opened, ReadStats())  # its warnings are collected, then re-ordered
        walker: Walker
        if opened.kind == "pcap":
            endian, nano, linktype, snaplen = _pcap_header(opened)
            head = b""
            walker = PcapWalker(inp, endian, nano, linktype, snaplen, engine)
        else:
            head = _pcapng_first_block(opened)
            walker = PcapngWalker(inp, head, engine)
        base = 24 if opened.kind == "pcap" else 0
        readinto = None
        if regular and not opened.gzipped:
            readinto, closer = _readinto(source, base + len(head))
        unit = _UNIT if engine is None else _UNIT_COMPILED
        stream = Stream(opened.read_some, readinto, inp, min(size, unit), base, head)
    except BaseException:
        if closer is not None:
            closer()
        opened.close()
        raise
    stats.add_run(stats.frames + 1, stats.add_file(opened.name), 1)
    bulk = BulkDecoder(stats, Decoder(stats, opened.name, verify_checksums), AddressBook(),
                        verify_checksums, as_filter(capture_filter), engine)
    if frame_times:
        return _timed_batches(opened, closer, stream, walker, bulk)  # type: ignore[return-value]
    return _batches(opened, closer, stream, walker, bulk, size if regular else 0)


def _is_regular_file(source: Source) -> bool:
    """Whether reads of `source` come from a regular file (full reads until its end)."""
    try:
        if isinstance(source, (str, os.PathLike)):
            if os.fspath(source) != "-":
                return stat.S_ISREG(os.stat(source).st_mode)
            fd = sys.stdin.buffer.fileno()
        else:
            fd = source.fileno()
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except (OSError, ValueError, AttributeError, TypeError):  # io.UnsupportedOperation too
        return False


def _readinto(
    source: Source, consumed: int
) -> tuple[Callable[[memoryview], int | None] | None, Callable[[], None] | None]:
    """A ``readinto`` that continues where the opened capture stands (None: use its
    read_some instead), and what closes it.

    A path is opened again, unbuffered, at `consumed` (the bytes the header checks took),
    which saves a copy per read; a file object (stdin too) is read through its own
    ``readinto``, which continues where its ``read1`` left off.
    """
    if isinstance(source, (str, os.PathLike)):
        if os.fspath(source) == "-":
            return getattr(sys.stdin.buffer, "readinto", None), None
        try:
            raw = open(source, "rb", buffering=0)  # noqa: SIM115 - closed with the capture
        except OSError:
            return None, None
        try:
            raw.seek(consumed)
        except OSError:
            raw.close()
            return None, None
        return raw.readinto, raw.close
    return getattr(source, "readinto", None), None




def _walks(
    opened: OpenedCapture, closer: Callable[[], None] | None, stream: Stream,
    walker: Walker, bulk: BulkDecoder,
) -> Iterator[tuple[Records, Batch | None, int, bool]]:
    """Walk and decode what the buffer holds, then refill it, until the capture ends: per
    walk, its records, their batch (None: no TCP in them), the position the walk reached
    in the buffer (before the refill) and whether it was the last. Closes the capture
    when done or abandoned."""
    try:
        pos = 0
        while True:
            records, pos, need, done = walker.walk(stream, pos)
            yield records, bulk.batch(stream, records, walker.pending), pos, done
            if done:
                return
            stream.refill(pos, need)
            pos = 0
    finally:
        if closer is not None:
            closer()
        opened.close()


def _batches(
    opened: OpenedCapture, closer: Callable[[], None] | None, stream: Stream,
    walker: Walker, bulk: BulkDecoder, batch_bytes: int,
) -> Iterator[Batch]:
    """`_walks`' batches, joined: a batch per `batch_bytes` of capture at most (0: after
    every refill, before a read that may block)."""
    parts: list[Batch] = []
    start = stream.base
    with contextlib.closing(_walks(opened, closer, stream, walker, bulk)) as walks:
        for _records, batch, pos, done in walks:
            if batch is not None:
                parts.append(batch)
            # another buffer's worth would take the batch past batch_bytes: yield it now
            if parts and (done or stream.base + pos - start + stream.size > batch_bytes):
                yield parts[0] if len(parts) == 1 else Batch.joined(parts)
                parts = []
                start = stream.base + pos


def _timed_batches(
    opened: OpenedCapture, closer: Callable[[], None] | None, stream: Stream,
    walker: Walker, bulk: BulkDecoder,
) -> Iterator[tuple[Batch | None, int, np.ndarray]]:
    """`_walks`' batches one walk at a time, each with the times of all its frames."""
    with contextlib.closing(_walks(opened, closer, stream, walker, bulk)) as walks:
        for records, batch, _pos, _done in walks:
            times = records.ts_ns
            if records.huge:
                times = times.copy()
                for row, ts in records.huge.items():
                    times[row] = min(max(ts, INT64_MIN), INT64_MAX)
            if len(times) or batch is not None:
                yield batch, records.first_frame, times
