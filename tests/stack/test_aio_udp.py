from __future__ import annotations

import asyncio

import pytest

from synack.adapters.driver import HostDriver
from synack.links.memory import MemoryHub
from tests.stack.netfix import make_host


def _pair() -> tuple[HostDriver, HostDriver]:
    hub = MemoryHub()
    a = HostDriver(make_host(1, "10.213.0.1/24"), hub.port())
    b = HostDriver(make_host(2, "10.213.0.2/24"), hub.port())
    a.start()
    b.start()
    return a, b


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert isinstance(self.transport, asyncio.DatagramTransport)
        self.transport.sendto(data.upper(), addr)


class Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.errors: list[Exception] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)


def test_ping_between_drivers() -> None:
    asyncio.run(_ping_between_drivers())


async def _ping_between_drivers() -> None:
    a, b = _pair()
    rtt = await a.ping("10.213.0.2")
    assert rtt >= 0
    with pytest.raises(TimeoutError):
        await a.ping("10.213.0.77", timeout=0.2)
    a.close()
    b.close()


def test_udp_echo_and_refused() -> None:
    asyncio.run(_udp_echo_and_refused())


async def _udp_echo_and_refused() -> None:
    a, b = _pair()
    await b.create_datagram_endpoint(Echo, local_addr=("0.0.0.0", 7))
    tr, proto = await a.create_datagram_endpoint(Collect, remote_addr=("10.213.0.2", 7))
    assert tr.get_extra_info("peername") == ("10.213.0.2", 7)
    tr.sendto(b"hello")
    data, addr = await asyncio.wait_for(proto.got.get(), 2)
    assert (data, addr) == (b"HELLO", ("10.213.0.2", 7))
    tr2, proto2 = await a.create_datagram_endpoint(Collect, remote_addr=("10.213.0.2", 8))
    tr2.sendto(b"anyone?")
    for _ in range(100):
        if proto2.errors:
            break
        await asyncio.sleep(0.01)
    assert isinstance(proto2.errors[0], ConnectionRefusedError)
    with pytest.raises(OSError):
        await b.create_datagram_endpoint(Echo, local_addr=("0.0.0.0", 7))
    tr.close()
    tr2.close()
    a.close()
    b.close()
