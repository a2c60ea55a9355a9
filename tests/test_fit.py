"""Terminal tables and ladders at any width (`tcplife.output.fit`, `tcplife.output.ladder`).

At every width each command's columns are all there (by header, or the short header the
policy documents), every value of every row is printed whole (addresses, times, states
or their ``ss`` names, frame numbers), no line is wider than the terminal and nothing is
cut to ``…``. The expected values come from the same command's JSON lines (not from the
table code): endpoints and clock times are formatted here from the raw fields, and the
``ss`` names from iproute2's own list, not from `tcplife.output.fit`.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pcapgen
import pytest
from click.testing import CliRunner
from rich.console import Console
from rich.text import Text

from tcplife.cli.main import main
from tcplife.output.fit import Column, FittedTable, wrap_text

SAMPLES = Path(__file__).resolve().parents[1] / "sample_pcaps"
WIDTHS = [40, 60, 80, 100, 120, 200]
#: iproute2's ``ss`` state names (misc/ss.c, sstate_name), for the RFC names tcplife uses
SS = {"ESTABLISHED": "ESTAB", "SYN_SENT": "SYN-SENT", "SYN_RECEIVED": "SYN-RECV",
      "FIN_WAIT_1": "FIN-WAIT-1", "FIN_WAIT_2": "FIN-WAIT-2", "TIME_WAIT": "TIME-WAIT",
      "CLOSE_WAIT": "CLOSE-WAIT", "LAST_ACK": "LAST-ACK"}
#: each view's headers: (full, short) -- a multi-line header by its last line
HEADERS = {
    "analyze": ["id", "client", "server", "start", ("duration", "dur"), "pkts", "c→s",
                "s→c", "state", "close", "flags"],
    "timeline": ["time", ("conn", "id"), "side", "address", "from", "to", "event", "frame",
                 "held"],
    "anomalies": ["time", ("conn", "id"), "side", "kind", "severity", "frame", "detail"],
    "at": ["State", ("Local Address:Port", "Local"), ("Peer Address:Port", "Peer"),
           ("conn", "id"), "side", "since", "for"],
    "frames": ["frame", ("+seconds", "+s"), ("conn", "id"), "source",
               ("destination", "dest"), "flags", "seq", "ack", "len", "win",
               ("client state", "client"), ("server state", "server")],
}
CAPTURES = ["ipv6.client.pcap", "final_ack_dropped.server.pcap",
            "close_unread_data.server.pcap", "many_short.client.pcap"]
ARGS = {"analyze": [], "timeline": [], "anomalies": ["--all"], "at": ["end"], "frames": []}
DURATION = re.compile(r"^(?:(\d+)h(\d\d)m|(\d+)m(\d+\.\d)s|(\d+\.\d{3})s|(\d+\.\d)ms)$")


@functools.cache
def cli(*args: str | Path, columns: int | None = None) -> str:
    env = {"COLUMNS": str(columns) if columns else None}
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def clock(iso: str) -> str:
    return iso[11:26]  # 2026-11-22T01:20:12.784525Z -> 01:20:12.784525


def since_clock(ts: float) -> str:
    micros = round(ts * 1e6)
    stamp = datetime.fromtimestamp(micros // 1_000_000, tz=timezone.utc)
    return stamp.strftime("%H:%M:%S") + f".{micros % 1_000_000:06d}"


def seconds(token: str) -> float | None:
    m = DURATION.match(token)
    if not m:
        return None
    h, hm, mm, ms, s, milli = m.groups()
    if h:
        return int(h) * 3600 + int(hm) * 60
    if mm:
        return int(mm) * 60 + float(ms)
    return float(s) if s else float(milli) / 1000


@functools.lru_cache(maxsize=4096)  # a regex over a long table per row took minutes
def state(name: str, text: str) -> str:
    """``name`` as the table wrote it: the RFC name or ss's (whichever is in ``text``)."""
    return name if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) else \
        SS.get(name.lstrip("~"), name) if not name.startswith("~") else \
        "~" + SS.get(name[1:], name[1:])


def expected(command: str, row: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(whole values that must appear on one line, free-text words) of one JSON row."""
    if command == "analyze":
        return ([str(row["conn_id"]), endpoint(row["client_addr"], row["client_port"]),
                 endpoint(row["server_addr"], row["server_port"]), clock(row["first_time"]),
                 str(row["packets"]), str(row["client_bytes"]), str(row["server_bytes"]),
                 row["client_state"], row["server_state"], row["close_kind"]],
                [*row["anomalies"]])
    if command == "timeline":
        to = ("~" if row["inferred"] else "") + row["to_state"]
        frame = [] if row["frame"] is None else [str(row["frame"])]
        return ([clock(row["time"]), str(row["conn_id"]), row["side"],
                 endpoint(row["addr"], row["port"]), row["from_state"], to, *frame],
                row["event"].split())
    if command == "anomalies":
        frame = [] if row["frame"] is None else [str(row["frame"])]
        return ([clock(row["time"]), str(row["conn_id"]), row["side"], row["kind"],
                 row["severity"], *frame], row["detail"].split())
    if command == "at":
        return ([row["state"], endpoint(row["local_addr"], row["local_port"]),
                 endpoint(row["remote_addr"], row["remote_port"]), str(row["conn_id"]),
                 row["side"], since_clock(row["since"])], [])
    ack = [] if row["rel_ack"] is None else [str(row["rel_ack"])]
    return ([str(row["frame"]), f"{row['rel_ts']:.6f}", str(row["conn_id"]),
             endpoint(row["src_addr"], row["src_port"]),
             endpoint(row["dst_addr"], row["dst_port"]), f"[{row['flags']}]",
             str(row["rel_seq"]), *ack, str(row["len"]), str(row["window"])], [])


def check_fits(text: str, width: int, exempt: tuple[str, ...] = ()) -> list[str]:
    lines = text.splitlines()
    assert "…" not in text
    for line in lines:
        if not line.startswith(exempt):
            assert len(line) <= width, (width, line)
    return lines


def appears(value: str, tokens: set[str], lines: list[str]) -> bool:
    """Does ``value`` appear whole on one line? A token (or a token less its ``~`` mark or
    trailing comma) answers at once; anything else is searched line by line (a scan per
    value made the 6,000-row tables take minutes)."""
    if value in tokens:
        return True
    return any(value in line for line in lines)


def check_view(command: str, capture: Path, width: int) -> None:
    rows = [json.loads(line) for line in
            cli(command, *ARGS[command], capture, "--format", "jsonl").splitlines()]
    text = cli(command, *ARGS[command], capture, "--format", "table", columns=width)
    lines = check_fits(text, width, exempt=("tshark ",))
    tokens = set(text.split())
    tokens |= {t.lstrip("~").rstrip(",") for t in tokens}
    for header in HEADERS[command]:
        names = header if isinstance(header, tuple) else (header,)
        assert any(name in text for name in names), (command, width, header)
    for row in rows:
        whole, words = expected(command, row)
        for value in whole:
            if value.lstrip("~") in {**SS, "CLOSED": 1, "LISTEN": 1, "CLOSING": 1,
                                     "UNKNOWN": 1}:
                value = state(value, text)
            assert appears(value, tokens, lines), (command, width, value)
        for word in words:
            assert word in tokens or word + "," in tokens, (command, width, word)
    if command == "analyze":  # the durations, read back
        shown = [s for s in (seconds(t) for t in tokens) if s is not None]
        for row in rows:
            assert any(abs(s - row["duration"]) <= max(0.0006, row["duration"] * 0.001)
                       for s in shown), (width, row["duration"])
    if command == "frames":  # each side's states, written where they change
        for side in ("client", "server"):
            for name in {r[f"{side}_state"] for r in rows}:
                assert state(name, text) in text, (width, name)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", list(HEADERS))
def test_every_view_fits_every_width(command: str, width: int) -> None:
    for capture in CAPTURES:
        if command in ("frames", "timeline") and capture.startswith("many_short"):
            continue  # the same shape as the others, 30 connections of them
        check_view(command, SAMPLES / capture, width)


@pytest.fixture(scope="module")
def many_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 orderly closes (6000 state changes): more rows than a rich Table is used for."""
    segments = []
    for i in range(600):
        segments += pcapgen.orderly_close(pcapgen.T0_US + i * 20_000,
                                          ("10.0.0.1", 20000 + i))
    segments.sort(key=lambda s: s.ts_us)
    return pcapgen.write_pcap(tmp_path_factory.mktemp("fit") / "many.pcap", segments)


@pytest.mark.parametrize("width", [40, 80, 200])
@pytest.mark.parametrize("command", ["analyze", "timeline"])
def test_long_tables_fit(command: str, width: int, many_pcap: Path) -> None:
    check_view(command, many_pcap, width)


def test_a_wide_terminal_keeps_the_table_on_one_line_per_row() -> None:
    """At 200 columns nothing is narrowed: full headers, RFC state names, one line a row."""
    capture = SAMPLES / "final_ack_dropped.server.pcap"
    text = cli("timeline", capture, "--format", "table", columns=200)
    rows = [line for line in text.splitlines() if " → " in line]
    assert len(rows) == len(cli("timeline", capture, "--format", "jsonl").splitlines())
    assert "~ESTABLISHED" in text and "ESTAB " not in text and "conn" in text


def test_narrowing_order() -> None:
    """80 columns: short headers are enough, so states keep their RFC names."""
    text = cli("at", "end", SAMPLES / "final_ack_dropped.server.pcap", "--format", "table",
               columns=80)
    lines = text.splitlines()
    assert lines[1].split() == ["State", "Local", "Peer", "id", "side", "since", "for"]
    assert lines[3].split()[0] == "TIME_WAIT"


def test_stacked_blocks_name_every_column() -> None:
    table = FittedTable("t", [Column("address"), Column(""), Column("state", state=True),
                              Column("detail", wrap=True)],
                        [["[fd00:231:1::2]:33242", "→", "~SYN_RECEIVED",
                          "a long sentence " * 4]])
    lines = [line.plain for line in table.render(30)]
    assert "address  [fd00:231:1::2]:33242" in lines
    assert "state    ~SYN_RECEIVED" in lines  # stacked: room for the full name
    assert all(len(line) <= 30 for line in lines) and not any("→" in x for x in lines)
    assert " ".join(" ".join(lines).split()).count("a long sentence") == 4


def test_wrap_text_breaks_at_spaces_and_folds_only_giant_words() -> None:
    pieces = [t.plain for t in wrap_text(Text("send FIN to 10.231.2.2:8080 now"), 16)]
    assert pieces == ["send FIN to", "10.231.2.2:8080", "now"]
    assert [t.plain for t in wrap_text(Text("abcdefghij"), 4)] == ["abcd", "efgh", "ij"]


def test_summary_fits() -> None:
    capture = SAMPLES / "close_unread_data.server.pcap"
    for width in WIDTHS:
        text = cli("analyze", capture, "--format", "table", columns=width)
        lines = check_fits(text, width)
        for label in ("connections", "client ends in", "open at the end", "closed by",
                      "anomalies", "capture"):
            assert any(line.startswith(label) for line in lines), (width, label)


# --- ladder --------------------------------------------------------------------------------


def arrows(text: str) -> list[str]:
    return [line for line in text.splitlines() if "▶" in line or "◀" in line]


@pytest.mark.parametrize("width", [40, 60, 80, 100, 120, 200])
@pytest.mark.parametrize("capture", ["ipv6.client.pcap", "final_ack_dropped.server.pcap",
                                     "close_unread_data.server.pcap"])
def test_ladder_fits(capture: str, width: int) -> None:
    path = SAMPLES / capture
    packets = [json.loads(line) for line in
               cli("frames", "--conn", "0", path, "--format", "jsonl").splitlines()]
    text = cli("ladder", "--conn", "0", path, columns=width)
    lines = check_fits(text, width, exempt=("tshark ",))
    assert lines[-1].startswith("tshark -r ")  # whole, to be copied
    flat = " ".join(text.split())
    for p in packets:  # every packet's flags, seq, ack and length, whole
        label = f"[{p['flags']}] seq={p['rel_seq']}"
        assert label in flat or f"[{p['flags']}]" in text, (width, label)
        assert f"len={p['len']}" in text and f"seq={p['rel_seq']}" in text
    if width >= 60:  # a diagram: one arrow per packet, its frame number first
        assert [int(r.split()[0]) for r in arrows(text)] == [p["frame"] for p in packets]
    else:  # stacked: one block per packet
        assert [int(line.split()[1]) for line in lines if line.startswith("frame ")] == \
            [p["frame"] for p in packets]
    for side in ("client", "server"):
        for name in {p[f"{side}_state"] for p in packets}:
            assert state(name, text) in text or "~" + state(name, text) in text


def test_ladder_width_follows_columns_into_a_pipe() -> None:
    """The server's lifeline sits 13 cells (its state column) from the right edge."""
    capture = SAMPLES / "final_ack_dropped.server.pcap"

    def edge(columns: int | None) -> int:
        return max(x.rindex("│") for x in arrows(cli("ladder", "--conn", "0", capture,
                                                      columns=columns))) + 1 + 13

    assert edge(None) == 100  # into a pipe without COLUMNS
    assert edge(130) == 130
    assert edge(400) == 140  # wider shows nothing more


def test_fitted_table_renders_in_a_console() -> None:
    out = Console(width=50, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    out.print(FittedTable("x", [Column("a"), Column("b", wrap=True)],
                          [["1", "word " * 30]]))
    assert all(len(line) <= 50 for line in out.export_text().splitlines())
