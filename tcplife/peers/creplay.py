"""The compiled peers' replays (``tcplife._engine.PeerReplay``, engine/peers*.c) seen from
Python: what the tests that hold them to `tcplife.peers` need.

Owns: `Recording`, a `PeerObserver` that records every call the tracker makes on the peers
(``segment``, ``opened``, each instance's ``feed``) as ``(op, row, conn_id, flag)`` quads
over the segments' rows, and each segment's ``tcp.stream``, while it lets the Python
replays run as usual (its watchers offer no fast path, so the tracker feeds them every
segment); `replay`, the same calls played into the C replays; and `to_summary`, a C
summary tuple as the `PeerSummary` Python makes.

Knows nothing of captures: rows are numbered in the order segments reach the tracker, and
the caller gives their columns (`tcplife.capture.columns.Batch.COLUMNS`, addresses as
`AddressBook` keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tcplife.core.segment import Segment
from tcplife.peers import PeerObserver, Peers, PeerSummary
from tcplife.peers.zeek import ZeekRecord

__all__ = ["SEGMENT", "OPENED", "FEED", "Recording", "replay", "to_summary"]

#: the op codes of `PeerReplay.play`
SEGMENT, OPENED, FEED = 0, 1, 2


class _Watched:
    """One instance's Python `Peers`, its feeds recorded (no ``quiet``: never steady)."""

    __slots__ = ("recording", "conn_id", "peers")

    def __init__(self, recording: Recording, conn_id: int, peers: Peers) -> None:
        self.recording, self.conn_id, self.peers = recording, conn_id, peers

    def feed(self, seg: Segment, from_client: bool) -> None:
        rec = self.recording
        assert seg is rec.last, "fed a segment other than the one being handled"
        rec.ops += (FEED, rec.row, self.conn_id, int(from_client))
        self.peers.feed(seg, from_client)

    def summary(self) -> PeerSummary:
        return self.peers.summary()


class Recording(PeerObserver):
    """The peers as the engines run them, every call recorded in `ops`; `instances` holds
    each conn_id's Python `Peers`."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[int] = []
        self.row = -1  #: the row of the segment being handled
        self.last: Segment | None = None
        self.instances: dict[int, Peers] = {}
        self.streams: list[int] = []  #: the tcp.stream of each segment, in order

    def segment(self, seg: Segment) -> None:
        self.row += 1
        self.last = seg
        self.ops += (SEGMENT, self.row, -1, 0)
        self.streams.append(self.wireshark.feed(seg))

    def opened(self, conn_id: int, seg: Segment, sender_is_client: bool) -> _Watched:
        assert seg is self.last, "opened on a segment other than the one being handled"
        self.ops += (OPENED, self.row, conn_id, int(sender_is_client))
        peers = self.instances[conn_id] = super().opened(conn_id, seg, sender_is_client)
        return _Watched(self, conn_id, peers)


def replay(columns: Sequence[np.ndarray],
           ops: Sequence[int] | np.ndarray) -> tuple[Any, np.ndarray]:
    """A ``tcplife._engine.PeerReplay`` that was given the recorded calls ``ops`` over the
    rows of ``columns`` (the 15 `Batch` columns), and the tcp.stream it gave each
    ``segment`` call."""
    from tcplife import _engine  # type: ignore[attr-defined]

    c = _engine.PeerReplay()
    streams = c.play([np.ascontiguousarray(col, dtype=np.int64) for col in columns],
                     np.asarray(ops, dtype=np.int64))
    return c, np.frombuffer(streams, dtype=np.int64)


def to_summary(t: tuple) -> PeerSummary:
    """``PeerReplay.summary``'s tuple as a `PeerSummary`."""
    (state, history, orig, orig_bytes, resp_bytes, duration, stream, streams, suricata,
     later) = t
    return PeerSummary(
        zeek_conn_state=state, zeek_history=history, zeek_orig=orig,
        zeek_orig_bytes=orig_bytes, zeek_resp_bytes=resp_bytes, zeek_duration_ns=duration,
        tcp_stream=stream, tcp_streams=list(streams), suricata_state=suricata,
        zeek_later=tuple(ZeekRecord(*r) for r in later))
