from __future__ import annotations

import time
from collections import OrderedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synack.apps.time.fmtproto import FormatService
from synack.core.ratelimit import TokenBuckets

SECOND = 1_763_900_000


def answer(req: bytes, service: FormatService | None = None, second: int = SECOND) -> bytes | None:
    return (service or FormatService()).handle(req, "127.0.0.1", 0.0, second)


def test_default_format_is_date_and_time() -> None:
    assert answer(b"") == time.strftime("%Y-%m-%d %X", time.localtime(SECOND)).encode()


def test_format_is_applied_to_the_given_second() -> None:
    assert answer(b"%s|%Y") == f"{SECOND}|{time.localtime(SECOND).tm_year}".encode()
    assert (
        answer("\u00e9t\u00e9 %Y".encode())
        == f"\u00e9t\u00e9 {time.localtime(SECOND).tm_year}".encode()
    )


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        (b"%Y" * 129, b"too long"),
        (b"\xff\xfe%Y", b"not UTF-8"),
        (b"%Y\0%m", b"NUL"),
        (b"%c" * 128, b"over 512"),  # 256-byte request, ~3 kB of output
        (b"%9999Y", b"over 512"),
    ],
)
def test_bad_requests_get_an_error_reply(req: bytes, reason: bytes) -> None:
    service = FormatService()
    out = service.handle(req, "h", 0.0, SECOND)
    assert out is not None and out.startswith(b"error: ") and reason in out
    assert len(out) <= 512
    assert service.counters.errors == 1 and service.counters.answered == 0


def test_reply_limit_boundary() -> None:
    # %s is the 10-digit Unix second. 32 of them + 192 literal bytes: a
    # 256-byte request, a 512-byte reply (the absolute cap, under 2x).
    ok = answer(b"%s" * 32 + b"a" * 192)
    assert ok is not None and len(ok) == 512 and not ok.startswith(b"error")
    over = answer(b"%s" * 33 + b"a" * 190)  # 256 bytes in, 520 out
    assert over is not None and over.startswith(b"error: ")
    # The 2x rule (issue 14): 10 x %s + 32 literal bytes = 52 bytes in may
    # get 2 * (52 + 28) - 28 = 132 bytes out, exactly what it produces;
    # one literal byte less (51 in, 131 out, limit 130) is refused.
    edge = answer(b"%s" * 10 + b"a" * 32)
    assert edge is not None and len(edge) == 132 and not edge.startswith(b"error")
    refused = answer(b"%s" * 10 + b"a" * 31)
    assert refused == b"error: reply over 2x request"


def test_cached_reply_follows_the_second() -> None:
    service = FormatService()
    a = service.handle(b"%s", "h", 0.0, SECOND)
    b = service.handle(b"%s", "h", 0.1, SECOND)
    c = service.handle(b"%s", "h", 1.0, SECOND + 1)
    assert a == b == str(SECOND).encode()
    assert c == str(SECOND + 1).encode()
    assert service.counters.answered == 3


def test_burst_from_one_source_is_partly_answered_others_still_served() -> None:
    service = FormatService(rate=10, burst=20)
    answered = sum(service.handle(b"", "10.0.0.1", 0.0, SECOND) is not None for _ in range(100))
    assert answered == 20
    assert service.counters.rate_limited == 80
    # Another source is unaffected.
    assert service.handle(b"", "10.0.0.2", 0.0, SECOND) is not None
    # After 0.5 s the first source has 5 tokens again.
    again = sum(service.handle(b"", "10.0.0.1", 0.5, SECOND) is not None for _ in range(10))
    assert again == 5


def test_rate_zero_means_no_limit() -> None:
    service = FormatService(rate=0)
    assert all(service.handle(b"", "h", 0.0, SECOND) is not None for _ in range(1000))


def test_token_buckets_are_bounded() -> None:
    buckets = TokenBuckets(rate=1, burst=1, max_keys=3)
    assert buckets.allow("a", 0.0) and not buckets.allow("a", 0.0)
    for key in "bcd":
        assert buckets.allow(key, 0.0)  # "d" on the shared overflow bucket
    assert len(buckets) == 3 and buckets.overflowed == 1
    # "a" is still drained: the newcomers did not flush it to a fresh bucket
    # (issue 14: flushing the table used to buy answers).
    assert not buckets.allow("a", 0.0)
    # Once the oldest ("b") has refilled, forgetting it gives nothing away:
    # "e" takes its place.
    assert buckets.allow("e", 1.0) and len(buckets) == 3
    with pytest.raises(ValueError):
        TokenBuckets(rate=0, burst=1)


@given(st.binary(max_size=400))
def test_fuzz_reply_is_bounded(req: bytes) -> None:
    out = FormatService(rate=0).handle(req, "h", 0.0, SECOND)
    assert out is not None and 0 < len(out) <= 512


class _ModelBuckets:
    """The bucket table's contract, written plainly: an LRU-ordered dict of
    (tokens, last refill), a full bucket is the only one forgotten, newcomers
    to a table of drained buckets share one overflow bucket."""

    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self.table: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.overflow: tuple[float, float] | None = None
        self.overflowed = 0

    def _spend(self, tokens: float, last: float, now: float) -> tuple[bool, float, float]:
        if now - last > 0:
            tokens, last = min(self.burst, tokens + (now - last) * self.rate), now
        if tokens >= 1.0:
            return True, tokens - 1.0, last
        return False, tokens, last

    def allow(self, key: str, now: float) -> bool:
        if key in self.table:
            ok, tokens, last = self._spend(*self.table.pop(key), now)
            self.table[key] = (tokens, last)
            return ok
        if len(self.table) >= self.max_keys:
            tokens, last = next(iter(self.table.values()))
            if tokens + max(0.0, now - last) * self.rate < self.burst:
                self.overflowed += 1
                ok, *state = self._spend(*(self.overflow or (self.burst, now)), now)
                self.overflow = (state[0], state[1])
                return ok
            self.table.popitem(last=False)
        self.table[key] = (self.burst - 1.0, now)
        return True


@given(
    st.integers(1, 4),
    st.lists(
        st.tuples(st.sampled_from("abcdef"), st.sampled_from([0.0, 0.0, 0.05, 0.3, 1.0, -0.2])),
        max_size=200,
    ),
)
def test_token_buckets_match_their_contract(max_keys: int, steps: list[tuple[str, float]]) -> None:
    # The table keeps the latest key's entry at hand (no lookup, no reordering
    # for a run of one source): every decision, the table size and the overflow
    # count must still be the plain LRU model's, including clocks that step back.
    real = TokenBuckets(rate=2, burst=3, max_keys=max_keys)
    model = _ModelBuckets(rate=2, burst=3, max_keys=max_keys)
    now = 0.0
    for key, step in steps:
        now += step
        assert real.allow(key, now) == model.allow(key, now), (key, now)
        assert len(real) == len(model.table)
    assert real.overflowed == model.overflowed
