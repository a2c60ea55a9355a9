"""Read statistics: what the capture layer saw, kept, skipped and why.

Owns: `ReadStats`, plain counters that the record reader and the decoder bump as they go,
plus human-readable warnings, plus the frame map: which file and which frame of it each
frame number of the read stands for. Every frame ends in exactly one of `filtered_out`,
`tcp_segments`, `non_tcp`, `fragments` or `undecodable`, so those five always add up to
`frames`; `truncated`, `short_frames`, `bad_checksums` and `unverified_checksums` are
sub-counts of `tcp_segments`.

The frame map. A read numbers frames from 1 in the order it delivers them (several
captures merged by time: `tcplife.capture.merge`). `files` names the files in that order
of first use, and three run-length lists say that from frame ``run_starts[k]`` on, frames
come one after the other from file ``run_files[k]`` (an index into `files`), starting at
its frame ``run_file_frames[k]``. One file is one run mapping to itself; a ring buffer's
files read one after the other cost one run each; files merged packet by packet, one run
per switch. `locate` and `locate_many` read it.
Must not know about file formats, packet layouts or connection state.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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
    filtered_out: int = 0  #: frames a capture filter (BPF) left out; they keep their numbers
    files: list[str] = field(default_factory=list)  #: files read, in order of first use
    run_starts: list[int] = field(default_factory=list)  #: frame map: first frame of a run
    run_files: list[int] = field(default_factory=list)  #: frame map: index into `files`
    run_file_frames: list[int] = field(default_factory=list)  #: its frame in that file

    def add_file(self, name: str) -> int:
        """Name a file of the read (appended to `files`); returns its index."""
        self.files.append(name)
        return len(self.files) - 1

    def add_run(self, start: int, file: int, file_frame: int) -> None:
        """From frame `start` on, frames come from file `file` (an index into `files`),
        from its frame `file_frame` on. Continues the last run where it can; a run given
        no frame (the next one starts at the same frame) is replaced."""
        if self.run_starts:
            last = len(self.run_starts) - 1
            if self.run_files[last] == file and \
                    self.run_file_frames[last] + start - self.run_starts[last] == file_frame:
                return
            if self.run_starts[last] == start:
                self.run_files[last], self.run_file_frames[last] = file, file_frame
                return
        self.run_starts.append(start)
        self.run_files.append(file)
        self.run_file_frames.append(file_frame)

    def locate(self, frame: int) -> tuple[str, int]:
        """(file, frame number within that file) of frame number `frame` of this read:
        what ``tshark -r FILE -Y frame.number==N`` finds. ValueError outside 1..frames."""
        if not 1 <= frame <= self.frames or not self.run_starts:
            raise ValueError(f"frame {frame} is not one of the {self.frames} frames read")
        k = bisect.bisect_right(self.run_starts, frame) - 1
        return (self.files[self.run_files[k]],
                self.run_file_frames[k] + frame - self.run_starts[k])

    def locate_many(self, frames: Sequence[int] | Any) -> tuple[Any, Any]:
        """`locate` for many frame numbers (a list or a numpy array): two int64 numpy
        arrays, the index into `files` of each frame's file and its frame number within
        that file; -1 and 0 where a frame is outside 1..frames (e.g. a null frame given
        as 0 or -1)."""
        import numpy as np

        f = np.asarray(frames, dtype=np.int64)
        starts = np.asarray(self.run_starts, dtype=np.int64)
        k = np.searchsorted(starts, f, side="right") - 1
        inside = (f >= 1) & (f <= self.frames) & (k >= 0)
        k = np.where(inside, k, 0)
        if not len(starts):
            return np.full(f.shape, -1, np.int64), np.zeros(f.shape, np.int64)
        file = np.where(inside, np.asarray(self.run_files, np.int64)[k], -1)
        local = np.where(inside, np.asarray(self.run_file_frames, np.int64)[k] + f - starts[k],
                         0)
        return file, local

    def merge(self, other: ReadStats, *, frame_map: bool = True) -> ReadStats:
        """Add `other`'s counts into this one (in place) and return self. `other`'s frames
        are taken to follow this one's (its files and runs are appended, shifted), unless
        ``frame_map=False`` (a merge by time sets the map itself)."""
        if frame_map:
            base = len(self.files)
            self.files.extend(other.files)
            for start, file, file_frame in zip(other.run_starts, other.run_files,
                                               other.run_file_frames, strict=True):
                self.add_run(start + self.frames, file + base, file_frame)
        self.filtered_out += other.filtered_out
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
