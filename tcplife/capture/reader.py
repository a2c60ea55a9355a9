"""The public entry of the capture layer: a capture source in, `Segment`s out.

Owns: wiring files -> records -> decode for one source, and the promise that only an
unreadable input raises (`CaptureError`, before anything is yielded); every later problem
is a count or a warning in `ReadStats`. Must not know about connection state.
"""

from __future__ import annotations

from collections.abc import Iterator

from tcplife.core.segment import Segment

from .bpf import CaptureFilter, as_filter
from .decode import Decoder
from .files import OpenedCapture, Source, open_capture
from .records import Record, iter_records
from .stats import ReadStats


def read_segments(
    source: Source, stats: ReadStats | None = None, *, verify_checksums: bool = True,
    capture_filter: str | CaptureFilter | None = None,
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
    ``capture_filter`` (a BPF expression, `tcplife.capture.bpf`): frames it leaves out
    are counted in `ReadStats.filtered_out` and keep their numbers. The file is named in
    ``stats.files`` and its frames mapped to themselves (`ReadStats.locate`).
    """
    if stats is None:
        stats = ReadStats()
    opened = open_capture(source)
    try:
        records = iter_records(opened, stats)
    except BaseException:
        opened.close()
        raise
    stats.add_run(stats.frames + 1, stats.add_file(opened.name), 1)
    decode = FrameDecoder(Decoder(stats, opened.name, verify_checksums), capture_filter)
    return _segments(opened, records, decode)


class FrameDecoder:
    """``decode(frame, ts_ns, linktype, wire_len, data)``: a record -> its `Segment` (None:
    not TCP, undecodable, or left out by the capture filter, counted in
    ``stats.filtered_out``)."""

    def __init__(self, decoder: Decoder,
                 capture_filter: str | CaptureFilter | None = None) -> None:
        self.decoder = decoder
        self.filter = as_filter(capture_filter)
        self.stats = decoder.stats
        self.decode = decoder.decode if self.filter is None else self._filtered

    def _filtered(self, frame: int, ts_ns: int, linktype: int, wire_len: int,
                  data: bytes) -> Segment | None:
        assert self.filter is not None
        if not self.filter.matcher(linktype)(data, wire_len):
            self.stats.filtered_out += 1
            return None
        return self.decoder.decode(frame, ts_ns, linktype, wire_len, data)


def _segments(
    opened: OpenedCapture, records: Iterator[Record], decoder: FrameDecoder
) -> Iterator[Segment]:
    decode = decoder.decode
    try:
        for frame, ts_ns, linktype, wire_len, data in records:
            segment = decode(frame, ts_ns, linktype, wire_len, data)
            if segment is not None:
                yield segment
    finally:
        opened.close()
