"""`tcplife export --format zeek`: a conn.log as Zeek writes it, through the real CLI."""

from __future__ import annotations

import subprocess
import sys
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
