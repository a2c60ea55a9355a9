"""The columns of the public tables, declared once, as plain data (no pandas).

Owns: each table's columns in contract order with a *spec* per column, and the category
lists of the enumerated columns. A spec is one of ``int8 int32 int64 float64 bool string
object`` (lists), ``Int64`` (an integer that may be null: a frame number), ``time``
(integer ns since the epoch, a UTC datetime in a DataFrame) or ``cat:NAME`` (one of
`CATEGORIES[NAME]`, a pandas categorical). `tcplife.output.frames` turns the specs into pandas
dtypes; `tcplife.output.rows` and the writers read them without pandas, so the command line's
JSON-lines, CSV and table paths start without importing it.
"""

from __future__ import annotations

from tcplife.core.states import (
    ANOMALY_KINDS,
    CLOSE_KINDS,
    CONFIDENCES,
    SEVERITIES,
    SIDES,
    STATE_ORDER,
)
from tcplife.peers.suricata import STATES as SURICATA_STATES

#: category name -> (values in order, ordered?). An ordered category sorts by its list
#: (severity: error first).
CATEGORIES: dict[str, tuple[tuple[str, ...], bool]] = {
    "state": (STATE_ORDER, False),
    "side": (SIDES, False),
    "close_kind": (CLOSE_KINDS, False),
    "kind": (ANOMALY_KINDS, False),
    "severity": (SEVERITIES, True),
    "confidence": (CONFIDENCES, True),
    "zeek_conn_state": (("S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0",
                         "RSTRH", "SH", "SHR", "OTH"), False),
    "suricata_state": (tuple(SURICATA_STATES), False),
    #: ``tcp_stream_match``: does Wireshark's tcp.stream hold exactly this instance?
    "stream_match": (("same", "split", "merged", "split+merged"), False),
}

Schema = dict[str, str]

#: the tables of an analysis, in this order
TABLES: tuple[str, ...] = ("connections", "transitions", "anomalies", "oddities")

CONNECTIONS: Schema = {
    "conn_id": "int64", "ip_version": "int8", "client_addr": "string",
    "client_port": "int32", "server_addr": "string", "server_port": "int32",
    "first_ts": "float64", "last_ts": "float64", "duration": "float64", "packets": "int64",
    "client_bytes": "int64", "server_bytes": "int64", "client_state": "cat:state",
    "server_state": "cat:state", "client_eventual_state": "cat:state",
    "server_eventual_state": "cat:state", "close_kind": "cat:close_kind",
    "anomalies": "object", "role_inferred": "bool", "mid_stream": "bool",
    "first_time": "time", "last_time": "time", "first_frame": "int64",
    "last_frame": "int64", "client_packets": "int64", "server_packets": "int64",
    "client_initial_state": "cat:state", "server_initial_state": "cat:state",
    "first_ts_ns": "int64", "last_ts_ns": "int64",
    # What the peers would say (tcplife.peers; docs/peers.md).
    "zeek_conn_state": "cat:zeek_conn_state", "zeek_history": "string",
    "zeek_orig": "cat:side", "zeek_orig_bytes": "int64", "zeek_resp_bytes": "int64",
    "zeek_duration": "float64", "zeek_records": "int64", "zeek_later_records": "string",
    "tcp_stream": "int64", "tcp_streams": "string",
    "tcp_stream_match": "cat:stream_match", "suricata_state": "cat:suricata_state",
}
TRANSITIONS: Schema = {
    "conn_id": "int64", "ts": "float64", "side": "cat:side", "addr": "string",
    "port": "int32", "from_state": "cat:state", "to_state": "cat:state", "event": "string",
    "frame": "Int64", "inferred": "bool", "time": "time", "ts_ns": "int64",
}
ANOMALIES: Schema = {
    "conn_id": "int64", "ts": "float64", "side": "cat:side", "kind": "cat:kind",
    "frame": "Int64", "detail": "string", "severity": "cat:severity",
    "confidence": "cat:confidence", "frames": "object", "time": "time", "ts_ns": "int64",
}
#: (an oddity's ``side`` is "" where it is the connection's, not one side's: text)
ODDITIES: Schema = {
    "conn_id": "int64", "ts": "float64", "side": "string", "name": "string",
    "frame": "Int64", "detail": "string", "time": "time", "ts_ns": "int64",
}
STATE_AT: Schema = {
    "conn_id": "int64", "side": "cat:side", "local_addr": "string", "local_port": "int32",
    "remote_addr": "string", "remote_port": "int32", "state": "cat:state",
    "since": "float64",
}

#: With several captures, the columns that name the file of a frame column, and where
#: each goes (right after its frame column). A frame then counts within that file.
FILE_COLUMNS: dict[str, tuple[str, str]] = {
    "frame": ("file", "string"),
    "first_frame": ("first_file", "string"),
    "last_frame": ("last_file", "string"),
}


def category(spec: str) -> tuple[tuple[str, ...], bool] | None:
    """The (values, ordered) of a ``cat:`` spec, else None."""
    return CATEGORIES[spec[4:]] if spec.startswith("cat:") else None
