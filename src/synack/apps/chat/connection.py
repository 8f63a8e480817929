"""Framed connections over any asyncio transport (docs/protocol.md §1).

``FramedProtocol`` is the thin adapter between an ``asyncio`` transport and the
sans-IO ``FrameDecoder``. It is an ``asyncio.BufferedProtocol`` (the kernel
reads straight into the decoder's preallocated memory) that also implements
``data_received``, so a transport that only knows plain ``asyncio.Protocol``
(synack's own TCP stack, for one) drives it unchanged. It uses only the methods
every ``asyncio.Transport`` has.

Sends are batched: ``send_frame`` only appends to a list, and one callback per
event-loop turn writes everything queued in one ``write``. A transport write
per message costs a system call per message; one per turn costs one per turn.

``QueueingProtocol`` adds read backpressure for an application that takes
frames at its own pace. ``FramedConnection`` is the stream-shaped face
(``send``/``drain``/``recv``) used by the benchmarks and by code that wants
frames without chat semantics.

Layer: apps. Imports synack.core.framing and synack.errors.
"""

from __future__ import annotations

import asyncio
import collections
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from synack.core.framing import DEFAULT_MAX_FRAME, FrameDecoder, Payload
from synack.errors import LocalProtocolError, RemoteProtocolError

_pack = struct.Struct(">I").pack
_LARGE = 8192  # from this payload size on, send_frames joins instead of appending

__all__ = [
    "ConnectionClosed",
    "CreateConnection",
    "CreateServer",
    "FramedConnection",
    "FramedProtocol",
    "QueueingProtocol",
    "ServerLike",
    "open_framed_connection",
]


class ServerLike(Protocol):
    """What synack needs of the object ``create_server`` returns (``asyncio.Server``)."""

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


# ``loop.create_server``-shaped: (protocol_factory, host, port) -> server.
CreateServer = Callable[[Callable[[], asyncio.BaseProtocol], str, int], Awaitable[Any]]
# ``loop.create_connection``-shaped: (protocol_factory, host, port) -> (transport, protocol).
CreateConnection = Callable[
    [Callable[[], asyncio.BaseProtocol], str, int],
    Awaitable[tuple[asyncio.BaseTransport, asyncio.BaseProtocol]],
]


class ConnectionClosed(ConnectionError):
    """The connection is closed; ``error`` says why when the peer broke the protocol."""

    def __init__(self, message: str = "connection closed", error: BaseException | None = None):
        super().__init__(message)
        self.error = error


class FramedProtocol(asyncio.BufferedProtocol):
    """Frames in (``frames_received``), batched frames out, write flow control."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.decoder = FrameDecoder(max_frame)
        self.transport: asyncio.Transport | None = None
        self.write_paused = False
        self.closed = False
        self._out = bytearray()  # frames queued this loop turn
        self._flush_handle: asyncio.Handle | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._loop = asyncio.get_running_loop()

    # -- subclass hooks ------------------------------------------------------

    def frames_received(self, frames: list[Payload]) -> None:
        """Complete payloads, in order. Called once per read."""

    def protocol_error(self, exc: RemoteProtocolError) -> None:
        """The peer broke the framing (frame too large, truncated at end of stream)."""
        self.abort()

    def closed_by_peer(self, exc: Exception | None) -> None:
        """The connection is gone (after any ``protocol_error``)."""

    # -- asyncio.BaseProtocol ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Any transport with the asyncio.Transport methods will do (duck typing).
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._out = bytearray()
        self._wake_drainers(exc or ConnectionClosed())
        self.closed_by_peer(exc)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drainers(None)

    # -- receiving -----------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.decoder.buffer_updated(nbytes)
        self._deliver()

    def data_received(self, data: bytes) -> None:
        self.decoder.receive_data(data)
        self._deliver()

    def eof_received(self) -> bool | None:
        if not self.decoder.eof:
            self.decoder.receive_data(b"")
        self._deliver()
        return False  # close our side too

    def _deliver(self) -> None:
        decoder = self.decoder
        try:
            while not self.closed and (frames := decoder.frames()):
                self.frames_received(frames)
        except RemoteProtocolError as exc:
            if not self.closed:
                self.protocol_error(exc)

    # -- sending -------------------------------------------------------------

    def send_frame(self, payload: bytes) -> None:
        """Queue one frame; everything queued in this loop turn goes out in one write."""
        if self.closed:
            raise ConnectionClosed()
        try:
            self._out += _pack(len(payload))
        except struct.error:
            raise LocalProtocolError("payload does not fit a 32-bit length") from None
        self._out += payload
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self.flush)

    def send_frames(self, payloads: list[bytes]) -> None:
        """Queue several frames (each is copied once, into the outgoing buffer)."""
        if self.closed:
            raise ConnectionClosed()
        if not self._out and payloads and len(payloads[0]) >= _LARGE and self.transport:
            # Large payloads: one join (a single copy, no regrowth) and one write
            # now; nothing else is queued, so the order is kept.
            parts: list[bytes] = []
            try:
                for p in payloads:
                    parts.append(_pack(len(p)))
                    parts.append(p)
            except struct.error:
                raise LocalProtocolError("payload does not fit a 32-bit length") from None
            self.transport.write(b"".join(parts))
            return
        out = self._out
        try:
            for p in payloads:
                out += _pack(len(p))
                out += p
        except struct.error:
            raise LocalProtocolError("payload does not fit a 32-bit length") from None
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self.flush)

    def send_raw(self, data: bytes) -> None:
        """Queue bytes that are already framed."""
        if self.closed:
            raise ConnectionClosed()
        self._out += data
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_handle = None
        out = self._out
        if not out or self.transport is None or self.closed:
            return
        self._out = bytearray()
        self.transport.write(out)

    async def drain(self) -> None:
        """Write what is queued and wait while the transport asks us to pause."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self.flush()
        if self.closed:
            raise ConnectionClosed()
        if not self.write_paused:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _wake_drainers(self, exc: BaseException | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for w in waiters:
            if not w.done():
                if exc is None:
                    w.set_result(None)
                else:
                    w.set_exception(exc)

    def close(self) -> None:
        """Send what is queued, then close."""
        if self.transport is not None and not self.transport.is_closing():
            self.flush()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class QueueingProtocol(FramedProtocol):
    """A ``FramedProtocol`` whose application takes what arrives at its own pace.

    The subclass keeps what it receives and reports, after receiving and after
    each take, how much waits unread (``backlog``): past ``max_queued`` the
    transport stops reading, so the backlog waits in the kernel and in the
    peer's send buffer (backpressure); at half that, reading resumes. A framing
    error is kept in ``error`` and aborts the connection.
    """

    def __init__(self, max_frame: int, max_queued: int) -> None:
        super().__init__(max_frame)
        self.max_queued = max_queued
        self.read_paused = False
        self.error: BaseException | None = None

    def backlog(self, waiting: int) -> None:
        # Called per frame taken: the common case (reading, under the bound) costs one test.
        if waiting > self.max_queued:
            if not self.read_paused and self.transport is not None:
                self.read_paused = True
                self.transport.pause_reading()
        elif self.read_paused and waiting <= self.max_queued // 2 and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()

    def protocol_error(self, exc: RemoteProtocolError) -> None:
        self.error = exc
        self.abort()


class _StreamProtocol(QueueingProtocol):
    """Keeps received frames for ``FramedConnection.recv``."""

    def __init__(self, max_frame: int, max_queued: int) -> None:
        super().__init__(max_frame, max_queued)
        self.queue: collections.deque[Payload] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None

    def frames_received(self, frames: list[Payload]) -> None:
        self.queue.extend(frames)
        self.backlog(len(self.queue))
        self._wake()

    def closed_by_peer(self, exc: Exception | None) -> None:
        if self.error is None:
            self.error = exc
        self._wake()

    def _wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    async def wait(self) -> None:
        if self.closed:
            raise ConnectionClosed("connection closed", self.error)
        self.waiter = self._loop.create_future()
        await self.waiter


class FramedConnection:
    """A framed TCP connection with a stream-like API."""

    def __init__(self, protocol: _StreamProtocol) -> None:
        self._p = protocol

    @property
    def transport(self) -> asyncio.Transport:
        assert self._p.transport is not None
        return self._p.transport

    def send(self, payload: bytes) -> None:
        """Queue one frame (written with everything else queued this loop turn)."""
        self._p.send_frame(payload)

    def send_many(self, payloads: list[bytes]) -> None:
        self._p.send_frames(payloads)

    async def drain(self) -> None:
        await self._p.drain()

    async def recv(self) -> Payload:
        """The next frame; ``ConnectionClosed`` at the end of the stream."""
        p = self._p
        while not p.queue:
            await p.wait()
        frame = p.queue.popleft()
        p.backlog(len(p.queue))
        return frame

    async def recv_batch(self) -> list[Payload]:
        """Every frame received so far (at least one)."""
        p = self._p
        while not p.queue:
            await p.wait()
        frames = list(p.queue)
        p.queue.clear()
        p.backlog(0)
        return frames

    def close(self) -> None:
        self._p.close()

    async def wait_closed(self) -> None:
        while not self._p.closed:
            try:
                await self._p.wait()
            except ConnectionClosed:
                return


async def open_framed_connection(
    host: str,
    port: int,
    *,
    max_frame: int = DEFAULT_MAX_FRAME,
    max_queued: int = 100_000,
    create_connection: CreateConnection | None = None,
) -> FramedConnection:
    """Connect and return a ``FramedConnection`` (any ``create_connection``-shaped opener)."""
    loop = asyncio.get_running_loop()
    opener: CreateConnection = create_connection or loop.create_connection
    _, protocol = await opener(lambda: _StreamProtocol(max_frame, max_queued), host, port)
    assert isinstance(protocol, _StreamProtocol)
    return FramedConnection(protocol)
