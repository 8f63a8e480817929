from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest

from synack.adapters.driver import HostDriver
from synack.links.memory import MemoryHub
from tests.stack.netfix import make_host


def run(main: Callable[[HostDriver, HostDriver], Awaitable[None]]) -> None:
    async def wrapper() -> None:
        hub = MemoryHub()
        a = HostDriver(make_host(1, "10.213.0.1/24"), hub.port())
        b = HostDriver(make_host(2, "10.213.0.2/24"), hub.port())
        a.start()
        b.start()
        try:
            await asyncio.wait_for(main(a, b), 30)
        finally:
            a.close()
            b.close()

    asyncio.run(wrapper())


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def test_streams_echo_large_and_half_close() -> None:
    async def main(a: HostDriver, b: HostDriver) -> None:
        server = await b.start_server(echo, "0.0.0.0", 7)
        assert server.sockets[0].getsockname() == ("0.0.0.0", 7)
        reader, writer = await a.open_connection("10.213.0.2", 7)
        assert writer.get_extra_info("peername") == ("10.213.0.2", 7)
        payload = random.Random(1).randbytes(300_000)

        async def send() -> None:
            writer.write(payload)
            await writer.drain()
            writer.write_eof()  # half-close: the echo still comes back

        task = asyncio.create_task(send())
        got = await reader.read(-1)  # until the server's FIN
        await task
        assert got == payload
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(main)


def test_server_wait_closed_waits_for_accepted_connections_and_close_clients() -> None:
    """asyncio.Server since 3.12: ``wait_closed`` returns once the server is closed and every
    connection it accepted is gone; ``close_clients`` (3.13) closes them (FIN to the peer)."""

    async def main(a: HostDriver, b: HostDriver) -> None:
        held: list[asyncio.StreamWriter] = []

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)

        server = await b.start_server(hold, "0.0.0.0", 7)
        conns = [await a.open_connection("10.213.0.2", 7) for _ in range(3)]
        while len(held) < 3:
            await asyncio.sleep(0.01)
        server.close()
        waiter = asyncio.create_task(server.wait_closed())
        await asyncio.sleep(0.2)
        assert not waiter.done()  # three accepted connections are still open
        server.close_clients()
        for reader, _ in conns:
            assert await asyncio.wait_for(reader.read(), 5) == b""  # the server's FIN
        for _, writer in conns:
            writer.close()
        await asyncio.wait_for(waiter, 5)

    run(main)


def test_server_abort_clients_resets_them() -> None:
    async def main(a: HostDriver, b: HostDriver) -> None:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()

        server = await b.start_server(hold, "0.0.0.0", 7)
        reader, _writer = await a.open_connection("10.213.0.2", 7)
        await asyncio.sleep(0.05)
        server.close()
        server.abort_clients()
        await asyncio.wait_for(server.wait_closed(), 5)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 5)

    run(main)


def test_connection_refused_and_no_route() -> None:
    async def main(a: HostDriver, b: HostDriver) -> None:
        with pytest.raises(ConnectionRefusedError):
            await a.open_connection("10.213.0.2", 9)
        with pytest.raises(OSError):
            await a.open_connection("10.9.9.9", 9)

    run(main)


class Buffered(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.buf = bytearray(1000)
        self.got = bytearray()
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buf)

    def buffer_updated(self, nbytes: int) -> None:
        self.got += self.buf[:nbytes]

    def eof_received(self) -> bool:
        self.done.set_result(bytes(self.got))
        return False


class Blaster(asyncio.Protocol):
    """Writes until paused; counts pause/resume (write flow control)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0
        self.pauses = 0
        self.resumes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.paused = False
        self._fill()

    def _fill(self) -> None:
        while not self.paused and self.sent < self.total:
            chunk = bytes([self.sent // 10_000 % 256]) * 10_000
            self.transport.write(chunk)
            self.sent += len(chunk)
        if self.sent >= self.total and not self.paused:
            self.transport.write_eof()

    def pause_writing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_writing(self) -> None:
        self.paused = False
        self.resumes += 1
        self._fill()


def test_buffered_protocol_and_write_flow_control() -> None:
    async def main(a: HostDriver, b: HostDriver) -> None:
        blaster = Blaster(1_000_000)
        await b.create_server(lambda: blaster, None, 19)
        _, proto = await a.create_connection(Buffered, "10.213.0.2", 19)
        assert isinstance(proto, Buffered)
        data = await proto.done
        expected = b"".join(bytes([i % 256]) * 10_000 for i in range(100))
        assert data == expected
        assert blaster.pauses >= 1 and blaster.resumes >= 1

    run(main)


def test_pause_reading_closes_window() -> None:
    async def main(a: HostDriver, b: HostDriver) -> None:
        blaster = Blaster(2_000_000)
        await b.create_server(lambda: blaster, None, 19)
        transport, proto = await a.create_connection(Buffered, "10.213.0.2", 19)
        transport.pause_reading()
        await asyncio.sleep(0.3)
        # The receiver stopped reading: the sender is held back by the window.
        assert blaster.paused and blaster.sent < 2_000_000
        transport.resume_reading()
        assert isinstance(proto, Buffered)
        data = await proto.done
        assert len(data) == 2_000_000

    run(main)


def test_the_drivers_timer_never_waits_past_the_hosts_deadline() -> None:
    """The driver re-arms its loop timer only for an earlier deadline (one that
    moved later keeps the armed timer, which wakes the host early once): the
    armed time is never after the host's next deadline, and the host's timers
    (here A's delayed ACK of the one-octet echo, MUST-40) still fire on time."""

    def check(*drivers: HostDriver) -> None:
        for d in drivers:
            deadline = d.host.get_timer()
            assert deadline is None or (d._armed is not None and d._armed <= deadline)

    async def main(a: HostDriver, b: HostDriver) -> None:
        server = await b.start_server(echo, "0.0.0.0", 7)
        for _ in range(5):
            reader, writer = await a.open_connection("10.213.0.2", 7)
            check(a, b)
            writer.write(b"x")
            assert await reader.readexactly(1) == b"x"
            check(a, b)
            port = writer.get_extra_info("sockname")[1]
            (echoed,) = [s for s in b.host.connections.values() if s.key[3] == port]
            await asyncio.sleep(0.6)  # past A's delayed ACK (< 0.5 s) of the echo
            check(a, b)
            assert echoed.conn.snd_una == echoed.conn.snd_max  # the echo was acknowledged
            writer.close()
            await writer.wait_closed()
            check(a, b)
        server.close()
        await server.wait_closed()

    run(main)
