"""Writing tcplife's tables: rich tables for people; JSON, JSONL, CSV and Parquet for programs.

Owns: the output formats and how a table of the public schemas (`tcplife.rows.Rows`, or a
pandas DataFrame of `tcplife.frames`) becomes rows in each of them -- the column names
unchanged, float seconds kept, datetime columns as ISO 8601 strings ending in ``Z``, NA
as null, categoricals as strings, lists as arrays -- and the terminal views: consistent
state colours, compact columns, UTC clock times with the date once in the title, the
``analyze`` summary.

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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

from rich.console import Console, RenderableType
from rich.text import Text

from tcplife.fit import Column, FittedTable, LabelledLines
from tcplife.rows import Rows, column_of
from tcplife.safety import csv_text, open_output
from tcplife.states import DEFAULT_SEVERITY

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

TableBuilder = Callable[[], list[RenderableType]]

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


def table_console(stream: IO[str]) -> Console:
    """A console for tables: colour as the terminal and NO_COLOR say; 120 columns wide
    when writing to a pipe or file (unless COLUMNS says otherwise)."""
    console = Console(file=stream, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(file=stream, highlight=False, width=120)
    return console


# --- machine formats ------------------------------------------------------------------


def _iso(series: Any) -> list[str | None]:
    """tz-aware datetimes -> ISO 8601 UTC with ``Z``: microseconds, or nanoseconds when
    any value has them."""
    import pandas as pd

    utc = series.dt.tz_convert("UTC")
    sub_us = (utc.dt.nanosecond != 0).any()
    frac = utc.dt.microsecond * 1000 + utc.dt.nanosecond
    digits = frac.astype("Int64").astype(str).str.zfill(9)
    if not sub_us:
        digits = digits.str[:6]
    text = utc.dt.strftime("%Y-%m-%dT%H:%M:%S") + "." + digits + "Z"
    return [None if pd.isna(v) else v for v in text.astype(object).tolist()]


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


def _is_na(value: Any) -> bool:
    """None, or pandas' NA / NaT (recognised without importing pandas)."""
    return value is None or type(value).__name__ in ("NAType", "NaTType")


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if _is_na(value):
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
        if not isinstance(series.dtype, pd.DatetimeTZDtype):
            series = series.dt.tz_localize("UTC")
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
        frame = frame.to_pandas()
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
    if _is_na(addr):
        return ""
    host = f"[{addr}]" if ":" in str(addr) else str(addr)
    return f"{host}:{port}"


def state_text(state: Any, prefix: str = "") -> Text:
    name = "" if _is_na(state) else str(state)
    return Text(prefix + name, style=STATE_STYLES.get(name, ""))


def _int(value: Any) -> str:
    return "" if _is_na(value) else str(int(value))


def _title(what: str, sources: list[str], day: str) -> str:
    names = ", ".join(os.path.basename(s) or s for s in sources)
    return " — ".join(part for part in (what, names, day) if part)


def flags_text(kinds: Iterable[str], mid_stream: bool, role_inferred: bool) -> Text:
    """The ``flags`` cell: anomaly kinds (trouble in red, information dim), ``mid_stream``
    and ``roles?`` when client and server were guessed."""
    text = Text()
    names = list(kinds)
    if mid_stream and "mid_stream" not in names:
        names.append("mid_stream")
    if role_inferred:
        names.append("roles?")
    for i, name in enumerate(names):
        if i:
            text.append(", ")
        text.append(name, style="dim" if name in INFO_KINDS or name == "roles?" else "red")
    return text


def _file_of(row: Any) -> str:
    """The base name of a row's ``file`` (several captures), else ""."""
    name = getattr(row, "file", None)
    return "" if _is_na(name) else os.path.basename(str(name))


def _with_files(columns: list[Column], rows: list[list[RenderableType]], files: list[str],
                table: Any) -> tuple[list[Column], list[list[RenderableType]]]:
    """With several captures (the table has a ``file`` column), a ``file`` column after
    ``frame``: the frame numbers count within that file."""
    names = table.names if isinstance(table, Rows) else [str(c) for c in table.columns]
    if "file" not in names:
        return columns, rows
    at = next(i for i, c in enumerate(columns) if c.header == "frame") + 1
    return ([*columns[:at], Column("file"), *columns[at:]],
            [[*row[:at], name, *row[at:]] for row, name in zip(rows, files, strict=True)])


CONNECTION_VIEW = [
    Column("id", "right"), Column("client"), Column("server"), Column("start"),
    Column("duration", "right", short="dur"), Column("pkts", "right"),
    Column("bytes\nc→s", "right"), Column("bytes\ns→c", "right"),
    Column("client\nstate", state=True), Column("server\nstate", state=True),
    Column("close"), Column("flags", wrap=True),
]


def connections_view(connections: Any, summary: dict[str, Any],
                     sources: list[str]) -> list[RenderableType]:
    """``analyze``: a compact connections table, then the summary (`summary_view`)."""
    day, with_date = date_span(column_of(connections, "first_ts_ns"))
    rows: list[list[RenderableType]] = [[
        str(row.conn_id), endpoint(row.client_addr, row.client_port),
        endpoint(row.server_addr, row.server_port), clock(row.first_ts_ns, with_date),
        duration(row.duration), str(row.packets), str(row.client_bytes),
        str(row.server_bytes), state_text(row.client_state), state_text(row.server_state),
        Text(str(row.close_kind), style=CLOSE_STYLES.get(str(row.close_kind), "")),
        flags_text(row.anomalies or [], bool(row.mid_stream), bool(row.role_inferred)),
    ] for row in connections.itertuples(index=False)]
    caption = None if rows else "no TCP connections"
    if any(column_of(connections, "role_inferred")):
        caption = "roles?: no SYN seen, client and server guessed"
    table = FittedTable(_title("connections", sources, day), CONNECTION_VIEW, rows,
                        caption=caption, gap=1)
    return [table, summary_view(summary)]


def _counts(values: Iterable[Any], styles: dict[str, str] | None = None) -> Text:
    counts = Counter(str(v) for v in values if not _is_na(v))
    text = Text()
    for i, (name, n) in enumerate(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))):
        if i:
            text.append("  ")
        text.append(name, style=(styles or {}).get(name, ""))
        text.append(f" {n}")
    return text if counts else Text("none", style="dim")


def summary_view(summary: dict[str, Any]) -> LabelledLines:
    """`tcplife.summary.summarize`'s dict for people: each side's state at the capture's
    end, what was still open then, how connections closed, the anomalies that matter
    (warnings and errors; info rows counted in one line), the capture's counters in words."""
    grid = LabelledLines()
    grid.add_row("connections", str(summary["connections"]))
    grid.add_row("client ends in", _count_text(summary["client_ends_in"], STATE_STYLES))
    grid.add_row("server ends in", _count_text(summary["server_ends_in"], STATE_STYLES))
    open_end = Text()
    for i, (state, entry) in enumerate(summary["open_at_end"].items()):
        if i:
            open_end.append("  ")
        open_end.append(state, style=STATE_STYLES.get(state, ""))
        open_end.append(f" {entry['count']}")
        if "oldest_s" in entry and state != "ESTABLISHED":
            open_end.append(f" (oldest {duration(entry['oldest_s'])})", style="dim")
    grid.add_row("open at the end", open_end if summary["open_at_end"] else
                 Text("none", style="dim"))
    grid.add_row("closed by", _count_text(summary["closed_by"], CLOSE_STYLES))
    anomalies = summary["anomalies"]
    shown = Text()
    for severity in ("error", "warning"):
        for kind, n in anomalies[severity].items():
            if shown:
                shown.append("  ")
            shown.append(kind, style=SEVERITY_STYLES[severity])
            shown.append(f" {n}")
    grid.add_row("anomalies", shown if shown else Text("none", style="dim"))
    info = sum(anomalies["info"].values())
    if info:
        grid.add_row("information", Text(
            ", ".join(f"{kind} {n}" for kind, n in anomalies["info"].items())
            + " (normal TCP; anomalies --all lists them)", style="dim"))
    cap = summary["capture"]
    words = (f"{cap['frames']} frames, {cap['tcp_segments']} TCP segments, "
             f"{cap['non_tcp']} non-TCP")
    if cap.get("files", 1) > 1:
        words = f"{cap['files']} files merged by time, " + words
    if cap.get("filtered_out"):
        words += f", {cap['filtered_out']} frames filtered out (--filter)"
    if cap["bad_checksums"]:
        words += f", {cap['bad_checksums']} bad checksums"
    grid.add_row("capture", words)
    notes = []
    for addr, n in cap["checksum_offload"].items():
        notes.append(f"every segment {addr} sent ({n}) has an unfilled checksum: checksum "
                     "offload on the capturing host (normal)")
    if cap["truncated"]:
        notes.append(f"{cap['truncated']} segments cut by the snap length: their headers "
                     "were read (normal with tcpdump -s)")
    if notes:
        grid.add_row("", Text("; ".join(notes), style="dim"))
    if cap["warnings"]:
        grid.add_row("warnings", Text(f"{cap['warnings']} (on stderr)", style="yellow"))
    return grid


def _count_text(counts: dict[str, int], styles: dict[str, str] | None = None) -> Text:
    return _counts([name for name, n in counts.items() for _ in range(n)], styles)


TIMELINE_VIEW = [
    Column("time"), Column("conn", "right", short="id"), Column("side"), Column("address"),
    Column("from", state=True), Column(""), Column("to", state=True),
    Column("event", wrap=True), Column("frame", "right"), Column("held", "right"),
]


def timeline_view(transitions: Any, connections: Any,
                  sources: list[str]) -> list[RenderableType]:
    """``timeline``: one line per state change of one side, like bcc's tcpstates; ``held``
    is how long the side had been in the old state."""
    day, with_date = date_span(column_of(transitions, "ts_ns"))
    first_ns = dict(zip(column_of(connections, "conn_id"),
                        column_of(connections, "first_ts_ns"), strict=True))
    previous: dict[tuple[int, str], int] = {}
    rows: list[list[RenderableType]] = []
    files: list[str] = []
    for row in transitions.itertuples(index=False):
        files.append(_file_of(row))
        key = (int(row.conn_id), str(row.side))
        since = previous.get(key, first_ns.get(key[0]))
        previous[key] = int(row.ts_ns)
        held = None if since is None else (int(row.ts_ns) - int(since)) / 1e9
        rows.append([clock(row.ts_ns, with_date), str(row.conn_id), str(row.side),
                     endpoint(row.addr, row.port), state_text(row.from_state), "→",
                     state_text(row.to_state, "~" if row.inferred else ""), str(row.event),
                     _int(row.frame), duration(held)])
    caption = ("~ inferred: deduced from the peer's packets or a timeout, not seen on this "
               "side" if rows else "no state changes")
    columns, rows = _with_files(TIMELINE_VIEW, rows, files, transitions)
    return [FittedTable(_title("transitions", sources, day), columns, rows,
                        caption=caption)]


ANOMALY_VIEW = [
    Column("time"), Column("conn", "right", short="id"), Column("side"), Column("kind"),
    Column("severity"), Column("frame", "right"), Column("detail", wrap=True),
]


def anomalies_view(anomalies: Any, sources: list[str],
                   show_info: bool = False) -> list[RenderableType]:
    """``anomalies``: what went wrong, where, how sure, the evidence frame, and what to do.
    Info rows (normal TCP, noted) are counted in the caption unless ``show_info``."""
    day, with_date = date_span(column_of(anomalies, "ts_ns"))
    hidden = 0
    rows: list[list[RenderableType]] = []
    files: list[str] = []
    for row in anomalies.itertuples(index=False):
        severity = str(row.severity)
        if severity == "info" and not show_info:
            hidden += 1
            continue
        files.append(_file_of(row))
        sure = "" if str(row.confidence) == "certain" else f" ({row.confidence})"
        rows.append([
            clock(row.ts_ns, with_date), str(row.conn_id), str(row.side),
            Text(str(row.kind), style=SEVERITY_STYLES.get(severity, "")),
            Text(severity + sure, style=SEVERITY_STYLES.get(severity, "")),
            _int(row.frame), str(row.detail)])
    caption = None if rows else ("no anomalies found" if not hidden else
                                 "no warnings or errors")
    if hidden:
        more = f"{hidden} info row{'s' if hidden > 1 else ''} hidden (--all shows them)"
        caption = more if caption is None else f"{caption}; {more}"
    columns, rows = _with_files(ANOMALY_VIEW, rows, files, anomalies)
    return [FittedTable(_title("anomalies", sources, day), columns, rows,
                        caption=caption)]


STATE_AT_VIEW = [
    Column("State", state=True), Column("Local Address:Port", short="Local"),
    Column("Peer Address:Port", short="Peer"), Column("conn", "right", short="id"),
    Column("side"), Column("since"), Column("for", "right"),
]


def state_at_view(snapshot: Any, at_ns: int,
                  sources: list[str]) -> list[RenderableType]:
    """``at``: the sockets each side held at one instant, like ``ss -tan``; ``since`` is
    when the side entered its state and ``for`` how long it had been in it."""
    day, _ = date_span([at_ns])
    rows: list[list[RenderableType]] = []
    for row in snapshot.itertuples(index=False):
        since_ns = int(round(float(row.since) * 1e6)) * 1000  # as `frames.to_ns`
        other_day = since_ns // 86_400_000_000_000 != at_ns // 86_400_000_000_000
        rows.append([state_text(row.state), endpoint(row.local_addr, row.local_port),
                     endpoint(row.remote_addr, row.remote_port), str(row.conn_id),
                     str(row.side), clock(since_ns, other_day),
                     duration((at_ns - since_ns) / 1e9)])
    return [FittedTable(_title(f"sockets at {clock(at_ns)}", sources, day), STATE_AT_VIEW,
                        rows, caption=None if rows else "no connection open at that instant")]


PACKETS_VIEW = [
    Column("frame", "right"), Column("+seconds", "right", short="+s"),
    Column("conn", "right", short="id"), Column("source"), Column(""),
    Column("destination", short="dest"), Column("flags"), Column("seq", "right"),
    Column("ack", "right"), Column("len", "right"), Column("win", "right"),
    Column("client state", short="client", state=True),
    Column("server state", short="server", state=True),
]


def packets_view(packets: Any, sources: list[str],
                 tshark: str | None = None) -> list[RenderableType]:
    """``frames``: the packets of chosen connections, as tshark lists them (relative
    seq/ack, time since the connection's first packet), with each side's state after
    each packet; a state is written only where it changes."""
    day, _ = date_span(column_of(packets, "ts_ns")[:1])
    rows: list[list[RenderableType]] = []
    last: dict[tuple[int, str], str] = {}
    files: list[str] = []
    for row in packets.itertuples(index=False):
        files.append(_file_of(row))
        cells: list[RenderableType] = []
        for side in ("client", "server"):
            state = str(getattr(row, f"{side}_state"))
            changed = last.get((int(row.conn_id), side)) != state
            last[(int(row.conn_id), side)] = state
            cells.append(state_text(state) if changed else "")
        flags = str(row.flags)
        rows.append([
            str(row.frame), f"{row.rel_ts:.6f}", str(row.conn_id),
            endpoint(row.src_addr, row.src_port), "→", endpoint(row.dst_addr, row.dst_port),
            Text(f"[{flags}]", style="red" if "RST" in flags else "cyan" if "SYN" in flags
                 else "yellow" if "FIN" in flags else ""),
            str(row.rel_seq), _int(row.rel_ack), str(row.len), str(row.window), *cells])
    columns, rows = _with_files(PACKETS_VIEW, rows, files, packets)
    views: list[RenderableType] = [FittedTable(
        _title("frames", sources, day), columns, rows,
        caption=None if rows else "no packets", gap=1)]
    if tshark:  # one line, never wrapped, so that it can be copied
        views.append(Text(tshark, style="dim", no_wrap=True, overflow="ignore"))
    return views
