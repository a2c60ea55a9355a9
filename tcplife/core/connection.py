"""One incarnation of a 4-tuple as the tracker keeps it, and what it is judged by.

Owns: `Connection` (both `Endpoint`s, the instance's counters and flags, the observer's
watcher, the previous instance of a reused 4-tuple while its socket lives) and
`judged_by` (its transitions in (ts_ns, tid) order, the retracted ones left out, and its
notes). Plain data: the tracker and the rules change it.
"""

from __future__ import annotations

from tcplife.core.endpoint import Endpoint
from tcplife.core.events import Oddity, Transition
from tcplife.core.observe import Watcher
from tcplife.core.segment import Segment


class Connection:
    """One incarnation of a 4-tuple, with both endpoints."""

    __slots__ = ("conn_id", "ip_version", "client", "server", "first_ts", "last_ts",
                 "first_frame", "last_frame", "packets", "role_inferred", "mid_stream",
                 "refused", "rst_closed", "timed_out", "evict_gen", "finished", "predecessor",
                 "peers", "notes")

    def __init__(self, conn_id: int, ip_version: int, client: Endpoint, server: Endpoint,
                 seg: Segment, role_inferred: bool, mid_stream: bool,
                 peers: Watcher | None) -> None:
        self.conn_id = conn_id
        self.ip_version = ip_version
        self.client = client
        self.server = server
        self.first_ts = seg.ts_ns
        self.last_ts = seg.ts_ns
        self.first_frame = seg.frame
        self.last_frame = seg.frame
        self.packets = 0
        self.role_inferred = role_inferred
        self.mid_stream = mid_stream
        self.refused = False
        self.rst_closed = False
        self.timed_out = False
        self.evict_gen = 0
        self.finished = False
        #: the previous instance of a reused 4-tuple, while its old socket still lives
        self.predecessor: Connection | None = None
        #: what the observer keeps about it (`Observer.opened`): the peers' replays
        self.peers = peers
        #: the `Oddity` notes emitted about it (None until the first)
        self.notes: list[Oddity] | None = None

    def peer(self, ep: Endpoint) -> Endpoint:
        return self.server if ep is self.client else self.client


def transition_order(t: Transition) -> tuple[int, int]:
    return t.ts_ns, t.tid


def judged_by(conn: Connection) -> tuple[list[Transition], list[Oddity]]:
    """A connection's transitions (its sides' histories: the retracted ones left out), in
    (ts_ns, tid) order, and its notes."""
    trans = conn.client.history + conn.server.history
    trans.sort(key=transition_order)
    return trans, list(conn.notes or ())
