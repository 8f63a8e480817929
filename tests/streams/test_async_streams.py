"""Stream conformance, asyncio style: the same properties, checked on the kernel's
TCP (loopback) and on synack's TCP transport, through ``StreamReader``/``StreamWriter``.

Modelled on the kind of checks trio's ``check_half_closeable_stream`` makes:
ordered complete bytes both ways at once, half-close, repeated EOF, large
writes, back-pressure, reset, close while a reader is blocked, use after close.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.streams.pairs import ASYNC_PAIRS, AsyncEnd

Body = Callable[[AsyncEnd, AsyncEnd], Awaitable[None]]
PROMPT = 2.0  # seconds: "promptly" (far above any real latency here, far below a hang)


@pytest.fixture(params=sorted(ASYNC_PAIRS))
def impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(impl: str, body: Body, timeout: float = 15.0) -> None:
    async def main() -> None:
        async with ASYNC_PAIRS[impl]() as (a, b):
            await asyncio.wait_for(body(a, b), timeout)

    asyncio.run(main())


def chunks(rng: random.Random, data: bytes, most: int) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, most)
        out.append(data[i : i + n])
        i += n
    return out


async def receive_all(end: AsyncEnd, n: int, rng: random.Random) -> bytes:
    got = bytearray()
    while len(got) < n:
        data = await end.receive_some(rng.randint(1, 70_000))
        assert data, f"EOF after {len(got)} of {n} bytes"
        got += data
    return bytes(got)


async def receive_to_eof(end: AsyncEnd) -> bytes:
    got = bytearray()
    for _ in range(100_000):
        data = await end.receive_some()
        if not data:
            return bytes(got)
        got += data
    raise AssertionError("no EOF")


@pytest.mark.parametrize("seed", [1, 2])
def test_both_directions_at_once_in_order_and_complete(impl: str, seed: int) -> None:
    rng = random.Random(seed)
    size = 1_500_000
    ab, ba = rng.randbytes(size), rng.randbytes(size)

    async def send(end: AsyncEnd, data: bytes, rng: random.Random) -> None:
        for piece in chunks(rng, data, 100_000):
            await end.send_all(piece)

    async def body(a: AsyncEnd, b: AsyncEnd) -> None:
        results = await asyncio.gather(
            send(a, ab, random.Random(seed + 10)),
            send(b, ba, random.Random(seed + 20)),
            receive_all(b, size, random.Random(seed + 30)),
            receive_all(a, size, random.Random(seed + 40)),
        )
        assert results[2] == ab
        assert results[3] == ba

    run(impl, body)


def test_one_large_write(impl: str) -> None:
    data = random.Random(3).randbytes(4_000_000)

    async def body(a: AsyncEnd, b: AsyncEnd) -> None:
        sent = asyncio.create_task(a.send_all(data))
        assert await b.receive_exactly(len(data)) == data
        await sent

    run(impl, body)


def test_half_close_then_reply_then_close(impl: str) -> None:
    async def body(a: AsyncEnd, b: AsyncEnd) -> None:
        await a.send_all(b"request" * 1000)
        a.send_eof()
        assert await receive_to_eof(b) == b"request" * 1000
        for _ in range(3):
            assert await b.receive_some() == b""  # EOF again, and again
        await b.send_all(b"reply" * 1000)  # the half-closed direction still carries data
        await b.aclose()
        assert await receive_to_eof(a) == b"reply" * 1000
        for _ in range(3):
            assert await a.receive_some() == b""

    run(impl, body)


def test_eof_is_repeatable_and_readexactly_reports_short(impl: str) -> None:
    async def body(a: AsyncEnd, b: AsyncEnd) -> None:
        await a.send_all(b"abc")
        await a.aclose()
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await b.receive_exactly(10)
        assert info.value.partial == b"abc"
        for _ in range(3):
            assert await b.receive_some() == b""

    run(impl, body)


def test_write_after_write_eof_raises(impl: str) -> None:
    async def body(a: AsyncEnd, b: AsyncEnd) -> None:
        a.send_eof()
        with pytest.raises(RuntimeError):
            a.writer.write(b"x")

    run(impl, body)


def test_send_after_close_raises(impl: str) -> None:
    async def body(a: AsyncEnd, b: AsyncEnd) -> None:
        a.writer.close()
        with pytest.raises(ConnectionResetError):
            await a.send_all(b"x")
        assert await receive_to_eof(b) == b""

    run(impl, body)


def test_backpressure_pauses_the_writer_until_the_peer_reads(impl: str) -> None:
    bound = 48 * 1024 * 1024  # far above any socket buffer here: reaching it = unbounded
    piece = random.Random(4).randbytes(256 * 1024)

    async def body(a: AsyncEnd, b: AsyncEnd) -> None:
        written = 0
        blocked: asyncio.Task[None] | None = None
        while written < bound:
            a.writer.write(piece)
            written += len(piece)
            drain = asyncio.ensure_future(a.writer.drain())
            done, _ = await asyncio.wait([drain], timeout=0.3)
            if not done:
                blocked = drain
                break
        assert blocked is not None, f"{written} bytes accepted with nobody reading"
        assert not blocked.done()
        # The reader catches up: the blocked drain completes and every byte is there.
        got = await b.receive_exactly(written)
        await asyncio.wait_for(blocked, PROMPT)
        assert got == piece * (written // len(piece))

    run(impl, body)


def test_abort_resets_the_peer(impl: str) -> None:
    async def body(a: AsyncEnd, b: AsyncEnd) -> None:
        await a.send_all(b"abc")
        assert await b.receive_exactly(3) == b"abc"
        a.abort()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(b.receive_some(), PROMPT)
        with pytest.raises(ConnectionResetError):
            await b.send_all(b"late")

    run(impl, body)


ABORT_SENDS_RST = pytest.mark.xfail(
    strict=True,
    reason="synack's TcpTransport.abort() always sends RST; asyncio's abort() on the kernel "
    "only closes the descriptor, so the peer reads a FIN (EOF) unless unread data was pending",
)


@pytest.mark.parametrize(
    "impl_",
    [
        pytest.param(n, marks=[ABORT_SENDS_RST] if n != "kernel" else [])
        for n in sorted(ASYNC_PAIRS)
    ],
)
def test_plain_transport_abort_with_nothing_unread_is_eof(impl_: str) -> None:
    async def body(a: AsyncEnd, b: AsyncEnd) -> None:
        await a.send_all(b"abc")
        assert await b.receive_exactly(3) == b"abc"
        a.writer.transport.abort()  # no SO_LINGER: what asyncio itself does
        assert await asyncio.wait_for(receive_to_eof(b), PROMPT) == b""

    run(impl_, body)


def test_close_wakes_a_blocked_reader(impl: str) -> None:
    async def body(a: AsyncEnd, b: AsyncEnd) -> None:
        blocked = asyncio.create_task(a.receive_some())
        await asyncio.sleep(0.05)
        assert not blocked.done()
        a.writer.close()
        assert await asyncio.wait_for(blocked, PROMPT) == b""
        assert await asyncio.wait_for(receive_to_eof(b), PROMPT) == b""

    run(impl, body)


def test_peer_close_wakes_a_blocked_reader(impl: str) -> None:
    async def body(a: AsyncEnd, b: AsyncEnd) -> None:
        blocked = asyncio.create_task(a.receive_some())
        await asyncio.sleep(0.05)
        await b.aclose()
        assert await asyncio.wait_for(blocked, PROMPT) == b""

    run(impl, body)


def test_close_after_write_delivers_everything_then_eof(impl: str) -> None:
    data = random.Random(6).randbytes(2_000_000)

    async def body(a: AsyncEnd, b: AsyncEnd) -> None:
        reader = asyncio.create_task(receive_to_eof(b))
        a.writer.write(data)
        a.writer.close()  # no drain: close flushes the buffer, then FIN
        assert await reader == data

    run(impl, body)


def test_close_with_unread_data_resets_the_peer(impl: str) -> None:
    # RFC 9293 SHLD-3 (MAY-1 half-duplex close): data was lost, so RST, not FIN.
    # Bytes a StreamReader has buffered were read from TCP's point of view, so
    # send more than its limit: the rest stays unread in the connection.
    async def body(a: AsyncEnd, b: AsyncEnd) -> None:
        a.writer.write(bytes(1_000_000))
        await asyncio.sleep(0.2)  # b's reader paused; the rest waits in b's TCP
        await b.aclose()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(a.receive_some(), PROMPT)

    run(impl, body)


def test_close_with_everything_read_is_eof_for_the_peer(impl: str) -> None:
    async def body(a: AsyncEnd, b: AsyncEnd) -> None:
        await a.send_all(b"read")
        assert await b.receive_exactly(4) == b"read"
        await b.aclose()
        for _ in range(3):
            assert await asyncio.wait_for(a.receive_some(), PROMPT) == b""

    run(impl, body)


def test_peer_reset_fails_a_writer_blocked_in_drain(impl: str) -> None:
    async def body(a: AsyncEnd, b: AsyncEnd) -> None:
        piece = bytes(256 * 1024)
        for _ in range(200):  # bounded: 50 MB
            a.writer.write(piece)
            drain = asyncio.ensure_future(a.writer.drain())
            done, _ = await asyncio.wait([drain], timeout=0.3)
            if not done:
                break
        else:
            raise AssertionError("drain never blocked")
        b.abort()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(drain, PROMPT)

    run(impl, body)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    writes=st.lists(st.integers(1, 300_000), min_size=1, max_size=12),
    read_size=st.integers(1, 100_000),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_write_pattern_arrives_whole_then_eof(
    impl: str, writes: list[int], read_size: int, seed: int
) -> None:
    rng = random.Random(seed)
    budget = 2000 * read_size  # bounded reads: at most ~2000 calls however small
    data = []
    for n in writes:
        data.append(rng.randbytes(min(n, budget)))
        budget -= len(data[-1])
        if budget <= 0:
            break

    async def body(a: AsyncEnd, b: AsyncEnd) -> None:
        async def send() -> None:
            for piece in data:
                await a.send_all(piece)
            a.send_eof()

        async def receive() -> bytes:
            got = bytearray()
            for _ in range(3000):
                chunk = await b.receive_some(read_size)
                assert len(chunk) <= read_size
                if not chunk:
                    return bytes(got)
                got += chunk
            raise AssertionError("no EOF")

        _, got = await asyncio.gather(send(), receive())
        assert got == b"".join(data)

    run(impl, body)
