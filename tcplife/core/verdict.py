"""The verdict on a connection instance: how it closed, and its record.

Owns: `close_kind` (the ``close_kind`` column: fin, rst, refused, unanswered, incomplete,
open, timeout) and `record` (a `ConnectionRecord` of the instance as it stands). Pure
functions of a `Connection`.
"""

from __future__ import annotations

from tcplife.core.connection import Connection
from tcplife.core.events import ConnectionRecord
from tcplife.core.machine import SYNCHRONIZED
from tcplife.core.states import CLOSED, LISTEN, TIME_WAIT, CloseKind


def close_kind(conn: Connection) -> CloseKind:
    c, s = conn.client, conn.server
    if conn.refused:
        return CloseKind.REFUSED
    c_synced = c.state in SYNCHRONIZED or any(h.from_state in SYNCHRONIZED for h in c.history)
    if c.first_syn_ns is not None and s.packets == 0 and not c_synced:
        return CloseKind.UNANSWERED
    ever_established = any(h.from_state in SYNCHRONIZED for h in c.history + s.history) \
        or c.state in SYNCHRONIZED or s.state in SYNCHRONIZED
    if conn.rst_closed:
        return CloseKind.RST
    if not ever_established and not conn.mid_stream:
        return CloseKind.INCOMPLETE
    done = (CLOSED, TIME_WAIT, LISTEN)
    if c.state in done and s.state in done:
        if c.fin_seq is not None and s.fin_seq is not None and not conn.timed_out:
            return CloseKind.FIN
        if conn.timed_out:
            return CloseKind.TIMEOUT
        return CloseKind.FIN if (c.fin_seq is not None or s.fin_seq is not None) else CloseKind.OPEN
    return CloseKind.OPEN


def record(conn: Connection) -> ConnectionRecord:
    c, s = conn.client, conn.server
    return ConnectionRecord(
        conn_id=conn.conn_id, ip_version=conn.ip_version,
        client_addr=c.addr, client_port=c.port, server_addr=s.addr, server_port=s.port,
        first_ts_ns=conn.first_ts, last_ts_ns=conn.last_ts, first_frame=conn.first_frame,
        last_frame=conn.last_frame, packets=conn.packets, client_packets=c.packets,
        server_packets=s.packets, client_bytes=c.bytes, server_bytes=s.bytes,
        client_state=c.state, server_state=s.state, client_eventual_state=c.state,
        server_eventual_state=s.state, client_initial_state=c.initial_state,
        server_initial_state=s.initial_state, close_kind=close_kind(conn),
        role_inferred=conn.role_inferred, mid_stream=conn.mid_stream,
        client_last_ts_ns=c.last_ns, server_last_ts_ns=s.last_ns,
        client_last_payload_ns=c.last_payload_ns, server_last_payload_ns=s.last_payload_ns,
        peers=None if conn.peers is None else conn.peers.summary(),
    )
