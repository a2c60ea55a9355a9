"""Capture records: pcap / pcapng framing -> ``(frame_no, ts_ns, linktype, wire_len, data)``.

Owns: the two file formats' headers and record/block framing, per-interface link types and
time resolutions, integer-nanosecond timestamps, frame numbering (1-based over every
packet record, as Wireshark's frame.number), and stopping cleanly at damage with a
warning that names the byte offset (in the decompressed capture) and the frame number.
Must not know about link-layer, IP or TCP contents: `data` is handed on undecoded.

Where dpkt is bypassed, and why. dpkt is the reader of record for protocol numbers (the
pcapng block and option codes below are ``dpkt.pcapng``'s, checked by a test), but its
readers are not used for framing:

* ``dpkt.pcap.Reader`` returns timestamps as float (or Decimal for nanosecond files):
  floats lose nanosecond precision on epoch times. Here record headers are unpacked with
  `struct` and ``ts_ns = sec * 10**9 + frac * (1000 or 1)`` is exact. It also raises on a
  truncated last record instead of delivering the frames before it.
* ``dpkt.pcapng.Reader`` honours only the first Interface Description Block's link type
  and ``if_tsresol``, and stops at a second Section Header Block. Here every IDB of every
  section is kept (link type, ``if_tsresol``, ``if_tsoffset``, snap length), EPB / SPB /
  obsolete PB are read, each section may switch byte order, unknown blocks are skipped.

Both formats are read through one sliding buffer (1 MiB reads, ``unpack_from`` at an
offset), which is much faster than two small reads per record and never seeks.
Timestamps of 2^-n resolutions are floored to whole nanoseconds. The classic pcap
``thiszone`` field is ignored (always 0 in practice; Wireshark ignores it too); the FCS
bits in the upper half of its link-type field are masked off. An SPB has no timestamp:
it gets the previous packet's (0 if it is the first); so does a pcapng packet whose time
no table can hold (see `MAX_TS_NS`), with a warning.

Damage never makes the reader allocate what a header claims: a pcap record is at most
`MAX_BLOCK_LEN` bytes whatever the snap length says, as is a pcapng block.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from .errors import CaptureError
from .files import PCAP_MAGICS, READ_ERRORS, OpenedCapture, read_exact
from .stats import MAX_SIMILAR_WARNINGS, ReadStats

# pcapng block types and option codes, as dpkt.pcapng names them (the values of the
# pcapng specification; tests/test_capture_formats.py checks them against dpkt's own):
# written out here so that reading a capture does not import all of dpkt (~30 ms).
PCAPNG_BT_SHB = 0x0A0D0D0A  #: section header block
PCAPNG_BT_IDB = 1  #: interface description block
PCAPNG_BT_PB = 2  #: (obsolete) packet block
PCAPNG_BT_SPB = 3  #: simple packet block
PCAPNG_BT_EPB = 6  #: enhanced packet block
PCAPNG_OPT_ENDOFOPT = 0
PCAPNG_OPT_IF_TSRESOL = 9
PCAPNG_OPT_IF_TSOFFSET = 14

#: (frame_no, ts_ns, linktype, wire_len, captured bytes)
Record = tuple[int, int, int, int, bytes]

CHUNK = 1 << 20
#: A pcap record claiming more than max(snaplen, this) bytes is taken as corruption
#: (Wireshark's usual ceiling is 262144).
MAX_PCAP_CAPLEN = 1 << 18
#: A pcapng block longer than this is taken as corruption.
MAX_BLOCK_LEN = 1 << 26
#: The instants a table can hold (pandas' int64 nanoseconds: 1677-09-21 to 2262-04-11).
#: Classic pcap cannot leave it (unsigned 32-bit seconds end in 2106); a pcapng time
#: outside it is damage: the frame keeps the previous packet's time, with a warning.
MIN_TS_NS = -(1 << 63) + 1
MAX_TS_NS = (1 << 63) - 1

_BOM_BIG = b"\x1a\x2b\x3c\x4d"
_BOM_LITTLE = b"\x4d\x3c\x2b\x1a"
_NS_PER_S = 1_000_000_000


class _Input:
    """The forward-only decompressed byte stream, refilled into a sliding buffer."""

    def __init__(self, opened: OpenedCapture, stats: ReadStats) -> None:
        self.name = opened.name
        self.read = opened.read_some
        self.stats = stats
        self.error: str | None = None  # set when a read failed (I/O, damaged gzip)
        self.where = " of the decompressed data" if opened.gzipped else ""
        self.bad_times = 0  # pcapng packet times out of range, see `bad_time`
        self.similar: dict[str, int] = {}  # warnings given per kind, see `warn_some`

    def fill(self, buf: bytes, pos: int, need: int) -> bytes:
        """Return ``buf[pos:]`` plus more input, until it holds `need` bytes or input ends."""
        rest = buf[pos:]
        chunks = [rest]
        have = len(rest)
        while have < need and self.error is None:
            try:
                data = self.read(max(CHUNK, need - have))
            except READ_ERRORS as exc:
                self.error = f"read failed ({exc})"
                break
            if not data:
                break
            chunks.append(data)
            have += len(data)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def stop(self, what: str, offset: int, frame: int, detail: str) -> None:
        """Record why reading ends early; frames before `frame` were all delivered."""
        cause = self.error or detail
        self.stats.warnings.append(
            f"{self.name}: {what} at byte offset {offset}{self.where} (frame {frame}): "
            f"{cause}; analysed up to frame {frame - 1}"
        )

    def warn(self, message: str) -> None:
        self.stats.warnings.append(f"{self.name}: {message}")

    def warn_some(self, kind: str, message: str) -> bool:
        """Warn, unless `MAX_SIMILAR_WARNINGS` of this `kind` were given for this file
        (the last of them says so). Returns whether a warning was added."""
        count = self.similar[kind] = self.similar.get(kind, 0) + 1
        if count > MAX_SIMILAR_WARNINGS:
            return False
        if count == MAX_SIMILAR_WARNINGS:
            message += "; further such warnings are not shown"
        self.warn(message)
        return True

    def bad_time(self, offset: int, frame: int, ts_ns: int, previous_ns: int) -> None:
        """A pcapng packet time outside `MIN_TS_NS`..`MAX_TS_NS`: warned once per file."""
        self.bad_times += 1
        if self.bad_times == 1:
            self.warn(f"packet block at byte offset {offset}{self.where} (frame {frame}): "
                      f"time {ts_ns} ns is outside the years 1678-2262; it and any later "
                      f"such frame take the previous packet's time ({previous_ns} ns)")


def pcap_max_caplen(snaplen: int) -> int:
    """The largest captured length a pcap record may claim: the snap length, at least
    `MAX_PCAP_CAPLEN`, at most `MAX_BLOCK_LEN` (a damaged header must not make the
    reader allocate gigabytes)."""
    return min(max(snaplen, MAX_PCAP_CAPLEN), MAX_BLOCK_LEN)


def iter_records(opened: OpenedCapture, stats: ReadStats) -> Iterator[Record]:
    """Check the file header now (raising `CaptureError`), then return the record iterator."""
    inp = _Input(opened, stats)
    if opened.kind == "pcap":
        return _pcap_records(inp, *_pcap_header(opened))
    return _pcapng_records(inp, _pcapng_first_block(opened))


# --- classic pcap ---------------------------------------------------------------------


def _pcap_header(opened: OpenedCapture) -> tuple[str, bool, int, int]:
    try:
        header = opened.head + read_exact(opened.read_some, 20)
    except READ_ERRORS as exc:
        raise CaptureError(f"{opened.name}: cannot read the pcap file header: {exc}") from None
    if len(header) < 24:
        raise CaptureError(
            f"{opened.name}: truncated pcap file header ({len(header)} of 24 bytes)"
        )
    endian, nano = PCAP_MAGICS[header[:4]]
    _major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack_from(
        endian + "HHiIII", header, 4
    )
    return endian, nano, network & 0xFFFF, snaplen


def _pcap_records(
    inp: _Input, endian: str, nano: bool, linktype: int, snaplen: int
) -> Iterator[Record]:
    unpack = struct.Struct(endian + "IIII").unpack_from
    frac_ns = 1 if nano else 1000
    max_caplen = pcap_max_caplen(snaplen)
    stats = inp.stats
    link_types = stats.link_types
    buf = b""
    pos = 0
    base = 24  # file offset of buf[0]
    frame = 0
    while True:
        if pos + 16 > len(buf):
            base += pos
            buf = inp.fill(buf, pos, 16)
            pos = 0
            if len(buf) < 16:
                if buf or inp.error:
                    inp.stop("truncated record header", base, frame + 1,
                             f"only {len(buf)} of 16 header bytes before the end of the file")
                break
        sec, frac, caplen, wire_len = unpack(buf, pos)
        if caplen > max_caplen:
            inp.stop("corrupt record header", base + pos, frame + 1,
                     f"captured length {caplen} exceeds the limit {max_caplen}")
            break
        end = pos + 16 + caplen
        if end > len(buf):
            base += pos
            buf = inp.fill(buf, pos, 16 + caplen)
            pos = 0
            end = 16 + caplen
            if end > len(buf):
                inp.stop("truncated record", base, frame + 1,
                         f"{caplen} bytes of packet data announced, {len(buf) - 16} present")
                break
        frame += 1
        ts_ns = sec * _NS_PER_S + frac * frac_ns
        stats.frames += 1
        link_types[linktype] += 1
        if stats.first_ts_ns is None:
            stats.first_ts_ns = ts_ns
        stats.last_ts_ns = ts_ns
        yield frame, ts_ns, linktype, wire_len, buf[pos + 16 : end]
        pos = end


# --- pcapng ---------------------------------------------------------------------------


class _Endian:
    """The structs of one byte order, chosen per section."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.u32 = struct.Struct(prefix + "I").unpack_from
        self.block = struct.Struct(prefix + "II").unpack_from
        self.epb = struct.Struct(prefix + "IIIII").unpack_from
        self.pb = struct.Struct(prefix + "HHIIII").unpack_from
        self.idb = struct.Struct(prefix + "HHI").unpack_from
        self.opt = struct.Struct(prefix + "HH").unpack_from
        self.shb_version = struct.Struct(prefix + "HH").unpack_from
        self.i64 = struct.Struct(prefix + "q").unpack_from


_ENDIANS = {_BOM_BIG: _Endian(">"), _BOM_LITTLE: _Endian("<")}

#: one interface: (linktype, ts multiplier, ts divisor, ts offset in ns, snaplen)
_Iface = tuple[int, int, int, int, int]


def _pcapng_first_block(opened: OpenedCapture) -> bytes:
    """The whole first Section Header Block, checked: it is the file header, so damage
    to it makes the capture unreadable (`CaptureError`), as a broken pcap header does."""
    name = opened.name
    try:
        head = opened.head + read_exact(opened.read_some, 8)
    except READ_ERRORS as exc:
        raise CaptureError(f"{name}: cannot read the pcapng header: {exc}") from None
    if len(head) < 12:
        raise CaptureError(f"{name}: truncated pcapng section header block")
    if head[8:12] not in _ENDIANS:
        raise CaptureError(
            f"{name}: not a pcapng capture (bad byte-order magic 0x{head[8:12].hex()})"
        )
    e = _ENDIANS[head[8:12]]
    blen = e.u32(head, 4)[0]
    if blen < 28 or blen & 3 or blen > MAX_BLOCK_LEN:
        raise CaptureError(f"{name}: corrupt pcapng section header block (length {blen})")
    try:
        head += read_exact(opened.read_some, blen - 12)
    except READ_ERRORS as exc:
        raise CaptureError(f"{name}: cannot read the pcapng header: {exc}") from None
    if len(head) < blen:
        raise CaptureError(f"{name}: truncated pcapng section header block "
                           f"({len(head)} of {blen} bytes)")
    if e.u32(head, blen - 4)[0] != blen:
        raise CaptureError(f"{name}: corrupt pcapng section header block (trailing length "
                           f"{e.u32(head, blen - 4)[0]}, leading {blen})")
    major, minor = e.shb_version(head, 12)
    if major != 1:
        raise CaptureError(f"{name}: unsupported pcapng version {major}.{minor}")
    return head


def _interface(e: _Endian, buf: bytes, pos: int, blen: int) -> _Iface:
    """Parse an Interface Description Block: link type, snap length, if_tsresol, if_tsoffset."""
    linktype, _reserved, snaplen = e.idb(buf, pos + 8)
    resol = 6
    offset_s = 0
    p = pos + 16
    end = pos + blen - 4
    while p + 4 <= end:
        code, length = e.opt(buf, p)
        p += 4
        if code == PCAPNG_OPT_ENDOFOPT or p + length > end:
            break
        if code == PCAPNG_OPT_IF_TSRESOL and length >= 1:
            resol = buf[p]
        elif code == PCAPNG_OPT_IF_TSOFFSET and length >= 8:
            offset_s = e.i64(buf, p)[0]
        p += (length + 3) & ~3
    if resol & 0x80:  # units of 2^-n seconds
        mul, div = _NS_PER_S, 1 << (resol & 0x7F)
    elif resol <= 9:  # units of 10^-n seconds
        mul, div = 10 ** (9 - resol), 1
    else:
        mul, div = 1, 10 ** (resol - 9)
    return linktype, mul, div, offset_s * _NS_PER_S, snaplen


def _pcapng_records(inp: _Input, buf: bytes) -> Iterator[Record]:
    stats = inp.stats
    link_types = stats.link_types
    e = _ENDIANS[buf[8:12]]
    ifaces: list[_Iface] = []
    missing: set[int] = set()  # interface ids already warned about in this section
    pos = 0
    base = 0  # file offset of buf[0]
    frame = 0
    ts_ns = 0
    while True:
        if pos + 12 > len(buf):
            base += pos
            buf = inp.fill(buf, pos, 12)
            pos = 0
            if len(buf) < 12:
                if buf or inp.error:
                    inp.stop("truncated block header", base, frame + 1,
                             f"only {len(buf)} bytes before the end of the file")
                break
        btype, blen = e.block(buf, pos)
        if btype == PCAPNG_BT_SHB:
            bom = buf[pos + 8 : pos + 12]
            if bom not in _ENDIANS:
                inp.stop("corrupt section header block", base + pos, frame + 1,
                         f"bad byte-order magic 0x{bom.hex()}")
                break
            e = _ENDIANS[bom]
            blen = e.u32(buf, pos + 4)[0]
        if blen < 12 or blen & 3 or blen > MAX_BLOCK_LEN:
            inp.stop("corrupt block", base + pos, frame + 1,
                     f"block type 0x{btype:x} claims length {blen}")
            break
        end = pos + blen
        if end > len(buf):
            base += pos
            buf = inp.fill(buf, pos, blen)
            pos = 0
            end = blen
            if end > len(buf):
                inp.stop("truncated block", base, frame + 1,
                         f"block type 0x{btype:x} of {blen} bytes, {len(buf)} present")
                break
        if e.u32(buf, end - 4)[0] != blen:
            inp.stop("corrupt block", base + pos, frame + 1,
                     f"block type 0x{btype:x}: trailing length differs from leading {blen}")
            break

        if btype == PCAPNG_BT_EPB:
            if blen < 32:
                inp.stop("corrupt block", base + pos, frame + 1,
                         f"enhanced packet block too short ({blen} bytes)")
                break
            iface, ts_high, ts_low, caplen, wire_len = e.epb(buf, pos + 8)
            data_at = pos + 28
        elif btype == PCAPNG_BT_SPB:
            if blen < 16:
                inp.stop("corrupt block", base + pos, frame + 1,
                         f"simple packet block too short ({blen} bytes)")
                break
            iface = 0
            wire_len = e.u32(buf, pos + 8)[0]
            caplen = min(wire_len, blen - 16)
            if ifaces and ifaces[0][4]:
                caplen = min(caplen, ifaces[0][4])
            data_at = pos + 12
        elif btype == PCAPNG_BT_IDB:
            if blen >= 20:
                ifaces.append(_interface(e, buf, pos, blen))
            else:
                inp.warn_some("short idb", "interface description block too short at byte "
                              f"offset {base + pos}")
            pos = end
            continue
        elif btype == PCAPNG_BT_SHB:
            if blen < 28:
                inp.stop("corrupt section header block", base + pos, frame + 1,
                         f"too short ({blen} bytes)")
                break
            major, minor = e.shb_version(buf, pos + 12)
            if major != 1:
                inp.stop("unsupported section", base + pos, frame + 1,
                         f"pcapng version {major}.{minor}")
                break
            ifaces = []
            missing = set()
            pos = end
            continue
        elif btype == PCAPNG_BT_PB:
            if blen < 32:
                inp.stop("corrupt block", base + pos, frame + 1,
                         f"packet block too short ({blen} bytes)")
                break
            iface, _drops, ts_high, ts_low, caplen, wire_len = e.pb(buf, pos + 8)
            data_at = pos + 28
        else:  # name resolution, statistics, secrets, custom, unknown: not packets
            pos = end
            continue

        if data_at + caplen > end - 4:
            inp.stop("corrupt block", base + pos, frame + 1,
                     f"captured length {caplen} overruns its {blen}-byte block")
            break
        if iface >= len(ifaces):
            if iface not in missing:
                missing.add(iface)
                inp.warn_some("no idb", f"packet block at byte offset {base + pos} names "
                              f"interface {iface} but its section describes {len(ifaces)}: "
                              "such packets are skipped")
            pos = end
            continue
        linktype, mul, div, offset_ns, _snaplen = ifaces[iface]
        if btype != PCAPNG_BT_SPB:
            ts = ((ts_high << 32) | ts_low) * mul // div + offset_ns
            if MIN_TS_NS <= ts <= MAX_TS_NS:
                ts_ns = ts
            else:
                inp.bad_time(base + pos, frame + 1, ts, ts_ns)
        frame += 1
        stats.frames += 1
        link_types[linktype] += 1
        if stats.first_ts_ns is None:
            stats.first_ts_ns = ts_ns
        stats.last_ts_ns = ts_ns
        yield frame, ts_ns, linktype, wire_len, buf[data_at : data_at + caplen]
        pos = end
