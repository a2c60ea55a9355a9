"""Sequence-number arithmetic modulo 2**32 (RFC 9293 section 3.4).

Owns: comparisons and distances between 32-bit sequence numbers. Pure functions only.
"""

from __future__ import annotations

MOD = 1 << 32
HALF = 1 << 31
MASK = MOD - 1


def seq_add(a: int, n: int) -> int:
    """``a + n`` wrapped to 32 bits."""
    return (a + n) & MASK


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` in the range [-2**31, 2**31)."""
    d = (a - b) & MASK
    return d - MOD if d >= HALF else d


def seq_lt(a: int, b: int) -> bool:
    return seq_diff(a, b) < 0


def seq_le(a: int, b: int) -> bool:
    return seq_diff(a, b) <= 0


def seq_gt(a: int, b: int) -> bool:
    return seq_diff(a, b) > 0


def seq_ge(a: int, b: int) -> bool:
    return seq_diff(a, b) >= 0


def seq_max(a: int | None, b: int) -> int:
    """The later of two sequence numbers; ``a`` may be None (nothing seen yet)."""
    if a is None or seq_diff(b, a) > 0:
        return b
    return a
