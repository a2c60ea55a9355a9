"""Exporting every table of an analysis into a folder, one file per table.

Owns: `EXPORT_FORMATS`, the registry of exporters (format name -> function writing a
`Result` into a directory and returning the paths written), and the table exporters
(CSV, JSON lines, JSON, Parquet) built on `tcplife.output.formats`. A result is read as
`tcplife.output.analysed.Analysed`: this module does not import the engines. A new
format plugs in with one entry, e.g. ``EXPORT_FORMATS["zeek"] = write_zeek_conn_log``;
the CLI's ``export --format`` choices are this dict's keys. Knows nothing of click.

Files: ``connections``, ``transitions``, ``anomalies``, ``oddities`` (each with the
format's extension), plus ``capture.json``: the sources, what the reader counted, its
warnings, the options (timeouts) used and the tcplife version, so the tables can be
reproduced.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tcplife.output import formats as output
from tcplife.output.analysed import Analysed
from tcplife.output.schema import TABLES  # the tables exported, in this order

Exporter = Callable[[Analysed, Path], list[Path]]


def tables(result: Analysed) -> dict[str, Any]:
    """The tables as they are at hand (`tcplife.output.rows.Rows` or DataFrames: the writers
    take either; only Parquet and Zeek's log need pandas)."""
    return {name: result.table(name) for name in TABLES}


def capture_metadata(result: Analysed) -> dict[str, object]:
    """What ``capture.json`` holds."""
    from tcplife.version import __version__

    stats = dataclasses.asdict(result.stats)
    stats["link_types"] = {str(k): v for k, v in result.stats.link_types.items()}
    return {"tcplife_version": __version__, "sources": list(result.sources),
            "stats": stats, "options": dataclasses.asdict(result.options),
            "rows": {name: len(frame) for name, frame in tables(result).items()}}


def write_metadata(result: Analysed, directory: Path) -> Path:
    path = directory / "capture.json"
    path.write_text(json.dumps(capture_metadata(result), indent=2) + "\n", encoding="utf-8")
    return path


def table_exporter(fmt: str, extension: str) -> Exporter:
    """An exporter writing each table with `tcplife.output.formats.write` as ``fmt``."""

    def export(result: Analysed, directory: Path) -> list[Path]:
        written = []
        for name, frame in tables(result).items():
            path = directory / f"{name}.{extension}"
            output.write(frame, fmt, str(path), io.StringIO(), lambda: [])
            written.append(path)
        return [*written, write_metadata(result, directory)]

    return export


def zeek_exporter(result: Analysed, directory: Path) -> list[Path]:
    """Zeek's ``conn.log`` (TSV with Zeek's header lines, readable by zeek-cut), one line
    per Zeek connection (Zeek's inactivity timer may split a connection instance into
    several: `tcplife.peers.zeek_log`), plus ``capture.json``."""
    from datetime import datetime, timezone

    from tcplife.peers.zeek_log import write_zeek_conn_log

    def when(ns: int | None) -> datetime | None:
        return None if ns is None else datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)

    path = directory / "conn.log"
    write_zeek_conn_log(result.connections, path, open_time=when(result.stats.first_ts_ns),
                        close_time=when(result.stats.last_ts_ns))
    return [path, write_metadata(result, directory)]


EXPORT_FORMATS: dict[str, Exporter] = {
    "csv": table_exporter("csv", "csv"),
    "parquet": table_exporter("parquet", "parquet"),
    "jsonl": table_exporter("jsonl", "jsonl"),
    "json": table_exporter("json", "json"),
    "zeek": zeek_exporter,
}


def export(result: Analysed, directory: str | Path, fmt: str = "csv") -> list[Path]:
    """Write ``result`` into ``directory`` (created if missing; files of the same names
    are replaced) as ``fmt``, one of `EXPORT_FORMATS`; return the paths written."""
    try:
        exporter = EXPORT_FORMATS[fmt]
    except KeyError:
        raise output.OutputError(f"unknown export format {fmt!r}; choose from "
                                 f"{', '.join(EXPORT_FORMATS)}") from None
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    return exporter(result, path)
