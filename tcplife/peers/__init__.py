"""What Zeek, Wireshark and Suricata would say about each connection instance.

Owns: `PeerObserver`, the tracker's observer (`tcplife.core.observe`) that numbers every
segment's Wireshark ``tcp.stream`` and gives each connection instance its `Peers`; `Peers`,
the per-connection bundle of recorders the tracker feeds (Zeek's history and
endpoint states, for each Zeek connection the instance makes; Suricata's session state; the
Wireshark ``tcp.stream`` numbers the instance's segments fall in), and `PeerSummary`, what
ends up in the connection's record.
The recorders live in `tcplife.peers.zeek`, `tcplife.peers.suricata` and
`tcplife.peers.wireshark`; the conn.log writer in `tcplife.peers.zeek_log`.

Sans-IO like the tracker: segments in, small values out; no pandas here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tcplife.core.observe import Observer
from tcplife.core.segment import Segment
from tcplife.peers.suricata import SuricataRecorder
from tcplife.peers.wireshark import WiresharkStreams
from tcplife.peers.zeek import ZeekRecord, ZeekReplay, records_json

__all__ = ["PeerObserver", "PeerSummary", "Peers", "WiresharkStreams", "ZeekRecord"]


@dataclass(slots=True)
class PeerSummary:
    """The peers' verdicts on one connection instance. The ``zeek_*`` values describe the
    first Zeek connection of the instance; Zeek's inactivity timer may split the instance
    into more (`zeek_later`, in order)."""

    zeek_conn_state: str
    zeek_history: str
    zeek_orig: str  #: which tcplife side Zeek calls the originator: "client" or "server"
    zeek_orig_bytes: int  #: Zeek's orig_bytes / resp_bytes (from sequence numbers)
    zeek_resp_bytes: int
    zeek_duration_ns: int  #: Zeek's duration (stops once both sides closed)
    tcp_stream: int  #: Wireshark's tcp.stream of the instance's first segment
    #: every tcp.stream the instance's segments fall in (more than one: Wireshark splits it)
    tcp_streams: list[int] = field(default_factory=list)
    suricata_state: str = "none"
    #: the Zeek connections after the first (Zeek's inactivity timer expired between two
    #: packets of the instance); empty almost always
    zeek_later: tuple[ZeekRecord, ...] = ()

    @property
    def zeek_records(self) -> int:
        """How many Zeek connections (conn.log lines) the instance makes."""
        return 1 + len(self.zeek_later)

    @property
    def zeek_later_json(self) -> str:
        """`zeek_later` as JSON (`tcplife.peers.zeek.records_json`): "" when empty."""
        return records_json(self.zeek_later)


class Peers:
    """The recorders of one connection instance."""

    __slots__ = ("zeek", "suricata", "streams", "first_stream", "wireshark")

    def __init__(self, seg: Segment, sender_is_client: bool,
                 wireshark: WiresharkStreams) -> None:
        self.wireshark = wireshark  #: whose `current` stream each fed segment is in
        self.zeek = ZeekReplay(seg, sender_is_client)
        self.suricata = SuricataRecorder()
        self.first_stream = -1
        #: further tcp.streams (Wireshark split the instance); None while only the first
        self.streams: set[int] | None = None

    def feed(self, seg: Segment, from_client: bool) -> None:
        """One segment of this instance (its Wireshark ``tcp.stream`` was just numbered)."""
        stream = self.wireshark.current
        self.zeek.process(seg, from_client)
        self.suricata.process(seg, from_client)
        if self.first_stream < 0:
            self.first_stream = stream
        elif stream != self.first_stream:
            if self.streams is None:
                self.streams = set()
            self.streams.add(stream)

    def quiet(self, client_nxt: int | None, server_nxt: int | None,
              client_max_ack: int | None, server_max_ack: int | None) -> bool:
        """May a run of in-order ACK/data segments be absorbed without `feed`?"""
        return self.suricata.quiet() and self.zeek.quiet(client_nxt, server_nxt,
                                                         client_max_ack, server_max_ack)

    def fast_rows(self) -> tuple[tuple[bool, bool], tuple[bool, bool]]:
        """[from_client][has_payload] -> False while such a segment, absorbed, must still
        record Zeek's first ``A`` / ``D`` of its side (`first_letter`)."""
        return self.zeek.fast_rows()

    def first_letter(self, from_client: bool, data: bool) -> None:
        """An absorbed segment is its side's first ACK (``A``) or data (``D``) packet."""
        self.zeek.first_letter(from_client, data)

    def inactivity_ns(self) -> int:
        """A run absorbed in bulk must stop at a segment this long or longer after the
        previous one: Zeek's inactivity timer makes it start a new Zeek connection."""
        return self.zeek.inactivity_ns()

    def absorbed(self, client_nxt: int, server_nxt: int, client_max_ack: int,
                 server_max_ack: int, last_ns: int, client_pkts: int = 0,
                 server_pkts: int = 0) -> None:
        """A run was absorbed: the sides' maxima and last time after it, and how many
        packets of each side it held."""
        self.zeek.absorbed(client_nxt, server_nxt, client_max_ack, server_max_ack, last_ns,
                           client_pkts, server_pkts)
        self.suricata.absorbed(client_nxt, server_nxt)

    def summary(self) -> PeerSummary:
        first, *later = self.zeek.records()
        return PeerSummary(
            zeek_conn_state=first.conn_state, zeek_history=first.history,
            zeek_orig=first.orig, zeek_orig_bytes=first.orig_bytes,
            zeek_resp_bytes=first.resp_bytes, zeek_duration_ns=first.duration_ns,
            tcp_stream=self.first_stream,
            tcp_streams=sorted({self.first_stream, *(self.streams or ())}
                               - {-1}), suricata_state=self.suricata.state,
            zeek_later=tuple(later))


class PeerObserver(Observer):
    """The peers' view of a tracker's input: Wireshark numbers every segment's
    ``tcp.stream`` (`segment`), and each connection instance gets its `Peers` (`opened`).
    ``on_new_stream(stream, seg)`` is told of each new ``tcp.stream`` (the Dask engine
    numbers them across partitions)."""

    __slots__ = ("wireshark",)

    def __init__(self, on_new_stream: Callable[[int, Segment], None] | None = None) -> None:
        self.wireshark = WiresharkStreams(on_new_stream)
        if type(self).segment is PeerObserver.segment:  # one call per segment, not two
            self.segment = self.wireshark.feed  # type: ignore[method-assign,assignment]

    def segment(self, seg: Segment) -> None:
        self.wireshark.feed(seg)

    def opened(self, conn_id: int, seg: Segment, sender_is_client: bool) -> Peers:
        return Peers(seg, sender_is_client, self.wireshark)
