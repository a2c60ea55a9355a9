"""A steady connection as the fast path sees it: a public view, and the rule of what
changes nothing.

Owns: when a connection is *steady* (both sides ESTABLISHED, no FIN either way, the
handshake's bookkeeping done, its watcher quiet: `Steady.of`); the view `Steady` the fast
path works through (the two `Endpoint`s, the connection's counters through `commit`, and
``peers``, the connection's watcher, opaque here but for `BulkWatcher`); and the rule,
written once, of which segment of a steady connection changes nothing but counters
(`changes_nothing`). `tcplife.core.rules` is the tracker's own path for every segment; a
segment for which `changes_nothing` holds goes through it without a decision taken.

`Tracker.feed` applied to a segment for which `changes_nothing` holds emits no event and
changes only counters: the sender's sequence space, bytes, highest acknowledgment, window,
last segment and packet count, and the connection's (`Steady.commit`). The fast path
(tcplife.engines.fastpath, outside the core) applies runs of such segments by this rule;
tests/test_fastpath.py holds it to `Tracker.feed`, and the fast path's vectorised form of
the rule to `changes_nothing`, row by row. Knows nothing of numpy, batches or captures.
"""

from __future__ import annotations

from typing import Protocol

from tcplife.core.connection import Connection
from tcplife.core.endpoint import Endpoint
from tcplife.core.rules import DUPLICATE_NS
from tcplife.core.segment import ACK, FIN, RST, SYN
from tcplife.core.states import ESTABLISHED

MASK32 = (1 << 32) - 1
HALF = 1 << 31
#: the flags of a segment the rule considers: ACK, and none of SYN, FIN, RST
_FLAGS = SYN | FIN | RST | ACK


class BulkWatcher(Protocol):
    """What a connection's watcher (`tcplife.core.observe.Watcher`) offers the fast path
    besides ``feed``: segments absorbed in bulk are not fed to it one by one, so it says
    when that may happen and is told what happened (`tcplife.peers.Peers` implements it).
    A connection whose watcher does not is never steady."""

    def quiet(self, client_nxt: int | None, server_nxt: int | None,
              client_max_ack: int | None, server_max_ack: int | None) -> bool:
        """May a run of in-order ACK/data segments be absorbed without ``feed``?"""

    def fast_rows(self) -> tuple[tuple[bool, bool], tuple[bool, bool]]:
        """[from_client][has_payload] -> False while such a segment must still be told
        (`first_letter`)."""

    def first_letter(self, from_client: bool, data: bool) -> None:
        """An absorbed segment is its side's first ACK (without payload) or data."""

    def inactivity_ns(self) -> int:
        """A run must stop at a segment this long or longer after the previous one."""

    def absorbed(self, client_nxt: int, server_nxt: int, client_max_ack: int,
                 server_max_ack: int, last_ns: int, client_pkts: int = 0,
                 server_pkts: int = 0) -> None:
        """A run was absorbed: the sides' maxima and last time after it, and how many
        packets of each side it held."""


class _Unwatched:
    """The `BulkWatcher` of a connection nothing watches."""

    def quiet(self, *_: int | None) -> bool:
        return True

    def fast_rows(self) -> tuple[tuple[bool, bool], tuple[bool, bool]]:
        return (True, True), (True, True)

    def first_letter(self, from_client: bool, data: bool) -> None:
        pass

    def inactivity_ns(self) -> int:
        return 1 << 62

    def absorbed(self, *_: int) -> None:
        pass


_UNWATCHED = _Unwatched()


class Steady:
    """A steady connection, for the fast path: its two sides (``client``, ``server``,
    read and written), ``peers`` (what watches it, opaque to the core: the fast path tells
    it what it absorbed) and its counters, read as `last_ts` and moved by `commit`."""

    __slots__ = ("_conn", "client", "peers", "server")

    def __init__(self, conn: Connection, peers: BulkWatcher) -> None:
        self._conn = conn
        self.client = conn.client
        self.server = conn.server
        self.peers = peers

    @classmethod
    def of(cls, conn: Connection) -> Steady | None:
        """The view of ``conn`` if it is steady, where an in-order ACK or data segment
        changes nothing but counters: both sides ESTABLISHED, no FIN sent or received,
        both sides' sequence space and acknowledgment known, the round trip measured if
        there was a handshake to measure it on, no previous instance of the 4-tuple still
        alive, and its watcher a quiet `BulkWatcher` (or none). Else None."""
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
        peers = conn.peers
        if peers is None:
            return cls(conn, _UNWATCHED)
        quiet = getattr(peers, "quiet", None)
        if quiet is None or not quiet(c.snd_nxt, s.snd_nxt, c.max_ack, s.max_ack):
            return None
        return cls(conn, peers)  # type: ignore[arg-type]

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
    (`BulkWatcher.inactivity_ns`). True when the segment

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
