"""Counting the bytes of captures as they are read, for progress reports.

Owns: `watch`, which wraps capture sources in read-only file objects that report
``(bytes read so far, total bytes or None)`` to a callback, throttled. The capture layer
reads them like any binary stream (it never seeks), so it needs no change; a path is
opened lazily, when the reader first asks, and closed at its end. Knows nothing of
terminals: drawing a bar is the caller's business (the CLI uses rich).
"""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any

from tcplife.capture import CaptureError

Progress = Callable[[int, "int | None"], None]

#: Report at most every this many bytes (and at the end of each file).
STEP = 1 << 20


def _size(stream: Any) -> int | None:
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    try:
        return max(info.st_size - stream.tell(), 0)
    except (OSError, ValueError):
        return info.st_size


class _Counted(io.RawIOBase):
    """A read-only view of a path or binary stream that counts what is read from it."""

    def __init__(self, source: Any, shared: _Shared) -> None:
        super().__init__()
        self._source = source
        self._stream: IO[bytes] | None = None
        self._owned = False  # opened here (a path), so closed here
        self._ended = False
        self._shared = shared
        path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
        self.name = ("<stdin>" if path == "-" else path) if path is not None else \
            getattr(source, "name", "<stream>")

    def _open(self) -> IO[bytes]:
        if self._stream is None:
            if isinstance(self._source, (str, os.PathLike)):
                if os.fspath(self._source) == "-":
                    self._stream = sys.stdin.buffer
                else:
                    try:
                        self._stream = open(self._source, "rb")  # noqa: SIM115
                    except OSError as exc:
                        raise CaptureError(f"{self.name}: {exc.strerror or exc}") from None
                    self._owned = True
            else:
                self._stream = self._source
        return self._stream

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._open().fileno()

    def readinto(self, buffer: Any) -> int:
        if self._ended:
            return 0
        stream = self._open()
        reader = getattr(stream, "readinto1", None) or getattr(stream, "readinto", None)
        if reader is not None:
            n = reader(buffer) or 0
        else:
            data = stream.read(len(buffer)) or b""
            n = len(data)
            buffer[:n] = data
        if n == 0:  # the end: let go of the file now, not when the wrapper is collected
            self._ended = True
            self._release()
        self._shared.advance(n)
        return n

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def _release(self) -> None:
        if self._owned and self._stream is not None:
            self._stream.close()
            self._owned = False

    def close(self) -> None:
        self._release()
        super().close()


class _Shared:
    """Running count over all the files of one read."""

    def __init__(self, total: int | None, report: Progress) -> None:
        self.done, self.total, self.report, self._next = 0, total, report, 0

    def advance(self, n: int) -> None:
        self.done += n
        if n == 0 or self.done >= self._next:
            self._next = self.done + STEP
            self.report(self.done, self.total)


def total_size(sources: Sequence[Any]) -> int | None:
    """The bytes to read from all sources, or None if one of them has no known size
    (a pipe, a socket)."""
    total = 0
    for source in sources:
        if isinstance(source, (str, os.PathLike)):
            if os.fspath(source) == "-":
                size = _size(sys.stdin.buffer)
            else:
                try:
                    size = os.stat(source).st_size
                except OSError:
                    size = 0  # the reader will report it
        else:
            size = _size(source)
        if size is None:
            return None
        total += size
    return total


def watch(sources: Sequence[Any], report: Progress) -> list[Any]:
    """The sources wrapped so that reading them calls ``report(done, total)``."""
    shared = _Shared(total_size(sources), report)
    return [_Counted(source, shared) for source in sources]
