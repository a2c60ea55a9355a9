"""``tcplife live``: the live mode's command, a thin shell over `tcplife.engines.live`.

Owns: the command's options, Ctrl-C and SIGTERM handling (both end the run cleanly, with a
summary), the JSON-lines stream (one line per event, flushed at once: `event_row`) and the live rich
screen (connections and each side's state, refreshed a few times a second, new anomalies
highlighted). Computes nothing: the session (`tcplife.engines.live.LiveSession`) does.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import click

from tcplife.capture.privileges import DEFAULT_USER
from tcplife.core.events import (
    Anomaly,
    ConnectionEnded,
    ConnectionRecord,
    ConnectionStarted,
    Retraction,
    Transition,
)
from tcplife.core.options import NS, Options
from tcplife.core.states import STATE_ORDER
from tcplife.output.formats import CLOSE_STYLES, INFO_KINDS, STATE_STYLES, clock, endpoint
from tcplife.output.schema import CONNECTIONS

if TYPE_CHECKING:
    from rich.console import RenderableType

    from tcplife.engines.live import LiveEvent, LiveSession

_encode = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode

#: How long a closed connection stays on the screen, and an anomaly stays highlighted.
LINGER_ON_SCREEN = 5.0
FRESH = 3.0


def live_command(timeout_options: Callable[[Any], Any]) -> click.Command:
    """The ``live`` command with the timeout options that every command shares, handed in
    by `tcplife.cli.main` (which registers it; this module does not import the CLI module, so
    either can be imported first)."""
    return click.command("live", epilog=EXAMPLES)(timeout_options(live))


#: The end of ``tcplife live --help`` (``\\b``: click keeps the lines as they are).
EXAMPLES = ("\b\nExamples:\n"
            "  tcplife live -i eth0 port 443\n"
            "  tcplife live -i any --duration 60 --format jsonl -w live.pcap")


@click.option("-i", "--interface", "iface", default="any", show_default=True,
              metavar="IFACE", help="Interface to capture on: any, lo, eth0, ...")
@click.argument("bpf", nargs=-1, metavar="[BPF FILTER...]")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]),
              help="table: a live screen; jsonl: one JSON line per event (transition, "
                   "anomaly, closed, ...), flushed at once [default: table on a terminal, "
                   "else jsonl].")
@click.option("--duration", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Stop after SECONDS.")
@click.option("-c", "--count", type=click.IntRange(min=1), metavar="N",
              help="Stop after N frames (that passed the filter).")
@click.option("-w", "--write", type=click.Path(dir_okay=False), metavar="FILE.pcap",
              help="Also write every captured frame to FILE.pcap (tcplife analyze FILE.pcap "
                   "gives the same tables).")
@click.option("--snaplen", type=click.IntRange(min=64), default=256, show_default=True,
              help="Bytes kept of each frame (headers are enough for tcplife).")
@click.option("--buffer", "buffer_mb", type=click.IntRange(min=1), default=32,
              show_default=True, metavar="MB", help="Kernel capture buffer.")
@click.option("--max-flows", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Connections tracked at once; past it the least recently active are "
                   "given up (with a warning).")
@click.option("--history", type=click.IntRange(min=0), default=10_000, show_default=True,
              help="Finished connections kept in memory (the library's result()).")
@click.option("--idle", type=click.FloatRange(min=0), default=Options.idle, show_default=True,
              metavar="SECONDS", help="A flow silent this long is given up.")
@click.option("--user", metavar="NAME",
              help="Once the interface is open, give up root and run as this user (as "
                   f"tcpdump -Z; default: {DEFAULT_USER}, or stay root without capabilities "
                   "if it cannot read Python's installation); started with capabilities "
                   "instead of root, give them up. 'root' keeps root.")
@click.option("--all-events", is_flag=True,
              help="jsonl: also the opened and retraction events.")
def live(iface: str, bpf: tuple[str, ...], fmt: str | None, duration: float | None,
         count: int | None, write: str | None, snaplen: int, buffer_mb: int, max_flows: int,
         history: int, idle: float, user: str | None, all_events: bool,
         timeouts: dict[str, float]) -> None:
    """Capture on an interface and analyse as it happens.

    BPF FILTER is in tcpdump syntax (e.g. tcp port 8080); the words are joined. Needs root
    or the CAP_NET_RAW capability. Ctrl-C, --duration or --count end the run with a
    summary. The run ends at that moment: every connection still open is judged then, as
    a capture file is at its last frame (a CLOSE_WAIT is counted to the stop), and no
    event is dated after it; the closed rows' *_eventual_state columns say where the
    timeouts still pending would take each side. jsonl ends with a "stopped" row.
    """
    from rich.console import Console

    from tcplife.capture.bpf import CaptureFilter, FilterError

    if bpf:  # a filter libpcap will not compile is a usage error, as --filter's is
        try:
            CaptureFilter(" ".join(bpf)).check()
        except FilterError as exc:
            raise click.BadParameter(str(exc), param_hint="BPF FILTER") from None
    fmt = fmt or ("table" if sys.stdout.isatty() else "jsonl")
    session = start_live(iface, " ".join(bpf) or None, duration=duration, count=count,
                         write=write, snaplen=snaplen, buffer_mb=buffer_mb,
                         max_flows=max_flows, history=history, idle=idle,
                         user=user or DEFAULT_USER, user_chosen=user is not None, **timeouts)
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"tcplife: listening on {iface}, link-type {session.source.linktype}"
        + (f", filter {' '.join(bpf)!r}" if bpf else "") + " (Ctrl-C to stop)"
        + ("" if (dropped := getattr(session.source, "dropped", None)) is None
           else f"; {dropped.sentence()}"))
    interrupted = [0]

    def on_signal(signum: int, frame: Any) -> None:
        interrupted[0] += 1
        if interrupted[0] > 1:  # a second Ctrl-C: stop now, without the summary
            raise KeyboardInterrupt
        session.stop("interrupted" if signum == signal.SIGINT else "terminated")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if fmt == "jsonl":
            _run_jsonl(session, sys.stdout, all_events)
        else:
            _run_table(session, iface, " ".join(bpf))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    _summary(session, write, fmt)


def start_live(*args: Any, **kwargs: Any) -> LiveSession:
    """`tcplife.engines.live.live`, imported when a capture starts (not with the command line)."""
    from tcplife.engines.live import live as begin

    return begin(*args, **kwargs)


def message(level: str, text: str, style: str) -> None:
    """One ``tcplife: <level>: <text>`` line on stderr, as the other commands write it."""
    from rich.console import Console
    from rich.text import Text

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        Text.assemble((f"tcplife: {level}: ", style), text))


_ISO_CACHE: dict[int, str] = {}


def _iso(ts_ns: int) -> str:
    """ISO 8601 UTC with microseconds and ``Z``, as the file mode's JSON has it."""
    seconds, rest = divmod(int(ts_ns), NS)
    head = _ISO_CACHE.get(seconds)
    if head is None:
        if len(_ISO_CACHE) > 64:
            _ISO_CACHE.clear()
        head = _ISO_CACHE[seconds] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{head}.{rest // 1000:06d}Z"


def record_row(rec: ConnectionRecord) -> dict[str, Any]:
    """A connection record as a row of the ``connections`` table (its columns, in its
    order; times as ISO strings)."""
    from tcplife.output.collect import connection_row

    row = connection_row(rec)
    row["first_time"], row["last_time"] = _iso(rec.first_ts_ns), _iso(rec.last_ts_ns)
    row["anomalies"] = sorted(set(rec.anomalies))
    # "merged" needs the other instances of the stream, which a live row cannot wait
    # for: a live row says only whether this instance spans several tcp.streams.
    row["tcp_stream_match"] = ("split" if rec.peers is not None
                               and len(rec.peers.tcp_streams) > 1 else "same")
    return {name: row[name] for name in CONNECTIONS}


def event_row(ev: LiveEvent) -> dict[str, Any] | None:
    """One event as a JSON-ready row: ``type`` (``transition``, ``retraction``,
    ``anomaly``, ``closed``, ``opened``, ``warning``, ``stopped``: the last, the instant the
    run ended) and the column names of the matching table; None for a `Tick`. Anomaly rows
    say ``final``: false for an `EarlyAnomaly`."""
    from tcplife.engines.live import EarlyAnomaly, LiveWarning, Stopped

    if isinstance(ev, Transition):
        return {"type": "transition", "conn_id": ev.conn_id, "ts": ev.ts_ns / NS,
                "time": _iso(ev.ts_ns), "side": ev.side, "addr": ev.addr, "port": ev.port,
                "from_state": ev.from_state.value, "to_state": ev.to_state.value,
                "event": ev.event, "frame": ev.frame, "inferred": ev.inferred,
                "tid": ev.tid}
    if isinstance(ev, (Anomaly, EarlyAnomaly)):
        return {"type": "anomaly", "conn_id": ev.conn_id, "ts": ev.ts_ns / NS,
                "time": _iso(ev.ts_ns), "side": ev.side, "kind": ev.kind, "frame": ev.frame,
                "detail": ev.detail, "severity": ev.severity, "confidence": ev.confidence,
                "final": isinstance(ev, Anomaly)}
    if isinstance(ev, ConnectionEnded):
        return {"type": "closed", **record_row(ev.record)}
    if isinstance(ev, ConnectionStarted):
        return {"type": "opened", "conn_id": ev.conn_id, "ts": ev.ts_ns / NS,
                "time": _iso(ev.ts_ns), "frame": ev.frame, "client_addr": ev.client_addr,
                "client_port": ev.client_port, "server_addr": ev.server_addr,
                "server_port": ev.server_port, "role_inferred": ev.role_inferred,
                "mid_stream": ev.mid_stream}
    if isinstance(ev, Retraction):
        return {"type": "retraction", "conn_id": ev.conn_id, "tid": ev.tid, "side": ev.side,
                "ts": ev.ts_ns / NS, "frame": ev.frame, "reason": ev.reason}
    if isinstance(ev, LiveWarning):
        return {"type": "warning", "kind": ev.kind, "ts": ev.ts_ns / NS, "detail": ev.detail}
    if isinstance(ev, Stopped):
        return {"type": "stopped", "ts": ev.ts_ns / NS, "time": _iso(ev.ts_ns),
                "reason": ev.reason}
    return None


def _run_jsonl(session: LiveSession, stream: IO[str], all_events: bool) -> None:
    from tcplife.engines.live import LiveWarning, Tick
    for ev in session:
        if isinstance(ev, Tick):
            continue
        if isinstance(ev, LiveWarning):
            message("warning", ev.detail, "yellow")
        if not all_events and isinstance(ev, (ConnectionStarted, Retraction)):
            continue
        row = event_row(ev)
        if row is not None:
            stream.write(_encode(row) + "\n")
            stream.flush()


def summary_lines(session: LiveSession) -> list[str]:
    """The summary of a run, line by line (without the ``tcplife:`` prefix)."""
    c = session.counters
    seconds = ((c.end_ns or c.stopped_ns or time.time_ns()) - c.started_ns) / NS
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(c.close_kinds.items())) or "none"
    anomalies = ", ".join(f"{k} {n}" for k, n in sorted(c.anomalies.items())) or "none"
    lines = [
        f"{c.stop_reason} after {seconds:.1f} s: {c.frames} frames, {c.segments} TCP "
        f"segments ({c.frames / seconds if seconds else 0:.0f}/s), dropped by the kernel "
        f"{c.kernel_drops}, by the interface {c.interface_drops}",
        f"connections {c.connections}: {kinds}",
        f"anomalies: {anomalies}",
    ]
    if c.open_at_end:
        parts = []
        for state in STATE_ORDER:
            if state in c.open_at_end:
                oldest = c.oldest_close_wait_ns if state == "CLOSE_WAIT" else None
                parts.append(f"{state} {c.open_at_end[state]}" + (
                    "" if oldest is None else f" (oldest {oldest / NS:.1f} s)"))
        lines.append("sides open when it stopped: " + ", ".join(parts))
    if c.early:
        lines.append("noticed live before the end: " + ", ".join(
            f"{k} {n}" for k, n in sorted(c.early.items())))
    if c.unconfirmed:
        lines.append("noticed live, then not confirmed by the final verdict (later packets "
                     "changed the reading): " + ", ".join(
                         f"{k} {n}" for k, n in sorted(c.unconfirmed.items())))
    if c.given_up_idle or c.given_up_cap:
        lines.append(f"given up: {c.given_up_idle} idle, {c.given_up_cap} over the flow cap")
    return lines


def _summary(session: LiveSession, write: str | None, fmt: str) -> None:
    from rich.console import Console
    from rich.text import Text

    lines = summary_lines(session)
    if write:
        lines.append(f"capture written to {write}")
    console = Console(stderr=fmt == "jsonl", highlight=False, soft_wrap=True)
    for line in lines:
        console.print(Text("tcplife: ", style="bold") + Text(line))


class Screen:
    """The live screen's model: connections and their sides' states, recent anomalies."""

    def __init__(self, session: LiveSession, title: str) -> None:
        self.session = session
        self.title = title
        self.rows: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.anomalies: deque[tuple[float, Any]] = deque(maxlen=8)
        self.warnings: deque[str] = deque(maxlen=2)
        self.started = time.monotonic()

    def update(self, ev: Any) -> None:
        from tcplife.engines.live import EarlyAnomaly, LiveWarning
        now = time.monotonic()
        if isinstance(ev, ConnectionStarted):
            self.rows[ev.conn_id] = {
                "client": endpoint(ev.client_addr, ev.client_port),
                "server": endpoint(ev.server_addr, ev.server_port), "client_state": "",
                "server_state": "", "seen": now, "closed": None, "kinds": set(),
                "fresh": 0.0, "close_kind": ""}
        elif isinstance(ev, Transition):
            row = self.rows.get(ev.conn_id)
            if row is not None:
                row[f"{ev.side}_state"] = ("~" if ev.inferred else "") + ev.to_state.value
                row["seen"] = now
                self.rows.move_to_end(ev.conn_id)
        elif isinstance(ev, ConnectionEnded):
            row = self.rows.get(ev.record.conn_id)
            if row is not None:
                row["closed"] = now
                row["close_kind"] = ev.record.close_kind
                row["client_state"] = ev.record.client_state.value
                row["server_state"] = ev.record.server_state.value
        elif isinstance(ev, (Anomaly, EarlyAnomaly)):
            key = (ev.conn_id, ev.side, ev.kind)
            early = [item for item in self.anomalies if isinstance(item[1], EarlyAnomaly)
                     and (item[1].conn_id, item[1].side, item[1].kind) == key]
            seen = now
            if isinstance(ev, Anomaly) and early:  # the verdict confirms what was shown
                for item in early:
                    self.anomalies.remove(item)
                seen = early[0][0]  # and is no news
            self.anomalies.appendleft((seen, ev))
            row = self.rows.get(ev.conn_id)
            if row is not None:
                row["kinds"].add(ev.kind)
                row["fresh"] = max(row["fresh"], seen)
        elif isinstance(ev, LiveWarning):
            self.warnings.appendleft(ev.detail)
        for conn_id in [k for k, r in self.rows.items()
                        if r["closed"] is not None and now - r["closed"] > LINGER_ON_SCREEN]:
            del self.rows[conn_id]

    def render(self, height: int) -> RenderableType:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        from tcplife.engines.live import EarlyAnomaly
        c = self.session.counters
        now = time.monotonic()
        elapsed = now - self.started
        status = Text.assemble(
            (f"tcplife live — {self.title}", "bold"),
            f" — {elapsed:.0f} s — {c.frames} frames ({c.frames / elapsed if elapsed else 0:.0f}"
            f"/s) — ", (f"{c.kernel_drops + c.interface_drops} dropped",
                        "bold red" if c.kernel_drops + c.interface_drops else "green"),
            f" — {self.session.tracker.open_count()} open, {c.closed} closed")
        table = Table(box=None, padding=(0, 1), header_style="bold", expand=False)
        for header, justify in (("id", "right"), ("client", "left"), ("server", "left"),
                                ("client state", "left"), ("server state", "left"),
                                ("close", "left"), ("anomalies", "left")):
            table.add_column(header, justify=justify)  # type: ignore[arg-type]
        room = max(3, height - 6 - len(self.anomalies) - len(self.warnings))
        shown = list(self.rows.items())[-room:]
        for conn_id, row in reversed(shown):
            if not row["client_state"] or not row["server_state"]:
                for rec in self.session.tracker.snapshot(conn_id):  # no transition yet:
                    for side in ("client", "server"):                # the initial state
                        row[f"{side}_state"] = row[f"{side}_state"] or getattr(
                            rec, f"{side}_state").value
            dim = row["closed"] is not None or all(
                row[f"{side}_state"].lstrip("~") == "CLOSED" for side in ("client", "server"))
            kinds = Text()
            for k in sorted(row["kinds"]):
                kinds.append(k + " ", style="dim" if k in INFO_KINDS else
                             "bold white on red" if now - row["fresh"] < FRESH else "red")
            table.add_row(
                str(conn_id), row["client"], row["server"],
                Text(row["client_state"], style="dim" if dim else
                     STATE_STYLES.get(row["client_state"].lstrip("~"), "")),
                Text(row["server_state"], style="dim" if dim else
                     STATE_STYLES.get(row["server_state"].lstrip("~"), "")),
                Text(row["close_kind"], style=CLOSE_STYLES.get(row["close_kind"], "")),
                kinds)
        parts: list[RenderableType] = [status, table]
        if len(self.rows) > room:
            parts.append(Text(f"… {len(self.rows) - room} more connections", style="dim"))
        for seen, ev in self.anomalies:
            fresh = now - seen < FRESH
            early = isinstance(ev, EarlyAnomaly)
            parts.append(Text.assemble(
                (f"{clock(ev.ts_ns)[:12]} ", "dim"),
                (f" {ev.kind} ", "bold white on red" if fresh else "red"),
                (" (so far)" if early else "", "italic"), f" conn {ev.conn_id}: {ev.detail}"))
        for w in self.warnings:
            parts.append(Text(f"warning: {w}", style="yellow"))
        return Group(*parts)


def _run_table(session: LiveSession, iface: str, bpf: str) -> None:
    from rich.console import Console
    from rich.live import Live

    from tcplife.engines.live import Tick
    console = Console(highlight=False)
    screen = Screen(session, iface + (f" — {bpf}" if bpf else ""))
    with Live(console=console, auto_refresh=False, transient=False,
              redirect_stderr=False) as view:
        last = 0.0
        for ev in session:
            if not isinstance(ev, Tick):
                screen.update(ev)
            now = time.monotonic()
            if now - last >= 0.25:
                last = now
                view.update(screen.render(console.size.height), refresh=True)
        view.update(screen.render(console.size.height), refresh=True)
