"""The conn.log writer: Zeek's ASCII log format, readable by zeek-cut.

zeek-cut (zeek-aux) is not packaged here; `zeek_cut` below does what it does with a log's
header (the separator from ``#separator``, column names from ``#fields``, every other ``#``
line skipped) and the awk one-liner Zeek's documentation gives is run too where awk is.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

import tcplife
from tcplife.peers.zeek_log import FIELDS, TYPES, conn_uid, write_zeek_conn_log

from needs import needs

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "pcaps"
WIKIPEDIA = CORPUS / "zeek__wikipedia.pcap"
needs_corpus = needs(corpus=True)
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def zeek_cut(text: str, columns: list[str]) -> list[list[str]]:
    """zeek-cut COLUMNS < log: the separator from ``#separator`` (``\\xHH`` escapes), the
    names from ``#fields``, data lines cut to the named columns."""
    sep, names, rows = "\t", None, []
    for line in text.splitlines():
        if line.startswith("#separator "):
            sep = re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)),
                         line.split(" ", 1)[1])
        elif line.startswith("#fields"):
            names = line.split(sep)[1:]
        elif not line.startswith("#"):
            assert names is not None
            values = line.split(sep)
            assert len(values) == len(names)
            rows.append([values[names.index(c)] for c in columns])
    return rows


def _log(path: Path) -> str:
    out = io.StringIO()
    write_zeek_conn_log(tcplife.analyze(path).connections, out, open_time=T0, close_time=T0)
    return out.getvalue()


@needs_corpus
def test_header_lines_as_zeek_writes_them() -> None:
    lines = _log(WIKIPEDIA).splitlines()
    assert lines[:8] == [
        "#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)",
        "#unset_field\t-", "#path\tconn", "#open\t2026-01-02-03-04-05",
        "#fields\t" + "\t".join(FIELDS), "#types\t" + "\t".join(TYPES)]
    assert lines[-1] == "#close\t2026-01-02-03-04-05"
    assert len(FIELDS) == len(TYPES) == 21
    for line in lines[8:-1]:
        assert len(line.split("\t")) == 21


@needs_corpus
def test_zeek_cut_reads_it_as_zeek_logged_wikipedia() -> None:
    """The columns zeek-cut gives equal Zeek's own conn.log for this trace (btest
    core.tcp.rxmit-history, conn-2.log), for every field tcplife fills."""
    cols = ["id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "duration",
            "orig_bytes", "resp_bytes", "conn_state", "history", "orig_pkts", "resp_pkts"]
    got = zeek_cut(_log(WIKIPEDIA), cols)
    assert got[0] == ["141.142.220.118", "35634", "208.80.152.2", "80", "tcp", "0.061329",
                      "463", "350", "OTH", "DdA", "2", "1"]
    assert got[1] == ["141.142.220.118", "48649", "208.80.152.118", "80", "tcp", "0.119905",
                      "525", "232", "S1", "ShADad", "4", "3"]
    # A lone SYN-ACK: zero duration, so duration and sizes unset, as in Zeek's log.
    assert got[-1] == ["141.142.220.235", "6705", "173.192.163.128", "80", "tcp", "-",
                       "-", "-", "OTH", "^h", "0", "1"]
    ts = zeek_cut(_log(WIKIPEDIA), ["ts"])
    assert ts[0] == ["1300475168.652003"]


@needs_corpus
def test_awk_one_liner_reads_it() -> None:
    awk = shutil.which("awk")
    if awk is None:
        pytest.skip("awk not installed")
    prog = ('BEGIN{FS="\\t"} /^#fields/{for(i=2;i<=NF;i++) f[$i]=i-1; next} '
            '/^#/{next} {print $f["conn_state"] " " $f["history"]}')
    out = subprocess.run([awk, prog], input=_log(WIKIPEDIA), capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert out[:2] == ["OTH DdA", "S1 ShADad"]


def test_uid_is_stable_and_shaped_like_zeeks() -> None:
    uid = conn_uid(1, ("10.0.0.1", 1), ("10.0.0.2", 80), 0)
    assert uid == conn_uid(1, ("10.0.0.1", 1), ("10.0.0.2", 80), 0)
    assert re.fullmatch(r"C[0-9A-Za-z]{17}", uid)
    assert uid != conn_uid(1, ("10.0.0.1", 1), ("10.0.0.2", 80), 1)


def test_writes_to_a_path_and_an_empty_table(tmp_path: Path) -> None:
    lab = ROOT / "sample_pcaps" / "refused.client.pcap"
    write_zeek_conn_log(tcplife.analyze(lab).connections, tmp_path / "conn.log")
    text = (tmp_path / "conn.log").read_text()
    assert zeek_cut(text, ["conn_state", "history", "orig_pkts", "resp_pkts"]) == [
        ["REJ", "Sr", "1", "1"]]
    empty = tcplife.analyze(lab).connections.iloc[0:0]
    out = io.StringIO()
    write_zeek_conn_log(empty, out)
    assert zeek_cut(out.getvalue(), ["uid"]) == []


def test_readme_excerpt_is_what_the_writer_writes() -> None:
    """docs/peers.md: the conn.log shown is this code's output."""
    readme = (ROOT / "docs" / "peers.md").read_text()
    start = readme.index("#separator \\x09\n#set_separator")
    shown = readme[start:readme.index("#close", start)].splitlines()
    lab = ROOT / "sample_pcaps"
    result = tcplife.analyze([lab / "refused.client.pcap",
                              lab / "port_reuse_close_wait.client.pcap",
                              lab / "mid_stream.client.pcap"])
    t = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
    out = io.StringIO()
    write_zeek_conn_log(result.connections, out, open_time=t, close_time=t)
    assert out.getvalue().splitlines()[:-1] == shown


def _split_and_short():
    """Two connections, merged by time. A (port 40000): handshake at 1000.01-.03, 100
    bytes up and 200 down with their ACKs (to 1000.07), 360 s of silence, then 50 bytes
    up, the server's ACK, FINs both ways and the last ACK (1360.08-.12): Zeek's inactivity
    timer (5 min) makes it two Zeek connections. B (port 40001): handshake at
    1100.01-.03, FINs at .04 and .05, last ACK .06: one."""
    from builder import ACK, FIN, Conv, Host

    a = Conv(t=1000.0)
    a.handshake()
    a.c(0, 100)
    a.s(ACK)
    a.s(0, 200)
    a.c(ACK)
    a.wait(360)
    a.c(0, 50)
    a.s(ACK)
    a.c(FIN)
    a.s(FIN)
    a.c(ACK)
    b = Conv(client=Host("10.0.0.1", 40001, 5000), t=1100.0)
    b.handshake()
    b.c(FIN)
    b.s(FIN)
    b.c(ACK)
    segs = sorted(a.segments + b.segments, key=lambda s: s.ts_ns)
    return [s._replace(frame=i) for i, s in enumerate(segs, start=1)]


def test_one_line_per_zeek_connection_in_order_of_first_packet() -> None:
    """A's second Zeek connection starts after B: lines A1, B, A2, each with its own ts
    and uid. By hand (Zeek's rules, tests/test_zeek.py section 4):
    A1: ShADad, S1, 100 and 200 bytes, 4 and 3 packets, 0.06 s (SYN to the client's ACK);
    B: S h A F f (the last ACK adds nothing), SF, 0 bytes, 4 and 2 packets, 0.04 s (SYN to
    the server's FIN, after which both sides have closed);
    A2: no SYN, from port 40000 (no flip): D a F f A, SF, 50 (52 sequence numbers from
    start = first seq - 1, less one for the FIN) and 0 bytes, 3 and 2 packets, 0.03 s."""
    from builder import run

    connections = run(_split_and_short()).connections
    assert connections.zeek_records.tolist() == [2, 1]
    out = io.StringIO()
    write_zeek_conn_log(connections, out, open_time=T0, close_time=T0)
    cols = ["ts", "id.orig_p", "id.resp_p", "duration", "orig_bytes", "resp_bytes",
            "conn_state", "history", "orig_pkts", "resp_pkts"]
    assert zeek_cut(out.getvalue(), cols) == [
        ["1000.010000", "40000", "80", "0.060000", "100", "200", "S1", "ShADad", "4", "3"],
        ["1100.010000", "40001", "80", "0.040000", "0", "0", "SF", "ShAFf", "4", "2"],
        ["1360.080000", "40000", "80", "0.030000", "50", "0", "SF", "DaFfA", "3", "2"]]
    uids = [u for (u,) in zeek_cut(out.getvalue(), ["uid"])]
    assert len(set(uids)) == 3 and all(re.fullmatch(r"C[0-9A-Za-z]{17}", u) for u in uids)


def test_a_table_without_the_later_records_column_gives_one_line_a_row() -> None:
    """A connections table from before ``zeek_later_records`` (or cut to some columns)
    still writes: one line per row, the row's packets."""
    from builder import run

    connections = run(_split_and_short()).connections.drop(columns="zeek_later_records")
    out = io.StringIO()
    write_zeek_conn_log(connections, out)
    assert zeek_cut(out.getvalue(), ["id.orig_p", "history", "orig_pkts"]) == [
        ["40000", "ShADad", "7"], ["40001", "ShAFf", "4"]]
