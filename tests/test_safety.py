"""Output safety (issue 7): CSV formula injection, control characters and rich markup on
the terminal, and ``-o`` writing exactly where the user said and nowhere else."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from rich.console import Console

from tcplife.cli.main import main
from tcplife.output import formats as output
from tcplife.output import views
from tcplife.output.safety import csv_text, open_output, terminal_text

from needs import needs, require_module

REPO = Path(__file__).resolve().parents[1]
CLOSE = REPO / "sample_pcaps" / "normal_close_client_first.client.pcap"
IPV6 = REPO / "sample_pcaps" / "ipv6.client.pcap"


# --- CSV ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx",
                                  "=HYPERLINK(\"http://x\",\"y\")", "-"])
def test_formula_cells_are_neutralised(text: str) -> None:
    assert csv_text(text) == "'" + text


@pytest.mark.parametrize("value", ["", "abc", "10.0.0.1", "fd00::1", "'=x", " =x", 0, -1,
                                   -1.5, 3.25, None, True])
def test_other_cells_are_unchanged(value: object) -> None:
    assert csv_text(value) == value


def test_csv_writer_neutralises_text_and_keeps_negative_numbers() -> None:
    frame = pd.DataFrame({"detail": ["=cmd|' /C calc'!A0", "plain", "@x"],
                          "duration": [-1.5, 2.0, -0.25], "frame": [-3, 4, 5],
                          "kinds": [["-x", "y"], [], ["+z"]]})
    stream = io.StringIO()
    output.write_csv(frame, stream)
    rows = list(csv.reader(io.StringIO(stream.getvalue())))
    assert rows[0] == ["detail", "duration", "frame", "kinds"]
    assert rows[1] == ["'=cmd|' /C calc'!A0", "-1.5", "-3", "'-x;y"]
    assert rows[2] == ["plain", "2.0", "4", ""]
    assert rows[3] == ["'@x", "-0.25", "5", "'+z"]


# --- terminal -------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "shown"), [
    ("plain text", "plain text"),
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
    ("a\nb\rc\td", "a\\x0ab\\x0dc\\x09d"),
    ("\x9b31m\x7f", "\\x9b31m\\x7f"),
    ("abc\u202edcba", "abc\\u202edcba"),
    ("\u2066x\u2069", "\\u2066x\\u2069"),
    ("ünïcødé → ok", "ünïcødé → ok"),
])
def test_terminal_text(text: str, shown: str) -> None:
    assert terminal_text(text) == shown


def _render(renderables: list[object], width: int = 200) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=False, color_system=None)
    for r in renderables:
        console.print(r)
    return out.getvalue()


def test_table_cells_and_title_are_escaped_and_not_markup() -> None:
    rows: list[list[object]] = [["\x1b[2J[bold]wipe", "[fd00::1]:80", "ok"]]
    table = views.FittedTable("title \x1b]0;pwned\x07 [red]x", [views.Column("a"),
                               views.Column("b"), views.Column("c")], rows)  # type: ignore[arg-type]
    text = _render([table])
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b[2J[bold]wipe" in text and "[fd00::1]:80" in text
    assert "\\x1b]0;pwned\\x07 [red]x" in text


def test_ipv6_endpoints_are_shown_in_the_table() -> None:
    """Regression: rich took ``[fd00:231:1::2]`` for a markup tag and printed ``:33242``."""
    result = CliRunner().invoke(main, ["analyze", str(IPV6), "--format", "table"])
    assert result.exit_code == 0, result.output
    assert "[fd00:231:1::2]:33242" in result.output


def test_messages_escape_file_names(tmp_path: Path) -> None:
    evil = tmp_path / "cap\x1b]0;pwned\x07.pcap"
    evil.write_bytes(CLOSE.read_bytes()[:500])  # truncated: a warning naming the file
    result = CliRunner().invoke(main, ["analyze", str(evil), "--format", "jsonl"])
    assert result.exit_code == 0
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "cap\\x1b]0;pwned\\x07.pcap: truncated record" in result.stderr
    missing = CliRunner().invoke(main, ["analyze", str(tmp_path / "no\x1b[31m.pcap")])
    assert missing.exit_code == 1 and "\x1b" not in missing.stderr
    assert "no\\x1b[31m.pcap" in missing.stderr


# --- -o -------------------------------------------------------------------------------


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("name", ["out.csv", "out.jsonl", "out.json", "out.txt", "out",
                                  "out.parquet", "weird:name.parquet", "s3:x.csv", "-x.csv"])
def test_output_writes_exactly_the_named_file(name: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if name.endswith(".parquet"):
        require_module("pyarrow")
    monkeypatch.chdir(tmp_path)
    before = _listing(tmp_path)
    result = CliRunner().invoke(main, ["analyze", str(CLOSE), "-o", name])
    assert result.exit_code == 0, result.output
    assert _listing(tmp_path) - before == {name}
    assert (tmp_path / name).stat().st_size > 0


def test_output_refuses_a_symlink_to_a_file(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    link = tmp_path / "out.csv"
    link.symlink_to(precious)
    result = CliRunner().invoke(main, ["analyze", str(CLOSE), "-o", str(link)])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "symbolic link" in result.stderr
    assert precious.read_text() == "keep me\n"


@needs(modules=("pyarrow",))  # its -o names a .parquet file
def test_output_refuses_a_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / "out.csv"
    link.symlink_to(tmp_path / "elsewhere" / "planted")
    (tmp_path / "elsewhere").mkdir()
    result = CliRunner().invoke(main, ["analyze", str(CLOSE), "-o", str(link),
                                       "--format", "parquet"])
    assert result.exit_code == 1 and "symbolic link" in result.stderr
    assert not (tmp_path / "elsewhere" / "planted").exists()


def test_output_through_a_link_to_a_device_is_fine(tmp_path: Path) -> None:
    link = tmp_path / "null"
    link.symlink_to(os.devnull)
    result = CliRunner().invoke(main, ["analyze", str(CLOSE), "-o", str(link)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["analyze", str(CLOSE), "-o", os.devnull])
    assert result.exit_code == 0, result.output


def test_output_into_a_missing_directory_is_one_error_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["analyze", str(CLOSE), "-o",
                                       str(tmp_path / "nowhere" / "x.csv")])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert not (tmp_path / "nowhere").exists()


def test_open_output_truncates_and_creates(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("old content that is long\n")
    with open_output(path) as stream:
        stream.write("new\n")
    assert path.read_text() == "new\n"
    with open_output(tmp_path / "g", binary=True) as stream:
        stream.write(b"\0")
    assert (tmp_path / "g").read_bytes() == b"\0"


def test_output_untouched_when_the_input_is_unreadable(tmp_path: Path) -> None:
    """The file is opened only once there are rows to write: an unreadable capture
    neither creates it nor truncates what was there."""
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"not a capture at all")
    fresh, existing = tmp_path / "fresh.csv", tmp_path / "existing.csv"
    existing.write_text("previous results\n")
    for out in (fresh, existing):
        result = CliRunner().invoke(main, ["analyze", str(garbage), "-o", str(out)])
        assert result.exit_code == 1
    assert not fresh.exists()
    assert existing.read_text() == "previous results\n"


def test_output_naming_an_input_capture_is_refused(tmp_path: Path) -> None:
    """-o must not overwrite a capture it reads (directly or through a link)."""
    import shutil

    capture = tmp_path / "in.pcap"
    shutil.copy(Path(__file__).resolve().parents[1] / "sample_pcaps" / "refused.client.pcap",
                capture)
    before = capture.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(capture)
    for target in (capture, link):
        res = CliRunner().invoke(main, ["analyze", str(capture), "-o", str(target),
                                        "--format", "jsonl"])
        assert res.exit_code == 2, res.output
        assert "one of the captures" in res.output
    assert capture.read_bytes() == before
    ok = CliRunner().invoke(main, ["analyze", str(capture), "-o", str(tmp_path / "out.jsonl")])
    assert ok.exit_code == 0 and (tmp_path / "out.jsonl").read_text().count("\n") == 1
