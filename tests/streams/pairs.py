"""Connected pairs of stream ends, one small interface per style, for the conformance suite.

Two styles, each with the implementations we have:

* async streams (``asyncio.StreamReader``/``StreamWriter``): the kernel's TCP on
  loopback, and synack's TCP transport (two hosts on a ``MemoryHub``, and one
  host on its own loopback, "synack-lo");
* blocking sockets: the kernel's ``socket`` module on loopback, and synack's
  socket-shaped API (``Runtime``/``SocketModule``, likewise both ways).

"Abort" means what makes the kernel send a RST: ``SO_LINGER`` with a zero
timeout, then close (asyncio's own ``transport.abort()`` on the kernel just
closes the descriptor, which sends a FIN when nothing is unread).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

from synack.adapters import sockets
from synack.adapters.driver import HostDriver
from synack.links.memory import MemoryHub
from tests.stack.netfix import make_host

LINGER_ZERO = struct.pack("ii", 1, 0)
A_CIDR, B_CIDR = "10.213.0.1/24", "10.213.0.2/24"
B_IP = "10.213.0.2"


@dataclass
class AsyncEnd:
    """One end of a connection as asyncio streams."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    kernel: bool

    async def send_all(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive_some(self, n: int = 65536) -> bytes:
        return await self.reader.read(n)

    async def receive_exactly(self, n: int) -> bytes:
        return await self.reader.readexactly(n)

    def send_eof(self) -> None:
        self.writer.write_eof()

    def abort(self) -> None:
        """Reset the connection (RST), dropping anything unsent."""
        if self.kernel:
            sock = self.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
        self.writer.transport.abort()

    async def aclose(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


AsyncPair = Callable[[], Any]  # () -> async context manager of (AsyncEnd, AsyncEnd)


@asynccontextmanager
async def kernel_async_pair() -> AsyncIterator[tuple[AsyncEnd, AsyncEnd]]:
    accepted: asyncio.Queue[AsyncEnd] = asyncio.Queue()

    async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await accepted.put(AsyncEnd(r, w, kernel=True))

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    a, b = AsyncEnd(r, w, kernel=True), await accepted.get()
    try:
        yield a, b
    finally:
        for end in (a, b):
            end.writer.transport.abort()
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def synack_async_pair(loopback: bool = False) -> AsyncIterator[tuple[AsyncEnd, AsyncEnd]]:
    """Two hosts on a hub; or, with ``loopback``, one host talking to itself on 127.0.0.1."""
    hub = MemoryHub()
    da = HostDriver(make_host(1, A_CIDR), hub.port())
    db = da if loopback else HostDriver(make_host(2, B_CIDR), hub.port())
    for d in {da, db}:
        d.start()
    accepted: asyncio.Queue[AsyncEnd] = asyncio.Queue()

    async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await accepted.put(AsyncEnd(r, w, kernel=False))

    server = await db.start_server(on_client, "0.0.0.0", 7000)
    r, w = await da.open_connection("127.0.0.1" if loopback else B_IP, 7000)
    a, b = AsyncEnd(r, w, kernel=False), await accepted.get()
    try:
        yield a, b
    finally:
        for end in (a, b):
            end.writer.transport.abort()
        server.close()
        for d in {da, db}:
            d.close()


ASYNC_PAIRS: dict[str, AsyncPair] = {
    "kernel": kernel_async_pair,
    "synack": synack_async_pair,
    "synack-lo": lambda: synack_async_pair(loopback=True),
}


# -- blocking sockets -------------------------------------------------------------


@contextmanager
def kernel_socket_pair(timeout: float) -> Iterator[tuple[Any, Any]]:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        a = socket.create_connection(srv.getsockname(), timeout=timeout)
        b, _ = srv.accept()
    b.settimeout(timeout)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@contextmanager
def synack_socket_pair(timeout: float, loopback: bool = False) -> Iterator[tuple[Any, Any]]:
    """Two hosts on a hub; or, with ``loopback``, one host talking to itself on 127.0.0.1."""
    with sockets.Runtime() as rt:
        hub = MemoryHub()
        ma = rt.add_host(make_host(1, A_CIDR), hub.port())
        mb = ma if loopback else rt.add_host(make_host(2, B_CIDR), hub.port())
        with mb.create_server(("0.0.0.0", 7000)) as srv:
            a = ma.create_connection(("127.0.0.1" if loopback else B_IP, 7000), timeout=timeout)
            srv.settimeout(timeout)
            b, _ = srv.accept()
        b.settimeout(timeout)
        try:
            yield a, b
        finally:
            a.close()
            b.close()


SOCKET_PAIRS: dict[str, Callable[[float], Any]] = {
    "kernel": kernel_socket_pair,
    "synack": synack_socket_pair,
    "synack-lo": lambda timeout: synack_socket_pair(timeout, loopback=True),
}
