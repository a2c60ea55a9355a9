"""The fast reader's buffer: the capture after its file header, in one reusable numpy array.

Owns: `Stream` (the buffer, its refills from a regular file or any stream, exactly as
records.py reads, and fixed-width row copies out of it) and the column constants the fast
reader's modules share. Part of `tcplife.capture.fastread` (see its docstring for the
pipeline); knows nothing of record formats or frames.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .files import READ_ERRORS
from .records import CHUNK, _Input

#: spare bytes after the valid data, so that every fixed-width row copy stays in bounds
#: (the widest is a checksum row of up to 128 KiB starting inside the data); what they
#: hold is never used
_SLACK = 1 << 17

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
I64 = np.int64
EMPTY = np.zeros(0, I64)


# --- the buffer -------------------------------------------------------------------------


class Stream:
    """The capture after its file header, held in one reusable numpy buffer.

    ``store[:n]`` is the data from file offset `base` on, followed by `_SLACK` spare bytes.
    `eof` is set when the input ended or a read failed (``inp.error``, as records.py).
    Reads go straight into the buffer when the source has ``readinto``.
    """

    def __init__(
        self, read: Callable[[int], bytes], readinto: Callable[[memoryview], int | None] | None,
        inp: _Input, size: int, base: int, head: bytes,
    ) -> None:
        self.read = read
        self.readinto = readinto
        self.inp = inp
        self.size = size
        self.base = base
        self.eof = False
        self.n = 0
        self._alloc(size)
        self.store[: len(head)] = np.frombuffer(head, np.uint8)
        self.n = len(head)

    def _alloc(self, size: int) -> None:
        store = np.zeros(size + _SLACK, np.uint8)
        if self.n:
            store[: self.n] = self.store[: self.n]
        self.store = store
        self.view = memoryview(store)
        self._rows: dict[int, np.ndarray] = {}

    def rows(self, at: np.ndarray, width: int) -> np.ndarray:
        """``store[a : a + width]`` for each ``a`` in `at`, as a (len(at), width) array."""
        view = self._rows.get(width)
        if view is None:
            view = self._rows[width] = np.ndarray(
                (len(self.store) - width + 1,), np.dtype((np.void, width)), self.store, 0, (1,))
        return view[at].view(np.uint8).reshape(len(at), width)

    def refill(self, pos: int, need: int) -> None:
        """Drop ``store[:pos]`` and read more. With ``readinto`` (a regular file): until the
        buffer is full and holds `need` bytes. Otherwise exactly as records.py's
        `_Input.fill` reads, ``max(CHUNK, missing)`` at a time until `need` bytes are there:
        a stream then ends, fails or waits for more at the same byte as in the plain reader
        (a read that fails loses what it had decompressed, so the read sizes matter)."""
        keep = self.n - pos
        if pos:
            self.store[:keep] = self.store[pos : self.n]
            self.base += pos
            self.n = keep
        want = max(need, self.size)
        while not self.eof and self.n < (need if self.readinto is None else want):
            try:
                if self.readinto is None:
                    data = self.read(max(CHUNK, need - self.n))
                    got = len(data)
                    if self.n + got > len(self.store) - _SLACK:
                        self._alloc(max(self.n + got, 2 * (len(self.store) - _SLACK)))
                    self.store[self.n : self.n + got] = np.frombuffer(data, np.uint8)
                else:
                    if self.n == len(self.store) - _SLACK:  # grow as the data comes
                        self._alloc(min(want, 2 * self.n))
                    room = min(len(self.store) - _SLACK, want) - self.n
                    got = self.readinto(self.view[self.n : self.n + room]) or 0
            except READ_ERRORS as exc:
                self.inp.error = f"read failed ({exc})"
                got = 0
            if not got:
                self.eof = True
                break
            self.n += got
