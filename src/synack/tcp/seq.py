"""Sequence-number arithmetic modulo 2**32 (RFC 9293 §3.4), the one place of it.

Sequence numbers (and RFC 7323 timestamps, which wrap the same way) live on a
circle; "a < b" means b is ahead of a by less than half the circle (RFC 1982
style serial-number comparison). Everything in synack.tcp that adds to,
subtracts or compares such numbers goes through these functions: no module
masks with 2**32 - 1 on its own.

Layer: tcp. Imports nothing (the standard library only).
"""

from __future__ import annotations

SEQ_MOD = 1 << 32
SEQ_MASK = SEQ_MOD - 1
_HALF = 1 << 31


def seq_add(a: int, n: int) -> int:
    """a + n on the circle (n may be negative)."""
    return (a + n) & SEQ_MASK


def seq_dist(a: int, b: int) -> int:
    """How far a is ahead of b going forward, in [0, 2**32): (a - b) mod 2**32."""
    return (a - b) & SEQ_MASK


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


def in_window(start: int, seg_len: int, rcv_wnd: int) -> bool:
    """RFC 9293 §3.10.7.4 first step, Table 6: is a segment acceptable?

    ``start`` is SEG.SEQ - RCV.NXT (signed, :func:`seq_diff`), ``seg_len``
    SEG.LEN. A segment is acceptable when its first or its last octet falls
    in the window (or it covers the whole window); with a zero window only an
    empty segment at RCV.NXT is.
    """
    if seg_len == 0:
        return start == 0 if rcv_wnd == 0 else 0 <= start < rcv_wnd
    if rcv_wnd == 0:
        return False
    last = start + seg_len - 1
    return 0 <= start < rcv_wnd or 0 <= last < rcv_wnd or (start < 0 and last >= rcv_wnd)
