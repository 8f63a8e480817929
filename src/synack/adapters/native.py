"""synack's own TCP for a program's hosting loop: ``create_server`` without socketpairs.

While a :class:`~synack.adapters.loopthread.HostingLoop` holds the hosts, a
listening socket it makes with ``loop.create_server`` (so also
``asyncio.start_server``, aiohttp's and websockets' servers) for AF_INET,
without ``ssl`` or ``sock``, is a listener of synack's own
(:class:`~synack.adapters.tcp.TcpServer`) whose connections are
:class:`~synack.adapters.tcp.TcpTransport`\\ s: the program's protocol calls
synack's TCP directly, with no socketpair between them (whose four system calls
were a third of a keep-alive request's time, see bench/stack_apps.py).
Anything else (a client's ``create_connection``, ``sock=``, TLS, a loop that
does not hold the hosts) stays on the socketpair sockets of
:mod:`synack.adapters.patch`.

Such a transport belongs to its loop. Host news for it while the loop is not
running (the stack thread drives the host then) waits for that loop's next
turn (``HostLoop.defer``); and the loop, once it has made one, runs only while
it holds the hosts (``HostingLoop.must_hold``: it waits for another loop to
let go of them), since its transports touch the host. ``loop.sendfile`` on
one writes the file as the connection takes it, read inline on the loop (or
in the executor, for a file-like object without a descriptor).

Layer: adapters. Imports synack.adapters (base, bridge, driver, loopthread, oserrors, tcp),
synack.stack, synack.tcp, synack.errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import mmap
import os
import socket as _std
import stat
import sys
import weakref
from collections.abc import Callable
from typing import Any

from synack.adapters.base import ipv4
from synack.adapters.bridge import served
from synack.adapters.driver import HostDriver
from synack.adapters.loopthread import HostingLoop, LoopThread
from synack.adapters.oserrors import oserror
from synack.adapters.tcp import ProtocolFactory, TcpServer, TcpTransport
from synack.errors import LocalProtocolError
from synack.stack.host import ANY, Host, TcpStream
from synack.tcp.buffers import Lender, Lent
from synack.tcp.config import TcpConfig

# Servers made natively and not closed: the end-of-program lifecycle closes
# their listeners with the rest (synack.adapters.patch.close_all).
servers: set[NativeServer] = set()


class _LoopView:
    """The driver as a native transport sees it: the host's driver, with the
    program's loop as its loop (the transport's own callbacks run there)."""

    def __init__(
        self,
        driver: HostDriver,
        loop: asyncio.AbstractEventLoop,
        owner: Callable[[], asyncio.AbstractEventLoop | None],
    ) -> None:
        self._driver = driver
        self.loop = loop
        self.host: Host = driver.host
        # The driver's own methods (asked on every read and write): one call less.
        self.now: Callable[[], float] = driver.now
        self.pump: Callable[[], None] = driver.pump
        self.schedule_pump: Callable[[], None] = driver.schedule_pump
        self.hold: Callable[[TcpStream], None] = driver.hold
        # Who holds the hosts (the runtime's HostLoop.owner), asked on every news.
        self.owner = owner


class NativeTransport(TcpTransport):
    """A TcpTransport of a hosting loop: its host news waits for that loop."""

    def __init__(
        self, view: _LoopView, stream: TcpStream, protocol: asyncio.BaseProtocol, rt: LoopThread
    ) -> None:
        super().__init__(view, stream, protocol)
        # asyncio sets TCP_NODELAY on every TCP socket transport it makes (and
        # did on the socketpair sockets here): the same for these.
        cfg = stream.conn.config
        if not cfg.nodelay:
            stream.conn.config = _nodelay(cfg)
        self._rt = rt
        self._home = view.loop
        self._owner = view.owner  # who holds the hosts (asked on every news)

    _waiting = False  # (a class attribute until news first waits, as TcpTransport's state)
    _shrank = False  # a lent file shrank under a sendfile (_lent_failed)

    def _activity(self) -> None:
        if self._owner() is self._home:
            self._waiting = False
            TcpTransport._activity(self)
        elif not self._waiting:
            self._waiting = True
            self._rt.host_loop.defer(self._home, self._activity)

    def abort(self) -> None:
        """As asyncio's on a kernel socket, which closes the descriptor: the peer
        reads a FIN, or a RST if data it sent is still unread (Linux, RFC 9293
        §3.6 SHLD-3); what this transport had buffered is dropped. (The plain
        TcpTransport's abort always resets.)"""
        s = self._stream
        if self._lost or s.gone or s.conn.readable_bytes:
            super().abort()
            return
        self._wbuf.clear()
        try:
            s.close(self._driver.now())
        except LocalProtocolError:
            pass  # already closing (write_eof, close): the FIN is on its way
        self._driver.schedule_pump()
        self._connection_lost(None)

    async def send_file(self, file: Any, offset: int, count: int | None) -> int:
        """``loop.sendfile`` on this transport: the file's bytes written as
        the connection takes them, reading paused meanwhile, as asyncio does.

        A regular file is read on the loop's own thread with ``os.pread`` (as
        asyncio's own sendfile does with ``os.sendfile``, which also reads the
        page cache inline): an executor read costs a thread hop and the GIL
        passed back and forth per block, and left the loop idle in select
        between blocks. Each read is as large as the connection's send buffer
        has room for (at least ``_MIN_BLOCK``: what does not fit waits in the
        transport, whose pause says when to read on), so a block is copied
        once, into the send buffer; over a link that completes checksums
        (``--offload``), not even that: it is lent as mapped pages
        (``_FileSource``). Anything else (no descriptor, not a regular file)
        is read in blocks in the executor."""
        if self.is_closing():
            raise RuntimeError("Transport is closing")
        if offset:
            file.seek(offset)
        fd = _regular_fd(file)
        original = self._protocol
        drainer = _Drainer(original, self._home, self._write_paused)
        resume = self.is_reading()
        self.pause_reading()
        self.set_protocol(drainer)
        try:
            if fd is None:
                return await self._send_blocks(file, offset, count, drainer)
            return await self._send_pread(file, fd, count, drainer)
        finally:
            self.set_protocol(original)
            if resume and not self.is_closing():
                self.resume_reading()

    async def _send_pread(self, file: Any, fd: int, count: int | None, drainer: _Drainer) -> int:
        start = pos = int(file.tell())
        end = None if count is None else start + count
        conn = self._stream.conn
        # Woken for the next block once half the send buffer is free: one
        # large read and write per wake-up, not one per ACK, and the
        # super-segments rarely straddle two blocks (each such is joined, a
        # copy). Half, not a quarter: 1.5 MiB blocks on a real link (3 MiB
        # buffer) took ~7% less CPU per MB of an offloaded 100 MB download
        # than 768 KiB ones, at the same rate (prof-dl2 abcpu2.sh, 9 pairs).
        conn.set_send_lowat(min(conn.config.send_buffer // 2, _MAX_BLOCK))
        # Zero-copy (see _FileSource) where the link completes the checksums
        # (a TAP with offloads): then nothing in user space needs the octets.
        source = _FileSource.open(fd, self) if self._driver.host.tcp.output.tso else None
        try:
            while True:
                await drainer.drain()
                size = min(max(conn.send_space, _MIN_BLOCK), _MAX_BLOCK)
                if end is not None and end - pos < size:
                    size = end - pos
                    if size <= 0:
                        break
                block: bytes | Lent | None = None
                if source is not None:
                    block = source.lend(pos, size)
                    if block is None:
                        source = None  # not mappable (or too small): read from here on
                if block is None:
                    block = os.pread(fd, size, pos)
                if not block:
                    break  # the file's end
                await self._send_block(block, drainer)
                pos += len(block)
            await drainer.drain()  # no pause left pending for the program's protocol
            return pos - start
        finally:
            conn.set_send_lowat(1)
            file.seek(pos)  # where reading the bytes sent would have left it

    async def _send_block(self, block: bytes | Lent, drainer: _Drainer) -> None:
        """``write(block)``, but the part the connection cannot take yet waits
        here as a view of ``block`` (which the send buffer then keeps as a
        view too), not copied into the write buffer and copied again out of
        it: the drainer is paused as at the high-water mark, and ``_push``
        resumes it when an ACK frees room (SendSpaceAvailable). With anything
        buffered before it, or a closing transport, it is ``write``'s (a
        lent block's octets then its lender's copy: the write buffer is
        read in user space)."""
        view: memoryview | Lent = block if type(block) is Lent else memoryview(block)
        stream = self._stream
        while True:
            if self._wbuf or self._closing or self._eof_pending or self._eof_sent:
                self.write(bytes(view) if type(view) is Lent else view)
                return
            try:
                n = stream.send(view, self._driver.now())
            except LocalProtocolError:
                return  # the connection is closing; connection_lost follows (as write)
            self._driver.schedule_pump()
            if n >= len(view):
                return
            view = view[n:]
            self._write_paused = True
            drainer.pause_writing()
            await drainer.drain()

    def _lent_failed(self, exc: OSError) -> None:
        """The kernel could not copy a lent block (or a copy of it came
        short): the file shrank while being sent. The octets promised can no
        longer be sent, so the connection is reset (the peer learns the body
        is cut, rather than waiting for octets that never come, as after a
        kernel sendfile of a shrunk file) and the program told: the
        sendfile raises, and connection_lost gets, an OSError saying so. Also
        once the program has let go of the transport (closed, the octets
        still draining): the connection would otherwise resend what the
        kernel refuses until it times out."""
        if self._shrank:
            return  # (each refused frame tells; once is enough)
        self._shrank = True
        self._driver.host.counters["tcp-sendfile-shrank"] += 1
        if not self._stream.gone:
            self._stream.abort(self._driver.now())
            self._driver.schedule_pump()
        self._connection_lost(
            OSError(errno.EIO, f"sendfile: the file shrank while being sent ({exc.strerror})")
        )

    async def _send_blocks(
        self, file: Any, offset: int, count: int | None, drainer: _Drainer
    ) -> int:
        """The executor way: each block written once the previous ones have
        drained, the next read while this one drains."""
        loop = self._home
        total = 0

        def read_from(done: int) -> tuple[asyncio.Future[bytes] | None, int]:
            size = _BLOCK if count is None else min(_BLOCK, count - done)
            if size <= 0:
                return None, 0
            return loop.run_in_executor(None, file.read, size), size

        pending, asked = read_from(0)
        try:
            while pending is not None:
                block = await pending
                pending = None
                if not block:
                    break
                if len(block) == asked:  # a short read is the file's end
                    pending, asked = read_from(total + len(block))
                await drainer.drain()
                self.write(block)
                total += len(block)
            await drainer.drain()  # no pause left pending for the program's protocol
            return total
        finally:
            if pending is not None:  # a read ahead still moves the file's position
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await pending
            if total and hasattr(file, "seek"):
                file.seek(offset + total)


def _regular_fd(file: Any) -> int | None:
    """``file``'s descriptor if it is a regular file (``os.pread`` works), else None."""
    try:
        fd = file.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None


class _FileSource:
    """The regular file a zero-copy ``sendfile`` lends the send buffer.

    Blocks are lent from windows of the file mapped read-only (``_Window``,
    a :class:`~synack.tcp.buffers.Lender`; ``_WINDOW`` octets or the rest
    of the file, only what is being sent): the send buffer holds each block
    as a ``Lent`` piece and the TAP's gather write copies it from the page
    cache into the frame (once; ``os.pread`` copied it into a bytes object
    first, 19% of the samples of an offloaded download). A window is
    unmapped when its last reference goes: its octets acknowledged and
    dropped from the send buffer, and no segment on the way out holding it.

    What guarantees that user space never reads a mapped page (whose read,
    past a file truncated meanwhile, is SIGBUS and kills the process): a
    ``Lent`` is no buffer (nothing can take its bytes by accident), its
    ``bytes()`` is :meth:`_Window.read`, an ``os.pread`` of the file (zeros
    past its end, and the connection reset), and its mapped memory is
    reached only by ``kernel_views``, which only links/tap.py calls, for a
    write system call (a kernel copy from a page past the end fails with
    EFAULT). Every user-space use of a payload in the stack (checksums in
    software, slow paths, coalescing, traces and captures, the write
    buffer) goes through ``bytes()`` (stack/tcp_output.py ``_owned``).
    """

    __slots__ = ("fd", "loop", "transport", "window")

    def __init__(self, fd: int, transport: NativeTransport) -> None:
        self.fd = fd  # a duplicate: the program may close its file before the windows go
        # Weak: the send buffer holds the windows, which hold this; a strong
        # reference back to the transport (and its connection) is a cycle.
        self.transport = weakref.ref(transport)
        self.loop = transport._home
        self.window: _Window | None = None  # the one blocks are lent from

    @classmethod
    def open(cls, fd: int, transport: NativeTransport) -> _FileSource | None:
        try:
            return cls(os.dup(fd), transport)
        except OSError:
            return None

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def lend(self, pos: int, size: int) -> Lent | bytes | None:
        """Up to ``size`` octets from ``pos`` as a Lent piece of the
        current window, or of a new one (``_WINDOW`` octets, or the file's
        rest); b"" at the file's end; None when a window cannot be had
        (less than a page left, or a file that cannot be mapped): the
        caller reads instead. Blocks of one window are contiguous pieces of
        one lender, which the send buffer keeps as one (SendBuffer.append):
        a segment then straddles two pieces (and is copied) once per window,
        not once per block."""
        try:
            left = os.fstat(self.fd).st_size - pos
        except OSError:
            return None
        if left <= 0:
            return b""
        size = min(size, left)
        window = self.window
        if window is not None and window.pos <= pos < window.end:
            # The window's rest at most (a new window from here would map
            # that rest a second time).
            return window.lend(pos - window.pos, min(size, window.end - pos))
        if size < mmap.PAGESIZE:
            return None  # a page's mapping costs more than the copy it saves
        base = pos - pos % mmap.ALLOCATIONGRANULARITY
        length = min(max(size, _WINDOW), left) + pos - base
        try:
            mapped = mmap.mmap(self.fd, length, prot=mmap.PROT_READ, offset=base)
        except (OSError, ValueError):
            return None
        self.window = window = _Window(self, mapped, pos, pos - base, base + length)
        return window.lend(0, size)

    def failed(self, exc: OSError) -> None:
        """A window's octets could not be had (see _Window): on the
        transport's loop (this may run in a link's write, on any thread)."""
        transport = self.transport()
        if transport is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing left to tell
                self.loop.call_soon_threadsafe(transport._lent_failed, exc)


class _Window(Lender):
    """A mapped window of a file: ``pos`` is its first octet's place in
    the file, ``skip`` its place in ``mapped`` (mapped from an aligned
    offset). See _FileSource for why it is never read in Python."""

    __slots__ = ("end", "mapped", "pos", "skip", "source")

    def __init__(
        self, source: _FileSource, mapped: mmap.mmap, pos: int, skip: int, end: int
    ) -> None:
        self.source = source
        self.mapped = mapped
        self.pos = pos
        self.skip = skip
        self.end = end  # the file position after its last octet

    def lend(self, start: int, n: int) -> Lent:
        """``n`` octets from ``start`` as a Lent, their pages mapped in now
        (MADV_POPULATE_READ: one system call, the page cache's pages, read
        from the disk if need be, as os.pread would), not faulted in 16 at a
        time by the TAP write's copy. Never a read in user space: a page the
        file no longer has fails the call (ignored; the write then fails)."""
        if _POPULATE_READ:
            first = self.skip + start
            aligned = first - first % mmap.PAGESIZE
            with contextlib.suppress(OSError, ValueError):
                self.mapped.madvise(_POPULATE_READ, aligned, first + n - aligned)
        return Lent(self, start, n)

    def read(self, start: int, n: int) -> bytes:
        data = os.pread(self.source.fd, n, self.pos + start)
        if len(data) < n:
            # The file shrank: the octets promised are gone. Zeros keep the
            # frame well formed; the connection is reset (_lent_failed).
            self.source.failed(OSError(errno.EFAULT, "the file ends before the octets sent"))
            data += bytes(n - len(data))
        return data

    def kernel_views(self, start: int, n: int) -> tuple[memoryview]:
        at = self.skip + start
        return (memoryview(self.mapped)[at : at + n],)

    def refused(self, exc: OSError) -> None:
        self.source.failed(exc)


# madvise's MADV_POPULATE_READ (Linux 5.14; Python names it from 3.13 on):
# a lent block's pages mapped in one call (_Window.lend). 0: not Linux.
_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22 if sys.platform == "linux" else 0)
# A window's size: blocks (up to _MAX_BLOCK) are lent from it until it is
# used up. Mapped, not copied: its pages are the page cache's.
_WINDOW = 8 * 1024 * 1024
_BLOCK = 256 * 1024  # the executor way
# The inline way: a read never smaller (a connection whose buffer is full
# then pauses the writer), nor larger than the link buffer (stack/config.py).
_MIN_BLOCK = 64 * 1024
_MAX_BLOCK = 2 * 1024 * 1024
_NODELAY: dict[int, tuple[TcpConfig, TcpConfig]] = {}  # id(config) -> (config, with nodelay)


def _nodelay(cfg: TcpConfig) -> TcpConfig:
    made = _NODELAY.get(id(cfg))
    if made is None or made[0] is not cfg:
        if len(_NODELAY) >= 64:
            _NODELAY.clear()
        made = _NODELAY[id(cfg)] = (cfg, dataclasses.replace(cfg, nodelay=True))
    return made[1]


class _Drainer(asyncio.Protocol):
    """A native transport's protocol while it sends a file: write flow control
    for the sender; the rest goes to the program's protocol."""

    def __init__(
        self, protocol: asyncio.BaseProtocol, loop: asyncio.AbstractEventLoop, paused: bool
    ) -> None:
        self.protocol = protocol
        self.loop = loop
        self.paused = paused
        self.lost: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionError("Connection closed by peer")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)
        self.protocol.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.protocol.data_received(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        return self.protocol.eof_received()  # type: ignore[attr-defined,no-any-return]

    async def drain(self) -> None:
        if self.lost is not None:
            raise self.lost
        if self.paused:
            self.waiter = self.loop.create_future()
            await self.waiter


class NativeServer(TcpServer):
    """A TcpServer of a hosting loop: accepts into NativeTransports, on that loop."""

    def __init__(
        self, view: _LoopView, listener: Any, factory: ProtocolFactory, rt: LoopThread
    ) -> None:
        super().__init__(view, listener, factory)
        self._view = view
        self._rt = rt
        self._waiting = False

    def _activity(self) -> None:
        home = self._view.loop
        if self._rt.host_loop.owner() is not home:
            if not self._waiting:
                self._waiting = True
                self._rt.host_loop.defer(home, self._activity)
            return
        self._waiting = False
        while (stream := self._listener.accept()) is not None:
            transport = NativeTransport(self._view, stream, self._factory(), self._rt)
            transport._on_lost = self._forget
            self._transports.add(transport)
            self._drained.clear()
            transport._start()

    def close(self) -> None:
        servers.discard(self)
        super().close()


def close_listeners(driver: HostDriver) -> None:
    """On the owning thread, at the end of the program: the native listeners'
    ports close (later SYNs get RST)."""
    now = driver.now()
    for server in list(servers):
        if server._view._driver is driver:
            servers.discard(server)
            if not server._listener.closed:
                server._listener.close(now)


class NativeLoop(HostingLoop):
    """A HostingLoop whose ``create_server`` is synack's own while it holds the hosts."""

    def __init__(self, runtime: LoopThread, driver: HostDriver) -> None:
        super().__init__(runtime)
        self.synack_driver = driver

    async def sendfile(
        self,
        transport: asyncio.WriteTransport,
        file: Any,
        offset: int = 0,
        count: int | None = None,
        *,
        fallback: bool = True,
    ) -> int:
        if isinstance(transport, NativeTransport):
            return await transport.send_file(file, offset, count)
        return await super().sendfile(transport, file, offset, count, fallback=fallback)

    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: ProtocolFactory,
        host: Any = None,
        port: Any = None,
        *,
        family: int = 0,
        sock: Any = None,
        backlog: int = 100,
        ssl: Any = None,
        **kw: Any,
    ) -> asyncio.AbstractServer:
        rt = self.synack_runtime
        driver = self.synack_driver
        ip = ipv4(host) if host is None or isinstance(host, str) else None
        if (
            ip is None
            or sock is not None
            or ssl is not None
            or family not in (0, _std.AF_INET)
            or not isinstance(port, int | None)
            or rt.host_loop.owner() is not self
            or driver.closed
        ):
            return await super().create_server(
                protocol_factory, host, port, family=family, sock=sock, backlog=backlog, ssl=ssl,
                **kw,
            )  # fmt: skip
        if ip not in (ANY, driver.host.ip) and not ip.is_loopback:
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        try:
            # Its connections get TCP_NODELAY from the start (NativeTransport
            # sets it on each otherwise): nothing is sent before accept.
            listener = driver.host.tcp_listen(
                port or 0,
                ip,
                backlog=max(1, min(backlog, 4096)),
                config=_nodelay(driver.host.tcp_config),
            )
        except LocalProtocolError as exc:
            raise oserror(exc) from None
        self.must_hold = True
        served.add(driver)  # its port answers RST through the exit linger
        server = NativeServer(
            _LoopView(driver, self, rt.host_loop.owner), listener, protocol_factory, rt
        )
        servers.add(server)
        return server
