"""The command line end to end: every command in every format, exit statuses, stdin, files.

Inputs are generated here with `pcapgen` (a conversation whose states were worked out by
hand from its packets), plus the read-only third-party capture
``../shared/corpus/pcaps/zeek__http__get.pcap`` (from Zeek's test suite) when present.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pcapgen
import pytest
from click.testing import CliRunner, Result

from tcplife import __version__
from tcplife.cli.main import main
from tcplife.output.frames import (
    ANOMALY_COLUMNS,
    CONNECTION_COLUMNS,
    STATE_AT_COLUMNS,
    TRANSITION_COLUMNS,
)

from needs import CORPUS_PCAPS, needs, require_module

REPO = Path(__file__).resolve().parents[1]
ZEEK_HTTP = CORPUS_PCAPS / "zeek__http__get.pcap"
T0 = pcapgen.T0_US / 1e6  # 1700000000.0 = 2023-11-14T22:13:20Z
CONTRACT_CONNECTION_COLUMNS = [
    "conn_id", "ip_version", "client_addr", "client_port", "server_addr", "server_port",
    "first_ts", "last_ts", "duration", "packets", "client_bytes", "server_bytes",
    "client_state", "server_state", "client_eventual_state", "server_eventual_state",
    "close_kind", "anomalies", "role_inferred", "mid_stream",
]
COMMANDS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "analyze": ([], CONNECTION_COLUMNS),
    "timeline": ([], TRANSITION_COLUMNS),
    "anomalies": ([], ANOMALY_COLUMNS),
    "at": ([str(T0 + 2)], STATE_AT_COLUMNS),
}


@pytest.fixture(scope="module")
def close_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One orderly close (see `pcapgen.orderly_close` for the states at every instant)."""
    return pcapgen.write_pcap(tmp_path_factory.mktemp("pcaps") / "close.pcap",
                              pcapgen.orderly_close())


@pytest.fixture(scope="module")
def later_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same conversation 10 s later from client port 40001: a second capture."""
    return pcapgen.write_pcap(
        tmp_path_factory.mktemp("pcaps") / "later.pcap",
        pcapgen.orderly_close(pcapgen.T0_US + 10_000_000, ("10.0.0.1", 40001)))


def run(*args: str | Path, input: bytes | None = None) -> Result:
    """The CLI as into a pipe without COLUMNS (tables 120 wide, ladders 100), whatever
    the runner sets (pytest-xdist's workers have COLUMNS=80)."""
    return CliRunner().invoke(main, [str(a) for a in args], input=input,
                              env={"COLUMNS": None})


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def states(rows: list[dict[str, Any]]) -> dict[tuple[int, str], str]:
    return {(row["conn_id"], row["side"]): row["state"] for row in rows}


# --- every command x every format -----------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv", "parquet"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_every_format(command: str, fmt: str, close_pcap: Path,
                                    tmp_path: Path) -> None:
    if fmt == "parquet":
        require_module("pyarrow")
    extra, schema = COMMANDS[command]
    out = tmp_path / f"out.{fmt}"
    args = [command, *extra, close_pcap, "--format", fmt]
    result = run(*args, "-o", out) if fmt == "parquet" else run(*args)
    assert result.exit_code == 0, result.output
    if fmt == "table":
        heading = {"analyze": "connections — close.pcap — 2023-11-14 UTC",
                   "anomalies": "anomalies — close.pcap",
                   "at": "sockets at 22:13:22.000000 — close.pcap — 2023-11-14 UTC",
                   "timeline": "transitions — close.pcap — 2023-11-14 UTC"}[command]
        assert result.stdout.splitlines()[0].strip() == heading
        assert "\x1b[" not in result.stdout  # no colour when not on a terminal
        return
    if fmt == "parquet":
        assert result.stdout == ""
        frame = pd.read_parquet(out)
        rows = frame.to_dict("records")
        columns = list(frame.columns)
    elif fmt == "json":
        rows = json.loads(result.stdout)
        columns = list(rows[0]) if rows else list(schema)
    elif fmt == "jsonl":
        rows = jsonl(result.stdout)
        columns = list(rows[0]) if rows else list(schema)
    else:
        reader = csv.DictReader(io.StringIO(result.stdout))
        rows, columns = list(reader), list(reader.fieldnames or [])
    assert columns == list(schema)
    expected_rows = {"analyze": 1, "anomalies": 0, "at": 2, "timeline": 11}[command]
    assert len(rows) == expected_rows


# --- content ----------------------------------------------------------------------------


def test_analyze_jsonl_is_the_default_off_a_terminal(close_pcap: Path) -> None:
    result = run("analyze", close_pcap)
    assert result.exit_code == 0
    [row] = jsonl(result.stdout)
    assert list(row)[:len(CONTRACT_CONNECTION_COLUMNS)] == CONTRACT_CONNECTION_COLUMNS
    assert row["client_addr"] == "10.0.0.1" and row["client_port"] == 40000
    assert row["server_addr"] == "10.0.0.2" and row["server_port"] == 80
    assert (row["packets"], row["client_bytes"], row["server_bytes"]) == (10, 100, 300)
    assert row["first_ts"] == T0 and row["duration"] == pytest.approx(3.01)
    assert row["first_time"] == "2023-11-14T22:13:20.000000Z"
    # the capture ends 10 ms after the server's FIN, with the client in TIME_WAIT (the state
    # at the capture's end); the eventual state is taken after pending timeouts (TIME_WAIT
    # ends 60 s after frame 9)
    assert (row["client_state"], row["server_state"], row["close_kind"]) == \
        ("TIME_WAIT", "CLOSED", "fin")
    assert (row["client_eventual_state"], row["server_eventual_state"]) == ("CLOSED", "CLOSED")
    assert row["anomalies"] == [] and row["role_inferred"] is False


def test_analyze_table_summary(close_pcap: Path) -> None:
    result = run("analyze", close_pcap, "--format", "table")
    text = result.stdout
    assert "10.0.0.1:40000" in text and "10.0.0.2:80" in text
    assert "22:13:20.000000" in text
    # the capture ends 10 ms after the server's FIN: the client is in TIME_WAIT then
    assert "client ends in   TIME_WAIT 1" in text and "server ends in   CLOSED 1" in text
    assert "open at the end  TIME_WAIT 1 (oldest 10.0ms)" in text
    # counters that are zero are news to no one: left out
    assert "10 frames, 10 TCP segments, 0 non-TCP\n" in text
    assert "checksum" not in text and "truncated" not in text


@pytest.mark.parametrize(("when", "expected"), [
    (str(T0 + 0.5), {"client": "ESTABLISHED", "server": "ESTABLISHED"}),
    (str(T0 + 2), {"client": "FIN_WAIT_2", "server": "CLOSE_WAIT"}),
    ("2023-11-14T22:13:22Z", {"client": "FIN_WAIT_2", "server": "CLOSE_WAIT"}),
    ("+2", {"client": "FIN_WAIT_2", "server": "CLOSE_WAIT"}),
    (str(T0 + 3.005), {"client": "TIME_WAIT", "server": "LAST_ACK"}),
    (str(T0 + 30), {"client": "TIME_WAIT"}),
    (str(T0 - 1), {}),
])
def test_at_states(close_pcap: Path, when: str, expected: dict[str, str]) -> None:
    result = run("at", when, close_pcap)
    assert result.exit_code == 0, result.output
    rows = jsonl(result.stdout)
    assert {row["side"]: row["state"] for row in rows} == expected
    for row in rows:
        local = pcapgen.CLIENT if row["side"] == "client" else pcapgen.SERVER
        assert (row["local_addr"], row["local_port"]) == local


def test_at_table_looks_like_ss(close_pcap: Path) -> None:
    result = run("at", str(T0 + 2), close_pcap, "--format", "table")
    lines = result.stdout.splitlines()
    assert "sockets at 22:13:22.000000" in lines[0] and "2023-11-14 UTC" in lines[0]
    assert lines[1].split()[:3] == ["State", "Local", "Address:Port"]
    rows = [line.split() for line in lines[3:]]
    assert rows[0][:3] == ["FIN_WAIT_2", "10.0.0.1:40000", "10.0.0.2:80"]
    assert rows[1][:3] == ["CLOSE_WAIT", "10.0.0.2:80", "10.0.0.1:40000"]
    assert rows[0][5] == "22:13:21.010000"  # since frame 8, the ACK of the client's FIN


def test_timeline_rows_and_inferred_mark(close_pcap: Path) -> None:
    rows = jsonl(run("timeline", close_pcap).stdout)
    client = [(r["from_state"], r["to_state"], r["frame"]) for r in rows
              if r["side"] == "client"]
    assert client == [("CLOSED", "SYN_SENT", 1), ("SYN_SENT", "ESTABLISHED", 2),
                      ("ESTABLISHED", "FIN_WAIT_1", 7), ("FIN_WAIT_1", "FIN_WAIT_2", 8),
                      ("FIN_WAIT_2", "TIME_WAIT", 9), ("TIME_WAIT", "CLOSED", None)]
    table = run("timeline", close_pcap, "--format", "table").stdout
    assert "~FIN_WAIT_2" in table  # deduced from the server's ACK, not the client's packet
    assert "FIN_WAIT_1" in table and "~FIN_WAIT_1" not in table  # its own FIN: seen


def test_timeout_option_reaches_the_analysis(close_pcap: Path, later_pcap: Path) -> None:
    """The second capture carries time past the client's TIME_WAIT expiry (frame 9 + 5 s)."""
    at = str(T0 + 9)
    assert states(jsonl(run("at", at, close_pcap, later_pcap).stdout)) == \
        {(0, "client"): "TIME_WAIT"}
    assert states(jsonl(run("at", at, close_pcap, later_pcap, "--time-wait", "5").stdout)) \
        == {}
    rows = jsonl(run("timeline", close_pcap, later_pcap, "--time-wait", "5",
                     "--conn", "0").stdout)
    assert rows[-1]["event"] == "timeout" and rows[-1]["frame"] is None
    assert rows[-1]["ts"] == pytest.approx(T0 + 8) and rows[-1]["to_state"] == "CLOSED"


def test_several_captures_are_one(close_pcap: Path, later_pcap: Path) -> None:
    # merged by time whatever the order given; frames count within their own file
    for order in ((close_pcap, later_pcap), (later_pcap, close_pcap)):
        rows = jsonl(run("analyze", *order).stdout)
        assert [(r["conn_id"], r["client_port"], r["first_frame"], r["first_file"])
                for r in rows] == [(0, 40000, 1, str(close_pcap)),
                                   (1, 40001, 1, str(later_pcap))]


def test_timeline_conn_filter(close_pcap: Path, later_pcap: Path) -> None:
    rows = jsonl(run("timeline", "--conn", "1", close_pcap, later_pcap).stdout)
    assert rows and {r["conn_id"] for r in rows} == {1}
    assert {r["port"] for r in rows} == {40001, 80}
    result = run("timeline", "--conn", "7", close_pcap)
    assert result.exit_code == 2 and "no connection 7" in result.stderr


def test_empty_anomalies(close_pcap: Path) -> None:
    assert run("anomalies", close_pcap, "--format", "jsonl").stdout == ""
    assert json.loads(run("anomalies", close_pcap, "--format", "json").stdout) == []
    assert run("anomalies", close_pcap, "--format", "csv").stdout.strip() == \
        ",".join(ANOMALY_COLUMNS)
    assert "no anomalies found" in run("anomalies", close_pcap, "--format", "table").stdout


# --- files and streams ------------------------------------------------------------------


def test_stdin(close_pcap: Path) -> None:
    result = run("analyze", "-", input=close_pcap.read_bytes())
    assert result.exit_code == 0, result.output
    assert jsonl(result.stdout)[0]["server_bytes"] == 300


def test_output_file_and_extension(close_pcap: Path, tmp_path: Path) -> None:
    out = tmp_path / "conns.csv"
    result = run("analyze", close_pcap, "-o", out)
    assert result.exit_code == 0 and result.stdout == ""
    [row] = list(csv.DictReader(out.open()))
    assert row["client_state"] == "TIME_WAIT" and row["role_inferred"] == "false"
    assert row["client_eventual_state"] == "CLOSED"
    assert row["first_time"] == "2023-11-14T22:13:20.000000Z"


@needs(modules=("pyarrow",))
def test_parquet_round_trip(close_pcap: Path, tmp_path: Path) -> None:
    from tcplife import analyze

    out = tmp_path / "conns.parquet"
    assert run("analyze", close_pcap, "-o", out).exit_code == 0
    frame = pd.read_parquet(out)
    expected = analyze(str(close_pcap)).connections
    assert list(frame.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(frame.drop(columns="anomalies"),
                                  expected.drop(columns="anomalies"), check_dtype=False,
                                  check_categorical=False)
    assert [list(v) for v in frame["anomalies"]] == [[]]


# --- exit statuses and messages ---------------------------------------------------------


def assert_one_error_line(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tcplife: error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pcap"
    assert_one_error_line(run("analyze", missing), str(missing))


def test_garbage_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture at all\n" * 10)
    assert_one_error_line(run("timeline", garbage), str(garbage))


def test_unwritable_output(close_pcap: Path, tmp_path: Path) -> None:
    assert_one_error_line(run("analyze", close_pcap, "-o", tmp_path / "no" / "such.json"))


def test_debug_lets_the_exception_through(tmp_path: Path) -> None:
    result = run("--debug", "analyze", tmp_path / "nope.pcap")
    assert result.exit_code == 1 and type(result.exception).__name__ == "CaptureError"


@pytest.mark.parametrize("args", [
    ["analyze", "--format", "xml", "X"],
    ["analyze", "--time-wait", "-1", "X"],
    ["analyze"],
    ["analyze", "X", "--format", "parquet"],
    ["at", "not-a-time", "X"],
    ["at", "nan", "X"],
    ["at", "", "X"],
    ["at", "+soon", "X"],
    ["frobnicate"],
])
def test_usage_errors(args: list[str], close_pcap: Path) -> None:
    result = run(*[str(close_pcap) if a == "X" else a for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_truncated_capture_warns_and_goes_on(close_pcap: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(close_pcap.read_bytes()[:-30])  # the last frame loses its end
    result = run("analyze", cut)
    assert result.exit_code == 0
    assert result.stderr.startswith("tcplife: warning: ")
    assert jsonl(result.stdout)[0]["server_state"] == "LAST_ACK"  # final ACK never seen


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.stdout


# --- real processes ---------------------------------------------------------------------


def python_m(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "tcplife", *map(str, args)], cwd=REPO,
                          env=env, input=None if stdin is None else stdin.decode("latin-1"),
                          capture_output=True, text=True, encoding="latin-1", check=False)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_python_m_each_command(command: str, close_pcap: Path) -> None:
    extra, schema = COMMANDS[command]
    proc = python_m(command, *extra, "-", stdin=close_pcap.read_bytes())
    assert proc.returncode == 0, proc.stderr
    rows = jsonl(proc.stdout)
    assert all(list(row) == list(schema) for row in rows)
    if command == "at":
        assert states(rows) == {(0, "client"): "FIN_WAIT_2", (0, "server"): "CLOSE_WAIT"}


def test_python_m_errors(tmp_path: Path) -> None:
    proc = python_m("analyze", tmp_path / "nope.pcap")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("tcplife: error: ") and "Traceback" not in proc.stderr
    assert python_m("at", "yesterday-ish", tmp_path / "nope.pcap").returncode == 2


@needs(corpus=True)
def test_python_m_third_party_capture() -> None:
    """Zeek's http/get.pcap: one HTTP GET, client closes first (FIN at frame 12)."""
    proc = python_m("analyze", ZEEK_HTTP, "--format", "table")
    assert proc.returncode == 0 and "\x1b[" not in proc.stdout
    assert "141.142.228.5:59856" in proc.stdout and "192.150.187.43:80" in proc.stdout
    proc = python_m("timeline", ZEEK_HTTP)
    sends = [(r["side"], r["event"], r["frame"]) for r in jsonl(proc.stdout)
             if r["event"].startswith("send")]
    assert ("client", "send FIN", 12) in sends and ("client", "send SYN", 1) in sends
