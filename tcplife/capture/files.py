"""Opening a capture source and telling what it holds, by magic bytes only.

Owns: turning a path, ``"-"`` (stdin) or a binary file-like object into a forward-only
byte stream of an uncompressed capture, with gzip removed transparently, plus the format
(``"pcap"`` or ``"pcapng"``) named by the first four bytes. Never seeks, so pipes work:
the bytes read to sniff the magic are handed on in `OpenedCapture.head`.
Must not know about record layouts, link types or packets; errors that make the input
unreadable become `CaptureError`, nothing else is raised from here.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from .errors import CaptureError

Source = str | os.PathLike[str] | BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
MODIFIED_PCAP_MAGIC = b"\x34\xcd\xb2\xa1"  # little-endian a1b2cd34, as Linux wrote it
#: classic pcap magic as it appears on disk -> (struct byte order, nanosecond timestamps)
PCAP_MAGICS: dict[bytes, tuple[str, bool]] = {
    b"\xa1\xb2\xc3\xd4": (">", False),
    b"\xd4\xc3\xb2\xa1": ("<", False),
    b"\xa1\xb2\x3c\x4d": (">", True),
    b"\x4d\x3c\xb2\xa1": ("<", True),
}
#: other formats a capture may arrive in, by their first bytes: what to tell the user
OTHER_FORMATS: dict[bytes, str] = {
    b"BZh": "bzip2-compressed; decompress it first (bunzip2), tcplife reads gzip itself",
    b"\xfd7zX": "xz-compressed; decompress it first (unxz), tcplife reads gzip itself",
    b"\x28\xb5\x2f\xfd": "zstd-compressed; decompress it first (unzstd), tcplife reads gzip "
                        "itself",
    b"\x04\x22\x4d\x18": "lz4-compressed; decompress it first (unlz4), tcplife reads gzip "
                        "itself",
    b"PK\x03\x04": "a zip archive; extract the capture from it first",
    b"snoo": "a snoop capture, not supported; convert it: editcap -F pcap IN OUT",
    b"\x00\x00\x00\x00": "all zeros at the start (a preallocated or wiped file?)",
}
#: errors a read can raise mid-stream: I/O, and gzip damage (BadGzipFile is an OSError)
READ_ERRORS = (OSError, EOFError, zlib.error)


@dataclass
class OpenedCapture:
    """An open, decompressed capture stream positioned after `head`."""

    name: str  #: for messages: the path, ``<stdin>`` or the stream's name
    kind: str  #: "pcap" or "pcapng"
    head: bytes  #: the first bytes of the capture, already consumed from the stream
    read_some: Callable[[int], bytes]  #: read up to n bytes; b"" only at end of input
    gzipped: bool = False
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Close what this layer opened (never a caller's stream or stdin)."""
        while self._closers:
            closer = self._closers.pop()
            with contextlib.suppress(READ_ERRORS):
                closer()


def source_name(source: object) -> str:
    """The human name of a source for messages and warnings."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fsdecode(source)
        return "<stdin>" if path == "-" else path
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<stream>"


class _Prefixed:
    """A read-only stream that first replays `head`, then continues with `read`."""

    def __init__(self, head: bytes, read: Callable[[int], bytes]) -> None:
        self._head = head
        self._read = read

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0:
                data, self._head = self._head + _read_all(self._read), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data
        if n is None or n < 0:
            return _read_all(self._read)
        return self._read(n)


def _read_all(read: Callable[[int], bytes]) -> bytes:
    chunks = []
    while chunk := read(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _reader_of(stream: object) -> Callable[[int], bytes]:
    """Prefer read1 (returns what is available: a live pipe is not held back)."""
    read = getattr(stream, "read1", None) or stream.read  # type: ignore[attr-defined]

    def read_some(n: int) -> bytes:
        data = read(n)
        return data or b""  # a non-blocking raw stream may answer None; treat as the end

    return read_some


def read_exact(read: Callable[[int], bytes], n: int) -> bytes:
    """Read up to n bytes, fewer only at the end of input."""
    chunks = []
    have = 0
    while have < n:
        data = read(n - have)
        if not data:
            break
        chunks.append(data)
        have += len(data)
    return b"".join(chunks)


def _describe_start(head: bytes) -> str:
    if all(32 <= b < 127 for b in head):
        return repr(head.decode("ascii"))
    return "0x" + head.hex()


def open_capture(source: Source) -> OpenedCapture:
    """Open `source` and sniff its format. Raises `CaptureError` if it cannot be read."""
    name = source_name(source)
    closers: list[Callable[[], None]] = []
    if isinstance(source, (str, os.PathLike)):
        if os.fspath(source) == "-":
            stream: object = sys.stdin.buffer
        else:
            try:
                stream = open(source, "rb")  # noqa: SIM115 - closed by OpenedCapture.close
            except OSError as exc:
                raise CaptureError(f"{name}: {exc.strerror or exc}") from None
            closers.append(stream.close)
    elif hasattr(source, "read"):
        stream = source
    else:
        raise CaptureError(f"{name}: not a path or a binary stream ({type(source).__name__})")
    try:
        return _sniff(name, stream, closers)
    except BaseException:
        for closer in reversed(closers):
            closer()
        raise


def _sniff(name: str, stream: object, closers: list[Callable[[], None]]) -> OpenedCapture:
    read = _reader_of(stream)
    try:
        head = read(4)
        if isinstance(head, str):
            raise CaptureError(f"{name}: stream is in text mode; open it with 'rb'")
        if head:
            head = bytes(head) + read_exact(read, 4 - len(head))
    except (*READ_ERRORS, ValueError) as exc:  # ValueError: a closed stream
        raise CaptureError(f"{name}: cannot read: {exc}") from None
    gzipped = head[:2] == GZIP_MAGIC
    if gzipped:
        unzipped = gzip.GzipFile(fileobj=_Prefixed(head, read), mode="rb")  # type: ignore[arg-type]
        closers.append(unzipped.close)
        read = _reader_of(unzipped)
        try:
            head = read_exact(read, 4)
        except READ_ERRORS as exc:
            raise CaptureError(f"{name}: damaged gzip data: {exc}") from None
    after_gzip = " after gzip decompression" if gzipped else ""
    if not head:
        raise CaptureError(f"{name}: empty file{after_gzip}")
    if head in PCAP_MAGICS:
        kind = "pcap"
    elif head == PCAPNG_MAGIC:
        kind = "pcapng"
    elif head == MODIFIED_PCAP_MAGIC:
        raise CaptureError(
            f"{name}: 'modified' (Kuznetzov) pcap is not supported; "
            "convert it with: editcap -F pcap IN OUT"
        )
    elif any(head.startswith(magic) for magic in OTHER_FORMATS):
        what = next(v for k, v in OTHER_FORMATS.items() if head.startswith(k))
        raise CaptureError(f"{name}: not a pcap or pcapng capture{after_gzip}: {what}")
    elif len(head) < 4:
        raise CaptureError(
            f"{name}: too short to be a capture ({len(head)} bytes{after_gzip})"
        )
    else:
        raise CaptureError(
            f"{name}: not a pcap or pcapng capture{after_gzip} "
            f"(starts with {_describe_start(head)})"
        )
    return OpenedCapture(name, kind, head, read, gzipped, closers)
