"""The live session without an interface: captures replayed through `LiveSession` on a
simulated clock (no root needed).

A `Replay` source hands over each segment once the simulated wall clock has passed its
timestamp, and otherwise lets the clock run (as an idle interface would), so the wall-clock
timers of the live mode fire between packets. Proves: the final tables equal
`tcplife.analyze` on the same capture (every sample capture, several timeout settings);
a lingering CLOSE_WAIT is noticed when its threshold passes on the clock, before any later
packet; idle flows are given up; the flow cap holds with one warning; the history is
bounded; the bounded TIME_WAIT sweep finds what the plain one finds.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import tcplife
from tcplife.capture import ReadStats, read_segments
from tcplife.events import Anomaly, ConnectionEnded
from tcplife.live import (
    EarlyAnomaly,
    LiveSession,
    LiveWarning,
    Tick,
    event_row,
)
from tcplife.options import NS, Options

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"


class Replay:
    """A packet source replaying a capture on a simulated clock (ns since the epoch)."""

    def __init__(self, path: Path | list, *, start_gap: float = 0.2) -> None:
        self.stats = ReadStats()
        self.segments = list(read_segments(path, self.stats)) if isinstance(path, Path) \
            else list(path)
        self.frames = 0
        first = self.segments[0].ts_ns if self.segments else 0
        self.now_ns = first - int(start_gap * NS)
        self.pos = 0
        self.closed = False

    # the clocks the session reads
    def wall_ns(self) -> int:
        return self.now_ns

    def monotonic(self) -> float:
        return self.now_ns / NS

    def read(self, wait: float = 0.1, limit: int = 50_000) -> list:
        segs = self.segments
        ready = self.pos
        while ready < len(segs) and segs[ready].ts_ns <= self.now_ns \
                and ready - self.pos < limit:
            ready += 1
        if ready == self.pos:
            # Nothing yet: wait, as select() would, until the next packet or the timeout.
            target = self.now_ns + int(wait * NS)
            if self.pos < len(segs):
                target = min(target, segs[self.pos].ts_ns)
            self.now_ns = max(self.now_ns, target)
            return []
        out = segs[self.pos:ready]
        self.pos = ready
        self.frames = out[-1].frame
        return out

    def update_stats(self) -> None:
        return None

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    @property
    def done(self) -> bool:
        return self.pos >= len(self.segments)


def run_replay(path: Path, options: Options, *, tail: float = 1.0, **kwargs: object
               ) -> tuple[LiveSession, list]:
    """Replay the whole capture, then let ``tail`` seconds pass and stop."""
    source = Replay(path)
    session = LiveSession(source, options, wall_ns=source.wall_ns,
                          monotonic=source.monotonic, **kwargs)  # type: ignore[arg-type]
    events = []
    end_ns = None
    for ev in session:
        events.append(ev)
        if source.done and end_ns is None:
            end_ns = source.now_ns + int(tail * NS)
        if end_ns is not None and source.now_ns >= end_ns:
            session.stop()
    assert source.closed
    return session, events


def _tables(result: tcplife.Result) -> dict[str, pd.DataFrame]:
    conns = result.connections.drop(columns=["anomalies"]).assign(
        anomalies=result.connections["anomalies"].map(tuple))
    return {"connections": conns.reset_index(drop=True),
            "transitions": result.transitions.reset_index(drop=True),
            "anomalies": result.anomalies.reset_index(drop=True)}


CASES = [
    ("normal_close_client_first.client.pcap", {}),
    ("server_never_closes.server.pcap", {"fin_wait_2": 3, "close_wait_linger": 1}),
    ("refused.client.pcap", {}),
    ("close_unread_data.client.pcap", {}),
    ("many_short.client.pcap", {"time_wait_threshold": 20}),
    ("syn_dropped.client.pcap", {"syn_sent": 7}),
    ("handshake_ack_dropped.server.pcap", {"syn_received": 7}),
    ("final_ack_dropped.server.pcap", {}),
    ("port_reuse_close_wait.server.pcap", {"fin_wait_2": 2}),
    ("half_open.client.pcap", {}),
    ("keepalive.client.pcap", {}),
    ("simultaneous_close.client.pcap", {}),
    ("fin_wait_2_timeout_then_data.client.pcap", {"fin_wait_2": 3}),
    ("ipv6.any.pcap", {}),
    ("clean_traffic.server.pcap", {"time_wait": 5, "closed_linger": 2}),
]


@pytest.mark.parametrize(("name", "timeouts"), CASES, ids=[c[0] for c in CASES])
def test_live_tables_equal_file_mode(name: str, timeouts: dict[str, float]) -> None:
    options = Options(**timeouts)
    session, events = run_replay(SAMPLES / name, options)
    live = _tables(session.result())
    # What was said early (on the clock, or as soon as both sides were done) is what the
    # final verdict says.
    early = {(e.conn_id, e.side, e.kind) for e in events if isinstance(e, EarlyAnomaly)}
    final = {(a.conn_id, a.side, a.kind) for a in events if isinstance(a, Anomaly)}
    assert early <= final
    file = _tables(tcplife.analyze(SAMPLES / name, options=options))
    for table in ("connections", "transitions", "anomalies"):
        pd.testing.assert_frame_equal(live[table], file[table], obj=f"{name} {table}")


def test_lingering_close_wait_is_noticed_on_the_clock() -> None:
    """server_never_closes: the server takes CLOSE_WAIT and closes 4.7 s later; with a
    1 s threshold the live mode says so 1 s after the FIN, with no packet in between."""
    path = SAMPLES / "server_never_closes.server.pcap"
    session, events = run_replay(path, Options(fin_wait_2=3, close_wait_linger=1))
    early = [e for e in events if isinstance(e, EarlyAnomaly)
             and e.kind == "lingering_close_wait"]
    assert [e.side for e in early] == ["server"]
    segments = list(read_segments(path))
    fin_to_server = next(s for s in segments if s.flags & 0x01 and s.dport == 8080)
    assert early[0].ts_ns - fin_to_server.ts_ns == pytest.approx(1 * NS, abs=0.5 * NS)
    later = [s for s in segments if fin_to_server.ts_ns < s.ts_ns <= early[0].ts_ns]
    assert all(s.payload_len == 0 and not s.flags & 0x01 for s in later[:1])  # its ACK only
    final = [e for e in events if isinstance(e, Anomaly) and e.kind == "lingering_close_wait"]
    assert len(final) == 1 and events.index(early[0]) < events.index(final[0])
    row = event_row(early[0])
    assert row is not None and row["final"] is False and "so far" in row["detail"]


def test_timeouts_fire_between_packets() -> None:
    """A TIME_WAIT shortened to 0.5 s ends on the clock while nothing else arrives."""
    path = SAMPLES / "normal_close_client_first.client.pcap"
    session, events = run_replay(path, Options(time_wait=0.5, closed_linger=0.5), tail=3)
    ended = [e for e in events if isinstance(e, ConnectionEnded)]
    assert len(ended) == 1
    last_packet = max(s.ts_ns for s in read_segments(path))
    # ended by the eviction timer, on the clock: before the run was stopped
    assert session.counters.stop_reason == "stopped"
    assert ended[0].record.client_state.value == "CLOSED"
    assert ended[0].record.last_ts_ns == last_packet


def test_idle_flows_are_given_up() -> None:
    """keepalive.client.pcap: an idle connection kept by probes; with idle shorter than
    the probe interval the live mode gives it up and says so in its counters."""
    path = SAMPLES / "keepalive.client.pcap"
    gaps = [b.ts_ns - a.ts_ns for a, b in zip(list(read_segments(path)),
                                               list(read_segments(path))[1:], strict=False)]
    idle = max(gaps) / NS / 4  # the clock trails the wall clock by CLOCK_LAG
    assert idle > 0.1
    session, events = run_replay(path, Options(idle=idle))
    assert session.counters.given_up_idle >= 1
    conns = session.result().connections
    assert len(conns) >= 2  # later packets of the 4-tuple start a new (mid-stream) instance


def test_flow_cap_warns_once_and_bounds_the_table() -> None:
    path = SAMPLES / "many_short.client.pcap"
    seen = []
    source = Replay(path)
    session = LiveSession(source, Options(time_wait=3600, closed_linger=3600), max_flows=5,
                          wall_ns=source.wall_ns, monotonic=source.monotonic)
    for ev in session:
        seen.append(ev)
        if isinstance(ev, Tick):  # checked after each read (one read may overshoot it)
            assert session.tracker.open_count() <= 5
        if source.done:
            session.stop()
    warnings = [e for e in seen if isinstance(e, LiveWarning) and e.kind == "flow_cap"]
    assert len(warnings) == 1 and "max_flows" in warnings[0].detail
    assert session.counters.given_up_cap >= 19


def test_history_is_bounded() -> None:
    path = SAMPLES / "many_short.client.pcap"
    session, _ = run_replay(path, Options(time_wait=1, closed_linger=1), history=5)
    result = session.result()
    assert len(result.connections) == 5
    assert session.counters.closed == 24 and session.history.dropped == 19
    assert set(result.transitions["conn_id"]) <= set(result.connections["conn_id"])


def test_event_rows_are_json_with_table_column_names() -> None:
    import json

    session, events = run_replay(SAMPLES / "refused.client.pcap", Options())
    rows = [event_row(e) for e in events]
    kinds = {r["type"] for r in rows if r is not None}
    assert {"transition", "closed", "anomaly"} <= kinds
    closed = next(r for r in rows if r and r["type"] == "closed")
    file = tcplife.analyze(SAMPLES / "refused.client.pcap").connections
    assert set(file.columns) == set(closed) - {"type"}
    assert closed["anomalies"] == ["refused"] and closed["close_kind"] == "refused"
    for r in rows:
        if r is not None:
            json.dumps(r)


def test_background_run_for_notebooks() -> None:
    """`start()` runs the loop in a thread; `result()` can be read meanwhile; `stop()` and
    `join()` end it with the same final tables as the file mode."""
    import time

    path = SAMPLES / "many_short.client.pcap"
    options = Options(time_wait_threshold=20)
    source = Replay(path)
    session = LiveSession(source, options, wall_ns=source.wall_ns,
                          monotonic=source.monotonic).start()
    sizes = []
    deadline = time.monotonic() + 60
    while not source.done and time.monotonic() < deadline:
        sizes.append(len(session.result().connections))
        time.sleep(0.001)
    session.stop()
    session.join(timeout=60)
    assert source.done and source.closed
    assert sizes == sorted(sizes)  # connections appear (open ones as they stand) and stay
    final = _tables(session.result())
    file = _tables(tcplife.analyze(path, options=options))
    for table in ("connections", "transitions", "anomalies"):
        pd.testing.assert_frame_equal(final[table], file[table], obj=table)
    assert any(isinstance(e, ConnectionEnded) for e in session.recent)


def test_leaving_the_loop_early_still_ends_cleanly() -> None:
    """A consumer that stops iterating (break, an exception) still gets the end: the
    source closed, pending timeouts fired, every connection judged."""
    path = SAMPLES / "server_never_closes.server.pcap"
    source = Replay(path)
    session = LiveSession(source, Options(fin_wait_2=3, close_wait_linger=1),
                          wall_ns=source.wall_ns, monotonic=source.monotonic)
    events = iter(session)
    for ev in events:
        if isinstance(ev, ConnectionEnded) or source.done:
            break
    events.close()  # what a `break` out of `for ev in session` does when it is collected
    assert source.closed and session.counters.stopped_ns is not None
    assert len(session.result().connections) == 1


def test_live_screen_renders_states_and_anomalies() -> None:
    """The rich screen's model, fed a replayed session: sides' states, the refused
    connection's anomaly, and one line for an anomaly first noticed early."""
    from rich.console import Console

    from tcplife.cli_live import Screen

    source = Replay(SAMPLES / "refused.client.pcap")
    session = LiveSession(source, Options(), wall_ns=source.wall_ns,
                          monotonic=source.monotonic)
    screen = Screen(session, "lo")
    console = Console(record=True, width=160, color_system=None)
    for ev in session:
        screen.update(ev)
        console.print(screen.render(40))
        if source.done:
            session.stop()
    console.print(screen.render(40))
    text = console.export_text()
    assert "SYN_SENT" in text and "refused" in text and "(so far)" in text
    last = text.rsplit("tcplife live", 1)[1]
    assert last.count("answered the SYN") == 1  # the verdict replaced the early notice
