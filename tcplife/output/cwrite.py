"""The tables written by the compiled engine's writer: the bytes `tcplife.output.formats`
writes (JSON lines, JSON, CSV), from columns, without a Python object per row.

Owns: turning a table into the column tuples `tcplife._engine.format_rows` takes (each
column its name, its schema spec and buffers: numbers as typed arrays, text as integer
codes into a table of distinct texts, lists as a flat buffer plus offsets), from a
`Rows` (`rows_columns`) or straight from a `Collector`'s compact columns
(`collected_columns`: numpy takes, no per-row lists); and writing them to a stream a
block of rows at a time (`write_rows_c`, `write_collected_c`), the same bytes, the same
errors at the same row as the Python writers.

The engine module is passed in (``engine=``): the output layer does not import the
compiled engine (tests/test_layers.py); the engines and the command line hold it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from tcplife.output import schema
from tcplife.output.collect import Collector, Columns, stream_match, stream_owners
from tcplife.output.rows import Rows

#: rows converted at a time by `formats.iter_records`, over which `formats.iso_ns`
#: decides between micro- and nanoseconds; also the rows per call of the engine
BLOCK = 10_000
FORMATS = ("jsonl", "json", "csv")

Column = tuple[Any, ...]
#: rows [a, b) of a table, in its final order, as column tuples
Part = Callable[[int, int], list[Column]]

_INT_SPECS = ("int8", "int16", "int32", "int64", "Int64", "time")
_MATCHES = ("same", "split", "merged", "split+merged")


class Unsupported(TypeError):
    """A value the C writer does not take (the Python writer writes it): use that."""


# --- texts ----------------------------------------------------------------------------


class Texts:
    """A table of distinct texts as the engine takes it: UTF-8 (lone surrogates kept,
    'surrogatepass') in one blob, ``offsets[k]:offsets[k + 1]`` the k-th. ``null``: the
    codes of None entries (written as null)."""

    def __init__(self, values: list[Any]) -> None:
        parts, null, lengths = [], [], [0]
        self.surrogates = False
        for k, value in enumerate(values):
            if value is None:
                null.append(k)
                data = b""
            elif not isinstance(value, str):  # a str enum writes as its text
                raise Unsupported(f"{type(value).__name__} in a text column")
            else:
                try:
                    data = value.encode("utf-8")
                except UnicodeEncodeError:
                    data = value.encode("utf-8", "surrogatepass")
                    self.surrogates = True
            parts.append(data)
            lengths.append(len(data))
        self.blob = b"".join(parts)
        self.offsets = np.cumsum(np.asarray(lengths, dtype=np.int64))
        self.remap: np.ndarray | None = None
        if null:
            self.remap = np.arange(len(values), dtype=np.int64)
            self.remap[null] = -1

    def codes(self, codes: np.ndarray) -> np.ndarray:
        return codes if self.remap is None else self.remap[codes]

    def column(self, name: str, spec: str, codes: np.ndarray) -> Column:
        return (name, spec, self.codes(codes), self.blob, self.offsets)


def int_texts(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The decimal texts (str) of int64 values as a blob and offsets, vectorised."""
    text = np.ascontiguousarray(values, dtype=np.int64).astype("S20")
    lengths = np.char.str_len(text).astype(np.int64)
    grid = text.view(np.uint8).reshape(len(values), 20)
    blob = grid[np.arange(20) < lengths[:, None]].tobytes()
    return blob, np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)


# --- Rows -> columns ------------------------------------------------------------------


def _marker(values: list[Any]) -> int:
    """An int64 that no value is, for null."""
    taken = set(values)
    marker = -(2 ** 63)
    while marker in taken:
        marker += 1
    return marker


def _ints(name: str, spec: str, values: list[Any], kind: type) -> Column:
    if any(type(v) is not kind for v in values if v is not None):
        raise Unsupported(f"column {name!r} ({spec}) holds a value that is not {kind.__name__}")
    try:
        if any(v is None for v in values):
            null = _marker([v for v in values if v is not None])
            return (name, spec, np.array([null if v is None else v for v in values],
                                         dtype=np.int64), null)
        return (name, spec, np.array(values, dtype=np.int64))
    except OverflowError as exc:
        raise Unsupported(f"column {name!r}: an integer beyond 64 bits") from exc


def _texts(name: str, spec: str, values: list[Any]) -> tuple[Column, bool]:
    table: dict[Any, int] = {}
    codes = np.fromiter((table.setdefault(v, len(table)) for v in values), dtype=np.int64,
                        count=len(values))
    texts = Texts(list(table))
    return texts.column(name, spec, codes), texts.surrogates


def _lists(name: str, spec: str, values: list[Any]) -> tuple[Column, bool]:
    if any(not isinstance(v, (list, tuple)) for v in values):
        raise Unsupported(f"column {name!r} holds a value that is not a list")
    flat = [x for v in values for x in v]
    rows = np.cumsum(np.asarray([0, *map(len, values)], dtype=np.int64))
    if all(type(x) is int for x in flat):
        return (name, spec, rows, np.array(flat, dtype=np.int64)), False
    if all(isinstance(x, str) for x in flat):
        column, surrogates = _texts(name, spec, flat)
        return (name, spec, rows, *column[2:]), surrogates
    raise Unsupported(f"column {name!r}: lists of other than all int or all str")


def rows_columns(rows: Rows) -> tuple[list[Column], bool]:
    """A `Rows`' columns as the engine takes them, and whether any text holds a lone
    surrogate. Raises `Unsupported` for values the C writer does not write."""
    out: list[Column] = []
    surrogates = False
    for name, spec in rows.schema.items():
        values = rows.column(name)
        if spec in _INT_SPECS:
            out.append(_ints(name, spec, values, int))
        elif spec == "bool":
            out.append(_ints(name, spec, values, bool))
        elif spec == "float64":
            if any(type(v) is not float for v in values if v is not None):
                raise Unsupported(f"column {name!r} holds a value that is not a float")
            out.append((name, spec, np.array([np.nan if v is None else v for v in values],
                                             dtype=np.float64)))
        elif spec == "string" or spec.startswith("cat:"):
            column, more = _texts(name, spec, values)
            out.append(column)
            surrogates |= more
        elif spec == "object":
            column, more = _lists(name, spec, values)
            out.append(column)
            surrogates |= more
        else:
            raise Unsupported(f"column {name!r}: spec {spec!r}")
    return out, surrogates


# --- a Collector's columns ------------------------------------------------------------


class _Compact:
    """Columns of a `Collector`'s compact buffers, taken at positions."""

    def __init__(self, cols: Columns) -> None:
        self.cols = cols
        self.texts: dict[str, Texts] = {}
        self.surrogates = False

    def column(self, name: str, spec: str, at: np.ndarray) -> Column:
        kind = self.cols.kinds[name]
        values = self.cols.array(name)[at] if kind != "obj" else None
        if kind == "code":
            texts = self.texts.get(name)
            if texts is None:
                texts = self.texts[name] = Texts(list(self.cols.codes[name]))
                self.surrogates |= texts.surrogates
            return texts.column(name, spec, values)
        if kind == "nint":
            return (name, spec, values, -1)
        if kind in ("int", "time", "float", "bool"):
            return (name, spec, values)
        raise Unsupported(f"column {name!r}: {kind} columns are not collected compactly")


def _anomaly_kinds(c: Collector) -> Callable[[np.ndarray], Column]:
    """``anomalies`` (each connection's anomaly kinds, sorted) for conn ids, as a list
    column: the distinct sets once, then numpy gathers."""
    sets: dict[frozenset[str], int] = {frozenset(): 0}
    kinds = c._kinds
    keys = np.fromiter(kinds.keys(), dtype=np.int64, count=len(kinds))
    which = np.fromiter((sets.setdefault(s, len(sets)) for s in kinds.values()),
                        dtype=np.int64, count=len(kinds))
    names = sorted(set().union(*sets))
    code = {k: i for i, k in enumerate(names)}
    lists = [[code[k] for k in sorted(s)] for s in sets]
    set_len = np.array([len(x) for x in lists], dtype=np.int64)
    set_start = np.concatenate(([0], np.cumsum(set_len)[:-1])).astype(np.int64)
    set_flat = np.array([k for x in lists for k in x], dtype=np.int64)
    by_key = np.argsort(keys, kind="stable")
    key_arr, set_of = keys[by_key], which[by_key]
    texts = Texts(names)

    def column(ids: np.ndarray) -> Column:
        sid = np.zeros(len(ids), dtype=np.int64)
        if len(key_arr):
            pos = np.minimum(np.searchsorted(key_arr, ids), len(key_arr) - 1)
            found = key_arr[pos] == ids
            sid[found] = set_of[pos[found]]
        lens = set_len[sid]
        rows = np.concatenate(([0], np.cumsum(lens))).astype(np.int64)
        within = np.arange(rows[-1], dtype=np.int64) - np.repeat(rows[:-1], lens)
        flat = set_flat[np.repeat(set_start[sid], lens) + within]
        return ("anomalies", schema.CONNECTIONS["anomalies"], rows, flat, texts.blob,
                texts.offsets)

    return column


def _connection_part(c: Collector) -> tuple[int, Part, _Compact]:
    cols = c._conns
    n = len(cols)
    compact = _Compact(cols)
    if not n:
        return 0, lambda a, b: [], compact
    ids = cols.array("conn_id")
    order = np.argsort(ids, kind="stable")
    stream = cols.array("tcp_stream")
    other = c._other_streams
    other_rows = np.array(sorted(other), dtype=np.int64)
    owners = stream_owners(stream, other)
    shared = np.array(sorted(int(k) for k in owners), dtype=np.int64)
    anomalies = _anomaly_kinds(c)
    first_ns, last_ns = cols.array("first_ts_ns"), cols.array("last_ts_ns")

    def part(a: int, b: int) -> list[Column]:
        at = order[a:b]
        first, last = first_ns[at], last_ns[at]
        streams = stream[at]
        # tcp_streams: each row's tcp_stream as text, but where `other` says otherwise
        blob, offsets = int_texts(streams)
        codes = np.arange(len(at), dtype=np.int64)
        match = np.where(np.isin(streams, shared), 2, 0).astype(np.int64)
        odd = np.flatnonzero(np.isin(at, other_rows))
        if len(odd):
            extra = [other[int(row)] for row in at[odd]]
            more = Texts(extra)
            blob += more.blob
            offsets = np.concatenate((offsets, offsets[-1] + more.offsets[1:]))
            codes[odd] = len(at) + np.arange(len(odd))
            match[odd] = [_MATCHES.index(m) for m in stream_match(extra, owners)]
        derived: dict[str, Column] = {
            "anomalies": anomalies(ids[at]),
            "tcp_streams": ("tcp_streams", "string", codes, blob, offsets),
            "tcp_stream_match": ("tcp_stream_match", "cat:stream_match", match,
                                 *_MATCH_TEXTS),
            "first_ts": ("first_ts", "float64", first / 1e9),
            "last_ts": ("last_ts", "float64", last / 1e9),
            "duration": ("duration", "float64", (last - first) / 1e9),
            "first_time": ("first_time", "time", first),
            "last_time": ("last_time", "time", last),
        }
        return [derived[name] if name in derived else compact.column(name, spec, at)
                for name, spec in schema.CONNECTIONS.items()]

    return n, part, compact


def _transition_part(c: Collector) -> tuple[int, Part, _Compact]:
    compact = _Compact(c._trans)
    order = c.transition_order()
    if order is None:
        return 0, lambda a, b: [], compact
    ts_ns = c._trans.array("ts_ns")

    def part(a: int, b: int) -> list[Column]:
        at = order[a:b]
        ns = ts_ns[at]
        derived = {"ts": ("ts", "float64", ns / 1e9), "time": ("time", "time", ns)}
        return [derived[name] if name in derived else compact.column(name, spec, at)
                for name, spec in schema.TRANSITIONS.items()]

    return len(order), part, compact


def _rows_part(rows: Rows) -> tuple[int, Part, bool]:
    columns, surrogates = rows_columns(rows)
    n = len(rows)
    return n, lambda a, b: [_slice(col, a, b) for col in columns], surrogates


def _slice(col: Column, a: int, b: int) -> Column:
    """Rows [a, b) of a column tuple (a list column keeps its elements; its row offsets
    are sliced)."""
    name, spec = col[0], col[1]
    if spec == "object":
        return (name, spec, col[2][a:b + 1], *col[3:])
    return (name, spec, col[2][a:b], *col[3:])


_MATCH_TABLE = Texts(list(_MATCHES))
_MATCH_TEXTS = (_MATCH_TABLE.blob, _MATCH_TABLE.offsets)


def collected_columns(c: Collector, table: str) -> tuple[int, Part]:
    """Table ``table`` of a collector (one capture: no file columns) as its row count
    and a function giving rows [a, b), in the table's order, as column tuples: the same
    rows as ``c.connection_rows()``, ``c.transition_rows()``, ``c.anomaly_rows()``,
    ``c.oddity_rows()``."""
    n, part, _ = _collected(c, table)
    return n, part


def _collected(c: Collector, table: str) -> tuple[int, Part, Callable[[], bool]]:
    if table == "connections":
        n, part, compact = _connection_part(c)
        return n, part, lambda: compact.surrogates
    if table == "transitions":
        n, part, compact = _transition_part(c)
        return n, part, lambda: compact.surrogates
    if table in ("anomalies", "oddities"):
        rows = c.anomaly_rows() if table == "anomalies" else c.oddity_rows()
        n, part, surrogates = _rows_part(rows)
        return n, part, lambda: surrogates
    raise ValueError(f"unknown table {table!r}")


# --- writing --------------------------------------------------------------------------


def write_rows_c(rows: Rows, fmt: str, stream: IO[Any], *, engine: Any,
                 header: bool = True) -> None:
    """Write ``rows`` as ``fmt`` (jsonl, json or csv) to ``stream`` (text, or binary:
    UTF-8) through the engine: the bytes `formats.write_jsonl`, `write_json`,
    `write_csv` (``header``) write. Raises `Unsupported` (before writing anything) for
    values only the Python writer takes."""
    n, part, surrogates = _rows_part(rows)
    _write(engine, n, part, lambda: surrogates, fmt, stream, header, rows.names)


def write_collected_c(c: Collector, table: str, fmt: str, stream: IO[Any], *,
                      engine: Any, header: bool = True) -> None:
    """Write table ``table`` of a collector (see `collected_columns`) as ``fmt``: the
    bytes the Python writer writes for the same table's `Rows`."""
    n, part, surrogates = _collected(c, table)
    _write(engine, n, part, surrogates, fmt, stream, header, _names(table))


def _names(table: str) -> list[str]:
    return list({"connections": schema.CONNECTIONS, "transitions": schema.TRANSITIONS,
                 "anomalies": schema.ANOMALIES, "oddities": schema.ODDITIES}[table])


def _write(engine: Any, n: int, part: Part, surrogates: Callable[[], bool], fmt: str,
           stream: IO[Any], header: bool, names: list[str]) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"the C writer writes {', '.join(FORMATS)}, not {fmt!r}")
    binary = isinstance(stream, (io.RawIOBase, io.BufferedIOBase))
    if fmt == "json":
        stream.write(b"[" if binary else "[")
    if n == 0 and fmt == "csv" and header:
        columns = [(name, "int64", np.zeros(0, dtype=np.int64)) for name in names]
        _put(stream, binary, False, engine.format_rows("csv", columns, 0, 0, header=True)[0])
    for a in range(0, n, BLOCK):
        b = min(n, a + BLOCK)
        columns = part(a, b)
        first = header and fmt == "csv" and a == 0
        data, done = engine.format_rows(fmt, columns, 0, b - a, block=BLOCK, base=a,
                                        header=first)
        try:
            _put(stream, binary, surrogates(), data)
        except UnicodeEncodeError:
            # as the Python writers do: every row before the one that cannot be encoded
            if first:
                _put(stream, binary, True, engine.format_rows(
                    "csv", columns, 0, 0, header=True)[0])
            for r in range(done):
                _put(stream, binary, True, engine.format_rows(
                    fmt, columns, r, r + 1, block=BLOCK, base=a)[0])
            raise
        if done < b - a:  # a row that cannot be written: raises its error
            engine.format_rows(fmt, columns, done, done + 1, block=BLOCK, base=a)
            raise AssertionError("the engine stopped at a row it then wrote")
    if fmt == "json":
        tail = "\n]\n" if n else "]\n"
        stream.write(tail.encode() if binary else tail)


def _put(stream: IO[Any], binary: bool, surrogates: bool, data: bytes) -> None:
    if binary and not surrogates:
        stream.write(data)
        return
    text = data.decode("utf-8", "surrogatepass")
    stream.write(text.encode("utf-8") if binary else text)


# --- the float tables of engine/write_float.c -----------------------------------------

#: the header `ryu_header` writes (committed; tests/test_cwrite.py checks it is current)
RYU_HEADER = "engine/write_ryu.h"
_POW5_BITS = 125  #: bits of each 128-bit entry (Ryu's DOUBLE_POW5[_INV]_BITCOUNT)


def ryu_header() -> str:
    """The tables of Ryu's shortest round-trip double -> decimal (Ulf Adams, PLDI 2018)
    as C: 5**i scaled to 125 bits (i < 326) and 2**(bits(5**q) - 1 + 125) / 5**q + 1
    (q < 342), each as two 64-bit halves, low first. Exact, from Python's integers."""
    def halves(values: list[int]) -> str:
        mask = (1 << 64) - 1
        return "\n".join(f"    {{{v & mask}u, {v >> 64}u}}," for v in values)

    def scaled(p: int) -> int:
        bits = p.bit_length()
        return p >> (bits - _POW5_BITS) if bits >= _POW5_BITS else p << (_POW5_BITS - bits)

    pow5 = [scaled(5 ** i) for i in range(326)]
    inverse = [(1 << ((5 ** q).bit_length() - 1 + _POW5_BITS)) // 5 ** q + 1
               for q in range(342)]
    return (
        "/* GENERATED by `python -m tcplife.output.cwrite` (tcplife/output/cwrite.py,\n"
        " * ryu_header): do not edit. The powers of five of Ryu's double -> shortest\n"
        " * decimal, for engine/write_float.c. */\n"
        "#ifndef TCPLIFE_WRITE_RYU_H\n#define TCPLIFE_WRITE_RYU_H\n\n"
        f"#define RYU_POW5_BITS {_POW5_BITS}\n"
        f"#define RYU_POW5_INV_BITS {_POW5_BITS}\n\n"
        "/* 5**i >> (bits(5**i) - 125), i < 326 */\n"
        f"static const uint64_t RYU_POW5[326][2] = {{\n{halves(pow5)}\n}};\n\n"
        "/* 2**(bits(5**q) - 1 + 125) // 5**q + 1, q < 342 */\n"
        f"static const uint64_t RYU_POW5_INV[342][2] = {{\n{halves(inverse)}\n}};\n\n"
        "#endif\n")


if __name__ == "__main__":  # python -m tcplife.output.cwrite: regenerate the header
    from pathlib import Path

    target = Path(__file__).resolve().parents[2] / RYU_HEADER
    target.write_text(ryu_header())
    print(f"wrote {target}")
