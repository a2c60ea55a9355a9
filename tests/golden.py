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

`compare_anomalies` checks the anomaly rows against the expected file's truth (exactly,
with the one exception documented at `APP_RST_KINDS`); `compare_end` checks
``client_state``/``server_state`` against ``ss`` at the end checkpoint.

Returns mismatch strings (empty list = pass). No test functions here: `test_golden.py`
(committed samples) and `test_lab.py` (fresh captures) call it.
"""

from __future__ import annotations

import ipaddress
import json
import warnings
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
    # The router holds every FIN and pure ACK 0.5 s (NFQUEUE): a capture shows the peer's
    # FIN and ACKs only when they arrive, not when they were sent.
    ("fins_cross_acks_delayed", "client", "fins_held"): {
        "server": "the server's FIN, sent before the checkpoint, is held by the router and "
                  "reaches the client's capture point 0.5 s later: nothing dates it"},
    ("fins_cross_acks_delayed", "server", "fins_held"): {
        "client": "the client's FIN is held by the router until 0.5 s after it was sent"},
    ("fins_cross_acks_delayed", "client", "closing"): {
        "server": "whether the client's FIN had reached the server (CLOSING) or not "
                  "(FIN-WAIT-1) shows only in the server's ACK of it, held by the router "
                  "until after the checkpoint: delay on either path looks the same"},
    ("fins_cross_acks_delayed", "server", "closing"): {
        "client": "as at the client's vantage: the client's ACK of the server's FIN is held "
                  "until after the checkpoint"},
    # A dead peer: nothing crosses the router after the drop.
    ("keepalive_dead_peer", "client", "end"): {
        "server": "after the drop nothing from the server reaches the client's vantage: the "
                  "client's keep-alive RST leaves, and whether it reached the server "
                  "(CLOSED) or was dropped (ESTAB) looks the same there"},
    ("keepalive_dead_peer", "server", "end"): {
        "client": "nothing from the client reaches the server's vantage after the drop: "
                  "its probes and the RST after them are dropped before it"},
    ("peer_vanishes_mid_transfer", "client", "end"): {
        "client": "the client gives up silently (tcp_write_err after tcp_retries2: no RST, "
                  "no segment) seconds after the capture's last frame, its last "
                  "retransmission"},
    ("peer_vanishes_mid_transfer", "server", "end"): {
        "client": "nothing from the client reaches the server's vantage after the drop: "
                  "its data and retransmissions are dropped before it, and it gives up "
                  "silently"},
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
        with warnings.catch_warnings():  # the end checkpoint may follow the last frame
            warnings.simplefilter("ignore", UserWarning)
            snap = result.state_at(cp["ts"])
        problems += compare_snapshot(expected, vantage, cp, snap)
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


#: An application's RST from an open state: whether it closed with data unread or with
#: SO_LINGER 0 (or crashed) the wire cannot tell (linger0_after_read and close_unread_data
#: are the same packets), so where the truth is one of these kinds tcplife may answer with
#: a row of the other kind whose confidence is ``possible``. A row of either kind with any
#: other confidence must match a truth row of its own kind.
APP_RST_KINDS = ("rst_on_close_unread_data", "abortive_close")
SEVERITIES = ("error", "warning", "info")
CONFIDENCES = ("certain", "likely", "possible")


def match_anomalies(want: set[tuple[int, str, str]], got: dict[tuple[int, str, str], str]
                    ) -> tuple[set[tuple[int, str, str]], set[tuple[int, str, str]]]:
    """(truth rows tcplife missed, tcplife rows the truth lacks). ``got`` maps tcplife's
    (conn, side, kind) to its confidence. Exact matches first; then a truth row of an
    `APP_RST_KINDS` kind is answered by a ``possible`` row of the other such kind."""
    missing = set(want) - set(got)
    extra = set(got) - set(want)
    for conn, side, kind in sorted(missing):
        if kind not in APP_RST_KINDS:
            continue
        for other in APP_RST_KINDS:
            row = (conn, side, other)
            if other != kind and row in extra and got[row] == "possible":
                missing.discard((conn, side, kind))
                extra.discard(row)
                break
    return missing, extra


def compare_anomalies(path: str | Path, vantage: str, result: Any = None) -> list[str]:
    """tcplife's anomalies on one vantage capture against the expected file's ground truth:
    exactly the listed (connection, side, kind), nothing more, but for the one exception of
    `APP_RST_KINDS`; and every row has a severity in `SEVERITIES` and a confidence in
    `CONFIDENCES`. ``result`` replaces the call to ``tcplife.analyze``. Returns mismatch
    strings."""
    path = Path(path)
    expected = load_expected(path)
    if result is None:
        import tcplife

        options = {**expected.get("options", {}), **expected.get("anomaly_options", {})}
        result = tcplife.analyze(path.parent / expected["captures"][vantage]["file"],
                                 **options)
    where = f"{expected['scenario']}/{vantage}"
    problems: list[str] = []
    got: dict[tuple[int, str, str], str] = {}
    for a in result.anomalies.itertuples():
        severity = getattr(a, "severity", None)
        confidence = getattr(a, "confidence", None)
        if severity not in SEVERITIES or confidence not in CONFIDENCES:
            problems.append(f"{where}: {a.conn_id} {a.side} {a.kind}: severity {severity!r}, "
                            f"confidence {confidence!r}")
        got[(int(a.conn_id), str(a.side), str(a.kind))] = str(confidence)
    want = _expected_anomaly_rows(expected, vantage, result.connections)
    missing, extra = match_anomalies(want, got)
    if missing or extra:
        details = "; ".join(f"{a.conn_id} {a.side} {a.kind} "
                            f"({getattr(a, 'severity', '?')}, {getattr(a, 'confidence', '?')})"
                            f": {a.detail}" for a in result.anomalies.itertuples())
        problems.append(f"{where}: missing {sorted(missing)}, extra {sorted(extra)} "
                        f"(tcplife said: {details})")
    return problems


# --------------------------------------------------------------------------- the end


#: An end checkpoint has no TCP segment at or after ``ts - END_QUIET`` in any capture of
#: its run (the lab's QUIET rule): what ``ss`` showed then is what was true at the
#: capture's end, unless a timer without a packet changed a state after the last frame.
END_QUIET = 0.05

#: (scenario, vantage) -> {side: why that side's state at the end checkpoint cannot be
#: known from that capture}. Each was checked by hand against the captures: the side's
#: socket changed state after the capture's last frame without sending or receiving a
#: packet that this capture shows (so no tool could tell, from this capture, what ``ss``
#: says at the end), or the segment that changed it never reached this vantage.
#: (`UNKNOWABLE` entries at the end checkpoint apply here too.)
UNKNOWABLE_AT_END: dict[tuple[str, str], dict[str, str]] = {
    ("syn_dropped", "client"): {
        "client": "connect() gives up silently (no RST: tcp_write_timeout ends a SYN-SENT "
                  "socket with tcp_done) 7 s after the first SYN, about 3 s after the "
                  "capture's last frame (the last SYN retransmission)",
        "server": "no SYN got an answer: SYNs dropped before the server (no socket, CLOSED) "
                  "and SYN-ACKs lost on the way back (SYN-RECV) look the same at the "
                  "client's vantage"},
}


def end_checkpoint(expected: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint flagged ``"end": true`` (the capture's end), if any."""
    flagged = [cp for cp in expected["checkpoints"] if cp.get("end")]
    return flagged[-1] if flagged else None


def _lab_endpoint_state(checkpoint: dict[str, Any], role: str, local: Endpoint,
                        remote: Endpoint) -> str:
    """The state ``ss`` gave the socket (local, remote) in namespace ``role`` (CLOSED when
    it is not listed)."""
    for s in checkpoint["ss"].get(role, []):
        if _ep(*s["local"]) == local and _ep(*s["remote"]) == remote \
                and s["state"] != "LISTEN":
            return SS_TO_TCPLIFE.get(s["state"], s["state"])
    return "CLOSED"


def compare_end(expected: str | Path | dict[str, Any], vantage: str,
                sample_dir: str | Path | None = None, result: Any = None) -> list[str]:
    """tcplife's ``connections.client_state`` / ``server_state`` (each side at the capture's
    last frame) against ``ss`` at the end checkpoint, for every flow the capture shows: the
    latest instance of each 4-tuple has the kernel's states (a socket ``ss`` does not list
    is CLOSED), earlier instances of it are CLOSED on both sides. Sides listed in
    `UNKNOWABLE_AT_END` (or in `UNKNOWABLE` at that checkpoint) are skipped. ``result``
    (anything with ``connections``) replaces the call to ``tcplife.analyze``."""
    if isinstance(expected, (str, Path)):
        base = Path(sample_dir) if sample_dir is not None else Path(expected).parent
        expected = load_expected(expected)
    else:
        base = Path(sample_dir) if sample_dir is not None else Path(".")
    cp = end_checkpoint(expected)
    name = expected["scenario"]
    if cp is None:
        return [f"{name}: no end checkpoint"]
    if result is None:
        import tcplife

        result = tcplife.analyze(str(base / expected["captures"][vantage]["file"]),
                                 **expected.get("options", {}))
    where = f"{name}/{vantage} @ end ({cp['name']})"
    clients = {norm_addr(a) for a in expected["hosts"]["client"]}
    skip = {**UNKNOWABLE.get((name, vantage, cp["name"]), {}),
            **UNKNOWABLE_AT_END.get((name, vantage), {})}
    instances: dict[tuple[Any, ...], list[Any]] = {}
    for row in result.connections.sort_values("conn_id").itertuples():
        c, s = _ep(row.client_addr, row.client_port), _ep(row.server_addr, row.server_port)
        instances.setdefault(_flow_key(c, s, clients), []).append(row)
    problems: list[str] = []
    for flow in expected["captures"][vantage]["visible_flows"]:
        lab_client = _ep(flow[0], flow[1])
        lab_server = _ep(flow[2], flow[3])
        rows = instances.get((*lab_client, *lab_server), [])
        text = f"{lab_client[0]}:{lab_client[1]} -> {lab_server[0]}:{lab_server[1]}"
        if not rows:
            problems.append(f"{where}: {text}: tcplife has no connection")
            continue
        for i, row in enumerate(rows):
            states = {_ep(row.client_addr, row.client_port): str(row.client_state),
                      _ep(row.server_addr, row.server_port): str(row.server_state)}
            for role, me, peer in (("client", lab_client, lab_server),
                                   ("server", lab_server, lab_client)):
                if role in skip:
                    continue
                ours = states.get(me, "?")
                kernel = "CLOSED" if i < len(rows) - 1 else \
                    _lab_endpoint_state(cp, role, me, peer)
                if ours != kernel:
                    latest = "" if i == len(rows) - 1 else " (an earlier instance)"
                    problems.append(f"{where}: {text} conn {row.conn_id}{latest}: {role} "
                                    f"{ours} at the last frame, kernel {kernel}")
    return problems


# --------------------------------------------------------------------------- frames


def _pcap_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """(timestamp ns, link type, frame bytes) of every record of a pcap file."""
    import struct

    magic = data[:4]
    order = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<",
             b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}[magic]
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(order + "I", data[20:24])[0] & 0x0FFFFFFF
    out, pos = [], 24
    while pos + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(order + "IIII", data[pos:pos + 16])
        ns = sec * 1_000_000_000 + (frac if nano else frac * 1000)
        out.append((ns, linktype, data[pos + 16:pos + 16 + incl]))
        pos += 16 + incl
    return out


def _pcapng_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """(timestamp ns, link type, frame bytes) of every timestamped packet of a pcapng file
    (enhanced and obsolete packet blocks; if_tsresol honoured)."""
    import struct

    out: list[tuple[int, int, bytes]] = []
    order = "<"
    ifaces: list[tuple[int, int]] = []  # (link type, units per second)
    pos = 0
    while pos + 12 <= len(data):
        btype = struct.unpack(order + "I", data[pos:pos + 4])[0]
        if btype == 0x0A0D0D0A:  # section header: byte order from its magic
            order = "<" if data[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            ifaces = []
        blen = struct.unpack(order + "I", data[pos + 4:pos + 8])[0]
        if blen < 12:
            break
        body = data[pos + 8:pos + blen - 4]
        if btype == 1:  # interface description
            link = struct.unpack(order + "H", body[:2])[0]
            units = 1_000_000
            opt = 8
            while opt + 4 <= len(body):
                code, olen = struct.unpack(order + "HH", body[opt:opt + 4])
                if code == 0:
                    break
                if code == 9 and olen >= 1:
                    v = body[opt + 4]
                    units = 2 ** (v & 0x7F) if v & 0x80 else 10 ** v
                opt += 4 + olen + (-olen % 4)
            ifaces.append((link, units))
        elif btype in (6, 2):  # enhanced / obsolete packet block
            if btype == 6:
                iface, hi, lo, cap = struct.unpack(order + "IIII", body[:16])
                frame = body[20:20 + cap]
            else:
                iface, _drops, hi, lo, cap = struct.unpack(order + "HHIII", body[:16])
                frame = body[20:20 + cap]
            link, units = ifaces[iface]
            ticks = (hi << 32) | lo
            out.append((ticks * 1_000_000_000 // units, link, frame))
        pos += blen
    return out


def capture_frames(path: str | Path) -> list[tuple[int, int, bytes]]:
    """(timestamp ns, link type, frame bytes) of every frame of a pcap or pcapng file, read
    here (not by tcplife)."""
    data = Path(path).read_bytes()
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        return _pcapng_frames(data)
    return _pcap_frames(data)


def last_frame_ns(path: str | Path) -> int | None:
    """The timestamp (ns) of the capture's last frame, any kind (None: no frame)."""
    frames = capture_frames(path)
    return max(ns for ns, _, _ in frames) if frames else None


def tcp_frame_times_ns(path: str | Path) -> list[int]:
    """Timestamps of the frames that carry a TCP segment (Ethernet, Linux SLL/SLL2, raw
    IP), decoded with dpkt."""
    import dpkt

    out = []
    for ns, link, frame in capture_frames(path):
        try:
            if link == 1:
                ip = dpkt.ethernet.Ethernet(frame).data
            elif link == 113:
                ip = dpkt.sll.SLL(frame).data
            elif link == 276:
                ip = dpkt.sll2.SLL2(frame).data
            elif link in (12, 101, 228, 229):
                ip = (dpkt.ip6.IP6 if frame[:1] and frame[0] >> 4 == 6 else dpkt.ip.IP)(frame)
            else:
                continue
        except (dpkt.UnpackError, IndexError):
            continue
        if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) and isinstance(ip.data, dpkt.tcp.TCP):
            out.append(ns)
    return out
