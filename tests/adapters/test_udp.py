"""adapters/udp: addresses as asyncio's create_datagram_endpoint takes them."""

from __future__ import annotations

import asyncio
import errno

import pytest

from synack.adapters.driver import HostDriver
from synack.adapters.udp import parse_addr
from synack.links.memory import MemoryHub
from synack.stack.host import ANY
from tests.stack.netfix import make_host


def test_parse_addr() -> None:
    assert str(parse_addr(("localhost", 53))[0]) == "127.0.0.1"
    assert parse_addr(("", 53)) == (ANY, 53)
    assert str(parse_addr(("10.0.0.1", 0))[0]) == "10.0.0.1"
    for bad in (("example.com", 53), ("10.0.0.1", 65536), ("10.0.0.1", "53"), ("x",)):
        with pytest.raises(OSError) as info:
            parse_addr(bad)  # type: ignore[arg-type]
        assert info.value.errno == errno.EINVAL


def test_connected_to_localhost_reaches_a_loopback_server() -> None:
    async def main() -> tuple[object, tuple[bytes, tuple[str, int]]]:
        d = HostDriver(make_host(1, "10.213.0.1/24"), MemoryHub().port())
        d.start()
        got: asyncio.Future[tuple[bytes, tuple[str, int]]] = (
            asyncio.get_running_loop().create_future()
        )

        class Server(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                got.set_result((data, addr))

        srv, _ = await d.create_datagram_endpoint(Server, local_addr=("127.0.0.1", 5000))
        cli, _ = await d.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("localhost", 5000)
        )
        try:
            cli.sendto(b"hi")
            return cli.get_extra_info("peername"), await asyncio.wait_for(got, 5)
        finally:
            cli.close()
            srv.close()
            d.close()

    peer, (data, _) = asyncio.run(main())
    assert peer == ("127.0.0.1", 5000)  # as the kernel's: localhost is 127.0.0.1
    assert data == b"hi"
