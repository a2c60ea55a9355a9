"""Socket agent for the kernel lab: runs inside one network namespace.

Owns: holding real sockets by name and performing one socket call per JSON command.
Started by `netlab.Agent` as ``ip netns exec NS python3 tests/lab/agent.py``; reads one
JSON object per line on stdin and answers exactly one JSON line on stdout:
``{"ok": true, ...}`` or ``{"ok": false, "error": "ECONNREFUSED", "detail": "..."}``.

Commands (``op`` plus arguments):

- ``ping``
- ``socket`` name, family (4|6)
- ``bind_only`` name, addr, port: socket + bind, no listen
- ``listen`` name, addr, port, backlog
- ``accept`` name (listener), as, timeout
- ``connect`` name, addr, port, timeout, blocking (default true), bind_addr, bind_port
- ``wait_connect`` name, timeout: finish a non-blocking connect
- ``send`` name, n, background: send n bytes (one sendall; in a thread if background)
- ``recv`` name, n (int or "all"), timeout: read what is there (up to n)
- ``close`` name; ``shutdown`` name, how (RD|WR|RDWR); ``linger0`` name; ``dup`` name, as
- ``info`` name: local and remote address
- ``keepalive`` name, idle, intvl, cnt: SO_KEEPALIVE with TCP_KEEPIDLE/KEEPINTVL/KEEPCNT
- ``pin`` cpu: pin this agent process to one CPU (timers armed here fire on that CPU)
- ``serve`` name (listener), resp: answer requests on every accepted connection in
  background threads (protocol below); ``serve_stats``: what the server threads saw
- ``traffic`` addr, port, plan, workers, req: run the client side of ``plan`` (a list of
  ``[requests, "C"|"S"]``: how many requests on one connection, and who closes first)
  with ``workers`` threads; answers the local ports used. ``interval`` (seconds, default 0):
  the connections start at most that often (paced, for a steady rate)

Request/response protocol of ``serve``/``traffic``: a request is ``req`` bytes ending in
a newline whose first byte is ``K`` (more requests follow), ``C`` (last request: the
client closes after the response) or ``S`` (last request: the server closes right after
its response, the client closes on end of file). The response is ``resp`` bytes.
- ``exit``: answer, then ``os._exit`` with every socket still open (the kernel closes them)

Only the standard library is used: this file runs with the system Python in a namespace.
"""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import sys
import threading
import time
from typing import Any

_SOCKS: dict[str, socket.socket] = {}


def _family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _addr(sa: Any) -> list[Any] | None:
    if not sa:
        return None
    return [sa[0], sa[1]]


def _info(s: socket.socket) -> dict[str, Any]:
    out: dict[str, Any] = {"fd": s.fileno()}
    try:
        out["local"] = _addr(s.getsockname())
    except OSError:
        out["local"] = None
    try:
        out["remote"] = _addr(s.getpeername())
    except OSError:
        out["remote"] = None
    return out


def _err(exc: OSError) -> dict[str, Any]:
    code = exc.errno
    name = errno.errorcode.get(code, str(code)) if code is not None else type(exc).__name__
    return {"ok": False, "error": name, "detail": str(exc)}


def _new_socket(family: socket.AddressFamily) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return s


def op_ping(_: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "pid": os.getpid()}


def op_socket(c: dict[str, Any]) -> dict[str, Any]:
    fam = socket.AF_INET6 if int(c.get("family", 4)) == 6 else socket.AF_INET
    _SOCKS[c["name"]] = _new_socket(fam)
    return {"ok": True}


def op_bind_only(c: dict[str, Any]) -> dict[str, Any]:
    s = _new_socket(_family(c["addr"]))
    _SOCKS[c["name"]] = s
    s.bind((c["addr"], int(c["port"])))
    return {"ok": True, **_info(s)}


def op_listen(c: dict[str, Any]) -> dict[str, Any]:
    s = _new_socket(_family(c["addr"]))
    if s.family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((c["addr"], int(c["port"])))
    s.listen(int(c.get("backlog", 8)))
    _SOCKS[c["name"]] = s
    return {"ok": True, **_info(s)}


def op_accept(c: dict[str, Any]) -> dict[str, Any]:
    ls = _SOCKS[c["name"]]
    r, _, _ = select.select([ls], [], [], float(c.get("timeout", 5.0)))
    if not r:
        return {"ok": False, "error": "TIMEOUT", "detail": "nothing to accept"}
    s, _peer = ls.accept()
    _SOCKS[c["as"]] = s
    return {"ok": True, **_info(s)}


def op_connect(c: dict[str, Any]) -> dict[str, Any]:
    name = c["name"]
    s = _SOCKS.get(name)
    if s is None:
        s = _new_socket(_family(c["addr"]))
        _SOCKS[name] = s
    if c.get("bind_addr") is not None or c.get("bind_port"):
        s.bind((c.get("bind_addr") or "", int(c.get("bind_port") or 0)))
    blocking = bool(c.get("blocking", True))
    if blocking:
        s.settimeout(float(c.get("timeout", 5.0)))
        try:
            s.connect((c["addr"], int(c["port"])))
        except TimeoutError:
            return {"ok": False, "error": "TIMEOUT", "detail": "connect timed out", **_info(s)}
        finally:
            s.settimeout(None)
        return {"ok": True, **_info(s)}
    s.setblocking(False)
    rc = s.connect_ex((c["addr"], int(c["port"])))
    s.setblocking(True)
    return {"ok": rc in (0, errno.EINPROGRESS), "errno": errno.errorcode.get(rc, str(rc)),
            **_info(s)}


def op_wait_connect(c: dict[str, Any]) -> dict[str, Any]:
    s = _SOCKS[c["name"]]
    _, w, _ = select.select([], [s], [], float(c.get("timeout", 5.0)))
    if not w:
        return {"ok": False, "error": "TIMEOUT", "detail": "still connecting"}
    rc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if rc:
        return {"ok": False, "error": errno.errorcode.get(rc, str(rc)), "detail": os.strerror(rc)}
    return {"ok": True, **_info(s)}


def op_send(c: dict[str, Any]) -> dict[str, Any]:
    s = _SOCKS[c["name"]]
    n = int(c.get("n", 100))
    data = (bytes(range(0x61, 0x61 + 26)) * (n // 26 + 1))[:n]
    if c.get("background"):  # more than the socket buffers hold: the peer reads meanwhile
        threading.Thread(target=s.sendall, args=(data,), daemon=True).start()
    else:
        s.sendall(data)
    return {"ok": True, "sent": n}


def op_recv(c: dict[str, Any]) -> dict[str, Any]:
    s = _SOCKS[c["name"]]
    want = c.get("n", "all")
    limit = 1 << 30 if want == "all" else int(want)
    deadline = time.monotonic() + float(c.get("timeout", 1.0))
    got = 0
    eof = False
    while got < limit:
        left = deadline - time.monotonic()
        r, _, _ = select.select([s], [], [], max(0.0, left) if got == 0 else 0.05)
        if not r:
            break
        chunk = s.recv(min(65536, limit - got))
        if not chunk:
            eof = True
            break
        got += len(chunk)
    return {"ok": True, "received": got, "eof": eof}


def op_close(c: dict[str, Any]) -> dict[str, Any]:
    _SOCKS.pop(c["name"]).close()
    return {"ok": True}


def op_shutdown(c: dict[str, Any]) -> dict[str, Any]:
    how = {"RD": socket.SHUT_RD, "WR": socket.SHUT_WR, "RDWR": socket.SHUT_RDWR}[c["how"]]
    _SOCKS[c["name"]].shutdown(how)
    return {"ok": True}


def op_linger0(c: dict[str, Any]) -> dict[str, Any]:
    import struct

    _SOCKS[c["name"]].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return {"ok": True}


def op_dup(c: dict[str, Any]) -> dict[str, Any]:
    s = _SOCKS[c["name"]]
    d = s.dup()
    _SOCKS[c["as"]] = d
    return {"ok": True, "fd": d.fileno(), "orig_fd": s.fileno()}


def op_info(c: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, **_info(_SOCKS[c["name"]])}


def op_keepalive(c: dict[str, Any]) -> dict[str, Any]:
    s = _SOCKS[c["name"]]
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, int(c.get("idle", 1)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, int(c.get("intvl", 1)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, int(c.get("cnt", 9)))
    return {"ok": True}


def op_pin(c: dict[str, Any]) -> dict[str, Any]:
    os.sched_setaffinity(0, {int(c.get("cpu", 0))})
    return {"ok": True, "cpus": sorted(os.sched_getaffinity(0))}


_SERVE: dict[str, Any] = {"conns": 0, "requests": 0, "server_closed": 0, "errors": []}
_SERVE_LOCK = threading.Lock()


def _read_line(s: socket.socket, buf: bytearray) -> bytes | None:
    """One newline-terminated request from ``s`` (None on end of file)."""
    while b"\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            return None
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line


def _serve_conn(s: socket.socket, resp: int) -> None:
    buf = bytearray()
    body = bytes([0x41 + i % 26 for i in range(resp)])
    try:
        while True:
            line = _read_line(s, buf)
            if line is None:
                break
            with _SERVE_LOCK:
                _SERVE["requests"] += 1
            s.sendall(body)
            if line[:1] == b"S":
                with _SERVE_LOCK:
                    _SERVE["server_closed"] += 1
                break
    except OSError as exc:
        with _SERVE_LOCK:
            _SERVE["errors"].append(str(exc))
    finally:
        s.close()


def op_serve(c: dict[str, Any]) -> dict[str, Any]:
    ls = _SOCKS[c["name"]]
    resp = int(c.get("resp", 80))

    def loop() -> None:
        while True:
            try:
                s, _peer = ls.accept()
            except OSError:
                return
            with _SERVE_LOCK:
                _SERVE["conns"] += 1
            threading.Thread(target=_serve_conn, args=(s, resp), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return {"ok": True}


def op_serve_stats(_: dict[str, Any]) -> dict[str, Any]:
    with _SERVE_LOCK:
        return {"ok": True, **{k: (list(v) if isinstance(v, list) else v)
                               for k, v in _SERVE.items()}}


def _client_conn(addr: str, port: int, requests: int, closer: str, req: int,
                 resp: int) -> int:
    s = socket.socket(_family(addr), socket.SOCK_STREAM)
    s.settimeout(10.0)
    try:
        s.connect((addr, port))
        local = s.getsockname()[1]
        for i in range(requests):
            last = i == requests - 1
            kind = (b"S" if closer == "S" else b"C") if last else b"K"
            s.sendall(kind + b"q" * (req - 2) + b"\n")
            got = 0
            while got < resp:
                chunk = s.recv(resp - got)
                if not chunk:
                    raise OSError(f"short response {got}/{resp}")
                got += len(chunk)
        if closer == "S" and s.recv(1) != b"":
            raise OSError("data after the response")
        return int(local)
    finally:
        s.close()


def op_traffic(c: dict[str, Any]) -> dict[str, Any]:
    plan = [(int(n), str(who)) for n, who in c["plan"]]
    workers = int(c.get("workers", 1))
    req, resp = int(c.get("req", 40)), int(c.get("resp", 80))
    ports: list[int | None] = [None] * len(plan)
    errors: list[str] = []
    nxt = iter(range(len(plan)))
    lock = threading.Lock()
    interval = float(c.get("interval", 0.0))
    t0 = time.monotonic()

    def worker() -> None:
        while True:
            with lock:
                i = next(nxt, None)
            if i is None:
                return
            if interval:
                time.sleep(max(0.0, t0 + i * interval - time.monotonic()))
            try:
                ports[i] = _client_conn(c["addr"], int(c["port"]), *plan[i], req, resp)
            except OSError as exc:
                with lock:
                    errors.append(f"{i}: {exc}")

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        return {"ok": False, "error": "TRAFFIC", "detail": "; ".join(errors[:5]),
                "ports": ports}
    return {"ok": True, "ports": ports}


def op_exit(_: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "exiting": True}


OPS = {name[3:]: fn for name, fn in globals().items() if name.startswith("op_")}


def main() -> None:
    out = sys.stdout
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
            fn = OPS[cmd["op"]]
            try:
                reply = fn(cmd)
            except OSError as exc:
                reply = _err(exc)
        except Exception as exc:  # noqa: BLE001 - report any bug to the controller
            reply = {"ok": False, "error": type(exc).__name__, "detail": str(exc)}
        out.write(json.dumps(reply) + "\n")
        out.flush()
        if reply.get("exiting"):
            os._exit(0)


if __name__ == "__main__":
    main()
