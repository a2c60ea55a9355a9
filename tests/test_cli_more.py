"""The command line beyond the four original commands: filters, `export`, the progress bar,
colour, shell completion, the new commands through a real ``python -m tcplife``, and the
error exits of all of them.

Inputs are `pcapgen.orderly_close` conversations (their states worked out by hand) and
the kernel-lab captures in ``sample_pcaps/`` with their ``*.expected.json``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pcapgen
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

import tcplife
from tcplife.cli import main as cli
from tcplife.cli.main import main
from tcplife.engines.packets import PACKET_COLUMNS
from tcplife.output.export import EXPORT_FORMATS, TABLES, export
from tcplife.output.filters import Filter, make_filter
from tcplife.output.frames import ANOMALY_COLUMNS, CONNECTION_COLUMNS, TRANSITION_COLUMNS

from needs import needs, require_module

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_pcaps"
T0 = pcapgen.T0_US / 1e6
COLOUR = re.compile(r"\x1b\[[0-9;]*(3[0-7]|9[0-7]|38;[25];[0-9;]+)m")


@pytest.fixture(scope="module")
def close_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pcapgen.write_pcap(tmp_path_factory.mktemp("pcaps") / "close.pcap",
                              pcapgen.orderly_close())


@pytest.fixture(scope="module")
def two_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two conversations in one capture: 10.0.0.1:40000 at t0, 10.0.0.3:40001 at t0+10 s
    (to a server at 10.0.0.2:80 and [another] 10.0.0.4:443)."""
    later = pcapgen.orderly_close(pcapgen.T0_US + 10_000_000, ("10.0.0.3", 40001),
                                  ("10.0.0.4", 443))
    return pcapgen.write_pcap(tmp_path_factory.mktemp("pcaps") / "two.pcap",
                              pcapgen.orderly_close() + later)


def run(*args: str | Path, input: bytes | None = None) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def ids(result: Result) -> list[int]:
    assert result.exit_code == 0, result.output
    return sorted({row["conn_id"] for row in jsonl(result.stdout)})


# --- filters ------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    ([], [0, 1]),
    (["--host", "10.0.0.3"], [1]),
    (["--host", "10.0.0.4"], [1]),
    (["--host", "10.0.0.0/30"], [0, 1]),  # .1, .2, .3 (not .4): both have one end in it
    (["--host", "10.0.0.4/32", "--host", "10.0.0.1"], [0, 1]),
    (["--host", "192.168.0.1"], []),
    (["--host", "fd00::/8"], []),
    (["--port", "443"], [1]),
    (["--port", "40000"], [0]),
    (["--port", "40000", "--port", "443"], [0, 1]),
    (["--conn", "1"], [1]),
    (["--state", "closed"], [0, 1]),
    (["--state", "ESTABLISHED"], []),
    (["--since", "+5"], [1]),
    (["--until", "+5"], [0]),
    (["--since", str(T0 + 2), "--until", str(T0 + 2.5)], [0]),
    (["--since", "2023-11-14T22:13:35Z"], []),  # after both ended (t0 + 15 s)
    (["--host", "10.0.0.3", "--port", "80"], []),
])
def test_analyze_filters(args: list[str], expected: list[int], two_pcap: Path) -> None:
    assert ids(run("analyze", two_pcap, *args)) == expected


def test_timeline_filters_rows(two_pcap: Path) -> None:
    rows = jsonl(run("timeline", two_pcap, "--state", "TIME_WAIT").stdout)
    assert [(r["conn_id"], r["side"], r["frame"]) for r in rows] == \
        [(0, "client", 9), (1, "client", 19)]  # each client's receipt of the server's FIN
    rows = jsonl(run("timeline", two_pcap, "--since", "+0.5", "--until", "+1.5").stdout)
    assert sorted((r["side"], r["to_state"]) for r in rows) == \
        [("client", "FIN_WAIT_1"), ("client", "FIN_WAIT_2"), ("server", "CLOSE_WAIT")]
    rows = jsonl(run("timeline", two_pcap, "--port", "443", "--state", "close_wait").stdout)
    assert [(r["conn_id"], r["side"], r["frame"]) for r in rows] == [(1, "server", 17)]


def test_at_filters(two_pcap: Path) -> None:
    at = str(T0 + 12)  # conversation 1 is then as conversation 0 was at t0 + 2
    rows = jsonl(run("at", at, two_pcap).stdout)
    assert {(r["conn_id"], r["side"], r["state"]) for r in rows} == {
        (0, "client", "TIME_WAIT"), (1, "client", "FIN_WAIT_2"), (1, "server", "CLOSE_WAIT")}
    rows = jsonl(run("at", at, two_pcap, "--state", "CLOSE_WAIT").stdout)
    assert [(r["conn_id"], r["side"]) for r in rows] == [(1, "server")]
    assert jsonl(run("at", at, two_pcap, "--host", "10.0.0.1").stdout)[0]["conn_id"] == 0


def test_anomaly_kind_filter() -> None:
    path = SAMPLES / "server_never_closes.server.pcap"
    expected = json.loads((SAMPLES / "server_never_closes.expected.json").read_text())
    options = ["--fin-wait-2", "3", "--close-wait-linger", "1"]
    every = jsonl(run("anomalies", path, *options).stdout)
    assert {r["kind"] for r in every} == {"lingering_close_wait", "fin_wait_2_timeout"}
    only = jsonl(run("anomalies", path, *options, "--kind", "fin_wait_2_timeout").stdout)
    assert [(r["kind"], r["side"]) for r in only] == [("fin_wait_2_timeout", "client")]
    assert ids(run("analyze", path, *options, "--kind", "refused")) == []
    assert expected  # the scenario file exists: the kinds above are its ground truth


def test_filter_empty_results_keep_columns(two_pcap: Path) -> None:
    result = run("analyze", two_pcap, "--host", "192.0.2.1", "--format", "csv")
    assert result.stdout.strip() == ",".join(CONNECTION_COLUMNS)
    assert run("timeline", two_pcap, "--port", "1", "--format", "json").stdout.strip() == "[]"
    table = run("analyze", two_pcap, "--port", "1", "--format", "table").stdout
    assert "no TCP connections" in table


def test_filter_api_ipv6_network() -> None:
    result = tcplife.analyze(str(SAMPLES / "ipv6.client.pcap"))
    conns = result.connections
    assert len(make_filter(hosts=["fd00:231::/32"]).connections(conns)) == len(conns) > 0
    assert make_filter(hosts=["10.0.0.0/8"]).connections(conns).empty
    assert Filter().connections(conns) is conns
    empty = make_filter(ports=[1]).transitions(result.transitions, conns)
    assert list(empty.columns) == list(TRANSITION_COLUMNS) and empty.empty
    assert str(empty["to_state"].dtype) == "category"


@pytest.mark.parametrize(("args", "fragment"), [
    (["analyze", "X", "--host", "not-an-address"], "neither an IP address"),
    (["analyze", "X", "--port", "70000"], "70000"),
    (["analyze", "X", "--state", "DANCING"], "DANCING"),
    (["anomalies", "X", "--kind", "weird"], "weird"),
    (["timeline", "X", "--since", "soon"], "soon"),
    (["analyze", "X", "--conn", "5"], "no connection 5"),
    (["export", "X"], "Missing option '-d'"),
    (["export", "X", "-d", "out", "--format", "xml"], "xml"),
    (["frames"], "Missing argument"),
    (["ladder", "--conn", "-1", "X"], "-1"),
])
def test_more_usage_errors(args: list[str], fragment: str, close_pcap: Path) -> None:
    result = run(*[str(close_pcap) if a == "X" else a for a in args])
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output


# --- export -------------------------------------------------------------------------------


def test_export_csv(two_pcap: Path, tmp_path: Path) -> None:
    out = tmp_path / "tables"
    result = run("export", two_pcap, "-d", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(out / f"{t}.csv") for t in TABLES] + \
        [str(out / "capture.json")]
    conns = list(csv.DictReader((out / "connections.csv").open()))
    assert [(c["client_addr"], c["server_port"]) for c in conns] == \
        [("10.0.0.1", "80"), ("10.0.0.3", "443")]
    assert (out / "connections.csv").read_text() == run(
        "analyze", two_pcap, "--format", "csv").stdout
    transitions = list(csv.DictReader((out / "transitions.csv").open()))
    assert len(transitions) == 22  # 11 per orderly close (see test_cli)
    assert (out / "anomalies.csv").read_text().strip() == ",".join(ANOMALY_COLUMNS)
    meta = json.loads((out / "capture.json").read_text())
    assert meta["stats"]["frames"] == 20 and meta["sources"] == [str(two_pcap)]
    assert meta["options"]["time_wait"] == 60 and meta["rows"]["connections"] == 2
    assert meta["tcplife_version"] == tcplife.__version__


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "json"])
def test_export_formats_and_filter(fmt: str, two_pcap: Path, tmp_path: Path) -> None:
    if fmt == "parquet":
        require_module("pyarrow")
    out = tmp_path / fmt
    result = run("export", two_pcap, "-d", out, "--format", fmt, "--port", "443",
                 "--time-wait", "5")
    assert result.exit_code == 0, result.output
    path = out / f"transitions.{fmt}"
    frame = pd.read_parquet(path) if fmt == "parquet" else \
        pd.read_json(path, lines=fmt == "jsonl")
    assert set(frame["conn_id"]) == {1} and len(frame) == 11
    assert json.loads((out / "capture.json").read_text())["options"]["time_wait"] == 5


def test_export_registry_takes_a_new_format(close_pcap: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """How issue 8's Zeek writer plugs in: one entry in EXPORT_FORMATS."""

    def write_count(result: tcplife.Result, directory: Path) -> list[Path]:
        path = directory / "count.txt"
        path.write_text(f"{len(result.connections)}\n")
        return [path]

    monkeypatch.setitem(EXPORT_FORMATS, "count", write_count)
    [path] = export(tcplife.analyze(str(close_pcap)), tmp_path / "x", "count")
    assert path.read_text() == "1\n"


def test_export_into_a_file_is_an_error(close_pcap: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run("export", close_pcap, "-d", blocker / "sub")
    assert result.exit_code == 1
    assert result.stderr.startswith("tcplife: error: ") and result.stderr.count("\n") == 1


# --- errors on unreadable input, for every command ---------------------------------------


@pytest.mark.parametrize("command", [
    ["analyze"], ["timeline"], ["anomalies"], ["at", "+1"], ["frames"],
    ["ladder", "--conn", "0"], ["export", "-d", "OUT"], ["timeline", "--plot", "OUT.png"],
])
def test_unreadable_input_every_command(command: list[str], tmp_path: Path) -> None:
    if "--plot" in command:  # the chart's needs are checked first
        require_module("matplotlib")
    missing = tmp_path / "nope.pcap"
    args = [a.replace("OUT", str(tmp_path / "out")) for a in command]
    result = run(*args, missing)
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tcplife: error: ")
    assert str(missing) in lines[0] and "Traceback" not in result.output
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"GET / HTTP/1.1\r\n" * 8)
    result = run(*args, garbage)
    assert result.exit_code == 1 and "not a pcap or pcapng capture" in result.stderr


def test_truncated_capture_ladder_warns(close_pcap: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(close_pcap.read_bytes()[:-30])
    result = run("ladder", "--conn", "0", cut)
    assert result.exit_code == 0
    assert result.stderr.startswith("tcplife: warning: ") and "analysed up to frame 9" in \
        result.stderr
    assert sum("▶" in line or "◀" in line for line in result.stdout.splitlines()) == 9


# --- progress -----------------------------------------------------------------------------


def test_progress_reports_bytes(close_pcap: Path) -> None:
    calls: list[tuple[int, int | None]] = []
    tcplife.analyze(str(close_pcap), progress=lambda d, t: calls.append((d, t)))
    size = close_pcap.stat().st_size
    assert calls[-1] == (size, size)
    assert all(t == size for _, t in calls) and [d for d, _ in calls] == sorted(
        d for d, _ in calls)
    calls.clear()
    stream = io.BytesIO(close_pcap.read_bytes())
    result = tcplife.analyze([stream], progress=lambda d, t: calls.append((d, t)))
    assert calls[-1][0] == size and len(result.connections) == 1


def test_progress_gives_the_same_result(two_pcap: Path) -> None:
    plain = tcplife.analyze(str(two_pcap))
    watched = tcplife.analyze(str(two_pcap), progress=lambda d, t: None)
    pd.testing.assert_frame_equal(plain.transitions, watched.transitions)
    assert watched.sources == [str(two_pcap)]


def test_progress_bar_draws_only_on_a_terminal_after_a_while() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=80)
    bar = cli.ProgressBar(console)
    bar(10, 100)  # before the delay: remembered, nothing drawn
    assert bar.bar is None and screen.getvalue() == ""
    bar.show()  # what the timer does after PROGRESS_DELAY
    bar(50, 100)
    assert "reading" in screen.getvalue() or bar.bar is not None
    bar(100, 100)  # all read: the analysis goes on
    reading, analysing = bar.bar.tasks
    assert not reading.visible and reading.completed == 100
    assert analysing.description == "analysing" and analysing.total is None
    bar.close()
    assert "reading" in screen.getvalue()
    quick = cli.ProgressBar(console)
    quick.start()
    quick.close()  # finished within the delay: never drawn
    assert quick.bar is None
    with cli.progress_bar() as quiet:  # stderr of the test run is not a terminal
        assert quiet is None


def test_no_progress_noise_off_a_terminal(close_pcap: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "PROGRESS_DELAY", 0.0)
    result = run("analyze", close_pcap)
    assert result.exit_code == 0 and result.stderr == ""


# --- real processes: colour, completion, every new command --------------------------------


def python_m(*args: str | Path, env: dict[str, str] | None = None,
             stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    full = dict(os.environ, PYTHONPATH=str(REPO))
    full.pop("NO_COLOR", None)
    full.pop("FORCE_COLOR", None)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "tcplife", *map(str, args)], cwd=REPO,
                          env=full, input=stdin, capture_output=True, check=False)


def test_colour_follows_terminal_and_no_color(close_pcap: Path) -> None:
    args = ("analyze", close_pcap, "--format", "table")
    assert not COLOUR.search(python_m(*args).stdout.decode())  # a pipe: plain
    forced = python_m(*args, env={"FORCE_COLOR": "1"}).stdout.decode()
    assert COLOUR.search(forced)  # as on a terminal
    assert not COLOUR.search(python_m(*args, env={"FORCE_COLOR": "1",
                                                  "NO_COLOR": "1"}).stdout.decode())


def test_pipe_defaults_to_jsonl(close_pcap: Path) -> None:
    proc = python_m("timeline", close_pcap)
    assert proc.returncode == 0
    assert len(jsonl(proc.stdout.decode())) == 11


def test_shell_completion(close_pcap: Path) -> None:
    script = python_m(env={"_TCPLIFE_COMPLETE": "bash_source"})
    assert script.returncode == 0 and b"_tcplife_completion" in script.stdout
    words = python_m(env={"_TCPLIFE_COMPLETE": "bash_complete", "COMP_WORDS": "tcplife la",
                          "COMP_CWORD": "1"})
    assert b"ladder" in words.stdout
    options = python_m(env={"_TCPLIFE_COMPLETE": "bash_complete",
                            "COMP_WORDS": "tcplife analyze --fo", "COMP_CWORD": "2"})
    assert b"--format" in options.stdout


@pytest.mark.parametrize(("args", "check"), [
    (["frames", "--conn", "0", "-"], "frames"),
    (["ladder", "--conn", "0", "-"], "ladder"),
    (["ladder", "--conn", "0", "--format", "svg", "-"], "svg"),
    (["export", "-d", "OUT", "-"], "export"),
    (["timeline", "--plot", "OUT.png", "-"], "png"),
    (["analyze", "--host", "10.0.0.1", "--format", "csv", "-"], "csv"),
    (["--version"], "version"),
])
def test_python_m_new_commands(args: list[str], check: str, close_pcap: Path,
                               tmp_path: Path) -> None:
    if check == "png":
        require_module("matplotlib")
    args = [a.replace("OUT", str(tmp_path / "out")) for a in args]
    proc = python_m(*args, stdin=close_pcap.read_bytes())
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    if check == "frames":
        rows = jsonl(out)
        assert [list(r) for r in rows] == [list(PACKET_COLUMNS)] * 10
    elif check == "ladder":
        assert sum("▶" in line or "◀" in line for line in out.splitlines()) == 10
    elif check == "svg":
        assert out.startswith("<svg") and out.count('class="packet"') == 10
    elif check == "export":
        assert out.split()[0] == str(tmp_path / "out" / "connections.csv")
        assert (tmp_path / "out" / "capture.json").exists()
    elif check == "png":
        assert (tmp_path / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    elif check == "csv":
        assert out.splitlines()[1].startswith("0,4,10.0.0.1,40000,")
    else:
        first, core = out.strip().splitlines()  # the version, then which core is active
        assert first == f"tcplife, version {tcplife.__version__}"
        assert core.startswith("core: ")


def test_python_m_usage_and_read_errors(tmp_path: Path) -> None:
    proc = python_m("ladder", tmp_path / "nope.pcap")
    assert proc.returncode == 2 and b"--conn" in proc.stderr
    proc = python_m("frames", "--conn", "0", tmp_path / "nope.pcap")
    assert proc.returncode == 1 and proc.stderr.count(b"\n") == 1
    assert proc.stderr.startswith(b"tcplife: error: ") and b"Traceback" not in proc.stderr
    proc = python_m("--debug", "frames", tmp_path / "nope.pcap")
    assert proc.returncode == 1 and b"Traceback" in proc.stderr


@needs(modules=("matplotlib",))
def test_readme_notebook_example_output_is_real(tmp_path: Path) -> None:
    """examples/close_wait.py prints what docs/python.md says it prints, and draws its
    chart."""
    chart = tmp_path / "close_wait.png"
    proc = subprocess.run([sys.executable, "examples/close_wait.py", str(chart)], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    readme = (REPO / "docs" / "python.md").read_text()
    table = "\n".join(proc.stdout.splitlines()[:6])
    assert table in readme
    assert "server_never_closes.server.pcap        0 server 10.231.2.2:8080 " \
        "01:20:03.519833    4.738 LAST_ACK" in table
    assert chart.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("fast", [True, False])
def test_progress_on_gzip_and_both_paths(fast: bool, tmp_path: Path) -> None:
    """Counting bytes wraps the source in a file object: the bulk reader and the plain
    reader, gzipped or not, give the same tables with it as without."""
    import gzip

    raw = (SAMPLES / "many_short.client.pcap").read_bytes()
    packed = tmp_path / "many_short.pcap.gz"
    packed.write_bytes(gzip.compress(raw))
    calls: list[tuple[int, int | None]] = []
    watched = tcplife.analyze(str(packed), fast=fast, progress=lambda d, t: calls.append((d, t)))
    plain = tcplife.analyze(str(packed), fast=fast)
    pd.testing.assert_frame_equal(plain.connections, watched.connections)
    assert len(watched.connections) == 24
    assert calls[-1] == (packed.stat().st_size, packed.stat().st_size)  # compressed bytes


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("args", [[], ["--port", "8080"], ["--state", "closed"],
                                  ["--host", "192.0.2.1"], ["--since", "+0.004"]])
def test_analyze_writes_jsonl_and_csv_in_pieces_as_whole(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fmt: str, args: list[str]) -> None:
    """`tcplife analyze` writes JSON lines and CSV a few rows at a time from the compact
    columns (never the whole table as one DataFrame): the same bytes as the whole table
    written at once, filters included, and a header alone when nothing is left."""
    from tcplife.output import formats as output

    capture = str(SAMPLES / "many_short.client.pcap")
    monkeypatch.setattr(cli, "STREAM_ROWS", 3)  # 24 connections: 8 pieces
    pieces: list[int] = []
    real = output.write_frames

    def spy(frames: Any, *a: Any) -> None:
        real((pieces.append(len(f)) or f for f in frames), *a)

    monkeypatch.setattr(output, "write_frames", spy)
    got = CliRunner().invoke(main, ["analyze", capture, "--format", fmt, *args])
    assert got.exit_code == 0, got.output
    assert len(pieces) == 8
    result = tcplife.analyze(capture, tables=("connections",))
    flt = cli_options_selection(args).resolve(result)
    whole = io.StringIO()
    output.write(flt.connections(result.connections), fmt, None, whole, lambda: [])
    assert got.stdout == whole.getvalue()
    lines = got.stdout.count("\n") - (fmt == "csv")  # rows (without the CSV header)
    if "192.0.2.1" in args:  # no such host: nothing but the CSV header
        assert lines == 0
    elif "--since" in args:  # the second half of the 8.8 ms capture
        assert 3 < lines < 24
    else:
        assert lines == 24


def cli_options_selection(args: list[str]) -> Any:
    """The `Selection` the CLI makes of these filter options."""
    from tcplife.cli.options import Instant, Selection, parse_host

    pairs = dict(zip(args[::2], args[1::2], strict=True))
    since = Instant().convert(pairs["--since"], None, None) if "--since" in pairs else None
    return Selection(
        hosts=(parse_host(pairs["--host"]),) if "--host" in pairs else (),
        ports=(int(pairs["--port"]),) if "--port" in pairs else (),
        states=(pairs["--state"],) if "--state" in pairs else (), since=since)

