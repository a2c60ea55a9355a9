"""`tcplife export --format zeek`: a conn.log as Zeek writes it, through the real CLI."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_pcaps" / "many_short.client.pcap"


def read_conn_log(path: Path) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Header lines and rows, read the way zeek-cut reads them (#fields names columns)."""
    header: dict[str, str] = {}
    rows = []
    fields: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            key, _, value = line[1:].partition("\t" if "\t" in line else " ")
            header[key] = value
            if key == "fields":
                fields = value.split("\t")
            continue
        rows.append(dict(zip(fields, line.split("\t"), strict=True)))
    return header, rows


def test_export_zeek_writes_conn_log(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "tcplife", "export", str(SAMPLE), "-d",
                          str(tmp_path), "--format", "zeek"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "conn.log").is_file() and (tmp_path / "capture.json").is_file()
    header, rows = read_conn_log(tmp_path / "conn.log")
    assert header["path"] == "conn" and header["separator"] == "\\x09"
    assert "close" in header and "open" in header
    # The lab's many_short: 24 connections from 10.231.1.2 to 10.231.2.2:8080, each one
    # request and answer closed with FINs on both sides (sample_pcaps/README.md): Zeek's SF.
    assert len(rows) == 24
    assert {r["id.resp_h"] for r in rows} == {"10.231.2.2"}
    assert {r["id.resp_p"] for r in rows} == {"8080"}
    assert {r["conn_state"] for r in rows} == {"SF"}
    assert {r["proto"] for r in rows} == {"tcp"}
    assert len({r["uid"] for r in rows}) == 24
    # each history starts with the originator's SYN, the responder's SYN-ACK
    assert all(r["history"].startswith("Sh") for r in rows)


def test_export_zeek_splits_where_zeeks_inactivity_timer_would(tmp_path: Path) -> None:
    """tests/pcapgen.py's orderly close (handshake, 100 bytes up, 300 down, the client's
    FIN, ...) with 6 minutes of silence before the FIN: Zeek logs two connections.

    Frames 1-6 (t0 to t0 + 0.050): SYN "S", SYN-ACK "h", ACK "A", client data "D", server
    data "d", client ACK (A already): ShADd, both established: S1, 100 and 300 bytes, 4
    and 2 packets, 0.050 s. Frame 7 comes 360.95 s after frame 6 (>= 5 min): a new Zeek
    connection from a FIN-ACK of port 40000 (no SYN: partial, no flip): "F"; the server's
    ACK "a", its FIN "f", the client's last ACK "A": FafA, both closed: SF; the client's
    FIN alone and the server's FIN alone: 0 and 0 bytes; 2 and 2 packets; duration from
    frame 7 (t0 + 361) to frame 9 (t0 + 363), after which both sides have closed: 2 s."""
    from pcapgen import T0_US, orderly_close, write_pcap

    segs = [s if i < 6 else replace(s, ts_us=s.ts_us + 360_000_000)
            for i, s in enumerate(orderly_close())]
    pcap = write_pcap(tmp_path / "idle.pcap", segs)
    out = subprocess.run([sys.executable, "-m", "tcplife", "export", str(pcap), "-d",
                          str(tmp_path), "--format", "zeek"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    _, rows = read_conn_log(tmp_path / "conn.log")
    names = ("ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "duration",
             "orig_bytes", "resp_bytes", "conn_state", "history", "orig_pkts", "resp_pkts")
    t0 = T0_US // 10**6
    assert [tuple(r[n] for n in names) for r in rows] == [
        (f"{t0}.000000", "10.0.0.1", "40000", "10.0.0.2", "80", "0.050000", "100", "300",
         "S1", "ShADd", "4", "2"),
        (f"{t0 + 361}.000000", "10.0.0.1", "40000", "10.0.0.2", "80", "2.000000", "0", "0",
         "SF", "FafA", "2", "2")]
    assert rows[0]["uid"] != rows[1]["uid"]
