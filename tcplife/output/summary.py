"""The summary of an analysis, as data: what ``tcplife analyze`` prints under its table.

Owns: `summarize` (tables and read counters in, a plain dict out) and the words for the
capture's counters that are normal (checksums left to the NIC, payload cut by the snap
length) against those that are news. The tables may be `tcplife.output.rows.Rows` (the command
line, without pandas) or DataFrames (`Result.summary()`). Knows nothing of the terminal:
`tcplife.output.formats` renders the dict, `Result.summary()` returns it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tcplife.capture import ReadStats
from tcplife.core.states import DEFAULT_SEVERITY, SEVERITIES, SIDES
from tcplife.output.rows import column_of

#: states a side can hold that `ss` lists (CLOSED is no socket; LISTEN is not one
#: connection's)
_NOT_OPEN = frozenset({"CLOSED", "LISTEN"})


def _counts(values: Any) -> dict[str, int]:
    counts = Counter(str(v) for v in values if v is not None)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def open_at_end(connections: Any, transitions: Any | None,
                end_ns: int | None) -> dict[str, dict[str, Any]]:
    """The sockets still there at the capture's end, by state: ``count`` and, where the
    transitions are at hand, ``oldest_s`` (the longest any of them had been in it)."""
    entered: dict[tuple[int, str], int] = {}
    if transitions is not None and len(transitions):
        for c, s, t in zip(column_of(transitions, "conn_id"), column_of(transitions, "side"),
                           column_of(transitions, "ts_ns"), strict=True):
            if end_ns is None or t <= end_ns:  # the last one at or before the end
                entered[(int(c), str(s))] = int(t)
    out: dict[str, dict[str, Any]] = {}
    ids, firsts = column_of(connections, "conn_id"), column_of(connections, "first_ts_ns")
    for side in SIDES:
        states = [str(v) for v in column_of(connections, f"{side}_state")]
        for conn_id, state, first in zip(ids, states, firsts, strict=True):
            if state in _NOT_OPEN:
                continue
            entry = out.setdefault(state, {"count": 0})
            entry["count"] += 1
            if end_ns is not None and transitions is not None:
                since = entered.get((int(conn_id), side), int(first))
                age = max(0, end_ns - since) / 1e9
                entry["oldest_s"] = max(entry.get("oldest_s", 0.0), age)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["count"]))


def anomaly_counts(connections: Any, anomalies: Any | None) -> dict[str, dict[str, int]]:
    """Anomaly rows by severity, then kind (from the anomalies table; without it, one per
    connection and kind at the kind's default severity)."""
    out: dict[str, dict[str, int]] = {s: {} for s in SEVERITIES}
    if anomalies is not None:
        for severity, kind in zip(column_of(anomalies, "severity"),
                                  column_of(anomalies, "kind"), strict=True):
            severity, kind = str(severity), str(kind)
            out[severity][kind] = out[severity].get(kind, 0) + 1
    else:
        for kinds in column_of(connections, "anomalies"):
            for kind in kinds if kinds is not None else ():
                severity = DEFAULT_SEVERITY.get(kind, "warning")
                out[severity][kind] = out[severity].get(kind, 0) + 1
    return {s: dict(sorted(k.items(), key=lambda kv: (-kv[1], kv[0])))
            for s, k in out.items()}


def _sent_by(connections: Any) -> dict[str, int]:
    """TCP segments each address sent, over the connections."""
    sent: Counter[str] = Counter()
    for side in SIDES:
        for addr, n in zip(column_of(connections, f"{side}_addr"),
                           column_of(connections, f"{side}_packets"), strict=True):
            sent[str(addr)] += int(n)
    return dict(sent)


def capture_notes(stats: ReadStats, connections: Any) -> dict[str, Any]:
    """What the reader counted, split into what is normal and what is news.

    Checksums: a host that captures its own traffic with checksum offload sees every
    segment it sends with a checksum the NIC has not filled in yet; an address all of
    whose segments fail is that (``offload``), not corruption. The rest are ``bad``.
    Segments cut by the snap length (``truncated``) are what ``tcpdump -s`` asks for."""
    sent = _sent_by(connections)
    offload, bad = {}, 0
    for addr, n in sorted(stats.bad_checksum_senders.items()):
        if n and n >= sent.get(addr, 0) > 0:
            offload[addr] = n
        else:
            bad += n
    bad += stats.bad_checksums - sum(stats.bad_checksum_senders.values())
    return {"frames": stats.frames, "tcp_segments": stats.tcp_segments,
            "non_tcp": stats.non_tcp, "truncated": stats.truncated,
            "bad_checksums": bad, "checksum_offload": offload,
            "filtered_out": stats.filtered_out, "files": len(set(stats.files)),
            "warnings": len(stats.warnings)}


def summarize(connections: Any, stats: ReadStats, transitions: Any | None = None,
              anomalies: Any | None = None) -> dict[str, Any]:
    """The summary of one analysis: connections, each side's state at the capture's end,
    what is open at the end (and for how long), how they closed, anomalies by severity
    and kind, the capture's counters."""
    return {
        "connections": len(connections),
        "client_ends_in": _counts(column_of(connections, "client_state")),
        "server_ends_in": _counts(column_of(connections, "server_state")),
        "open_at_end": open_at_end(connections, transitions, stats.last_ts_ns),
        "closed_by": _counts(column_of(connections, "close_kind")),
        "anomalies": anomaly_counts(connections, anomalies),
        "capture": capture_notes(stats, connections),
    }
