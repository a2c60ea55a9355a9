"""The compiled reader: which implementation of the fast reader's hot loops runs, and the
calls into it.

Owns: `compiled_reader` (the one choice between the C loops of ``tcplife._engine`` and the
numpy ones: `tcplife.native.loader`'s choice of core, ``TCPLIFE_CORE`` or ``core=``) and
the thin wrappers that hand the C functions fastbuffer.Stream's buffer and wrap what they
return as numpy columns: `pcap_walk` and `pcapng_walk` (the record walks, engine/read.c)
and `decode` (the bulk decode, engine/decode.c). The C functions take exactly the records
and frames the numpy walk and bulk decode take, with the same results; what they leave
(damage, odd blocks, frames the bulk decode does not take) stays with the Python code of
fastwalk.py and fastdecode.py, which calls these. Knows nothing of formats or frames
beyond that.
"""

from __future__ import annotations

from types import ModuleType
from typing import NamedTuple

import numpy as np

from tcplife.native import loader

from .columns import Batch
from .fastbuffer import I64, Stream

__all__ = ["CORE_ENV", "compiled_reader"]

#: the environment variable that picks the core when none is given (``python`` forces
#: the Python and numpy implementations)
CORE_ENV = loader.ENV
_LIMIT = 1 << 62  # pcapng interface time offsets the C walk takes (records.py: any)


def compiled_reader(core: str | None = None) -> ModuleType | None:
    """The compiled engine the fast reader uses, or None for the numpy implementation:
    `tcplife.native.loader.use_engine`'s choice. `core` (None: ``TCPLIFE_CORE``'s value,
    ``auto`` when unset): ``"auto"`` uses the engine when it loaded, ``"python"`` never
    does, ``"c"`` requires it (`loader.EngineUnavailable`).
    """
    if not loader.use_engine(core):
        return None
    engine = loader.engine()
    if not hasattr(engine, "decode"):  # built before the reader was part of it
        if loader.requested(core) == "c":
            raise loader.EngineUnavailable("the compiled engine has no reader: rebuild it")
        return None
    return engine


def pcap_walk(engine: ModuleType, s: Stream, pos: int, big: bool, nano: bool,
              max_caplen: int) -> tuple[int, np.ndarray]:
    """The complete records from `pos` (engine/read.c): where the walk stopped, and the
    columns (data offset, captured length, length on the wire, time in ns), one row each."""
    stop, room, count, cols = engine.pcap_walk(s.store, pos, s.n, big, nano, max_caplen)
    return stop, np.frombuffer(cols, I64).reshape(4, room)[:, :count]


def interfaces(ifaces: list[tuple[int, int, int, int, int]]) -> np.ndarray:
    """records.py's interfaces as the C walk takes them: link type, multiplier, divisor
    and offset in ns, as int64 (divisor 0: its times are left to Python)."""
    out = np.zeros((len(ifaces), 4), I64)
    for i, (linktype, mul, div, offset_ns, _snaplen) in enumerate(ifaces):
        if 0 < div < 1 << 63 and 0 < mul < 1 << 62 and -_LIMIT < offset_ns < _LIMIT:
            out[i] = linktype, mul, div, offset_ns
        else:
            out[i, 0] = linktype
    return out


def pcapng_walk(engine: ModuleType, s: Stream, pos: int, big: bool,
                ifaces: np.ndarray) -> tuple[int, np.ndarray]:
    """The run of Enhanced Packet Blocks from `pos` (engine/read.c): where it stopped, and
    the columns (data offset, captured length, length on the wire, time, link type)."""
    stop, room, count, cols = engine.pcapng_walk(s.store, pos, s.n, big, ifaces)
    return stop, np.frombuffer(cols, I64).reshape(5, room)[:, :count]


class Decoded(NamedTuple):
    """What the C bulk decode found in a walk's frames."""

    columns: np.ndarray  #: (15, decoded): a `Batch`'s columns (src, dst: 0 for IPv6)
    left: np.ndarray  #: rows for the plain `Decoder`, ascending
    bad: np.ndarray  #: positions among the decoded rows with a wrong checksum
    v6: np.ndarray  #: (IPv6 rows, 32) bytes: their source and destination addresses
    undecodable: int
    non_tcp: int
    fragments: int
    tcp_segments: int
    truncated: int
    unverified_checksums: int
    bad_checksums: int


def decode(engine: ModuleType, s: Stream, off: np.ndarray, caplen: np.ndarray,
           wire: np.ndarray, linktype: np.ndarray, frame: np.ndarray, ts_ns: np.ndarray,
           verify: bool) -> Decoded:
    """The bulk decode of frames ``store[off : off + caplen]`` (engine/decode.c)."""
    done, cols, left, bad, v6, counters = engine.decode(
        s.store, *(np.ascontiguousarray(c, I64)
                   for c in (off, caplen, wire, linktype, frame, ts_ns)), verify)
    columns = np.frombuffer(cols, I64).reshape(len(Batch.COLUMNS), len(off))[:, :done]
    return Decoded(columns, np.frombuffer(left, I64), np.frombuffer(bad, I64),
                   np.frombuffer(v6, np.uint8).reshape(-1, 32), *counters)
