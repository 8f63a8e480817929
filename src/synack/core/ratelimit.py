"""Token buckets: the one rate limiter every server and the stack use.

A bucket holds at most ``burst`` tokens and gains ``rate`` tokens a second;
each allowed event spends one. Sans-IO: the caller passes ``now`` (any
monotonic clock, in seconds), so a test drives it with a manual clock.

:class:`TokenBucket` limits one flow (a chat client, the host's ICMP errors);
:class:`TokenBuckets` keeps one bucket per key (a source address) in bounded
memory; :class:`HashedBuckets` keeps a fixed array of buckets a key is hashed
into (no table to churn: a spoofed flood from random sources costs a few
integer operations a packet and cannot evict anyone).

Layer: core. Imports only the standard library.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict

__all__ = ["HashedBuckets", "TokenBucket", "TokenBuckets"]


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


_U64 = (1 << 64) - 1


class HashedBuckets:
    """Token buckets for integer keys (IPv4 addresses) in fixed memory.

    A key's bucket is one of ``slots`` (a power of two), picked by a keyed
    multiplicative hash (the high bits of ``key * multiplier`` modulo 2**64,
    the multiplier odd and secret, drawn from ``seed``): a sender who does
    not know it cannot aim at another key's bucket. Many keys flooding at
    ``R`` per second together put about ``R / slots`` a second on each
    bucket, so as long as that stays under ``rate`` every key, a newcomer's
    too, keeps its allowance; one loud key drains only its own bucket (and
    the few keys that share it, 1 in ``slots``). Nothing is evicted or
    allocated per key.
    """

    __slots__ = ("_at", "_mult", "_shift", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, *, slots: int = 4096, seed: int = 0) -> None:
        _check(rate, burst)
        if slots < 2 or slots & (slots - 1):
            raise ValueError("slots must be a power of two >= 2")
        self.rate = rate
        self.burst = float(burst)
        self._tokens = [float(burst)] * slots
        self._at = [0.0] * slots
        # Any seed gives a multiplier of 64 well-mixed bits (odd: a bijection).
        digest = hashlib.blake2b((seed & _U64).to_bytes(8, "big"), digest_size=8).digest()
        self._mult = int.from_bytes(digest, "big") | 1
        self._shift = 64 - (slots.bit_length() - 1)

    def allow(self, key: int, now: float) -> bool:
        """Spend one token of ``key``'s bucket if it has one."""
        i = ((key * self._mult) & _U64) >> self._shift  # the bucket ``key`` spends from
        tokens = self._tokens[i]
        elapsed = now - self._at[i]
        if elapsed > 0:
            tokens = min(self.burst, tokens + elapsed * self.rate)
            self._at[i] = now
        if tokens >= 1.0:
            self._tokens[i] = tokens - 1.0
            return True
        self._tokens[i] = tokens
        return False
