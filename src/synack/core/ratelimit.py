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
    """Per-key token buckets in bounded memory, which many keys cannot flush.

    Only ``max_keys`` buckets are tracked. A key is forgotten only when its
    bucket has refilled to ``burst`` (it would come back exactly as it left:
    forgetting it gives nothing away); the least recently used key is the one
    looked at. When the table is full and its oldest bucket is still being
    drained, a new key gets no bucket of its own: every such key shares one
    overflow bucket (``rate``, ``burst``). So sending from many sources (or
    spoofing them) never evicts a busy source to hand it a fresh full bucket;
    the most the newcomers get together is one source's allowance.
    ``overflowed`` counts the decisions taken on the shared bucket.
    """

    __slots__ = ("_buckets", "_overflow", "burst", "max_keys", "overflowed", "rate")

    def __init__(self, rate: float, burst: float, max_keys: int = 4096) -> None:
        _check(rate, burst)
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        # key -> (tokens, last refill time); order is recency of use.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._overflow: TokenBucket | None = None
        self.overflowed = 0

    def allow(self, key: str, now: float) -> bool:
        """Spend one of ``key``'s tokens if it has one."""
        buckets = self._buckets
        entry = buckets.pop(key, None)
        if entry is None:
            tokens, last = float(self.burst), now
            if len(buckets) >= self.max_keys:
                oldest_tokens, oldest_at = next(iter(buckets.values()))
                refilled = oldest_tokens + max(0.0, now - oldest_at) * self.rate
                if refilled < self.burst:
                    # Full of sources still being limited: share one bucket.
                    self.overflowed += 1
                    if self._overflow is None:
                        self._overflow = TokenBucket(self.rate, self.burst, now)
                    return self._overflow.allow(now)
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
