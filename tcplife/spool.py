"""Scratch files through which the stages of a Dask analysis hand each other their data,
instead of through the workers' memory.

Owns: the spool directory (`spool`: a fresh hidden directory under the given parent, every
file in it removed afterwards, after an error too), and the formats the stages write in
it: `Appender` (a read task's columns, cut into groups and written chunk by chunk as
they are read, one raw file; a `Piece` names one group and reads it back alone; `InMemory`
the same without a file), `dump`/`undump` (one pickled object a file), and
`save_arrays`/`load_array` (one ``.npy`` file an array, memory-mapped on reading). The
spool must be reachable at the same path by every worker; the files' names are the
callers'. Tasks only create files in the directory, never the directory itself, and the
directory is renamed before it is removed, so a task still running after the analysis
failed cannot leave anything behind. Knows nothing of
events or tables.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the prefix of a spool directory's name (hidden: a dataset's readers skip it)
PREFIX = ".tcplife-spool-"


@contextlib.contextmanager
def spool(parent: str | os.PathLike[str] | None) -> Iterator[str | None]:
    """A new spool directory under ``parent`` (None: no spool, None is yielded), removed
    with its files when the block ends, however it ends."""
    if parent is None:
        yield None
        return
    os.makedirs(parent, exist_ok=True)
    path = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
    try:
        yield path
    finally:
        _remove(path)


#: how many times `_remove` tries before it warns and leaves the directory
_REMOVE_TRIES = 20


def _remove(path: str) -> None:
    """Remove a spool that tasks of a failed analysis may still be writing into.

    A lone `shutil.rmtree` loses that race: a task that creates a file between its listing
    and its final ``rmdir`` leaves the directory behind. So the directory is first renamed
    (atomically; a task that opens a file under the old name from then on gets
    FileNotFoundError), then removed, again while an open that was under way during the
    rename still puts a file in it."""
    gone = path + "-gone"  # unique as ``path`` is, and as hidden
    try:
        os.rename(path, gone)
    except OSError:
        gone = path
    for attempt in range(_REMOVE_TRIES):
        shutil.rmtree(gone, ignore_errors=True)
        if not os.path.lexists(gone):
            return
        time.sleep(0.01 * (attempt + 1))
    warnings.warn(f"tcplife: could not remove the spool directory {gone}", stacklevel=3)



def concatenated(names: tuple[str, ...], chunks: list[dict[str, np.ndarray]]
                 ) -> dict[str, np.ndarray]:
    """Chunks of a group's columns (a chunk may hold some of them) joined, column by
    column, in chunk order; a column no chunk holds is empty (int64)."""
    cols: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for chunk in chunks:
        for name, array in chunk.items():
            cols[name].append(array)
    return {name: (parts[0] if len(parts) == 1 else np.concatenate(parts)) if parts
            else np.empty(0, dtype=np.int64) for name, parts in cols.items()}


@dataclass(frozen=True)
class Piece:
    """One group of an `Appender`'s file: its chunks, each ``(start, rows, layout)``: from
    byte ``start``, ``rows`` values of each column of ``layouts[layout]``, one column after
    the other."""

    path: str
    names: tuple[str, ...]
    layouts: tuple[tuple[tuple[str, str], ...], ...]  #: per layout, (name, dtype) in order
    chunks: tuple[tuple[int, int, int], ...]

    def load(self) -> dict[str, np.ndarray]:
        chunks = []
        if self.chunks:
            with open(self.path, "rb") as f:
                for start, rows, layout in self.chunks:
                    f.seek(start)
                    chunks.append({name: np.fromfile(f, dtype=np.dtype(dtype), count=rows)
                                   for name, dtype in self.layouts[layout]})
        return concatenated(self.names, chunks)


class Appender:
    """Groups of columns (``names``) written chunk by chunk, as they come, to one file;
    `close` gives a `Piece` per group. The writer holds no column."""

    def __init__(self, path: str, groups: int, names: tuple[str, ...]) -> None:
        self.path, self.names = path, names
        self._file = open(path, "wb")  # noqa: SIM115 - closed by `close`
        self._offset = 0
        self._layouts: dict[tuple[tuple[str, str], ...], int] = {}
        self._chunks: list[list[tuple[int, int, int]]] = [[] for _ in range(groups)]

    def add(self, group: int, chunk: dict[str, np.ndarray]) -> None:
        """Columns of equal length (some of ``names``), after the group's earlier ones."""
        layout = tuple((name, array.dtype.str) for name, array in chunk.items())
        k = self._layouts.setdefault(layout, len(self._layouts))
        self._chunks[group].append((self._offset, len(next(iter(chunk.values()))), k))
        for array in chunk.values():
            data = np.ascontiguousarray(array)
            self._file.write(data.data)
            self._offset += data.nbytes

    def close(self) -> list[Piece]:
        self._file.close()
        layouts = tuple(sorted(self._layouts, key=self._layouts.__getitem__))
        return [Piece(self.path, self.names, layouts, tuple(c)) for c in self._chunks]


class InMemory:
    """`Appender`'s interface without a file: `close` gives each group's columns."""

    def __init__(self, groups: int, names: tuple[str, ...]) -> None:
        self.names = names
        self._chunks: list[list[dict[str, np.ndarray]]] = [[] for _ in range(groups)]

    def add(self, group: int, chunk: dict[str, np.ndarray]) -> None:
        self._chunks[group].append(chunk)

    def close(self) -> list[dict[str, np.ndarray]]:
        out = [concatenated(self.names, chunks) for chunks in self._chunks]
        self._chunks = []
        return out


def load(part: dict[str, np.ndarray] | Piece) -> dict[str, np.ndarray]:
    """A group of columns, in memory or spooled."""
    return part.load() if isinstance(part, Piece) else part


def dump(obj: Any, path: str) -> str:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def undump(path: str) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


def save_arrays(prefix: str, arrays: dict[str, np.ndarray]) -> None:
    """Each array as ``PREFIX.NAME.npy``."""
    for name, array in arrays.items():
        np.save(f"{prefix}.{name}.npy", array, allow_pickle=False)


def load_array(prefix: str, name: str) -> np.ndarray:
    """`save_arrays`' array, memory-mapped (read-only)."""
    return np.load(f"{prefix}.{name}.npy", mmap_mode="r", allow_pickle=False)
