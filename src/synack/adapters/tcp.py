"""TCP on synack's stack for asyncio: a connection is an ``asyncio.Transport``.

:class:`TcpTransport` supports plain ``asyncio.Protocol`` (``data_received``)
and ``asyncio.BufferedProtocol`` (``get_buffer``/``buffer_updated``), write
flow control (``pause_writing``/``resume_writing`` around the high/low water
marks), ``pause_reading`` (which closes the TCP window: real back-pressure on
the peer), ``write_eof`` (half-close) and ``abort`` (RST). So
``asyncio.StreamReader``/``StreamWriter`` work on it unchanged.

The functions on :class:`TcpApi` are shaped like ``loop.create_server``,
``loop.create_connection``, ``asyncio.start_server`` and
``asyncio.open_connection``. tests/streams checks them against the kernel's.

Layer: adapters. Imports synack.adapters (base, oserrors), synack.stack,
synack.tcp, synack.errors.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address
from typing import Any, ClassVar

from synack.adapters.base import Driver, ipv4
from synack.adapters.oserrors import for_event, oserror
from synack.errors import LocalProtocolError
from synack.stack.host import TcpListener, TcpStream
from synack.tcp import events as tev

ProtocolFactory = Callable[[], asyncio.BaseProtocol]
READ_CHUNK = 256 * 1024
# A piece the receive buffer holds whole (a coalesced run of segments: up to
# the window, with offloads several hundred KiB) at least this long goes to
# data_received as it is: read in READ_CHUNK steps it was copied twice over
# (the part handed on, and the rest re-sliced each step), a sixth of an
# offloaded upload's time (py-spy). Smaller pieces are joined up to READ_CHUNK.
WHOLE_PIECE = 64 * 1024
# News a transport acts on only by reading and writing, which it does after
# any news (the commonest events: one per segment of data or ACK).
_READ_WRITE = frozenset({tev.DataAvailable, tev.SendSpaceAvailable})
# str() of an IPv4Address is Python code (~1.5 us) and a web server asks for
# its peer's name on every connection: the text of recent addresses, by int.
_ADDRESS_TEXT: dict[int, str] = {}


def _address_text(n: int, ip: IPv4Address) -> str:
    text = _ADDRESS_TEXT.get(n)
    if text is None:
        if len(_ADDRESS_TEXT) >= 1024:
            _ADDRESS_TEXT.clear()
        text = _ADDRESS_TEXT[n] = str(ip)
    return text


class TcpTransport(asyncio.Transport):
    """One TCP connection of a synack host as an ``asyncio.Transport``.

    Behaves like the kernel socket transport asyncio gives for a connection:
    ``write`` never blocks (what the connection's send buffer cannot take
    waits here, and ``pause_writing`` is called above the high-water mark);
    ``close`` sends what is buffered, then FIN; ``write_eof`` is
    ``shutdown(SHUT_WR)``; a reset, refusal, unreachable host or timeout
    reaches ``connection_lost`` as the OSError the kernel would report
    (:func:`~synack.adapters.oserrors.for_event`). One difference: ``abort``
    always sends RST, where asyncio's on the kernel closes the descriptor
    (FIN unless unread data was pending). Another: a lone short write may
    leave one loop pass later, so that a close or write of that pass joins
    its segment (the one-pass cork, see :meth:`write`). ``get_extra_info``
    knows ``peername``, ``sockname``, ``synack_stream`` and ``synack_host``.
    """

    # A transport's state starts as these class attributes: an instance
    # writes its own only on a change (most of a short connection's never
    # change), so a new connection's transport is made with five stores, not
    # eighteen.
    _high = 64 * 1024
    _low = 16 * 1024
    _write_paused = False
    _reading_paused = False
    _closing = False  # close() called: flush then FIN
    _eof_pending = False  # write_eof() waiting for the buffer to drain
    _eof_sent = False
    _eof_seen = False  # peer FIN received
    _on_lost: Callable[[TcpTransport], None] | None = None  # the accepting server
    _eof_delivered = False
    _lost = False
    _started = False
    _connect_waiter: asyncio.Future[None] | None = None
    _held = False  # a write was held (HostDriver.hold): abort() sends it first
    _corking = True  # off once a held write went out alone (_sent_alone)
    #: On: a lone short write is held one loop pass (see :meth:`write`);
    #: off: every write's segments are made at once (the tests compare).
    cork: ClassVar[bool] = True

    def __init__(self, driver: Driver, stream: TcpStream, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self._driver = driver
        self._stream = stream
        self._protocol = protocol
        self._buffered = isinstance(protocol, asyncio.BufferedProtocol)
        self._wbuf = bytearray()
        stream.owner = self

    # -- wiring ---------------------------------------------------------------
    def _start(self) -> None:
        """connection_made, then anything that arrived already."""
        self._started = True
        try:  # self._call, inline (once per connection)
            self._protocol.connection_made(self)
        except Exception as exc:  # a protocol bug must not stop the host
            self._failed(exc)
        self._activity()

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # a protocol bug must not stop the host
            self._failed(exc)
            return None

    def _failed(self, exc: Exception) -> None:
        self._driver.loop.call_exception_handler(
            {"message": "synack: protocol callback failed", "exception": exc, "transport": self}
        )
        self.abort()

    def _activity(self) -> None:
        stream = self._stream
        pending = stream.pending
        while pending:
            event = pending.popleft()
            if type(event) in _READ_WRITE:
                continue  # the reads and writes below see what they say
            if isinstance(event, tev.Connected):
                w = self._connect_waiter
                if w is not None and not w.done():
                    w.set_result(None)
            elif isinstance(event, tev.EndOfStream):
                self._eof_seen = True
            elif (exc := for_event(event)) is not None:
                self._fail(exc)
            elif isinstance(event, tev.Closed):
                if self._started:
                    self._deliver()
                self._connection_lost(None)
        if self._started and not self._lost:
            self._deliver()
            # _push has something to do only with bytes waiting, writing
            # paused, or a close or write_eof pending (a call saved per read).
            if self._wbuf or self._write_paused or self._closing or self._eof_pending:
                self._push()

    def _fail(self, exc: OSError) -> None:
        w = self._connect_waiter
        if w is not None and not w.done():
            w.set_exception(exc)
            self._lost = True
            return
        self._connection_lost(exc)

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._wbuf.clear()
        # Nothing the host reports about the stream matters to a lost
        # transport: let go of it, so the transport and the stream (with its
        # connection) do not hold each other and are freed by reference
        # counting, not left to the cycle collector (asyncio's transports drop
        # their socket and protocol at connection_lost for the same reason).
        if self._stream.owner is self:
            self._stream.owner = None
        if self._on_lost is not None:
            self._on_lost(self)
        if self._started:
            self._driver.loop.call_soon(self._protocol.connection_lost, exc)

    # -- reading --------------------------------------------------------------
    def _deliver(self) -> None:
        stream = self._stream
        conn = stream.conn
        now = self._driver.now()
        while not self._reading_paused and not self._lost:
            readable = conn.readable_bytes
            if readable == 0:
                break  # (also when the stream is gone)
            if self._buffered:
                proto = self._protocol
                assert isinstance(proto, asyncio.BufferedProtocol)
                buf = self._call(proto.get_buffer, readable)
                if buf is None:
                    return
                mv = memoryview(buf)
                data = stream.receive(len(mv), now)
                n = len(data)
                mv[:n] = data
                self._call(proto.buffer_updated, n)
            else:
                # A first piece of WHOLE_PIECE or more is read whole; with less
                # than that readable it cannot be (a request: no call to ask).
                head = conn.readable_head if readable >= WHOLE_PIECE else 0
                data = stream.receive(head if head >= WHOLE_PIECE else READ_CHUNK, now)
                try:  # self._call, inline (once per read)
                    self._protocol.data_received(data)  # type: ignore[attr-defined]
                except Exception as exc:  # a protocol bug must not stop the host
                    self._failed(exc)
        if (
            self._eof_seen
            and not self._eof_delivered
            and not self._reading_paused
            and not self._lost
            and conn.readable_bytes == 0
        ):
            self._eof_delivered = True
            keep_open = self._call(self._protocol.eof_received)  # type: ignore[attr-defined]
            if not keep_open:
                self.close()
        self._driver.schedule_pump()

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self._driver.loop.call_soon(self._deliver)

    def is_reading(self) -> bool:
        return not self._reading_paused and not self._closing

    # -- writing --------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._eof_pending or self._eof_sent:
            if self._lost:
                return
            raise RuntimeError("write after close() or write_eof()")
        if not data:
            return
        if self._wbuf:
            self._wbuf += data
        elif self._corking and self.cork and (conn := self._stream.conn).sends_alone(len(data)):
            # A one-pass cork, as Linux's autocork: a write that would leave
            # as a lone short segment (a reply) is given to the connection
            # without making its segment, which the driver makes at the
            # latest one loop pass later (HostDriver.hold), so that what the
            # program does next, a close (aiohttp closes one pass after it
            # writes) or more writes, joins it: the reply's FIN rides on its
            # segment, as RFC 9293 §3.10.4 allows (the FIN follows the queued
            # data), and the peer answers both with one FIN+ACK: a frame in
            # and a frame out fewer per connection.
            #
            # TCP_NODELAY (which asyncio sets, and NativeTransport too) is
            # about Nagle (RFC 9293 §3.7.4, MUST-17): not waiting for the
            # peer's ACK before a short segment. This hold waits for no ACK
            # and no timer: the held write leaves before the loop next waits
            # for I/O (a queued callback makes its select poll, not sleep), so
            # data is never buffered indefinitely (MUST-60). asyncio's kernel
            # transport hands a write to send() at once, but this transport's
            # frames already leave at the end of the pass (the pump), and
            # Linux itself, TCP_NODELAY or not, holds a small write back
            # while an earlier packet of the flow is still queued in the host
            # (tcp_autocorking, 3.14+; its hold ends at that packet's TX
            # completion, ours at the next pass). Linux corks only behind a
            # queued packet; here nothing is queued behind which a later
            # write could wait, so the lone write itself is held: only one
            # into an empty send buffer that fits one segment
            # (Tcb.sends_alone). Bulk transfers and anything with data in
            # flight are as before. And only while holding pays: once a held
            # write has gone out alone, nothing of the next pass joining it
            # (a keep-alive server waits for the next request after its
            # reply), this connection's writes are no longer held
            # (_sent_alone), so a long-lived connection pays the extra pass
            # once, not per reply.
            conn.send(data, self._driver.now())  # (it fits: never cut short)
            self._held = True
            self._driver.hold(self._stream)
            return
        else:
            try:
                n = self._stream.send(data, self._driver.now())
            except LocalProtocolError:
                return  # the connection is closing; connection_lost follows
            if n < len(data):
                self._wbuf += memoryview(data)[n:]
        self._driver.schedule_pump()
        if self._wbuf:
            self._check_high()

    def _sent_alone(self) -> None:
        """A held write went out with nothing joined to it (HostDriver's
        release): hold no more of this connection's writes."""
        self._corking = False

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def _push(self) -> None:
        """Move buffered bytes into the connection as send space frees up."""
        if self._wbuf and not self._lost:
            try:
                n = self._stream.send(self._wbuf, self._driver.now())
            except LocalProtocolError:
                n = 0
            if n:
                del self._wbuf[:n]
                self._driver.schedule_pump()
        if self._write_paused and len(self._wbuf) <= self._low:
            self._write_paused = False
            self._call(self._protocol.resume_writing)
        if not self._wbuf and not self._lost:
            if self._closing:
                self._eof_sent = True
                self._stream.close(self._driver.now())
                self._driver.schedule_pump()
                self._connection_lost(None)
            elif self._eof_pending and not self._eof_sent:
                self._eof_sent = True
                self._stream.shutdown_write(self._driver.now())
                self._driver.schedule_pump()

    def _check_high(self) -> None:
        if not self._write_paused and len(self._wbuf) > self._high:
            self._write_paused = True
            self._call(self._protocol.pause_writing)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing or self._eof_pending or self._eof_sent:
            return
        self._eof_pending = True
        self._push()

    def get_write_buffer_size(self) -> int:
        return len(self._wbuf)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._check_high()

    # -- closing --------------------------------------------------------------
    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._reading_paused = True
        if self._lost:
            return
        self._push()

    def abort(self) -> None:
        if not self._lost:
            if self._held and not self._stream.gone:
                # A held write goes first, as it went before the hold was
                # there (its segment, then the RST).
                self._stream.poll(self._driver.now())
            self._stream.abort(self._driver.now())
            self._driver.schedule_pump()
        self._connection_lost(None)

    # -- info -----------------------------------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        s = self._stream
        if name == "peername":
            return (_address_text(s.flow[2], s.key[2]), s.key[3])
        if name == "sockname":
            return (_address_text(s.flow[0], s.key[0]), s.key[1])
        if name == "synack_stream":
            return s
        if name == "synack_host":
            return self._driver.host
        return default

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        self._buffered = isinstance(protocol, asyncio.BufferedProtocol)


class _ListeningSocket:
    """What ``Server.sockets`` holds: enough of a socket to ask its name."""

    family = socket.AF_INET
    type = socket.SOCK_STREAM
    proto = socket.IPPROTO_TCP

    def __init__(self, listener: TcpListener, host_ip: IPv4Address) -> None:
        self._listener = listener
        self._host_ip = host_ip

    def getsockname(self) -> tuple[str, int]:
        ip, port = self._listener.local
        return (str(ip), port)

    def fileno(self) -> int:
        return -1


class TcpServer(asyncio.AbstractServer):
    """A listening TCP port of a synack host, shaped like ``asyncio.Server``.

    ``close``, ``wait_closed``, ``is_serving``, ``serve_forever``, ``sockets``
    (objects that answer ``getsockname``) and ``async with`` behave as
    asyncio's. It always serves from creation (``start_serving`` is a no-op).
    Accepted connections outlive ``close``, as with asyncio; as with asyncio
    since 3.12, ``wait_closed`` returns once the server is closed AND every
    connection it accepted is gone, and ``close_clients``/``abort_clients``
    (3.13) close or abort those connections.
    """

    def __init__(self, driver: Driver, listener: TcpListener, factory: ProtocolFactory) -> None:
        self._driver = driver
        self._listener = listener
        self._factory = factory
        self._closed = asyncio.Event()
        self._transports: set[TcpTransport] = set()  # accepted and not yet lost
        self._drained = asyncio.Event()
        self._drained.set()
        listener.owner = self

    @property
    def sockets(self) -> tuple[_ListeningSocket, ...]:
        if self._listener.closed:
            return ()
        return (_ListeningSocket(self._listener, self._driver.host.ip),)

    def _activity(self) -> None:
        while (stream := self._listener.accept()) is not None:
            protocol = self._factory()
            transport = TcpTransport(self._driver, stream, protocol)
            transport._on_lost = self._forget
            self._transports.add(transport)
            self._drained.clear()
            transport._start()

    def _forget(self, transport: TcpTransport) -> None:
        self._transports.discard(transport)
        if not self._transports:
            self._drained.set()

    def close(self) -> None:
        if not self._listener.closed:
            self._listener.close(self._driver.now())
            self._driver.schedule_pump()
        self._closed.set()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._driver.loop

    def is_serving(self) -> bool:
        return not self._listener.closed

    async def start_serving(self) -> None:
        return None

    async def serve_forever(self) -> None:
        await self._closed.wait()

    async def wait_closed(self) -> None:
        await self._closed.wait()
        await self._drained.wait()

    def close_clients(self) -> None:
        for transport in list(self._transports):
            transport.close()

    def abort_clients(self) -> None:
        for transport in list(self._transports):
            transport.abort()


class TcpApi:
    """The asyncio-shaped TCP functions of one driver's host.

    ``create_server``/``create_connection`` take the arguments of the loop
    methods of those names and ``start_server``/``open_connection`` those of
    the ``asyncio`` functions (keywords synack has no use for, such as
    ``reuse_address`` or ``ssl=None``, are accepted and ignored). Addresses
    are IPv4 literals or ``localhost``: there is no resolver. A host-level
    refusal (port in use, no route) raises the OSError the kernel would.
    """

    def __init__(self, driver: Driver) -> None:
        self.driver = driver

    def _ip(self, host: str | None) -> IPv4Address:
        if (ip := ipv4(host)) is None:
            raise OSError(errno.EINVAL, f"not an IPv4 address: {host!r}")
        return ip

    async def create_server(
        self,
        protocol_factory: ProtocolFactory,
        host: str | None = None,
        port: int = 0,
        *,
        backlog: int = 100,
        start_serving: bool = True,
        **_kw: Any,
    ) -> TcpServer:
        try:
            listener = self.driver.host.tcp_listen(port or 0, self._ip(host), backlog=backlog)
        except LocalProtocolError as exc:
            raise oserror(exc) from None
        return TcpServer(self.driver, listener, protocol_factory)

    async def create_connection(
        self,
        protocol_factory: ProtocolFactory,
        host: str | None = None,
        port: int | None = None,
        *,
        local_addr: tuple[str, int] | None = None,
        **_kw: Any,
    ) -> tuple[TcpTransport, asyncio.BaseProtocol]:
        if host is None or port is None:
            raise ValueError("host and port are required")
        driver = self.driver
        local = None
        if local_addr is not None:
            local = (self._ip(local_addr[0]), local_addr[1])
        try:
            stream = driver.host.tcp_connect((self._ip(host), int(port)), driver.now(), local=local)
        except LocalProtocolError as exc:
            raise oserror(exc) from None
        protocol = protocol_factory()
        transport = TcpTransport(driver, stream, protocol)
        waiter: asyncio.Future[None] = driver.loop.create_future()
        transport._connect_waiter = waiter
        driver.pump()
        transport._activity()
        try:
            await waiter
        except asyncio.CancelledError:
            transport.abort()
            raise
        transport._connect_waiter = None
        transport._start()
        return transport, protocol

    async def start_server(
        self,
        client_connected_cb: Callable[
            [asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None
        ],
        host: str | None = None,
        port: int = 0,
        *,
        limit: int = 2**16,
        **kw: Any,
    ) -> TcpServer:
        loop = self.driver.loop

        def factory() -> asyncio.BaseProtocol:
            reader = asyncio.StreamReader(limit=limit, loop=loop)
            return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

        return await self.create_server(factory, host, port, **kw)

    async def open_connection(
        self, host: str | None = None, port: int | None = None, *, limit: int = 2**16, **kw: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = self.driver.loop
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await self.create_connection(lambda: protocol, host, port, **kw)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        return reader, writer
