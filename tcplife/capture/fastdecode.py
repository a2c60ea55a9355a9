"""The fast reader's bulk decode: the frames a walk found -> one `Batch` of TCP segments.

Owns: `BulkDecoder`, which copies the first bytes of every frame into one array and
computes the link, IP and TCP fields and every counter column-wise, as decode.py computes
them (checksums, window scale and timestamp options vectorised), and sends the frames it
does not decode in bulk through the plain `Decoder`, merged back in frame order. Steps 2
and 3 of `tcplife.capture.fastread`'s pipeline (see its docstring); knows nothing of file
formats.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from tcplife.core.segment import SYN, Segment

from . import creader
from .bpf import CaptureFilter
from .columns import AddressBook, Batch, distinct
from .decode import Decoder
from .fastbuffer import EMPTY, I64, INT64_MAX, INT64_MIN, Stream
from .fastwalk import Records
from .stats import ReadStats

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
_POW2 = 1 << np.arange(20, dtype=I64)


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
        arrays = [np.array([key(t) for t in c] if j in (3, 5) else c, I64)
                  for j, c in enumerate(cols)]
        return Batch(self.book, *arrays)


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
    ip = np.zeros(count, I64)
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
    base = (np.arange(len(start), dtype=I64) if rows is None else rows) * quarter
    bounds = np.empty(2 * len(start), I64)
    bounds[0::2] = base + first
    bounds[1::2] = base + last
    sums = np.add.reduceat(words.reshape(-1), bounds, dtype=np.uint64)[0::2].astype(I64)
    flat = words.reshape(-1)
    head = (start & 3) << 3  # bits of the first word before `start`
    sums -= flat[bounds[0::2]].astype(I64) & ((1 << head) - 1)
    tail = (end & 3) << 3  # bits of the last word before `end` (0: all of it)
    sums -= np.where(tail > 0, flat[bounds[1::2] - 1].astype(I64) >> tail << tail, 0)
    return sums


def _store_sums(s: Stream, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """`_le_sums` of ``store[start:end]``, the bytes copied in rows of a power of two at
    least 4 above their length (one copy per width)."""
    out = np.zeros(len(start), I64)
    if not len(start):
        return out
    length = end - start
    bits = np.maximum(np.searchsorted(_POW2, length + 3, side="right"), 6)
    for b in distinct(bits):
        rows = np.flatnonzero(bits == b)
        out[rows] = _le_sums(s.rows(start[rows], 1 << b), None, np.zeros(len(rows), I64),
                             length[rows])
    return out


def _window_scales(s: Stream, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """`decode.window_scale` for many option areas ``store[start:end]`` (at most 40 bytes)."""
    count = len(start)
    result = np.full(count, -1, I64)
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
    opts = raw.astype(I64)
    p = np.zeros(count, I64)
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


def _ts_options(s: Stream, start: np.ndarray, end: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """`decode.timestamps` for many option areas ``store[start:end]`` (at most 40 bytes):
    (TSval, TSecr), -1 where absent."""
    count = len(start)
    tsval = np.full(count, -1, I64)
    tsecr = np.full(count, -1, I64)
    if not count:
        return tsval, tsecr
    raw = s.rows(start, 42)  # 40 option bytes, 2 spare for the lookahead
    limit = end - start
    opts = raw.astype(I64)

    def words(r: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = [opts[r, at + k] for k in range(8)]
        return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3],
                (b[4] << 24) | (b[5] << 16) | (b[6] << 8) | b[7])

    # Linux's layout after the handshake (NOP NOP TS, nothing after), as decode.py
    linux = (limit == 12) & (raw[:, 0] == 1) & (raw[:, 1] == 1) & (raw[:, 2] == 8) \
        & (raw[:, 3] == 10)
    r = np.flatnonzero(linux)
    tsval[r], tsecr[r] = words(r, np.full(len(r), 4, I64))
    live = np.flatnonzero(~linux & (limit > 0))
    p = np.zeros(count, I64)
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


class BulkDecoder:
    """Frames -> one `Batch`: bulk columns for the regular frames, the plain `Decoder` for
    the rest, counters into `stats` exactly as the `Decoder` would count them."""

    def __init__(
        self, stats: ReadStats, decoder: Decoder, book: AddressBook, verify_checksums: bool,
        capture_filter: CaptureFilter | None = None, engine: ModuleType | None = None,
    ) -> None:
        self.stats = stats
        self.engine = engine  #: the compiled reader (creader.compiled_reader), or None
        self.decoder = decoder
        self.book = book
        self.verify = verify_checksums
        self.filter = capture_filter
        self.pack = _Packer(book).pack

    def _kept(self, s: Stream, rec: Records) -> np.ndarray:
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

    def batch(self, s: Stream, rec: Records, pending: list[tuple[int, str]]) -> Batch | None:
        stats = self.stats
        count = len(rec.off)
        frames = np.arange(rec.first_frame + 1, rec.first_frame + count + 1, dtype=I64)
        bulk: Batch | None = None
        rest = EMPTY
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
                    rec = Records(rec.first_frame, rec.off[rows], rec.caplen[rows],
                                   rec.wire_len[rows], rec.ts_ns[rows], rec.linktype[rows],
                                   {int(new_row[r]): t for r, t in rec.huge.items()
                                    if keep[r]})
                    frames = frames[rows]
                    count = kept
                    lts = _link_types(rec.linktype) if kept else []
        if count:
            if self.engine is None:
                bulk, rest = self._bulk(s, rec, frames, lts)
            else:
                bulk, rest = self._bulk_compiled(s, rec, frames)
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
        self, s: Stream, rec: Records, frames: np.ndarray, rows: np.ndarray,
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
                if not INT64_MIN <= ts <= INT64_MAX:
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
        self, s: Stream, rec: Records, frames: np.ndarray, lts: list[tuple[int, int]]
    ) -> tuple[Batch | None, np.ndarray]:
        """Columns of the frames decoded in bulk, and the rows left for the `Decoder`."""
        stats = self.stats
        off, caplen, wire = rec.off, rec.caplen, rec.wire_len
        wide = s.rows(off, _WIDE)
        if len(lts) == 1:
            cls, ip = _link(wide, caplen, lts[0][0])
        else:
            cls = np.empty(len(off), np.int8)
            ip = np.empty(len(off), I64)
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
        ihl = (vhl & 0x0F).astype(I64) << 2
        total4 = f["total4"].astype(I64)
        frag = f["frag"]
        total6 = f["total6"].astype(I64)
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
        header_len = (th["offset"] >> 4).astype(I64) << 2
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
            bad = np.empty(0, I64)
        left = np.concatenate(irregular)
        left.sort()
        if not done:
            return None, left

        # columns
        flags = th["flags"].astype(I64)
        wscale = np.full(done, -1, I64)
        syn = np.flatnonzero(((flags & SYN) != 0) & (header_len > 20))
        if len(syn):
            at = _take(off, rows)[syn] + tcp_at[syn]
            wscale[syn] = _window_scales(
                s, at + 20, at + np.minimum(header_len[syn], size[syn] - tcp_at[syn]))
        tsval = np.full(done, -1, I64)
        tsecr = np.full(done, -1, I64)
        opt = np.flatnonzero(header_len > 20)
        if len(opt):
            at = _take(off, rows)[opt] + tcp_at[opt]
            tsval[opt], tsecr[opt] = _ts_options(
                s, at + 20, at + np.minimum(header_len[opt], size[opt] - tcp_at[opt]))
        src = f["src4"].astype(I64)
        dst = f["dst4"].astype(I64)
        six = np.flatnonzero(~v4)
        if len(six):
            src[six], dst[six] = self._v6_keys(wide, _take(np.arange(len(off)), rows)[six],
                                               ipo[six])
        if len(bad):
            self._count_senders(src[bad])
        batch = Batch(
            self.book, _take(frames, rows), _take(rec.ts_ns, rows),
            np.where(v4, 4, 6).astype(I64), src, th["sport"].astype(I64), dst,
            th["dport"].astype(I64), th["seq"].astype(I64), th["ack"].astype(I64), flags,
            payload_len, th["window"].astype(I64), wscale, tsval, tsecr,
        )
        return batch, left

    def _bulk_compiled(
        self, s: Stream, rec: Records, frames: np.ndarray
    ) -> tuple[Batch | None, np.ndarray]:
        """`_bulk` by the compiled reader (engine/decode.c): the same frames decoded, the
        same rows left for the `Decoder`, the same counts."""
        stats = self.stats
        linktype = rec.linktype
        if rec.huge:  # their time does not fit the column: the Decoder's (it says so)
            linktype = linktype.copy()
            linktype[list(rec.huge)] = -1
        got = creader.decode(self.engine, s, rec.off, rec.caplen, rec.wire_len, linktype,
                             frames, rec.ts_ns, self.verify)
        stats.undecodable += got.undecodable
        stats.non_tcp += got.non_tcp
        stats.fragments += got.fragments
        stats.tcp_segments += got.tcp_segments
        stats.truncated += got.truncated
        stats.unverified_checksums += got.unverified_checksums
        stats.bad_checksums += got.bad_checksums
        if not got.tcp_segments:
            return None, got.left
        batch = Batch(self.book, *got.columns)
        if len(got.v6):
            six = np.flatnonzero(batch.ip_version == 6)
            batch.src[six], batch.dst[six] = self._keys(
                np.concatenate((got.v6[:, :16], got.v6[:, 16:])))
        if len(got.bad):
            self._count_senders(batch.src[got.bad])
        return batch, got.left

    def _count_senders(self, src: np.ndarray) -> None:
        """Bad checksums by sender (one sender's every segment: checksum offload)."""
        keys, counts = np.unique(src, return_counts=True)
        senders = self.stats.bad_checksum_senders
        for key, n in zip(keys.tolist(), counts.tolist(), strict=True):
            senders[self.book.name(key)] += n

    @staticmethod
    def _bad_checksums(
        s: Stream, wide: np.ndarray, rows: np.ndarray | None, off: np.ndarray,
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
        sums = np.empty(len(w), I64)
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
        return self._keys(np.concatenate((head[:, 8:24], head[:, 24:40])))

    def _keys(self, both: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """AddressBook keys of packed IPv6 addresses (rows of 16 bytes: the sources, then
        as many destinations), new ones numbered in the order of their bytes."""
        packed = np.ascontiguousarray(both).view("V16").ravel()
        unique, inverse = np.unique(packed, return_inverse=True)
        key_v6 = self.book.key_v6
        keys = np.array([key_v6(u.tobytes()) for u in unique], I64)[inverse.ravel()]
        half = len(keys) // 2
        return keys[:half], keys[half:]
