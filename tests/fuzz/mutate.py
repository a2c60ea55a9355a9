"""The hostile-input corpus: damaged, crafted and non-capture inputs for tcplife's readers.

Owns: turning a few seed captures into a few hundred deterministic mutants (the same
``seed`` gives the same bytes), each labelled with what a correct reader must still
deliver, plus synthetic captures for what no seed contains (every TCP flag combination,
wrapping and overlapping sequence numbers, timestamps from 1970 and 2106, out-of-range
pcapng times) and inputs that are not captures at all. Knows nothing of tcplife's
reader: the framing of seeds is walked here with its own few lines, so that a bug in the
reader cannot hide in its own expectations. Nothing is written to the repository:
`write` puts the corpus in a directory the caller chooses (a pytest tmp dir).

Families (``Case.family``): truncate, global_header, record_header, pcapng_block,
ip_header, tcp_header, flags, sequence, time, not_capture, bitflip, splice.

Run as a script to look at the corpus or to seed a fuzzer::

    python tests/fuzz/mutate.py OUTDIR [--seed N] [--random N]
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import lzma
import random
import struct
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import capture_builders as cb  # noqa: E402

REPO = TESTS.parent
CORPUS = REPO.parent / "shared" / "corpus" / "pcaps"
#: small seeds with different formats and link types: pcap LE/BE/ns, pcapng, IPv6, SLL
SAMPLE_SEEDS = [
    "normal_close_client_first.client.pcap",
    "normal_close_client_first.client.pcapng",
    "ipv6.client.pcap",
    "listen_no_accept.any.pcap",
    "refused.client.pcap",
]
CORPUS_SEEDS = [
    "sanders__tcp_teardown.pcapng",
    "tcpdump__tcp-handshake-nano.pcap",
    "zeek__tcp__truncated-header.pcap",
    "sv__bug-4702-01.pcap",
]

PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<",
               b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
EPB = 6


@dataclass(frozen=True)
class Case:
    """One hostile input and what a reader must still get right about it.

    ``data`` is the file's bytes (None: a directory). ``prefix`` is the length of a clean
    capture that is the undamaged start of this one: the tables of the case must equal
    the tables of ``data[:prefix]`` (everything before the damage is still reported).
    ``frames``: the damage is inside packet bytes, so exactly this many frames are read.
    """

    name: str
    family: str
    data: bytes | None
    prefix: int | None = None
    frames: int | None = None


@dataclass(frozen=True)
class Record:
    """Where one record (pcap) or block (pcapng) lies in its file."""

    start: int
    end: int
    kind: int  #: pcapng block type; 6 (EPB) for every pcap record
    data: int  #: where the packet bytes start (records and EPBs)
    caplen: int


@dataclass(frozen=True)
class Seed:
    name: str
    data: bytes
    pcapng: bool
    endian: str
    header: int  #: bytes before the first record (pcap: 24; pcapng: the SHB is a block)
    records: list[Record]
    linktype: int

    @property
    def packets(self) -> list[Record]:
        return [r for r in self.records if r.kind == EPB]


def parse(name: str, data: bytes) -> Seed:
    """Walk a clean capture's framing (pcap records, or pcapng blocks)."""
    records: list[Record] = []
    if data[:4] in PCAP_MAGICS:
        e = PCAP_MAGICS[data[:4]]
        linktype = struct.unpack_from(e + "I", data, 20)[0] & 0xFFFF
        pos = 24
        while pos + 16 <= len(data):
            caplen = struct.unpack_from(e + "I", data, pos + 8)[0]
            if pos + 16 + caplen > len(data):
                break
            records.append(Record(pos, pos + 16 + caplen, EPB, pos + 16, caplen))
            pos += 16 + caplen
        return Seed(name, data, False, e, 24, records, linktype)
    if data[:4] != PCAPNG_MAGIC:
        raise ValueError(f"{name}: not a capture")
    e = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    pos, linktype = 0, -1
    while pos + 12 <= len(data):
        kind, length = struct.unpack_from(e + "II", data, pos)
        if length < 12 or pos + length > len(data):
            break
        caplen = struct.unpack_from(e + "I", data, pos + 20)[0] if kind == EPB else 0
        if kind == 1 and linktype < 0:
            linktype = struct.unpack_from(e + "H", data, pos + 8)[0]
        records.append(Record(pos, pos + length, kind, pos + 28, caplen))
        pos += length
    return Seed(name, data, True, e, 0, records, linktype)


def seeds(extra: Iterable[Path] = ()) -> list[Seed]:
    """The seed captures that exist here (the third-party corpus may be absent)."""
    paths = [REPO / "sample_pcaps" / n for n in SAMPLE_SEEDS]
    paths += [CORPUS / n for n in CORPUS_SEEDS]
    paths += list(extra)
    return [parse(p.name, p.read_bytes()) for p in paths if p.is_file()]


# --- helpers --------------------------------------------------------------------------


def _put(data: bytes, at: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, *values)
    return bytes(out)


def _boundary(seed: Seed, cut: int) -> int | None:
    """The longest clean capture within ``data[:cut]``: header and whole records."""
    if cut < seed.header or (seed.pcapng and (not seed.records or cut < seed.records[0].end)):
        return None
    ends = [seed.header] + [r.end for r in seed.records if r.end <= cut]
    return max(ends)


_IP_AT = {1: 14, 113: 16, 276: 20, 0: 4, 108: 4, 12: 0, 14: 0, 101: 0, 228: 0, 229: 0}


def _ip_offset(seed: Seed, rec: Record) -> int | None:
    """Where the IP header of a TCP packet record starts in the file, else None."""
    ip = _IP_AT.get(seed.linktype)
    if ip is None or rec.caplen < ip + 40:
        return None
    at = rec.data + ip
    d = seed.data
    if d[at] >> 4 == 4 and d[at + 9] == 6 and (d[at] & 15) >= 5:
        return at
    if d[at] >> 4 == 6 and d[at + 6] == 6:
        return at
    return None


def _tcp_packets(seed: Seed) -> list[tuple[Record, int]]:
    out = []
    for rec in seed.packets:
        ip = _ip_offset(seed, rec)
        if ip is not None:
            out.append((rec, ip))
    return out


def _tcp_offset(data: bytes, ip: int) -> int:
    return ip + ((data[ip] & 15) << 2) if data[ip] >> 4 == 4 else ip + 40


# --- families of damage to a seed -----------------------------------------------------


def truncations(seed: Seed, rng: random.Random, count: int) -> Iterator[Case]:
    """Cut anywhere: in the file header, in a record header, in packet data, on a
    boundary; and at random offsets."""
    d = seed.data
    cuts = {0, 1, 3, 4, 7, 12, 23, 24, 25, len(d) - 1}
    for rec in seed.records[:3] + seed.records[-2:]:
        cuts |= {rec.start + 1, rec.start + 8, rec.start + 15, rec.data + 1,
                 (rec.start + rec.end) // 2, rec.end - 1, rec.end}
    cuts |= {rng.randrange(len(d)) for _ in range(count)}
    for cut in sorted(c for c in cuts if 0 <= c < len(d)):
        yield Case(f"truncate-{seed.name}-{cut}", "truncate", d[:cut], prefix=_boundary(seed, cut))


def global_header(seed: Seed) -> Iterator[Case]:
    """Bit flips in the pcap file header / pcapng section header, and odd snap lengths."""
    d = seed.data
    size = 24 if not seed.pcapng else seed.records[0].end
    for byte in range(size):
        for bit in (0, 7) if byte % 3 else (3,):
            out = bytearray(d)
            out[byte] ^= 1 << bit
            yield Case(f"header-{seed.name}-{byte}.{bit}", "global_header", bytes(out))
    if not seed.pcapng:
        for snaplen in (0, 1, 0xFFFFFFFF, 0x7FFFFFFF):
            yield Case(f"snaplen-{seed.name}-{snaplen}", "global_header",
                       _put(d, 16, seed.endian + "I", snaplen), frames=len(seed.packets))
        for linktype in (0xFFFF, 147, 0x0FFF0001):  # unknown, user 0, FCS bits set
            yield Case(f"linktype-{seed.name}-{linktype}", "global_header",
                       _put(d, 20, seed.endian + "I", linktype), frames=len(seed.packets))


def record_headers(seed: Seed) -> Iterator[Case]:
    """pcap record lengths that lie: beyond the file, beyond the snap length, zero, 4 GB,
    the file's snap length 4 GB too; wire lengths zero or smaller than captured."""
    if seed.pcapng:
        return
    d, e = seed.data, seed.endian
    recs = seed.records
    for k in sorted({0, 1, len(recs) // 2, len(recs) - 1}):
        rec = recs[k]
        at = rec.start + 8
        clean = rec.start  # reading must stop here, everything before it reported
        beyond = len(d) - rec.data + 1
        yield Case(f"caplen-past-eof-{seed.name}-{k}", "record_header",
                   _put(d, at, e + "I", beyond), prefix=clean)
        for huge in (0xFFFFFFFF, 0xFFFFFFF0, 0x80000000, 1 << 20):
            yield Case(f"caplen-{huge:x}-{seed.name}-{k}", "record_header",
                       _put(d, at, e + "I", huge), prefix=clean)
            both = _put(_put(d, at, e + "I", huge), 16, e + "I", 0xFFFFFFFF)
            yield Case(f"caplen-{huge:x}-snaplen-max-{seed.name}-{k}", "record_header", both,
                       prefix=clean if huge > len(d) else None)
        for caplen in (0, 1, 15, rec.caplen + 1, rec.caplen * 2 + 16):
            yield Case(f"caplen-{caplen}-{seed.name}-{k}", "record_header",
                       _put(d, at, e + "I", caplen))
        for wire in (0, 1, rec.caplen - 1, 0xFFFFFFFF):
            yield Case(f"wirelen-{wire}-{seed.name}-{k}", "record_header",
                       _put(d, at + 4, e + "I", wire), frames=len(seed.packets))


def pcapng_blocks(seed: Seed) -> Iterator[Case]:
    """Block lengths that lie (leading, trailing, both), unknown and custom block types,
    bad interface ids and time resolutions, another section of another version."""
    if not seed.pcapng:
        return
    d, e = seed.data, seed.endian
    packets = [i for i, r in enumerate(seed.records) if r.kind == EPB]
    for i in sorted({packets[0], packets[len(packets) // 2], packets[-1]}):
        rec = seed.records[i]
        length = rec.end - rec.start
        for wrong in (0, 4, 11, 13, length - 4, length + 4, length + 1, 0xFFFFFFF0,
                      0xFFFFFFFF, 1 << 27):
            yield Case(f"blocklen-{wrong}-{seed.name}-{i}", "pcapng_block",
                       _put(d, rec.start + 4, e + "I", wrong), prefix=rec.start)
            yield Case(f"blocklen-both-{wrong}-{seed.name}-{i}", "pcapng_block",
                       _put(_put(d, rec.start + 4, e + "I", wrong), rec.end - 4, e + "I",
                            wrong & 0xFFFFFFFF))
        yield Case(f"trailer-{seed.name}-{i}", "pcapng_block",
                   _put(d, rec.end - 4, e + "I", length + 8), prefix=rec.start)
        for caplen in (0, 0xFFFFFFFF, rec.caplen + 100, length):
            yield Case(f"epb-caplen-{caplen}-{seed.name}-{i}", "pcapng_block",
                       _put(d, rec.start + 20, e + "I", caplen))
        for iface in (1, 0xFFFFFFFF):
            yield Case(f"epb-iface-{iface}-{seed.name}-{i}", "pcapng_block",
                       _put(d, rec.start + 8, e + "I", iface), frames=len(packets) - 1)
        for kind in (0, 0x0BADBEEF, 0x00000BAD, 0x40000BAD, 0x80000001, 0x0A0D0D0A):
            yield Case(f"blocktype-{kind:x}-{seed.name}-{i}", "pcapng_block",
                       _put(d, rec.start, e + "I", kind))
        unknown = cb.block(0x0BADBEEF, b"\xff" * 13, e) + cb.block(0x80000BAD, b"", e)
        yield Case(f"unknown-blocks-before-{seed.name}-{i}", "pcapng_block",
                   d[: rec.start] + unknown + d[rec.start :], frames=len(packets))
    first_idb = next((r for r in seed.records if r.kind == 1), None)
    shb_len = seed.records[0].end
    for wrong in (0, 12, 27, shb_len + 4, 0xFFFFFFFC):
        yield Case(f"shb-len-{wrong}-{seed.name}", "pcapng_block",
                   _put(d, 4, e + "I", wrong))  # the file header: unreadable
        if first_idb is not None:
            yield Case(f"idb-len-{wrong}-{seed.name}", "pcapng_block",
                       _put(d, first_idb.start + 4, e + "I", wrong), prefix=first_idb.start)
    bad_bom = _put(d, 8, "4s", b"\x1a\x2b\x3c\x4e")
    yield Case(f"second-section-bad-bom-{seed.name}", "pcapng_block", d + bad_bom,
               prefix=len(d))
    if first_idb is not None:
        for resol in (0, 9, 10, 19, 63, 0x80, 0x80 | 63, 0xFF):
            tsresol = cb.option(9, bytes([resol]), e)
            body = struct.pack(e + "HHI", seed.linktype, 0, 0) + tsresol + cb.option(0, b"", e)
            yield Case(f"tsresol-{resol}-{seed.name}", "pcapng_block",
                       d[: first_idb.start] + cb.block(1, body, e) + d[first_idb.end :],
                       frames=len(packets))
        for bad_opt in (struct.pack(e + "HH", 9, 0xFFFF), struct.pack(e + "HH", 14, 3) + b"abcd"):
            body = struct.pack(e + "HHI", seed.linktype, 0, 0) + bad_opt
            yield Case(f"idb-option-{bad_opt[:4].hex()}-{seed.name}", "pcapng_block",
                       d[: first_idb.start] + cb.block(1, body, e) + d[first_idb.end :],
                       frames=len(packets))
        yield Case(f"idb-short-{seed.name}", "pcapng_block",
                   d[: first_idb.start] + cb.block(1, b"\1\0", e) + d[first_idb.end :])
    yield Case(f"second-section-v2-{seed.name}", "pcapng_block", d + cb.shb(e, major=2) + d,
               prefix=len(d))
    yield Case(f"second-section-other-endian-{seed.name}", "pcapng_block",
               d + _swap_section(seed), frames=2 * len(packets))


def _swap_section(seed: Seed) -> bytes:
    """A big-endian section of the seed's packets (a second section switches byte order)."""
    e = ">" if seed.endian == "<" else "<"
    out = cb.shb(e) + cb.idb(seed.linktype, endian=e)
    for rec in seed.packets:
        out += cb.epb(0, 1_700_000_000_000_000, seed.data[rec.data : rec.data + rec.caplen],
                      endian=e)
    return out


def ip_headers(seed: Seed) -> Iterator[Case]:
    """Impossible IP headers: header lengths below 20 or past the packet, total lengths 0,
    short, huge; wrong versions; fragments; IPv6 lengths and extension headers that lie."""
    tcp = _tcp_packets(seed)
    frames = len(seed.packets)
    for rec, ip in dict(tcp[:2] + tcp[-1:]).items():
        d = seed.data
        tag = f"{seed.name}-{rec.start}"
        if d[ip] >> 4 == 4:
            for ihl in (0, 1, 4, 6, 15):
                yield Case(f"ihl-{ihl}-{tag}", "ip_header",
                           _put(d, ip, "B", 0x40 | ihl), frames=frames)
            for total in (0, 1, 19, 20, 39, 65535):
                yield Case(f"iplen-{total}-{tag}", "ip_header",
                           _put(d, ip + 2, "!H", total), frames=frames)
            for version in (0, 6, 15):
                yield Case(f"ipversion-{version}-{tag}", "ip_header",
                           _put(d, ip, "B", (version << 4) | (d[ip] & 15)), frames=frames)
            for frag in (0x2000, 0x1FFF, 0x3FFF, 0x0001):
                yield Case(f"frag-{frag:x}-{tag}", "ip_header",
                           _put(d, ip + 6, "!H", frag), frames=frames)
        else:
            for total in (0, 1, 19, 65535):
                yield Case(f"ip6len-{total}-{tag}", "ip_header",
                           _put(d, ip + 4, "!H", total), frames=frames)
            for nh in (0, 43, 44, 51, 60, 59, 17):
                out = _put(d, ip + 6, "B", nh)
                yield Case(f"ip6next-{nh}-{tag}", "ip_header", out, frames=frames)
                # an extension header whose length points far past the packet
                out = _put(out, ip + 40, "BB", 0, 255)
                yield Case(f"ip6ext-huge-{nh}-{tag}", "ip_header", out, frames=frames)


def tcp_headers(seed: Seed) -> Iterator[Case]:
    """TCP data offsets below 5 or past the segment; options that lie about lengths."""
    frames = len(seed.packets)
    for rec, ip in _tcp_packets(seed)[:3]:
        d = seed.data
        at = _tcp_offset(d, ip)
        if at + 20 > rec.data + rec.caplen:
            continue
        tag = f"{seed.name}-{rec.start}"
        for offset in (0, 1, 4, 6, 15):
            yield Case(f"tcpoff-{offset}-{tag}", "tcp_header",
                       _put(d, at + 12, "B", (offset << 4) | (d[at + 12] & 15)), frames=frames)
        if (d[at + 12] >> 4) > 5 and at + 22 <= rec.data + rec.caplen:
            for opt in (b"\x03\xff", b"\x03\x00", b"\x02\x00", b"\x01\x01", b"\x03\x01"):
                yield Case(f"tcpopt-{opt.hex()}-{tag}", "tcp_header",
                           d[: at + 20] + opt + d[at + 22 :], frames=frames)


def bitflips(seed: Seed, rng: random.Random, count: int) -> Iterator[Case]:
    """1 to 8 random bit flips anywhere after the file header."""
    d = seed.data
    for n in range(count):
        out = bytearray(d)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(min(24, len(d) - 1), len(d))] ^= 1 << rng.randrange(8)
        yield Case(f"bitflip-{seed.name}-{n}", "bitflip", bytes(out))


def splices(seed: Seed, rng: random.Random, count: int) -> Iterator[Case]:
    """A random chunk deleted, duplicated, or overwritten with 0x00 / 0xff."""
    d = seed.data
    for n in range(count):
        a = rng.randrange(len(d))
        b = min(len(d), a + rng.randint(1, 64))
        how = rng.choice(["delete", "duplicate", "zero", "ones"])
        if how == "delete":
            out = d[:a] + d[b:]
        elif how == "duplicate":
            out = d[:b] + d[a:b] + d[b:]
        else:
            out = d[:a] + (b"\0" if how == "zero" else b"\xff") * (b - a) + d[b:]
        yield Case(f"splice-{how}-{seed.name}-{n}", "splice", out)


# --- synthetic captures ---------------------------------------------------------------

A, B = ("10.9.0.1", 41000), ("10.9.0.2", 80)


def _frame(src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int, flags: int,
           payload: bytes = b"") -> bytes:
    return cb.ethernet(cb.ipv4_tcp(src[0], dst[0], sport=src[1], dport=dst[1],
                                   seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF, flags=flags,
                                   payload=payload))


def _pcap(frames: list[bytes], t0: int = 1_700_000_000, step_us: int = 1000,
          times: list[tuple[int, int]] | None = None, nano: bool = False) -> bytes:
    if times is None:
        times = [divmod(t0 * 1_000_000 + i * step_us, 1_000_000) for i in range(len(frames))]
    return cb.pcap_file([(s, f, data) for (s, f), data in zip(times, frames, strict=True)],
                        nano=nano)


def _conversation(first_flags: int | None = None, c_isn: int = 1000,
                  s_isn: int = 5000) -> list[bytes]:
    """Handshake, data both ways, FINs; with `first_flags` an odd segment from the client
    right after the handshake (and its mirror from the server)."""
    c, s = c_isn, s_isn
    out = [_frame(A, B, c, 0, 0x02), _frame(B, A, s, c + 1, 0x12), _frame(A, B, c + 1, s + 1, 0x10)]
    if first_flags is not None:
        out += [_frame(A, B, c + 1, s + 1, first_flags, b"odd"),
                _frame(B, A, s + 1, c + 1, first_flags, b"odd")]
    out += [_frame(A, B, c + 1, s + 1, 0x18, b"x" * 10),
            _frame(B, A, s + 1, c + 11, 0x18, b"y" * 20),
            _frame(A, B, c + 11, s + 21, 0x11), _frame(B, A, s + 21, c + 12, 0x11),
            _frame(A, B, c + 12, s + 22, 0x10)]
    return out


NAMED_FLAGS = {"syn-fin": 0x03, "syn-rst": 0x06, "syn-fin-rst": 0x07, "all-eight": 0xFF,
               "null": 0x00, "xmas": 0x29, "fin-only": 0x01, "rst-ack-psh": 0x1C,
               "syn-ack-fin-rst": 0x17, "urg-ece-cwr": 0xE0}


def flag_cases() -> Iterator[Case]:
    """Every TCP flag combination: as the first packet of 256 4-tuples, inside one
    established connection, and the named odd ones as a connection's opening packet."""
    firsts = [_frame(("10.9.1.1", 20000 + f), B, 1000 * f, 0, f) for f in range(256)]
    yield Case("flags-all-256-first", "flags", _pcap(firsts), frames=256)
    inside = _conversation()[:3]
    inside += [_frame(A if f % 2 else B, B if f % 2 else A, 1001 if f % 2 else 5001,
                      5001 if f % 2 else 1001, f, b"z" * (f % 3)) for f in range(256)]
    yield Case("flags-all-256-inside", "flags", _pcap(inside), frames=len(inside))
    for name, f in NAMED_FLAGS.items():
        yield Case(f"flags-{name}-opening", "flags",
                   _pcap([_frame(A, B, 77, 0, f)] + _conversation()[1:]), frames=8)
        yield Case(f"flags-{name}-after-handshake", "flags", _pcap(_conversation(f)), frames=10)


def sequence_cases() -> Iterator[Case]:
    """Sequence numbers that wrap, overlap, jump by 2^31, ACK what was never sent."""
    yield Case("seq-wrap", "sequence", _pcap(_conversation(c_isn=0xFFFFFFF8, s_isn=0xFFFFFFFF)),
               frames=8)
    c = _conversation()[:3]
    overlap = c + [_frame(A, B, 1001, 5001, 0x18, b"a" * 100),
                   _frame(A, B, 1051, 5001, 0x18, b"b" * 100),   # overlaps the first
                   _frame(A, B, 1001, 5001, 0x18, b"c" * 200),   # covers both
                   _frame(A, B, 1021, 5001, 0x18, b"d" * 10),    # inside
                   _frame(B, A, 5001, 1201, 0x10), _frame(B, A, 5001, 1101, 0x10),  # ACK back
                   _frame(A, B, 1201, 5001, 0x11), _frame(B, A, 5001, 1202, 0x11),
                   _frame(A, B, 1202, 5002, 0x10)]
    yield Case("seq-overlap", "sequence", _pcap(overlap), frames=len(overlap))
    jumps = c + [_frame(A, B, 1001 + (1 << 31), 5001, 0x18, b"j"),
                 _frame(B, A, 5001, 1001 + (1 << 31), 0x10),
                 _frame(A, B, 1001, 5001 + (1 << 31) + 7, 0x10),       # ACK of unsent data
                 _frame(B, A, 0xFFFFFFFF, 0, 0x11),
                 _frame(A, B, (1001 - (1 << 31)) & 0xFFFFFFFF, 0xFFFFFFFF, 0x14)]
    yield Case("seq-jumps", "sequence", _pcap(jumps), frames=len(jumps))
    rsts = c + [_frame(A, B, (1001 + k * 0x10000000) & 0xFFFFFFFF, 5001, 0x04) for k in range(16)]
    yield Case("seq-rst-everywhere", "sequence", _pcap(rsts), frames=len(rsts))
    reuse = []
    for isn in (1000, 1000, 999, 0xFFFFFFFF, 1000 + (1 << 31)):
        reuse += _conversation(c_isn=isn)
    yield Case("seq-port-reuse-same-isn", "sequence", _pcap(reuse), frames=len(reuse))
    backwards = list(reversed(_conversation()))
    yield Case("seq-reversed", "sequence", _pcap(backwards), frames=len(backwards))


def time_cases() -> Iterator[Case]:
    """Packets from 1970 and 2106, time running backwards, fractions out of range, and
    pcapng times beyond what 64-bit nanoseconds hold."""
    conv = _conversation()
    n = len(conv)
    yield Case("time-epoch-zero", "time", _pcap(conv, times=[(0, i) for i in range(n)]), frames=n)
    yield Case("time-2106", "time",
               _pcap(conv, times=[(0xFFFFFFFF, i) for i in range(n)]), frames=n)
    mixed = [(1_700_000_000, 0), (0xFFFFFFFF, 999_999), (0, 0), (1_700_000_000, 5)] * 3
    yield Case("time-jumps", "time", _pcap(conv, times=mixed[:n]), frames=n)
    back = [(1_700_000_000 - i * 100, 0) for i in range(n)]
    yield Case("time-backwards", "time", _pcap(conv, times=back), frames=n)
    yield Case("time-frac-over-1e6", "time",
               _pcap(conv, times=[(1_700_000_000, 0xFFFFFFFF - i) for i in range(n)]), frames=n)
    yield Case("time-frac-over-1e9-ns", "time",
               _pcap(conv, times=[(1_700_000_000, 0xFFFFFFFF - i) for i in range(n)], nano=True),
               frames=n)
    for name, tsresol, tsoffset, ticks in (
            ("pcapng-ns-max", 9, None, (1 << 64) - 1),
            ("pcapng-us-max", 6, None, (1 << 64) - 1),
            ("pcapng-2pow-max", 0x80 | 0, None, (1 << 64) - 1),
            ("pcapng-offset-max", 6, (1 << 63) - 1, 0),
            ("pcapng-offset-min", 6, -(1 << 63), 0),
            ("pcapng-offset-past", 6, -10_000_000_000, 1_700_000_000_000_000),
            ("pcapng-resol-1e-127", 127, None, 1_700_000_000)):
        blocks = cb.shb() + cb.idb(1, tsresol, tsoffset)
        blocks += b"".join(cb.epb(0, ticks if i % 2 else 1_700_000_000_000_000 + i, f)
                           for i, f in enumerate(conv))
        yield Case(f"time-{name}", "time", blocks, frames=n)


def not_captures() -> Iterator[Case]:
    """Inputs that are not captures: empty, text, gzip of garbage, damaged gzip, magic
    numbers alone, a directory."""
    pcap = _pcap(_conversation())
    yield Case("empty", "not_capture", b"")
    yield Case("text", "not_capture", b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
    yield Case("text-long", "not_capture", b"lorem ipsum dolor sit amet\n" * 4000)
    yield Case("one-byte", "not_capture", b"\xd4")
    yield Case("gzip-of-garbage", "not_capture", gzip.compress(bytes(range(256)) * 20))
    yield Case("gzip-empty", "not_capture", gzip.compress(b""))
    yield Case("gzip-truncated-header", "not_capture", gzip.compress(pcap)[:6])
    yield Case("gzip-truncated-stream", "not_capture", gzip.compress(pcap)[:-30])
    damaged = bytearray(gzip.compress(pcap))
    damaged[len(damaged) // 2] ^= 0xFF
    yield Case("gzip-damaged-stream", "not_capture", bytes(damaged))
    yield Case("gzip-bad-crc", "not_capture", gzip.compress(pcap)[:-8] + b"\0" * 8)
    yield Case("gzip-of-gzip", "not_capture", gzip.compress(gzip.compress(pcap)))
    yield Case("gzip-trailing-garbage", "not_capture", gzip.compress(pcap) + b"garbage!")
    yield Case("gzip-bomb-ish", "not_capture",
               gzip.compress(pcap[:24] + struct.pack("<IIII", 1, 0, 200_000, 200_000)
                             + b"\0" * 4_000_000))
    for magic in (b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a", b"\x34\xcd\xb2\xa1", b"\x1f\x8b"):
        yield Case(f"magic-only-{magic.hex()}", "not_capture", magic)
    yield Case("pcapng-magic-then-text", "not_capture", b"\x0a\x0d\x0d\x0a" + b"hello world" * 10)
    yield Case("pcap-header-only", "not_capture", pcap[:24], prefix=24)
    yield Case("elf", "not_capture", b"\x7fELF\x02\x01\x01" + b"\0" * 120)
    yield Case("bzip2", "not_capture", bz2.compress(pcap))
    yield Case("xz", "not_capture", lzma.compress(pcap))
    yield Case("zeros", "not_capture", b"\0" * 4096)
    yield Case("snoop", "not_capture", b"snoop\0\0\0\0\0\0\x02\0\0\0\x04" + b"\0" * 64)
    yield Case("directory", "not_capture", None)


def corpus(seed_list: list[Seed] | None = None, seed: int = 7, random_per_seed: int = 12,
           sample: int | None = None) -> list[Case]:
    """Every case, deterministic for a given `seed`. `sample`: keep at most that many
    cases of each family per seed (chosen at random, in order; three times as many of
    pcapng blocks, which only two seeds have), for a quicker run."""
    rng = random.Random(seed)
    cases: list[Case] = []
    for s in seeds() if seed_list is None else seed_list:
        for family in (truncations(s, rng, random_per_seed), global_header(s),
                       record_headers(s), pcapng_blocks(s), ip_headers(s), tcp_headers(s),
                       bitflips(s, rng, random_per_seed),
                       splices(s, rng, random_per_seed // 2)):
            found = list(family)
            limit = None if sample is None else sample * (
                3 if found and found[0].family == "pcapng_block" else 1)
            if limit is not None and len(found) > limit:
                keep = sorted(rng.sample(range(len(found)), limit))
                found = [found[i] for i in keep]
            cases += found
    cases += flag_cases()
    cases += sequence_cases()
    cases += time_cases()
    cases += not_captures()
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    return cases


def write(cases: Iterable[Case], outdir: Path) -> list[tuple[Case, Path]]:
    """Write each case as a file (a directory for ``data is None``) under `outdir`."""
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for case in cases:
        path = outdir / case.name
        if case.data is None:
            path.mkdir(exist_ok=True)
        else:
            path.write_bytes(case.data)
        written.append((case, path))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--random", type=int, default=12,
                        help="random truncations and bit-flip mutants per seed (default 12)")
    parser.add_argument("--sample", type=int, default=None,
                        help="at most this many cases per family and seed (default: all)")
    args = parser.parse_args(argv)
    cases = corpus(seed=args.seed, random_per_seed=args.random, sample=args.sample)
    write(cases, args.outdir)
    families: dict[str, int] = {}
    for c in cases:
        families[c.family] = families.get(c.family, 0) + 1
    print(f"{len(cases)} cases in {args.outdir}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(families.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
