"""The public entry of the capture layer: a capture source in, `Segment`s out.

Owns: wiring files -> records -> decode for one source, and the promise that only an
unreadable input raises (`CaptureError`, before anything is yielded); every later problem
is a count or a warning in `ReadStats`. Must not know about connection state.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..segment import Segment
from .decode import Decoder
from .files import OpenedCapture, Source, open_capture
from .records import Record, iter_records
from .stats import ReadStats


def read_segments(
    source: Source, stats: ReadStats | None = None, *, verify_checksums: bool = True
) -> Iterator[Segment]:
    """Yield the TCP segments of a capture in capture order.

    `source` is a path, ``"-"`` for stdin, or a binary file-like object (pipes welcome:
    nothing seeks). pcap (µs or ns, either byte order), pcapng (every interface, every
    section) and gzip of either are recognised by their magic bytes. `Segment.frame`
    counts every frame from 1, TCP or not, as Wireshark does; `ts_ns` is integer ns.

    The source is opened and its file header checked before this returns, so
    `CaptureError` is raised here, not mid-iteration. `stats` (a fresh one if omitted) is
    updated as frames are read. ``verify_checksums=False`` skips the TCP checksum (about
    half the decode time on full-sized segments); `bad_checksums` then stays 0.
    """
    if stats is None:
        stats = ReadStats()
    opened = open_capture(source)
    try:
        records = iter_records(opened, stats)
    except BaseException:
        opened.close()
        raise
    return _segments(opened, records, Decoder(stats, opened.name, verify_checksums))


def _segments(
    opened: OpenedCapture, records: Iterator[Record], decoder: Decoder
) -> Iterator[Segment]:
    decode = decoder.decode
    try:
        for frame, ts_ns, linktype, wire_len, data in records:
            segment = decode(frame, ts_ns, linktype, wire_len, data)
            if segment is not None:
                yield segment
    finally:
        opened.close()
