"""The live session without an interface: captures replayed through `LiveSession` on a
simulated clock (no root needed).

A `Replay` source hands over each segment once the simulated wall clock has passed its
timestamp, and otherwise lets the clock run (as an idle interface would), so the wall-clock
timers of the live mode fire between packets. Proves: the final tables equal
`tcplife.analyze` on the same capture (every sample capture, several timeout settings);
a lingering CLOSE_WAIT is noticed when its threshold passes on the clock, before any later
packet; a run stopped later (by stop(), --duration or the end of input) judges what is
open at its stop, keeps what it announced early, and dates nothing after its end; idle
flows are given up; the flow cap holds with one warning; the history is bounded; the
bounded TIME_WAIT sweep finds what the plain one finds.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import tcplife
from tcplife.capture import ReadStats, read_segments
from tcplife.cli.live import event_row
from tcplife.core.events import Anomaly, ConnectionEnded, Transition
from tcplife.core.options import NS, Options
from tcplife.core.states import CONFIDENCES, SEVERITIES
from tcplife.engines.live import (
    EarlyAnomaly,
    LiveSession,
    LiveWarning,
    Stopped,
    Tick,
)

from builder import FIN, Conv

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"


class Replay:
    """A packet source replaying a capture on a simulated clock (ns since the epoch)."""

    def __init__(self, path: Path | list, *, start_gap: float = 0.2,
                 end_of_input: bool = False, ends_ns: int = 0) -> None:
        # end_of_input: say that the input is exhausted once every segment was read and
        # the clock reached ends_ns (else the clock runs on, as on an idle interface)
        self.end_of_input = end_of_input
        self.ends_ns = ends_ns
        self.said_exhausted = False
        self.linktype = 1
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
        if self.exhausted and not self.said_exhausted:
            self.said_exhausted = True
            return []  # the end of input is known at once: no wait (then idle, as a pipe)
        ready = self.pos
        while ready < len(segs) and segs[ready].ts_ns <= self.now_ns \
                and ready - self.pos < limit:
            ready += 1
        if ready == self.pos:
            # Nothing yet: wait, as select() would, until the next packet or the timeout.
            target = self.now_ns + int(wait * NS)
            if self.pos < len(segs):
                target = min(target, segs[self.pos].ts_ns)
            elif self.end_of_input and self.now_ns < self.ends_ns:
                target = min(target, self.ends_ns)  # the input ends then
            self.now_ns = max(self.now_ns, target)
            return []
        out = segs[self.pos:ready]
        self.pos = ready
        self.frames = out[-1].frame
        self.stats.last_ts_ns = out[-1].ts_ns
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

    @property
    def exhausted(self) -> bool:
        return self.end_of_input and self.done and self.now_ns >= self.ends_ns


def run_replay(path: Path, options: Options, *, tail: float | None = 1.0, **kwargs: object
               ) -> tuple[LiveSession, list]:
    """Replay the whole capture, then let ``tail`` seconds pass and stop (None: the run
    ends with its input, at the last frame)."""
    source = Replay(path, end_of_input=tail is None)
    session = LiveSession(source, options, wall_ns=source.wall_ns,
                          monotonic=source.monotonic, **kwargs)  # type: ignore[arg-type]
    events = []
    end_ns = None
    for ev in session:
        events.append(ev)
        if source.done and end_ns is None and tail is not None:
            end_ns = source.now_ns + int(tail * NS)
        if end_ns is not None and source.now_ns >= end_ns:
            session.stop()
        if source.done and source.now_ns > source.segments[-1].ts_ns + 3600 * NS:
            session.stop("runaway")  # a run that does not end with its input
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
    """A run that ends with its input ends at the capture's last frame, as the file mode
    does: the same tables, but for the transitions dated after that end (the timeouts still
    pending, which the file mode lists at their deadlines and a live run does not fire)."""
    options = Options(**timeouts)
    session, events = run_replay(SAMPLES / name, options, tail=None)
    last_frame = max(s.ts_ns for s in read_segments(SAMPLES / name))
    assert session.counters.stop_reason == "end of input"
    assert session.counters.end_ns == last_frame
    assert isinstance(events[-1], Stopped) and events[-1].ts_ns == last_frame
    live = _tables(session.result())
    # What was said early (on the clock, or as soon as both sides were done) is what the
    # final verdict says.
    early = {(e.conn_id, e.side, e.kind) for e in events if isinstance(e, EarlyAnomaly)}
    final = {(a.conn_id, a.side, a.kind) for a in events if isinstance(a, Anomaly)}
    assert early <= final
    assert not session.counters.unconfirmed
    file = _tables(tcplife.analyze(SAMPLES / name, options=options))
    trans = file["transitions"]
    file["transitions"] = trans[trans["ts_ns"] <= last_frame].reset_index(drop=True)
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


def test_the_early_notice_is_the_detectors_sentence() -> None:
    """The early notice of a lingering CLOSE_WAIT is written by the detector that writes
    the final verdict (`LingeringCloseWait`, counting it *so far*), not by the live
    engine: the same subject, FIN time and evidence frame."""
    path = SAMPLES / "server_never_closes.server.pcap"
    _, events = run_replay(path, Options(fin_wait_2=3, close_wait_linger=1))
    (early,) = [e for e in events if isinstance(e, EarlyAnomaly)
                and e.kind == "lingering_close_wait"]
    (final,) = [e for e in events if isinstance(e, Anomaly)
                and e.kind == "lingering_close_wait"]
    head = final.detail.split(": CLOSE_WAIT for ")[0]
    assert head.endswith("and did not close") and early.detail.startswith(
        head + ": CLOSE_WAIT for 1.")
    assert early.detail.endswith(" so far; the application is not calling close() (the "
                                 "peer is in FIN_WAIT_2)")
    assert (early.side, early.frame) == (final.side, final.frame)


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
    """`start()` runs the loop in a thread; `result()` can be read meanwhile; `stop()` (or
    the end of input) and `join()` end it with the same final tables as the file mode."""
    import time

    path = SAMPLES / "many_short.client.pcap"
    options = Options(time_wait_threshold=20)
    source = Replay(path, end_of_input=True)
    session = LiveSession(source, options, wall_ns=source.wall_ns,
                          monotonic=source.monotonic).start()
    sizes = []
    deadline = time.monotonic() + 60
    while not source.done and time.monotonic() < deadline:
        sizes.append(len(session.result().connections))
        time.sleep(0.001)
    session.join(timeout=30)  # it ends with its input
    if session._thread is not None and session._thread.is_alive():
        session.stop("runaway")
        session.join(timeout=30)
    assert session.counters.stop_reason == "end of input"
    assert source.done and source.closed
    assert sizes == sorted(sizes)  # connections appear (open ones as they stand) and stay
    final = _tables(session.result())
    file = _tables(tcplife.analyze(path, options=options))
    end = session.counters.end_ns
    assert end == source.segments[-1].ts_ns  # the run ended with its input
    trans = file["transitions"]
    file["transitions"] = trans[trans["ts_ns"] <= end].reset_index(drop=True)
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

    from tcplife.cli.live import Screen

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


@pytest.mark.parametrize("tail", [2.0, 70.0])
@pytest.mark.parametrize(("name", "timeouts"), CASES, ids=[c[0] for c in CASES])
def test_stopped_run_is_judged_at_its_stop(name: str, timeouts: dict[str, float],
                                           tail: float) -> None:
    """A run stopped ``tail`` s after the capture's last frame (70 s: past TIME_WAIT and
    FIN_WAIT_2): its transitions are the file mode's up to the stop and none after it, and
    each side's state in the final rows is its state at the stop by the file mode's
    transitions (which list the pending timeouts at their deadlines)."""
    options = Options(**timeouts)
    session, events = run_replay(SAMPLES / name, options, tail=tail)
    end = session.counters.end_ns
    assert end is not None and isinstance(events[-1], Stopped) and events[-1].ts_ns == end
    last_frame = max(s.ts_ns for s in read_segments(SAMPLES / name))
    assert end >= last_frame + tail * NS
    assert all(e.ts_ns <= end for e in events if isinstance(e, Transition))
    live = _tables(session.result())
    file = tcplife.analyze(SAMPLES / name, options=options)
    trans = _tables(file)["transitions"]
    pd.testing.assert_frame_equal(live["transitions"],
                                  trans[trans["ts_ns"] <= end].reset_index(drop=True))
    before = trans[trans["ts_ns"] <= end]  # in (ts, tid) order: the last one is the state
    last = {(int(c), str(s)): str(t) for c, s, t in zip(
        before["conn_id"], before["side"], before["to_state"], strict=True)}
    conns = file.connections
    for side in ("client", "server"):
        want = [last.get((int(c), side), str(initial)) for c, initial in zip(
            conns["conn_id"], conns[f"{side}_initial_state"], strict=True)]
        assert live["connections"][f"{side}_state"].astype(str).tolist() == want, side


def _server_never_closes() -> tuple[list, object]:
    """A request, an answer, the client's FIN; the server acknowledges it and never closes
    (CLOSE_WAIT), the client waits in FIN_WAIT_2. Returns the segments and the FIN."""
    conv = Conv()
    conv.handshake()
    conv.c(0, 100)
    conv.s(0, 200)
    conv.c(0)
    fin = conv.c(FIN)
    conv.s(0)  # its ACK of the FIN, and nothing more
    return conv.segments, fin


@pytest.mark.parametrize("how", ["stop", "duration", "end of input"])
def test_stop_judges_what_is_open_then(how: str) -> None:
    """The server never closes; the run stops 5 s after the FIN with close_wait_linger 2
    (by stop() as Ctrl-C does, by --duration, or by the end of the source's input). The
    final tables have the lingering_close_wait row the run announced early, counted to the
    stop, and the summary counts it; nothing is dated after the stop (the client's
    FIN_WAIT_2 timeout, 60 s later, is only its eventual state)."""
    segments, fin = _server_never_closes()
    stop_at = fin.ts_ns + 5 * NS  # type: ignore[attr-defined]
    source = Replay(segments, end_of_input=how == "end of input", ends_ns=stop_at)
    duration = (stop_at - source.now_ns) / NS if how == "duration" else None
    session = LiveSession(source, Options(close_wait_linger=2), duration=duration,
                          wall_ns=source.wall_ns, monotonic=source.monotonic)
    events = []
    for ev in session:
        events.append(ev)
        if how == "stop" and source.now_ns >= stop_at or source.now_ns > stop_at + 100 * NS:
            session.stop()
    end = session.counters.end_ns
    assert end is not None and stop_at - NS // 1000 <= end < stop_at + NS
    assert isinstance(events[-1], Stopped) and events[-1].ts_ns == end
    assert events[-1].reason == {"stop": "stopped"}.get(how, how)
    early = [e for e in events if isinstance(e, EarlyAnomaly)]
    assert [(e.side, e.kind) for e in early] == [("server", "lingering_close_wait")]

    result = session.result()
    rows = result.anomalies[result.anomalies["kind"] == "lingering_close_wait"]
    assert list(rows["side"]) == ["server"]
    assert rows["frame"].iloc[0] == fin.frame  # type: ignore[attr-defined]
    assert rows["ts_ns"].iloc[0] == fin.ts_ns  # type: ignore[attr-defined]
    lasted = (end - fin.ts_ns) / NS  # type: ignore[attr-defined]
    assert f"CLOSE_WAIT for {lasted:.1f} s" in rows["detail"].iloc[0]  # to the stop
    assert {(e.conn_id, e.side, e.kind) for e in early} <= set(
        zip(result.anomalies["conn_id"], result.anomalies["side"], result.anomalies["kind"],
            strict=True))
    conn = result.connections.iloc[0]
    assert (conn["client_state"], conn["server_state"]) == ("FIN_WAIT_2", "CLOSE_WAIT")
    assert (conn["client_eventual_state"], conn["server_eventual_state"]) == (
        "CLOSED", "CLOSE_WAIT")
    assert conn["close_kind"] == "open" and "lingering_close_wait" in conn["anomalies"]
    counters = session.counters
    assert counters.anomalies.get("lingering_close_wait") == 1 and not counters.unconfirmed
    assert counters.open_at_end == {"FIN_WAIT_2": 1, "CLOSE_WAIT": 1}
    assert counters.oldest_close_wait_ns == end - fin.ts_ns  # type: ignore[attr-defined]

    dated = [e for e in events if isinstance(e, (Transition, Anomaly, EarlyAnomaly))]
    assert dated and all(e.ts_ns <= end for e in dated)
    assert (result.transitions["ts_ns"] <= end).all()
    assert not (result.transitions["to_state"] == "CLOSED").any()


def test_given_up_flow_keeps_its_early_notice() -> None:
    """A flow given up as idle (4 s) while its server lingers in CLOSE_WAIT (announced at
    2 s) is judged as it stands when given up: the final verdict keeps the notice."""
    segments, fin = _server_never_closes()
    source = Replay(segments)
    session = LiveSession(source, Options(close_wait_linger=2, idle=4),
                          wall_ns=source.wall_ns, monotonic=source.monotonic)
    events = []
    for ev in session:
        events.append(ev)
        if session.counters.given_up_idle:
            session.stop()
    ended = [e for e in events if isinstance(e, ConnectionEnded)]
    assert len(ended) == 1 and not ended[0].at_end  # given up during the run
    early = {(e.conn_id, e.side, e.kind) for e in events if isinstance(e, EarlyAnomaly)}
    final = {(a.conn_id, a.side, a.kind) for a in events if isinstance(a, Anomaly)}
    assert early == {(0, "server", "lingering_close_wait")} and early <= final
    assert not session.counters.unconfirmed


def test_cli_live_judges_what_is_open_when_it_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case through the command: ``tcplife live --duration 7
    --close-wait-linger 2`` with a server that never closes, on a replayed source. The
    JSON lines and the summary keep the lingering CLOSE_WAIT announced during the run; no
    row is dated after the last one, ``stopped``."""
    import json

    from click.testing import CliRunner

    from tcplife.cli import live as cli_live
    from tcplife.cli.main import main

    segments, fin = _server_never_closes()
    started: list[Replay] = []

    def fake_live(iface: str, bpf: str | None = None, *, duration: float | None = None,
                  count: int | None = None, max_flows: int = 100_000,
                  history: int = 10_000, **kw: object) -> LiveSession:
        for name in ("write", "snaplen", "buffer_mb", "promisc", "user", "user_chosen"):
            kw.pop(name, None)
        source = Replay(segments)
        started.append(source)
        return LiveSession(source, Options(**kw), duration=duration,  # type: ignore[arg-type]
                           count=count, max_flows=max_flows, history=history,
                           wall_ns=source.wall_ns, monotonic=source.monotonic)

    monkeypatch.setattr(cli_live, "start_live", fake_live)
    out = CliRunner().invoke(main, ["live", "-i", "lo", "--format", "jsonl", "--duration",
                                    "7", "--close-wait-linger", "2"])
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows[-1]["type"] == "stopped" and rows[-1]["reason"] == "duration"
    end = rows[-1]["ts"]
    start = (segments[0].ts_ns - int(0.2 * NS)) / NS  # the replay's clock at the start
    assert end == pytest.approx(start + 7, abs=1e-3)
    anomalies = [(r["side"], r["kind"], r["final"]) for r in rows if r["type"] == "anomaly"]
    assert anomalies == [("server", "lingering_close_wait", False),
                         ("server", "lingering_close_wait", True)]
    final = next(r for r in rows if r["type"] == "anomaly" and r["final"])
    assert final["frame"] == fin.frame  # type: ignore[attr-defined]
    early = next(r for r in rows if r["type"] == "anomaly" and not r["final"])
    assert early["severity"] == final["severity"] and final["severity"] in SEVERITIES
    assert final["confidence"] in CONFIDENCES
    lasted = end - fin.ts_ns / NS  # type: ignore[attr-defined]
    assert f"CLOSE_WAIT for {lasted:.1f} s" in final["detail"]
    closed = [r for r in rows if r["type"] == "closed"]
    assert len(closed) == 1
    assert (closed[0]["client_state"], closed[0]["server_state"]) == ("FIN_WAIT_2",
                                                                      "CLOSE_WAIT")
    assert closed[0]["client_eventual_state"] == "CLOSED"
    assert closed[0]["anomalies"] == ["lingering_close_wait"]
    assert all(r["ts"] <= end for r in rows if "ts" in r)
    assert not [r for r in rows if r["type"] == "transition" and r["to_state"] == "CLOSED"]
    assert "anomalies: lingering_close_wait 1" in out.stderr
    assert f"CLOSE_WAIT 1 (oldest {lasted:.1f} s)" in out.stderr
    assert "duration after 7.0 s" in out.stderr
