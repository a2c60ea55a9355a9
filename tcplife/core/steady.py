"""A steady connection as the fast path sees it: a public view, and the rule of what
changes nothing.

Owns: when a connection is *steady* (both sides ESTABLISHED, no FIN either way, the
handshake's bookkeeping done, the peer replays quiet: `Steady.of`); the view `Steady` the
fast path works through (the two `Endpoint`s, the connection's counters through `commit`,
and ``peers``, the per-connection peer recorders, opaque here); and the rule, written
once, of which segment of a steady connection changes nothing but counters
(`changes_nothing`).

`Tracker.feed` applied to a segment for which `changes_nothing` holds emits no event and
changes only counters: the sender's sequence space, bytes, highest acknowledgment, window,
last segment and packet count, and the connection's (`Steady.commit`). The fast path
(tcplife.engines.fastpath, outside the core) applies runs of such segments by this rule;
tests/test_fastpath.py holds it to `Tracker.feed`, and the fast path's vectorised form of
the rule to `changes_nothing`, row by row. Knows nothing of numpy, batches or captures.
"""

from __future__ import annotations

from typing import Protocol

from tcplife.core.endpoint import Endpoint
from tcplife.core.segment import ACK, FIN, RST, SYN
from tcplife.core.states import ESTABLISHED
from tcplife.peers import Peers

#: Identical segments from one side closer than this are one packet captured twice.
DUPLICATE_NS = 100_000

MASK32 = (1 << 32) - 1
HALF = 1 << 31
#: the flags of a segment the rule considers: ACK, and none of SYN, FIN, RST
_FLAGS = SYN | FIN | RST | ACK


class SteadyConnection(Protocol):
    """What `Steady` reads and writes of a tracker's connection."""

    client: Endpoint
    server: Endpoint
    predecessor: object
    peers: Peers
    packets: int
    last_ts: int
    last_frame: int


class Steady:
    """A steady connection, for the fast path: its two sides (``client``, ``server``,
    read and written), ``peers`` (the per-connection peer recorders, which the fast path
    tells what it absorbed) and its counters, read as `last_ts` and moved by `commit`."""

    __slots__ = ("_conn", "client", "peers", "server")

    def __init__(self, conn: SteadyConnection) -> None:
        self._conn = conn
        self.client = conn.client
        self.server = conn.server
        self.peers = conn.peers

    @classmethod
    def of(cls, conn: SteadyConnection) -> Steady | None:
        """The view of ``conn`` if it is steady, where an in-order ACK or data segment
        changes nothing but counters: both sides ESTABLISHED, no FIN sent or received,
        both sides' sequence space and acknowledgment known, the round trip measured if
        there was a handshake to measure it on, no previous instance of the 4-tuple still
        alive, and the peer recorders quiet (`Peers.quiet`). Else None."""
        if conn.predecessor is not None:
            return None
        c, s = conn.client, conn.server
        if c.state is not ESTABLISHED or s.state is not ESTABLISHED:
            return None
        for a, b in ((c, s), (s, c)):
            if a.fin_seq is not None or a.fin_seg is not None or a.got_fin \
                    or a.snd_nxt is None or a.max_ack is None \
                    or a.rtt_ns is None and b.first_synack_ns is not None:
                return None
        if not conn.peers.quiet(c.snd_nxt, s.snd_nxt, c.max_ack, s.max_ack):
            return None
        return cls(conn)

    @property
    def last_ts(self) -> int:
        """The latest time a segment of the connection showed (ns)."""
        return self._conn.last_ts

    def commit(self, packets: int, last_ts: int, last_frame: int) -> None:
        """``packets`` more segments were counted, the latest at ``last_ts``
        (if later than before), the last in capture order frame ``last_frame``."""
        conn = self._conn
        conn.packets += packets
        if last_ts > conn.last_ts:
            conn.last_ts = last_ts
        conn.last_frame = last_frame


def changes_nothing(a: Endpoint, b: Endpoint, last_ts: int, idle_ns: int, ts: int,
                    key: tuple[int, int, int, int, int]) -> bool:
    """Does a segment from ``a`` to ``b`` of a steady connection (`Steady.of`) change
    nothing but counters? ``key``: the segment's (seq, ack, flags, payload length,
    window), as `Endpoint.last_key` holds them; ``ts``: its time; ``last_ts``: the
    connection's latest time before it; ``idle_ns``: the peer recorders' inactivity limit
    (`Peers.inactivity_ns`). True when the segment

    - carries ACK and none of SYN, FIN, RST;
    - comes less than ``idle_ns`` after the connection's previous segment (Zeek's
      inactivity timer would start a new Zeek connection);
    - is not ``a``'s previous segment again within `DUPLICATE_NS` (a capture duplicate);
    - is not keep-alive shaped (at most one byte at SND.NXT - 1, RFC 9293 3.8.4);
    - offers a window (a zero window is something Zeek records);
    - if it carries data, starts exactly at ``a``'s SND.NXT and reaches beyond the
      highest data byte ``a`` sent (not a retransmission, no hole, nothing for Zeek's
      reassembler to hold); if not, does not claim sequence space beyond SND.NXT;
    - acknowledges nothing beyond what ``b`` sent (an ACK of data the capture missed).

    Sequence numbers compare modulo 2**32 (`tcplife.core.seq`), written out here because
    this runs once per absorbed segment."""
    seq, ack, flags, plen, win = key
    if flags & _FLAGS != ACK or ts - last_ts >= idle_ns or not win:
        return False
    if key == a.last_key and ts - a.last_ns <= DUPLICATE_NS:  # type: ignore[operator]
        return False
    snd_nxt: int = a.snd_nxt  # type: ignore[assignment]
    if plen <= 1 and (snd_nxt - seq) & MASK32 == 1:  # keep-alive shape
        return False
    if 0 < (ack - b.snd_nxt) & MASK32 < HALF:  # type: ignore[operator]
        return False
    if not plen:
        return not 0 < (seq - snd_nxt) & MASK32 < HALF
    if seq != snd_nxt:
        return False
    hi = a.data_hi
    return hi is None or 0 < (seq + plen - hi) & MASK32 < HALF
