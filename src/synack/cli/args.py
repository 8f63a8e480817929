"""Argument types shared by the command groups (PROTOCOLS.md §5).

A bad value is refused by argparse itself, so the user gets one line naming
the option and exit status 2. Numbers must be finite: ``nan`` compares false
with everything (it slips past ``> 0`` checks and poisons timer heaps) and
``inf`` seconds overflow the socket layer's time_t.
"""

from __future__ import annotations

import argparse
import math

__all__ = ["MAX_SECONDS", "non_negative", "port", "positive", "seconds"]

# About eleven days: longer than any sensible timeout, well inside time_t.
MAX_SECONDS = 1e6


def port(text: str) -> int:
    """A TCP/UDP port, 0 (pick a free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"bad port {text!r}: expected 0..65535")
    return value


def _finite(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def positive(text: str) -> float:
    value = _finite(text)
    if value is None or not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def non_negative(text: str) -> float:
    value = _finite(text)
    if value is None or not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def seconds(text: str) -> float:
    """A duration: positive, finite, at most ``MAX_SECONDS``."""
    value = _finite(text)
    if value is None or not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"expected seconds, a number > 0 and <= {MAX_SECONDS:g}, got {text!r}"
        )
    return value
