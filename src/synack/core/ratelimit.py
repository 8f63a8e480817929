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

    __slots__ = (
        "_buckets",
        "_overflow",
        "_recent",
        "_recent_entry",
        "burst",
        "max_keys",
        "overflowed",
        "rate",
    )

    def __init__(self, rate: float, burst: float, max_keys: int = 4096) -> None:
        _check(rate, burst)
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        # key -> [tokens, last refill time], updated in place; order is
        # recency of use (the front is the least recently used key).
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        # The most recently used key and its entry: already at the back of
        # the order, so a run of requests from one source (a flood, or one
        # busy client) costs one string comparison, no dict lookup or
        # reordering (per-datagram cost, bench/time_bench.py).
        self._recent: str | None = None
        self._recent_entry: list[float] = [0.0, 0.0]
        self._overflow: TokenBucket | None = None
        self.overflowed = 0

    def allow(self, key: str, now: float) -> bool:
        """Spend one of ``key``'s tokens if it has one."""
        if key == self._recent:
            entry = self._recent_entry
        else:
            entry = self._buckets.get(key)  # type: ignore[assignment]
            if entry is None:
                return self._new_key(key, now)
            self._buckets.move_to_end(key)
            self._recent = key
            self._recent_entry = entry
        tokens = entry[0]
        last = entry[1]
        # A clock that stepped back refills nothing rather than draining; one
        # that did not move (a batch read at one instant) costs one comparison.
        if now > last:
            tokens += (now - last) * self.rate
            if tokens > self.burst:
                tokens = self.burst
            entry[1] = now
        if tokens >= 1.0:
            entry[0] = tokens - 1.0
            return True
        entry[0] = tokens
        return False

    def _new_key(self, key: str, now: float) -> bool:
        buckets = self._buckets
        if len(buckets) >= self.max_keys:
            oldest_tokens, oldest_at = next(iter(buckets.values()))
            refilled = oldest_tokens + max(0.0, now - oldest_at) * self.rate
            if refilled < self.burst:
                # Full of sources still being limited: share one bucket.
                self.overflowed += 1
                if self._overflow is None:
                    self._overflow = TokenBucket(self.rate, self.burst, now)
                return self._overflow.allow(now)
            # Forgetting a full bucket gives nothing away: the key would
            # come back exactly as it left.
            buckets.popitem(last=False)
        entry = [self.burst - 1.0, now]
        buckets[key] = entry
        self._recent = key
        self._recent_entry = entry
        return True

    def __len__(self) -> int:
        return len(self._buckets)
