"""Token buckets: the one rate limiter every server and the stack use.

A bucket holds at most ``burst`` tokens and gains ``rate`` tokens a second;
each allowed event spends one. Sans-IO: the caller passes ``now`` (any
monotonic clock, in seconds), so a test drives it with a manual clock.

:class:`TokenBucket` limits one flow (a chat client, the host's ICMP errors);
:class:`TokenBuckets` keeps one bucket per key (a source address) in bounded
memory.

Layer: core. Imports only the standard library.
"""

from __future__ import annotations

import math
from collections import OrderedDict

__all__ = ["TokenBucket", "TokenBuckets"]


def _check(rate: float, burst: float) -> None:
    if not (0 < rate < math.inf and 1 <= burst < math.inf):
        raise ValueError("rate must be > 0 and burst >= 1")


class TokenBucket:
    """One bucket, full at ``start``: ``rate`` tokens/s, at most ``burst`` saved up."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float, start: float = 0.0) -> None:
        _check(rate, burst)
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.at = start

    def allow(self, now: float) -> bool:
        """Spend one token if there is one (refilled up to ``now`` first)."""
        elapsed = now - self.at
        if elapsed > 0:
            # A clock that stepped back refills nothing rather than draining.
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class TokenBuckets:
    """Per-key token buckets in bounded memory.

    Only ``max_keys`` buckets are tracked, least recently used evicted first:
    a flood of distinct sources costs bounded memory. An evicted key comes back
    with a full bucket, which is what an idle source would have anyway.
    """

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, max_keys: int = 4096) -> None:
        _check(rate, burst)
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        # key -> (tokens, last refill time); order is recency of use.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        """Spend one of ``key``'s tokens if it has one."""
        buckets = self._buckets
        entry = buckets.pop(key, None)
        if entry is None:
            tokens, last = float(self.burst), now
            if len(buckets) >= self.max_keys:
                buckets.popitem(last=False)
        else:
            tokens, last = entry
            elapsed = now - last
            if elapsed > 0:
                tokens = min(self.burst, tokens + elapsed * self.rate)
                last = now
        if tokens >= 1.0:
            buckets[key] = (tokens - 1.0, last)
            return True
        buckets[key] = (tokens, last)
        return False

    def __len__(self) -> int:
        return len(self._buckets)
