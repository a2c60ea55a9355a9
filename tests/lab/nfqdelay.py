"""NFQUEUE delay line for the kernel lab's router: holds queued packets, then accepts them.

Owns: talking nfnetlink_queue directly over a netlink socket (standard library only, no
libnetfilter_queue binding): bind queues, copy the first bytes of each packet, and give
each packet its verdict (NF_ACCEPT) a fixed delay after it arrived. Nothing is ever
dropped. Started by `netlab.DelayQueue` in the router namespace as::

    python3 nfqdelay.py QUEUE:SECONDS [QUEUE:SECONDS ...]

It prints ``ready`` once every queue is bound, then one line per packet: ``HELD q=N id=I
in=T out=T flags=0xFF SRC:PORT>DST:PORT``, and exits on SIGTERM or SIGINT (packets still
held are accepted first). The router's nftables rules decide which packets are queued
(``... queue num N``); this process only delays them.

Protocol (include/uapi/linux/netfilter/nfnetlink_queue.h): messages of subsystem
NFNL_SUBSYS_QUEUE (3) with an nfgenmsg whose res_id is the queue number (big endian);
NFQNL_MSG_CONFIG (2) with NFQA_CFG_CMD {BIND} and NFQA_CFG_PARAMS {copy_range,
NFQNL_COPY_PACKET}; the kernel sends NFQNL_MSG_PACKET (0) with NFQA_PACKET_HDR {packet_id,
hw_protocol, hook} and NFQA_PAYLOAD (the IP packet); we answer NFQNL_MSG_VERDICT (1) with
NFQA_VERDICT_HDR {verdict, id}.
"""

from __future__ import annotations

import heapq
import ipaddress
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_PAYLOAD = 1, 2, 10
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_PACKET = 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NF_ACCEPT = 1
COPY_RANGE = 128

_STOP = False


def _attr(kind: int, data: bytes) -> bytes:
    size = 4 + len(data)
    return struct.pack("=HH", size, kind) + data + b"\0" * (-size % 4)


def _message(msg: int, queue: int, attrs: list[bytes], flags: int = NLM_F_REQUEST,
             seq: int = 0) -> bytes:
    body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack(">H", queue) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq,
                       0) + body


def _messages(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, seq, payload after the netlink header) of every message in ``data``."""
    out, pos = [], 0
    while pos + 16 <= len(data):
        length, kind, _flags, seq, _pid = struct.unpack("=IHHII", data[pos:pos + 16])
        if length < 16:
            break
        out.append((kind, seq, data[pos + 16:pos + length]))
        pos += (length + 3) & ~3
    return out


def _attrs(data: bytes) -> dict[int, bytes]:
    out, pos = {}, 0
    while pos + 4 <= len(data):
        size, kind = struct.unpack("=HH", data[pos:pos + 4])
        if size < 4:
            break
        out[kind & 0x3FFF] = data[pos + 4:pos + size]
        pos += (size + 3) & ~3
    return out


def _request(sock: socket.socket, queue: int, attrs: list[bytes], seq: int) -> None:
    """Send a config message and wait for its acknowledgment (raise on an error)."""
    sock.send(_message(NFQNL_MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq))
    while True:
        for kind, got_seq, payload in _messages(sock.recv(65536)):
            if kind == NLMSG_ERROR and got_seq == seq:
                err = struct.unpack("=i", payload[:4])[0]
                if err:
                    raise OSError(-err, f"nfqueue config of queue {queue} failed")
                return


def _describe(packet: bytes) -> tuple[int, str]:
    """(TCP flags, "src:port>dst:port") of an IPv4 or IPv6 packet (0, "?" if not TCP)."""
    if not packet:
        return 0, "?"
    if packet[0] >> 4 == 4:
        ihl = (packet[0] & 15) * 4
        proto, src, dst = packet[9], packet[12:16], packet[16:20]
    else:
        ihl, proto, src, dst = 40, packet[6], packet[8:24], packet[24:40]
    if proto != 6 or len(packet) < ihl + 14:
        return 0, "?"
    sport, dport = struct.unpack(">HH", packet[ihl:ihl + 4])
    return packet[ihl + 13], (f"{ipaddress.ip_address(src)}:{sport}>"
                              f"{ipaddress.ip_address(dst)}:{dport}")


def main(argv: list[str]) -> int:
    delays = {int(q): float(d) for q, d in (a.split(":") for a in argv)}
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, 0))
    for i, queue in enumerate(delays):
        cmd = struct.pack("=BB", NFQNL_CFG_CMD_BIND, 0) + struct.pack(">H", socket.AF_INET)
        _request(sock, queue, [_attr(NFQA_CFG_CMD, cmd)], 2 * i + 1)
        params = struct.pack(">IB", COPY_RANGE, NFQNL_COPY_PACKET)
        _request(sock, queue, [_attr(NFQA_CFG_PARAMS, params)], 2 * i + 2)

    def stop(signum: int, frame: object) -> None:
        global _STOP
        _STOP = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    held: list[tuple[float, int, int, str]] = []  # (release time, queue, id, log line)
    while True:
        now = time.time()
        while held and (held[0][0] <= now or _STOP):
            release, queue, pid, line = heapq.heappop(held)
            verdict = _attr(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, pid))
            sock.send(_message(NFQNL_MSG_VERDICT, queue, [verdict]))
            print(f"{line} out={time.time():.6f}", flush=True)
        if _STOP:
            return 0
        timeout = max(0.0, held[0][0] - time.time()) if held else 0.2
        try:
            ready, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        if not ready:
            continue
        t_in = time.time()
        for kind, _seq, payload in _messages(sock.recv(1 << 16)):
            if kind != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                continue
            queue = struct.unpack(">H", payload[2:4])[0]
            attrs = _attrs(payload[4:])
            pid = struct.unpack(">I", attrs[NFQA_PACKET_HDR][:4])[0]
            flags, flow = _describe(attrs.get(NFQA_PAYLOAD, b""))
            line = f"HELD q={queue} id={pid} in={t_in:.6f} flags={flags:#04x} {flow}"
            heapq.heappush(held, (t_in + delays.get(queue, 0.0), queue, pid, line))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
