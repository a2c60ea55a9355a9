"""A table as plain Python columns: what the command line filters, prints and writes.

Owns: `Rows` (named columns of equal length, with the column specs of
`tcplife.output.schema`), the pandas-free ways to read a table (`column`, `itertuples`,
`take`), and `column_of`/`length` that read a `Rows` or a pandas DataFrame alike, so
that filters, the summary and the views serve both the CLI (which never imports pandas
for JSON lines, CSV or a table) and the Python API (DataFrames). Values are plain:
``str`` for text and categories, ``int`` ns for ``time``, ``None`` for null, lists for
lists. `tcplife.output.frames.frame_from_rows` gives the DataFrame with the schema's dtypes.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterator, Sequence
from typing import Any

from tcplife.output.schema import Schema


class Rows:
    """Columns of equal length, in the order of ``schema`` (name -> spec)."""

    def __init__(self, schema: Schema, columns: dict[str, list[Any]]) -> None:
        self.schema = schema
        self.columns = columns
        self._n = len(next(iter(columns.values()))) if columns else 0

    @classmethod
    def empty(cls, schema: Schema) -> Rows:
        return cls(schema, {name: [] for name in schema})

    def __len__(self) -> int:
        return self._n

    @property
    def names(self) -> list[str]:
        return list(self.schema)

    def column(self, name: str) -> list[Any]:
        return self.columns[name]

    def __getitem__(self, name: str) -> list[Any]:
        return self.columns[name]

    def itertuples(self, index: bool = False) -> Iterator[Any]:
        """The rows as named tuples (attribute per column), like DataFrame.itertuples."""
        row = _row_type(tuple(self.schema))
        for values in zip(*(self.columns[n] for n in self.schema), strict=True):
            yield row._make(values)

    def take(self, keep: Sequence[bool] | Sequence[int]) -> Rows:
        """The rows where ``keep`` (a mask) is true, or at ``keep`` (positions)."""
        if len(keep) and isinstance(keep[0], bool):
            at = [i for i, k in enumerate(keep) if k]
        else:
            at = list(keep)  # type: ignore[arg-type]
        if len(at) == self._n and at == list(range(self._n)):
            return self
        return Rows(self.schema, {n: [c[i] for i in at] for n, c in self.columns.items()})


_ROW_TYPES: dict[tuple[str, ...], Any] = {}


def _row_type(names: tuple[str, ...]) -> Any:
    row = _ROW_TYPES.get(names)
    if row is None:
        row = _ROW_TYPES[names] = namedtuple("Row", names, rename=True)  # type: ignore[misc]
    return row


def column_of(table: Any, name: str) -> list[Any]:
    """A column as a list of plain values, from `Rows` or a pandas DataFrame (null as
    None, categories as their text)."""
    if isinstance(table, Rows):
        return table.column(name)
    series = table[name]
    if series.hasnans:
        return [None if v is None or _is_pandas_na(v) or (isinstance(v, float) and v != v)
                else v for v in series.astype(object).tolist()]
    if str(series.dtype) == "category":
        return series.astype(object).tolist()
    return series.tolist()


def _is_pandas_na(value: Any) -> bool:
    import pandas as pd

    return value is pd.NA or value is pd.NaT


def select(table: Any, keep: list[bool]) -> Any:
    """The rows where ``keep`` is true, of `Rows` or a DataFrame (index renumbered)."""
    if isinstance(table, Rows):
        return table.take(keep)
    import numpy as np

    return table[np.asarray(keep, dtype=bool)].reset_index(drop=True)
