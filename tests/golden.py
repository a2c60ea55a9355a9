"""Golden comparison: tcplife's reconstructed states against the kernel's `ss` snapshots.

Owns: `compare`, which runs ``tcplife.analyze(capture, **options)`` on one vantage
capture of a lab scenario (see `tests/lab/` and `sample_pcaps/README.md`) and checks
``result.state_at(ts)`` at every checkpoint of its ``NAME.expected.json``:

1. every non-LISTEN socket that ``ss`` listed (client or server namespace) whose 4-tuple
   appears in that capture (``visible_flows``) must have a tcplife row with the same
   (local, remote) endpoints and the same state;
2. every tcplife row must be backed by the kernel (an UNKNOWN row makes no claim and is
   skipped): a LISTEN row by a LISTEN socket on that
   port in the server namespace (any local address); any other row by an ``ss`` socket with
   the same (local, remote) in the same state. A row the kernel does not list means tcplife
   says "alive" where the kernel says CLOSED.

Exceptions are few, listed in `UNKNOWABLE` with the reason, and reviewed by hand: a side
whose state at a checkpoint no packet in that capture can reveal. (The lab also records
the drops it made before each checkpoint as ``blind`` / ``blind_why`` in the expected
files; that is information for people and is NOT used to excuse tcplife, because later
packets in the same capture often do reveal the state, e.g. a retransmitted FIN shows that
the ACK seen before it was lost.)

Returns mismatch strings (empty list = pass). No test functions here: `test_golden.py`
(committed samples) and `test_lab.py` (fresh captures) call it.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: ``ss`` state names -> tcplife state strings (absent from ss = CLOSED).
SS_TO_TCPLIFE: dict[str, str] = {
    "LISTEN": "LISTEN",
    "SYN-SENT": "SYN_SENT",
    "SYN-RECV": "SYN_RECEIVED",
    "ESTAB": "ESTABLISHED",
    "FIN-WAIT-1": "FIN_WAIT_1",
    "FIN-WAIT-2": "FIN_WAIT_2",
    "CLOSE-WAIT": "CLOSE_WAIT",
    "CLOSING": "CLOSING",
    "LAST-ACK": "LAST_ACK",
    "TIME-WAIT": "TIME_WAIT",
    "UNCONN": "CLOSED",
    "CLOSE": "CLOSED",
    "CLOSED": "CLOSED",
}

#: (scenario, vantage, checkpoint) -> {side: why its state cannot be known from that capture}
UNKNOWABLE: dict[tuple[str, str, str], dict[str, str]] = {
    ("simultaneous_close", "client", "fins_dropped"): {
        "server": "the server's first FIN was dropped before the client's capture point; its "
                  "retransmissions look like a first FIN, so nothing dates its close"},
    ("simultaneous_close", "server", "fins_dropped"): {
        "client": "the client's first FIN was dropped before the server's capture point"},
    ("simultaneous_close", "any", "fins_dropped"): {
        "client": "the client's first FIN was dropped before the server's capture point"},
    ("simultaneous_open", "client", "both_syn_sent"): {
        "server": "the server's first SYN was dropped before the client's capture point"},
    ("simultaneous_open", "server", "both_syn_sent"): {
        "client": "the client's first SYN was dropped before the server's capture point"},
    ("handshake_ack_dropped", "client", "server_gave_up"): {
        "server": "after the client's last ACK the server is silent either way: delivered "
                  "(ESTABLISHED) or lost (SYN-RECV until it gives up) look the same"},
}

Endpoint = tuple[str, int]
Pair = tuple[Endpoint, Endpoint]


def norm_addr(addr: str) -> str:
    """Canonical text of an address (IPv6 compressed, v4-mapped IPv6 as IPv4)."""
    ip = ipaddress.ip_address(str(addr).strip("[]").split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def _ep(addr: str, port: Any) -> Endpoint:
    return (norm_addr(addr), int(port))


def load_expected(path: str | Path) -> dict[str, Any]:
    with open(path) as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def vantages(expected: dict[str, Any]) -> list[str]:
    """The capture names (vantage points) of an expected file."""
    return list(expected["captures"])


def _flow_key(local: Endpoint, remote: Endpoint, clients: set[str]) -> tuple[Any, ...]:
    """The 4-tuple as sent by the client (client addr, port, server addr, port)."""
    if local[0] in clients:
        return (*local, *remote)
    return (*remote, *local)


def _ss_sockets(checkpoint: dict[str, Any]) -> list[tuple[str, str, Endpoint, Endpoint]]:
    """(namespace, tcplife state, local, remote) for every listed socket."""
    out = []
    for role, socks in checkpoint["ss"].items():
        for s in socks:
            state = SS_TO_TCPLIFE.get(s["state"], s["state"])
            out.append((role, state, _ep(*s["local"]), _ep(*s["remote"])))
    return out


def _rows(snap: Any) -> list[dict[str, Any]]:
    """tcplife's ``state_at`` frame as plain dicts (accepts a DataFrame or a list)."""
    if hasattr(snap, "to_dict"):
        rows: list[dict[str, Any]] = snap.to_dict("records")
        return rows
    return list(snap)


def compare_snapshot(expected: dict[str, Any], vantage: str, checkpoint: dict[str, Any],
                     snap: Any) -> list[str]:
    """Mismatches between one checkpoint's ss lines and tcplife's rows at its ``ts``."""
    where = f"{expected['scenario']}/{vantage} @ {checkpoint['name']}"
    clients = {norm_addr(a) for a in expected["hosts"]["client"]}
    visible = {(norm_addr(f[0]), int(f[1]), norm_addr(f[2]), int(f[3]))
               for f in expected["captures"][vantage]["visible_flows"]}
    blind = set(UNKNOWABLE.get((expected["scenario"], vantage, checkpoint["name"]), {}))
    kernel = _ss_sockets(checkpoint)
    by_pair: dict[Pair, list[str]] = {}
    listen_ports: set[int] = set()
    for role, state, local, remote in kernel:
        if state == "LISTEN":
            if role == "server":
                listen_ports.add(local[1])
            continue
        if state != "CLOSED" and role not in blind:
            by_pair.setdefault((local, remote), []).append(state)

    rows = _rows(snap)
    ours: dict[Pair, list[dict[str, Any]]] = {}
    for row in rows:
        pair = (_ep(row["local_addr"], row["local_port"]),
                _ep(row["remote_addr"], row["remote_port"]))
        ours.setdefault(pair, []).append(row)

    problems: list[str] = []
    reported: set[Pair] = set()

    def fmt(pair: Pair) -> str:
        (la, lp), (ra, rp) = pair
        return f"{la}:{lp} -> {ra}:{rp}"

    def row_text(rs: Iterable[dict[str, Any]]) -> str:
        return ", ".join(f"{r['state']} (conn {r.get('conn_id')}, side {r.get('side')})"
                         for r in rs)

    # Rule 1: the kernel's sockets on visible flows must be in tcplife, in the same state.
    for pair, states in sorted(by_pair.items()):
        if _flow_key(*pair, clients) not in visible:
            continue
        got = ours.get(pair, [])
        got_states = sorted(str(r["state"]) for r in got)
        if not got:
            problems.append(f"{where}: {fmt(pair)}: kernel {'/'.join(states)}, tcplife has "
                            "no row (CLOSED)")
            reported.add(pair)
        elif not set(states) & set(got_states):
            problems.append(f"{where}: {fmt(pair)}: kernel {'/'.join(states)}, tcplife "
                            f"{row_text(got)}")
            reported.add(pair)

    # Rule 2: every tcplife row must be backed by the kernel (one socket per row).
    for pair, rs in sorted(ours.items()):
        left = list(by_pair.get(pair, []))
        for row in rs:
            state = str(row["state"])
            if state == "UNKNOWN":
                continue  # tcplife makes no claim (rule 1 still catches a missed socket)
            if state == "LISTEN":
                if pair[0][1] not in listen_ports:
                    problems.append(f"{where}: {fmt(pair)}: tcplife LISTEN (conn "
                                    f"{row.get('conn_id')}), server ss has no LISTEN socket "
                                    f"on port {pair[0][1]}")
                continue
            if state in left:
                left.remove(state)
                continue
            if pair in reported or ("client" if pair[0][0] in clients else "server") in blind:
                continue
            states = by_pair.get(pair, [])
            kernel_says = "/".join(states) if states else "CLOSED (not listed by ss)"
            problems.append(f"{where}: {fmt(pair)}: tcplife {row_text([row])}, kernel "
                            f"{kernel_says}")
    return problems


def compare(expected: str | Path | dict[str, Any], vantage: str,
            sample_dir: str | Path | None = None, result: Any = None) -> list[str]:
    """Run tcplife on the ``vantage`` capture of an expected file and compare every
    checkpoint (rules in the module docstring). ``result`` (anything with ``state_at``)
    replaces the call to ``tcplife.analyze`` (for testing this comparison)."""
    if isinstance(expected, (str, Path)):
        base = Path(sample_dir) if sample_dir is not None else Path(expected).parent
        expected = load_expected(expected)
    else:
        base = Path(sample_dir) if sample_dir is not None else Path(".")
    capture = base / expected["captures"][vantage]["file"]
    if result is None:
        import tcplife

        result = tcplife.analyze(str(capture), **expected.get("options", {}))
    problems: list[str] = []
    for cp in expected["checkpoints"]:
        problems += compare_snapshot(expected, vantage, cp, result.state_at(cp["ts"]))
    return problems


def _expected_anomaly_rows(expected: dict[str, Any], vantage: str,
                           conns: Any) -> set[tuple[int, str, str]]:
    """(conn_id, side, kind) for the expected anomalies, flows mapped to tcplife's ids."""
    instances: dict[tuple[str, int, str, int], list[int]] = {}
    for row in conns.itertuples():
        key = (norm_addr(row.client_addr), int(row.client_port),
               norm_addr(row.server_addr), int(row.server_port))
        instances.setdefault(key, []).append(int(row.conn_id))
    out = set()
    for item in expected["anomalies"].get(vantage, []):
        ca, cp, sa, sp = item["flow"]
        key = (norm_addr(ca), int(cp), norm_addr(sa), int(sp))
        side = item["side"]
        if key not in instances:
            # A simultaneous open has two clients: tcplife calls client the side whose SYN
            # the capture saw first, the lab the one in the client namespace.
            key = (key[2], key[3], key[0], key[1])
            side = {"client": "server", "server": "client"}[side]
        ids = instances.get(key, [])
        index = int(item.get("instance", 0))
        conn = ids[index] if index < len(ids) else -1  # -1: tcplife lacks the connection
        out.add((conn, side, item["kind"]))
    return out


def compare_anomalies(path: str | Path, vantage: str) -> list[str]:
    """tcplife's anomalies on one vantage capture against the expected file's ground truth:
    exactly the listed (connection, side, kind), nothing more. Returns mismatch strings."""
    import tcplife

    path = Path(path)
    expected = load_expected(path)
    options = {**expected.get("options", {}), **expected.get("anomaly_options", {})}
    result = tcplife.analyze(path.parent / expected["captures"][vantage]["file"], **options)
    got = {(int(a.conn_id), str(a.side), str(a.kind)) for a in result.anomalies.itertuples()}
    want = _expected_anomaly_rows(expected, vantage, result.connections)
    if got == want:
        return []
    details = "; ".join(f"{a.conn_id} {a.side} {a.kind}: {a.detail}"
                        for a in result.anomalies.itertuples())
    return [f"{expected['scenario']}/{vantage}: missing {sorted(want - got)}, "
            f"extra {sorted(got - want)} (tcplife said: {details})"]
