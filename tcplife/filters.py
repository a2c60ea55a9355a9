"""Selecting rows of the public tables: by host, port, connection, state, anomaly kind and
time window, the filters a user of tshark or ``ss`` expects.

Owns: `Filter` and how each criterion applies to each table. A filter first chooses
*connections* (`Filter.conn_ids`); each table is then cut to those connections and, where
its rows carry a time, a state or a kind, to the rows that match. Knows nothing of click,
captures or output formats: DataFrames in, DataFrames out (same columns and dtypes,
always a DataFrame, empty when nothing matches).

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

import pandas as pd

from tcplife.states import ANOMALY_KINDS

__all__ = ["ANOMALY_KINDS", "Filter", "make_filter", "parse_host"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_host(text: str) -> Network:
    """An address or a CIDR network -> a network (an address is a /32 or /128).
    Raises ValueError for anything else."""
    return ipaddress.ip_network(text.strip(), strict=False)


def _in_networks(addresses: pd.Series, networks: tuple[Network, ...]) -> pd.Series:
    """Whether each address lies in one of the networks (addresses parsed once each)."""
    verdict: dict[str, bool] = {}
    for addr in pd.unique(addresses.dropna().astype(str)):
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            verdict[addr] = False
            continue
        verdict[addr] = any(ip.version == net.version and ip in net for net in networks)
    return addresses.astype(object).map(lambda a: verdict.get(str(a), False)).astype(bool)


@dataclass(frozen=True)
class Filter:
    """What to keep; an empty criterion keeps everything."""

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

    def selected_ids(self, connections: pd.DataFrame) -> set[int]:
        """The conn_ids of the connections the filter keeps."""
        return set(connections.loc[self.connection_mask(connections), "conn_id"].tolist())

    def connection_mask(self, connections: pd.DataFrame) -> pd.Series:
        keep = pd.Series(True, index=connections.index)
        if self.hosts:
            keep &= (_in_networks(connections["client_addr"], self.hosts)
                     | _in_networks(connections["server_addr"], self.hosts))
        if self.ports:
            keep &= (connections["client_port"].isin(self.ports)
                     | connections["server_port"].isin(self.ports))
        if self.conn_ids:
            keep &= connections["conn_id"].isin(self.conn_ids)
        if self.states:
            keep &= (connections["client_state"].astype(object).isin(self.states)
                     | connections["server_state"].astype(object).isin(self.states))
        if self.kinds:
            wanted = set(self.kinds)
            keep &= connections["anomalies"].map(lambda ks: bool(wanted & set(ks or ())))
        if self.until_ns is not None:
            keep &= connections["first_ts_ns"] <= self.until_ns
        if self.since_ns is not None:
            keep &= connections["last_ts_ns"] >= self.since_ns
        return keep.astype(bool)

    def _window(self, frame: pd.DataFrame) -> pd.Series:
        keep = pd.Series(True, index=frame.index)
        if self.since_ns is not None:
            keep &= frame["ts_ns"] >= self.since_ns
        if self.until_ns is not None:
            keep &= frame["ts_ns"] <= self.until_ns
        return keep

    def connections(self, connections: pd.DataFrame) -> pd.DataFrame:
        if self.empty:
            return connections
        return connections[self.connection_mask(connections)].reset_index(drop=True)

    def transitions(self, transitions: pd.DataFrame, connections: pd.DataFrame) -> pd.DataFrame:
        """Transitions of the kept connections, in the window, entering one of ``states``
        (a state filter here asks for the moments a side entered the state, so it does not
        also require the connection to end in it)."""
        if self.empty:
            return transitions
        ids = Filter(self.hosts, self.ports, self.conn_ids, (), self.kinds,
                     self.since_ns, self.until_ns).selected_ids(connections)
        keep = transitions["conn_id"].isin(ids) & self._window(transitions)
        if self.states:
            keep &= transitions["to_state"].astype(object).isin(self.states)
        return transitions[keep.astype(bool)].reset_index(drop=True)

    def anomalies(self, anomalies: pd.DataFrame, connections: pd.DataFrame) -> pd.DataFrame:
        if self.empty:
            return anomalies
        keep = anomalies["conn_id"].isin(self.selected_ids(connections)) & \
            self._window(anomalies)
        if self.kinds:
            keep &= anomalies["kind"].astype(object).isin(self.kinds)
        return anomalies[keep.astype(bool)].reset_index(drop=True)

    def snapshot(self, snapshot: pd.DataFrame, connections: pd.DataFrame) -> pd.DataFrame:
        """A `state_at` snapshot: sockets of the kept connections in one of ``states``
        (the time window does not apply: the snapshot is one instant)."""
        if self.empty:
            return snapshot
        ids = Filter(self.hosts, self.ports, self.conn_ids, (), self.kinds).selected_ids(
            connections)
        keep = snapshot["conn_id"].isin(ids)
        if self.states:
            keep &= snapshot["state"].astype(object).isin(self.states)
        return snapshot[keep.astype(bool)].reset_index(drop=True)


def make_filter(hosts: Iterable[str] = (), ports: Iterable[int] = (),
                conn_ids: Iterable[int] = (), states: Iterable[str] = (),
                kinds: Iterable[str] = (), since_ns: int | None = None,
                until_ns: int | None = None) -> Filter:
    """A `Filter` from plain values (host texts parsed with `parse_host`)."""
    return Filter(tuple(parse_host(h) for h in hosts), tuple(int(p) for p in ports),
                  tuple(int(c) for c in conn_ids), tuple(s.upper() for s in states),
                  tuple(kinds), since_ns, until_ns)
