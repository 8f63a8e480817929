"""The strftime format protocol (docs/protocol.md §3a), sans-IO.

A request is a UTF-8 ``strftime`` format in one datagram; the reply is the
server's local time formatted with it. The core never reads a clock: the
adapter passes a monotonic ``now`` (for the rate limit) and the wall-clock
Unix second to format.

Two bounds keep the service from being turned against others (a spoofed
source turns a server that answers bigger into an amplifier):

- a reply's payload is at most twice the request's payload plus 28 bytes,
  and at most 512 bytes. 28 bytes is the IPv4 + UDP header every datagram
  carries, so on the wire a reply datagram is never more than twice the
  request datagram, whatever the request (an empty request, 28 bytes on the
  wire, may get up to 28 bytes of text: the default format's 19 fit). A
  format that would produce more gets a short ``error:`` reply, itself
  within the bound (docs/protocol.md §3a, "Under attack");
- each source address has a token bucket (core.ratelimit: a full table of
  busy sources is not flushed by new ones); excess requests get no reply at
  all (silence is the only answer that does not amplify).

Layer: apps. Imports synack.core.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from synack.core.ratelimit import TokenBuckets

DEFAULT_FORMAT = "%Y-%m-%d %X"
MAX_REQUEST = 256
MAX_REPLY = 512
# On the wire, reply <= AMPLIFICATION x request, headers included.
AMPLIFICATION = 2
UDP_IPV4_HEADERS = 28


def reply_limit(request_len: int) -> int:
    """The largest reply payload allowed for a request payload of ``request_len`` bytes."""
    return min(MAX_REPLY, AMPLIFICATION * (request_len + UDP_IPV4_HEADERS) - UDP_IPV4_HEADERS)


ERROR_PREFIX = b"error: "


@dataclass(slots=True)
class FormatCounters:
    answered: int = 0
    errors: int = 0
    rate_limited: int = 0


def _error(reason: str) -> bytes:
    return ERROR_PREFIX + reason.encode()


@dataclass(slots=True)
class FormatService:
    """Answers format requests. ``handle`` returns the reply, or None (rate-limited).

    Replies are cached per (request bytes, second): strftime of a struct_time
    depends on nothing finer than the second, so a cached answer is exactly
    the answer, and a busy server formats each distinct format once a second.
    """

    rate: float = 50.0  # requests/s per source host; 0 = no limit
    burst: float = 100.0
    max_cache: int = 1024
    counters: FormatCounters = field(default_factory=FormatCounters)
    buckets: TokenBuckets | None = field(init=False)
    _cache: dict[bytes, tuple[bytes, bool]] = field(default_factory=dict)
    _cache_second: int = -1
    _now: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.rate < math.inf:
            raise ValueError("rate must be >= 0 (0 = no limit)")
        self.buckets = TokenBuckets(self.rate, self.burst) if self.rate > 0 else None

    def handle(
        self, request: bytes, source_host: str, now: float, wall_second: int
    ) -> bytes | None:
        """The reply to ``request`` from ``source_host`` at monotonic ``now``
        (the rate limit's clock) and Unix second ``wall_second``."""
        self.tick(now, wall_second)
        return self.answer(request, (source_host,))

    def tick(self, now: float, wall_second: int) -> None:
        """Set the clock for the requests that follow. The kernel fast path
        reads the clocks once per batch of datagrams drained together (at
        most a few hundred, well under a millisecond: the reply's resolution
        is one second) instead of twice per datagram."""
        self._now = now
        if wall_second != self._cache_second:
            self._cache.clear()
            self._cache_second = wall_second

    def answer(self, request: bytes, addr: tuple[Any, ...]) -> bytes | None:
        """``handle`` at the clock of the last :meth:`tick`; ``addr[0]`` is the
        source host (the shape of a ``recvfrom`` address, so the adapter
        passes it through: one call per datagram)."""
        # The rate limit is per source host, not per (host, port): a client
        # that changes its port for each request must not get a fresh bucket.
        buckets = self.buckets
        if buckets is not None and not buckets.allow(addr[0], self._now):
            self.counters.rate_limited += 1
            return None
        # The cache keeps whether the reply is an error beside it, so a cached
        # answer costs one dict lookup and no prefix test (per-datagram cost,
        # bench/time_bench.py).
        entry = self._cache.get(request)
        if entry is None:
            entry = self._miss(request, self._cache_second)
        if entry[1]:
            self.counters.errors += 1
        else:
            self.counters.answered += 1
        return entry[0]

    def _miss(self, request: bytes, wall_second: int) -> tuple[bytes, bool]:
        reply = self._compute(request, wall_second)
        # Errors too stay within the bound (a 1-byte request allows 30).
        reply = reply[: reply_limit(len(request))]
        entry = (reply, reply.startswith(ERROR_PREFIX))
        if len(self._cache) < self.max_cache:
            self._cache[request] = entry
        return entry

    @staticmethod
    def _compute(request: bytes, wall_second: int) -> bytes:
        if len(request) > MAX_REQUEST:
            return _error(f"request too long (over {MAX_REQUEST} bytes)")
        try:
            fmt = request.decode("utf-8")
        except UnicodeDecodeError:
            return _error("request is not UTF-8")
        if not fmt:
            fmt = DEFAULT_FORMAT
        if "\0" in fmt:
            return _error("NUL in format")
        try:
            # time.strftime, not datetime: it knows no sub-second directive, so
            # the output depends on the second only (what makes caching exact).
            text = time.strftime(fmt, time.localtime(wall_second))
        except (ValueError, OverflowError) as exc:
            return _error(f"bad format ({exc})")
        reply = text.encode("utf-8", "surrogateescape")
        # CPython's strftime returns "" when the result would not fit its
        # buffer (256x the format length): that, too, is a reply over the limit.
        if len(reply) > MAX_REPLY or not reply:
            return _error(f"reply over {MAX_REPLY} bytes")
        if len(reply) > reply_limit(len(request)):
            return _error(f"reply over {AMPLIFICATION}x request")
        return reply
