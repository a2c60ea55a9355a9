"""Read statistics: what the capture layer saw, kept, skipped and why.

Owns: `ReadStats`, plain counters that the record reader and the decoder bump as they go,
plus human-readable warnings. Every frame ends in exactly one of `tcp_segments`,
`non_tcp`, `fragments` or `undecodable`, so those four always add up to `frames`;
`truncated`, `short_frames`, `bad_checksums` and `unverified_checksums` are sub-counts of
`tcp_segments`.
Must not know about file formats, packet layouts or connection state.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

#: Warnings of one kind per read (a file) beyond which the rest are not reported: a crafted
#: capture could otherwise print one per packet. The last one reported says so.
MAX_SIMILAR_WARNINGS = 10


@dataclass
class ReadStats:
    """Counters for one or more reads; `merge` adds another read's counters in."""

    frames: int = 0  #: every frame read, TCP or not (the last Wireshark frame.number)
    tcp_segments: int = 0  #: frames that became a `Segment`
    non_tcp: int = 0  #: ARP, UDP, ICMP, other ethertypes / IP protocols
    fragments: int = 0  #: IP fragments other than the first (no TCP header in them)
    undecodable: int = 0  #: link/IP/TCP headers unparseable or unknown link type
    truncated: int = 0  #: segments cut by the snap length, used for their TCP header
    short_frames: int = 0  #: IP length > frame on the wire: payload clamped (as Wireshark)
    bad_checksums: int = 0  #: TCP checksum verified and wrong (segment still yielded)
    #: `bad_checksums` by the sending address (all of one sender's: checksum offload)
    bad_checksum_senders: Counter[str] = field(default_factory=Counter)
    unverified_checksums: int = 0  #: checksum not checked: truncated or fragmented
    link_types: Counter[int] = field(default_factory=Counter)  #: linktype -> frames
    first_ts_ns: int | None = None  #: timestamp of the first frame, integer ns
    last_ts_ns: int | None = None  #: timestamp of the last frame, integer ns
    warnings: list[str] = field(default_factory=list)  #: human sentences, file and frame

    def merge(self, other: ReadStats) -> ReadStats:
        """Add `other`'s counts into this one (in place) and return self."""
        self.frames += other.frames
        self.tcp_segments += other.tcp_segments
        self.non_tcp += other.non_tcp
        self.fragments += other.fragments
        self.undecodable += other.undecodable
        self.truncated += other.truncated
        self.short_frames += other.short_frames
        self.bad_checksums += other.bad_checksums
        self.bad_checksum_senders.update(other.bad_checksum_senders)
        self.unverified_checksums += other.unverified_checksums
        self.link_types.update(other.link_types)
        if other.first_ts_ns is not None and (
            self.first_ts_ns is None or other.first_ts_ns < self.first_ts_ns
        ):
            self.first_ts_ns = other.first_ts_ns
        if other.last_ts_ns is not None and (
            self.last_ts_ns is None or other.last_ts_ns > self.last_ts_ns
        ):
            self.last_ts_ns = other.last_ts_ns
        self.warnings.extend(other.warnings)
        return self
