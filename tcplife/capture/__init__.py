"""Capture sources: bytes on disk or stdin -> frames -> decoded TCP `Segment`s.

Owns: file formats (pcap, pcapng, gzip), link types, IP/TCP decoding, read statistics.
Must not know about connection state.
"""

from .errors import CaptureError
from .reader import read_segments
from .stats import ReadStats

__all__ = ["CaptureError", "ReadStats", "read_segments"]
