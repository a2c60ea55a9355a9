"""Writing tcplife's tables: JSON, JSON lines, CSV and Parquet for programs, and the table format.

Owns: the output formats and how a table of the public schemas (`tcplife.output.rows.Rows`, or a
pandas DataFrame of `tcplife.output.frames`) becomes rows in each of them -- the column names
unchanged, float seconds kept, datetime columns as ISO 8601 strings ending in ``Z``, NA
as null, categoricals as strings, lists as arrays -- plus what the terminal views
(`tcplife.output.views`, which import rich) share with the pictures: state colours, UTC clock
times, durations, endpoints.

Knows nothing of click, of captures or of how the tables were computed: tables (and
`ReadStats`) in, text or a file out. Machine formats are written row by row as they are
converted, never collected into one big string. `Rows` are written without importing
pandas (only Parquet needs it, through pyarrow).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

from tcplife.core.states import DEFAULT_SEVERITY
from tcplife.output.rows import Rows
from tcplife.output.safety import csv_text, open_output

FORMATS: tuple[str, ...] = ("table", "json", "jsonl", "csv", "parquet")

#: ``-o FILE`` without ``--format``: the format follows the file's extension (else jsonl).
EXTENSION_FORMATS: dict[str, str] = {
    ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
    ".parquet": "parquet", ".pq": "parquet", ".txt": "table", ".svg": "svg",
}

#: One colour per state, the same in every view: the opening path cyan, established
#: green, the active closer's path yellow, the passive closer's magenta, TIME_WAIT blue.
STATE_STYLES: dict[str, str] = {
    "UNKNOWN": "dim italic", "CLOSED": "dim", "LISTEN": "blue",
    "SYN_SENT": "cyan", "SYN_RECEIVED": "cyan", "ESTABLISHED": "green",
    "FIN_WAIT_1": "yellow", "FIN_WAIT_2": "yellow", "CLOSING": "yellow",
    "CLOSE_WAIT": "bold magenta", "LAST_ACK": "magenta", "TIME_WAIT": "blue",
}
#: The same families as hex colours, for pictures (SVG ladders, matplotlib charts).
STATE_COLOURS: dict[str, str] = {
    "UNKNOWN": "#b0b0b0", "CLOSED": "#e0e0e0", "LISTEN": "#9ecae1",
    "SYN_SENT": "#6baed6", "SYN_RECEIVED": "#17becf", "ESTABLISHED": "#2ca02c",
    "FIN_WAIT_1": "#ffbf00", "FIN_WAIT_2": "#d99a00", "CLOSING": "#ff7f0e",
    "CLOSE_WAIT": "#c2189b", "LAST_ACK": "#f062c0", "TIME_WAIT": "#1f4e9c",
}
CLOSE_STYLES: dict[str, str] = {
    "fin": "green", "rst": "red", "refused": "red", "unanswered": "yellow",
    "incomplete": "yellow", "open": "cyan", "timeout": "yellow",
}
#: Anomaly kinds that are information rather than trouble.
#: kinds that are normal TCP, noted (severity info by default): dim wherever shown
INFO_KINDS = frozenset(k for k, s in DEFAULT_SEVERITY.items() if s == "info")
SEVERITY_STYLES: dict[str, str] = {"error": "bold red", "warning": "yellow", "info": "dim"}

TableBuilder = Callable[[], list[Any]]  #: the rich renderables of a table (`tcplife.output.views`)

class OutputError(Exception):
    """The output cannot be produced as asked (e.g. Parquet to a terminal)."""


def choose_format(fmt: str | None, path: str | None, stdout_is_terminal: bool,
                  allowed: tuple[str, ...] = FORMATS) -> str:
    """The explicit ``--format``; else from ``-o FILE``'s extension (jsonl for a name
    without one); else ``table`` on a terminal and ``jsonl`` into a pipe or file. An
    extension that names no format raises `UnknownExtension`."""
    if fmt:
        return fmt
    if path and path != "-":
        return format_of_path(path, "jsonl", allowed)
    return "table" if stdout_is_terminal else "jsonl"


class UnknownExtension(ValueError):
    """``-o FILE`` whose extension names no format (and no ``--format`` says one)."""


def format_of_path(path: str, default: str, allowed: tuple[str, ...] = FORMATS) -> str:
    """The format ``-o path``'s extension names; ``default`` for a name without an
    extension; `UnknownExtension` for any other extension (naming those of ``allowed``
    formats)."""
    suffix = Path(path).suffix.lower()
    if not suffix:
        return default
    found = EXTENSION_FORMATS.get(suffix)
    if found is None:
        raise UnknownExtension(
            f"-o {path}: {suffix} names no output format; use one of "
            f"{' '.join(e for e, f in EXTENSION_FORMATS.items() if f in allowed)} or say "
            "--format")
    return found


def write(frame: Any, fmt: str, path: str | None, stdout: IO[str],
          table: TableBuilder) -> None:
    """Write ``frame`` as ``fmt`` to ``path`` (``None`` or ``-``: ``stdout``). For the
    ``table`` format, ``table()`` builds the renderables (called only then)."""
    to_stdout = path is None or path == "-"
    if fmt == "parquet":
        if to_stdout:
            raise OutputError("parquet output needs a file: use -o FILE")
        write_parquet(frame, str(path))
        return
    if to_stdout:
        _write_text(frame, fmt, stdout, table)
        return
    with open_output(str(path)) as stream:
        _write_text(frame, fmt, stream, table)


#: the formats `write_frames` writes a frame at a time
STREAMED_FORMATS = ("jsonl", "csv")


def write_frames(frames: Iterable[Any], fmt: str, path: str | None,
                 stdout: IO[str], empty: Any) -> None:
    """Write consecutive pieces of one table as ``fmt`` (one of `STREAMED_FORMATS`): the
    same text `write` gives for their concatenation, holding one piece at a time.
    ``empty``: the table's columns, for the CSV header when there are no pieces."""
    if fmt not in STREAMED_FORMATS:
        raise OutputError(f"{fmt} output is not written in pieces")

    def run(stream: IO[str]) -> None:
        header = True
        for frame in frames:
            if fmt == "jsonl":
                write_jsonl(frame, stream)
            else:
                write_csv(frame, stream, header=header)
            header = False
        if header and fmt == "csv":
            write_csv(empty, stream)

    if path is None or path == "-":
        run(stdout)
        return
    with open_output(str(path)) as stream:
        run(stream)


def _write_text(frame: Any, fmt: str, stream: IO[str], table: TableBuilder) -> None:
    if fmt == "table":
        from rich.text import Text

        console = table_console(stream)
        for renderable in table():
            # a Text marked no_wrap (a command line to copy) is printed whole
            console.print(renderable, soft_wrap=isinstance(renderable, Text)
                          and bool(renderable.no_wrap))
    elif fmt == "json":
        write_json(frame, stream)
    elif fmt == "jsonl":
        write_jsonl(frame, stream)
    elif fmt == "csv":
        write_csv(frame, stream)
    else:
        raise OutputError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def table_console(stream: IO[str]) -> Any:
    """A rich console for tables: colour as the terminal and NO_COLOR say; 120 columns
    wide when writing to a pipe or file (unless COLUMNS says otherwise)."""
    from rich.console import Console

    console = Console(file=stream, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(file=stream, highlight=False, width=120)
    return console


# --- machine formats ------------------------------------------------------------------


def _iso(series: Any) -> list[str | None]:
    """tz-aware (or naive, taken as UTC) datetimes -> `iso_ns`'s text; NaT -> None."""
    import pandas as pd

    missing = series.isna().tolist()
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    ints = series.to_numpy(dtype="datetime64[ns]").view("int64").tolist()
    return iso_ns([None if gone else ns for ns, gone in zip(ints, missing, strict=True)])


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def iso_ns(values: list[int | None]) -> list[str | None]:
    """Integer ns since the epoch -> the ISO 8601 text `_iso` gives for the same
    datetimes: microseconds, or nanoseconds when any value has them."""
    sub_us = any(v is not None and v % 1000 for v in values)
    out: list[str | None] = []
    seconds_text: dict[int, str] = {}
    for v in values:
        if v is None:
            out.append(None)
            continue
        sec, frac = divmod(v, 1_000_000_000)
        text = seconds_text.get(sec)
        if text is None:
            text = seconds_text[sec] = (_EPOCH + timedelta(seconds=sec)).strftime(
                "%Y-%m-%dT%H:%M:%S")
        out.append(f"{text}.{frac:09d}Z" if sub_us else f"{text}.{frac // 1000:06d}Z")
    return out


def is_na(value: Any) -> bool:
    """None, or pandas' NA / NaT (recognised without importing pandas)."""
    return value is None or type(value).__name__ in ("NAType", "NaTType")


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if is_na(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalar
        return value.item()
    return value


def column_values(series: Any) -> list[Any]:
    """One DataFrame column as JSON-ready Python values: ISO strings for datetimes, str
    for categoricals, None for NA/NaN, lists as lists."""
    import pandas as pd

    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
            series.dtype):
        return _iso(series)
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    if pd.api.types.is_float_dtype(series.dtype) and series.dtype != object:
        return [None if math.isnan(v) else v for v in series.tolist()]
    return [_plain(v) for v in series.astype(object).tolist()]


def rows_values(values: list[Any], spec: str) -> list[Any]:
    """One `Rows` column as the JSON-ready values `column_values` gives for the same
    column of a DataFrame."""
    if spec == "time":
        return iso_ns(values)
    if spec == "float64":
        return [None if v is None or math.isnan(v) else v for v in values]
    if spec == "object":
        return [_plain(v) for v in values]
    return values


def iter_records(frame: Any, chunk: int = 10_000) -> Iterator[dict[str, Any]]:
    """The rows of ``frame`` (`Rows` or a DataFrame) as dicts keyed by its column names,
    converted a chunk of rows at a time."""
    if isinstance(frame, Rows):
        names = frame.names
        for start in range(0, len(frame), chunk):
            columns = [rows_values(frame.column(name)[start:start + chunk], spec)
                       for name, spec in frame.schema.items()]
            for values in zip(*columns, strict=True):
                yield dict(zip(names, values, strict=True))
        return
    names = [str(c) for c in frame.columns]
    for start in range(0, len(frame), chunk):
        part = frame.iloc[start:start + chunk]
        columns = [column_values(part[name]) for name in frame.columns]
        for values in zip(*columns, strict=True):
            yield dict(zip(names, values, strict=True))


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, allow_nan=False)


def write_jsonl(frame: Any, stream: IO[str]) -> None:
    """One JSON object per line; nothing at all for an empty table."""
    for record in iter_records(frame):
        stream.write(_dumps(record) + "\n")


def write_json(frame: Any, stream: IO[str]) -> None:
    """One JSON array of objects (``[]`` for an empty table)."""
    stream.write("[")
    for i, record in enumerate(iter_records(frame)):
        stream.write(("," if i else "") + "\n  " + _dumps(record))
    stream.write("\n]\n" if len(frame) else "]\n")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return value


def write_csv(frame: Any, stream: IO[str], header: bool = True) -> None:
    """A header, then one line per row: lists joined with ``;``, NA empty."""
    writer = csv.writer(stream, lineterminator="\n")
    if header:
        writer.writerow(frame.names if isinstance(frame, Rows) else
                        [str(c) for c in frame.columns])
    for record in iter_records(frame):
        writer.writerow([csv_text(_csv_cell(v)) for v in record.values()])


def write_parquet(frame: Any, path: str) -> None:
    """Parquet via pyarrow, dtypes kept (categoricals as dictionaries, UTC timestamps);
    list columns are typed ``list<string>`` even when every list is empty."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is an optional dependency
        raise OutputError("parquet output needs pyarrow: pip install 'tcplife[parquet]'") \
            from exc
    if isinstance(frame, Rows):
        from tcplife.output.frames import frame_from_rows

        frame = frame_from_rows(frame)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for i, field in enumerate(table.schema):
        column = frame[field.name]
        if column.dtype == object and all(isinstance(v, list) for v in column):
            values = pa.array([[str(x) for x in v] for v in column], pa.list_(pa.string()))
            table = table.set_column(i, pa.field(field.name, values.type), values)
    with open_output(path, binary=True) as stream:  # a local file, never a URI
        pq.write_table(table, stream)


# --- terminal views -------------------------------------------------------------------


def clock(ns: int, with_date: bool = False) -> str:
    """Integer ns since the epoch -> ``HH:MM:SS.ffffff`` UTC (date first if asked)."""
    seconds, rest = divmod(int(ns), 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc)
    text = stamp.strftime("%H:%M:%S") + f".{rest // 1000:06d}"
    return stamp.strftime("%Y-%m-%d ") + text if with_date else text


def date_span(ns_values: Iterable[int]) -> tuple[str, bool]:
    """The UTC date(s) for a title, and whether rows must carry their date (the times
    span more than one day)."""
    days = sorted({datetime.fromtimestamp(int(ns) // 1_000_000_000, tz=timezone.utc).date()
                   for ns in ns_values})
    if not days:
        return "", False
    if len(days) == 1:
        return f"{days[0].isoformat()} UTC", False
    return f"{days[0].isoformat()} – {days[-1].isoformat()} UTC", True


def duration(seconds: float | None) -> str:
    """Seconds -> a short human duration: ``211.6ms``, ``12.345s``, ``3m02.5s``, ``2h05m``."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 60:
        return f"{seconds:.3f}s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{int(minutes)}m{rest:04.1f}s"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m"


def endpoint(addr: Any, port: Any) -> str:
    """``addr:port``, with IPv6 addresses in brackets as ``ss`` prints them."""
    if is_na(addr):
        return ""
    host = f"[{addr}]" if ":" in str(addr) else str(addr)
    return f"{host}:{port}"
