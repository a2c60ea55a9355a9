"""Which file each frame of the tables comes from, when several captures were read.

Owns: `with_files`, which gives a table read from several captures (merged by time,
numbered in the merged order: `tcplife.capture.merge`) the contract's form: next to each
frame column a column naming its file (`tcplife.output.schema.FILE_COLUMNS`: ``frame`` ->
``file``, ``first_frame`` -> ``first_file``, ``last_frame`` -> ``last_file``), and the
frame numbers counted within that file, so that ``tshark -r FILE -Y frame.number==N``
finds the row's packet; evidence ``frames`` lists count within their own files. A table
of one capture is returned as it is. Works on `tcplife.output.rows.Rows` and on DataFrames.
"""

from __future__ import annotations

from typing import Any

from tcplife.capture.stats import ReadStats
from tcplife.output.rows import Rows
from tcplife.output.schema import FILE_COLUMNS


def several(stats: ReadStats) -> bool:
    """Were the frames read from more than one file?"""
    return len(set(stats.files)) > 1


def slim(stats: ReadStats) -> ReadStats | None:
    """Only the frame map of ``stats`` (to hand to workers), or None for one file."""
    if not several(stats):
        return None
    return ReadStats(frames=stats.frames, files=list(stats.files),
                     run_starts=list(stats.run_starts), run_files=list(stats.run_files),
                     run_file_frames=list(stats.run_file_frames))


def with_file_columns(columns: dict[str, Any]) -> dict[str, Any]:
    """Column -> spec or dtype, with the file columns of several captures inserted after
    their frame columns (as `with_files` inserts them)."""
    out: dict[str, Any] = {}
    for name, kind in columns.items():
        out[name] = kind
        if name in FILE_COLUMNS:
            file_name, spec = FILE_COLUMNS[name]
            out[file_name] = spec
    return out


def _locate(stats: ReadStats, frames: list[Any]) -> tuple[list[str | None], list[Any]]:
    """Each frame (None: none) -> (its file or None, its number in that file or None)."""
    numbers = [0 if f is None else int(f) for f in frames]
    index, local = stats.locate_many(numbers)
    files = [None if i < 0 else stats.files[i] for i in index.tolist()]
    return files, [None if i < 0 else n for i, n in zip(index.tolist(), local.tolist(),
                                                        strict=True)]


def with_files(table: Any, stats: ReadStats) -> Any:
    """``table`` with its frames named by file (see the module), if several files were
    read; else ``table`` itself."""
    if not several(stats):
        return table
    if isinstance(table, Rows):
        return _rows(table, stats)
    return _frame(table, stats)


def _rows(rows: Rows, stats: ReadStats) -> Rows:
    schema: dict[str, str] = {}
    columns: dict[str, list[Any]] = {}
    for name, spec in rows.schema.items():
        values = rows.column(name)
        if name in FILE_COLUMNS:
            files, local = _locate(stats, values)
            file_name, file_spec = FILE_COLUMNS[name]
            schema[name], columns[name] = spec, local
            schema[file_name], columns[file_name] = file_spec, files
        elif name == "frames":
            schema[name], columns[name] = spec, [_local_list(stats, v) for v in values]
        else:
            schema[name], columns[name] = spec, values
    return Rows(schema, columns)


def _local_list(stats: ReadStats, frames: list[int] | None) -> list[int] | None:
    if not frames:
        return frames
    return [n for n in _locate(stats, frames)[1] if n is not None]


def _frame(frame: Any, stats: ReadStats) -> Any:
    import pandas as pd

    out = frame.copy()
    for name, (file_name, _) in FILE_COLUMNS.items():
        if name not in out.columns:
            continue
        column = out[name]
        values = [None if pd.isna(v) else int(v) for v in column.tolist()]
        files, local = _locate(stats, values)
        out[name] = pd.Series(local, index=out.index, dtype=column.dtype)
        out.insert(out.columns.get_loc(name) + 1, file_name,
                   pd.Series(files, index=out.index, dtype="string"))
    if "frames" in out.columns:
        listed = pd.Series([None] * len(out), index=out.index, dtype="object")
        listed[:] = [_local_list(stats, v) for v in out["frames"].tolist()]
        out["frames"] = listed
    return out
