"""Sequence-number arithmetic modulo 2**32 (RFC 9293 §3.4).

Sequence numbers live on a circle; "a < b" means b is ahead of a by less than
half the circle (RFC 1982 style serial-number comparison).
"""

from __future__ import annotations

SEQ_MOD = 1 << 32
SEQ_MASK = SEQ_MOD - 1
_HALF = 1 << 31


def seq_add(a: int, n: int) -> int:
    return (a + n) & SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """a - b as a signed distance on the circle, in [-2**31, 2**31)."""
    return ((a - b + _HALF) & SEQ_MASK) - _HALF


def seq_lt(a: int, b: int) -> bool:
    # a - b is "negative" on the circle. Exactly half a circle apart is
    # undefined (RFC 1982 §3.2); we call it "less" either way.
    return ((a - b) & SEQ_MASK) >= _HALF


def seq_le(a: int, b: int) -> bool:
    return a == b or ((a - b) & SEQ_MASK) >= _HALF


def seq_gt(a: int, b: int) -> bool:
    return ((b - a) & SEQ_MASK) >= _HALF


def seq_ge(a: int, b: int) -> bool:
    return a == b or ((b - a) & SEQ_MASK) >= _HALF
