"""One flow hash: a 64-bit number per row of a `Batch`, the same in either direction.

Owns: `flow_hash`, a hash of a row's two endpoints (address and port), direction-agnostic
(the two endpoints' hashes are ordered before they are combined) and independent of the
read the batch came from: an IPv4 address is its own key, an IPv6 address's key is only
an index into the read's `AddressBook`, so its text is hashed instead
(`AddressBook.v6_hashes`). splitmix64's finaliser mixes every input bit into every output
bit, so any range of the hash (a remainder, for a partition) spreads flows evenly.

Used by the fast path's grouping of a batch's rows by flow (tcplife.engines.drive, which
checks the grouping for collisions and falls back to exact keys) and by the Dask
partitioner (tcplife.engines.distributed.flow_partition), where a flow's partition must not
depend on the file it is read from. Knows nothing of connection state.
"""

from __future__ import annotations

import numpy as np

from .columns import V6_BASE, Batch

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves every output bit."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M2
    x = x ^ (x >> np.uint64(27))
    x = x * _M3
    return x ^ (x >> np.uint64(31))


def _endpoint(addr: np.ndarray, port: np.ndarray, v6: np.ndarray) -> np.ndarray:
    """The hash of each (address key, port); ``v6``: the book's IPv6 text hashes."""
    a = addr.astype(np.uint64)
    six = addr >= V6_BASE
    if six.any():
        a[six] = v6[addr[six] - V6_BASE]
    return _mix(a ^ (port.astype(np.uint64) * _M1))


def flow_hash(batch: Batch) -> np.ndarray:
    """Each row's flow hash (uint64): equal for the two directions of a flow and for the
    same flow in any read; distinct flows may collide (rarely: callers that need exact
    groups check)."""
    v6 = batch.book.v6_hashes()
    s = _endpoint(batch.src, batch.sport, v6)
    d = _endpoint(batch.dst, batch.dport, v6)
    return _mix(np.minimum(s, d) * _M1 ^ np.maximum(s, d))
