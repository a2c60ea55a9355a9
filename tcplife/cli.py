"""The command line: a thin click shell over `tcplife.analyze` and `tcplife.output`.

Owns: the commands and their options, exit statuses (0 done, 1 input or output could not
be read or written, 2 usage), and turning library errors into one ``tcplife: error:`` line
at this boundary. Computes nothing (that is `tcplife.analysis`) and renders nothing (that
is `tcplife.output`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import click
import pandas as pd
from rich.console import Console
from rich.text import Text

from tcplife import __version__, output
from tcplife.analysis import Result, analyze
from tcplife.capture import CaptureError
from tcplife.frames import to_ns
from tcplife.options import Options
from tcplife.safety import terminal_text

F = TypeVar("F", bound=Callable[..., Any])

#: Messages, warnings and errors: never on stdout, which carries only rows.
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

#: The timeout options shared by every command, with their help; defaults from `Options`.
TIMEOUTS: dict[str, str] = {
    "time_wait": "How long TIME_WAIT lasts (Linux: TCP_TIMEWAIT_LEN).",
    "fin_wait_2": "Lifetime of an orphaned FIN_WAIT_2 socket (net.ipv4.tcp_fin_timeout).",
    "syn_sent": "How long connect() retries its SYN (tcp_syn_retries=6).",
    "syn_received": "How long a SYN-ACK is retransmitted (tcp_synack_retries=5).",
    "close_wait_linger": "CLOSE_WAIT lasting longer than this is an anomaly.",
    "time_wait_threshold": "Sockets of one host in TIME_WAIT at once that make an anomaly.",
}


#: Shown under every command's help.
CAPTURE_EPILOG = ("CAPTURE: a pcap or pcapng file (gzipped is fine) or - for standard input. "
                  "Several captures are analysed as one, read in the order given.")


def message(level: str, text: str, style: str) -> None:
    """One ``tcplife: <level>: <text>`` line on stderr, never wrapped."""
    stderr.print(Text.assemble((f"tcplife: {level}: ", style), terminal_text(text)))


class CliError(click.ClickException):
    """A library error at the CLI boundary: one line on stderr, exit status 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        message("error", self.format_message(), "bold red")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


class TcplifeGroup(click.Group):
    """Turns errors raised under any command into `CliError` unless ``--debug``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:  # the reader of our stdout went away (`| head`)
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(1)
        except (CaptureError, OSError) as exc:
            if ctx.params.get("debug"):
                raise
            raise CliError(_describe(exc)) from exc
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            raise CliError(f"internal error: {type(exc).__name__}: {_describe(exc)} "
                           "(run with --debug for the traceback)") from exc


@click.group(cls=TcplifeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tcplife")
@click.option("--debug", is_flag=True, help="Show the traceback of any error.")
def main(debug: bool) -> None:
    """Reconstruct each side's TCP state over time from packet captures.

    CAPTURE is a pcap or pcapng file (gzipped is fine), or - for standard input. Several
    captures are read one after the other and analysed as one capture: frame numbers go
    on counting across them, so give them in time order.

    Rows go to standard output as a table on a terminal and as JSON lines otherwise
    (--format, -o FILE); warnings and errors go to standard error. Exit status: 0 done,
    1 an input could not be read (or the output written), 2 usage error.
    """


@dataclass(frozen=True)
class Output:
    """Where and how a command prints its rows (from the shared output options)."""

    format: str
    path: str | None

    def emit(self, frame: pd.DataFrame, table: output.TableBuilder) -> None:
        output.write(frame, self.format, self.path, sys.stdout, table)


def output_options(command: F) -> F:
    """``--format`` and ``-o/--output`` for every command that prints rows; the command
    receives them as one ``out: Output``."""

    @functools.wraps(command)
    def wrapper(*args: Any, fmt: str | None, path: str | None, **kwargs: Any) -> Any:
        chosen = output.choose_format(fmt, path, sys.stdout.isatty())
        if chosen == "parquet" and (path is None or path == "-"):
            raise click.UsageError("--format parquet needs -o FILE")
        return command(*args, out=Output(chosen, path), **kwargs)

    wrapper = click.option(
        "-o", "--output", "path", metavar="FILE", type=click.Path(dir_okay=False,
                                                                  allow_dash=True),
        help="Write the rows to FILE instead of standard output; without --format the "
             "format follows the extension (.json .jsonl .csv .parquet .txt).")(wrapper)
    wrapper = click.option(
        "--format", "fmt", type=click.Choice(output.FORMATS),
        help="Output format [default: table on a terminal, else jsonl]. JSON rows carry "
             "the DataFrame's column names; times are epoch seconds and ISO 8601 UTC.")(wrapper)
    return wrapper  # type: ignore[return-value]


def timeout_options(command: F) -> F:
    """The timeouts a capture cannot show, in seconds; the command receives them as one
    ``timeouts`` dict of `analyze` keywords."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        timeouts = {name: kwargs.pop(name) for name in TIMEOUTS}
        return command(*args, timeouts=timeouts, **kwargs)

    for name, text in reversed(TIMEOUTS.items()):
        wrapper = click.option(
            "--" + name.replace("_", "-"), name, type=click.FloatRange(min=0),
            default=getattr(Options, name), show_default=True,
            metavar="COUNT" if name.endswith("threshold") else "SECONDS", help=text)(wrapper)
    return wrapper  # type: ignore[return-value]


def capture_arguments(command: F) -> F:
    return click.argument("captures", nargs=-1, required=True, metavar="CAPTURE...",
                          type=click.Path(allow_dash=True))(command)  # type: ignore[return-value]


def conn_option(command: F) -> F:
    return click.option("--conn", "conn_id", type=click.IntRange(min=0), metavar="ID",
                        help="Only connection ID (the conn_id of `tcplife analyze`).")(command)  # type: ignore[return-value]


def run_analysis(captures: tuple[str, ...], timeouts: dict[str, float]) -> Result:
    """`analyze` over the captures as one; the reader's warnings go to stderr."""
    if captures.count("-") > 1:
        raise click.UsageError("standard input (-) can be read only once")
    result = analyze(list(captures), **timeouts)
    for warning in result.warnings:
        message("warning", warning, "yellow")
    return result


def only_conn(frame: pd.DataFrame, result: Result, conn_id: int | None) -> pd.DataFrame:
    if conn_id is None:
        return frame
    ids = result.connections["conn_id"]
    if not (ids == conn_id).any():
        known = f"ids 0–{ids.max()}" if len(ids) else "the capture has no connections"
        raise click.BadParameter(f"no connection {conn_id} ({known})", param_hint="--conn")
    return frame[frame["conn_id"] == conn_id].reset_index(drop=True)


@main.command("analyze", epilog=CAPTURE_EPILOG)
@capture_arguments
@timeout_options
@output_options
def analyze_command(captures: tuple[str, ...], timeouts: dict[str, float],
                    out: Output) -> None:
    """One row per connection instance, then (as a table) a summary.

    Columns: conn_id, ip_version, client_addr, client_port, server_addr, server_port,
    first_ts, last_ts, duration, packets, client_bytes, server_bytes, client_state,
    server_state (each side's state at capture end), close_kind, anomalies,
    role_inferred, mid_stream, then extra columns. The table shows a compact subset and
    counts states, close kinds, anomalies and what the capture reader skipped.
    """
    result = run_analysis(captures, timeouts)
    out.emit(result.connections, lambda: output.connections_view(
        result.connections, result.stats, result.sources))


@main.command("timeline", epilog=CAPTURE_EPILOG)
@capture_arguments
@conn_option
@timeout_options
@output_options
def timeline_command(captures: tuple[str, ...], conn_id: int | None,
                     timeouts: dict[str, float], out: Output) -> None:
    """Each side's state changes in time order, like bcc's tcpstates.

    In the table, ~ marks a change deduced from the peer's packets or a timeout rather
    than seen on that side's own packet (the `inferred` column), and `held` is how long
    the side had been in the old state.
    """
    result = run_analysis(captures, timeouts)
    rows = only_conn(result.transitions, result, conn_id)
    out.emit(rows, lambda: output.timeline_view(rows, result.connections, result.sources))


@main.command("anomalies", epilog=CAPTURE_EPILOG)
@capture_arguments
@conn_option
@timeout_options
@output_options
def anomalies_command(captures: tuple[str, ...], conn_id: int | None,
                      timeouts: dict[str, float], out: Output) -> None:
    """Anomalies: which connection and side, when, the evidence frame, what it means."""
    result = run_analysis(captures, timeouts)
    rows = only_conn(result.anomalies, result, conn_id)
    out.emit(rows, lambda: output.anomalies_view(rows, result.sources))


class Instant(click.ParamType):
    """TIME: epoch seconds, an ISO 8601 time (UTC unless it says otherwise), or +SECONDS
    after the capture's first packet. Converts to ``(ns, relative)``."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[int, bool]:
        if isinstance(value, tuple):
            return value
        text = str(value).strip()
        relative = text.startswith("+")
        try:
            ns = round(float(text[1:]) * 1e9) if relative else to_ns(text)
            valid = not pd.isna(pd.Timestamp(ns, unit="ns"))  # in range, not NaT ("nan")
        except (ValueError, TypeError, OverflowError):
            valid = False
        if not valid:
            self.fail(f"{value!r} is neither epoch seconds, an ISO 8601 time nor +SECONDS",
                      param, ctx)
        return ns, relative


@main.command("at", epilog=CAPTURE_EPILOG)
@click.argument("when", metavar="TIME", type=Instant())
@capture_arguments
@timeout_options
@output_options
def at_command(when: tuple[int, bool], captures: tuple[str, ...],
               timeouts: dict[str, float], out: Output) -> None:
    """The sockets each side held at TIME, like `ss -tan` run then.

    TIME is epoch seconds (1700000002.5), an ISO 8601 time (2023-11-14T22:13:22.5Z; UTC
    when no offset is given) or +SECONDS after the capture's first packet (+2.5).
    A side is listed unless it is CLOSED; `since` is when it entered its state.
    """
    result = run_analysis(captures, timeouts)
    ns, relative = when
    if relative:
        ns += result.stats.first_ts_ns or 0
    rows = result.state_at(pd.Timestamp(ns, unit="ns", tz="UTC"))
    out.emit(rows, lambda: output.state_at_view(rows, ns, result.sources))
