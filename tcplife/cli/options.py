"""The options shared by tcplife's commands, as click decorators, and their parameter types.

Owns: ``--format``/``-o`` (`output_options`, one `Output` per command), the timeouts
(`timeout_options`), the row filters (`filter_options`, one `Selection` per command), the
capture arguments and the TIME and HOST parameter types. Knows nothing of what the
commands compute; `tcplife.cli.main` puts them together.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tcplife.core.options import Options
from tcplife.core.states import STATE_ORDER
from tcplife.output import formats as output
from tcplife.output.filters import ANOMALY_KINDS, Filter, parse_host
from tcplife.output.rows import column_of
from tcplife.output.times import TimeError, When, parse_time

if TYPE_CHECKING:
    from tcplife.engines.analysis import Result

F = TypeVar("F", bound=Callable[..., Any])

#: The timeout options shared by every command, with their help; defaults from `Options`.
TIMEOUTS: dict[str, str] = {
    "time_wait": "How long TIME_WAIT lasts (Linux: TCP_TIMEWAIT_LEN).",
    "fin_wait_2": "Lifetime of an orphaned FIN_WAIT_2 socket (net.ipv4.tcp_fin_timeout).",
    "syn_sent": "How long connect() retries its SYN (tcp_syn_retries=6).",
    "syn_received": "How long a SYN-ACK is retransmitted (tcp_synack_retries=5).",
    "retransmit": "How long data is retransmitted into silence before the kernel gives up "
                  "(tcp_retries2=15).",
    "close_wait_linger": "CLOSE_WAIT lasting longer than this is an anomaly.",
    "time_wait_threshold": "Sockets of one host in TIME_WAIT at once that make an anomaly.",
    "port_range_low": "Lowest ephemeral port of the clients (net.ipv4.ip_local_port_range).",
    "port_range_high": "Highest ephemeral port of the clients (net.ipv4.ip_local_port_range).",
    "max_tw_buckets": "TIME_WAIT sockets a host may hold (net.ipv4.tcp_max_tw_buckets).",
    "time_wait_share": "Share of the limit (0-1) a TIME_WAIT peak or projection must pass.",
}

_METAVARS = {"time_wait_threshold": "COUNT", "max_tw_buckets": "COUNT",
             "port_range_low": "PORT", "port_range_high": "PORT", "time_wait_share": "SHARE"}


@dataclass(frozen=True)
class Output:
    """Where and how a command prints its rows (from the shared output options)."""

    format: str
    path: str | None

    @property
    def to_stdout(self) -> bool:
        return self.path is None or self.path == "-"

    @property
    def names_directory(self) -> bool:
        """``-o`` names a directory: one that exists, or a path ending in ``/`` or
        without an extension (where a command can write a dataset of files)."""
        if self.to_stdout:
            return False
        path = str(self.path)
        return (os.path.isdir(path) or path.endswith(("/", os.sep))
                or not Path(path).suffix)

    def emit(self, frame: Any, table: output.TableBuilder) -> None:
        output.write(frame, self.format, self.path, sys.stdout, table)

    @property
    def streams(self) -> bool:
        """Whether the format is written a frame at a time (`emit_frames`)."""
        return self.format in output.STREAMED_FORMATS

    def emit_frames(self, frames: Iterable[Any], empty: Any) -> None:
        output.write_frames(frames, self.format, self.path, sys.stdout, empty)

    def write_text(self, text: str) -> None:
        """Text made by the command itself (an SVG document) to the file or stdout."""
        if self.to_stdout:
            sys.stdout.write(text)
        else:
            with open(str(self.path), "w", encoding="utf-8") as stream:
                stream.write(text)


def output_options(command: F | None = None, *, formats: Sequence[str] = output.FORMATS,
                   default: str | None = None, datasets: bool = False) -> Any:
    """``--format`` and ``-o/--output`` for a command that prints rows; the command
    receives them as one ``out: Output``. ``default`` replaces the usual choice (table on
    a terminal, jsonl otherwise) when neither ``--format`` nor ``-o``'s extension says.
    ``datasets``: ``-o`` may name an existing directory with ``--format parquet`` (the
    command writes a dataset there; `Output.names_directory`)."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, fmt: str | None, path: str | None, **kwargs: Any) -> Any:
            try:
                if fmt or not default:
                    chosen = output.choose_format(fmt, path, sys.stdout.isatty(),
                                                  tuple(formats))
                elif path and path != "-":
                    chosen = output.format_of_path(path, default, tuple(formats))
                else:
                    chosen = default
            except output.UnknownExtension as exc:
                raise click.UsageError(str(exc)) from exc
            if chosen not in formats:
                raise click.UsageError(f"this command does not write {chosen}; formats: "
                                       f"{', '.join(formats)}")
            if chosen == "parquet" and (path is None or path == "-"):
                raise click.UsageError("--format parquet needs -o FILE")
            if path and os.path.isdir(path) and not (datasets and chosen == "parquet"):
                raise click.UsageError(f"-o {path} is a directory; give a file name")
            if path and path != "-" and _names_an_input(path, kwargs.get("captures", ())):
                raise click.UsageError(f"-o {path} is one of the captures being read; "
                                       "choose another file")
            return command(*args, out=Output(chosen, path), **kwargs)

        how = f"[default: {default}]" if default else \
            "[default: table on a terminal, else jsonl]"
        wrapper = click.option(
            "-o", "--output", "path", metavar="FILE",
            type=click.Path(dir_okay=datasets, allow_dash=True),
            help="Write to FILE instead of standard output; without --format the format "
                 "follows the extension (.json .jsonl .csv .parquet .txt"
                 + (" .svg" if "svg" in formats else "") + ").")(wrapper)
        wrapper = click.option(
            "--format", "fmt", type=click.Choice(list(formats)),
            help=f"Output format {how}. JSON rows carry the DataFrame's column names; "
                 "times are epoch seconds and ISO 8601 UTC.")(wrapper)
        return wrapper  # type: ignore[return-value]

    return decorate(command) if command is not None else decorate


def _names_an_input(path: str, captures: Sequence[str]) -> bool:
    """Does ``path`` name (or link to) one of the captures? Writing there would destroy
    the input after reading it."""
    target = Path(path)
    if not target.exists():
        return False
    for capture in captures:
        if capture == "-":
            continue
        try:
            if target.samefile(capture):
                return True
        except OSError:
            continue
    return False


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
            metavar=_METAVARS.get(name, "SECONDS"), help=text)(wrapper)
    return wrapper  # type: ignore[return-value]


def engine_options(command: F) -> F:
    """``--engine single|dask``, ``--scheduler``, ``--partitions``, ``--spool-dir``; the
    command receives ``engine``: None for the single process, else the `analyze_dask`
    keywords."""

    @functools.wraps(command)
    def wrapper(*args: Any, engine_name: str, scheduler: str | None, partitions: int | None,
                spool_dir: str | None, **kwargs: Any) -> Any:
        engine = None
        if engine_name == "dask":
            engine = {"scheduler": scheduler, "partitions": partitions,
                      "spool_dir": spool_dir}
        elif scheduler is not None or partitions is not None or spool_dir is not None:
            raise click.UsageError("--scheduler, --partitions and --spool-dir go with "
                                   "--engine dask")
        return command(*args, engine=engine, **kwargs)

    wrapper = click.option(
        "--spool-dir", metavar="DIR", default=None,
        help="With --engine dask: where the workers leave each stage's data for the next "
        "(a directory every worker reaches at that path; a subdirectory is made and "
        "removed); default: the -o directory of a Parquet dataset, else with a local "
        "cluster the temporary directory, else each worker's own scratch directory.")(wrapper)
    wrapper = click.option(
        "--partitions", type=click.IntRange(min=1), default=None, metavar="N",
        help="With --engine dask: flow partitions (default: twice the workers' threads, or "
        "one per 256 MiB of capture if more); the result does not depend on it.")(wrapper)
    wrapper = click.option(
        "--scheduler", metavar="ADDRESS", default=None,
        help="With --engine dask: a Dask scheduler (tcp://host:8786); default: a local "
        "cluster, one worker process per core.")(wrapper)
    wrapper = click.option(
        "--engine", "engine_name", type=click.Choice(["single", "dask"]), default="single",
        show_default=True,
        help="single: one process; dask: the files read and the connections tracked in "
        "parallel on a Dask cluster (pip install 'tcplife[dask]'), same rows.")(wrapper)
    return wrapper  # type: ignore[return-value]


def capture_arguments(command: F) -> F:
    # readable=False: a capture that cannot be read is the reader's one-line error (exit
    # 1), not click's usage error (exit 2)
    return click.argument("captures", nargs=-1, required=True, metavar="CAPTURE...",
                          type=click.Path(allow_dash=True, readable=False)
                          )(command)  # type: ignore[return-value]


def _check_filter(ctx: click.Context, param: click.Parameter, value: str | None
                  ) -> str | None:
    from tcplife.capture.bpf import CaptureFilter, FilterError

    if value is None or not value.strip():
        return None
    try:
        CaptureFilter(value).check()
    except FilterError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


#: where `read_options` leaves the command's ``--filter`` (in the click context's meta)
CAPTURE_FILTER = "tcplife.capture_filter"


def read_options(command: F) -> F:
    """``--filter EXPR``: a BPF expression (libpcap's, as ``tcpdump -r FILE EXPR``) that
    frames must match to be analysed. Every read of the command applies it: it is left in
    the click context (`capture_filter` reads it), so command bodies need not pass it on.
    One that libpcap will not compile is a usage error."""

    @functools.wraps(command)
    def wrapper(*args: Any, capture_filter: str | None, core: str | None,
                **kwargs: Any) -> Any:
        meta = click.get_current_context().meta
        meta[CAPTURE_FILTER] = capture_filter
        meta[CORE] = core
        return command(*args, **kwargs)

    wrapper = click.option(
        "--core", "core", type=click.Choice(["auto", "python", "c"]), default=None,
        help="Which implementation analyses: c (the compiled engine), python (the "
        "reference core), auto (the compiled one when it was built and loads); default: "
        "$TCPLIFE_CORE, else auto. Same rows either way.")(wrapper)
    return click.option(  # type: ignore[return-value]
        "--filter", "capture_filter", metavar="EXPR", default=None, callback=_check_filter,
        help="Analyse only the frames this BPF expression matches, as tcpdump -r FILE "
        "EXPR selects them (e.g. 'tcp port 443', 'host 10.0.0.1'); the others keep their "
        "frame numbers and are counted as filtered out.")(wrapper)


#: where `read_options` leaves the command's ``--core``
CORE = "tcplife.core"


def core_choice() -> str | None:
    """The running command's ``--core`` (None: not given, or no command running)."""
    ctx = click.get_current_context(silent=True)
    return None if ctx is None else ctx.meta.get(CORE)


def capture_filter() -> str | None:
    """The running command's ``--filter`` (None: none, or no command running)."""
    ctx = click.get_current_context(silent=True)
    return None if ctx is None else ctx.meta.get(CAPTURE_FILTER)


class SampleName(click.ParamType):
    """NAME of a capture that comes with tcplife (`tcplife.samples`), or ``list``."""

    name = "sample"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        from tcplife import samples

        if value == "list" or value in samples.names():
            return str(value)
        self.fail(f"no sample {value!r}; the samples are: {', '.join(samples.names())} "
                  "(--sample list says what each shows)", param, ctx)

    def shell_complete(self, ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        from tcplife import samples

        return [CompletionItem(name, help=samples.describe(name))
                for name in samples.names() if name.startswith(incomplete)]


def _list_samples(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """``--sample list``: the names with one line each, then exit 0."""
    if value != "list" or ctx.resilient_parsing:
        return value
    from tcplife import samples

    width = max(map(len, samples.names()))
    for name in samples.names():
        click.echo(f"{name:<{width}}  {samples.describe(name)}")
    ctx.exit(0)


def sample_option(command: F) -> F:
    """``--sample NAME``: read a capture that comes with tcplife (`tcplife.samples`)
    instead of CAPTURE arguments; ``--sample list`` lists them. Goes directly above
    `capture_arguments`, whose CAPTURE... it makes optional: the command receives
    ``captures`` either way, and neither given is a usage error."""
    captures = [param for param in getattr(command, "__click_params__", ())
                if isinstance(param, click.Argument) and param.name == "captures"]
    if not captures:
        raise TypeError("sample_option goes above capture_arguments")
    captures[0].required = False

    @functools.wraps(command)
    def wrapper(*args: Any, sample: str | None, captures: tuple[str, ...],
                **kwargs: Any) -> Any:
        if sample is not None:
            if captures:
                raise click.UsageError("give CAPTURE... or --sample NAME, not both")
            from tcplife import samples

            captures = (str(samples.path(sample)),)
        elif not captures:
            raise click.UsageError("Missing argument 'CAPTURE...' (or --sample NAME, a "
                                   "capture that comes with tcplife: --sample list)")
        return command(*args, captures=captures, **kwargs)

    return click.option(  # type: ignore[return-value]
        "--sample", type=SampleName(), metavar="NAME", is_eager=True,
        callback=_list_samples,
        help="Read NAME, a capture that comes with tcplife, instead of CAPTURE "
             "(--sample list: the names, one line each).")(wrapper)


class Instant(click.ParamType):
    """TIME, any of the forms of `tcplife.output.times` (epoch seconds, ISO 8601, HH:MM:SS on the
    capture's date, start, end, +S, -S). Converts to a `tcplife.output.times.When`, made absolute
    against the capture by `absolute_ns`."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> When:
        try:
            return parse_time(value)
        except TimeError as exc:
            self.fail(str(exc), param, ctx)


def absolute_ns(when: When | None, result: Result) -> int | None:
    """An `Instant` made absolute against the capture; a time outside it, or a time of
    day in a capture that spans days, gets a warning on stderr."""
    if when is None:
        return None
    try:
        ns, notes = when.resolve(result.stats.first_ts_ns, result.stats.last_ts_ns)
    except TimeError as exc:
        raise click.UsageError(str(exc)) from exc
    for note in notes:
        click.echo(f"tcplife: warning: {note}", err=True)
    return ns


class Host(click.ParamType):
    """An address or a network in CIDR notation."""

    name = "host"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return parse_host(value)
        except ValueError:
            self.fail(f"{value!r} is neither an IP address nor a network (10.0.0.0/8)",
                      param, ctx)


@dataclass(frozen=True)
class Selection:
    """The filter options as given; `resolve` turns them into a `Filter` once the
    capture's start (for +SECONDS) and its connections (to check --conn) are known."""

    hosts: tuple[Any, ...] = ()
    ports: tuple[int, ...] = ()
    conn_ids: tuple[int, ...] = ()
    states: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    since: tuple[int, bool] | None = None
    until: tuple[int, bool] | None = None

    def resolve(self, result: Result) -> Filter:
        ids = set(column_of(result.table("connections"), "conn_id"))
        for conn_id in self.conn_ids:
            if conn_id not in ids:
                known = f"ids 0–{max(ids)}" if ids else "the capture has no connections"
                raise click.BadParameter(f"no connection {conn_id} ({known})",
                                         param_hint="--conn")
        return Filter(self.hosts, self.ports, self.conn_ids,
                      tuple(s.upper() for s in self.states), self.kinds,
                      absolute_ns(self.since, result), absolute_ns(self.until, result))


def conn_option(required: bool = False, multiple: bool = True) -> Callable[[F], F]:
    help_text = "Only connection ID (the conn_id of `tcplife analyze`)" + (
        "; repeat for several." if multiple else ".")
    return click.option("--conn", "conn_ids" if multiple else "conn_id",
                        type=click.IntRange(min=0), metavar="ID", multiple=multiple,
                        required=required, help=help_text)


def filter_options(command: F | None = None, *, window: bool = True,
                   conn: bool = True) -> Any:
    """``--host --port --conn --state --kind`` (each repeatable: any of them matches) and
    ``--since --until``; the command receives them as one ``select: Selection``."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, hosts: tuple[Any, ...], ports: tuple[int, ...],
                    states: tuple[str, ...], kinds: tuple[str, ...], **kwargs: Any) -> Any:
            select = Selection(hosts, ports, kwargs.pop("conn_ids", ()), states, kinds,
                               kwargs.pop("since", None), kwargs.pop("until", None))
            return command(*args, select=select, **kwargs)

        if window:
            wrapper = click.option(
                "--until", type=Instant(), metavar="TIME",
                help="Only connections that began by TIME, rows up to TIME.")(wrapper)
            wrapper = click.option(
                "--since", type=Instant(), metavar="TIME",
                help="Only connections still alive at TIME, rows from TIME on (TIME as "
                     "the tables print it, HH:MM:SS[.ffffff] on the capture's date; or "
                     "start, end, +S after the first frame, -S before the last, epoch "
                     "seconds, ISO 8601).")(wrapper)
        wrapper = click.option(
            "--kind", "kinds", multiple=True, metavar="KIND",
            type=click.Choice(ANOMALY_KINDS),
            help="Only connections with an anomaly of KIND (see `tcplife anomalies`).")(wrapper)
        wrapper = click.option(
            "--state", "states", multiple=True, metavar="STATE",
            type=click.Choice(STATE_ORDER, case_sensitive=False),
            help="Only connections with a side that ends in STATE (timeline: transitions "
                 "into STATE; at: sockets in STATE).")(wrapper)
        if conn:
            wrapper = conn_option()(wrapper)
        wrapper = click.option(
            "--port", "ports", multiple=True, type=click.IntRange(0, 65535), metavar="PORT",
            help="Only connections with PORT at either end.")(wrapper)
        wrapper = click.option(
            "--host", "hosts", multiple=True, type=Host(), metavar="ADDR[/LEN]",
            help="Only connections with this address, or an address in this network, at "
                 "either end.")(wrapper)
        return wrapper  # type: ignore[return-value]

    return decorate(command) if command is not None else decorate
