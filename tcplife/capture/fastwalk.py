"""The fast reader's record walk: where each record of a pcap or pcapng buffer starts.

Owns: `PcapWalker` and `PcapngWalker` (one per format, sharing `Walker`), which find the
complete records of the buffer in numpy (every candidate header chained from the known
start) and walk them one by one with records.py's checks, order and wording wherever the
chain breaks; `Records`, what a walk found. Step 1 of `tcplife.capture.fastread`'s
pipeline (see its docstring); knows nothing of what the frames hold.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from . import creader
from .columns import distinct
from .fastbuffer import EMPTY, I64, INT64_MAX, INT64_MIN, Stream
from .records import (
    _ENDIANS,
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
    pcap_max_caplen,
)

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

# --- record walkers ---------------------------------------------------------------------


@dataclass
class Records:
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


class Walker:
    """Shared by both formats: the frame counter, warnings held for re-ordering."""

    def __init__(self, inp: _Input, engine: ModuleType | None = None) -> None:
        self.inp = inp
        self.engine = engine  #: the compiled reader (creader.compiled_reader), or None
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

    def walk(self, s: Stream, pos: int) -> tuple[Records, int, int, bool]:
        """Walk the complete records of the buffer from `pos`: (records, where the walk
        stopped, bytes needed there to go on, whether the capture ended)."""
        raise NotImplementedError

    def _stop(self, s: Stream, what: str, pos: int, detail: str) -> None:
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
        return EMPTY
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


class PcapWalker(Walker):
    def __init__(self, inp: _Input, endian: str, nano: bool, linktype: int, snaplen: int,
                 engine: ModuleType | None = None) -> None:
        super().__init__(inp, engine)
        self.nano = nano
        self.big = endian == ">"
        self.u32 = np.dtype(endian + "u4")
        self.caplen_at = struct.Struct(endian + "I").unpack_from
        self.frac_ns = 1 if nano else 1000
        self.max_caplen = pcap_max_caplen(snaplen)
        self.linktype = linktype
        self.ts_high = 2 if endian == "<" else 0  #: where the high half of ts_sec is

    def walk(self, s: Stream, pos: int) -> tuple[Records, int, int, bool]:
        if self.engine is not None:
            return self._walk_compiled(s, pos)
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
                found = np.array(steps, I64)
                starts.append(found)
                heads.append(s.rows(found, 16).view(self.u32))
        at = np.concatenate(starts) if starts else EMPTY
        head = (np.concatenate(heads) if heads else np.zeros((0, 4), self.u32)).astype(I64)
        records = Records(
            first_frame, at + 16, head[:, 2], head[:, 3],
            head[:, 0] * _NS + head[:, 1] * self.frac_ns, np.full(len(at), self.linktype, I64),
        )
        return records, pos, self._need, self._status == _DONE

    def _walk_compiled(self, s: Stream, pos: int) -> tuple[Records, int, int, bool]:
        """`walk` with the compiled reader: it takes every complete record, up to the first
        one records.py would not deliver (damage, the buffer's end), which `_steps`
        then stops or waits at."""
        first_frame = self.frame
        pieces: list[np.ndarray] = []
        self._status = _MORE
        while self._status == _MORE:
            pos, cols = creader.pcap_walk(self.engine, s, pos, self.big,
                                          self.nano, self.max_caplen)
            if cols.shape[1]:
                pieces.append(cols)
                self.frame += cols.shape[1]
            steps: list[int] = []
            pos = self._steps(s, pos, 1, steps)
            if steps:
                found = np.array(steps, I64)
                head = s.rows(found, 16).view(self.u32).astype(I64)
                pieces.append(np.stack((found + 16, head[:, 2], head[:, 3],
                                        head[:, 0] * _NS + head[:, 1] * self.frac_ns)))
        cols = pieces[0] if len(pieces) == 1 else \
            np.concatenate(pieces, axis=1) if pieces else np.zeros((4, 0), I64)
        records = Records(first_frame, *cols, np.full(cols.shape[1], self.linktype, I64))
        return records, pos, self._need, self._status == _DONE

    def _vector(self, s: Stream, pos: int) -> tuple[np.ndarray, np.ndarray, int]:
        """The verified chain of complete records from `pos`: their offsets, their headers
        (4 words each) and the position after them."""
        n = s.n
        last = min(n, pos + self.window) - 16  # the last header start looked at
        if last < pos:
            return EMPTY, EMPTY, pos
        region = s.store[pos + self.ts_high : last + self.ts_high + 2]
        size = len(region)
        key = region[:2].view(np.uint16)[0]
        even = np.flatnonzero(region[: size & ~1].view(np.uint16) == key)
        odd = np.flatnonzero(region[1 : 1 + ((size - 1) & ~1)].view(np.uint16) == key)
        cand = np.concatenate((even * 2, odd * 2 + 1))
        if len(cand) > (last - pos) // 8 + 2:  # timestamps near 0: everything matches
            self._walked(pos, pos, last)
            return EMPTY, EMPTY, pos
        cand.sort(kind="stable")
        cand += pos
        head = s.rows(cand, 16).view(self.u32)
        caplen = head[:, 2].astype(I64)
        nxt = cand + 16 + caplen
        ok = (head[:, 1] < _NS) & (caplen <= self.max_caplen) & (nxt <= n)
        k = _chain(cand, nxt, ok)
        stop = int(nxt[k[-1]]) if len(k) else pos
        self._walked(pos, stop, last)
        if not len(k):
            return EMPTY, EMPTY, pos
        return cand[k], head[k], stop

    def _steps(self, s: Stream, pos: int, limit: int, out: list[int]) -> int:
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


class PcapngWalker(Walker):
    def __init__(self, inp: _Input, head: bytes, engine: ModuleType | None = None) -> None:
        super().__init__(inp, engine)
        self.e: _Endian = _ENDIANS[head[8:12]]
        self.ifaces: list[_Iface] = []
        self.missing: set[int] = set()
        self.ts_ns = 0  # the previous packet's, for simple packet blocks

    def walk(self, s: Stream, pos: int) -> tuple[Records, int, int, bool]:
        first_frame = self.frame
        pieces: list[tuple[np.ndarray, ...]] = []
        huge: dict[int, int] = {}
        self._status = _MORE
        while self._status == _MORE:
            if s.n - pos >= _VECTOR_MIN:
                if self.engine is None:
                    found, pos = self._vector(s, pos)
                    self._found(len(found[0]))
                else:
                    found, pos = self._vector_compiled(s, pos)
                if len(found[0]):
                    pieces.append(found)
                    self.frame += len(found[0])
            steps: list[tuple[int, int, int, int, int]] = []
            pos = self._steps(s, pos, self.steps, steps)
            if steps:
                off, caplen, wire_len, ts, linktype = zip(*steps, strict=True)
                try:
                    ts_ns = np.array(ts, I64)
                except OverflowError:
                    start = sum(len(p[0]) for p in pieces)
                    ts_ns = np.array([t if INT64_MIN <= t <= INT64_MAX else 0 for t in ts],
                                     I64)
                    huge.update((start + i, t) for i, t in enumerate(ts)
                                if not INT64_MIN <= t <= INT64_MAX)
                pieces.append((np.array(off, I64), np.array(caplen, I64),
                               np.array(wire_len, I64), ts_ns, np.array(linktype, I64)))
        cols = list(pieces[0]) if len(pieces) == 1 else \
            [np.concatenate(c) for c in zip(*pieces, strict=True)] if pieces else [EMPTY] * 5
        records = Records(first_frame, *cols, huge=huge)
        return records, pos, self._need, self._status == _DONE

    def _vector_compiled(self, s: Stream, pos: int) -> tuple[tuple[np.ndarray, ...], int]:
        """`_vector` by the compiled reader: the run of Enhanced Packet Blocks from `pos`
        that records.py takes without a word, whatever their interfaces (`_steps` walks
        what ends it: another block, damage, a time it does not convert)."""
        stop, cols = creader.pcapng_walk(self.engine, s, pos, self.e.prefix == ">",
                                         creader.interfaces(self.ifaces))
        if cols.shape[1]:
            self.ts_ns = int(cols[3, -1])
        return tuple(cols), stop

    def _vector(self, s: Stream, pos: int) -> tuple[tuple[np.ndarray, ...], int]:
        """The verified chain of Enhanced Packet Blocks from `pos`, next pos."""
        n = s.n
        ifaces = self.ifaces
        last = min(n, pos + self.window) - 28
        none = (EMPTY,) * 5
        if last < pos or not ifaces:
            return none, pos
        u32 = np.dtype(self.e.prefix + "u4")
        words = s.store[pos : pos + ((last - pos) // 4 + 1) * 4].view(u32)
        cand = np.flatnonzero(words == PCAPNG_BT_EPB) * 4
        if not len(cand) or cand[0]:  # not at an EPB
            self._walked(pos, pos, last)
            return none, pos
        cand += pos
        head = s.rows(cand, 28).view(u32).astype(I64)
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
        ts = np.empty(len(k), I64)
        linktype = np.empty(len(k), I64)
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
        self, s: Stream, pos: int, limit: int, out: list[tuple[int, int, int, int, int]]
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
        return units.astype(I64) * mul + offset_ns
    shift = div.bit_length() - 1
    if div == 1 << shift and mul == _NS and shift <= 32 \
            and (top >> shift) * mul + mul + abs(offset_ns) < limit:
        low = (units & np.uint64(div - 1)).astype(I64) * mul >> shift
        return (units >> np.uint64(shift)).astype(I64) * mul + low + offset_ns
    if mul == 1 and div < 1 << 63 and top // div + abs(offset_ns) < limit:
        return (units // np.uint64(div)).astype(I64) + offset_ns
    return None
