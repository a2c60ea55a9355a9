"""Selecting rows of the public tables: by host, port, connection, state, anomaly kind and
time window, the filters a user of tshark or ``ss`` expects.

Owns: `Filter` and how each criterion applies to each table. A filter first chooses
*connections* (`Filter.conn_ids`); each table is then cut to those connections and, where
its rows carry a time, a state or a kind, to the rows that match. Knows nothing of click,
captures or output formats: a table in, the same kind of table out -- `tcplife.output.rows.Rows`
(the command line, without pandas) or a DataFrame (same columns and dtypes), empty when
nothing matches.

How each criterion reads:

- ``hosts``: an address or a network (``10.0.0.0/8``, ``fd00::/16``) at either end.
- ``ports``: a port at either end.
- ``conn_ids``: those connection instances.
- ``states``: a connection one of whose sides *ends* in one of the states (`connections`,
  `anomalies`); in `transitions` the rows that enter one of them; in a `state_at`
  snapshot the sockets in one of them.
- ``kinds``: connections with an anomaly of one of those kinds; `anomalies` rows of them.
- ``since_ns`` / ``until_ns``: connections alive at some instant of the window (first
  packet not after ``until``, last packet not before ``since``); rows with a time inside it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tcplife.core.states import ANOMALY_KINDS
from tcplife.output.rows import column_of, select

__all__ = ["ANOMALY_KINDS", "Filter", "make_filter", "parse_host"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_host(text: str) -> Network:
    """An address or a CIDR network -> a network (an address is a /32 or /128).
    Raises ValueError for anything else."""
    return ipaddress.ip_network(text.strip(), strict=False)


def _in_networks(addresses: list[Any], networks: tuple[Network, ...]) -> list[bool]:
    """Whether each address lies in one of the networks (addresses parsed once each)."""
    verdict: dict[Any, bool] = {}
    out = []
    for addr in addresses:
        found = verdict.get(addr)
        if found is None:
            found = False
            if addr is not None:
                try:
                    ip = ipaddress.ip_address(str(addr))
                    found = any(ip.version == net.version and ip in net for net in networks)
                except ValueError:
                    pass
            verdict[addr] = found
        out.append(found)
    return out


def _and(keep: list[bool], more: Iterable[bool]) -> list[bool]:
    return [a and b for a, b in zip(keep, more, strict=True)]


@dataclass(frozen=True)
class Filter:
    """What to keep; an empty criterion keeps everything. Tables are `Rows` or
    DataFrames; each method returns the kind it was given."""

    hosts: tuple[Network, ...] = ()
    ports: tuple[int, ...] = ()
    conn_ids: tuple[int, ...] = ()
    states: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    since_ns: int | None = None
    until_ns: int | None = None

    @property
    def empty(self) -> bool:
        return not (self.hosts or self.ports or self.conn_ids or self.states or self.kinds
                    or self.since_ns is not None or self.until_ns is not None)

    def selected_ids(self, connections: Any) -> set[int]:
        """The conn_ids of the connections the filter keeps."""
        return {int(c) for c, k in zip(column_of(connections, "conn_id"),
                                       self.connection_mask(connections), strict=True) if k}

    def connection_mask(self, connections: Any) -> list[bool]:
        col = _columns(connections)
        keep = [True] * len(connections)
        if self.hosts:
            keep = _and(keep, (a or b for a, b in zip(
                _in_networks(col("client_addr"), self.hosts),
                _in_networks(col("server_addr"), self.hosts), strict=True)))
        if self.ports:
            ports = set(self.ports)
            keep = _and(keep, (a in ports or b in ports for a, b in zip(
                col("client_port"), col("server_port"), strict=True)))
        if self.conn_ids:
            ids = set(self.conn_ids)
            keep = _and(keep, (c in ids for c in col("conn_id")))
        if self.states:
            states = set(self.states)
            keep = _and(keep, (a in states or b in states for a, b in zip(
                col("client_state"), col("server_state"), strict=True)))
        if self.kinds:
            wanted = set(self.kinds)
            keep = _and(keep, (bool(wanted & set(ks or ())) for ks in col("anomalies")))
        if self.until_ns is not None:
            keep = _and(keep, (t <= self.until_ns for t in col("first_ts_ns")))
        if self.since_ns is not None:
            keep = _and(keep, (t >= self.since_ns for t in col("last_ts_ns")))
        return keep

    def _window(self, table: Any) -> list[bool]:
        keep = [True] * len(table)
        if self.since_ns is None and self.until_ns is None:
            return keep
        low = self.since_ns if self.since_ns is not None else -(1 << 63)
        high = self.until_ns if self.until_ns is not None else 1 << 63
        return [low <= t <= high for t in column_of(table, "ts_ns")]

    def connections(self, connections: Any) -> Any:
        if self.empty:
            return connections
        return select(connections, self.connection_mask(connections))

    def transitions(self, transitions: Any, connections: Any) -> Any:
        """Transitions of the kept connections, in the window, entering one of ``states``
        (a state filter here asks for the moments a side entered the state, so it does not
        also require the connection to end in it)."""
        if self.empty:
            return transitions
        ids = Filter(self.hosts, self.ports, self.conn_ids, (), self.kinds,
                     self.since_ns, self.until_ns).selected_ids(connections)
        keep = _and([c in ids for c in column_of(transitions, "conn_id")],
                    self._window(transitions))
        if self.states:
            states = set(self.states)
            keep = _and(keep, (s in states for s in column_of(transitions, "to_state")))
        return select(transitions, keep)

    def anomalies(self, anomalies: Any, connections: Any) -> Any:
        if self.empty:
            return anomalies
        ids = self.selected_ids(connections)
        keep = _and([c in ids for c in column_of(anomalies, "conn_id")],
                    self._window(anomalies))
        if self.kinds:
            kinds = set(self.kinds)
            keep = _and(keep, (k in kinds for k in column_of(anomalies, "kind")))
        return select(anomalies, keep)

    def snapshot(self, snapshot: Any, connections: Any) -> Any:
        """A `state_at` snapshot: sockets of the kept connections in one of ``states``
        (the time window does not apply: the snapshot is one instant)."""
        if self.empty:
            return snapshot
        ids = Filter(self.hosts, self.ports, self.conn_ids, (), self.kinds).selected_ids(
            connections)
        keep = [c in ids for c in column_of(snapshot, "conn_id")]
        if self.states:
            states = set(self.states)
            keep = _and(keep, (s in states for s in column_of(snapshot, "state")))
        return select(snapshot, keep)


def _columns(table: Any) -> Any:
    """``name -> column_of(table, name)``, each column read once."""
    cache: dict[str, list[Any]] = {}

    def col(name: str) -> list[Any]:
        if name not in cache:
            cache[name] = column_of(table, name)
        return cache[name]

    return col


def make_filter(hosts: Iterable[str] = (), ports: Iterable[int] = (),
                conn_ids: Iterable[int] = (), states: Iterable[str] = (),
                kinds: Iterable[str] = (), since_ns: int | None = None,
                until_ns: int | None = None) -> Filter:
    """A `Filter` from plain values (host texts parsed with `parse_host`)."""
    return Filter(tuple(parse_host(h) for h in hosts), tuple(int(p) for p in ports),
                  tuple(int(c) for c in conn_ids), tuple(s.upper() for s in states),
                  tuple(kinds), since_ns, until_ns)
