"""Zeek's conn.log, written from tcplife's connections table.

Owns: `write_zeek_conn_log`, the ASCII writer's format as Zeek writes it (``#separator``,
``#set_separator``, ``#empty_field``, ``#unset_field``, ``#path``, ``#open``, ``#fields``,
``#types``, tab-separated rows, ``#close``), so zeek-cut and Zeek's log tools read it. The
fields are those of Zeek's default conn.log (scripts/base/protocols/conn/main.zeek), in
its order. Filled from what tcplife knows; the rest is unset (``-``), as Zeek writes an
optional field it has no value for:

- ``ts``, ``id.*``, ``conn_state``, ``history``, ``duration``, ``orig_bytes``,
  ``resp_bytes``, ``orig_pkts``, ``resp_pkts``: from the ``zeek_*`` columns (originator and
  responder as Zeek decides them, ``zeek_orig``) and the per-side packet counts. As in
  Zeek, duration and byte counts are unset when the duration is zero.
- One line per Zeek connection: where Zeek's inactivity timer splits a tcplife instance
  (``zeek_records`` > 1), the row's ``zeek_*`` columns give the first line and
  ``zeek_later_records`` (`tcplife.peers.zeek.records_json`) the others, each with its own
  ``ts``, ``uid``, originator, sizes, packets, ``history`` and ``conn_state``; the first
  line's packets are the row's, less the later lines'.
- ``uid``: a stable identifier derived from the Zeek connection (Zeek's are random), ``C``
  and 17 base-62 digits.
- unset: ``service`` (no protocol detection), ``local_orig``/``local_resp``
  (Site::local_nets is empty by default, so Zeek leaves them unset too),
  ``missed_bytes`` (gaps are detected but not measured), ``orig_ip_bytes``/
  ``resp_ip_bytes`` (segments do not carry IP lengths), ``tunnel_parents``.

Lines are in the order of the Zeek connections' first packets (Zeek writes a line when it
forgets a connection). Reads only the DataFrame; knows nothing of the tracker.
"""

from __future__ import annotations

import hashlib
import heapq
import os
from datetime import datetime, timezone
from typing import IO, Any

import pandas as pd

from tcplife.peers.zeek import ZeekRecord, records_from_json

FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
          "service", "duration", "orig_bytes", "resp_bytes", "conn_state", "local_orig",
          "local_resp", "missed_bytes", "history", "orig_pkts", "orig_ip_bytes",
          "resp_pkts", "resp_ip_bytes", "tunnel_parents")
TYPES = ("time", "string", "addr", "port", "addr", "port", "enum", "string", "interval",
         "count", "count", "string", "bool", "bool", "count", "string", "count", "count",
         "count", "count", "set[string]")
UNSET = "-"
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _stamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d-%H-%M-%S")


def conn_uid(first_ts_ns: int, orig: tuple[str, int], resp: tuple[str, int],
             conn_id: int) -> str:
    """``C`` + 17 base-62 digits from a hash of the connection's identity."""
    key = f"{first_ts_ns}|{orig[0]}|{orig[1]}|{resp[0]}|{resp[1]}|{conn_id}".encode()
    n = int.from_bytes(hashlib.blake2b(key, digest_size=13).digest(), "big")
    digits = []
    for _ in range(17):
        n, r = divmod(n, 62)
        digits.append(_B62[r])
    return "C" + "".join(digits)


def _line(c: Any, rec: ZeekRecord, duration: float, opk: int, rpk: int) -> str:
    """One conn.log line: Zeek connection ``rec`` of connection row ``c``."""
    if rec.orig == "client":
        orig, resp = (c.client_addr, c.client_port), (c.server_addr, c.server_port)
    else:
        orig, resp = (c.server_addr, c.server_port), (c.client_addr, c.client_port)
    timed = duration > 0  # Zeek: duration and sizes only if duration > 0
    ts = int(rec.start_ns)
    return "\t".join([
        f"{ts // 10**9}.{ts // 1000 % 10**6:06d}",
        conn_uid(ts, orig, resp, int(c.conn_id)),
        str(orig[0]), str(int(orig[1])), str(resp[0]), str(int(resp[1])), "tcp", UNSET,
        f"{duration:.6f}" if timed else UNSET,
        str(int(rec.orig_bytes)) if timed else UNSET,
        str(int(rec.resp_bytes)) if timed else UNSET,
        str(rec.conn_state), UNSET, UNSET, UNSET,
        rec.history if rec.history else UNSET,
        str(int(opk)), UNSET, str(int(rpk)), UNSET, UNSET,
    ])


def _lines(c: Any) -> list[tuple[int, str]]:
    """(ts in ns, line) of each Zeek connection of connection row ``c``, in order."""
    later = records_from_json(getattr(c, "zeek_later_records", None))
    packets = {"client": int(c.client_packets), "server": int(c.server_packets)}
    out = []
    for rec in later:
        other = "server" if rec.orig == "client" else "client"
        packets[rec.orig] -= rec.orig_pkts
        packets[other] -= rec.resp_pkts
        out.append((rec.start_ns, _line(c, rec, rec.duration_ns / 1e9, rec.orig_pkts,
                                        rec.resp_pkts)))
    orig = str(c.zeek_orig)
    resp = "server" if orig == "client" else "client"
    history = c.zeek_history if isinstance(c.zeek_history, str) else ""
    first = ZeekRecord(int(c.first_ts_ns), orig, 0, int(c.zeek_orig_bytes),
                       int(c.zeek_resp_bytes), str(c.zeek_conn_state), history,
                       packets[orig], packets[resp])
    line = _line(c, first, float(c.zeek_duration), first.orig_pkts, first.resp_pkts)
    return [(first.start_ns, line), *out]


def write_zeek_conn_log(connections: pd.DataFrame, file: IO[str] | str | os.PathLike[str],
                        *, open_time: datetime | None = None,
                        close_time: datetime | None = None) -> None:
    """Write ``connections`` (`tcplife.analyze(...).connections`) as a Zeek conn.log to
    ``file`` (a path or a text stream). ``open_time``/``close_time`` fill the ``#open`` and
    ``#close`` lines (default: now, as Zeek stamps them when it opens and closes the
    log)."""
    if isinstance(file, (str, os.PathLike)):
        with open(file, "w", encoding="utf-8", newline="\n") as out:
            write_zeek_conn_log(connections, out, open_time=open_time,
                                close_time=close_time)
        return
    now = datetime.now(timezone.utc)
    lines = [
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        f"#unset_field\t{UNSET}",
        "#path\tconn",
        f"#open\t{_stamp(open_time or now)}",
        "#fields\t" + "\t".join(FIELDS),
        "#types\t" + "\t".join(TYPES),
    ]
    file.write("\n".join(lines) + "\n")
    # Rows come in order of first packet; a row's later Zeek connections wait in a heap
    # until a row (or the end) comes after them.
    pending: list[tuple[int, int, str]] = []
    n = 0
    for c in connections.itertuples(index=False):
        (ts, line), *later = _lines(c)
        while pending and pending[0][0] < ts:
            file.write(heapq.heappop(pending)[2] + "\n")
        file.write(line + "\n")
        for ts_later, text in later:
            heapq.heappush(pending, (ts_later, n, text))
            n += 1
    while pending:
        file.write(heapq.heappop(pending)[2] + "\n")
    file.write(f"#close\t{_stamp(close_time or datetime.now(timezone.utc))}\n")
