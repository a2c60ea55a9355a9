"""Segments as columns: the batch type the fast path hands to the driver.

Owns: `Batch`, a run of TCP segments stored as numpy arrays (one per `Segment` field, with
the addresses as integer keys), and the conversions between a batch and `Segment` tuples.
A batch built by any reader must give, through `Batch.segment`, exactly the `Segment` the
plain reader yields for that frame. Knows nothing of connection state.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from socket import AF_INET, AF_INET6, inet_ntop

import numpy as np

from tcplife.core.segment import Segment

#: IPv4 addresses are their own key (< 2**32); IPv6 addresses get 2**32 + an index.
V6_BASE = 1 << 32

_new_segment = tuple.__new__


@dataclass
class AddressBook:
    """Address key <-> text, shared by every batch of one read (keys stay stable)."""

    v6_keys: dict[bytes, int] = field(default_factory=dict)  #: packed IPv6 -> key
    names: dict[int, str] = field(default_factory=dict)  #: key -> text form
    text_keys: dict[str, int] = field(default_factory=dict)  #: text form -> key (a cache)
    #: `v6_hashes`' values so far
    _v6_hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64),
                                   init=False, repr=False, compare=False)

    def key_v6(self, packed: bytes) -> int:
        key = self.v6_keys.get(packed)
        if key is None:
            key = self.v6_keys[packed] = V6_BASE + len(self.v6_keys)
            self.names[key] = inet_ntop(AF_INET6, packed)
        return key

    def key_text(self, text: str) -> int:
        """The key of an address given as text (as in a `Segment`)."""
        key = self.text_keys.get(text)
        if key is None:
            if ":" in text:
                key = self.key_v6(ipaddress.IPv6Address(text).packed)
            else:
                key = int(ipaddress.IPv4Address(text))
            if len(self.text_keys) < 1 << 20:
                self.text_keys[text] = key
        return key

    def v6_hashes(self) -> np.ndarray:
        """Per IPv6 key (at ``key - V6_BASE``), a 64-bit hash of the address's text: the
        same for the same address in any read, where its key is not (keys number a read's
        addresses in the order it met them). Each address is hashed once."""
        have = len(self._v6_hashes)
        if have < len(self.v6_keys):
            names = self.names
            more = [int.from_bytes(hashlib.blake2b(names[V6_BASE + i].encode(),
                                                   digest_size=8).digest(), "little")
                    for i in range(have, len(self.v6_keys))]
            self._v6_hashes = np.concatenate((self._v6_hashes,
                                              np.array(more, dtype=np.uint64)))
        return self._v6_hashes

    def name(self, key: int) -> str:
        name = self.names.get(key)
        if name is None:
            name = self.names[key] = inet_ntop(AF_INET, key.to_bytes(4, "big"))
        return name


@dataclass
class Batch:
    """``n`` TCP segments in capture order, as columns (all int64 unless noted)."""

    book: AddressBook
    frame: np.ndarray
    ts_ns: np.ndarray
    ip_version: np.ndarray
    src: np.ndarray  #: address key (uint64 values, stored int64)
    sport: np.ndarray
    dst: np.ndarray
    dport: np.ndarray
    seq: np.ndarray
    ack: np.ndarray
    flags: np.ndarray
    payload_len: np.ndarray
    window: np.ndarray
    wscale: np.ndarray
    tsval: np.ndarray  #: TCP timestamp option's TSval, -1 when absent
    tsecr: np.ndarray  #: TCP timestamp option's TSecr, -1 when absent

    COLUMNS = ("frame", "ts_ns", "ip_version", "src", "sport", "dst", "dport", "seq", "ack",
               "flags", "payload_len", "window", "wscale", "tsval", "tsecr")

    def __len__(self) -> int:
        return len(self.frame)

    @staticmethod
    def joined(parts: Sequence[Batch]) -> Batch:
        """Batches of one `AddressBook`, one after the other, as one."""
        return Batch(parts[0].book, *(np.concatenate([getattr(p, c) for p in parts])
                                      for c in Batch.COLUMNS))

    def rows(self, start: int, stop: int) -> Batch:
        """Rows ``start:stop`` (views of the same columns)."""
        return Batch(self.book, *(getattr(self, c)[start:stop] for c in self.COLUMNS))

    def segment(self, i: int) -> Segment:
        """Row ``i`` as the `Segment` the plain reader yields for it."""
        name = self.book.name
        return _new_segment(Segment, (
            int(self.frame[i]), int(self.ts_ns[i]), int(self.ip_version[i]),
            name(int(self.src[i])), int(self.sport[i]), name(int(self.dst[i])),
            int(self.dport[i]), int(self.seq[i]), int(self.ack[i]), int(self.flags[i]),
            int(self.payload_len[i]), int(self.window[i]), int(self.wscale[i]),
            int(self.tsval[i]), int(self.tsecr[i])))

    def segments(self, rows: Sequence[int] | np.ndarray | None = None) -> list[Segment]:
        """The `Segment`s of ``rows`` (all rows by default), built column-wise."""
        idx = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        name = self.book.name
        cols = [getattr(self, c)[idx].tolist() for c in self.COLUMNS]
        cols[3] = [name(k) for k in cols[3]]
        cols[5] = [name(k) for k in cols[5]]
        return [_new_segment(Segment, row) for row in zip(*cols, strict=True)]

    @classmethod
    def from_segments(cls, segments: Sequence[Segment], book: AddressBook) -> Batch:
        """A batch holding ``segments`` (any reader's output; used by tests and as the
        slow path's adapter)."""
        cols: dict[str, np.ndarray] = {}
        for j, c in enumerate(cls.COLUMNS):
            values = [s[j] for s in segments]
            if c in ("src", "dst"):
                values = [book.key_text(v) for v in values]
            cols[c] = np.array(values, dtype=np.int64)
        return cls(book, **cols)


def distinct(values: np.ndarray) -> list[int]:
    """The distinct values of an integer array in ascending order, as a list: what
    ``np.unique(values).tolist()`` gives. (``np.unique`` without a ``return_*`` flag asks
    ``np.ma.is_masked``, and numpy 2 then imports ``numpy.ma``: ~16 ms of a small
    capture's run.)"""
    if not len(values):
        return []
    ordered = np.sort(values, kind="stable")
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep].tolist()
