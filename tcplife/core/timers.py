"""The tracker's timers: deadlines in a heap, with stale entries skipped and compacted.

Owns: `Timer` (one armed deadline: when, for which connection and side, of which kind, and
the generation it was armed at, which tells whether it still stands) and `Timers` (the heap:
`push`, `due`, `next_deadline`, `compact`). It knows nothing of what a timer does when it
fires: the tracker decides that, and whether an entry is stale (`Timers.compact` takes that
test as an argument). Time is only what the caller passes.

Kinds: ``state`` (a side's state timeout: TIME_WAIT, FIN_WAIT_2, SYN_SENT, SYN_RECEIVED;
stale once the side changed state), ``rtx`` (a run of retransmissions into silence; stale
once the run ended) and ``evict`` (a closed connection forgotten after a linger; stale once
the connection saw a packet since).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from typing import NamedTuple

#: the heap is compacted when it grows past this many entries (and past twice the number
#: of entries kept by the last compaction)
COMPACT_MIN = 4096

STATE, RTX, EVICT = "state", "rtx", "evict"

#: a named tuple made without its Python-level ``__new__``
_new = tuple.__new__


class Timer(NamedTuple):
    """One armed deadline. Ordered by (deadline, seq): the order of arming breaks ties."""

    deadline: int  #: ns
    seq: int  #: arming order, from 1
    side: str  #: "client", "server", or "" for the connection's eviction
    conn_id: int
    kind: str  #: STATE, RTX or EVICT
    gen: int  #: what the side (or connection) was at arming; compared when it fires


class Timers:
    """A heap of `Timer`s. `push` arms one, `due` pops those whose deadline has come."""

    __slots__ = ("_heap", "_seq", "_min", "_compact_at", "stale", "heap")

    def __init__(self, stale: Callable[[Timer], bool] | None = None,
                 compact_min: int = COMPACT_MIN) -> None:
        self._heap: list[Timer] = []
        #: the heap itself, read-only: ``heap[0]`` is the earliest timer (the tracker
        #: looks at it once per segment, where a method call would cost more than the look)
        self.heap = self._heap
        self._seq = 0
        self._min = self._compact_at = compact_min
        #: the owner's test of an entry that can no longer fire (`compact` drops those)
        self.stale = stale

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)

    def __iter__(self) -> Iterator[Timer]:
        """The armed timers, in no particular order."""
        return iter(self._heap)

    def push(self, deadline: int, conn_id: int, side: str, kind: str, gen: int) -> Timer:
        """Arm a timer; the heap is compacted when it has grown enough (amortised)."""
        seq = self._seq = self._seq + 1
        timer = _new(Timer, (deadline, seq, side, conn_id, kind, gen))
        heapq.heappush(self._heap, timer)
        if len(self._heap) > self._compact_at and self.stale is not None:
            self.compact(self.stale)
        return timer

    def next_deadline(self) -> int | None:
        """When the earliest timer is due (ns), or None."""
        return self._heap[0][0] if self._heap else None

    def due(self, now: int) -> Iterator[Timer]:
        """Pop, one at a time in (deadline, seq) order, each timer due by ``now``,
        including those armed while the caller handles an earlier one."""
        heap = self._heap
        while heap and heap[0].deadline <= now:
            yield heapq.heappop(heap)

    def compact(self, stale: Callable[[Timer], bool]) -> None:
        """Drop the entries ``stale`` says can no longer fire: same firings, bounded
        memory. At most as many stale entries as live ones are kept between two
        compactions, at amortised constant cost per push."""
        keep = [t for t in self._heap if not stale(t)]
        heapq.heapify(keep)
        self._heap[:] = keep  # in place: `due` may be iterating over it
        self._compact_at = max(self._min, 2 * len(keep))

    def clear(self) -> None:
        self._heap.clear()
