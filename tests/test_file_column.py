"""Several captures: every row with a frame names its file, and the frame counts within it
(CONTRACT "Frames"), so ``tshark -r FILE -Y frame.number==N`` finds it. Checked against
the files themselves, read with dpkt: the frame a row names has the row's time."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import dpkt
import pandas as pd
import pytest
from click.testing import CliRunner

import tcplife
from tcplife.cli.main import main
from tcplife.output import formats as output

SAMPLES = Path(__file__).resolve().parents[1] / "sample_pcaps"
CAPTURE = SAMPLES / "port_reuse_close_wait.server.pcap"

pytestmark = pytest.mark.skipif(shutil.which("editcap") is None,
                                reason="needs editcap (Debian package tshark)")


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The capture cut into files of 7 frames, as a ring buffer would leave it."""
    where = tmp_path_factory.mktemp("ring")
    subprocess.run(["editcap", "-F", "pcap", "-c", "7", str(CAPTURE), str(where / "ring.pcap")],
                   check=True, capture_output=True)
    files = sorted(where.iterdir())
    assert len(files) >= 4
    return files


def frame_times(path: Path) -> list[int]:
    """Each frame's time in ns, frame N at index N - 1."""
    with open(path, "rb") as stream:
        return [int(round(float(ts) * 1e6)) * 1000 for ts, _ in dpkt.pcap.Reader(stream)]


def test_rows_name_their_file_and_frame(ring: list[Path]) -> None:
    result = tcplife.analyze([str(p) for p in reversed(ring)])  # given in the wrong order
    times = {str(p): frame_times(p) for p in ring}
    whole = tcplife.analyze(CAPTURE)
    assert len(result.connections) == len(whole.connections)
    t = result.transitions
    assert list(t.columns).index("file") == list(t.columns).index("frame") + 1
    checked = 0
    for row in t.itertuples():
        if pd.isna(row.frame):  # a timeout: no frame, no file
            assert pd.isna(row.file)
            continue
        assert times[row.file][int(row.frame) - 1] == row.ts_ns
        checked += 1
    assert checked >= 10
    assert {r.file for r in t.itertuples() if isinstance(r.file, str)} == set(times)
    for row in result.connections.itertuples():
        assert times[row.first_file][row.first_frame - 1] == row.first_ts_ns
        assert times[row.last_file][row.last_frame - 1] == row.last_ts_ns
    for row in result.anomalies.itertuples():
        assert 1 <= row.frame <= len(times[row.file])
        assert all(1 <= f <= max(len(v) for v in times.values()) for f in row.frames)


def test_one_capture_has_no_file_columns() -> None:
    result = tcplife.analyze(CAPTURE)
    for table in (result.connections, result.transitions, result.anomalies):
        assert not {"file", "first_file", "last_file"} & set(table.columns)


def test_the_cli_rows_equal_the_api_rows(ring: list[Path]) -> None:
    result = tcplife.analyze([str(p) for p in ring])
    for command, table in (("analyze", "connections"), ("timeline", "transitions"),
                           ("anomalies", "anomalies")):
        done = CliRunner().invoke(main, [command, str(ring[0].parent), "--format", "jsonl"])
        assert done.exit_code == 0, done.output
        stream = io.StringIO()
        output.write_jsonl(getattr(result, table), stream)
        assert done.stdout == stream.getvalue(), command
        assert '"file"' in done.stdout or '"first_file"' in done.stdout


def test_frames_and_ladder_rows_name_their_file(ring: list[Path]) -> None:
    """The packets of a connection that spans two files: each row's frame is found in
    its file, at the row's time; the ladder's diagram numbers frames the same way."""
    times = {str(p): frame_times(p) for p in ring}
    result = tcplife.analyze([str(p) for p in ring])
    spans = result.connections[result.connections["first_file"]
                               != result.connections["last_file"]]
    assert len(spans), "the ring must cut a connection in two"
    conn = int(spans["conn_id"].iloc[0])
    for command in ("frames", "ladder"):
        done = CliRunner().invoke(main, [command, *map(str, ring), "--conn", str(conn),
                                         "--format", "jsonl"])
        assert done.exit_code == 0, done.output
        rows = [json.loads(line) for line in done.stdout.splitlines()]
        assert len({r["file"] for r in rows}) >= 2
        for r in rows:
            assert times[r["file"]][r["frame"] - 1] == r["ts_ns"]
    diagram = CliRunner().invoke(main, ["ladder", *map(str, ring), "--conn", str(conn)])
    assert diagram.exit_code == 0
    shown = [int(line.split()[0]) for line in diagram.stdout.splitlines()
             if "│" in line and line.split()[0].isdigit()]
    assert shown == [r["frame"] for r in rows]


def test_tables_for_people_name_the_file_beside_the_frame(ring: list[Path]) -> None:
    for command in ("timeline", "anomalies"):
        done = CliRunner().invoke(main, [command, *map(str, ring), "--format", "table"],
                                  env={"COLUMNS": "200"})
        assert done.exit_code == 0
        header = next(line for line in done.stdout.splitlines() if "frame" in line)
        assert header.split().index("file") == header.split().index("frame") + 1
        assert any(p.name in done.stdout for p in ring[1:])
    single = CliRunner().invoke(main, ["timeline", str(CAPTURE), "--format", "table"],
                                env={"COLUMNS": "200"})
    assert " file " not in single.stdout


def test_analyze_takes_a_directory_or_glob_as_the_cli_does(ring: list[Path]) -> None:
    folder = ring[0].parent
    (folder / "notes.txt").write_text("not a capture\n")
    try:
        by_dir = tcplife.analyze(folder)
        by_glob = tcplife.analyze(str(folder / "ring*"))
        listed = tcplife.analyze([str(p) for p in ring])
    finally:
        (folder / "notes.txt").unlink()
    assert [w for w in by_dir.warnings if "notes.txt" in w and "skipped" in w]
    for got in (by_dir, by_glob):
        pd.testing.assert_frame_equal(got.connections, listed.connections)
        assert got.stats.files == listed.stats.files
