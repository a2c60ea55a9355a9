"""The fast capture reader: a capture source in, `Batch`es of TCP segments (numpy columns) out.

Owns: `read_batches` and its promise: concatenating ``batch.segments()`` over its batches
gives exactly what `read_segments` yields for the same input, its `ReadStats` end up equal
field by field (warnings included, in the same order), and it raises `CaptureError` exactly
when `read_segments` does. Owns how that is made fast, and nothing else: the file formats
stay defined by records.py (whose header checks, `_Input` warnings and `_interface` parser
are reused), frame decoding by decode.py (whose `Decoder` decodes every frame not decoded
in bulk here), the batch by columns.py. Knows nothing of connection state.

Every source goes through one pipeline: the capture after its file header is read into one
reusable numpy buffer, the complete records in it are walked and decoded in bulk, and so
on. An uncompressed regular file (a path, ``"-"`` redirected from a file, a file object)
is read straight into the buffer `_UNIT` bytes (4 MiB, or ``batch_bytes`` if smaller) at a
time, so that every pass over them hits the CPU cache, and a batch is yielded per
``batch_bytes`` of capture. Any other source (gzip, a pipe, any stream) is read exactly as
records.py reads it (same sizes, at the same moments), so it ends, fails or waits for more
input at the same byte; from a pipe or stream, a batch is yielded after every read, before
the next one may wait (a live ``tcpdump -w - |`` is not held back).

1. **Record walk in numpy.** pcap: every byte position whose 2 bytes equal the high half of
   the next record's ``ts_sec`` is a candidate header; pcapng: every 4-aligned word that
   reads 6 (an Enhanced Packet Block). Each candidate's length says where its successor
   starts; candidates without a predecessor are pruned, and the chain is checked link by
   link from the known start, so the records kept are exactly those a sequential walk
   finds. Where the chain breaks (another pcapng block type, a jump of ``ts_sec``'s high
   half, an odd interface timestamp resolution, damage, the buffer's end), records are
   walked one by one with records.py's checks, order and wording, then numpy takes over
   again (less eagerly after walks that found little). Damage ends the read where and with
   the warning the plain reader gives.
2. **Bulk decode.** The first 128 bytes of every frame are copied into one array (one row
   each; link header, IPv4 header with options, TCP header fit), and the fields and every
   counter are computed column-wise, as decode.py computes them: undecodable, non-TCP,
   fragments, truncated (snap length), unverified and bad checksums. The TCP checksum is
   one ``np.add.reduceat`` over 32-bit words per segment (addresses and segment are one
   range; little-endian words, which mod 0xFFFF is 256 times the big-endian sum); the
   window-scale option of SYNs and the timestamp option of every segment are
   `decode.window_scale`'s and `decode.timestamps`' walks, vectorised, with Linux's
   option layouts read directly. Link types in bulk: Ethernet with up to two VLAN tags,
   Linux SLL and SLL2, NULL/LOOP, raw IP (1, 113, 276, 0, 108, 12, 14, 101, 228, 229);
   IPv4 with or without options; IPv6 without extension headers.
3. **The rest one by one**: unknown link types, three or more VLAN tags, IPv4 first
   fragments (MF) and IP length 0 (TSO), IPv6 extension headers and length 0, frames
   shorter on the wire than their IP length go through the plain `Decoder`, in frame order
   (walk warnings re-ordered around its own), and are merged back by frame number.

A pcapng time beyond int64 nanoseconds (after the year 2262, or before 1678) is replaced
by the previous packet's, with records.py's warning, so every time fits a `Batch`. Where a
regular file fails to read (an I/O error), the plain reader and this one may stop at
different records: they read it in differently sized pieces.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from tcplife.core.segment import SYN, Segment

from .bpf import CaptureFilter, as_filter
from .columns import AddressBook, Batch, distinct
from .decode import Decoder
from .files import READ_ERRORS, OpenedCapture, Source, open_capture
from .records import (
    _ENDIANS,
    CHUNK,
    MAX_BLOCK_LEN,
    MAX_TS_NS,
    MIN_TS_NS,
    PCAPNG_BT_EPB,
    PCAPNG_BT_IDB,
    PCAPNG_BT_PB,
    PCAPNG_BT_SHB,
    PCAPNG_BT_SPB,
    _Endian,
    _Iface,
    _Input,
    _interface,
    _pcap_header,
    _pcapng_first_block,
    pcap_max_caplen,
)
from .stats import ReadStats

__all__ = ["read_batches"]

#: bytes read and decoded at a time (a batch is made of several when batch_bytes is larger):
#: small enough for every pass over them to find them in the CPU cache
_UNIT = 4 << 20
#: spare bytes after the valid data, so that every fixed-width row copy stays in bounds
#: (the widest is a checksum row of up to 128 KiB starting inside the data); what they
#: hold is never used
_SLACK = 1 << 17
#: most and fewest bytes one numpy record walk looks at (bounds its temporaries; after a
#: break in the chain it looks at twice what the last walk covered)
_WINDOW = 8 << 20
_MIN_WINDOW = 64 << 10
#: below this many bytes left in the buffer, records are walked one by one
_VECTOR_MIN = 256
#: records walked one by one where the numpy chain breaks, before it is tried again; twice
#: as many after each numpy walk that found fewer than `_GOOD_WALK` (up to `_MAX_STEPS`)
_PY_STEPS = 16
_MAX_STEPS = 4096
_GOOD_WALK = 64
_PRUNE_ROUNDS = 3

_NS = 1_000_000_000
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_I64 = np.int64
_EMPTY = np.zeros(0, _I64)

# per-frame classes after the link layer / IP header
_UNDECODABLE = 0
_NON_TCP = 1
_IRREGULAR = 2
_IPV4 = 4
_IPV6 = 6

_VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
_AF_INET6 = (10, 24, 28, 30)
_IPV6_NOT_TCP_YET = (0, 43, 60, 135, 139, 140, 44, 51)  # extension headers, fragment, AH
_ETHERNET = 1
_SLL = 113
_SLL2 = 276
_NULL = (0, 108)
_RAW = (12, 14, 101)
_RAW4 = 228
_RAW6 = 229
_POW2 = 1 << np.arange(20, dtype=_I64)


def _table(size: int, members: tuple[int, ...]) -> np.ndarray:
    table = np.zeros(size, bool)
    table[list(members)] = True
    return table


_IS_VLAN = _table(1 << 16, _VLAN_TPIDS)
_IS_AF_INET6 = _table(256, _AF_INET6)
_IS_IPV6_EXT = _table(256, _IPV6_NOT_TCP_YET)
#: TCP options of Linux SYNs (MSS, SACK permitted, timestamps, NOP, window scale): where
#: the window scale's shift sits when each of these bytes is as given
_LINUX_SYN = ((0, 2), (1, 4), (4, 4), (5, 2), (6, 8), (7, 10), (16, 1), (17, 3), (18, 3))


# --- entry ----------------------------------------------------------------------------


def read_batches(
    source: Source,
    stats: ReadStats | None = None,
    *,
    verify_checksums: bool = True,
    batch_bytes: int = 8 << 20,
    capture_filter: str | CaptureFilter | None = None,
    frame_times: bool = False,
) -> Iterator[Batch]:
    """Yield the TCP segments of a capture as `Batch`es, in capture order.

    Same arguments, same `CaptureError` (raised here, before anything is yielded) and same
    `stats` as `read_segments`; see the module docstring for the equivalence promised.
    Every batch holds at least one segment and all share one `AddressBook`. A batch covers
    about ``batch_bytes`` (at least 4 KiB) of capture; from a pipe or other stream that is
    not a regular file, whatever one read brought (nothing is held back waiting for more).

    ``frame_times=True`` (for `tcplife.capture.merge`) yields instead, per walk of the
    buffer, ``(batch or None, frames before it, time of each of its frames)``: the times
    of every frame the walk found, TCP or not, kept by the filter or not, in order.
    """
    if stats is None:
        stats = ReadStats()
    size = max(int(batch_bytes), 1 << 12)
    regular = _is_regular_file(source)
    opened = open_capture(source)
    closer: Callable[[], None] | None = None
    try:
        inp = _Input(opened, ReadStats())  # its warnings are collected, then re-ordered
        walker: _Walker
        if opened.kind == "pcap":
            endian, nano, linktype, snaplen = _pcap_header(opened)
            head = b""
            walker = _PcapWalker(inp, endian, nano, linktype, snaplen)
        else:
            head = _pcapng_first_block(opened)
            walker = _PcapngWalker(inp, head)
        base = 24 if opened.kind == "pcap" else 0
        readinto = None
        if regular and not opened.gzipped:
            readinto, closer = _readinto(source, base + len(head))
        stream = _Stream(opened.read_some, readinto, inp, min(size, _UNIT), base, head)
    except BaseException:
        if closer is not None:
            closer()
        opened.close()
        raise
    stats.add_run(stats.frames + 1, stats.add_file(opened.name), 1)
    bulk = _BulkDecoder(stats, Decoder(stats, opened.name, verify_checksums), AddressBook(),
                        verify_checksums, as_filter(capture_filter))
    if frame_times:
        return _timed_batches(opened, closer, stream, walker, bulk)  # type: ignore[return-value]
    return _batches(opened, closer, stream, walker, bulk, size if regular else 0)


def _is_regular_file(source: Source) -> bool:
    """Whether reads of `source` come from a regular file (full reads until its end)."""
    try:
        if isinstance(source, (str, os.PathLike)):
            if os.fspath(source) != "-":
                return stat.S_ISREG(os.stat(source).st_mode)
            fd = sys.stdin.buffer.fileno()
        else:
            fd = source.fileno()
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except (OSError, ValueError, AttributeError, TypeError):  # io.UnsupportedOperation too
        return False


def _readinto(
    source: Source, consumed: int
) -> tuple[Callable[[memoryview], int | None] | None, Callable[[], None] | None]:
    """A ``readinto`` that continues where the opened capture stands (None: use its
    read_some instead), and what closes it.

    A path is opened again, unbuffered, at `consumed` (the bytes the header checks took),
    which saves a copy per read; a file object (stdin too) is read through its own
    ``readinto``, which continues where its ``read1`` left off.
    """
    if isinstance(source, (str, os.PathLike)):
        if os.fspath(source) == "-":
            return getattr(sys.stdin.buffer, "readinto", None), None
        try:
            raw = open(source, "rb", buffering=0)  # noqa: SIM115 - closed with the capture
        except OSError:
            return None, None
        try:
            raw.seek(consumed)
        except OSError:
            raw.close()
            return None, None
        return raw.readinto, raw.close
    return getattr(source, "readinto", None), None


class _Packer:
    """`Batch.from_segments` with the address keys of the texts remembered (parsing an
    address each time would cost more than decoding the frame)."""

    def __init__(self, book: AddressBook) -> None:
        self.book = book
        self.keys: dict[str, int] = {}

    def key(self, text: str) -> int:
        key = self.keys.get(text)
        if key is None:
            if len(self.keys) >= 1 << 16:  # a scan can show millions of addresses
                self.keys.clear()
            key = self.keys[text] = self.book.key_text(text)
        return key

    def pack(self, segments: list[Segment]) -> Batch:
        cols = list(zip(*segments, strict=True))
        key = self.key
        arrays = [np.array([key(t) for t in c] if j in (3, 5) else c, _I64)
                  for j, c in enumerate(cols)]
        return Batch(self.book, *arrays)


def _walks(
    opened: OpenedCapture, closer: Callable[[], None] | None, stream: _Stream,
    walker: _Walker, bulk: _BulkDecoder,
) -> Iterator[tuple[_Records, Batch | None, int, bool]]:
    """Walk and decode what the buffer holds, then refill it, until the capture ends: per
    walk, its records, their batch (None: no TCP in them), the position the walk reached
    in the buffer (before the refill) and whether it was the last. Closes the capture
    when done or abandoned."""
    try:
        pos = 0
        while True:
            records, pos, need, done = walker.walk(stream, pos)
            yield records, bulk.batch(stream, records, walker.pending), pos, done
            if done:
                return
            stream.refill(pos, need)
            pos = 0
    finally:
        if closer is not None:
            closer()
        opened.close()


def _batches(
    opened: OpenedCapture, closer: Callable[[], None] | None, stream: _Stream,
    walker: _Walker, bulk: _BulkDecoder, batch_bytes: int,
) -> Iterator[Batch]:
    """`_walks`' batches, joined: a batch per `batch_bytes` of capture at most (0: after
    every refill, before a read that may block)."""
    parts: list[Batch] = []
    start = stream.base
    with contextlib.closing(_walks(opened, closer, stream, walker, bulk)) as walks:
        for _records, batch, pos, done in walks:
            if batch is not None:
                parts.append(batch)
            # another buffer's worth would take the batch past batch_bytes: yield it now
            if parts and (done or stream.base + pos - start + stream.size > batch_bytes):
                yield parts[0] if len(parts) == 1 else Batch.joined(parts)
                parts = []
                start = stream.base + pos


def _timed_batches(
    opened: OpenedCapture, closer: Callable[[], None] | None, stream: _Stream,
    walker: _Walker, bulk: _BulkDecoder,
) -> Iterator[tuple[Batch | None, int, np.ndarray]]:
    """`_walks`' batches one walk at a time, each with the times of all its frames."""
    with contextlib.closing(_walks(opened, closer, stream, walker, bulk)) as walks:
        for records, batch, _pos, _done in walks:
            times = records.ts_ns
            if records.huge:
                times = times.copy()
                for row, ts in records.huge.items():
                    times[row] = min(max(ts, _INT64_MIN), _INT64_MAX)
            if len(times) or batch is not None:
                yield batch, records.first_frame, times


# --- the buffer -------------------------------------------------------------------------


class _Stream:
    """The capture after its file header, held in one reusable numpy buffer.

    ``store[:n]`` is the data from file offset `base` on, followed by `_SLACK` spare bytes.
    `eof` is set when the input ended or a read failed (``inp.error``, as records.py).
    Reads go straight into the buffer when the source has ``readinto``.
    """

    def __init__(
        self, read: Callable[[int], bytes], readinto: Callable[[memoryview], int | None] | None,
        inp: _Input, size: int, base: int, head: bytes,
    ) -> None:
        self.read = read
        self.readinto = readinto
        self.inp = inp
        self.size = size
        self.base = base
        self.eof = False
        self.n = 0
        self._alloc(size)
        self.store[: len(head)] = np.frombuffer(head, np.uint8)
        self.n = len(head)

    def _alloc(self, size: int) -> None:
        store = np.zeros(size + _SLACK, np.uint8)
        if self.n:
            store[: self.n] = self.store[: self.n]
        self.store = store
        self.view = memoryview(store)
        self._rows: dict[int, np.ndarray] = {}

    def rows(self, at: np.ndarray, width: int) -> np.ndarray:
        """``store[a : a + width]`` for each ``a`` in `at`, as a (len(at), width) array."""
        view = self._rows.get(width)
        if view is None:
            view = self._rows[width] = np.ndarray(
                (len(self.store) - width + 1,), np.dtype((np.void, width)), self.store, 0, (1,))
        return view[at].view(np.uint8).reshape(len(at), width)

    def refill(self, pos: int, need: int) -> None:
        """Drop ``store[:pos]`` and read more. With ``readinto`` (a regular file): until the
        buffer is full and holds `need` bytes. Otherwise exactly as records.py's
        `_Input.fill` reads, ``max(CHUNK, missing)`` at a time until `need` bytes are there:
        a stream then ends, fails or waits for more at the same byte as in the plain reader
        (a read that fails loses what it had decompressed, so the read sizes matter)."""
        keep = self.n - pos
        if pos:
            self.store[:keep] = self.store[pos : self.n]
            self.base += pos
            self.n = keep
        want = max(need, self.size)
        while not self.eof and self.n < (need if self.readinto is None else want):
            try:
                if self.readinto is None:
                    data = self.read(max(CHUNK, need - self.n))
                    got = len(data)
                    if self.n + got > len(self.store) - _SLACK:
                        self._alloc(max(self.n + got, 2 * (len(self.store) - _SLACK)))
                    self.store[self.n : self.n + got] = np.frombuffer(data, np.uint8)
                else:
                    if self.n == len(self.store) - _SLACK:  # grow as the data comes
                        self._alloc(min(want, 2 * self.n))
                    room = min(len(self.store) - _SLACK, want) - self.n
                    got = self.readinto(self.view[self.n : self.n + room]) or 0
            except READ_ERRORS as exc:
                self.inp.error = f"read failed ({exc})"
                got = 0
            if not got:
                self.eof = True
                break
            self.n += got


# --- record walkers ---------------------------------------------------------------------


@dataclass
class _Records:
    """Frames found in one buffer, in capture order (offsets into the buffer)."""

    first_frame: int
    off: np.ndarray  #: offset of the captured bytes
    caplen: np.ndarray
    wire_len: np.ndarray
    ts_ns: np.ndarray  #: 0 where `huge` holds the value
    linktype: np.ndarray
    #: row -> timestamp for those beyond int64 (pcapng can say so): left to the `Decoder`
    huge: dict[int, int] = field(default_factory=dict)


_MORE, _NEED, _DONE = 0, 1, 2


class _Walker:
    """Shared by both formats: the frame counter, warnings held for re-ordering."""

    def __init__(self, inp: _Input) -> None:
        self.inp = inp
        self.frame = 0  #: frames delivered so far
        #: (frames delivered when it was raised, warning): a warning raised after frame k
        #: goes before any decoder warning about a frame > k
        self.pending: list[tuple[int, str]] = []
        self._status = _MORE
        self._need = 0
        self.window = _WINDOW  #: bytes the next numpy walk looks at
        self.steps = _PY_STEPS  #: records walked one by one after it

    def _found(self, count: int) -> None:
        """Back off from numpy walks that find little (their cost is mostly fixed)."""
        self.steps = _PY_STEPS if count >= _GOOD_WALK else min(2 * self.steps, _MAX_STEPS)

    def _walked(self, start: int, stop: int, last: int) -> None:
        """Size the next window after a numpy walk from `start` that ended at `stop` (its
        window's last header start: `last`): larger if the chain ran out of the window."""
        if stop > last:
            self.window = min(2 * self.window, _WINDOW)
        else:
            self.window = max(2 * (stop - start), _MIN_WINDOW)

    def walk(self, s: _Stream, pos: int) -> tuple[_Records, int, int, bool]:
        """Walk the complete records of the buffer from `pos`: (records, where the walk
        stopped, bytes needed there to go on, whether the capture ended)."""
        raise NotImplementedError

    def _stop(self, s: _Stream, what: str, pos: int, detail: str) -> None:
        self.inp.stop(what, s.base + pos, self.frame + 1, detail)
        self._hold()
        self._status = _DONE

    def _warn(self, kind: str, message: str) -> None:
        if self.inp.warn_some(kind, message):  # records.py's, limited the same way
            self._hold()

    def _hold(self) -> None:
        self.pending.append((self.frame, self.inp.stats.warnings.pop()))

    def _wait(self, need: int) -> None:
        self._status = _NEED
        self._need = need


def _chain(cand: np.ndarray, nxt: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Indices of the chain of records starting at ``cand[0]``: each ``cand[k[i+1]] ==
    nxt[k[i]]`` and ``ok`` for all; it stops where the next record is not a candidate.

    `cand` are sorted candidate positions (true records and false ones inside packet data),
    ``nxt`` the position each would put its successor at, ``ok`` its header checks.
    """
    m = len(cand)
    if m == 0 or not ok[0]:
        return _EMPTY
    j = np.arange(1, m + 1)  # mostly the next candidate: look up only the others
    other = np.flatnonzero(nxt[:-1] != cand[1:])
    j[other] = np.searchsorted(cand, nxt[other])
    np.minimum(j, m - 1, out=j)  # the last one's successor lies beyond every candidate
    link = ok & (cand[j] == nxt)
    keep = ok
    for _ in range(_PRUNE_ROUNDS):  # a false candidate rarely has a predecessor
        has_pred = np.zeros(m, bool)
        has_pred[j[link & keep]] = True
        has_pred[0] = True
        pruned = keep & has_pred
        if np.count_nonzero(pruned) == np.count_nonzero(keep):
            break
        keep = pruned
    k = np.flatnonzero(keep)
    breaks = nxt[k[:-1]] != cand[k[1:]]
    if breaks.any():
        k = k[: int(np.argmax(breaks)) + 1]
    return k


class _PcapWalker(_Walker):
    def __init__(self, inp: _Input, endian: str, nano: bool, linktype: int, snaplen: int) -> None:
        super().__init__(inp)
        self.u32 = np.dtype(endian + "u4")
        self.caplen_at = struct.Struct(endian + "I").unpack_from
        self.frac_ns = 1 if nano else 1000
        self.max_caplen = pcap_max_caplen(snaplen)
        self.linktype = linktype
        self.ts_high = 2 if endian == "<" else 0  #: where the high half of ts_sec is

    def walk(self, s: _Stream, pos: int) -> tuple[_Records, int, int, bool]:
        first_frame = self.frame
        starts: list[np.ndarray] = []
        heads: list[np.ndarray] = []  # the record headers, as 4 words
        self._status = _MORE
        while self._status == _MORE:
            if s.n - pos >= _VECTOR_MIN:
                found, head, pos = self._vector(s, pos)
                self._found(len(found))
                if len(found):
                    starts.append(found)
                    heads.append(head)
                    self.frame += len(found)
            steps: list[int] = []
            pos = self._steps(s, pos, self.steps, steps)
            if steps:
                found = np.array(steps, _I64)
                starts.append(found)
                heads.append(s.rows(found, 16).view(self.u32))
        at = np.concatenate(starts) if starts else _EMPTY
        head = (np.concatenate(heads) if heads else np.zeros((0, 4), self.u32)).astype(_I64)
        records = _Records(
            first_frame, at + 16, head[:, 2], head[:, 3],
            head[:, 0] * _NS + head[:, 1] * self.frac_ns, np.full(len(at), self.linktype, _I64),
        )
        return records, pos, self._need, self._status == _DONE

    def _vector(self, s: _Stream, pos: int) -> tuple[np.ndarray, np.ndarray, int]:
        """The verified chain of complete records from `pos`: their offsets, their headers
        (4 words each) and the position after them."""
        n = s.n
        last = min(n, pos + self.window) - 16  # the last header start looked at
        if last < pos:
            return _EMPTY, _EMPTY, pos
        region = s.store[pos + self.ts_high : last + self.ts_high + 2]
        size = len(region)
        key = region[:2].view(np.uint16)[0]
        even = np.flatnonzero(region[: size & ~1].view(np.uint16) == key)
        odd = np.flatnonzero(region[1 : 1 + ((size - 1) & ~1)].view(np.uint16) == key)
        cand = np.concatenate((even * 2, odd * 2 + 1))
        if len(cand) > (last - pos) // 8 + 2:  # timestamps near 0: everything matches
            self._walked(pos, pos, last)
            return _EMPTY, _EMPTY, pos
        cand.sort(kind="stable")
        cand += pos
        head = s.rows(cand, 16).view(self.u32)
        caplen = head[:, 2].astype(_I64)
        nxt = cand + 16 + caplen
        ok = (head[:, 1] < _NS) & (caplen <= self.max_caplen) & (nxt <= n)
        k = _chain(cand, nxt, ok)
        stop = int(nxt[k[-1]]) if len(k) else pos
        self._walked(pos, stop, last)
        if not len(k):
            return _EMPTY, _EMPTY, pos
        return cand[k], head[k], stop

    def _steps(self, s: _Stream, pos: int, limit: int, out: list[int]) -> int:
        """records.py's record loop for up to `limit` records (-1: no limit)."""
        view = s.view
        n = s.n
        caplen_at = self.caplen_at
        while limit:
            limit -= 1
            if pos + 16 > n:
                if not s.eof:
                    self._wait(16)
                    return pos
                if n - pos or self.inp.error:
                    self._stop(s, "truncated record header", pos,
                               f"only {n - pos} of 16 header bytes before the end of the file")
                else:
                    self._status = _DONE
                return pos
            caplen = caplen_at(view, pos + 8)[0]
            if caplen > self.max_caplen:
                self._stop(s, "corrupt record header", pos,
                           f"captured length {caplen} exceeds the limit {self.max_caplen}")
                return pos
            end = pos + 16 + caplen
            if end > n:
                if not s.eof:
                    self._wait(16 + caplen)
                    return pos
                self._stop(s, "truncated record", pos,
                           f"{caplen} bytes of packet data announced, {n - pos - 16} present")
                return pos
            out.append(pos)
            self.frame += 1
            pos = end
        return pos


class _PcapngWalker(_Walker):
    def __init__(self, inp: _Input, head: bytes) -> None:
        super().__init__(inp)
        self.e: _Endian = _ENDIANS[head[8:12]]
        self.ifaces: list[_Iface] = []
        self.missing: set[int] = set()
        self.ts_ns = 0  # the previous packet's, for simple packet blocks

    def walk(self, s: _Stream, pos: int) -> tuple[_Records, int, int, bool]:
        first_frame = self.frame
        pieces: list[tuple[np.ndarray, ...]] = []
        huge: dict[int, int] = {}
        self._status = _MORE
        while self._status == _MORE:
            if s.n - pos >= _VECTOR_MIN:
                found, pos = self._vector(s, pos)
                self._found(len(found[0]))
                if len(found[0]):
                    pieces.append(found)
                    self.frame += len(found[0])
            steps: list[tuple[int, int, int, int, int]] = []
            pos = self._steps(s, pos, self.steps, steps)
            if steps:
                off, caplen, wire_len, ts, linktype = zip(*steps, strict=True)
                try:
                    ts_ns = np.array(ts, _I64)
                except OverflowError:
                    start = sum(len(p[0]) for p in pieces)
                    ts_ns = np.array([t if _INT64_MIN <= t <= _INT64_MAX else 0 for t in ts],
                                     _I64)
                    huge.update((start + i, t) for i, t in enumerate(ts)
                                if not _INT64_MIN <= t <= _INT64_MAX)
                pieces.append((np.array(off, _I64), np.array(caplen, _I64),
                               np.array(wire_len, _I64), ts_ns, np.array(linktype, _I64)))
        cols = [np.concatenate(c) if c else _EMPTY for c in zip(*pieces, strict=True)] \
            if pieces else [_EMPTY] * 5
        records = _Records(first_frame, *cols, huge=huge)
        return records, pos, self._need, self._status == _DONE

    def _vector(self, s: _Stream, pos: int) -> tuple[tuple[np.ndarray, ...], int]:
        """The verified chain of Enhanced Packet Blocks from `pos`, next pos."""
        n = s.n
        ifaces = self.ifaces
        last = min(n, pos + self.window) - 28
        none = (_EMPTY,) * 5
        if last < pos or not ifaces:
            return none, pos
        u32 = np.dtype(self.e.prefix + "u4")
        words = s.store[pos : pos + ((last - pos) // 4 + 1) * 4].view(u32)
        cand = np.flatnonzero(words == PCAPNG_BT_EPB) * 4
        if not len(cand) or cand[0]:  # not at an EPB
            self._walked(pos, pos, last)
            return none, pos
        cand += pos
        head = s.rows(cand, 28).view(u32).astype(_I64)
        blen = head[:, 1]
        nxt = cand + blen
        iface = head[:, 2]
        caplen = head[:, 5]
        ok = ((blen >= 32) & ((blen & 3) == 0) & (blen <= MAX_BLOCK_LEN) & (nxt <= n)
              & (caplen + 32 <= blen) & (iface < len(ifaces)))
        trailing = s.rows(np.where(ok, nxt - 4, 0), 4).view(u32)[:, 0]
        ok &= trailing == blen
        k = _chain(cand, nxt, ok)
        stop = int(nxt[k[-1]]) if len(k) else pos
        self._walked(pos, stop, last)
        if not len(k):
            return none, pos
        head = head[k]
        iface = head[:, 2]
        units = (head[:, 3].astype(np.uint64) << np.uint64(32)) | head[:, 4].astype(np.uint64)
        ts = np.empty(len(k), _I64)
        linktype = np.empty(len(k), _I64)
        cut = len(k)
        for i in distinct(iface):
            rows = iface == i
            lt, mul, div, offset_ns, _snaplen = ifaces[i]
            got = _timestamps(units[rows], mul, div, offset_ns)
            if got is None:  # from its first block on, the chain is walked block by block
                cut = min(cut, int(np.argmax(rows)))
                continue
            ts[rows] = got
            linktype[rows] = lt
        if cut < len(k):
            if not cut:
                return none, pos
            stop = int(cand[k[cut]])
            k, head, ts, linktype = k[:cut], head[:cut], ts[:cut], linktype[:cut]
        self.ts_ns = int(ts[-1])
        return (cand[k] + 28, head[:, 5], head[:, 6], ts, linktype), stop

    def _steps(
        self, s: _Stream, pos: int, limit: int, out: list[tuple[int, int, int, int, int]]
    ) -> int:
        """records.py's block loop for up to `limit` blocks (-1: no limit)."""
        buf = s.view
        n = s.n
        e = self.e
        while limit:
            limit -= 1
            if pos + 12 > n:
                if not s.eof:
                    self._wait(12)
                    return pos
                if n - pos or self.inp.error:
                    self._stop(s, "truncated block header", pos,
                               f"only {n - pos} bytes before the end of the file")
                else:
                    self._status = _DONE
                return pos
            btype, blen = e.block(buf, pos)
            if btype == PCAPNG_BT_SHB:
                bom = bytes(buf[pos + 8 : pos + 12])
                if bom not in _ENDIANS:
                    self._stop(s, "corrupt section header block", pos,
                               f"bad byte-order magic 0x{bom.hex()}")
                    return pos
                e = self.e = _ENDIANS[bom]
                blen = e.u32(buf, pos + 4)[0]
            if blen < 12 or blen & 3 or blen > MAX_BLOCK_LEN:
                self._stop(s, "corrupt block", pos, f"block type 0x{btype:x} claims length {blen}")
                return pos
            end = pos + blen
            if end > n:
                if not s.eof:
                    self._wait(blen)
                    return pos
                self._stop(s, "truncated block", pos,
                           f"block type 0x{btype:x} of {blen} bytes, {n - pos} present")
                return pos
            if e.u32(buf, end - 4)[0] != blen:
                self._stop(s, "corrupt block", pos,
                           f"block type 0x{btype:x}: trailing length differs from leading {blen}")
                return pos

            if btype == PCAPNG_BT_EPB:
                if blen < 32:
                    self._stop(s, "corrupt block", pos,
                               f"enhanced packet block too short ({blen} bytes)")
                    return pos
                iface, ts_high, ts_low, caplen, wire_len = e.epb(buf, pos + 8)
                data_at = pos + 28
            elif btype == PCAPNG_BT_SPB:
                if blen < 16:
                    self._stop(s, "corrupt block", pos,
                               f"simple packet block too short ({blen} bytes)")
                    return pos
                iface = 0
                wire_len = e.u32(buf, pos + 8)[0]
                caplen = min(wire_len, blen - 16)
                if self.ifaces and self.ifaces[0][4]:
                    caplen = min(caplen, self.ifaces[0][4])
                data_at = pos + 12
            elif btype == PCAPNG_BT_IDB:
                if blen >= 20:
                    self.ifaces.append(_interface(e, buf, pos, blen))  # type: ignore[arg-type]
                else:
                    self._warn("short idb",
                        f"interface description block too short at byte offset {s.base + pos}")
                pos = end
                continue
            elif btype == PCAPNG_BT_SHB:
                if blen < 28:
                    self._stop(s, "corrupt section header block", pos, f"too short ({blen} bytes)")
                    return pos
                major, minor = e.shb_version(buf, pos + 12)
                if major != 1:
                    self._stop(s, "unsupported section", pos, f"pcapng version {major}.{minor}")
                    return pos
                self.ifaces = []
                self.missing = set()
                pos = end
                continue
            elif btype == PCAPNG_BT_PB:
                if blen < 32:
                    self._stop(s, "corrupt block", pos, f"packet block too short ({blen} bytes)")
                    return pos
                iface, _drops, ts_high, ts_low, caplen, wire_len = e.pb(buf, pos + 8)
                data_at = pos + 28
            else:  # name resolution, statistics, secrets, custom, unknown: not packets
                pos = end
                continue

            if data_at + caplen > end - 4:
                self._stop(s, "corrupt block", pos,
                           f"captured length {caplen} overruns its {blen}-byte block")
                return pos
            if iface >= len(self.ifaces):
                if iface not in self.missing:
                    self.missing.add(iface)
                    self._warn("no idb",
                        f"packet block at byte offset {s.base + pos} names interface {iface} "
                        f"but its section describes {len(self.ifaces)}: such packets are skipped")
                pos = end
                continue
            linktype, mul, div, offset_ns, _snaplen = self.ifaces[iface]
            if btype != PCAPNG_BT_SPB:
                ts = ((ts_high << 32) | ts_low) * mul // div + offset_ns
                if MIN_TS_NS <= ts <= MAX_TS_NS:
                    self.ts_ns = ts
                else:  # records.py's warning (once per file), held like the others
                    first = not self.inp.bad_times
                    self.inp.bad_time(s.base + pos, self.frame + 1, ts, self.ts_ns)
                    if first:
                        self._hold()
            out.append((data_at, caplen, wire_len, self.ts_ns, linktype))
            self.frame += 1
            pos = end
        return pos


def _timestamps(units: np.ndarray, mul: int, div: int, offset_ns: int) -> np.ndarray | None:
    """``units * mul // div + offset_ns`` exactly (records.py's formula), as int64; None
    when numpy cannot do it safely (the block-by-block walk then does it in Python)."""
    top = int(units.max()) if len(units) else 0
    limit = 1 << 62
    if div == 1 and top * mul + abs(offset_ns) < limit:
        return units.astype(_I64) * mul + offset_ns
    shift = div.bit_length() - 1
    if div == 1 << shift and mul == _NS and shift <= 32 \
            and (top >> shift) * mul + mul + abs(offset_ns) < limit:
        low = (units & np.uint64(div - 1)).astype(_I64) * mul >> shift
        return (units >> np.uint64(shift)).astype(_I64) * mul + low + offset_ns
    if mul == 1 and div < 1 << 63 and top // div + abs(offset_ns) < limit:
        return (units // np.uint64(div)).astype(_I64) + offset_ns
    return None


# --- bulk decoding ----------------------------------------------------------------------

#: bytes of each frame copied for the bulk decode: the widest link header (22, two VLAN
#: tags), the widest IPv4 header (60) and a TCP header (20) fit
_WIDE = 128
_IP_FIELDS = np.dtype({
    "names": ["vhl", "total4", "frag", "proto", "src4", "dst4", "total6", "next"],
    "formats": ["u1", ">u2", ">u2", "u1", ">u4", ">u4", ">u2", "u1"],
    "offsets": [0, 2, 6, 9, 12, 16, 4, 6],
    "itemsize": 40,
})
_TCP_FIELDS = np.dtype({
    "names": ["sport", "dport", "seq", "ack", "offset", "flags", "window"],
    "formats": [">u2", ">u2", ">u4", ">u4", "u1", "u1", ">u2"],
    "offsets": [0, 2, 4, 8, 12, 13, 14],
    "itemsize": 20,
})


def _cut(
    wide: np.ndarray, rows: np.ndarray | None, starts: np.ndarray, width: int
) -> np.ndarray:
    """``wide[row, start : start + width]`` for each row (`rows` None: every row); a view
    when all starts are equal and every row is wanted, else a copy."""
    if rows is not None and not len(rows):
        return np.zeros((0, width), np.uint8)
    first = int(starts[0])
    if starts[-1] == first and (starts == first).all():
        if rows is None:
            return wide[:, first : first + width]
        return wide[rows, first : first + width]
    out = np.empty((len(starts), width), np.uint8)
    for start in distinct(starts):
        sel = np.flatnonzero(starts == start)
        out[sel] = wide[sel if rows is None else rows[sel], start : start + width]
    return out


def _take(values: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return values if rows is None else values[rows]


def _link(wide: np.ndarray, caplen: np.ndarray, linktype: int) -> tuple[np.ndarray, np.ndarray]:
    """decode.py's link decoders for many frames of one link type: (class, IP offset)."""
    count = len(wide)
    ip = np.zeros(count, _I64)
    cls = np.full(count, _IRREGULAR, np.int8)
    if linktype == _ETHERNET:
        ethertype = wide[:, 12:14].view(">u2")[:, 0]
        ip[:] = 14
        short = caplen < 14
        tagged = ~short & _IS_VLAN[ethertype]
        for at in (14, 18):  # two tags here; a third goes to the Decoder
            if not tagged.any():
                break
            short |= tagged & (caplen < at + 4)
            tagged &= ~short
            ethertype = np.where(tagged, wide[:, at + 2 : at + 4].view(">u2")[:, 0], ethertype)
            ip[tagged] = at + 4
            tagged &= _IS_VLAN[ethertype]
        cls[:] = _ether_class(ethertype)
        cls[tagged] = _IRREGULAR
        cls[short] = _UNDECODABLE
    elif linktype in (_SLL, _SLL2):
        size = 16 if linktype == _SLL else 20
        at = 14 if linktype == _SLL else 0
        cls[:] = _ether_class(wide[:, at : at + 2].view(">u2")[:, 0])
        cls[caplen < size] = _UNDECODABLE
        ip[:] = size
    elif linktype in _NULL:
        family = np.where(wide[:, 0] != 0, wide[:, 0], wide[:, 3])
        cls[:] = np.where(family == 2, _IPV4, np.where(_IS_AF_INET6[family], _IPV6, _NON_TCP))
        cls[caplen < 4] = _UNDECODABLE
        ip[:] = 4
    elif linktype in _RAW:
        version = wide[:, 0] >> 4
        cls[:] = np.where(version == 4, _IPV4, np.where(version == 6, _IPV6, _UNDECODABLE))
        cls[caplen < 1] = _UNDECODABLE
    elif linktype == _RAW4:
        cls[:] = _IPV4
    elif linktype == _RAW6:
        cls[:] = _IPV6
    return cls, ip


def _link_types(linktype: np.ndarray) -> list[tuple[int, int]]:
    """(link type, frames) for each link type in `linktype`."""
    first = int(linktype[0])
    if linktype[-1] == first and (linktype == first).all():
        return [(first, len(linktype))]
    kinds, counts = np.unique(linktype, return_counts=True)
    return list(zip(kinds.tolist(), counts.tolist(), strict=True))


def _ether_class(ethertype: np.ndarray) -> np.ndarray:
    return np.where(ethertype == 0x0800, _IPV4, np.where(ethertype == 0x86DD, _IPV6, _NON_TCP))


def _le_sums(
    mat: np.ndarray, rows: np.ndarray | None, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """For each row, the bytes ``mat[row, start:end]`` summed as little-endian 16-bit words
    (an odd last byte as a low half), as int64, to be taken mod 0xFFFF.

    `mat` is C-contiguous with a width divisible by 4, `rows` (None: all) increasing, every
    `start` even and every `end` at most the width - 4. Summed as 32-bit words (2**16 == 1
    mod 0xFFFF) with one ``reduceat``, minus the bytes of the first and last words outside
    the range. Little-endian because it needs no byte swap: that sum is 256 times the
    big-endian one of RFC 1071, mod 0xFFFF (the caller scales the rest of its sum).
    """
    words = mat.view("<u4")
    quarter = words.shape[1]
    first = start >> 2
    last = (end + 3) >> 2
    base = (np.arange(len(start), dtype=_I64) if rows is None else rows) * quarter
    bounds = np.empty(2 * len(start), _I64)
    bounds[0::2] = base + first
    bounds[1::2] = base + last
    sums = np.add.reduceat(words.reshape(-1), bounds, dtype=np.uint64)[0::2].astype(_I64)
    flat = words.reshape(-1)
    head = (start & 3) << 3  # bits of the first word before `start`
    sums -= flat[bounds[0::2]].astype(_I64) & ((1 << head) - 1)
    tail = (end & 3) << 3  # bits of the last word before `end` (0: all of it)
    sums -= np.where(tail > 0, flat[bounds[1::2] - 1].astype(_I64) >> tail << tail, 0)
    return sums


def _store_sums(s: _Stream, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """`_le_sums` of ``store[start:end]``, the bytes copied in rows of a power of two at
    least 4 above their length (one copy per width)."""
    out = np.zeros(len(start), _I64)
    if not len(start):
        return out
    length = end - start
    bits = np.maximum(np.searchsorted(_POW2, length + 3, side="right"), 6)
    for b in distinct(bits):
        rows = np.flatnonzero(bits == b)
        out[rows] = _le_sums(s.rows(start[rows], 1 << b), None, np.zeros(len(rows), _I64),
                             length[rows])
    return out


def _window_scales(s: _Stream, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """`decode.window_scale` for many option areas ``store[start:end]`` (at most 40 bytes)."""
    count = len(start)
    result = np.full(count, -1, _I64)
    if not count:
        return result
    raw = s.rows(start, 42)  # 40 option bytes, 2 spare for the lookahead
    limit = end - start
    linux = limit >= 20  # Linux's layout, the option walk's result without walking it
    for at, value in _LINUX_SYN:
        linux &= raw[:, at] == value
    result[linux] = raw[linux, 19]
    live = np.flatnonzero(~linux & (limit > 0))
    if not len(live):
        return result
    opts = raw.astype(_I64)
    p = np.zeros(count, _I64)
    while len(live):
        at = p[live]
        kind = opts[live, at]
        nop = kind == 1
        p[live[nop]] += 1
        rest = ~nop & (kind != 0) & (at + 1 < limit[live])
        r, at, kind = live[rest], at[rest], kind[rest]
        length = opts[r, at + 1]
        ws = kind == 3
        found = ws & (length == 3) & (at + 2 < limit[r])
        result[r[found]] = opts[r[found], at[found] + 2]
        step = ~ws & (length >= 2)
        p[r[step]] += length[step]
        live = np.concatenate((live[nop], r[step]))
        live = live[p[live] < limit[live]]
    return result


def _ts_options(s: _Stream, start: np.ndarray, end: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """`decode.timestamps` for many option areas ``store[start:end]`` (at most 40 bytes):
    (TSval, TSecr), -1 where absent."""
    count = len(start)
    tsval = np.full(count, -1, _I64)
    tsecr = np.full(count, -1, _I64)
    if not count:
        return tsval, tsecr
    raw = s.rows(start, 42)  # 40 option bytes, 2 spare for the lookahead
    limit = end - start
    opts = raw.astype(_I64)

    def words(r: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = [opts[r, at + k] for k in range(8)]
        return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3],
                (b[4] << 24) | (b[5] << 16) | (b[6] << 8) | b[7])

    # Linux's layout after the handshake (NOP NOP TS, nothing after), as decode.py
    linux = (limit == 12) & (raw[:, 0] == 1) & (raw[:, 1] == 1) & (raw[:, 2] == 8) \
        & (raw[:, 3] == 10)
    r = np.flatnonzero(linux)
    tsval[r], tsecr[r] = words(r, np.full(len(r), 4, _I64))
    live = np.flatnonzero(~linux & (limit > 0))
    p = np.zeros(count, _I64)
    while len(live):
        at = p[live]
        kind = opts[live, at]
        nop = kind == 1
        p[live[nop]] += 1
        rest = ~nop & (kind != 0) & (at + 1 < limit[live])
        r, at, kind = live[rest], at[rest], kind[rest]
        length = opts[r, at + 1]
        ok = (length >= 2) & (at + length <= limit[r])
        r, at, kind, length = r[ok], at[ok], kind[ok], length[ok]
        ts = (kind == 8) & (length == 10)
        if ts.any():
            tsval[r[ts]], tsecr[r[ts]] = words(r[ts], at[ts] + 2)
        p[r] += length
        live = np.concatenate((live[nop], r))
        live = live[p[live] < limit[live]]
    return tsval, tsecr


class _BulkDecoder:
    """Frames -> one `Batch`: bulk columns for the regular frames, the plain `Decoder` for
    the rest, counters into `stats` exactly as the `Decoder` would count them."""

    def __init__(
        self, stats: ReadStats, decoder: Decoder, book: AddressBook, verify_checksums: bool,
        capture_filter: CaptureFilter | None = None,
    ) -> None:
        self.stats = stats
        self.decoder = decoder
        self.book = book
        self.verify = verify_checksums
        self.filter = capture_filter
        self.pack = _Packer(book).pack

    def _kept(self, s: _Stream, rec: _Records) -> np.ndarray:
        """Which frames of `rec` the capture filter keeps (libpcap, frame by frame)."""
        assert self.filter is not None
        keep = np.empty(len(rec.off), bool)
        view = s.view
        kinds = distinct(rec.linktype)
        for lt in kinds:
            rows = None if len(kinds) == 1 else np.flatnonzero(rec.linktype == lt)
            match = self.filter.matcher(lt)
            cols = (rec.off, rec.caplen, rec.wire_len) if rows is None else \
                (rec.off[rows], rec.caplen[rows], rec.wire_len[rows])
            found = [match(bytes(view[o : o + c]), w)
                     for o, c, w in zip(*(c.tolist() for c in cols), strict=True)]
            if rows is None:
                keep[:] = found
            else:
                keep[rows] = found
        return keep

    def batch(self, s: _Stream, rec: _Records, pending: list[tuple[int, str]]) -> Batch | None:
        stats = self.stats
        count = len(rec.off)
        frames = np.arange(rec.first_frame + 1, rec.first_frame + count + 1, dtype=_I64)
        bulk: Batch | None = None
        rest = _EMPTY
        if count:
            stats.frames += count
            lts = _link_types(rec.linktype)
            for lt, c in lts:
                stats.link_types[lt] += c
            if stats.first_ts_ns is None:
                stats.first_ts_ns = rec.huge.get(0, int(rec.ts_ns[0]))
            stats.last_ts_ns = rec.huge.get(count - 1, int(rec.ts_ns[-1]))
            if self.filter is not None:
                keep = self._kept(s, rec)
                kept = int(np.count_nonzero(keep))
                if kept < count:
                    stats.filtered_out += count - kept
                    rows = np.flatnonzero(keep)
                    new_row = np.cumsum(keep) - 1
                    rec = _Records(rec.first_frame, rec.off[rows], rec.caplen[rows],
                                   rec.wire_len[rows], rec.ts_ns[rows], rec.linktype[rows],
                                   {int(new_row[r]): t for r, t in rec.huge.items()
                                    if keep[r]})
                    frames = frames[rows]
                    count = kept
                    lts = _link_types(rec.linktype) if kept else []
        if count:
            bulk, rest = self._bulk(s, rec, frames, lts)
        segments = self._one_by_one(s, rec, frames, rest, pending)
        if not segments:
            return bulk
        plain = self.pack(segments)
        if bulk is None:
            return plain
        order = np.argsort(np.concatenate((bulk.frame, plain.frame)), kind="stable")
        cols = {c: np.concatenate((getattr(bulk, c), getattr(plain, c)))[order]
                for c in Batch.COLUMNS}
        return Batch(self.book, **cols)

    def _one_by_one(
        self, s: _Stream, rec: _Records, frames: np.ndarray, rows: np.ndarray,
        pending: list[tuple[int, str]],
    ) -> list[Segment]:
        """The plain `Decoder` on `rows`, in frame order, with held walker warnings put
        back where records.py would have raised them."""
        warnings = self.stats.warnings
        segments: list[Segment] = []
        held = iter(pending)
        nxt = next(held, None)
        decode = self.decoder.decode
        view = s.view
        cols = (rows, frames[rows], rec.ts_ns[rows], rec.linktype[rows], rec.wire_len[rows],
                rec.off[rows], rec.caplen[rows])
        huge = rec.huge
        for row, frame, ts, lt, wire, off, caplen in zip(*(c.tolist() for c in cols),
                                                         strict=True):
            while nxt is not None and nxt[0] < frame:
                warnings.append(nxt[1])
                nxt = next(held, None)
            if huge and row in huge:
                ts = huge[row]
            segment = decode(frame, ts, lt, wire, bytes(view[off : off + caplen]))
            if segment is not None:
                if not _INT64_MIN <= ts <= _INT64_MAX:
                    raise OverflowError(
                        f"{self.decoder.name}: frame {frame}: timestamp {ts} ns does not fit "
                        "the int64 column of a Batch")
                segments.append(segment)
        while nxt is not None:
            warnings.append(nxt[1])
            nxt = next(held, None)
        pending.clear()
        return segments

    def _bulk(
        self, s: _Stream, rec: _Records, frames: np.ndarray, lts: list[tuple[int, int]]
    ) -> tuple[Batch | None, np.ndarray]:
        """Columns of the frames decoded in bulk, and the rows left for the `Decoder`."""
        stats = self.stats
        off, caplen, wire = rec.off, rec.caplen, rec.wire_len
        wide = s.rows(off, _WIDE)
        if len(lts) == 1:
            cls, ip = _link(wide, caplen, lts[0][0])
        else:
            cls = np.empty(len(off), np.int8)
            ip = np.empty(len(off), _I64)
            for lt, _count in lts:
                rows = np.flatnonzero(rec.linktype == lt)
                cls[rows], ip[rows] = _link(wide[rows], caplen[rows], lt)
        if rec.huge:
            cls[list(rec.huge)] = _IRREGULAR
        stats.undecodable += int(np.count_nonzero(cls == _UNDECODABLE))
        stats.non_tcp += int(np.count_nonzero(cls == _NON_TCP))
        irregular = [np.flatnonzero(cls == _IRREGULAR)]

        # IP header (20 bytes of IPv4 or 40 of IPv6); r: rows of `wide` (None: all)
        is_ip = (cls == _IPV4) | (cls == _IPV6)
        r = None if is_ip.all() else np.flatnonzero(is_ip)
        v4 = _take(cls, r) == _IPV4
        size = _take(caplen, r)
        ipo = _take(ip, r)
        f = _cut(wide, r, ipo, 40).view(_IP_FIELDS)[:, 0]
        vhl = f["vhl"]
        version = vhl >> 4
        ihl = (vhl & 0x0F).astype(_I64) << 2
        total4 = f["total4"].astype(_I64)
        frag = f["frag"]
        total6 = f["total6"].astype(_I64)
        next_header = f["next"]
        bad = np.where(v4, (size < ipo + 20) | (version != 4) | (ihl < 20),
                       (size < ipo + 40) | (version != 6))
        fragment = v4 & ~bad & ((frag & 0x1FFF) != 0)
        ext = _IS_IPV6_EXT[next_header]
        other = ~bad & ~fragment & np.where(
            v4, f["proto"] != 6, (total6 != 0) & ~ext & (next_header != 6))
        # first fragments, TSO (IP length 0), IPv6 extension headers: the Decoder's
        to_decoder = ~bad & ~fragment & ~other & np.where(
            v4, (total4 == 0) | ((frag & 0x2000) != 0), (total6 == 0) | ext)
        tcp = ~(bad | fragment | to_decoder | other)
        tcp_at = ipo + np.where(v4, ihl, 40)
        segment_len = np.where(v4, total4 - ihl, total6)
        bad |= tcp & ((size < tcp_at + 20) | (segment_len < 20))
        tcp &= ~bad
        stats.fragments += int(np.count_nonzero(fragment))
        stats.non_tcp += int(np.count_nonzero(other))
        irregular.append(_take(np.arange(len(off)), r)[to_decoder])

        # TCP header; rows: rows of `wide` again
        if tcp.all():
            rows = r
        else:
            t = np.flatnonzero(tcp)
            rows = t if r is None else r[t]
            size, v4, ipo, ihl, tcp_at, segment_len = (
                x[t] for x in (size, v4, ipo, ihl, tcp_at, segment_len))
            f = f[t]
        th = _cut(wide, rows, tcp_at, 20).view(_TCP_FIELDS)[:, 0]
        header_len = (th["offset"] >> 4).astype(_I64) << 2
        payload_len = segment_len - header_len
        broken = (header_len < 20) | (payload_len < 0)
        stats.undecodable += int(np.count_nonzero(bad)) + int(np.count_nonzero(broken))
        end = tcp_at + segment_len
        whole = end <= size
        cut = ~whole & (end <= _take(wire, rows))  # snap length: header stands, IP length
        short = ~broken & ~whole & ~cut  # shorter on the wire than its IP length
        if short.any():
            irregular.append(_take(np.arange(len(off)), rows)[short])
        keep = ~(broken | short)
        if not keep.all():
            t = np.flatnonzero(keep)
            rows = t if rows is None else rows[t]
            size, v4, ipo, ihl, tcp_at, segment_len, th, header_len, payload_len, whole, \
                cut, end, f = (x[t] for x in (size, v4, ipo, ihl, tcp_at, segment_len, th,
                                              header_len, payload_len, whole, cut, end, f))
        done = len(tcp_at)
        stats.tcp_segments += done
        stats.truncated += int(np.count_nonzero(cut))
        if self.verify and done:
            stats.unverified_checksums += int(np.count_nonzero(cut))
            bad = self._bad_checksums(
                s, wide, rows, off, v4, ipo, ihl, tcp_at, segment_len, end, whole)
            stats.bad_checksums += len(bad)
        else:
            bad = np.empty(0, _I64)
        left = np.concatenate(irregular)
        left.sort()
        if not done:
            return None, left

        # columns
        flags = th["flags"].astype(_I64)
        wscale = np.full(done, -1, _I64)
        syn = np.flatnonzero(((flags & SYN) != 0) & (header_len > 20))
        if len(syn):
            at = _take(off, rows)[syn] + tcp_at[syn]
            wscale[syn] = _window_scales(
                s, at + 20, at + np.minimum(header_len[syn], size[syn] - tcp_at[syn]))
        tsval = np.full(done, -1, _I64)
        tsecr = np.full(done, -1, _I64)
        opt = np.flatnonzero(header_len > 20)
        if len(opt):
            at = _take(off, rows)[opt] + tcp_at[opt]
            tsval[opt], tsecr[opt] = _ts_options(
                s, at + 20, at + np.minimum(header_len[opt], size[opt] - tcp_at[opt]))
        src = f["src4"].astype(_I64)
        dst = f["dst4"].astype(_I64)
        six = np.flatnonzero(~v4)
        if len(six):
            src[six], dst[six] = self._v6_keys(wide, _take(np.arange(len(off)), rows)[six],
                                               ipo[six])
        if len(bad):  # by sender (one sender's every segment: checksum offload)
            keys, counts = np.unique(src[bad], return_counts=True)
            for key, n in zip(keys.tolist(), counts.tolist(), strict=True):
                stats.bad_checksum_senders[self.book.name(key)] += n
        batch = Batch(
            self.book, _take(frames, rows), _take(rec.ts_ns, rows),
            np.where(v4, 4, 6).astype(_I64), src, th["sport"].astype(_I64), dst,
            th["dport"].astype(_I64), th["seq"].astype(_I64), th["ack"].astype(_I64), flags,
            payload_len, th["window"].astype(_I64), wscale, tsval, tsecr,
        )
        return batch, left

    @staticmethod
    def _bad_checksums(
        s: _Stream, wide: np.ndarray, rows: np.ndarray | None, off: np.ndarray,
        v4: np.ndarray, ipo: np.ndarray, ihl: np.ndarray, tcp_at: np.ndarray,
        segment_len: np.ndarray, end: np.ndarray, whole: np.ndarray,
    ) -> np.ndarray:
        """The rows (positions among the decoded ones) of the wholly captured segments that
        fail the TCP checksum: decode.py's test, the addresses and the segment summed as
        one range (they are adjacent unless IPv4 has options), plus protocol and length,
        nonzero mod 0xFFFF."""
        w = np.flatnonzero(whole)
        if not len(w):
            return w
        at = np.where(v4, ipo + 12, ipo + 8)[w]  # the source address
        stop = end[w]
        all_rows = np.arange(len(wide)) if rows is None else rows
        sums = np.empty(len(w), _I64)
        near = stop <= _WIDE - 4  # the range lies in the bytes already copied
        n = np.flatnonzero(near)
        sums[n] = _le_sums(wide, all_rows[w[n]], at[n], stop[n])
        far = np.flatnonzero(~near)
        if len(far):
            base = off[all_rows[w[far]]]
            sums[far] = _store_sums(s, base + at[far], base + stop[far])
        # IPv4 options sit between: take them out (an IPv6 header's first byte carries
        # traffic class bits where IPv4 has its header length: v4 rows only)
        options = np.flatnonzero(v4[w] & (ihl[w] > 20))
        if len(options):
            base = off[all_rows[w[options]]]
            sums[options] -= _store_sums(s, base + at[options] + 8,
                                         base + tcp_at[w[options]])
        check = sums + ((6 + segment_len[w]) << 8)  # x 256: the sums are little-endian
        return w[np.flatnonzero(check % 0xFFFF)]

    def _v6_keys(
        self, wide: np.ndarray, rows: np.ndarray, ipo: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """AddressBook keys of the IPv6 source and destination addresses of `rows`."""
        head = _cut(wide, rows, ipo, 40)
        both = np.concatenate((head[:, 8:24], head[:, 24:40]))
        packed = np.ascontiguousarray(both).view("V16").ravel()
        unique, inverse = np.unique(packed, return_inverse=True)
        key_v6 = self.book.key_v6
        keys = np.array([key_v6(u.tobytes()) for u in unique], _I64)[inverse.ravel()]
        return keys[: len(head)], keys[len(head) :]
