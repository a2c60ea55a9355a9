"""A small script builder for TCP conversations, with correct seq/ack, for table-level tests.

Each side keeps what it has sent (snd_nxt) and what it has received (rcv_nxt); a segment
can be lost after the capture point (captured, never delivered) or before it (delivered
nowhere, never captured), or be delivered but missed by the capture, so tests can express
what a vantage point sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from tcplife.core.events import Anomaly
from tcplife.core.options import Options
from tcplife.core.segment import ACK, FIN, RST, SYN, Segment
from tcplife.engines import wiring
from tcplife.output import frames
from tcplife.output.frames import Collector, state_at

MASK = 0xFFFFFFFF


@dataclass
class Host:
    addr: str
    port: int
    isn: int
    snd_nxt: int = 0
    rcv_nxt: int | None = None
    ts_recent: int = 0  #: the newest TSval received from the peer (with Conv.timestamps)

    def __post_init__(self) -> None:
        self.snd_nxt = self.isn


@dataclass
class Conv:
    client: Host = field(default_factory=lambda: Host("10.0.0.1", 40000, 1000))
    server: Host = field(default_factory=lambda: Host("10.0.0.2", 80, 900_000))
    t: float = 1_700_000_000.0
    frame: int = 0
    segments: list[Segment] = field(default_factory=list)
    #: give every segment a TCP timestamp option: TSval the sender's millisecond clock
    #: (``t`` in ms plus ``ts_base``), TSecr the newest TSval it had received
    timestamps: bool = False
    ts_base: int = 0

    def send(self, who: str, flags: int, data: int = 0, *, dt: float = 0.01,
             lost: str | None = None, seq: int | None = None, ack: int | None = None,
             wscale: int = -1, window: int = 65535, tsval: int | None = None,
             tsecr: int | None = None) -> Segment:
        """``who`` ('c' or 's') sends a segment. ``lost``: None (delivered and captured),
        'after' (captured, not delivered), 'before' (not captured, not delivered),
        'unseen' (delivered, not captured: the capture dropped it). ``tsval``/``tsecr``:
        the timestamp option's values (default: absent, or as `timestamps` makes them)."""
        src, dst = (self.client, self.server) if who == "c" else (self.server, self.client)
        self.t += dt
        s = src.snd_nxt if seq is None else seq
        if ack is None:
            ack = src.rcv_nxt if src.rcv_nxt is not None else 0
        if ack and not flags & RST:
            flags |= ACK
        if self.timestamps:
            tsval = (int(self.t * 1000) + self.ts_base) & MASK if tsval is None else tsval
            tsecr = src.ts_recent if tsecr is None else tsecr
        tsval = -1 if tsval is None else tsval
        tsecr = -1 if tsecr is None else tsecr
        seg_len = data + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        if seq is None and not flags & RST:
            src.snd_nxt = (s + seg_len) & MASK
        if lost is None or lost == "after":
            self.frame += 1
            seg = Segment(self.frame, int(round(self.t * 1e9)), 4, src.addr, src.port,
                          dst.addr, dst.port, s, ack & MASK, flags, data, window, wscale,
                          tsval, tsecr)
            self.segments.append(seg)
        else:
            seg = None
        if lost in (None, "unseen") and tsval >= 0:
            dst.ts_recent = tsval
        if lost in (None, "unseen") and not flags & RST:
            end = (s + seg_len) & MASK
            if flags & SYN:
                dst.rcv_nxt = end
            elif (dst.rcv_nxt is not None and ((end - dst.rcv_nxt) & MASK) < (1 << 31)
                  and ((dst.rcv_nxt - s) & MASK) < (1 << 31)):
                dst.rcv_nxt = end  # in order (or overlapping): delivered up to ``end``
        return seg  # type: ignore[return-value]

    def c(self, flags: int = 0, data: int = 0, **kw: object) -> Segment:
        return self.send("c", flags, data, **kw)  # type: ignore[arg-type]

    def s(self, flags: int = 0, data: int = 0, **kw: object) -> Segment:
        return self.send("s", flags, data, **kw)  # type: ignore[arg-type]

    def wait(self, seconds: float) -> None:
        self.t += seconds

    def handshake(self) -> None:
        self.c(SYN, ack=0)
        self.s(SYN | ACK)
        self.c(ACK)

    def now(self) -> float:
        return self.t


@dataclass
class Run:
    connections: pd.DataFrame
    transitions: pd.DataFrame
    oddities: pd.DataFrame
    anomalies: list[Anomaly]

    def path(self, side: str, conn_id: int = 0) -> list[str]:
        """The states a side went through, starting from its initial state."""
        conn = self.connections.set_index("conn_id").loc[conn_id]
        t = self.transitions
        rows = t[(t.conn_id == conn_id) & (t.side == side)]
        return [str(conn[f"{side}_initial_state"])] + [str(s) for s in rows.to_state]

    def final(self, side: str, conn_id: int = 0) -> str:
        return str(self.connections.set_index("conn_id").loc[conn_id][f"{side}_state"])

    def at(self, ts: float) -> dict[tuple[int, str], str]:
        snap = state_at(self.connections, self.transitions, ts)
        return {(int(r.conn_id), str(r.side)): str(r.state) for r in snap.itertuples()}


def run(segments: list[Segment], **opts: float) -> Run:
    """The tracker and the anomaly detectors over scripted segments, as `analyze` wires
    them (the capture ends with the last segment)."""
    options = Options(**opts)
    col = Collector()
    wiring.run(wiring.new_tracker(options), segments, col.add,
               end_ns=segments[-1].ts_ns if segments else None)
    return Run(frames.connections_frame(col), frames.transitions_frame(col),
               frames.oddities_frame(col), list(col.anomalies))


__all__ = ["ACK", "Conv", "FIN", "RST", "Run", "SYN", "run"]
