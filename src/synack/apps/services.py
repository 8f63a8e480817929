"""The classic small services, and the UDP request/reply server they share.

RFC 862 echo, RFC 863 discard, RFC 864 chargen and RFC 867 daytime are the
standard probes every TCP/IP stack is tested with. They are written once
against asyncio streams (TCP) and datagram endpoints (UDP), started through an
injectable ``start_server`` / ``create_datagram_endpoint``, so the same code
runs on the kernel's sockets and on synack's own stack. Only the standard
transport methods are used: ``sendto``, ``write``, ``close`` and
``get_extra_info('sockname' / 'peername')``.

:func:`open_udp_service` is also the adapter of the time service: a UDP
service here is a pure function ``handler(datagram, address) -> reply | None``
(the sans-IO part) plus one of two thin adapters: an
``asyncio.DatagramProtocol`` (works with any ``create_datagram_endpoint``), or,
on the kernel's sockets, a socket drained with a ``recvfrom`` loop from the
event loop's ``add_reader``, which skips the transport machinery per datagram.

Layer: apps. Imports synack.core and synack.errors; never trace or cli.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from synack.core.ratelimit import TokenBuckets
from synack.errors import UsageError

Address = tuple[Any, ...]
Handler = Callable[[bytes, Address], "bytes | None"]
CreateDatagramEndpoint = Callable[..., Awaitable[tuple[asyncio.DatagramTransport, Any]]]
StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
StartServer = Callable[..., Awaitable[asyncio.AbstractServer]]

SERVICE_NAMES = ("echo", "discard", "chargen", "daytime")

# Source ports a UDP service never answers: port 0 (no reply can be
# addressed to it), the well-known ports of services that answer every
# datagram (echo 7, discard 9, systat 11, daytime 13, qotd 17, chargen 19,
# time 37, NTP 123), and synack's own defaults for them (7007, 9009, 13013,
# 19019; the time service's 9000 and 8123). A datagram from one of those,
# answered, would be answered back: one spoofed datagram "from" a chargen
# port to an echo port starts a loop between two services that runs until
# a packet is lost (CERT CA-1996-01). A server adds the ports it serves
# itself (``UdpClassic.refuse_ports``), so two of its services never talk.
LOOP_PORTS = frozenset({0, 7, 9, 11, 13, 17, 19, 37, 123, 7007, 9009, 13013, 19019, 9000, 8123})


def format_address(addr: Address) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def announce(addr: Address, service: str) -> None:
    """The §5 contract line, printed once the socket accepts traffic."""
    sys.stderr.write(f"listening on {format_address(addr)} ({service})\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------
# UDP request/reply servers


@dataclass(slots=True)
class UdpStats:
    received: int = 0
    replied: int = 0
    send_dropped: int = 0  # socket buffer full or send error: UDP may drop
    handler_errors: int = 0


class ReplyProtocol(asyncio.DatagramProtocol):
    """One reply (or none) per datagram, through any DatagramTransport."""

    def __init__(
        self, handler: Handler, stats: UdpStats, on_batch: Callable[[], None] | None = None
    ) -> None:
        self._handler = handler
        self._stats = stats
        self._on_batch = on_batch
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Typed as BaseTransport by asyncio; any datagram endpoint has sendto.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        stats = self._stats
        stats.received += 1
        try:
            # Each datagram is its own batch here.
            if self._on_batch is not None:
                self._on_batch()
            reply = self._handler(data, addr)
        except Exception:
            # Cores never raise on peer input; if one does, that peer loses
            # its answer and everyone else keeps being served.
            stats.handler_errors += 1
            return
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)
            stats.replied += 1

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for an earlier reply: that client is gone. Nothing to do.
        self._stats.send_dropped += 1


class UdpService(Protocol):
    name: str
    stats: UdpStats

    @property
    def sockname(self) -> Address: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class _TransportService:
    name: str
    transport: asyncio.DatagramTransport
    stats: UdpStats

    @property
    def sockname(self) -> Address:
        return tuple(self.transport.get_extra_info("sockname"))

    def close(self) -> None:
        self.transport.close()


@dataclass(slots=True)
class _DrainedSocketService:
    """A kernel UDP socket drained by a recvfrom loop from ``loop.add_reader``.

    Each readable event handles up to ``batch`` datagrams (bounded, so one
    busy socket cannot starve the rest of the loop) with no per-datagram
    allocation beyond the datagram itself. ``on_batch``, if given, is called
    once before each batch (the time service reads its clocks there).
    """

    name: str
    sock: socket.socket
    handler: Handler
    loop: asyncio.AbstractEventLoop
    recv_size: int
    batch: int = 256
    stats: UdpStats = field(default_factory=UdpStats)
    on_batch: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        self.loop.add_reader(self.sock.fileno(), self._readable)

    @property
    def sockname(self) -> Address:
        return tuple(self.sock.getsockname())

    def _readable(self) -> None:
        recvfrom = self.sock.recvfrom
        sendto = self.sock.sendto
        handler = self.handler
        size = self.recv_size
        stats = self.stats
        received = replied = 0
        if self.on_batch is not None:
            self.on_batch()
        try:
            for _ in range(self.batch):
                try:
                    data, addr = recvfrom(size)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    # e.g. a queued ICMP error surfacing on this socket.
                    stats.send_dropped += 1
                    continue
                received += 1
                try:
                    reply = handler(data, addr)
                except Exception:
                    stats.handler_errors += 1
                    continue
                if reply is not None:
                    try:
                        sendto(reply, addr)
                        replied += 1
                    except OSError:
                        stats.send_dropped += 1
        finally:
            stats.received += received
            stats.replied += replied

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


async def open_udp_service(
    name: str,
    handler: Handler,
    host: str,
    port: int,
    *,
    create_datagram_endpoint: CreateDatagramEndpoint | None = None,
    recv_size: int = 65535,
    on_batch: Callable[[], None] | None = None,
) -> UdpService:
    """Bind ``host:port`` and answer each datagram with ``handler``.

    With ``create_datagram_endpoint`` (e.g. synack's own stack, or
    ``loop.create_datagram_endpoint``) the service is a DatagramProtocol;
    without it, a kernel socket drained from ``add_reader`` (the fast path).
    ``recv_size`` should exceed the largest request the handler accepts, so
    an oversized one is seen as oversized rather than silently truncated.
    ``on_batch`` is called before each batch of datagrams handled together:
    once per readable event on the fast path, once per datagram on a
    DatagramProtocol (a handler may read a clock there rather than per datagram).
    """
    stats = UdpStats()
    if create_datagram_endpoint is not None:
        transport, _ = await create_datagram_endpoint(
            lambda: ReplyProtocol(handler, stats, on_batch), local_addr=(host, port)
        )
        return _TransportService(name, transport, stats)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise UsageError(f"cannot resolve {host!r}")
    family, type_, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setblocking(False)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return _DrainedSocketService(
        name, sock, handler, loop, recv_size, stats=stats, on_batch=on_batch
    )


# --------------------------------------------------------------------------
# The classic services: pure parts


def chargen_line(index: int) -> bytes:
    """RFC 864 line ``index``: 72 printable ASCII characters (95 of them,
    ' '..'~'), each line starting one character further along, then CRLF."""
    start = index % 95
    return bytes(32 + (start + i) % 95 for i in range(72)) + b"\r\n"


# One full rotation (95 lines) repeats forever: precomputed once.
CHARGEN_CYCLE = b"".join(chargen_line(i) for i in range(95))


def daytime_text(unix_time: float) -> bytes:
    """RFC 867 leaves the format open; this is its suggested one."""
    return time.strftime("%A, %B %d, %Y %H:%M:%S-%Z", time.localtime(unix_time)).encode() + b"\r\n"


@dataclass(slots=True)
class UdpClassic:
    """UDP echo, discard, chargen, daytime: one reply per datagram, or none.

    Every reply is rate limited per source host: UDP echo and chargen are
    the textbook reflection amplifiers (a spoofed source makes us flood a
    victim), so a burst beyond the bucket gets silence.
    """

    service: str
    rate: float = 200.0
    burst: float = 400.0
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    rate_limited: int = 0
    refuse_ports: set[int] = field(default_factory=lambda: set(LOOP_PORTS))
    loops_refused: int = 0
    _buckets: TokenBuckets = field(init=False)
    _chargen_pos: int = 0

    def __post_init__(self) -> None:
        if self.service not in SERVICE_NAMES:
            raise ValueError(f"unknown service {self.service!r}")
        self._buckets = TokenBuckets(self.rate, self.burst)

    def __call__(self, data: bytes, addr: Address) -> bytes | None:
        if self.service == "discard":
            return None  # RFC 863: "any received datagram is thrown away"
        if addr[1] in self.refuse_ports:
            self.loops_refused += 1
            return None
        if not self._buckets.allow(str(addr[0]), self.monotonic()):
            self.rate_limited += 1
            return None
        if self.service == "echo":
            return data  # RFC 862: the same size back, never more
        if self.service == "daytime":
            return daytime_text(self.clock())
        # RFC 864 UDP: "a random number of characters between 0 and 512",
        # continuing the rotating pattern where the previous reply stopped.
        n = self.rng.randint(0, 512)
        pos = self._chargen_pos
        doubled = CHARGEN_CYCLE + CHARGEN_CYCLE
        self._chargen_pos = (pos + n) % len(CHARGEN_CYCLE)
        return doubled[pos : pos + n]


# --------------------------------------------------------------------------
# The classic services over streams (TCP)


# How long a closing connection may take to hand its last bytes to a client
# before it is aborted (RST): a client that does not read (a chargen client
# that never reads, say) must not hold the connection, or the server's
# stop, for ever. Servers stop within 2 s of SIGINT/SIGTERM (issue 14).
CLOSE_LINGER = 1.0


async def _close(writer: asyncio.StreamWriter, linger: float = CLOSE_LINGER) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), linger)
    except asyncio.CancelledError:
        writer.transport.abort()
        raise
    except Exception:  # the linger ran out, or the connection was reset
        writer.transport.abort()


@contextlib.asynccontextmanager
async def _session(writer: asyncio.StreamWriter) -> AsyncIterator[None]:
    """One connection of a stream service: a reset, an idle timeout or the
    client's close ends it quietly, and the connection is closed either way."""
    try:
        yield
    except (ConnectionError, OSError, TimeoutError):
        pass
    finally:
        await _close(writer)


# A connection that neither sends nor reads for this long is closed: otherwise a client
# could hold every one of a service's connection slots forever by opening and idling.
IDLE_TIMEOUT = 300.0
# Connections at once from one source host, so that one host cannot take all the slots.
MAX_PER_HOST = 32


async def echo_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, idle: float = IDLE_TIMEOUT
) -> None:
    """RFC 862: send back whatever arrives, until the client closes."""
    async with _session(writer):
        while data := await asyncio.wait_for(reader.read(65536), idle):
            writer.write(data)
            # Back-pressure: a client that does not read stops our reads too,
            # so its data waits in its own socket buffer, not in our memory.
            await asyncio.wait_for(writer.drain(), idle)


async def discard_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, idle: float = IDLE_TIMEOUT
) -> None:
    """RFC 863: read and throw away until the client closes."""
    async with _session(writer):
        while await asyncio.wait_for(reader.read(65536), idle):
            pass


async def chargen_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, idle: float = IDLE_TIMEOUT
) -> None:
    """RFC 864: the rotating 72-character lines, until the client closes.

    Whatever the client sends is read and discarded ("any data received is
    thrown away"); its end of input, or a reset, ends the service.
    """

    async def drain_input() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while await reader.read(65536):
                pass

    reading = asyncio.ensure_future(drain_input())
    async with _session(writer):
        try:
            while not reading.done():
                writer.write(CHARGEN_CYCLE)
                # A client that stops reading (without closing) is idle too.
                await asyncio.wait_for(writer.drain(), idle)
                # drain() does not yield while the transport keeps up; without
                # this a fast reader would let chargen starve the whole loop.
                await asyncio.sleep(0)
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading


async def daytime_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, idle: float = IDLE_TIMEOUT
) -> None:
    """RFC 867: send the date and time as one line, then close."""
    async with _session(writer):
        writer.write(daytime_text(time.time()))
        await asyncio.wait_for(writer.drain(), idle)


class _IdleHandler(Protocol):
    def __call__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, idle: float
    ) -> Awaitable[None]: ...


STREAM_HANDLERS: dict[str, _IdleHandler] = {
    "echo": echo_stream,
    "discard": discard_stream,
    "chargen": chargen_stream,
    "daytime": daytime_stream,
}


def limit_connections(
    handler: StreamHandler, max_connections: int, max_per_host: int | None = None
) -> StreamHandler:
    """Close connections beyond ``max_connections`` at once, or beyond ``max_per_host`` from
    one source host; the others are unaffected."""
    active = 0
    per_host: dict[str, int] = {}

    async def limited(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        mine = per_host.get(host, 0)
        if active >= max_connections or (max_per_host is not None and mine >= max_per_host):
            await _close(writer)
            return
        active += 1
        per_host[host] = mine + 1
        try:
            await handler(reader, writer)
        finally:
            active -= 1
            left = per_host[host] - 1
            if left:
                per_host[host] = left
            else:
                del per_host[host]

    return limited


async def open_tcp_service(
    name: str,
    host: str,
    port: int,
    *,
    start_server: StartServer | None = None,
    max_connections: int = 256,
    max_per_host: int | None = MAX_PER_HOST,
    idle_timeout: float = IDLE_TIMEOUT,
) -> asyncio.AbstractServer:
    """Start the stream service ``name``; ``start_server`` is shaped like
    :func:`asyncio.start_server` (synack's stack provides one)."""
    serve = STREAM_HANDLERS[name]

    async def handler_with_idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve(reader, writer, idle=idle_timeout)

    handler = limit_connections(handler_with_idle, max_connections, max_per_host)
    starter = start_server if start_server is not None else asyncio.start_server
    return await starter(handler, host, port)
