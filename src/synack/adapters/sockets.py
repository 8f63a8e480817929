"""A blocking socket API over synack's stack, shaped like the ``socket`` module.

A :class:`Runtime` runs hosts in an asyncio loop on a background thread (or,
while a program's :class:`~synack.adapters.loopthread.HostingLoop` runs, in
that loop);
``Runtime.add_host(host, link)`` starts one and returns its
:class:`SocketModule`, a namespace that looks like the standard ``socket``
module (``socket()``, ``AF_INET``, ``SOCK_STREAM``, ``timeout``,
``create_connection`` ...). A program written for ``socket`` runs on synack's
stack when its ``import socket`` becomes ``socket = runtime.add_host(host,
link)``, or, for a program that can only change its import line,
``from synack.adapters.sockets import default_module as socket`` once its
runner has called :func:`set_default` with that module.

Every socket call runs its piece of work on the thread that drives the host
(``Runtime.call``) and waits on a condition for the host's news, so the
sans-IO host is only ever touched by one thread. tests/streams checks these
sockets against the kernel's.

Layer: adapters. Imports synack.adapters (base, driver, loopthread, oserrors), synack.links,
synack.stack, synack.tcp, synack.errors.
"""

from __future__ import annotations

import dataclasses
import errno
import socket as _std
import struct
import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any, TypeVar

from synack.adapters.base import ipv4
from synack.adapters.driver import HostDriver
from synack.adapters.loopthread import LoopThread
from synack.adapters.oserrors import for_event, from_errno, oserror
from synack.errors import LocalProtocolError
from synack.links.base import Link
from synack.stack.host import ANY, Host, TcpListener, TcpStream, UdpEndpoint
from synack.tcp import events as tev

T = TypeVar("T")
_LINGER = struct.Struct("ii")  # struct linger {int l_onoff; int l_linger;}
_Addr = tuple[str, int]


class Runtime(LoopThread):
    """An asyncio loop on a daemon thread that drives synack hosts: the
    stand-in for the kernel behind a :class:`SocketModule`.

    ``add_host(host, link)`` starts a :class:`~synack.adapters.driver.HostDriver`
    for ``host`` on ``host_loop`` (whichever loop drives the hosts) and returns the host's :class:`SocketModule`;
    several hosts (on one ``MemoryHub``, say) may share one runtime. ``close``
    (or leaving ``with``) stops every host; sockets still blocked then raise
    EBADF, as calls on a closed descriptor do. ``call`` and ``post`` run work
    on the thread that drives the hosts (synack.adapters.loopthread).
    """

    def __init__(self) -> None:
        super().__init__()
        self.drivers: list[HostDriver] = []

    def add_host(self, host: Host, link: Link) -> SocketModule:
        def start() -> HostDriver:
            d = HostDriver(host, link, loop=self.host_loop)
            d.start()
            return d

        driver = self.call(start, timeout=10)
        self.drivers.append(driver)
        return SocketModule(self, driver)

    def close(self) -> None:
        if not self.loop.is_running():
            return
        for d in self.drivers:
            self.call(d.close)
        super().close()  # blocked sockets notice within a second and raise EBADF

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SocketModule:
    """The ``socket`` module's shape, for one synack host.

    The constants are the stdlib's own values; ``socket()``,
    ``create_connection``, ``create_server``, ``getaddrinfo``,
    ``gethostbyname``, ``setdefaulttimeout`` and friends behave as the
    module's functions do, for AF_INET with SOCK_STREAM or SOCK_DGRAM only.
    Names resolve only as IPv4 literals and ``localhost`` (anything else is a
    ``gaierror``); ``timeout`` and ``error`` are ``TimeoutError`` and
    ``OSError``, as in the stdlib.
    """

    AF_INET = _std.AF_INET
    SOCK_STREAM = _std.SOCK_STREAM
    SOCK_DGRAM = _std.SOCK_DGRAM
    SOL_SOCKET = _std.SOL_SOCKET
    SO_REUSEADDR = _std.SO_REUSEADDR
    SO_REUSEPORT = getattr(_std, "SO_REUSEPORT", 15)
    SO_KEEPALIVE = _std.SO_KEEPALIVE
    SO_RCVBUF = _std.SO_RCVBUF
    SO_SNDBUF = _std.SO_SNDBUF
    SO_ERROR = _std.SO_ERROR
    SO_LINGER = _std.SO_LINGER
    IPPROTO_TCP = _std.IPPROTO_TCP
    IPPROTO_UDP = _std.IPPROTO_UDP
    TCP_NODELAY = _std.TCP_NODELAY
    TCP_KEEPIDLE = getattr(_std, "TCP_KEEPIDLE", 4)
    TCP_KEEPINTVL = getattr(_std, "TCP_KEEPINTVL", 5)
    TCP_KEEPCNT = getattr(_std, "TCP_KEEPCNT", 6)
    # TCP Fast Open (RFC 7413), the Linux way: a listener's queue length, a
    # connect() whose SYN waits for the first send(), sendto() that connects.
    TCP_FASTOPEN = getattr(_std, "TCP_FASTOPEN", 23)
    TCP_FASTOPEN_CONNECT = getattr(_std, "TCP_FASTOPEN_CONNECT", 30)
    MSG_FASTOPEN = getattr(_std, "MSG_FASTOPEN", 0x20000000)
    SHUT_RD = _std.SHUT_RD
    SHUT_WR = _std.SHUT_WR
    SHUT_RDWR = _std.SHUT_RDWR
    timeout = TimeoutError
    error = OSError
    gaierror = _std.gaierror
    herror = _std.herror

    def __init__(self, runtime: Runtime, driver: HostDriver) -> None:
        self.runtime = runtime
        self.driver = driver
        self.host = driver.host
        self._default_timeout: float | None = None

    def socket(
        self, family: int = _std.AF_INET, type: int = _std.SOCK_STREAM, proto: int = 0
    ) -> SynackSocket:
        if family != _std.AF_INET:
            raise OSError(errno.EAFNOSUPPORT, "synack's stack speaks IPv4 only (AF_INET)")
        if type not in (_std.SOCK_STREAM, _std.SOCK_DGRAM):
            raise OSError(errno.ESOCKTNOSUPPORT, "SOCK_STREAM or SOCK_DGRAM only")
        s = SynackSocket(self, type)
        s.settimeout(self._default_timeout)
        return s

    def create_connection(
        self, address: _Addr, timeout: float | None = None, source_address: _Addr | None = None
    ) -> SynackSocket:
        s = self.socket()
        if timeout is not None:
            s.settimeout(timeout)
        if source_address is not None:
            s.bind(source_address)
        try:
            s.connect(address)
        except BaseException:
            s.close()
            raise
        return s

    def create_server(
        self, address: _Addr, *, backlog: int | None = None, reuse_port: bool = False, **_kw: Any
    ) -> SynackSocket:
        s = self.socket()
        s.bind(address)
        s.listen(backlog if backlog is not None else 128)
        return s

    def getdefaulttimeout(self) -> float | None:
        return self._default_timeout

    def setdefaulttimeout(self, timeout: float | None) -> None:
        self._default_timeout = timeout

    def gethostname(self) -> str:
        return self.host.name

    def gethostbyname(self, name: str) -> str:
        """IPv4 literals and ``localhost`` only: synack's stack has no resolver."""
        return str(_ip(name))

    def getaddrinfo(
        self,
        host: str | None,
        port: int | str | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[tuple[int, int, int, str, _Addr]]:
        if family not in (0, _std.AF_INET):
            raise _std.gaierror(_std.EAI_FAMILY, "synack's stack speaks IPv4 only")
        ip = "0.0.0.0" if host is None else self.gethostbyname(host)
        try:
            p = int(port or 0)
        except ValueError:
            raise _std.gaierror(_std.EAI_SERVICE, f"numeric ports only: {port!r}") from None
        types = [type] if type else [_std.SOCK_STREAM, _std.SOCK_DGRAM]
        out: list[tuple[int, int, int, str, _Addr]] = []
        for t in types:
            pr = _std.IPPROTO_TCP if t == _std.SOCK_STREAM else _std.IPPROTO_UDP
            out.append((_std.AF_INET, t, pr, "", (ip, p)))
        return out

    inet_aton = staticmethod(_std.inet_aton)
    inet_ntoa = staticmethod(_std.inet_ntoa)
    htons = staticmethod(_std.htons)
    ntohs = staticmethod(_std.ntohs)


def _ip(host: str) -> IPv4Address:
    if (ip := ipv4(host)) is None:
        raise _std.gaierror(_std.EAI_NONAME, f"synack resolves IPv4 literals only: {host!r}")
    return ip


class SynackSocket:
    """One socket on a synack host (TCP or UDP), shaped like ``socket.socket``.

    Blocking by default; ``settimeout``/``setblocking`` behave as the stdlib's
    (``TimeoutError``, ``BlockingIOError``). Errors are the kernel's: a reset
    is raised once (``ConnectionResetError``), then ``recv`` reads EOF and
    ``send`` raises ``BrokenPipeError``; calls on a closed socket raise EBADF.
    ``SO_LINGER`` with a zero time makes ``close`` send RST; ``close`` with
    unread data also resets the peer (RFC 9293 SHLD-3), like Linux. Where it
    differs from a kernel socket: there is no descriptor (``fileno`` is -1, so
    no ``select``), ``close`` or ``shutdown(SHUT_RD)`` wakes calls blocked in
    other threads (Linux leaves a ``recv`` blocked in another thread blocked
    on ``close``), and only the options the stack implements take effect
    (Nagle, keep-alive, buffer sizes, linger).
    """

    def __init__(self, module: SocketModule, type_: int) -> None:
        self._m = module
        self._rt = module.runtime
        self._d = module.driver
        self.type = type_
        self.family = _std.AF_INET
        self.proto = 0
        self._timeout: float | None = None
        self._cond = threading.Condition()
        self._gen = 0
        self._bound: tuple[IPv4Address, int] | None = None
        self._stream: TcpStream | None = None
        self._listener: TcpListener | None = None
        self._endpoint: UdpEndpoint | None = None
        self._eof = False
        self._error: OSError | None = None
        self._connected = False
        self._closed = False
        self._shut_rd = False
        self._opts: dict[tuple[int, int], int] = {}
        self._linger: tuple[int, int] = (0, 0)  # SO_LINGER (l_onoff, l_linger)

    # -- plumbing ---------------------------------------------------------------
    def _activity(self) -> None:
        """On the loop thread: the host has news for this socket."""
        self._drain()
        self._wake()

    def _wake(self) -> None:
        """Let every call blocked on this socket look again."""
        with self._cond:
            self._gen += 1
            self._cond.notify_all()

    def _take_error(self) -> OSError | None:
        """The pending error, reported once (the kernel's ``sock_error``):
        after a reset has been raised, recv reads EOF and send EPIPE."""
        err, self._error = self._error, None
        return err

    def _drain_then(self, attempt: Callable[[], T | None]) -> T | None:
        self._drain()
        return attempt()

    def _drain(self) -> None:
        """On the loop thread: take the connection's events into our flags."""
        s = self._stream
        if s is not None:
            while s.pending:
                e = s.pending.popleft()
                if isinstance(e, tev.Connected):
                    self._connected = True
                elif isinstance(e, tev.EndOfStream):
                    self._eof = True
                elif (exc := for_event(e)) is not None:
                    self._error = exc

    def _wait(self, attempt: Callable[[], T | None], what: str) -> T:
        """Retry ``attempt`` (on the loop thread) until it returns non-None,
        waiting for host news in between; honours the socket timeout."""
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            with self._cond:
                gen = self._gen
            self._check_open()  # closed by another thread while we waited
            result = self._rt.call(lambda: self._drain_then(attempt))
            if result is not None:
                return result
            if self._timeout == 0.0:
                raise BlockingIOError(errno.EAGAIN, f"{what} would block")
            with self._cond:
                while self._gen == gen:
                    if self._rt.closed:
                        raise OSError(errno.EBADF, "the synack stack was shut down")
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError("timed out")
                    self._cond.wait(remaining if remaining is not None else 1.0)

    def _now(self) -> float:
        return self._d.now()

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(errno.EBADF, "Bad file descriptor")

    def _config(self) -> Any:
        cfg = self._d.host.tcp_config
        o = self._opts
        changes: dict[str, Any] = {}
        if (_std.IPPROTO_TCP, _std.TCP_NODELAY) in o:
            changes["nodelay"] = bool(o[(_std.IPPROTO_TCP, _std.TCP_NODELAY)])
        if (_std.SOL_SOCKET, _std.SO_KEEPALIVE) in o:
            changes["keepalive"] = bool(o[(_std.SOL_SOCKET, _std.SO_KEEPALIVE)])
        for opt, name in (
            (SocketModule.TCP_KEEPIDLE, "keepalive_idle"),
            (SocketModule.TCP_KEEPINTVL, "keepalive_interval"),
        ):
            if (_std.IPPROTO_TCP, opt) in o:
                changes[name] = float(o[(_std.IPPROTO_TCP, opt)])
        if (_std.IPPROTO_TCP, SocketModule.TCP_KEEPCNT) in o:
            changes["keepalive_count"] = int(o[(_std.IPPROTO_TCP, SocketModule.TCP_KEEPCNT)])
        if (_std.SOL_SOCKET, _std.SO_RCVBUF) in o:
            changes["receive_buffer"] = max(2048, o[(_std.SOL_SOCKET, _std.SO_RCVBUF)])
        if (_std.SOL_SOCKET, _std.SO_SNDBUF) in o:
            changes["send_buffer"] = max(2048, o[(_std.SOL_SOCKET, _std.SO_SNDBUF)])
        try:
            return dataclasses.replace(cfg, **changes) if changes else cfg
        except LocalProtocolError as exc:
            raise OSError(errno.EINVAL, str(exc)) from None

    # -- options ------------------------------------------------------------------
    def settimeout(self, value: float | None) -> None:
        if value is not None and value < 0:
            raise ValueError("Timeout value out of range")
        self._timeout = None if value is None else float(value)

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    def setsockopt(self, level: int, optname: int, value: int | bytes) -> None:
        self._check_open()
        if (level, optname) == (_std.SOL_SOCKET, _std.SO_LINGER):
            if not isinstance(value, bytes) or len(value) != _LINGER.size:
                raise OSError(errno.EINVAL, "SO_LINGER takes struct linger (two C ints)")
            onoff, seconds = _LINGER.unpack(value)
            self._linger = (onoff, seconds)
            return
        v = int.from_bytes(value, "little") if isinstance(value, bytes) else int(value)
        self._opts[(level, optname)] = v
        if (ln := self._listener) is not None and optname == SocketModule.TCP_FASTOPEN:
            self._rt.call(lambda: setattr(ln, "fastopen_qlen", max(0, v)))
        stream = self._stream
        if stream is not None:
            # Nagle and keep-alive may change on a live connection (its
            # config is read at each use); buffer sizes only before connect.
            cfg = self._config()
            self._rt.call(lambda: setattr(stream.conn, "config", cfg))

    def getsockopt(self, level: int, optname: int, buflen: int = 0) -> int | bytes:
        if (level, optname) == (_std.SOL_SOCKET, _std.SO_ERROR):
            err = self._take_error()
            return err.errno or 0 if err is not None else 0
        if (level, optname) == (_std.SOL_SOCKET, _std.SO_LINGER):
            return _LINGER.pack(*self._linger) if buflen else self._linger[0]
        if (level, optname) == (_std.SOL_SOCKET, _std.SO_RCVBUF):
            return int(self._config().receive_buffer)
        if (level, optname) == (_std.SOL_SOCKET, _std.SO_SNDBUF):
            return int(self._config().send_buffer)
        return self._opts.get((level, optname), 0)

    # -- names ----------------------------------------------------------------------
    def bind(self, address: _Addr) -> None:
        self._check_open()
        if self._bound is not None:
            raise OSError(errno.EINVAL, "already bound")
        ip, port = _ip(address[0]), int(address[1])
        if ip not in (ANY, self._d.host.ip) and not ip.is_loopback:
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        if self.type == _std.SOCK_DGRAM:
            try:
                self._endpoint = self._rt.call(lambda: self._open_udp(ip, port))
            except LocalProtocolError as exc:
                raise oserror(exc) from None
            self._bound = self._endpoint.local
        else:
            if port == 0:
                port = self._rt.call(self._d.host.pick_ephemeral_port)
            elif self._rt.call(lambda: self._d.host.tcp_has_listener(port)):
                raise OSError(errno.EADDRINUSE, "Address already in use")
            self._bound = (ip, port)

    def _open_udp(self, ip: IPv4Address, port: int) -> UdpEndpoint:
        ep = self._d.host.udp_open(port, ip)
        ep.owner = self
        return ep

    def getsockname(self) -> _Addr:
        self._check_open()
        if self._stream is not None:
            return (str(self._stream.key[0]), self._stream.key[1])
        if self._bound is not None:
            return (str(self._bound[0]), self._bound[1])
        return ("0.0.0.0", 0)

    def getpeername(self) -> _Addr:
        self._check_open()
        if self._stream is not None:
            return (str(self._stream.key[2]), self._stream.key[3])
        if self._endpoint is not None and self._endpoint.remote is not None:
            ip, port = self._endpoint.remote
            return (str(ip), port)
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    def fileno(self) -> int:
        return -1

    # -- TCP server ---------------------------------------------------------------
    def listen(self, backlog: int = 128) -> None:
        self._check_open()
        if self.type != _std.SOCK_STREAM:
            raise OSError(errno.EOPNOTSUPP, "listen() on a datagram socket")
        ip, port = self._bound or (ANY, 0)
        cfg = self._config()
        qlen = self._opts.get((_std.IPPROTO_TCP, SocketModule.TCP_FASTOPEN), 0)

        def go() -> TcpListener:
            listener = self._d.host.tcp_listen(
                port, ip, backlog=max(1, backlog), config=cfg, fastopen_qlen=qlen
            )
            listener.owner = self
            return listener

        try:
            self._listener = self._rt.call(go)
        except LocalProtocolError as exc:
            raise oserror(exc) from None
        self._bound = self._listener.local

    def accept(self) -> tuple[SynackSocket, _Addr]:
        self._check_open()
        listener = self._listener
        if listener is None:
            raise OSError(errno.EINVAL, "accept() on a socket that is not listening")

        def attempt() -> SynackSocket | None:
            stream = listener.accept()
            if stream is None:
                return None
            child = SynackSocket(self._m, _std.SOCK_STREAM)
            child._timeout = self._m._default_timeout
            child._stream = stream
            child._connected = True
            stream.owner = child
            child._activity()
            return child

        child = self._wait(attempt, "accept")
        return child, child.getpeername()

    # -- TCP client -------------------------------------------------------------------
    def connect(self, address: _Addr, *, _fastopen: bool = False) -> None:
        self._check_open()
        ip, port = _ip(address[0]), int(address[1])
        if self.type == _std.SOCK_DGRAM:
            self._ensure_udp()
            assert self._endpoint is not None
            ep = self._endpoint
            self._rt.call(lambda: setattr(ep, "remote", (ip, port)))
            return
        if self._stream is not None:
            raise OSError(errno.EISCONN, "Transport endpoint is already connected")
        cfg = self._config()
        local = self._bound
        tfo = _fastopen or bool(self._opts.get((_std.IPPROTO_TCP, self._m.TCP_FASTOPEN_CONNECT)))

        def go() -> TcpStream:
            stream = self._d.host.tcp_connect(
                (ip, port), self._now(), local=local, config=cfg, fastopen=tfo
            )
            stream.owner = self
            self._d.pump()
            return stream

        try:
            self._stream = self._rt.call(go)
        except LocalProtocolError as exc:
            raise oserror(exc) from None
        if tfo:
            return  # Fast Open: the SYN leaves with the first send(), as on Linux

        def attempt() -> bool | None:
            if self._error is not None:
                err, self._error = self._error, None
                raise err
            return True if self._connected else None

        try:
            self._wait(attempt, "connect")
        except TimeoutError:
            self._rt.call(lambda: self._abort_stream())
            raise
        except OSError:
            self._stream = None
            raise

    def connect_ex(self, address: _Addr) -> int:
        try:
            self.connect(address)
        except OSError as exc:
            return exc.errno or errno.EIO
        return 0

    def _abort_stream(self) -> None:
        if self._stream is not None:
            self._stream.abort(self._now())
            self._d.pump()

    # -- TCP data -----------------------------------------------------------------------
    def _need_stream(self) -> TcpStream:
        self._check_open()
        if self._stream is None:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        return self._stream

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self.type == _std.SOCK_DGRAM:
            return self.recvfrom(bufsize)[0]
        stream = self._need_stream()
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        if bufsize == 0 or self._shut_rd:
            return b""

        def attempt() -> bytes | None:
            if self._shut_rd:
                return b""
            if stream.conn.readable_bytes:
                data = stream.receive(bufsize, self._now())
                self._d.schedule_pump()
                return data
            if (err := self._take_error()) is not None:
                raise err
            if self._eof or stream.gone:
                return b""
            return None

        return self._wait(attempt, "recv")

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        mv = memoryview(buffer).cast("B")
        n = nbytes or len(mv)
        data = self.recv(n)
        mv[: len(data)] = data
        return len(data)

    def send(self, data: bytes | bytearray | memoryview, flags: int = 0) -> int:
        if self.type == _std.SOCK_DGRAM:
            ep = self._endpoint
            if ep is None or ep.remote is None:
                raise OSError(errno.EDESTADDRREQ, "Destination address required")
            ip, port = ep.remote
            return self.sendto(data, (str(ip), port))
        stream = self._need_stream()
        view = bytes(data)
        if not view:
            return 0

        def attempt() -> int | None:
            if (err := self._take_error()) is not None:
                raise err
            if stream.gone:
                raise BrokenPipeError(errno.EPIPE, "Broken pipe")
            try:
                n = stream.send(view, self._now())
            except LocalProtocolError:
                raise BrokenPipeError(errno.EPIPE, "Broken pipe") from None
            if n:
                self._d.schedule_pump()
                return n
            return None

        return self._wait(attempt, "send")

    def sendall(self, data: bytes | bytearray | memoryview, flags: int = 0) -> None:
        mv = memoryview(bytes(data))
        while mv:
            n = self.send(mv)
            mv = mv[n:]

    def shutdown(self, how: int) -> None:
        stream = self._need_stream()
        if how in (_std.SHUT_RD, _std.SHUT_RDWR):
            self._shut_rd = True
            self._wake()  # a recv blocked in another thread returns b"" (as on Linux)
        if how in (_std.SHUT_WR, _std.SHUT_RDWR):

            def go() -> None:
                stream.shutdown_write(self._now())
                self._d.pump()

            self._rt.call(go)

    # -- UDP ----------------------------------------------------------------------------
    def _ensure_udp(self) -> None:
        if self._endpoint is None:
            self._endpoint = self._rt.call(lambda: self._open_udp(ANY, 0))
            self._bound = self._endpoint.local

    def sendto(self, data: bytes | bytearray | memoryview, *args: Any) -> int:
        """``sendto(data, address)`` or ``sendto(data, flags, address)``; on a stream
        socket only with MSG_FASTOPEN: connect with Fast Open and send (Linux)."""
        self._check_open()
        address: _Addr = args[-1]
        if self.type != _std.SOCK_DGRAM:
            if len(args) != 2 or not args[0] & SocketModule.MSG_FASTOPEN or self._stream:
                raise OSError(errno.EISCONN, "sendto() on a stream socket")
            self.connect(address, _fastopen=True)
            return self.send(data)
        self._ensure_udp()
        ep = self._endpoint
        assert ep is not None
        dst = (_ip(address[0]), int(address[1]))
        payload = bytes(data)

        def go() -> None:
            ep.sendto(payload, dst, self._now())
            self._d.pump()

        try:
            self._rt.call(go)
        except LocalProtocolError as exc:
            raise oserror(exc) from None
        return len(payload)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, _Addr]:
        self._check_open()
        if self.type != _std.SOCK_DGRAM:
            data = self.recv(bufsize)
            return data, self.getpeername()
        self._ensure_udp()
        ep = self._endpoint
        assert ep is not None

        def attempt() -> tuple[bytes, _Addr] | None:
            if ep.error is not None:
                code, ep.error = ep.error, None
                raise from_errno(code)
            item = ep.recvfrom()
            if item is None:
                return None
            data, (ip, port) = item
            # Like the kernel: a datagram longer than the buffer is truncated.
            return data[:bufsize], (str(ip), port)

        return self._wait(attempt, "recvfrom")

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, _Addr]:
        mv = memoryview(buffer).cast("B")
        data, addr = self.recvfrom(nbytes or len(mv))
        mv[: len(data)] = data
        return len(data), addr

    # -- closing --------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        stream, listener, ep = self._stream, self._listener, self._endpoint

        abort = self._linger[0] != 0 and self._linger[1] == 0

        def go() -> None:
            now = self._now()
            if stream is not None and not stream.gone:
                stream.owner = None
                if abort:  # SO_LINGER on with zero time: RST, unsent data dropped
                    stream.abort(now)
                else:
                    stream.close(now)
            if listener is not None:
                listener.close(now)
            if ep is not None:
                ep.close()
            self._d.pump()

        if self._rt.loop.is_running():
            self._rt.call(go)
        self._wake()  # calls blocked in other threads raise EBADF, not hang

    def detach(self) -> int:
        return -1

    def __enter__(self) -> SynackSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "SOCK_STREAM" if self.type == _std.SOCK_STREAM else "SOCK_DGRAM"
        return f"<synack socket {kind} laddr={self._bound}>"


# The default module, for programs that can only change their import line:
# ``from synack.adapters.sockets import default_module as socket`` after
# ``set_default(module)``. Set explicitly by the program's runner, never
# implicitly: several hosts in one process remain the normal case.
class _DefaultModule:
    _target: SocketModule | None = None

    def __getattr__(self, name: str) -> Any:
        target = type(self)._target
        if target is None:
            raise RuntimeError("call synack.adapters.sockets.set_default(module) first")
        return getattr(target, name)


default_module: Any = _DefaultModule()


def set_default(module: SocketModule | None) -> None:
    _DefaultModule._target = module
