"""The analysis summary as data (`Result.summary()`, `tcplife.output.summary`): states at the
capture's end, what is open then, anomalies by severity, and the capture's counters told
apart into what is normal (checksum offload, snap-length cuts) and what is news."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from pcapgen import CLIENT, SERVER, frame, orderly_close

import tcplife
from tcplife.output.views import summary_view

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"


def _pcap(path: Path, bad: set[int]) -> Path:
    """orderly_close with the TCP checksum of the frames in ``bad`` (1-based) broken."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, seg in enumerate(orderly_close(), start=1):
        data = bytearray(frame(seg, ip_id=i))
        if i in bad:
            data[50] ^= 0xFF  # Ethernet 14 + IPv4 20 + the checksum's offset 16
        seconds, micros = divmod(seg.ts_us, 1_000_000)
        out.append(struct.pack("<IIII", seconds, micros, len(data), len(data)) + bytes(data))
    path.write_bytes(b"".join(out))
    return path


def _render(summary: dict) -> str:
    from rich.console import Console

    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(summary_view(summary))
    return console.export_text()


@pytest.mark.parametrize("fast", [True, False])
def test_checksum_offload_is_normal_and_other_bad_checksums_are_news(
        tmp_path: Path, fast: bool) -> None:
    # orderly_close: frames 1, 3, 4, 6, 7, 10 from the client, 2, 5, 8, 9 from the server.
    # Every client frame fails (offload on the client, where the capture ran) and one
    # server frame fails too (news).
    path = _pcap(tmp_path / "offload.pcap", {1, 3, 4, 6, 7, 10, 8})
    result = tcplife.analyze(path, fast=fast)
    assert result.stats.bad_checksums == 7
    assert dict(result.stats.bad_checksum_senders) == {CLIENT[0]: 6, SERVER[0]: 1}
    capture = result.summary()["capture"]
    assert capture["checksum_offload"] == {CLIENT[0]: 6}
    assert capture["bad_checksums"] == 1
    text = _render(result.summary())
    assert "1 bad checksums" in text
    assert f"every segment {CLIENT[0]} sent (6)" in text and "offload" in text


def test_no_news_no_words(tmp_path: Path) -> None:
    result = tcplife.analyze(_pcap(tmp_path / "clean.pcap", set()))
    capture = result.summary()["capture"]
    assert capture["bad_checksums"] == 0 and capture["checksum_offload"] == {}
    assert "checksum" not in _render(result.summary())


def test_snap_length_cuts_are_normal() -> None:
    """clean_traffic was captured with snaplen 128: segments cut are said to be normal."""
    result = tcplife.analyze(SAMPLES / "clean_traffic.client.pcap")
    summary = result.summary()
    assert summary["capture"]["truncated"] == result.stats.truncated > 0
    assert "cut by the snap length" in _render(summary)


def test_summary_states_at_the_end_and_open_sockets() -> None:
    """many_short: 24 connections, each closed by the client first; at the end of the
    capture (0.5 s after the last one) the client holds 24 TIME_WAIT sockets (the lab's
    ss at its end checkpoint), the server none."""
    summary = tcplife.analyze(SAMPLES / "many_short.client.pcap").summary()
    assert summary["connections"] == 24
    assert summary["client_ends_in"] == {"TIME_WAIT": 24}
    assert summary["server_ends_in"] == {"CLOSED": 24}
    assert summary["open_at_end"]["TIME_WAIT"]["count"] == 24
    assert 0 < summary["open_at_end"]["TIME_WAIT"]["oldest_s"] < 60
    assert summary["anomalies"]["warning"] == {}
