"""The pictures and the per-packet views: `frames`, `ladder` (terminal and SVG) and the
state timeline chart (`timeline --plot`, `Result.plot_timeline`).

Expectations come from outside tcplife: the hand-worked table of `pcapgen.orderly_close`
(flags, seq/ack and each side's state after every packet), and tshark's own reading of
the kernel-lab captures (which frames belong to a connection) when tshark is installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pcapgen
import pytest
from click.testing import CliRunner, Result

import tcplife
from tcplife.cli.main import main
from tcplife.engines.packets import PACKET_COLUMNS

from needs import needs, require_module

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_pcaps"
SVG = "{http://www.w3.org/2000/svg}"
LETTERS = {"F": "FIN", "S": "SYN", "R": "RST", "P": "PSH", "A": "ACK"}
WIRESHARK_ORDER = ["FIN", "SYN", "RST", "PSH", "ACK"]
#: `pcapgen.orderly_close`'s docstring: (client, server) state after each of its frames;
#: None where the table leaves the state unchanged.
STATES_AFTER = [("SYN_SENT", "LISTEN"), ("ESTABLISHED", "SYN_RECEIVED"),
                ("ESTABLISHED", "ESTABLISHED"), (None, None), (None, None), (None, None),
                ("FIN_WAIT_1", "CLOSE_WAIT"), ("FIN_WAIT_2", "CLOSE_WAIT"),
                ("TIME_WAIT", "LAST_ACK"), ("TIME_WAIT", "CLOSED")]
TSHARK = shutil.which("tshark")


@pytest.fixture(scope="module")
def close_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pcapgen.write_pcap(tmp_path_factory.mktemp("pcaps") / "close.pcap",
                              pcapgen.orderly_close())


@pytest.fixture(scope="module")
def later_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
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


def script_flags() -> list[str]:
    """Wireshark's flag text for each scripted segment, from pcapgen's letters."""
    return [", ".join(n for n in WIRESHARK_ORDER if n in {LETTERS[c] for c in seg.flags})
            for seg in pcapgen.orderly_close()]


def tshark_frames(capture: Path, display_filter: str) -> list[int]:
    proc = subprocess.run([TSHARK, "-r", str(capture), "-Y", display_filter, "-T", "fields",
                           "-e", "frame.number"], capture_output=True, text=True, check=True)
    return [int(line) for line in proc.stdout.split()]


# --- frames -------------------------------------------------------------------------------


def test_frames_rows_match_the_script(close_pcap: Path) -> None:
    result = run("frames", "--conn", "0", close_pcap, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    rows = jsonl(result.stdout)
    script = pcapgen.orderly_close()
    assert [r["frame"] for r in rows] == list(range(1, 11))
    assert [r["flags"] for r in rows] == script_flags()
    assert [list(r) for r in rows] == [list(PACKET_COLUMNS)] * 10
    for row, seg in zip(rows, script, strict=True):
        from_client = seg.src == pcapgen.CLIENT
        assert row["sender"] == ("client" if from_client else "server")
        isn, peer_isn = (1000, 5000) if from_client else (5000, 1000)
        assert row["rel_seq"] == seg.seq - isn and row["seq"] == seg.seq
        assert row["rel_ack"] == (seg.ack - peer_isn if "A" in seg.flags else None)
        assert row["len"] == len(seg.payload)
    last = ("CLOSED", "LISTEN")
    for row, expected in zip(rows, STATES_AFTER, strict=True):
        expected = (expected[0] or last[0], expected[1] or last[1])
        assert (row["client_state"], row["server_state"]) == expected, row["frame"]
        last = expected


def test_frames_of_the_second_capture_and_tshark_note(close_pcap: Path,
                                                      later_pcap: Path) -> None:
    result = run("frames", "--conn", "1", close_pcap, later_pcap, "--format", "csv")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # several captures: each row names its file, frames count within it
    columns = list(PACKET_COLUMNS)
    assert lines[0] == ",".join([*columns[:2], "file", *columns[2:]])
    assert [int(line.split(",")[1]) for line in lines[1:]] == list(range(1, 11))
    assert {line.split(",")[2] for line in lines[1:]} == {str(later_pcap)}
    assert "tcp.srcport==40001" in result.stderr and "frame.number>=1 " in result.stderr
    assert f"-r {later_pcap} " in result.stderr


def test_frames_table_is_one_line_per_packet(close_pcap: Path) -> None:
    result = run("frames", "--conn", "0", close_pcap, "--format", "table")
    assert result.exit_code == 0, result.output
    body = [line for line in result.stdout.splitlines() if " → " in line]
    assert len(body) == 10
    assert body[0].split()[:7] == ["1", "0.000000", "0", "10.0.0.1:40000", "→",
                                   "10.0.0.2:80", "[SYN]"]
    tshark_line = result.stdout.splitlines()[-1]
    assert tshark_line.startswith(f"tshark -r {close_pcap} -Y '")  # whole, not wrapped


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize("capture", ["port_reuse_after_time_wait.client.pcap",
                                     "normal_close_client_first.client.pcap",
                                     "ipv6.client.pcap", "final_ack_dropped.server.pcap"])
def test_frames_agree_with_tshark(capture: str) -> None:
    """Our frames of each connection are the frames tshark selects with the filter we
    print; and the flags agree with tshark's."""
    path = SAMPLES / capture
    conns = jsonl(run("analyze", path).stdout)
    for conn in conns:
        result = run("frames", "--conn", str(conn["conn_id"]), path, "--format", "jsonl")
        rows = jsonl(result.stdout)
        display_filter = result.stderr.split(" -Y '", 1)[1].rsplit("'", 1)[0]
        assert [r["frame"] for r in rows] == tshark_frames(path, display_filter)
        proc = subprocess.run(
            [TSHARK, "-r", str(path), "-Y", display_filter, "-T", "fields", "-e",
             "tcp.flags.str", "-e", "tcp.seq", "-e", "tcp.len"],
            capture_output=True, text=True, check=True)
        theirs = [line.split("\t") for line in proc.stdout.splitlines()]
        for row, (flags, seq, length) in zip(rows, theirs, strict=True):
            names = {"F": "FIN", "S": "SYN", "R": "RST", "P": "PSH", "A": "ACK"}
            expected = [names[c] for c in reversed(flags.replace("·", "")) if c in names]
            assert row["flags"].split(", ") == expected
            assert row["rel_seq"] == int(seq) and row["len"] == int(length)


# --- ladder in the terminal ---------------------------------------------------------------


def arrows(text: str) -> list[str]:
    return [line for line in text.splitlines() if "▶" in line or "◀" in line]


def test_ladder_arrows_flags_and_states(close_pcap: Path) -> None:
    result = run("ladder", "--conn", "0", close_pcap)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 100 for line in lines[:-1])  # the last: the tshark command
    rows = arrows(result.stdout)
    assert len(rows) == 10
    flags = [row.split("[", 1)[1].split("]", 1)[0] for row in rows]
    assert flags == script_flags()
    assert flags[:3] == ["SYN", "SYN, ACK", "ACK"]
    script = pcapgen.orderly_close()
    for row, seg in zip(rows, script, strict=True):
        # client-to-server arrows point right, the others left
        assert ("▶" in row) == (seg.src == pcapgen.CLIENT)
        assert f"len={len(seg.payload)}" in row
    # each side's state is written on the row of the packet that changed it
    assert "FIN_WAIT_1" in rows[6].split("│")[0] and "~CLOSE_WAIT" in rows[6].split("│")[-1]
    assert "~FIN_WAIT_2" in rows[7].split("│")[0]
    assert "~TIME_WAIT" in rows[8].split("│")[0] and "LAST_ACK" in rows[8].split("│")[-1]
    assert "~CLOSED" in rows[9].split("│")[-1]
    assert "seq=0 ack=1 len=0" in rows[1] and "seq=1 ack=1 len=100" in rows[3]


def test_ladder_states_only_where_they_change(close_pcap: Path) -> None:
    rows = arrows(run("ladder", "--conn", "0", close_pcap).stdout)
    client_cells = [row.split("│")[0][-13:].strip() for row in rows]
    assert client_cells == ["SYN_SENT", "~ESTABLISHED", "", "", "", "", "FIN_WAIT_1",
                            "~FIN_WAIT_2", "~TIME_WAIT", ""]
    server_cells = [row.split("│")[-1].strip() for row in rows]
    assert server_cells == ["", "SYN_RECEIVED", "~ESTABLISHED", "", "", "", "~CLOSE_WAIT",
                            "", "LAST_ACK", "~CLOSED"]


def test_ladder_shows_timeout_and_initial_states(close_pcap: Path) -> None:
    text = run("ladder", "--conn", "0", close_pcap).stdout
    lines = text.splitlines()
    assert "client state" in lines[1] and "10.0.0.1:40000" in lines[1]
    assert lines[2].split() == ["CLOSED│", "│LISTEN"]
    timeout = next(line for line in lines if "timeout" in line)
    assert timeout.split()[0] == "63.000000" and "~CLOSED" in timeout  # frame 9 + 60 s


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_ladder_of_a_lab_capture_has_tsharks_packets() -> None:
    path = SAMPLES / "final_ack_dropped.server.pcap"
    result = run("ladder", "--conn", "0", path)
    display_filter = result.stdout.splitlines()[-1].split(" -Y '", 1)[1].rsplit("'", 1)[0]
    frames = tshark_frames(path, display_filter)
    rows = arrows(result.stdout)
    assert [int(row.split()[0]) for row in rows] == frames
    # the anomaly is written under its evidence packet
    [anomaly] = jsonl(run("anomalies", path).stdout)
    lines = result.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "⚠" in line)
    assert f"⚠ {anomaly['kind']} ({anomaly['side']})" in lines[at]
    assert lines[at - 1].split()[0] == str(anomaly["frame"])


def test_ladder_from_stdin_and_wide_terminal(close_pcap: Path) -> None:
    result = run("ladder", "--conn", "0", "-", input=close_pcap.read_bytes())
    assert result.exit_code == 0, result.output
    assert len(arrows(result.stdout)) == 10 and "<stdin>" in result.stdout.splitlines()[0]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "parquet"])
def test_ladder_machine_formats_are_the_packet_rows(fmt: str, close_pcap: Path,
                                                    tmp_path: Path) -> None:
    import pandas as pd

    if fmt == "parquet":
        require_module("pyarrow")
    out = tmp_path / f"ladder.{fmt}"
    result = run("ladder", "--conn", "0", close_pcap, "--format", fmt, "-o", out)
    assert result.exit_code == 0, result.output
    if fmt == "parquet":
        frame = pd.read_parquet(out)
    elif fmt == "csv":
        frame = pd.read_csv(out)
    else:
        frame = pd.read_json(out, lines=fmt == "jsonl")
    assert list(frame.columns) == list(PACKET_COLUMNS)
    assert frame["frame"].tolist() == list(range(1, 11))


@pytest.mark.parametrize(("args", "fragment"), [
    (["ladder", "X"], "Missing option '--conn'"),
    (["ladder", "--conn", "3", "X"], "no connection 3"),
    (["ladder", "--conn", "0", "X", "--format", "parquet"], "needs -o FILE"),
    (["analyze", "X", "-o", "out.svg"], "does not write svg"),
    (["timeline", "X", "--plot", "chart.gif"], ".png, .svg or .pdf"),
    (["frames", "--conn", "9", "X"], "no connection 9"),
])
def test_picture_usage_errors(args: list[str], fragment: str, close_pcap: Path) -> None:
    result = run(*[str(close_pcap) if a == "X" else a for a in args])
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output


# --- ladder as SVG ------------------------------------------------------------------------


def parse_svg(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    return root


def test_ladder_svg(close_pcap: Path, tmp_path: Path) -> None:
    out = tmp_path / "ladder.svg"
    result = run("ladder", "--conn", "0", close_pcap, "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "wrote" in result.stderr
    root = parse_svg(out.read_text())
    assert float(root.get("width", 0)) >= 800 and float(root.get("height", 0)) >= 300
    packets = root.findall(f".//{SVG}line[@class='packet']")
    assert [int(p.get("data-frame", 0)) for p in packets] == list(range(1, 11))
    script = pcapgen.orderly_close()
    for line, seg in zip(packets, script, strict=True):
        rightwards = float(line.get("x2", 0)) > float(line.get("x1", 0))
        assert rightwards == (seg.src == pcapgen.CLIENT)
    labels = [t.text or "" for t in root.findall(f".//{SVG}text[@class='label']")]
    assert [label.split("]")[0][1:] for label in labels] == script_flags()
    states = [t.text for t in root.findall(f".//{SVG}text[@class='state']")]
    for state in ("SYN_SENT", "~ESTABLISHED", "FIN_WAIT_1", "~CLOSE_WAIT", "~FIN_WAIT_2",
                  "~TIME_WAIT", "LAST_ACK", "~CLOSED"):
        assert state in states
    assert len(root.findall(f".//{SVG}line[@class='lifeline']")) == 2


def test_ladder_svg_to_stdout_escapes_text(close_pcap: Path) -> None:
    result = run("ladder", "--conn", "0", close_pcap, "--format", "svg")
    assert result.exit_code == 0
    root = parse_svg(result.stdout)
    assert len(root.findall(f".//{SVG}line[@class='packet']")) == 10


def test_ladder_svg_of_an_anomaly() -> None:
    result = run("ladder", "--conn", "0", SAMPLES / "final_ack_dropped.server.pcap",
                 "--format", "svg")
    root = parse_svg(result.stdout)
    texts = [t.text for t in root.findall(f".//{SVG}text[@class='anomaly']")]
    assert texts == ["⚠ final_ack_delayed (server)"]  # its FIN was acknowledged in the end


# --- the timeline chart -------------------------------------------------------------------


def png_pixels(path: Path) -> Any:
    from PIL import Image

    return Image.open(path).convert("RGB")


def has_colour(image: Any, hex_colour: str, at_least: int = 50) -> bool:
    rgb = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return sum(n for n, c in image.getcolors(1 << 20) if c == rgb) >= at_least


@needs(modules=("matplotlib",))
def test_plot_png_one_connection(close_pcap: Path, tmp_path: Path) -> None:
    from tcplife.output.formats import STATE_COLOURS

    out = tmp_path / "one.png"
    result = run("timeline", close_pcap, "--plot", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    image = png_pixels(out)
    assert image.size[0] >= 1000 and 250 <= image.size[1] <= 600
    assert len(image.getcolors(1 << 20)) > 10
    # what the hand-worked script says each side went through, seen in the picture
    for state in ("ESTABLISHED", "FIN_WAIT_2", "CLOSE_WAIT"):
        assert has_colour(image, STATE_COLOURS[state]), state
    assert not has_colour(image, STATE_COLOURS["CLOSING"])  # never in CLOSING


@needs(modules=("matplotlib",))
def test_plot_png_many_connections_and_filters(tmp_path: Path) -> None:
    from tcplife.output.formats import STATE_COLOURS

    capture = SAMPLES / "clean_traffic.client.pcap"
    out = tmp_path / "many.png"
    assert run("timeline", capture, "--plot", out).exit_code == 0
    image = png_pixels(out)
    assert image.size[1] > 1500  # 240 rows get room
    assert has_colour(image, STATE_COLOURS["TIME_WAIT"], 10_000)
    few = tmp_path / "few.png"
    assert run("timeline", capture, "--plot", few, "--conn", "3", "--conn", "4").exit_code == 0
    assert png_pixels(few).size[1] < image.size[1]


@needs(modules=("matplotlib",))
def test_plot_svg_and_api(close_pcap: Path, tmp_path: Path) -> None:
    out = tmp_path / "chart.svg"
    assert run("timeline", close_pcap, "--plot", out).exit_code == 0
    root = parse_svg(out.read_text())
    assert len(root.findall(f".//{SVG}path")) > 10
    result = tcplife.analyze(str(close_pcap))
    figure = result.plot_timeline()
    assert figure.axes and figure.axes[0].get_title(loc="center") == ""
    assert "1 connection" in figure._suptitle.get_text()


def test_state_intervals_follow_the_script(close_pcap: Path) -> None:
    from tcplife.output.plot import state_intervals

    result = tcplife.analyze(str(close_pcap))
    spans = state_intervals(result)
    t0 = pcapgen.T0_US * 1000
    server = [(r.state, (r.start_ns - t0) / 1e9, (r.end_ns - t0) / 1e9)
              for r in spans[spans["side"] == "server"].itertuples()]
    assert server == [("LISTEN", 0.0, 0.01), ("SYN_RECEIVED", 0.01, 0.02),
                      ("ESTABLISHED", 0.02, 1.0), ("CLOSE_WAIT", 1.0, 3.0),
                      ("LAST_ACK", 3.0, 3.01)]
    client = spans[spans["side"] == "client"]
    assert client["state"].tolist()[-1] == "TIME_WAIT"
    assert (client["end_ns"].iloc[-1] - t0) / 1e9 == pytest.approx(63.0)


def test_plot_without_matplotlib(close_pcap: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = run("timeline", close_pcap, "--plot", tmp_path / "x.png")
    assert result.exit_code == 1
    assert result.stderr.startswith("tcplife: error: ") and "tcplife[plot]" in result.stderr


# --- every lab capture ----------------------------------------------------------------------


@pytest.mark.parametrize("capture", sorted(p.name for p in SAMPLES.glob("*.pcap*")))
def test_packets_and_ladders_of_every_lab_capture(capture: str) -> None:
    """On every sample capture, each connection's packets (re-read by 4-tuple and frame
    range) are exactly as many, per side, as the tracker counted; its ladder has one arrow
    per packet, fits 100 columns, and its SVG one arrow per packet."""
    from tcplife.engines.packets import read_packets
    from tcplife.output.ladder import build_ladder, ladder_lines, ladder_svg

    path = str(SAMPLES / capture)
    result = tcplife.analyze(path)
    packets = read_packets([path], result.connections, result.transitions)
    assert len(packets) == int(result.connections["packets"].sum())
    for conn in result.connections.itertuples(index=False):
        mine = packets[packets["conn_id"] == conn.conn_id]
        assert (mine["sender"] == "client").sum() == conn.client_packets
        assert (mine["sender"] == "server").sum() == conn.server_packets
        assert mine["frame"].is_monotonic_increasing
        assert mine["frame"].iloc[0] == conn.first_frame
        assert mine["frame"].iloc[-1] == conn.last_frame
        ladder = build_ladder(conn, packets, result.transitions, result.anomalies,
                              result.sources)
        lines = ladder_lines(ladder, 100)
        assert sum("▶" in line.plain or "◀" in line.plain for line in lines) == len(mine)
        assert max(line.cell_len for line in lines) <= 100
        root = parse_svg(ladder_svg(ladder))
        assert len(root.findall(f".//{SVG}line[@class='packet']")) == len(mine)
        # every state change of the transitions table is written on the ladder
        changes = result.transitions[result.transitions["conn_id"] == conn.conn_id]
        written = sum(len(step.changes["client"]) + len(step.changes["server"])
                      for step in ladder.steps)
        assert written == len(changes)


@needs(modules=("matplotlib",))  # its last step draws a chart
def test_frames_of_an_empty_capture(tmp_path: Path) -> None:
    empty = pcapgen.write_pcap(tmp_path / "empty.pcap", [])
    result = run("frames", empty, "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == ",".join(PACKET_COLUMNS)
    assert "no packets" in run("frames", empty, "--format", "table").stdout
    chart = tmp_path / "empty.png"
    assert run("timeline", empty, "--plot", chart).exit_code == 0 and chart.stat().st_size


def test_long_tables_are_aligned_lines() -> None:
    """2680 packets printed as one aligned line each (a rich Table would take seconds to
    lay out)."""
    result = run("frames", SAMPLES / "clean_traffic.client.pcap", "--format", "table")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    rows = [line for line in lines if " → " in line]
    assert len(rows) == 2680
    assert lines[0].strip() == "frames — clean_traffic.client.pcap — 2026-11-22 UTC"
    assert lines[1].split()[:3] == ["frame", "+seconds", "conn"]
    assert set(lines[2]) == {"─"}
    assert len({row.index(" → ") for row in rows}) == 1  # the arrows in one column
    first = rows[0].split()
    assert first[:8] == ["2", "0.000000", "0", "10.231.1.2:42654", "→", "10.231.2.2:8080",
                         "[SYN]", "0"]
