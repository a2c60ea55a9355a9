"""The C allocator's settings for a long analysis: freed big blocks go back to the system.

Owns `return_freed_memory`, which the command line calls once at start. glibc's malloc
serves blocks of 128 KiB and more with their own memory mapping, but raises that
threshold each time such a block is freed (up to 32 MiB): after the first batch of
packets, the reader's and the tracker's per-batch numpy arrays (hundreds of KiB each)
come from the heap, which only shrinks from its top, so the peak RSS keeps memory that
was freed long ago. A fixed threshold (and trimming the heap top above 128 KiB) keeps
them mapped and returned on free: 49 MB less peak RSS on the `short` benchmark capture
(557 -> 508 MB, README "Speed and memory").

Only on glibc (Linux); elsewhere, and if the call fails, nothing changes. A library
user's process is theirs to tune: `tcplife.analyze` does not call it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

#: mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: bytes: blocks this big and up get their own mapping; a heap top this big is trimmed
THRESHOLD = 128 * 1024


def return_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds to `THRESHOLD`; True if it was done."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # pragma: no cover - a libc without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, THRESHOLD))
