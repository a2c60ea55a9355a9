"""Times as people type them (`tcplife.output.times`): one parser for `at`, `--since`, `--until`
and `Result.state_at`, with warnings naming the capture's span."""

from __future__ import annotations

import warnings
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import tcplife
from tcplife.cli.main import main
from tcplife.output.times import TimeError, parse_time

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"
FIRST = 1_795_310_419_728_496_000  # 2026-11-22 01:20:19.728496 UTC
LAST = FIRST + 2_500_000_000


@pytest.mark.parametrize(("text", "ns"), [
    ("start", FIRST), ("end", LAST), ("  END ", LAST),
    ("+1.5", FIRST + 1_500_000_000), ("-0.25", LAST - 250_000_000),
    ("01:20:20.5", 1_795_310_420_500_000_000),         # on the capture's date
    ("1:20:20", 1_795_310_420_000_000_000),
    ("1795310420.5", 1_795_310_420_500_000_000),       # epoch seconds
    ("2026-11-22T01:20:20.5Z", 1_795_310_420_500_000_000),
    ("2026-11-22T02:20:20.5+01:00", 1_795_310_420_500_000_000),
    ("2026-11-22 01:20:20.5", 1_795_310_420_500_000_000),  # naive: UTC
])
def test_forms(text: str, ns: int) -> None:
    at, notes = parse_time(text).resolve(FIRST, LAST)
    assert at == ns and notes == []


@pytest.mark.parametrize("value", [
    1_795_310_420.5, pd.Timestamp(1_795_310_420_500_000_000, unit="ns", tz="UTC"),
    datetime(2026, 11, 22, 1, 20, 20, 500000, tzinfo=timezone.utc)])
def test_python_values(value: object) -> None:
    assert parse_time(value).resolve(FIRST, LAST)[0] == 1_795_310_420_500_000_000


def test_timestamp_keeps_nanoseconds() -> None:
    stamp = pd.Timestamp(FIRST + 7, unit="ns", tz="UTC")
    assert parse_time(stamp).resolve(FIRST, LAST)[0] == FIRST + 7


@pytest.mark.parametrize("text", ["", "soon", "25:00:00", "+", "1:2", "nan"])
def test_not_a_time(text: str) -> None:
    with pytest.raises(TimeError):
        parse_time(text)


def test_outside_the_capture_names_its_span() -> None:
    at, notes = parse_time("1").resolve(FIRST, LAST)
    assert at == 10**9
    [note] = notes
    assert "outside the capture" in note and "2026-11-22 01:20:19.728496 UTC" in note


def test_time_of_day_in_a_capture_spanning_days_says_which_day() -> None:
    # 23:00 on day 1 to 02:00 on day 2: 01:00 falls on day 2, 23:30 on day 1
    first = int(datetime(2026, 11, 21, 23, tzinfo=timezone.utc).timestamp()) * 10**9
    last = first + 3 * 3600 * 10**9
    at, notes = parse_time("01:00:00").resolve(first, last)
    assert first <= at <= last and "taken on" in notes[0] and "spans" in notes[0]
    at2, _ = parse_time("23:30:00").resolve(first, last)
    assert first <= at2 <= last and at2 < at


def test_state_at_takes_the_cli_forms() -> None:
    """Result.state_at("+1.5") and `at +1.5` give the same rows (the capture starts 1.1 s
    before the SYN: at +1.5 s both sides are ESTABLISHED); "end" is what the connections
    table's end states say."""
    path = SAMPLES / "normal_close_client_first.client.pcap"
    result = tcplife.analyze(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # inside the capture: no warning
        plus = result.state_at("+1.5")
        end = result.state_at("end")
    assert len(plus) == 2 and set(plus["state"].astype(str)) == {"ESTABLISHED"}
    cli = CliRunner().invoke(main, ["at", "+1.5", str(path), "--format", "jsonl"])
    assert cli.exit_code == 0, cli.output
    assert len(cli.stdout.splitlines()) == len(plus)
    row = result.connections.iloc[0]
    got = {str(s): str(st) for s, st in zip(end["side"], end["state"], strict=True)}
    assert got.get("client", "CLOSED") == str(row.client_state)
    assert got.get("server", "CLOSED") == str(row.server_state)
    with pytest.warns(UserWarning, match="outside the capture"):
        assert result.state_at(1).empty


def test_cli_warns_outside_the_capture() -> None:
    cli = CliRunner().invoke(main, ["at", "1", str(SAMPLES / "refused.client.pcap"),
                                    "--format", "jsonl"])
    assert cli.exit_code == 0
    assert "tcplife: warning: 1 (1970-01-01 00:00:01.000000 UTC) is outside the capture" \
        in cli.stderr
