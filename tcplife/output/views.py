"""The terminal views of tcplife's tables: what a person reads in a terminal.

Owns: the rich renderables of ``analyze`` (connections and the summary), ``timeline``,
``anomalies``, ``at`` and ``frames`` -- consistent state colours, compact columns, UTC
clock times with the date once in the title, a ``file`` column beside ``frame`` with
several captures; the layout at any width is `tcplife.output.fit`'s. Imported only for the
``table`` format (rich is not loaded for JSON lines or CSV). Knows nothing of click or of
how the tables were computed: tables (`tcplife.output.rows.Rows` or DataFrames) in, renderables
out.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from tcplife.output.fit import Column, FittedTable, LabelledLines
from tcplife.output.formats import (
    CLOSE_STYLES,
    INFO_KINDS,
    SEVERITY_STYLES,
    STATE_STYLES,
    clock,
    date_span,
    duration,
    endpoint,
    is_na,
)
from tcplife.output.rows import Rows, column_of


def state_text(state: Any, prefix: str = "") -> Text:
    name = "" if is_na(state) else str(state)
    return Text(prefix + name, style=STATE_STYLES.get(name, ""))


def _int(value: Any) -> str:
    return "" if is_na(value) else str(int(value))


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
    return "" if is_na(name) else os.path.basename(str(name))


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
    counts = Counter(str(v) for v in values if not is_na(v))
    text = Text()
    for i, (name, n) in enumerate(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))):
        if i:
            text.append("  ")
        text.append(name, style=(styles or {}).get(name, ""))
        text.append(f" {n}")
    return text if counts else Text("none", style="dim")


def summary_view(summary: dict[str, Any]) -> LabelledLines:
    """`tcplife.output.summary.summarize`'s dict for people: each side's state at the capture's
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
