"""The apps unchanged on synack's own TCP/IP stack (in-memory hub, no root).

Only the injected callables change: the stack's ``create_datagram_endpoint``
and ``start_server`` instead of the event loop's.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from synack.adapters.driver import HostDriver
from synack.apps.services import UdpClassic, chargen_line, open_tcp_service, open_udp_service
from synack.apps.time import sntp
from synack.apps.time.server import start_time_server
from synack.apps.udpchat.core import Delivered, Event, MessageReceived, UdpChatPeer
from synack.apps.udpchat.endpoint import open_chat_endpoint
from synack.links.memory import MemoryHub
from tests.stack.netfix import make_host

SERVER = "10.213.0.1"
CLIENT = "10.213.0.2"


def pair() -> tuple[HostDriver, HostDriver]:
    hub = MemoryHub()
    a = HostDriver(make_host(1, f"{SERVER}/24"), hub.port())
    b = HostDriver(make_host(2, f"{CLIENT}/24"), hub.port())
    a.start()
    b.start()
    return a, b


class Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.put_nowait(data)


def test_time_service_and_classic_services_on_the_stack() -> None:
    asyncio.run(_time_and_classic())


async def _time_and_classic() -> None:
    a, b = pair()
    server = await start_time_server(
        SERVER, 9000, 8123, create_datagram_endpoint=a.create_datagram_endpoint
    )
    echo = await open_tcp_service("echo", SERVER, 7, start_server=a.start_server)
    chargen = await open_tcp_service("chargen", SERVER, 19, start_server=a.start_server)
    daytime = await open_udp_service(
        "daytime",
        UdpClassic("daytime"),
        SERVER,
        13,
        create_datagram_endpoint=a.create_datagram_endpoint,
    )
    try:
        transport, proto = await b.create_datagram_endpoint(Collect, local_addr=(CLIENT, 0))
        assert isinstance(proto, Collect)
        transport.sendto(b"%Y", (SERVER, 9000))
        assert await asyncio.wait_for(proto.got.get(), 5) == time.strftime("%Y").encode()

        t1 = time.time_ns()
        transport.sendto(sntp.client_request(t1), (SERVER, 8123))
        reply = await asyncio.wait_for(proto.got.get(), 5)
        m = sntp.measure(reply, t1, time.time_ns())
        assert m.stratum == 10 and abs(m.offset) < 0.05

        transport.sendto(b"", (SERVER, 13))
        assert (await asyncio.wait_for(proto.got.get(), 5)).endswith(b"\r\n")
        transport.close()

        reader, writer = await b.open_connection(SERVER, 7)
        payload = bytes(range(256)) * 200  # several segments
        writer.write(payload)
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(len(payload)), 10) == payload
        writer.close()

        reader, writer = await b.open_connection(SERVER, 19)
        lines = await asyncio.wait_for(reader.readexactly(3 * 74), 10)
        assert lines == chargen_line(0) + chargen_line(1) + chargen_line(2)
        writer.close()
    finally:
        server.close()
        daytime.close()
        echo.close()
        chargen.close()
        await asyncio.sleep(0.05)
        a.close()
        b.close()


def test_udpchat_on_the_stack() -> None:
    asyncio.run(_udpchat())


async def _udpchat() -> None:
    a, b = pair()
    alice_events: list[Event] = []
    bob_events: list[Event] = []
    alice = await open_chat_endpoint(
        UdpChatPeer("alice"),
        SERVER,
        8081,
        alice_events.append,
        create_datagram_endpoint=a.create_datagram_endpoint,
    )
    bob = await open_chat_endpoint(
        UdpChatPeer("bob"),
        CLIENT,
        8081,
        bob_events.append,
        create_datagram_endpoint=b.create_datagram_endpoint,
    )
    try:
        msg_id = alice.send((CLIENT, 8081), "over synack's own UDP")
        await asyncio.wait_for(alice.wait_idle(), 10)
        assert alice_events == [Delivered((CLIENT, 8081), msg_id)]
        assert [(e.sender, e.text) for e in bob_events if isinstance(e, MessageReceived)] == [
            ("alice", "over synack's own UDP")
        ]
    finally:
        alice.close()
        bob.close()
        a.close()
        b.close()
