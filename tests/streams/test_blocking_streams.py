"""Stream conformance, blocking-socket style: the same properties, checked on the
kernel's ``socket`` module (loopback) and on synack's socket-shaped API.

Every other thread is joined with a timeout and every socket has one, so a
hang fails the test instead of blocking the suite.
"""

from __future__ import annotations

import errno
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.streams.pairs import LINGER_ZERO, SOCKET_PAIRS

TIMEOUT = 10.0  # every socket's timeout: a hang becomes TimeoutError
PROMPT = 2.0


@pytest.fixture(params=sorted(SOCKET_PAIRS))
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    with SOCKET_PAIRS[request.param](TIMEOUT) as ab:
        yield ab


class Thread:
    """Run ``fn`` in a thread; ``result()`` joins (bounded) and re-raises."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None

        def go() -> None:
            try:
                self.value = fn()
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=go, daemon=True)
        self.thread.start()

    def result(self, timeout: float = 20.0) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "thread hung"
        if self.error is not None:
            raise self.error
        return self.value


def recv_exactly(s: Any, n: int, rng: random.Random | None = None) -> bytes:
    got = bytearray()
    while len(got) < n:
        data = s.recv(rng.randint(1, 70_000) if rng else min(n - len(got), 1 << 20))
        assert data, f"EOF after {len(got)} of {n} bytes"
        got += data
    return bytes(got)


def recv_to_eof(s: Any) -> bytes:
    got = bytearray()
    for _ in range(100_000):
        data = s.recv(65536)
        if not data:
            return bytes(got)
        got += data
    raise AssertionError("no EOF")


@pytest.mark.parametrize("seed", [1, 2])
def test_both_directions_at_once_in_order_and_complete(pair: tuple[Any, Any], seed: int) -> None:
    a, b = pair
    rng = random.Random(seed)
    size = 1_500_000
    ab, ba = rng.randbytes(size), rng.randbytes(size)

    def send(s: Any, data: bytes, rng: random.Random) -> None:
        i = 0
        while i < len(data):
            n = rng.randint(1, 100_000)
            s.sendall(data[i : i + n])
            i += n

    threads = [
        Thread(lambda: send(a, ab, random.Random(seed + 10))),
        Thread(lambda: send(b, ba, random.Random(seed + 20))),
        Thread(lambda: recv_exactly(b, size, random.Random(seed + 30))),
        Thread(lambda: recv_exactly(a, size, random.Random(seed + 40))),
    ]
    results = [t.result() for t in threads]
    assert results[2] == ab
    assert results[3] == ba


def test_one_large_sendall(pair: tuple[Any, Any]) -> None:
    a, b = pair
    data = random.Random(3).randbytes(4_000_000)
    sender = Thread(lambda: a.sendall(data))
    assert recv_exactly(b, len(data)) == data
    sender.result()


def test_half_close_then_reply_then_close(pair: tuple[Any, Any]) -> None:
    a, b = pair
    a.sendall(b"request" * 1000)
    a.shutdown(socket.SHUT_WR)
    assert recv_to_eof(b) == b"request" * 1000
    for _ in range(3):
        assert b.recv(100) == b""  # EOF again, and again
    b.sendall(b"reply" * 1000)  # the half-closed direction still carries data
    b.close()
    assert recv_to_eof(a) == b"reply" * 1000
    for _ in range(3):
        assert a.recv(100) == b""


def test_send_after_shutdown_wr_is_broken_pipe(pair: tuple[Any, Any]) -> None:
    a, b = pair
    a.shutdown(socket.SHUT_WR)
    with pytest.raises(BrokenPipeError):
        a.sendall(b"x")
    assert recv_to_eof(b) == b""


def test_use_after_close_is_ebadf(pair: tuple[Any, Any]) -> None:
    a, b = pair
    a.close()
    for op in (lambda: a.sendall(b"x"), lambda: a.recv(1)):
        with pytest.raises(OSError) as info:
            op()
        assert info.value.errno == errno.EBADF
    assert recv_to_eof(b) == b""


def test_backpressure_blocks_the_sender_until_the_peer_reads(pair: tuple[Any, Any]) -> None:
    a, b = pair
    bound = 48 * 1024 * 1024  # far above any socket buffer here: reaching it = unbounded
    piece = random.Random(4).randbytes(64 * 1024)
    a.setblocking(False)
    sent = bytearray()
    while len(sent) < bound:
        try:
            n = a.send(piece)  # never blocks: a prefix of piece, or BlockingIOError
        except BlockingIOError:
            break
        sent += piece[:n]
    assert len(sent) < bound, f"{len(sent)} bytes accepted with nobody reading"
    # A blocking sendall now waits for the reader ...
    a.settimeout(TIMEOUT)
    more = random.Random(5).randbytes(1_000_000)
    sender = Thread(lambda: a.sendall(more))
    time.sleep(0.3)
    assert sender.thread.is_alive(), "sendall returned with nobody reading"
    # ... and completes once it reads; every byte arrives, in order.
    assert recv_exactly(b, len(sent) + len(more)) == bytes(sent) + more
    sender.result(PROMPT)


def test_abort_resets_the_peer_once_then_eof(pair: tuple[Any, Any]) -> None:
    a, b = pair
    a.sendall(b"abc")
    assert recv_exactly(b, 3) == b"abc"
    a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    a.close()  # SO_LINGER 0: RST instead of FIN
    with pytest.raises(ConnectionResetError):
        b.recv(100)
    for _ in range(3):
        assert b.recv(100) == b""  # the error is reported once, then EOF
    with pytest.raises(BrokenPipeError):
        b.sendall(b"late")


def test_abort_with_data_in_flight_delivers_it_then_resets(pair: tuple[Any, Any]) -> None:
    a, b = pair
    a.sendall(b"abc")
    time.sleep(0.1)  # arrived at b, unread
    a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    a.close()
    time.sleep(0.1)  # the RST arrived too
    assert b.recv(100) == b"abc"
    with pytest.raises(ConnectionResetError):
        b.recv(100)
    assert b.recv(100) == b""


def test_shutdown_wakes_a_blocked_reader(pair: tuple[Any, Any]) -> None:
    a, b = pair
    reader = Thread(lambda: a.recv(100))
    time.sleep(0.1)
    assert reader.thread.is_alive()
    a.shutdown(socket.SHUT_RDWR)
    assert reader.result(PROMPT) == b""
    assert recv_to_eof(b) == b""


def test_peer_close_wakes_a_blocked_reader(pair: tuple[Any, Any]) -> None:
    a, b = pair
    reader = Thread(lambda: a.recv(100))
    time.sleep(0.1)
    assert reader.thread.is_alive()
    b.close()
    assert reader.result(PROMPT) == b""


@pytest.mark.parametrize("impl", [n for n in sorted(SOCKET_PAIRS) if n != "kernel"])
def test_synack_close_wakes_a_reader_blocked_in_another_thread(impl: str) -> None:
    # Not the kernel: on Linux, close() leaves a recv() blocked in another
    # thread blocked (the call holds the file); shutdown() is the portable way
    # (test above). synack's socket wakes it with EBADF instead of hanging.
    with SOCKET_PAIRS[impl](TIMEOUT) as (a, b):
        reader = Thread(lambda: a.recv(100))
        time.sleep(0.1)
        assert reader.thread.is_alive()
        a.close()
        with pytest.raises(OSError) as info:
            reader.result(PROMPT)
        assert info.value.errno == errno.EBADF
        assert recv_to_eof(b) == b""


def test_close_after_sendall_delivers_everything_then_eof(pair: tuple[Any, Any]) -> None:
    a, b = pair
    data = random.Random(6).randbytes(2_000_000)
    reader = Thread(lambda: recv_to_eof(b))
    a.sendall(data)
    a.close()  # graceful: what is queued still goes, then FIN
    assert reader.result() == data


def test_close_with_unread_data_resets_the_peer(pair: tuple[Any, Any]) -> None:
    # RFC 9293 SHLD-3 (MAY-1 half-duplex close): data was lost, so RST, not FIN.
    a, b = pair
    a.sendall(b"never read")
    time.sleep(0.1)  # arrived at b, unread
    b.close()
    with pytest.raises(ConnectionResetError):
        a.recv(100)


def test_recv_timeout_and_nonblocking_leave_the_connection_usable(pair: tuple[Any, Any]) -> None:
    a, b = pair
    a.settimeout(0.1)
    with pytest.raises(TimeoutError):
        a.recv(100)
    a.setblocking(False)
    with pytest.raises(BlockingIOError):
        a.recv(100)
    a.settimeout(TIMEOUT)
    b.sendall(b"still here")
    assert recv_exactly(a, 10) == b"still here"


def test_peer_reset_fails_a_sender_blocked_in_sendall(pair: tuple[Any, Any]) -> None:
    a, b = pair
    sender = Thread(lambda: a.sendall(bytes(64 * 1024 * 1024)))  # more than any buffer here
    time.sleep(0.3)
    assert sender.thread.is_alive(), "sendall returned with nobody reading"
    b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    b.close()
    with pytest.raises(ConnectionResetError):
        sender.result(PROMPT)


def test_peer_reset_fails_a_blocked_reader(pair: tuple[Any, Any]) -> None:
    a, b = pair
    reader = Thread(lambda: a.recv(100))
    time.sleep(0.1)
    assert reader.thread.is_alive()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    b.close()
    with pytest.raises(ConnectionResetError):
        reader.result(PROMPT)
    assert a.recv(100) == b""
