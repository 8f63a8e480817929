"""The chat server (docs/protocol.md §2) on asyncio: a thin adapter around ``ChatRoom``.

Every rule lives in the sans-IO ``ChatRoom`` (``core.py``). This module only
moves bytes and time: one ``ChatSession`` (an asyncio protocol, see
``connection.py``) per connection hands its frames and ``loop.time()`` to the
room; once per event-loop turn the server writes what the room's ``flush``
says (one ``write`` per client), closes or aborts what ``disconnects`` says,
and keeps ONE timer armed at the room's next deadline. The server is given a
``create_server``-shaped callable (default ``loop.create_server``), so it runs
unchanged on the kernel's sockets or on any other transport provider.

A transport's ``pause_writing``/``resume_writing`` are passed on to the room,
which holds a slow reader's output (bounded) and decides when it is too slow.

Cluster: given an engine (``broker.Broker``, e.g. ``redis_broker.RedisBroker``), the room becomes one
node of a chat spread over several servers; the server only connects the engine at start,
``pump``s it after each input (the room's claims and events for the other nodes) and stops
it last.

Layer: apps. Imports chat.broker, chat.core, chat.node, chat.connection, chat.messages, synack.core.framing and
synack.errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

from synack.apps.chat.broker import Broker
from synack.apps.chat.connection import CreateServer, FramedProtocol
from synack.apps.chat.core import ChatConfig, ChatRoom, ClientState
from synack.apps.chat.messages import DEFAULT_PORT
from synack.apps.chat.node import ChatNode
from synack.core.framing import FrameTooLarge, Payload
from synack.errors import RemoteProtocolError

__all__ = ["DEFAULT_PORT", "ChatConfig", "ChatServer", "ChatSession"]


class ChatSession(FramedProtocol):
    """One client connection: its transport's events go to the server's room."""

    def __init__(self, server: ChatServer) -> None:
        super().__init__(server.config.max_frame)
        self.server = server
        self.peer: str = "?"

    @property
    def state(self) -> ClientState:
        return self.server.room.state(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        self.server._connected(self)

    def frames_received(self, frames: list[Payload]) -> None:
        server = self.server
        server.room.receive(self, frames, self._loop.time(), time.time())
        server._after()

    def protocol_error(self, exc: RemoteProtocolError) -> None:
        room = self.server.room
        if isinstance(exc, FrameTooLarge):
            room.frame_too_large(self, str(exc))
        else:  # truncated at end of stream
            room.truncated(self, str(exc))
        self.server._after()

    def closed_by_peer(self, exc: Exception | None) -> None:
        self.server.room.connection_lost(self)
        self.server._gone(self)
        self.server._after()  # the others hear `left`

    def pause_writing(self) -> None:
        super().pause_writing()
        self.server.room.pause(self)

    def resume_writing(self) -> None:
        super().resume_writing()
        data = self.server.room.resume(self)
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)


class ChatServer:
    """The chat room on asyncio. ``await start(host, port)``, ``await stop()``."""

    def __init__(
        self,
        config: ChatConfig | None = None,
        *,
        create_server: CreateServer | None = None,
        cluster: Broker | None = None,
    ):
        self.config = config or ChatConfig()
        # A node of a cluster when given an engine (until the engine joins, a plain room).
        self.room: ChatRoom[ChatSession] = (
            ChatRoom(self.config) if cluster is None else ChatNode(self.config)
        )
        self._create_server = create_server
        self._server: object | None = None
        self._live: set[ChatSession] = set()  # transport not yet lost
        self._flush_handle: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._all_closed: asyncio.Event | None = None
        self.cluster = cluster
        if cluster is not None:
            cluster.attach(self.room, self._after)

    @property
    def stats(self) -> Counter[str]:
        """Counters by event (``connections``, ``messages``, ``timeout``, error codes...)."""
        return self.room.stats

    def counts(self) -> dict[str, int]:
        return dict(self.room.stats)

    # -- lifecycle -----------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self._loop = asyncio.get_running_loop()
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        create = self._create_server or self._loop.create_server
        if self.cluster is not None:
            await self.cluster.start()
        self._server = await create(lambda: ChatSession(self), host, port)

    @property
    def sockets(self) -> list[object]:
        return list(getattr(self._server, "sockets", None) or [])

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every listening socket (the real port when started on 0)."""
        out: list[tuple[str, int]] = []
        for sock in self.sockets:
            name = sock.getsockname()  # type: ignore[attr-defined]
            out.append((str(name[0]), int(name[1])))
        return out

    async def stop(self, timeout: float = 2.0) -> None:
        """Stop accepting, tell every client ``bye``, and close them all."""
        if self._stopping:
            return
        self._stopping = True
        server = self._server
        if server is not None:
            server.close()  # type: ignore[attr-defined]
        self.room.stop()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._all_closed is not None and self._live:
            try:
                await asyncio.wait_for(self._all_closed.wait(), timeout)
            except TimeoutError:
                for s in list(self._live):
                    s.abort()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout)  # type: ignore[attr-defined]
        if self.cluster is not None:
            self.cluster.pump()  # the users' `left` for the other nodes
            await self.cluster.stop()

    # -- from the sessions ---------------------------------------------------

    def _connected(self, s: ChatSession) -> None:
        assert self._loop is not None
        if self.room.connect(s, self._loop.time(), s.peer):
            self._live.add(s)
            if self._all_closed is not None:
                self._all_closed.clear()
            self._arm()
        self._disconnect()

    def _gone(self, s: ChatSession) -> None:
        self._live.discard(s)
        if not self._live and self._all_closed is not None:
            self._all_closed.set()

    def _after(self) -> None:
        """After an input: abort what must go now, flush at the end of the turn."""
        self._disconnect()
        if self.cluster is not None:
            self.cluster.pump()
        if self._flush_handle is None and self.room.pending:
            assert self._loop is not None
            self._flush_handle = self._loop.call_soon(self._flush)

    # -- output --------------------------------------------------------------

    def _disconnect(self) -> None:
        for d in self.room.disconnects():
            s = d.client
            if d.abort:
                s.abort()
                continue
            if d.data and s.transport is not None and not s.closed:
                s.transport.write(d.data)
            s.close()

    def _flush(self) -> None:
        self._flush_handle = None
        for s, data in self.room.flush():
            if (t := s.transport) is not None and not s.closed:
                t.write(data)
        # Closing clients, and anyone a full queue made too slow (whose `left` is next turn's).
        self._after()

    # -- the one timer -------------------------------------------------------

    def _arm(self) -> None:
        """Arm the timer at the room's next deadline if that is earlier than the armed one.
        A later deadline leaves the timer as it is: it fires early and re-arms, which is
        cheaper than re-arming each time a client speaks."""
        at = self.room.get_timer()
        if at is None or self._stopping:
            return
        if self._timer is not None:
            if at >= self._timer_at:
                return
            self._timer.cancel()
        assert self._loop is not None
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        assert self._loop is not None
        # asyncio may run a timer up to its clock resolution early; the room must see the
        # deadline reached, or it would be re-armed for the same instant.
        self.room.handle_timer(max(self._loop.time(), self._timer_at))
        self._after()
        self._arm()
