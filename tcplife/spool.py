"""Scratch files through which the stages of a Dask analysis hand each other their data,
instead of through the workers' memory.

Owns: the spool directory (`spool`: a fresh hidden directory under the given parent, every
file in it removed afterwards, after an error too), and the formats the stages write in
it: `write_groups` (a read task's columns, cut into groups, one raw file; a `Piece` names
one group and reads it back alone), `dump`/`undump` (one pickled object a file), and
`save_arrays`/`load_array` (one ``.npy`` file an array, memory-mapped on reading). The
spool must be reachable at the same path by every worker; the files' names are the
callers'. Tasks only create files in the directory, never the directory itself, so a task
still running after the analysis failed cannot leave anything behind. Knows nothing of
events or tables.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
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
        shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class Piece:
    """One group of `write_groups`' file: ``rows`` rows of each column, the columns one
    after the other from byte ``start``."""

    path: str
    columns: tuple[tuple[str, str], ...]  #: (name, dtype) in file order
    start: int
    rows: int

    def load(self) -> dict[str, np.ndarray]:
        out = {}
        offset = self.start
        for name, dtype in self.columns:
            dt = np.dtype(dtype)
            out[name] = (np.fromfile(self.path, dtype=dt, count=self.rows, offset=offset)
                         if self.rows else np.empty(0, dtype=dt))
            offset += dt.itemsize * self.rows
        return out


def write_groups(path: str, groups: list[dict[str, np.ndarray]],
                 names: tuple[str, ...]) -> list[Piece]:
    """The ``names`` columns of each group (all of a group's the same length; a group
    without rows may lack some) written to one file, group after group; a `Piece` each."""
    dtypes: dict[str, str] = {}
    for group in groups:
        if len(group[names[0]]):
            dtypes = {n: group[n].dtype.str for n in names}
            break
    columns = tuple((n, dtypes.get(n, "<i8")) for n in names)
    pieces = []
    offset = 0
    with open(path, "wb") as f:
        for group in groups:
            rows = len(group[names[0]])
            pieces.append(Piece(path, columns, offset, rows))
            if not rows:
                continue
            for name, dtype in columns:
                data = np.ascontiguousarray(group[name], dtype=dtype)
                f.write(data.data)
                offset += data.nbytes
    return pieces


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
