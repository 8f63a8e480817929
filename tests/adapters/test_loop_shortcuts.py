"""The per-connection shortcuts of the adapters' loop glue do what the long
ways do: the driver's pump hands a connection's news to its owner as
``_dispatch`` does (the pump calls the owner itself) and what owners ask of
the host during a pump leaves with it (no pump queued from inside one),
``HostLoop.post_soon``
queues as ``call_soon`` does (without a handle), and transports whose state
starts as class attributes keep that state their own."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from ipaddress import IPv4Address
from typing import Any

from synack.adapters.driver import HostDriver
from synack.adapters.loopthread import LoopThread
from synack.links.memory import MemoryHub
from synack.stack import events as ev
from tests.stack.netfix import make_host
from tests.stack.test_aio_tcp import run


class Recorder:
    """An owner that writes down what the driver asked of it."""

    def __init__(self, name: str, log: list[tuple[str, str, object]]) -> None:
        self.name = name
        self.log = log

    def _activity(self) -> None:
        self.log.append((self.name, "activity", None))

    def _readable(self) -> None:  # (a DatagramTransport's; this is not one)
        self.log.append((self.name, "readable", None))

    def _error(self, errno: int) -> None:
        self.log.append((self.name, "error", errno))


class Replay:
    """The host as the pump asks it: ``events`` once, in order, no frames."""

    def __init__(self, events: list[Any]) -> None:
        self.events = deque(events)

    def next_event(self) -> Any:
        return self.events.popleft() if self.events else None

    def drain_frames(self) -> list[bytes]:
        return []

    def has_news(self) -> bool:
        return bool(self.events)

    def get_timer(self) -> float | None:
        return None


def test_the_pump_hands_news_to_owners_as_dispatch_does() -> None:
    async def main() -> None:
        host = make_host(1, "10.213.0.1/24")
        driver = HostDriver(host, MemoryHub().port())
        driver.start()
        try:
            now = driver.now()
            listener = host.tcp_listen(80, IPv4Address("10.213.0.1"))
            stream = host.tcp_connect((IPv4Address("10.213.0.9"), 80), now)
            ownerless = host.tcp_connect((IPv4Address("10.213.0.9"), 81), now)
            endpoint = host.udp_open(53)
            remote = (IPv4Address("10.213.0.9"), 53)
            events: list[Any] = [
                ev.TcpActivity(listener),
                ev.TcpActivity(ownerless),
                ev.DatagramReadable(endpoint),
                ev.TcpActivity(stream),
                ev.DatagramError(endpoint, 111, remote),
                ev.TcpActivity(listener),
                ev.EchoReply(1.5, remote[0], 7, 1, b"x"),
            ]
            logs: list[list[tuple[str, str, object]]] = []
            pings = []
            for way in ("pump", "dispatch"):
                log: list[tuple[str, str, object]] = []
                listener.owner = Recorder("listener", log)
                stream.owner = Recorder("stream", log)
                ownerless.owner = None
                endpoint.owner = Recorder("endpoint", log)
                ping: asyncio.Future[float] = asyncio.get_running_loop().create_future()
                driver._pings[(7, 1)] = ping
                if way == "pump":
                    real, driver.host = driver.host, Replay(events)  # type: ignore[assignment]
                    try:
                        driver.pump()
                    finally:
                        driver.host = real
                else:
                    for event in events:
                        driver._dispatch(event)
                logs.append(log)
                pings.append(ping.result() if ping.done() else None)
            assert logs[0] == logs[1]
            assert logs[0] == [
                ("listener", "activity", None),
                ("endpoint", "activity", None),
                ("stream", "activity", None),
                ("endpoint", "activity", None),
                ("listener", "activity", None),
            ]
            assert pings == [1.5, 1.5]
        finally:
            driver.close()

    asyncio.run(main())


def test_post_soon_queues_in_order_with_call_soon_and_reports_failures() -> None:
    rt = LoopThread()
    try:
        hl = rt.host_loop
        ran: list[str] = []
        errors: list[dict[str, Any]] = []
        rt.loop.set_exception_handler(lambda loop, ctx: errors.append(ctx))
        done = threading.Event()

        def boom() -> None:
            raise ValueError("boom")

        def queue_all() -> None:  # on the owning thread: one drain for the lot
            hl.post_soon(lambda: ran.append("post 1"))
            hl.call_soon(ran.append, "soon 2")
            hl.call_soon(ran.append, "cancelled").cancel()
            hl.post_soon(boom)
            hl.post_soon(lambda: ran.append("post 3"))
            hl.call_soon(ran.append, "soon 4")
            hl.post_soon(done.set)

        rt.loop.call_soon_threadsafe(queue_all)
        assert done.wait(10)
        assert ran == ["post 1", "soon 2", "post 3", "soon 4"]
        assert [type(e.get("exception")) for e in errors] == [ValueError]
        # From another thread too, in order, and call() still returns its value.
        ran.clear()
        for i in range(5):
            rt.post(lambda i=i: ran.append(f"from thread {i}"))
        assert rt.call(lambda: list(ran)) == [f"from thread {i}" for i in range(5)]
    finally:
        rt.close()


def test_each_transport_keeps_its_own_state() -> None:
    async def main(a: HostDriver, b: HostDriver) -> None:
        accepted: list[asyncio.Transport] = []

        class Keep(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.Transport)
                accepted.append(transport)

        server = await b.create_server(Keep, "0.0.0.0", 7)
        first, _ = await a.create_connection(asyncio.Protocol, "10.213.0.2", 7)
        second, _ = await a.create_connection(asyncio.Protocol, "10.213.0.2", 7)
        first.set_write_buffer_limits(high=1000)
        first.pause_reading()
        first.close()
        assert first.get_write_buffer_limits() == (250, 1000)
        assert first.is_closing() and not first.is_reading()
        assert second.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        assert not second.is_closing() and second.is_reading()
        second.write(b"still open")
        for _ in range(100):
            if len(accepted) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(accepted) == 2
        # (the first one's peer sent FIN: asyncio.Protocol's eof_received closes it)
        assert accepted[1].is_reading() and not accepted[1].is_closing()
        assert accepted[1].get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        second.close()
        server.close()

    run(main)


def test_what_owners_ask_during_a_pump_goes_out_with_it_and_queues_no_other() -> None:
    """An echo written in data_received (inside the pump that delivered the
    request) leaves with that pump: the echoing side queues no pump of its
    own for it (one queued from there found nothing left to do), and every
    reply still arrives, in order."""

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data.upper())

    async def main(a: HostDriver, b: HostDriver) -> None:
        server = await b.create_server(Echo, "0.0.0.0", 7)
        reader, writer = await a.open_connection("10.213.0.2", 7)
        posts: list[object] = []
        real_post = b._post

        def counted(fn: Any) -> object:
            posts.append(fn)
            return real_post(fn)

        b._post = counted
        for i in range(20):
            writer.write(b"ping %d;" % i)
            got = await asyncio.wait_for(reader.readexactly(len(b"PING %d;" % i)), 10)
            assert got == b"PING %d;" % i
        assert posts == []
        b._post = real_post
        writer.close()
        server.close()

    run(main)
