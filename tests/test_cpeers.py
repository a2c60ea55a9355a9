"""The compiled peers' replays (engine/peers*.c, ``tcplife._engine.PeerReplay``) say what
the Python ones (`tcplife.peers`, the specification) say, call for call.

Each case runs the Python tracker with the peers watching it (`tcplife.peers.creplay.
Recording`: every ``segment``, ``opened`` and instance ``feed`` call recorded, the Python
replays fed every segment), plays the same calls into the C replays, and compares: every
instance's `PeerSummary`, field by field (Zeek's conn_state, history, orig, bytes,
duration, the later Zeek connections of its inactivity splits; Wireshark's tcp.stream and
tcp.streams; Suricata's state), and the tcp.stream of every segment. On every sample and
corpus capture, on the tracker's hostile segment streams (tests/fuzz/invariants.py), on the
fast-path tests' conversations, and on scripted Zeek cases; the C instance is also driven
directly (no tracker in between), with its summary compared after every segment.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from fuzz.invariants import segments_from
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fastpath import ISNS, STEP, _conversation

from tcplife.capture import read_segments
from tcplife.capture.columns import AddressBook, Batch
from tcplife.core.options import Options
from tcplife.core.segment import ACK, FIN, RST, SYN, Segment
from tcplife.core.tracker import Tracker
from tcplife.peers import Peers, PeerSummary, WiresharkStreams
from tcplife.peers import suricata as suricata_py
from tcplife.peers import zeek_endpoint as zeek_py
from tcplife.peers.creplay import FEED, OPENED, SEGMENT, Recording, replay, to_summary

from builder import Conv, Host
from needs import CORPUS_PCAPS, missing, needs

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "sample_pcaps").glob("*.pcap*"))
CORPUS = sorted(CORPUS_PCAPS.glob("*.pcap*")) if CORPUS_PCAPS.is_dir() else []


@pytest.fixture(scope="module")
def engine():
    try:
        from tcplife import _engine
    except ImportError:
        missing("the compiled engine (tcplife._engine: python setup.py build_ext --inplace)")
    return _engine


def differences(where: str, conn_id: int, py: PeerSummary, c: PeerSummary) -> list[str]:
    """One line per `PeerSummary` field that differs (zeek_later record by record)."""
    out = []
    for f in dataclasses.fields(PeerSummary):
        a, b = getattr(py, f.name), getattr(c, f.name)
        if a == b:
            continue
        if f.name == "zeek_later" and len(a) == len(b):
            for i, (ra, rb) in enumerate(zip(a, b, strict=True)):
                for g in dataclasses.fields(ra):
                    if getattr(ra, g.name) != getattr(rb, g.name):
                        out.append(f"{where} conn {conn_id}: zeek_later[{i}].{g.name}: "
                                   f"Python {getattr(ra, g.name)!r}, C {getattr(rb, g.name)!r}")
            continue
        out.append(f"{where} conn {conn_id}: {f.name}: Python {a!r}, C {b!r}")
    return out


def compare(where: str, segments: list[Segment], options: Options | None = None) -> int:
    """Run the Python tracker over ``segments`` with the peers recorded, replay the calls in
    C, and assert that everything agrees; returns how many instances were compared."""
    rec = Recording()
    tracker = Tracker(options or Options(), rec)
    ended: dict[int, PeerSummary] = {}
    for events in (*(tracker.feed(s) for s in segments), tracker.finish()):
        for ev in events:
            record = getattr(ev, "record", None)
            if record is not None and type(ev).__name__ == "ConnectionEnded":
                ended[record.conn_id] = record.peers
    if not segments:
        return 0
    batch = Batch.from_segments(segments, AddressBook())
    c, streams = replay([getattr(batch, name) for name in Batch.COLUMNS], rec.ops)
    assert streams.tolist() == rec.streams, f"{where}: tcp.stream per segment differs"
    assert (c.current, c.streams) == (rec.wireshark.current, rec.wireshark._next)
    problems = []
    for conn_id, peers in rec.instances.items():
        py = peers.summary()
        assert ended[conn_id] == py, f"{where} conn {conn_id}: fed after its record was made"
        problems += differences(where, conn_id, py, to_summary(c.summary(conn_id)))
    assert not problems, "\n".join(problems[:20])
    assert c.open == len(rec.instances)
    return len(rec.instances)


# ---------------------------------------------------------------- captures
@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_captures(engine, path: Path) -> None:
    compare(path.name, list(read_segments(path)))  # (syn_dropped.server.pcap is empty)


@needs(corpus=True)
@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_captures(engine, path: Path) -> None:
    compare(path.name, list(read_segments(path)))


@needs(corpus=True)
def test_the_corpus_is_there() -> None:
    assert len(CORPUS) > 50  # the parametrised test above is not vacuous


# ---------------------------------------------------------------- generated streams
@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=8, max_size=3000))
def test_hostile_segment_streams(engine, data: bytes) -> None:
    compare("segments_from", segments_from(data))


@settings(max_examples=100, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=40), ISNS, ISNS, st.booleans())
def test_fast_path_conversations(engine, steps, c_isn: int, s_isn: int,
                                 timestamps: bool) -> None:
    compare("conversation", _conversation(steps, c_isn, s_isn, timestamps))


FLAGS = st.sampled_from([SYN, SYN | ACK, ACK, ACK | 0x08, FIN | ACK, FIN, RST, RST | ACK,
                         FIN | RST, SYN | FIN, SYN | RST, 0, 0xFF])
SEG = st.tuples(st.booleans(), FLAGS, st.integers(-3, 3), st.integers(-3, 3),
                st.sampled_from([0, 0, 1, 100, 1448]), st.sampled_from([65535, 0]),
                st.sampled_from([0, 10**6, 61 * 10**9, 301 * 10**9, -5 * 10**9]),
                st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.lists(SEG, min_size=1, max_size=40), ISNS, ISNS,
       st.sampled_from([(40000, 80), (80, 40000), (443, 80), (40000, 40001)]))
def test_one_instance_driven_directly(engine, steps, c_isn: int, s_isn: int,
                                      ports: tuple[int, int]) -> None:
    """Segments straight into one instance, as no tracker would route them (either
    direction, any flags, sequence numbers near each side's, the sender's side chosen
    freely): the summary after every segment."""
    book = AddressBook()
    a, b = ("10.0.0.1", ports[0]), ("fd00::2", ports[1])
    nxt = {True: c_isn, False: s_isn}
    ts = 1_700_000_000 * 10**9
    ws = WiresharkStreams()
    c = engine.PeerReplay()
    peers = None
    for i, (from_a, flags, dseq, dack, length, window, dt, claim) in enumerate(steps):
        src, dst = (a, b) if from_a else (b, a)
        ts += dt
        seq = (nxt[from_a] + dseq) & 0xFFFFFFFF
        ack = (nxt[not from_a] + dack) & 0xFFFFFFFF
        nxt[from_a] = (seq + length + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        seg = Segment(i + 1, ts, 4, src[0], src[1], dst[0], dst[1], seq, ack, flags, length,
                      window)
        row = (i + 1, ts, 4, book.key_text(src[0]), src[1], book.key_text(dst[0]), dst[1],
               seq, ack, flags, length, window, -1, -1, -1)
        assert c.segment(row) == ws.feed(seg)
        if peers is None:
            peers = Peers(seg, claim, ws)
            c.opened(7, row, claim)
        from_client = claim == from_a  # the claimed client is the first sender when claim
        peers.feed(seg, from_client)
        c.feed(7, row, from_client)
        problems = differences(f"segment {i}", 7, peers.summary(), to_summary(c.summary(7)))
        assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- scripted Zeek cases
def _handshake_data() -> Conv:
    cv = Conv(t=1000.0)
    cv.handshake()
    cv.c(0, 100)
    cv.s(ACK)
    cv.s(0, 200)
    cv.c(ACK)
    return cv


def _idle_then(who: str, gap_s: float) -> list[Segment]:
    cv = _handshake_data()
    cv.wait(gap_s)
    send = cv.c if who == "c" else cv.s
    other = cv.s if who == "c" else cv.c
    send(0, 50)
    other(ACK)
    send(FIN)
    other(FIN)
    send(ACK)
    return cv.segments


def _syn_retry_after_a_minute() -> list[Segment]:
    cv = Conv(t=1000.0)
    cv.c(SYN, ack=0)
    cv.wait(61)
    cv.c(SYN, ack=0, seq=1000)
    cv.s(SYN | ACK)
    cv.c(ACK)
    cv.c(FIN)
    cv.s(FIN)
    cv.c(ACK)
    return cv.segments


def _many_splits() -> list[Segment]:
    cv = _handshake_data()
    for i in range(5):
        cv.wait(301)
        (cv.c if i % 2 else cv.s)(0, 10)
    cv.c(RST, ack=0)
    return cv.segments


def _zero_windows_and_retransmissions() -> list[Segment]:
    cv = Conv()
    cv.handshake()
    cv.c(ACK, data=10)
    for _ in range(25):
        cv.c(ACK, data=10, seq=1001)
    zero = cv.s(ACK)._replace(window=0)
    cv.segments[-1] = zero
    for k in range(12):
        cv.segments.append(zero._replace(frame=zero.frame + k + 1, ts_ns=zero.ts_ns + k + 1))
    cv.s(FIN)
    cv.c(FIN)
    cv.s(ACK)
    return cv.segments


def _gaps_and_holes() -> list[Segment]:
    cv = Conv()
    cv.handshake()
    cv.c(ACK, data=100, lost="before")
    cv.c(ACK, data=100)
    cv.c(ACK, data=100, lost="before")
    cv.c(ACK, data=100)
    cv.s(ACK, ack=cv.client.snd_nxt)
    cv.c(FIN | RST, ack=0)
    return cv.segments


def _flips() -> list[Segment]:
    cv = Conv(server=Host("10.0.0.2", 40001, 900_000))
    syn = cv.c(SYN, ack=0)
    synack = cv.s(SYN | ACK)
    cv.segments[:] = [synack._replace(frame=1), syn._replace(frame=2, ts_ns=synack.ts_ns + 1)]
    cv2 = Conv(t=1_700_000_100.0)
    cv2.c(SYN, ack=0, lost="before")
    cv2.s(SYN | ACK)
    cv2.c(ACK)
    cv2.s(SYN | FIN, seq=900_001)
    return cv.segments + cv2.segments


def _partial_then_one_byte_acked() -> list[Segment]:
    """The server's bare ACK before its SYN-ACK marks the connection partial; both
    endpoints then establish, and the server acknowledges one byte the client never sent:
    Zeek's faked SYN octet of a partial connection, not a gap (``up_to <= 2``)."""
    cv = Conv()
    cv.c(SYN, ack=0)
    cv.s(ACK, ack=1001)
    cv.s(SYN | ACK, ack=1001)
    cv.s(ACK, ack=1002)
    return cv.segments


SCRIPTS = {
    "partial, one byte acknowledged": _partial_then_one_byte_acked,
    "idle six minutes, the client speaks": lambda: _idle_then("c", 360),
    "idle six minutes, the server speaks (flip)": lambda: _idle_then("s", 360),
    "idle exactly five minutes": lambda: _idle_then("c", 300 - 0.07 + 0.07),
    "idle just under five minutes": lambda: _idle_then("c", 299.9),
    "SYN retried after a minute": _syn_retry_after_a_minute,
    "five splits": _many_splits,
    "zero windows and retransmissions": _zero_windows_and_retransmissions,
    "content gaps": _gaps_and_holes,
    "flips": _flips,
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripted_zeek_cases(engine, name: str) -> None:
    assert compare(name, SCRIPTS[name]()) > 0


def test_a_split_is_compared(engine) -> None:
    """The scripts reach the inactivity splits (the comparison of zeek_later is not
    vacuous)."""
    rec = Recording()
    tracker = Tracker(Options(), rec)
    for s in _many_splits():
        tracker.feed(s)
    assert len(rec.instances[0].summary().zeek_later) == 5


# ---------------------------------------------------------------- the comparison itself
def test_a_difference_is_named() -> None:
    py = PeerSummary("SF", "ShADadFf", "client", 1, 2, 3, 0, [0])
    c = dataclasses.replace(py, zeek_history="ShADadF", tcp_streams=[0, 4])
    assert differences("x.pcap", 5, py, c) == [
        "x.pcap conn 5: zeek_history: Python 'ShADadFf', C 'ShADadF'",
        "x.pcap conn 5: tcp_streams: Python [0], C [0, 4]"]


# ---------------------------------------------------------------- one source of truth
def test_constants_are_the_python_ones(engine) -> None:
    k = engine.PeerReplay.constants()
    assert k["zeek_states"] == zeek_py.ENDPOINT_STATE_NAMES
    assert k["likely_server_ports"] == zeek_py.LIKELY_SERVER_PORTS
    assert k["too_large_seq_delta"] == zeek_py.TOO_LARGE_SEQ_DELTA
    assert k["tcp_inactivity_timeout_ns"] == zeek_py.TCP_INACTIVITY_TIMEOUT_NS
    assert k["handshake_inactivity_timeout_ns"] == zeek_py.HANDSHAKE_INACTIVITY_TIMEOUT_NS
    assert k["suricata_states"] == suricata_py.STATES
    # every conn_state the Python function can give is one the C knows
    seen = {zeek_py.conn_state(o, r, os_, rs, h)
            for o in range(7) for r in range(7) for os_ in (0, 1) for rs in (0, 1)
            for h in ("", "S", "SR", "^SaR", "ShR")}
    assert seen <= set(k["conn_states"])


# ---------------------------------------------------------------- hostile calls
ROW = (1, 10**18, 4, 1, 40000, 2, 80, 1000, 0, SYN, 0, 65535, -1, -1, -1)


def test_bad_rows_and_calls_are_errors(engine) -> None:
    c = engine.PeerReplay()
    for i, bad in ((7, -1), (7, 1 << 32), (8, 1 << 32), (10, -5), (4, 70000), (1, 1 << 63)):
        row = list(ROW)
        row[i] = bad
        with pytest.raises((ValueError, OverflowError)):
            c.segment(row)
    with pytest.raises(ValueError):
        c.segment(ROW[:14])
    with pytest.raises(KeyError):
        c.feed(3, ROW, True)
    with pytest.raises(KeyError):
        c.summary(3)
    c.opened(3, ROW, True)
    with pytest.raises(ValueError):
        c.opened(3, ROW, True)
    c.forget(3)
    c.forget(3)
    assert c.open == 0
    cols = [np.full(2, v, dtype=np.int64) for v in ROW]
    with pytest.raises(IndexError):
        c.play(cols, np.array([SEGMENT, 2, -1, 0], dtype=np.int64))
    with pytest.raises(ValueError):
        c.play(cols, np.array([9, 0, -1, 0], dtype=np.int64))
    with pytest.raises(ValueError):
        c.play(cols, np.array([SEGMENT, 0, -1], dtype=np.int64))
    with pytest.raises(TypeError):
        c.play(cols, np.array([SEGMENT, 0, -1, 0], dtype=np.int32))
    with pytest.raises(ValueError):
        c.play(cols[:3], np.array([SEGMENT, 0, -1, 0], dtype=np.int64))
    with pytest.raises(ValueError):
        c.play([*cols[:14], np.zeros(3, dtype=np.int64)],
               np.array([SEGMENT, 0, -1, 0], dtype=np.int64))
    streams = c.play(cols, np.array([SEGMENT, 0, -1, 0, OPENED, 0, 9, 1, FEED, 0, 9, 1,
                                     SEGMENT, 1, -1, 0, FEED, 1, 9, 0], dtype=np.int64))
    assert np.frombuffer(streams, dtype=np.int64).tolist() == [0, 0]
    # the same SYN from each side in turn: Python says the same
    seg = Segment(*ROW[:3], "0.0.0.1", ROW[4], "0.0.0.2", *ROW[6:])
    ws = WiresharkStreams()
    ws.feed(seg)
    py = Peers(seg, True, ws)
    py.feed(seg, True)
    ws.feed(seg)
    py.feed(seg, False)
    assert to_summary(c.summary(9)) == py.summary()
    assert py.summary().zeek_history == "Ss"


def test_many_instances_and_streams(engine) -> None:
    """The instance table and the conversation table grow (and forget shrinks the first)."""
    c = engine.PeerReplay()
    for i in range(5000):
        row = (i + 1, 10**18 + i, 4, i, 40000 + i % 7, 2, 80, 1000 + i, 0, SYN, 0, 65535,
               -1, -1, -1)
        assert c.segment(row) == i
        c.opened(i * 1_000_003, row, True)
        c.feed(i * 1_000_003, row, True)
    assert (c.open, c.streams) == (5000, 5000)
    for i in range(0, 5000, 2):
        c.forget(i * 1_000_003)
    assert c.open == 2500
    for i in range(1, 5000, 2):
        assert c.summary(i * 1_000_003)[6:8] == (i, [i])
