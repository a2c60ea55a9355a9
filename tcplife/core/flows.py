"""The flow table: which connection instance a segment goes to, and which are still open.

Owns: `FlowTable`, the two maps the tracker keeps: each 4-tuple (either direction) to its
current instance (`route`, the per-segment lookup), and each instance not yet ended to
itself by id (`open`, `__iter__`), which includes an instance superseded by a new one on
its 4-tuple while its old socket lives on (it is reached through the new instance's
``predecessor``, no longer through the 4-tuple). Port reuse is decided elsewhere
(`tcplife.core.evidence.is_new_incarnation`, the joint table `machine.REUSE`); this only
keeps the maps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from tcplife.core.connection import Connection

Key = tuple[str, int, str, int]


class FlowTable:
    """Connection instances by 4-tuple and by id."""

    __slots__ = ("_by_tuple", "_open", "route", "open")

    def __init__(self) -> None:
        self._by_tuple: dict[Key, Connection] = {}
        self._open: dict[int, Connection] = {}
        #: (src, sport, dst, dport) -> the current instance of that 4-tuple, or None (a
        #: bound ``dict.get``: this runs for every segment)
        self.route: Callable[[Key], Connection | None] = self._by_tuple.get
        #: conn_id -> the open instance, or None once it ended (a bound ``dict.get``)
        self.open: Callable[[int], Connection | None] = self._open.get

    def add(self, conn: Connection) -> None:
        """A new instance: the current one of its 4-tuple from now on, and open."""
        c, s = conn.client, conn.server
        self._by_tuple[(c.addr, c.port, s.addr, s.port)] = conn
        self._by_tuple[(s.addr, s.port, c.addr, c.port)] = conn
        self._open[conn.conn_id] = conn

    def unroute(self, conn: Connection) -> None:
        """Its 4-tuple no longer leads to it (a new instance replaced it, or it ended)."""
        c, s = conn.client, conn.server
        for key in ((c.addr, c.port, s.addr, s.port), (s.addr, s.port, c.addr, c.port)):
            if self._by_tuple.get(key) is conn:
                del self._by_tuple[key]

    def close(self, conn: Connection) -> None:
        """It ended: forget it."""
        self._open.pop(conn.conn_id, None)
        self.unroute(conn)

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[Connection]:
        """The open instances, in the order they started."""
        return iter(list(self._open.values()))
