"""The thin asyncio adapter of the messenger core: a DatagramProtocol.

Feed the core, drain its datagrams and events, re-arm one timer only when the
core's deadline changes (ARCHITECTURE.md house style item 2). ``now`` is the
event loop's monotonic clock; the wall clock only stamps ``ts``.

Layer: apps. Imports synack.apps.services and synack.apps.udpchat.core.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, cast

from synack.apps.services import CreateDatagramEndpoint
from synack.apps.udpchat.core import Event, UdpChatPeer

Address = tuple[str, int]


class ChatEndpoint(asyncio.DatagramProtocol):
    def __init__(self, peer: UdpChatPeer, on_event: Callable[[Event], None]) -> None:
        self.peer = peer
        self._on_event = on_event
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.send_errors = 0

    # -- asyncio.DatagramProtocol ------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.peer.receive_datagram(data, (str(addr[0]), int(addr[1])), self._loop.time())
        self._pump()

    def error_received(self, exc: Exception) -> None:
        # ICMP "port unreachable" for an earlier datagram: the peer is not
        # running. Retransmission (then "undelivered") already covers it.
        self.send_errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- API -----------------------------------------------------------------

    @property
    def sockname(self) -> tuple[Any, ...]:
        assert self.transport is not None
        return tuple(self.transport.get_extra_info("sockname"))

    def send(self, to: Address, text: str) -> int:
        """Send a message (LocalProtocolError if too long); returns its id."""
        msg_id = self.peer.send(to, text, self._loop.time(), time.time())
        self._pump()
        return msg_id

    async def wait_idle(self) -> None:
        """Until every message sent is acknowledged or reported undelivered."""
        await self._idle.wait()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- the adapter loop ----------------------------------------------------

    def _pump(self) -> None:
        transport = self.transport
        for data, addr in self.peer.datagrams_to_send():
            if transport is not None and not transport.is_closing():
                transport.sendto(data, addr)
        while (event := self.peer.next_event()) is not None:
            self._on_event(event)
        deadline = self.peer.get_timer()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(deadline, self._fire) if deadline is not None else None
            self._timer_at = deadline
        if self.peer.pending:
            self._idle.clear()
        else:
            self._idle.set()

    def _fire(self) -> None:
        # asyncio may run a timer up to its clock resolution early: the core
        # must see the deadline reached, or it would re-arm the same instant.
        due = self._timer_at if self._timer_at is not None else 0.0
        self._timer = None
        self._timer_at = None
        self.peer.handle_timer(max(self._loop.time(), due))
        self._pump()


async def open_chat_endpoint(
    peer: UdpChatPeer,
    host: str,
    port: int,
    on_event: Callable[[Event], None],
    *,
    create_datagram_endpoint: CreateDatagramEndpoint | None = None,
) -> ChatEndpoint:
    """Bind ``host:port``; ``create_datagram_endpoint`` defaults to the loop's."""
    create = create_datagram_endpoint or asyncio.get_running_loop().create_datagram_endpoint
    _, protocol = await create(lambda: ChatEndpoint(peer, on_event), local_addr=(host, port))
    return cast(ChatEndpoint, protocol)
