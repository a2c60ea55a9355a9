"""The command line: a thin click shell over `tcplife.analyze` and the renderers.

Owns: the commands, exit statuses (0 done, 1 input or output could not be read or
written, 2 usage), turning library errors into one ``tcplife: error:`` line at this
boundary, and the progress bar on stderr. The shared options live in
`tcplife.cli.options`; computing is `tcplife.engines.analysis` (and
`tcplife.engines.packets` for the frames of a connection), filtering
`tcplife.output.filters`, rendering `tcplife.output.formats`, `tcplife.output.ladder` and
`tcplife.output.plot`, exporting `tcplife.output.export`.

Another module's command plugs in with one line at the end of this file:
``main.add_command(its_command)``.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

import click

from tcplife.capture import CaptureError
from tcplife.capture.sources import find_captures
from tcplife.cli.options import (
    TIMEOUTS,
    Output,
    Selection,
    absolute_ns,
    capture_arguments,
    capture_filter,
    conn_option,
    core_choice,
    engine_options,
    filter_options,
    output_options,
    read_options,
    sample_option,
    timeout_options,
)
from tcplife.cli.options import Instant as Instant  # re-exported: tests and plug-ins use it
from tcplife.output import formats as output
from tcplife.output.export import EXPORT_FORMATS, export
from tcplife.output.rows import Rows, column_of
from tcplife.output.safety import terminal_text
from tcplife.output.schema import CONNECTIONS, TABLES
from tcplife.output.times import When
from tcplife.version import __version__

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from tcplife.engines.analysis import Result

# Start-up: `tcplife --help` and a JSON-lines, CSV or table run import neither pandas nor
# numpy's users until they are needed (the analysis imports numpy; pandas, pyarrow,
# matplotlib and dask only the commands and formats that use them).

#: Messages, warnings, errors and the progress bar: never on stdout, which carries rows.
#: (rich is imported with the first message: a JSON-lines run that says nothing needs none)
_STDERR: list[Console] = []


def stderr_console() -> Console:
    if not _STDERR:
        from rich.console import Console

        _STDERR.append(Console(stderr=True, highlight=False, soft_wrap=True))
    return _STDERR[0]

#: Shown under every command's help.
CAPTURE_EPILOG = ("CAPTURE: a pcap or pcapng file (gzipped is fine) or - for standard input. "
                  "Several captures are analysed as one, merged by time as mergecap merges them "
                  "(in any order; overlapping ones get a warning); a directory or a quoted glob "
                  "stands for its captures (other files skipped with a warning).")


def epilog(*examples: str) -> str:
    """A command's epilog: `CAPTURE_EPILOG`, then its examples, one a line, last in its
    help (``\\b`` keeps click from re-wrapping them). ``capture.pcap`` in an example
    stands for the reader's capture; ``--sample NAME`` reads one that comes with tcplife.
    Every example runs as printed (tests/test_help_examples.py)."""
    return CAPTURE_EPILOG + "\n\n\b\nExamples:\n" + "\n".join(f"  {e}" for e in examples)


#: The progress bar appears only once reading has taken this long (seconds).
PROGRESS_DELAY = 0.5
#: Rows per piece when `tcplife analyze` writes JSON lines or CSV a piece at a time.
STREAM_ROWS = 20_000

__all__ = ["TIMEOUTS", "CliError", "Instant", "main"]


def message(level: str, text: str, style: str) -> None:
    """One ``tcplife: <level>: <text>`` line on stderr, never wrapped."""
    from rich.text import Text

    stderr_console().print(Text.assemble((f"tcplife: {level}: ", style),
                                         terminal_text(text)))


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
        except (CaptureError, OSError, output.OutputError) as exc:
            if ctx.params.get("debug"):
                raise
            raise CliError(_describe(exc)) from exc
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            raise CliError(f"internal error: {type(exc).__name__}: {_describe(exc)} "
                           "(run with --debug for the traceback)") from exc


def _print_version(ctx: click.Context, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from tcplife.native.loader import describe

    click.echo(f"tcplife, version {__version__}\n{describe()}")
    ctx.exit()


@click.group(cls=TcplifeGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="\b\nExamples:\n  tcplife analyze --sample list\n"
                    "  tcplife analyze --sample clean\n  tcplife anomalies capture.pcap")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=lambda ctx, _, value: _print_version(ctx, value),
              help="Show the version and which core is active (compiled or Python), and exit.")
@click.option("--debug", is_flag=True, help="Show the traceback of any error.")
def main(debug: bool) -> None:
    """Reconstruct each side's TCP state over time from packet captures.

    CAPTURE is a pcap or pcapng file (gzipped is fine), or - for standard input. Several
    captures are merged by time, as mergecap merges them, and analysed as one capture,
    whatever order they are given in. --filter EXPR (BPF, as tcpdump -r FILE EXPR) keeps
    only the frames it matches.

    Rows go to standard output as a table on a terminal and as JSON lines otherwise
    (--format, -o FILE); warnings and errors go to standard error. Exit status: 0 done,
    1 an input could not be read (or the output written), 2 usage error.

    Shell completion: eval "$(_TCPLIFE_COMPLETE=bash_source tcplife)" (zsh_source,
    fish_source for the other shells).
    """


# --- running the analysis -----------------------------------------------------------------


class ProgressBar:
    """``progress`` for `analyze`: a rich bar on stderr of the bytes read, then a pulsing
    "analysing" bar once everything is read (the tracker may still be working through the
    last batch). Shown only once the analysis has lasted `PROGRESS_DELAY` seconds (a
    timer, so that a capture read in one gulp still gets its bar) and only when stderr is
    a terminal (`progress_bar` decides that)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar: Progress | None = None
        self.task: Any = None
        self.analysing: Any = None
        self.done, self.total = 0, None
        self._lock = threading.Lock()
        self._timer = threading.Timer(PROGRESS_DELAY, self.show)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def show(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with self._lock:
            if self.bar is None:
                self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                    DownloadColumn(), TimeElapsedColumn(),
                                    TimeRemainingColumn(), console=self.console,
                                    transient=True)
                self.bar.start()
                self.task = self.bar.add_task("reading", total=self.total)
            self._update()

    def __call__(self, done: int, total: int | None) -> None:
        with self._lock:
            self.done, self.total = done, total
            if self.bar is not None:
                self._update()

    def _update(self) -> None:
        assert self.bar is not None
        if self.total is not None and self.done >= self.total:
            if self.analysing is None:  # everything read: a pulsing bar from now on
                self.bar.update(self.task, completed=self.done, visible=False)
                self.analysing = self.bar.add_task("analysing", total=None,
                                                   completed=self.done)
        else:
            self.bar.update(self.task, completed=self.done, total=self.total)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            if self.bar is not None:
                self.bar.stop()


@contextlib.contextmanager
def progress_bar() -> Iterator[ProgressBar | None]:
    # (a pipe or a file is no terminal: decided without loading rich)
    terminal = sys.stderr.isatty() and stderr_console().is_terminal
    bar = ProgressBar(stderr_console()) if terminal else None
    if bar is not None:
        bar.start()
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()


def _spool_stdin(captures: tuple[str, ...]) -> list[Any]:
    """Standard input read into memory, for commands that read the capture twice."""
    sources: list[Any] = []
    for capture in captures:
        if capture == "-":
            spooled = io.BytesIO(sys.stdin.buffer.read())
            spooled.name = "<stdin>"
            sources.append(spooled)
        else:
            sources.extend(find_captures([capture]).files)
    return sources


def capture_list(captures: tuple[str, ...], dask: bool) -> list[str]:
    """The capture files the arguments name (directories and globs expanded, ``-`` kept);
    with ``dask``, checked fit for the Dask engine (files only, Dask installed)."""
    if captures.count("-") > 1:
        raise click.UsageError("standard input (-) can be read only once")
    found = find_captures(captures)  # each checked: an unreadable one is an error now
    for warning in found.warnings:
        message("warning", warning, "yellow")
    files = found.files
    if not files:  # an empty directory: nothing could be read
        raise CaptureError(f"no capture files in {' '.join(captures)}")
    if dask:
        if "-" in files:
            raise click.UsageError("--engine dask reads files, not standard input (-)")
        try:
            import distributed  # noqa: F401
        except ImportError as exc:
            raise CliError("--engine dask needs Dask: pip install 'tcplife[dask]'") from exc
    return files


def run_analysis(captures: tuple[str, ...], timeouts: dict[str, float],
                 sources: list[Any] | None = None,
                 tables: tuple[str, ...] = TABLES,
                 engine: dict[str, Any] | None = None,
                 stream_connections: bool = False) -> Result:
    """`analyze` over the captures as one (``sources``: the captures opened already, for
    standard input read into memory), keeping only ``tables``; the reader's warnings go
    to stderr. A directory or a glob stands for its files in name order. ``engine``:
    `analyze_dask`'s keywords, to run on Dask. ``stream_connections``: `analyze`'s (the
    default engine only)."""
    files = capture_list(captures, dask=engine is not None)
    if engine is not None:
        from tcplife.engines.distributed import analyze_dask

        result = analyze_dask(files, tables=tables, capture_filter=capture_filter(),
                              **engine, **timeouts)
    else:
        from tcplife.engines.analysis import analyze

        with progress_bar() as bar:
            result = analyze(sources if sources is not None else files,
                             tables=tables, progress=bar,
                             stream_connections=stream_connections,
                             capture_filter=capture_filter(), core=core_choice(),
                             **timeouts)
    for warning in result.warnings:
        message("warning", warning, "yellow")
    return result


def write_parquet_dataset(captures: tuple[str, ...], engine: dict[str, Any] | None,
                          select: Selection, timeouts: dict[str, float],
                          directory: str) -> None:
    """``analyze --engine dask --format parquet -o DIR``: the workers write the tables;
    what was written is summarised on stderr."""
    if engine is None:
        raise click.UsageError(f"-o {directory} names a directory: a Parquet dataset is "
                               "written by --engine dask; give a FILE.parquet otherwise")
    if select != Selection():
        raise click.UsageError("row filters do not apply to a Parquet dataset: filter "
                               "when reading it")
    from tcplife.engines.distributed import analyze_dask

    files = capture_list(captures, dask=True)
    dataset = analyze_dask(files, parquet_dir=directory, capture_filter=capture_filter(),
                           **engine, **timeouts)
    for warning in dataset.warnings:
        message("warning", warning, "yellow")
    rows = ", ".join(f"{n} {table}" for table, n in dataset.rows.items())
    message("wrote", f"{rows} to {directory}", "green")


# --- the commands -------------------------------------------------------------------------


@main.command("analyze", epilog=epilog(
    "tcplife analyze --sample clean",
    "tcplife analyze capture.pcap --state CLOSE_WAIT -o open.csv"))
@sample_option
@capture_arguments
@read_options
@engine_options
@filter_options
@timeout_options
@output_options(datasets=True)
def analyze_command(captures: tuple[str, ...], engine: dict[str, Any] | None,
                    select: Selection, timeouts: dict[str, float], out: Output) -> None:
    """One row per connection instance, then (as a table) a summary.

    Columns: conn_id, ip_version, client_addr, client_port, server_addr, server_port,
    first_ts, last_ts, duration, packets, client_bytes, server_bytes, client_state,
    server_state (each side's state at the capture's last frame: what ss showed when it
    stopped), client_eventual_state, server_eventual_state (after the timeouts pending
    then, with no further packet: a TIME_WAIT at the end eventually CLOSED), close_kind,
    anomalies, role_inferred, mid_stream, then extra columns. The table shows a compact
    subset, then the summary: states at the end, what was open then (and the oldest),
    close kinds, anomalies (warnings and errors; info counted in one line), and what the
    capture reader counted.

    With --engine dask, --format parquet and -o DIR (an existing directory, or a path
    ending in / or without an extension), the Dask workers write all four tables as a
    Parquet dataset: DIR/connections/, DIR/transitions/, DIR/anomalies/, DIR/oddities/
    (one part file per partition; pandas.read_parquet(DIR/connections) reads one) and
    DIR/capture.json.
    """
    if out.format == "parquet" and out.path and (
            os.path.isdir(out.path) or engine is not None and out.names_directory):
        write_parquet_dataset(captures, engine, select, timeouts, str(out.path))
        return
    # JSON lines and CSV are written a piece at a time from the collector's compact
    # columns: the whole table is never held as a DataFrame (--conn checks its ids
    # against the whole table first, so it takes the other way).
    streamed = out.streams and engine is None and not select.conn_ids
    # The table's summary says how long what is open at the end has been so and ranks
    # the anomalies by severity: it needs the transitions and anomalies too.
    tables = ("connections", "transitions", "anomalies") if out.format == "table" \
        else ("connections",)
    result = run_analysis(captures, timeouts, tables=tables, engine=engine,
                          stream_connections=streamed)
    flt = select.resolve(result)
    if streamed:
        out.emit_frames((flt.connections(piece) for piece in result.iter_connection_rows(
            STREAM_ROWS)), Rows.empty(CONNECTIONS))
        return
    rows = flt.connections(result.table("connections"))
    out.emit(rows, lambda: _views().connections_view(rows, _summary(result, rows),
                                                   result.sources))


def _views() -> Any:
    """`tcplife.output.views`, imported for the table format only (it loads rich)."""
    from tcplife.output import views

    return views


def _summary(result: Result, rows: Any) -> dict[str, Any]:
    """The summary of the selected connections (``rows``)."""
    from tcplife.output.rows import select
    from tcplife.output.summary import summarize

    ids = set(column_of(rows, "conn_id"))

    def of_rows(name: str) -> Any:
        table = result.table(name)
        return select(table, [c in ids for c in column_of(table, "conn_id")])

    return summarize(rows, result.stats, of_rows("transitions"), of_rows("anomalies"))


@main.command("timeline", epilog=epilog(
    "tcplife timeline --sample close_wait",
    "tcplife timeline capture.pcap --conn 3 --format csv"))
@sample_option
@capture_arguments
@read_options
@filter_options
@click.option("--plot", "plot_path", metavar="FILE.png|FILE.svg",
              type=click.Path(dir_okay=False),
              help="Draw the state timeline chart (one bar per side, coloured by state) "
                   "into FILE instead of printing rows; needs matplotlib.")
@timeout_options
@output_options
def timeline_command(captures: tuple[str, ...], select: Selection, plot_path: str | None,
                     timeouts: dict[str, float], out: Output) -> None:
    """Each side's state changes in time order, like bcc's tcpstates.

    In the table, ~ marks a change deduced from the peer's packets or a timeout rather
    than seen on that side's own packet (the `inferred` column), and `held` is how long
    the side had been in the old state. With --plot, a chart of the selected connections.
    """
    if plot_path is not None:
        from tcplife.output.plot import FORMATS, PlotError, check_path

        if os.path.splitext(plot_path)[1].lower() not in FORMATS:
            raise click.BadParameter(f"{plot_path}: name the chart file .png, .svg or .pdf",
                                     param_hint="--plot")
        try:
            check_path(plot_path)
        except PlotError as exc:
            raise CliError(str(exc)) from exc
    result = run_analysis(captures, timeouts, tables=(
        "connections", "transitions", *(("anomalies",) if plot_path else ())))
    flt = select.resolve(result)
    if plot_path is not None:
        from tcplife.output.plot import plot_timeline

        figure = plot_timeline(result, plot_path, conn_ids=sorted(flt.selected_ids(
            result.table("connections"))) if not flt.empty else None)
        message("note", f"wrote {plot_path} ({figure.get_size_inches()[0]:.0f}×"
                f"{figure.get_size_inches()[1]:.0f} in)", "dim")
        return
    conns = result.table("connections")
    rows = flt.transitions(result.table("transitions"), conns)
    out.emit(rows, lambda: _views().timeline_view(rows, conns, result.sources))


@main.command("anomalies", epilog=epilog(
    "tcplife anomalies --sample dead_peer --all",
    "tcplife anomalies capture.pcap --kind lingering_close_wait --close-wait-linger 30"))
@sample_option
@capture_arguments
@read_options
@filter_options
@click.option("--all", "show_all", is_flag=True,
              help="In the table, list info rows too (normal TCP, noted: keepalive, "
                   "mid_stream, ...); other formats always carry every row.")
@timeout_options
@output_options
def anomalies_command(captures: tuple[str, ...], select: Selection, show_all: bool,
                      timeouts: dict[str, float], out: Output) -> None:
    """Anomalies: which connection and side, when, how severe and how sure, the evidence
    frame, what it means.

    Columns: conn_id, ts, side, kind, frame, detail, severity (error, warning, info),
    confidence (certain, likely, possible: where the wire cannot tell two causes apart,
    the row names both and is not certain), time, ts_ns. The table hides info rows and
    says how many (--all shows them).
    """
    result = run_analysis(captures, timeouts, tables=("connections", "anomalies"))
    rows = select.resolve(result).anomalies(result.table("anomalies"),
                                            result.table("connections"))
    out.emit(rows, lambda: _views().anomalies_view(rows, result.sources, show_info=show_all))


@main.command("at", epilog=epilog(
    "tcplife at 01:20:40 --sample close_wait",
    "tcplife at +2.5 capture.pcap --state TIME_WAIT"))
@click.argument("when", metavar="TIME", type=Instant())
@sample_option
@capture_arguments
@read_options
@filter_options(window=False)
@timeout_options
@output_options
def at_command(when: When, captures: tuple[str, ...], select: Selection,
               timeouts: dict[str, float], out: Output) -> None:
    """The sockets each side held at TIME, like `ss -tan` run then.

    TIME is epoch seconds (1700000002.5), an ISO 8601 time (2023-11-14T22:13:22.5Z; UTC
    when no offset is given), a time of day as the tables print it (22:13:22.5, on the
    capture's date), start or end (the first or last frame), +SECONDS after the first
    frame or -SECONDS before the last. A time outside the capture gets a warning naming
    its span. A side is listed unless it is CLOSED; `since` is when it entered its state.
    `at end` lists what the connections table's client_state/server_state say.
    """
    result = run_analysis(captures, timeouts, tables=("connections", "transitions"))
    ns = absolute_ns(when, result)
    assert ns is not None
    # (the time was resolved and warned about once, above)
    from tcplife.output.snapshot import state_at_rows

    conns = result.table("connections")
    snapshot = state_at_rows(conns, result.table("transitions"), ns)
    rows = select.resolve(result).snapshot(snapshot, conns)
    out.emit(rows, lambda: _views().state_at_view(rows, ns, result.sources))


def _packets(captures: tuple[str, ...], timeouts: dict[str, float],
             select: Selection) -> tuple[Result, Any, Any]:
    """Analyse, choose connections, read their packets again: (result, the chosen
    connections, their packets)."""
    from tcplife.engines.packets import read_packets

    sources = _spool_stdin(captures)
    result = run_analysis(captures, timeouts, sources,
                          tables=("connections", "transitions", "anomalies"))
    # Packets are matched to connections by frame numbers in the order of reading
    # (several captures: one count over the merged files); rows name their file after.
    conns = select.resolve(result).connections(result.read_order("connections"))
    for source in sources:
        if isinstance(source, io.BytesIO):
            source.seek(0)
    return result, conns, read_packets(sources, conns, result.read_order("transitions"),
                                       capture_filter=capture_filter())


def _tshark_command(result: Result, conn_id: int) -> str | None:
    """The tshark command line showing connection ``conn_id``'s frames; None where no
    one file holds them all (several captures, and the connection spans files)."""
    from tcplife.engines.packets import tshark_filter
    from tcplife.output.framemap import several

    connections = result.connections
    conn = next(connections[connections["conn_id"] == conn_id].itertuples(index=False))
    if several(result.stats):
        if conn.first_file != conn.last_file:
            return None
        source = str(conn.first_file)
    else:
        source = result.sources[0] if len(result.sources) == 1 else "-"
    read = f"-r {source} " if source not in ("-", "<stdin>") else ""
    return f"tshark {read}-Y '{tshark_filter(conn)}'"


@main.command("frames", epilog=epilog(
    "tcplife frames --sample unread_data",
    "tcplife frames capture.pcap --conn 3 -o conn3.csv"))
@sample_option
@capture_arguments
@read_options
@filter_options
@timeout_options
@output_options
def frames_command(captures: tuple[str, ...], select: Selection,
                   timeouts: dict[str, float], out: Output) -> None:
    """The frames (packets) of the selected connections, as tshark lists them.

    One row per TCP segment: frame number, time since the connection's first packet,
    addresses, flags, relative seq/ack (from each side's first sequence number, as
    Wireshark shows them), payload length, window, and each side's state after the
    packet. For one connection, the equivalent tshark display filter goes to stderr.
    Captures are read twice (standard input is held in memory for that).
    """
    from tcplife.output.framemap import with_files

    result, conns, packets = _packets(captures, timeouts, select)
    tshark = _tshark_command(result, int(conns["conn_id"].iloc[0])) \
        if len(conns) == 1 else None
    if tshark is not None and (out.format != "table" or not out.to_stdout):
        message("note", f"the same frames: {tshark}", "dim")
    packets = with_files(packets, result.stats)
    out.emit(packets, lambda: _views().packets_view(packets, result.sources, tshark))


def ladder_width() -> int:
    """The width the ladder is drawn at: the terminal's on a terminal, else ``COLUMNS``
    if set (as for tables), else 100; at most 140 (wider arrows show nothing more)."""
    if not sys.stdout.isatty():
        columns = os.environ.get("COLUMNS", "")
        return min(int(columns), 140) if columns.isdigit() and int(columns) > 0 else 100
    from rich.console import Console

    return min(Console(file=sys.stdout).width, 140)


@main.command("ladder", epilog=epilog(
    "tcplife ladder --sample close_wait --conn 0",
    "tcplife ladder capture.pcap --conn 3 -o conn3.svg"))
@sample_option
@capture_arguments
@read_options
@conn_option(required=True, multiple=False)
@timeout_options
@output_options(formats=("table", "svg", "json", "jsonl", "csv", "parquet"), default="table")
def ladder_command(captures: tuple[str, ...], conn_id: int, timeouts: dict[str, float],
                   out: Output) -> None:
    """A sequence diagram of connection ID: each packet an arrow, each side's states.

    The two endpoints are columns; each packet is an arrow from its sender with its
    flags, relative seq/ack and payload length; each side's new state is written beside
    it on the row of the packet that caused it (~: deduced from the peer's packet or a
    timeout); anomalies under their evidence packet. --format svg (or -o FILE.svg)
    draws the same as SVG; json/jsonl/csv/parquet give the packet rows of `frames`.
    The default is the diagram, even into a pipe.
    """
    from tcplife.output.framemap import several
    from tcplife.output.ladder import build_ladder, ladder_lines, ladder_svg

    result, conns, packets = _packets(captures, timeouts, Selection(conn_ids=(conn_id,)))
    conn = next(conns.itertuples(index=False))
    ladder = build_ladder(conn, packets, result.read_order("transitions"),
                          result.read_order("anomalies"), result.sources,
                          _tshark_command(result, conn_id) or "")
    if several(result.stats):  # frames as their files number them; the files in the title
        files = []
        for step in ladder.steps:
            if step.frame is not None:
                name, step.frame = result.stats.locate(step.frame)
                if name not in files:
                    files.append(name)
        ladder.sources = files
    if out.format == "svg":
        out.write_text(ladder_svg(ladder))
        if not out.to_stdout:
            message("note", f"wrote {out.path} ({ladder.packets} packets)", "dim")
        return
    from tcplife.output.framemap import with_files

    out.emit(with_files(packets, result.stats), lambda: ladder_lines(ladder, ladder_width()))


@main.command("export", epilog=epilog(
    "tcplife export --sample clean -d clean/",
    "tcplife export capture.pcap -d out/ --format jsonl"))
@sample_option
@capture_arguments
@read_options
@click.option("-d", "--directory", required=True, metavar="DIR",
              type=click.Path(file_okay=False),
              help="Write the tables into DIR (created if missing; files of the same names "
                   "are replaced).")
@click.option("--format", "fmt", default="csv", show_default=True,
              type=click.Choice(list(EXPORT_FORMATS)),
              help="Format of the files.")
@filter_options
@timeout_options
def export_command(captures: tuple[str, ...], directory: str, fmt: str, select: Selection,
                   timeouts: dict[str, float]) -> None:
    """Every table of the analysis into DIR, one file each.

    connections, transitions, anomalies and oddities (as CSV, JSON lines, JSON or
    Parquet), and capture.json: the sources, the reader's counts and warnings, the
    timeouts used and the tcplife version. The filters apply to every table. The paths
    written are listed on standard output, one per line.
    """
    from tcplife.output.rows import select as select_rows

    result = run_analysis(captures, timeouts)
    flt = select.resolve(result)
    conns = result.table("connections")
    oddities = result.table("oddities")
    if not flt.empty:
        ids = flt.selected_ids(conns)
        oddities = select_rows(oddities, [c in ids for c in column_of(oddities, "conn_id")])
    chosen = result.replace(
        connections=flt.connections(conns),
        transitions=flt.transitions(result.table("transitions"), conns),
        anomalies=flt.anomalies(result.table("anomalies"), conns),
        oddities=oddities)
    for path in export(chosen, directory, fmt):
        click.echo(str(path))


# Commands of other modules plug in here, one line each: main.add_command(...)
from tcplife.cli.live import live_command  # noqa: E402

main.add_command(live_command(timeout_options))
