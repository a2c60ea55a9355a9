"""Wireshark's view of a capture: which ``tcp.stream`` each TCP segment belongs to.

Owns: `WiresharkStreams`, a replay of how Wireshark's TCP dissector (epan/dissectors/
packet-tcp.c) numbers conversations: ``tcp.stream`` counts conversations from 0 in the
order of their first packet; a conversation is a 4-tuple, either direction; a new one
starts on the same 4-tuple when a SYN (without ACK) carries a sequence number other than the
base sequence number of its direction ("port reuse"; a SYN-ACK never starts one). The base
of a direction is set by its first packet, or before that by the other direction's first
acknowledgment (ack - 1). Checked against tshark 4.0 on every capture of the test corpus
(tests/test_wireshark.py). Knows nothing of tcplife's connection instances: the tracker
compares the two numberings.
"""

from __future__ import annotations

from collections.abc import Callable

from tcplife.core.segment import ACK, RST, SYN, Segment

_MASK = 0xFFFFFFFF


class _Conversation:
    """One conversation: its number and the base sequence number of each direction (None
    until set); direction ``a`` is the one whose segment started it."""

    __slots__ = ("stream", "a_addr", "a_port", "base_a", "base_b")

    def __init__(self, stream: int, seg: Segment) -> None:
        self.stream = stream
        self.a_addr, self.a_port = seg.src, seg.sport
        self.base_a: int | None = None
        self.base_b: int | None = None

    def sent_by_a(self, seg: Segment) -> bool:
        return seg.sport == self.a_port and seg.src == self.a_addr


class WiresharkStreams:
    """Feed every TCP segment in capture order; `feed` returns its ``tcp.stream`` (also
    kept as `current`). ``on_new(stream, seg)``, if given, is told of each new stream and
    the segment that starts it."""

    __slots__ = ("_conv", "_next", "current", "on_new")

    def __init__(self, on_new: Callable[[int, Segment], None] | None = None) -> None:
        self._conv: dict[tuple[str, int, str, int], _Conversation] = {}
        self._next = 0
        self.current = -1  #: the stream of the segment fed last
        self.on_new = on_new

    def _new(self, seg: Segment) -> _Conversation:
        conv = _Conversation(self._next, seg)
        self._next += 1
        if self.on_new is not None:
            self.on_new(conv.stream, seg)
        self._conv[(seg.src, seg.sport, seg.dst, seg.dport)] = conv
        self._conv[(seg.dst, seg.dport, seg.src, seg.sport)] = conv
        return conv

    def feed(self, seg: Segment) -> int:
        conv = self._conv.get((seg.src, seg.sport, seg.dst, seg.dport))
        flags = seg.flags
        if conv is None:
            conv = self._new(seg)
        elif flags & (SYN | ACK | RST) == SYN:
            base = conv.base_a if conv.sent_by_a(seg) else conv.base_b
            if base is not None and seg.seq != base:
                conv = self._new(seg)  # port reuse: a new conversation on the 4-tuple
        if conv.sent_by_a(seg):
            if conv.base_a is None:
                conv.base_a = seg.seq
            if flags & ACK and conv.base_b is None and not flags & RST:
                conv.base_b = (seg.ack - 1) & _MASK
        else:
            if conv.base_b is None:
                conv.base_b = seg.seq
            if flags & ACK and conv.base_a is None and not flags & RST:
                conv.base_a = (seg.ack - 1) & _MASK
        self.current = conv.stream
        return conv.stream
