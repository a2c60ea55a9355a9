"""``tcp_stream`` against Wireshark itself: tshark reads every capture in sample_pcaps/ and
../shared/corpus/pcaps, and tcplife's column must give each connection the tcp.stream of
its first frame, know every tcp.stream tshark numbers, and (where the instance and the
stream hold the same packets, ``tcp_stream_match == "same"``) count the stream's frames
and agree with its ``tcp.completeness`` flags (1 SYN, 2 SYN-ACK, 4 ACK, 8 data, 16 FIN,
32 RST) where Wireshark tracked them: a refused connection shows RST and no SYN-ACK, an
unanswered one no SYN-ACK, an RST close the RST bit, a FIN tcplife saw sent the FIN bit;
an RST bit means tcplife saw an RST sent, a data bit that it counted payload. Needs
tshark (CI installs it: .ci/run); skipped, saying so, where it is absent.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

import tcplife
from tcplife.core.segment import ACK, RST, SYN, Segment
from tcplife.peers.wireshark import WiresharkStreams

from needs import CORPUS_PCAPS, corpus_present, needs

ROOT = Path(__file__).resolve().parents[1]
CORPUS = CORPUS_PCAPS
SAMPLES = sorted((ROOT / "sample_pcaps").glob("*.pcap*"))
CAPTURES = SAMPLES + (sorted(CORPUS.glob("*.pcap*")) if corpus_present() else [])
TSHARK = shutil.which("tshark")
needs_tshark = needs("tshark")

SYN_BIT, SYNACK_BIT, DATA_BIT, FIN_BIT, RST_BIT = 1, 2, 8, 16, 32


def _tshark(path: Path) -> tuple[dict[int, int], Counter[int], dict[int, int]]:
    """frame -> tcp.stream, frames per stream, final tcp.completeness per stream."""
    out = subprocess.run(
        [TSHARK, "-2", "-r", str(path), "-Y", "tcp", "-T", "fields", "-e", "frame.number",
         "-e", "tcp.stream", "-e", "tcp.completeness"],
        capture_output=True, text=True, check=True).stdout  # type: ignore[list-item]
    stream_of: dict[int, int] = {}
    frames: Counter[int] = Counter()
    completeness: dict[int, int] = {}
    for line in out.splitlines():
        frame, stream, comp = (line.split("\t") + ["", ""])[:3]
        if not stream:
            continue
        stream_of[int(frame)] = int(stream)
        frames[int(stream)] += 1
        completeness[int(stream)] = int(comp or 0)  # two passes: the final value
    return stream_of, frames, completeness


@needs_tshark
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_tcp_stream_matches_tshark(path: Path) -> None:
    stream_of, frames, completeness = _tshark(path)
    result = tcplife.analyze(path)
    conns = result.connections
    odd = result.oddities
    sent_fin = set(result.transitions[result.transitions.event == "send FIN"].conn_id)
    sent_rst = set(odd[odd.name == "rst_sent"].conn_id)
    assert list(conns.tcp_stream) == [stream_of[f] for f in conns.first_frame]
    assert {int(s) for streams in conns.tcp_streams for s in streams.split(",")} \
        == set(frames)
    for c in conns[conns.tcp_stream_match == "same"].itertuples():
        comp = completeness[c.tcp_stream]
        where = (path.name, c.conn_id, c.tcp_stream, comp)
        assert frames[c.tcp_stream] == c.packets, where
        if not comp & SYN_BIT:
            # Wireshark tracks completeness only for conversations it saw open with a
            # SYN (a conversation it expected, e.g. FTP data, lacks the bit too).
            continue
        if c.close_kind == "refused":
            assert comp & RST_BIT and not comp & SYNACK_BIT, where
        if c.close_kind == "unanswered":
            assert not comp & SYNACK_BIT, where
        if c.close_kind == "rst":
            assert comp & RST_BIT, where
        if c.conn_id in sent_fin:
            assert comp & FIN_BIT, where
        if comp & RST_BIT:
            assert c.conn_id in sent_rst, where
        if comp & DATA_BIT:  # (Wireshark does not count data on a SYN or SYN-ACK)
            assert c.client_bytes + c.server_bytes, where


@needs("tshark", corpus=True)
def test_every_capture_was_compared() -> None:
    """The corpus is there (the comparison above is not vacuous)."""
    assert len(SAMPLES) > 50 and len(CAPTURES) - len(SAMPLES) > 50


def test_where_tcplife_and_wireshark_split_differently() -> None:
    """The old socket of a reused 4-tuple answering the new SYN (challenge ACK, or a
    TIME_WAIT's ACK, then the RST that kills it), and a split handshake: nowhere else
    (docs/peers.md)."""
    differ = {}
    for path in CAPTURES:
        c = tcplife.analyze(path).connections
        odd = c[c.tcp_stream_match != "same"]
        if len(odd):
            differ[path.name] = [(int(r.conn_id), str(r.tcp_stream_match))
                                 for r in odd.itertuples()]
    reuse = [(0, "split+merged"), (1, "merged")]
    expected = {f"{name}.{vantage}.pcap": reuse
                for name in ("port_reuse_close_wait", "port_reuse_time_wait_refused")
                for vantage in ("client", "server")}
    if corpus_present():
        expected["sv__tcp-split-handshake-02-5whs.pcap"] = reuse
    assert differ == expected


# Wireshark's rule on scripted segments (no tshark needed).

def _seg(frame: int, src: str, sport: int, dst: str, dport: int, flags: int, seq: int,
         ack: int = 0) -> Segment:
    return Segment(frame, frame * 1000, 4, src, sport, dst, dport, seq, ack, flags, 0)


def test_syn_with_a_new_isn_starts_a_new_stream() -> None:
    w = WiresharkStreams()
    a, b = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    assert w.feed(_seg(1, *a, *b, SYN, 100)) == 0
    assert w.feed(_seg(2, *b, *a, SYN | ACK, 500, 101)) == 0
    assert w.feed(_seg(3, *a, *b, SYN, 100)) == 0  # retransmission: same ISN
    assert w.feed(_seg(4, *a, *b, SYN, 9000)) == 1  # port reuse
    assert w.feed(_seg(5, *b, *a, SYN | ACK, 7000, 9001)) == 1  # a SYN-ACK never splits
    assert w.feed(_seg(6, *b, *a, SYN | ACK, 7777, 9001)) == 1
    assert w.feed(_seg(7, "10.0.0.3", 1, *b, SYN, 1)) == 2  # another 4-tuple


def test_base_from_the_first_packet_or_the_peers_ack() -> None:
    w = WiresharkStreams()
    a, b = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    assert w.feed(_seg(1, *a, *b, ACK, 100, 700)) == 0  # mid-stream: bases 100 and 699
    assert w.feed(_seg(2, *b, *a, SYN, 699)) == 0  # its own base: no split
    assert w.feed(_seg(3, *a, *b, SYN, 99)) == 1  # not its base (100): split
    assert w.feed(_seg(4, *a, *b, RST, 5)) == 1
