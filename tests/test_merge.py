"""Captures as they come: several files merged by time as mergecap merges them, the frame
map back to (file, frame), non-capture files, and ``--filter`` (BPF) on files.

Expectations come from outside tcplife: mergecap's merged file analysed as one capture,
tcpdump's selection of frames (``tcpdump -r FILE EXPR -w OUT``), and each file's own
frame times read with dpkt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import dpkt
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import tcplife
from tcplife.capture import CaptureError, ReadStats, read_segments
from tcplife.capture.bpf import FilterError
from tcplife.capture.fastread import read_batches
from tcplife.capture.merge import merged_batches, merged_segments
from tcplife.cli.main import main

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"
PAIRS = ["clean_traffic", "half_open", "close_unread_data", "final_ack_dropped"]

needs = pytest.mark.skipif(
    not (shutil.which("mergecap") and shutil.which("editcap") and shutil.which("tcpdump")),
    reason="needs mergecap, editcap and tcpdump (wireshark-common, tcpdump)")


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def split(path: Path, every: int, outdir: Path) -> list[Path]:
    """The capture cut into files of `every` frames by editcap, as a ring buffer."""
    outdir.mkdir(exist_ok=True)
    run("editcap", "-c", str(every), str(path), str(outdir / "part.pcap"))
    return sorted(outdir.iterdir())


def merged_numbers(result: tcplife.Result, frame: pd.DataFrame) -> pd.DataFrame:
    """A table of several captures with its frames numbered in merged order again (as in
    one merged file) and without its file columns: (file, frame in file) -> frame of
    the read, by the frame map."""
    stats = result.stats
    if len(set(stats.files)) < 2:
        return frame
    index, local = stats.locate_many(np.arange(1, stats.frames + 1))
    pairs = zip(index.tolist(), local.tolist(), strict=True)
    back = {(stats.files[i], n): k + 1 for k, (i, n) in enumerate(pairs)}
    out = frame.copy()
    for column, file_column in (("frame", "file"), ("first_frame", "first_file"),
                                ("last_frame", "last_file")):
        if column not in out.columns:
            continue
        assert file_column in out.columns
        out[column] = pd.Series([None if pd.isna(n) else back[(f, int(n))]
                                 for f, n in zip(out[file_column], out[column], strict=True)],
                                index=out.index, dtype=out[column].dtype)
        out = out.drop(columns=[file_column])
    return out


def same_tables(got: tcplife.Result, want: tcplife.Result) -> None:
    for table in ("connections", "transitions", "anomalies"):
        mine = merged_numbers(got, getattr(got, table))
        theirs = getattr(want, table)
        if table == "anomalies":  # evidence frames count within their files: compare the rest
            mine, theirs = mine.drop(columns=["frames"]), theirs.drop(columns=["frames"])
        pd.testing.assert_frame_equal(mine, theirs, obj=table)


def frame_times(path: str) -> list[int]:
    """Each frame's time in integer microseconds, by dpkt (pcap, µs)."""
    with open(path, "rb") as f:
        return [round(float(ts) * 1e6) for ts, _ in dpkt.pcap.Reader(f)]


# --- order ----------------------------------------------------------------------------


@needs
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("every", [1000, 97])
def test_ring_buffer_in_any_order_is_the_whole_capture(tmp_path, fast, every):
    whole = SAMPLES / "clean_traffic.client.pcap"
    parts = [str(p) for p in split(whole, every, tmp_path / "ring")]
    assert len(parts) > 2
    want = tcplife.analyze(whole, fast=fast)
    rng = np.random.default_rng(every)
    for order in (parts[::-1], list(rng.permutation(parts))):
        got = tcplife.analyze(order, fast=fast)
        same_tables(got, want)  # frames too: numbered in time order, as in the whole file
        assert got.warnings == []
        assert got.stats.files == parts  # in time order
        # one run per file: no frame-by-frame merge where files do not overlap
        assert len(got.stats.run_starts) == len(parts)


@needs
@pytest.mark.parametrize("name", PAIRS)
def test_overlapping_captures_merge_as_mergecap_does(tmp_path, name):
    client, server = (str(SAMPLES / f"{name}.{side}.pcap") for side in ("client", "server"))
    for order in ([client, server], [server, client]):
        merged = tmp_path / "merged.pcap"
        run("mergecap", "-F", "pcap", "-w", str(merged), *order)
        want = tcplife.analyze(merged)
        results = [tcplife.analyze(order, fast=fast) for fast in (True, False)]
        for got in results:
            same_tables(got, want)  # frame numbers are mergecap's, ties included
            overlap = [w for w in got.warnings if "overlap in time" in w]
            assert len(overlap) == 1 and client in overlap[0] and server in overlap[0]
        assert results[0].stats == results[1].stats  # the fast path equals the plain one


@needs
def test_locate_maps_back_to_each_files_frame(tmp_path):
    name = "half_open"
    files = [str(SAMPLES / f"{name}.{side}.pcap") for side in ("server", "client")]
    result = tcplife.analyze(files)
    stats = result.stats
    times = {f: frame_times(f) for f in files}
    rows = merged_numbers(result, result.transitions).dropna(subset=["frame"])
    assert len(rows) >= 10
    frames = rows["frame"].astype("int64").to_numpy()
    index, local = stats.locate_many(frames)
    for frame, ts_ns, i, n in zip(frames, rows["ts_ns"], index, local, strict=True):
        file, in_file = stats.locate(int(frame))
        assert (stats.files[i], n) == (file, in_file)
        assert times[file][in_file - 1] == round(int(ts_ns) / 1000)  # dpkt agrees
    # every frame of the merge: each file's frames each once, in their own order
    all_index, all_local = stats.locate_many(np.arange(1, stats.frames + 1))
    for i, f in enumerate(stats.files):
        assert all_local[all_index == i].tolist() == list(range(1, len(times[f]) + 1))
    # outside the read: -1 / 0, and ValueError for one
    assert stats.locate_many([0, stats.frames + 1])[0].tolist() == [-1, -1]
    with pytest.raises(ValueError):
        stats.locate(stats.frames + 1)


def test_one_file_maps_to_itself():
    path = str(SAMPLES / "half_open.client.pcap")
    stats = tcplife.analyze(path).stats
    assert stats.files == [path] and stats.run_starts == [1]
    assert stats.locate(7) == (path, 7)


def test_merge_of_stats_appends_the_frame_map():
    a, b = ReadStats(frames=3), ReadStats(frames=2)
    a.add_run(1, a.add_file("a"), 1)
    b.add_run(1, b.add_file("b"), 1)
    total = ReadStats().merge(a).merge(b)
    assert total.files == ["a", "b"]
    assert [total.locate(f) for f in range(1, 6)] == [
        ("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2)]


def test_tie_rule_is_mergecaps(tmp_path):
    """Equal times: the file given later first (mergecap 4.0 on this machine)."""
    def write(name: str, stamps: list[tuple[float, int]]) -> str:
        path = tmp_path / name
        with open(path, "wb") as f:
            w = dpkt.pcap.Writer(f)
            for ts, port in stamps:
                tcp = dpkt.tcp.TCP(sport=port, dport=80, flags=dpkt.tcp.TH_SYN)
                ip = dpkt.ip.IP(src=b"\x0a\0\0\1", dst=b"\x0a\0\0\2", p=6, data=tcp)
                w.writepkt(bytes(dpkt.ethernet.Ethernet(data=ip)), ts=ts)
        return str(path)

    a = write("a.pcap", [(1.0, 1), (2.0, 2), (3.0, 3)])
    b = write("b.pcap", [(2.0, 10), (2.0, 11), (2.5, 12)])
    for order in ([a, b], [b, a]):
        plain = [s.sport for s in merged_segments(order, ReadStats())]
        fast = [p for batch in merged_batches(order, ReadStats()) for p in batch.sport.tolist()]
        assert plain == fast
        if shutil.which("mergecap") and shutil.which("tshark"):
            out = tmp_path / "m.pcap"
            run("mergecap", "-F", "pcap", "-w", str(out), *order)
            assert [s.sport for s in read_segments(str(out))] == plain
    assert [s.sport for s in merged_segments([a, b], ReadStats())] == [1, 10, 11, 2, 12, 3]


# --- non-capture files ----------------------------------------------------------------


def test_directory_with_a_stray_file_warns_and_analyses(tmp_path):
    for side in ("client", "server"):
        shutil.copy(SAMPLES / f"half_open.{side}.pcap", tmp_path)
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "meta.json").write_text('{"kind": "notes"}\n')
    got = CliRunner().invoke(main, ["analyze", "--format", "csv", str(tmp_path)])
    assert got.exit_code == 0, got.output
    want = CliRunner().invoke(main, ["analyze", "--format", "csv", *sorted(
        str(p) for p in tmp_path.glob("*.pcap"))])
    assert got.stdout == want.stdout and got.stdout.count("\n") > 1
    for stray in ("notes.txt", "meta.json"):
        assert f"warning: skipped {tmp_path / stray}: not a pcap or pcapng capture" \
            in got.stderr


@pytest.mark.parametrize("content", [b"hello, not a capture\n", b""])
def test_explicit_non_capture_is_one_line_exit_1(tmp_path, content):
    stray = tmp_path / "notes.txt"
    stray.write_bytes(content)
    got = CliRunner().invoke(main, ["analyze", str(SAMPLES / "half_open.client.pcap"),
                                    str(stray)])
    assert got.exit_code == 1
    assert got.stdout == ""
    assert got.stderr.startswith(f"tcplife: error: {stray}: ")
    assert got.stderr.count("\n") == 1 and "Usage" not in got.stderr


def test_missing_and_directory_arguments(tmp_path):
    for arg, why in ((tmp_path / "nope.pcap", "No such file"), (tmp_path, "no capture")):
        got = CliRunner().invoke(main, ["analyze", str(arg)])
        assert got.exit_code == 1 and why in got.stderr and got.stderr.count("\n") == 1


def test_unreadable_capture_is_exit_1_not_usage(tmp_path, monkeypatch):
    """A capture the user may not read (root reads anything: the denial is simulated
    where click and the reader ask): one line, exit 1, no usage banner."""
    import tcplife.capture.files as files

    capture = tmp_path / "secret.pcap"
    shutil.copy(SAMPLES / "half_open.client.pcap", capture)
    real_open, real_access = open, os.access

    def denied(path, *args, **kwargs):
        if os.fspath(path) == str(capture):
            raise PermissionError(13, "Permission denied", str(capture))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(files, "open", denied, raising=False)
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: os.fspath(path) != str(
        capture) and real_access(path, mode, *a, **k))
    got = CliRunner().invoke(main, ["analyze", str(capture)])
    assert got.exit_code == 1
    assert got.stderr == f"tcplife: error: {capture}: Permission denied\n"


# --- --filter ------------------------------------------------------------------------


EXPRESSIONS = ["tcp[tcpflags] & (tcp-syn|tcp-fin) != 0", "port 8080 and greater 100",
               "src host 10.231.1.2", "not tcp"]


def plain_rows(path: str, capture_filter: str | None = None) -> tuple[list[tuple], ReadStats]:
    stats = ReadStats()
    segs = list(read_segments(path, stats, capture_filter=capture_filter))
    return [s[1:] for s in segs], stats  # all but the frame number


@needs
@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_filter_keeps_what_tcpdump_keeps(tmp_path, expression):
    for name in ("half_open.client.pcap", "ipv6.any.pcap"):
        path = str(SAMPLES / name)
        out = tmp_path / "kept.pcap"
        run("tcpdump", "-r", path, expression, "-w", str(out))
        want, want_stats = plain_rows(str(out))
        got, stats = plain_rows(path, expression)
        assert got == want
        assert stats.filtered_out == stats.frames - want_stats.frames
        assert stats.frames == want_stats.frames + stats.filtered_out
        fast = ReadStats()
        rows = [s[1:] for b in read_batches(path, fast, capture_filter=expression)
                for s in b.segments()]
        assert rows == got and fast == stats


@needs
def test_filtered_frames_keep_their_numbers(tmp_path):
    path = str(SAMPLES / "half_open.client.pcap")
    expression = "tcp[tcpflags] & tcp-syn != 0"
    every = {s.ts_ns: s.frame for s in read_segments(path)}
    for seg in read_segments(path, capture_filter=expression):
        assert every[seg.ts_ns] == seg.frame
    result = tcplife.analyze(path, capture_filter=expression)
    assert result.stats.filtered_out > 0
    assert set(result.transitions["frame"].dropna()) <= {s.frame for s in read_segments(
        path, capture_filter=expression)}


def test_bad_filter():
    with pytest.raises(FilterError, match="tcp port nope"):
        tcplife.analyze(str(SAMPLES / "half_open.client.pcap"), capture_filter="tcp port nope")
    assert issubclass(FilterError, CaptureError) and issubclass(FilterError, ValueError)
    got = CliRunner().invoke(main, ["timeline", "--filter", "tcp port nope",
                                    str(SAMPLES / "half_open.client.pcap")])
    assert got.exit_code == 2
    assert "tcp port nope" in got.stderr and "unknown port 'nope'" in got.stderr


@pytest.mark.parametrize("command", [["analyze"], ["timeline"], ["anomalies"], ["at", "end"],
                                     ["frames"], ["export", "-d", "{tmp}"]])
def test_every_reading_command_takes_filter(tmp_path, command):
    args = [a.replace("{tmp}", str(tmp_path / "out")) for a in command]
    path = str(SAMPLES / "half_open.client.pcap")
    got = CliRunner().invoke(main, [*args, "--filter", "port 8080", "--format", "csv", path]
                             if command[0] != "export" else
                             [*args, "--filter", "port 8080", path])
    assert got.exit_code == 0, got.output
    none = CliRunner().invoke(main, [*args, "--filter", "port 1", "--format", "csv", path]
                              if command[0] != "export" else [*args, "--filter", "port 1", path])
    assert none.exit_code in (0, 1), none.output


def test_frames_read_again_in_merged_order(tmp_path):
    files = [str(SAMPLES / f"half_open.{side}.pcap") for side in ("server", "client")]
    got = CliRunner().invoke(main, ["frames", "--format", "csv", "--conn", "0", *files])
    assert got.exit_code == 0, got.output
    rows = pd.read_csv(__import__("io").StringIO(got.stdout))
    result = tcplife.analyze(files)
    conn = result.connections.iloc[0]
    assert len(rows) == conn["packets"]
    named = list(zip(rows["file"], rows["frame"], strict=True))
    assert named[0] == (conn["first_file"], conn["first_frame"])
    assert named[-1] == (conn["last_file"], conn["last_frame"])
    order = merged_numbers(result, rows[["frame", "file"]].astype({"frame": "int64"}))
    assert order["frame"].tolist() == sorted(order["frame"].tolist())  # merged order
