"""The chat client API (async), used by the CLI, the tests and the benchmarks.

    async with ChatClient.connect("127.0.0.1", 8898, "ada") as c:
        await c.say("hello")
        print(await c.who(timeout=2))
        async for event in c.events():
            ...

The connection is opened with a ``create_connection``-shaped callable (default
``loop.create_connection``), so the same client runs over synack's own TCP
stack. Heartbeats are answered automatically: a server ``ping`` gets a ``pong``.

Layer: apps. Imports chat.connection, chat.messages, synack.core.framing and synack.errors.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, ParamSpec

from synack.apps.chat.connection import ConnectionClosed, CreateConnection, QueueingProtocol
from synack.apps.chat.messages import (
    DEFAULT_PORT,
    Bye,
    ClientMessage,
    Error,
    Hello,
    Ping,
    Pong,
    Say,
    ServerMessage,
    Users,
    Welcome,
    Who,
    decode_server,
    encode_message,
)
from synack.core.framing import DEFAULT_MAX_FRAME, Payload
from synack.errors import SynackError

__all__ = ["ChatClient", "ChatError", "RawEvent"]

_CLOSED: Final = object()  # end-of-events marker in the queue
MAX_PENDING_EVENTS: Final = 100_000  # received but not yet consumed by the application
P = ParamSpec("P")


class ChatError(SynackError):
    """The server refused something (``error`` message) or went away."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class RawEvent:
    """A received message together with its payload exactly as on the wire."""

    __slots__ = ("message", "raw")

    def __init__(self, message: ServerMessage, raw: Payload) -> None:
        self.message = message
        self.raw = raw


class _ClientProtocol(QueueingProtocol):
    def __init__(self, max_frame: int, heartbeat: float | None) -> None:
        super().__init__(max_frame, MAX_PENDING_EVENTS)
        # Client-side liveness: after `heartbeat` seconds without a byte from the
        # server, ping it; after twice that, the connection is dead (a server that
        # vanished without a FIN or RST would otherwise never be noticed).
        self.heartbeat = heartbeat
        self.last_rx = self._loop.time()
        self.pinged_at = 0.0
        self.heartbeat_pings = 0  # our own pings whose pong is still due
        self.timer: asyncio.TimerHandle | None = None
        self.events: collections.deque[RawEvent | object] = collections.deque()
        self.waiters: list[asyncio.Future[None]] = []
        self.closed_event = asyncio.Event()
        self.who_waiters: collections.deque[asyncio.Future[list[str]]] = collections.deque()
        self.ping_waiters: collections.deque[asyncio.Future[float]] = collections.deque()
        self.bye_received = False
        self.ignored = 0  # frames this client does not understand (newer server?)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.heartbeat is not None:
            self.timer = self._loop.call_later(self.heartbeat, self._on_timer)

    def _on_timer(self) -> None:
        assert self.heartbeat is not None
        self.timer = None
        if self.closed:
            return
        now = self._loop.time()
        silent = now - self.last_rx
        if silent >= 2 * self.heartbeat:
            self.error = ConnectionClosed(f"nothing from the server for {silent:.1f} s")
            self.abort()
            return
        if silent >= self.heartbeat and self.pinged_at <= self.last_rx:
            self.pinged_at = now
            self.heartbeat_pings += 1
            self.send_frame(encode_message(Ping()))
        wait = self.heartbeat - silent if silent < self.heartbeat else 2 * self.heartbeat - silent
        self.timer = self._loop.call_later(max(wait, 0.01), self._on_timer)

    def frames_received(self, frames: list[Payload]) -> None:
        self.last_rx = self._loop.time()
        for raw in frames:
            try:
                m = decode_server(raw)
            except ValueError:
                self.ignored += 1  # §2 may grow new types; an old client skips them
                continue
            if isinstance(m, Ping):
                self.send_frame(encode_message(Pong()))
            elif isinstance(m, Users) and self.who_waiters:
                fut = self.who_waiters.popleft()
                if not fut.done():
                    fut.set_result(list(m.users))
                continue
            elif isinstance(m, Pong) and self.heartbeat_pings and not self.ping_waiters:
                self.heartbeat_pings -= 1  # the answer to our own heartbeat ping
                continue
            elif isinstance(m, Pong) and self.ping_waiters:
                fut_p = self.ping_waiters.popleft()
                if not fut_p.done():
                    fut_p.set_result(time.monotonic())
                continue
            elif isinstance(m, Bye):
                self.bye_received = True
            self.events.append(RawEvent(m, raw))
        # An application not taking events: the backlog waits in the kernel and the
        # server's bounded queue instead.
        self.backlog(len(self.events))
        self._wake()

    def closed_by_peer(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.error is None:
            self.error = exc
        self.closed_event.set()
        self.events.append(_CLOSED)
        for waiters in (self.who_waiters, self.ping_waiters):
            while waiters:
                fut = waiters.popleft()
                if not fut.done():
                    fut.set_exception(ConnectionClosed("connection closed", self.error))
        self._wake()

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def next(self) -> RawEvent | None:
        while not self.events:
            w = self._loop.create_future()
            self.waiters.append(w)
            await w
        item = self.events[0]
        if item is _CLOSED:
            return None  # stays in the queue: every later call also sees the end
        self.events.popleft()
        self.backlog(len(self.events))
        assert isinstance(item, RawEvent)
        return item


def _bye_on_exit(
    open_: Callable[P, Awaitable[ChatClient]],
) -> Callable[P, contextlib.AbstractAsyncContextManager[ChatClient]]:
    """``open_`` as an async context manager that says ``bye`` on exit."""

    @contextlib.asynccontextmanager
    async def connect(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[ChatClient]:
        client = await open_(*args, **kwargs)
        try:
            yield client
        finally:
            await client.bye()

    functools.update_wrapper(connect, open_)  # help() shows open_'s parameters
    connect.__name__, connect.__qualname__ = "connect", "ChatClient.connect"
    connect.__doc__ = "``async with ChatClient.connect(host, port, nick) as c``; says bye on exit."
    return connect


class ChatClient:
    """A registered chat connection. Create with ``connect`` (or ``open``)."""

    def __init__(self, protocol: _ClientProtocol, welcome: Welcome, raw: Payload = b"") -> None:
        self._p = protocol
        self.welcome = welcome
        self.welcome_raw = raw  # the welcome payload as it was on the wire
        self.nick = welcome.nick

    # -- opening -------------------------------------------------------------

    @staticmethod
    async def open(
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        nick: str = "",
        *,
        timeout: float = 10.0,
        max_frame: int = DEFAULT_MAX_FRAME,
        heartbeat: float | None = 45.0,
        create_connection: CreateConnection | None = None,
    ) -> ChatClient:
        """Connect and register; ``ChatError`` if the server refuses the nick.

        ``heartbeat``: seconds of silence from the server before the client pings
        it; twice that and the connection is given up (None: never).
        """
        loop = asyncio.get_running_loop()
        opener: CreateConnection = create_connection or loop.create_connection
        _, proto = await asyncio.wait_for(
            opener(lambda: _ClientProtocol(max_frame, heartbeat), host, port), timeout
        )
        assert isinstance(proto, _ClientProtocol)
        try:
            proto.send_frame(encode_message(Hello(nick=nick)))
            async with asyncio.timeout(timeout):
                while True:
                    ev = await proto.next()
                    if ev is None:
                        raise ChatError("closed", "the server closed the connection")
                    if isinstance(ev.message, Welcome):
                        return ChatClient(proto, ev.message, ev.raw)
                    if isinstance(ev.message, Error):
                        raise ChatError(ev.message.code, ev.message.detail)
        except BaseException:
            proto.abort()
            raise

    # ``open`` as ``async with``: same arguments, says bye on exit.
    connect = staticmethod(_bye_on_exit(open))

    # -- sending -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._p.closed

    def send_nowait(self, message: ClientMessage) -> None:
        """Queue a message; it goes out with everything else sent this loop turn."""
        self._p.send_frame(encode_message(message))

    async def send(self, message: ClientMessage) -> None:
        self.send_nowait(message)
        await self._p.drain()

    async def say(self, text: str, to: str | None = None) -> None:
        await self.send(Say(text=text, to=to))

    def say_nowait(self, text: str, to: str | None = None) -> None:
        self.send_nowait(Say(text=text, to=to))

    async def drain(self) -> None:
        await self._p.drain()

    async def who(self, timeout: float = 5.0) -> list[str]:
        """Ask for the user list (request/response with a timeout)."""
        fut: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._p.who_waiters.append(fut)
        self.send_nowait(Who())
        async with asyncio.timeout(timeout):
            return await fut

    async def ping(self, timeout: float = 5.0) -> float:
        """Round-trip time to the server, in seconds."""
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._p.ping_waiters.append(fut)
        start = time.monotonic()
        self.send_nowait(Ping())
        async with asyncio.timeout(timeout):
            return (await fut) - start

    # -- receiving -----------------------------------------------------------

    async def next_event(self, timeout: float | None = None) -> ServerMessage | None:
        """The next server message, or None once the connection is closed."""
        async with asyncio.timeout(timeout):
            ev = await self._p.next()
        return None if ev is None else ev.message

    async def next_raw(self, timeout: float | None = None) -> RawEvent | None:
        async with asyncio.timeout(timeout):
            return await self._p.next()

    async def events(self) -> AsyncIterator[ServerMessage]:
        """Every server message until the connection closes."""
        while (ev := await self._p.next()) is not None:
            yield ev.message

    # -- closing -------------------------------------------------------------

    async def bye(self, timeout: float = 5.0) -> None:
        """Graceful goodbye: send ``bye``, wait for the server's ``bye`` and the close."""
        p = self._p
        if not p.closed:
            try:
                self.send_nowait(Bye())
                await p.drain()
                async with asyncio.timeout(timeout):
                    await p.closed_event.wait()
            except (ConnectionError, TimeoutError):
                pass
        if not p.closed:
            p.abort()

    @property
    def bye_received(self) -> bool:
        """The server said ``bye`` (a graceful end, not a lost connection)."""
        return self._p.bye_received

    def abort(self) -> None:
        self._p.abort()
