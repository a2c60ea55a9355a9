"""Scratch files through which the stages of a Dask analysis hand each other their data,
instead of through the workers' memory.

Owns: the spool directory (`spool`: a fresh hidden directory under the given parent, every
file in it removed afterwards, after an error too), and the formats the stages write in
it: `Appender` (a read task's columns, cut into groups and written chunk by chunk as
they are read, one raw file; a `Piece` names one group and reads it back alone),
`dump`/`undump` (one pickled object a file), and `save_arrays`/`load_array` (one ``.npy``
file an array, memory-mapped on reading). Such a spool must be reachable at the same path
by every worker; the files' names are the callers'. Tasks only create files in the
directory, never the directory itself, and the directory is renamed before it is removed,
so a task still running after the analysis failed cannot leave anything behind.

Where no directory is shared (a caller's cluster, no directory given), each worker spools
in its own scratch directory (`WorkerSpool`, `worker_directory`, `remove_worker_spool`):
there `Appender` gives `WorkerPiece`s, handles that the worker holding them reads back
and that, when Dask moves one to another worker, carry their columns.

Knows nothing of events or tables.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the prefix of a spool directory's name (hidden: a dataset's readers skip it)
PREFIX = ".tcplife-spool-"


@contextlib.contextmanager
def spool(parent: str | os.PathLike[str]) -> Iterator[str]:
    """A new spool directory under ``parent``, removed with its files when the block ends,
    however it ends."""
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


class WrongWorker(RuntimeError):
    """A `WorkerPiece` read where its file is not: on another machine than the worker
    that wrote it, or after its spool was removed."""


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


@dataclass(frozen=True)
class WorkerPiece(Piece):
    """A `Piece` in one worker's own scratch directory (`WorkerSpool`). In that worker's
    memory it is a handle; pickled, as Dask does to hand it to a task on another worker,
    it is its columns (read on the holding worker), which unpickle as a plain dict.
    (Workers in one process hand each other the handle itself, and read the file.)"""

    def load(self) -> dict[str, np.ndarray]:
        try:
            return Piece.load(self)
        except FileNotFoundError as exc:
            raise WrongWorker(f"{self.path} is not here: a worker's own spool file, read "
                              "on another machine or after the spool was removed") from exc

    def __reduce__(self) -> tuple[Any, ...]:
        return dict, (Piece.load(self),)


@dataclass(frozen=True)
class WorkerSpool:
    """Spool in each worker's own scratch directory, in a subdirectory ``name``."""

    name: str


def _this_worker_directory() -> str | None:
    """The scratch directory of the Dask worker running this task (None outside one)."""
    try:
        from distributed import get_worker

        return str(get_worker().local_directory)
    except (ImportError, ValueError):
        return None


def worker_directory(where: WorkerSpool) -> str:
    """On a worker, in a task: its own spool directory, made if this is its first file."""
    here = _this_worker_directory()
    if here is None:
        raise RuntimeError("a worker spool is only reachable from a Dask worker's task")
    path = os.path.join(here, where.name)
    os.makedirs(path, exist_ok=True)
    return path


@contextlib.contextmanager
def worker_spool(client: Any) -> Iterator[WorkerSpool]:
    """A `WorkerSpool` for one analysis on ``client``'s cluster; when the block ends,
    however it ends, every worker's directory of it is removed. (A read task of a failed
    analysis that starts on a worker after that makes its directory again: it stays in the
    worker's scratch space, which Dask removes when the worker stops.)"""
    where = WorkerSpool(PREFIX + uuid.uuid4().hex)
    try:
        yield where
    finally:
        try:
            client.run(remove_worker_spool, where.name)
        except Exception as exc:  # noqa: BLE001 - a lost worker must not hide the result
            warnings.warn(f"tcplife: could not remove the workers' spool directories "
                          f"{where.name}: {exc}", stacklevel=3)


def remove_worker_spool(name: str, dask_worker: Any) -> None:
    """Run on every worker (`distributed.Client.run`): its spool directory ``name`` gone."""
    path = os.path.join(str(dask_worker.local_directory), name)
    if os.path.lexists(path):
        _remove(path)


class Appender:
    """Groups of columns (``names``) written chunk by chunk, as they come, to one file;
    `close` gives a `Piece` (or ``kind``) per group. The writer holds no column."""

    def __init__(self, path: str, groups: int, names: tuple[str, ...],
                 kind: type[Piece] = Piece) -> None:
        self.path, self.names, self.kind = path, names, kind
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
        return [self.kind(self.path, self.names, layouts, tuple(c)) for c in self._chunks]


def load(part: dict[str, np.ndarray] | Piece) -> dict[str, np.ndarray]:
    """A group of columns, spooled or (a `WorkerPiece` moved to another worker) in
    memory."""
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
