"""Put a whole program's IPv4 networking on synack's stack: ``socket.socket`` replaced.

One line, like ``uvloop.install()``: ``synack.adapters.patch.install_tap("tap0",
"10.0.0.2/24")`` (a TAP device, root), then ``asyncio.run(...)`` or plain
``socket`` code. Underneath, ``install(module)`` (a
:class:`~synack.adapters.sockets.SocketModule`, i.e. a host running on a
:class:`~synack.adapters.sockets.Runtime`) replaces the standard
``socket.socket`` class, ``socket.getaddrinfo`` and ``has_ipv6``, and sets an
event-loop policy whose new loops (``asyncio.run``, ``new_event_loop``; also
:func:`loop_factory` for ``asyncio.Runner``) are asyncio's selector loop that
drives the stack in its own thread while it runs
(:class:`~synack.adapters.loopthread.HostingLoop`: the stack thread hands the
host over when the loop starts and takes it back when it stops; its AF_INET
``create_server`` is synack's own, :mod:`synack.adapters.native`), so
that every AF_INET socket a program opens afterwards - directly, or through
socketserver, http.server, urllib, asyncio's selector loop, aiohttp... - lives
on synack's stack. AF_UNIX and every other family stay on the kernel; AF_INET6
and raw sockets get the errors of a kernel without them (EAFNOSUPPORT,
ESOCKTNOSUPPORT), unknown socket options ENOPROTOOPT.

How a synack socket can be waited on by select/poll/epoll: it IS a kernel
socket - one end (the "app end") of an AF_UNIX socketpair, presented as
AF_INET. Its other end (the "stack end") is serviced by a bridge on the
thread that drives the stack (the program's asyncio loop while one runs, the
runtime's loop thread otherwise): bytes the program writes are read from the stack end and
sent on the TCP connection (as much as its send buffer takes, the rest waits
for ``SendSpaceAvailable``: back-pressure up to the program's ``send``); bytes
the connection receives are written to the stack end (as much as the pair
takes, the rest stays in TCP's receive buffer and closes the window). So
readiness, blocking, timeouts, ``makefile`` and even ``os.sendfile`` on the
descriptor are the kernel's own, and only what names the network (bind,
connect, listen, accept, addresses, options, UDP addressing) is overridden.
A listening socket's pair carries one byte while connections wait to be
accepted; a UDP socket's pair carries each datagram behind a 6-byte source
address. A non-blocking connect fills the app end's send buffer so the
descriptor turns writable only when the handshake is over (asyncio's
``sock_connect`` waits for exactly that, then reads SO_ERROR). A blocking call
on a synack socket made on the thread whose loop drives the stack (a blocking
socket inside a coroutine) lends the stack to the stack thread for the call,
which the loop could not otherwise serve.

:func:`close_all` is the end-of-program lifecycle: listeners closed (later
SYNs are answered by RST), every connection sent its FIN, a bounded linger for
the peer, then RST for what is left.

Layer: adapters. Imports synack.adapters (base, bridge, driver, native, oserrors,
sockets), synack.links, synack.stack, synack.errors.
"""

from __future__ import annotations

import _socket
import asyncio
import atexit
import errno
import fcntl
import os
import random
import secrets
import socket as _std
import struct
import termios
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from synack.adapters import native
from synack.adapters.base import ipv4
from synack.adapters.bridge import (
    ACCEPT_SIGNAL,
    UDP_HEAD,
    Bridge,
    ListenerBridge,
    State,
    listening,
    served,
)
from synack.adapters.bridge import close_all as _close_bridges
from synack.adapters.bridge import close_listeners as bridge_close_listeners
from synack.adapters.driver import HostDriver
from synack.adapters.oserrors import from_errno, oserror
from synack.adapters.sockets import Runtime, SocketModule
from synack.errors import LocalProtocolError
from synack.links.tap import TAP_MAX_MTU, TapDevice, TapLink
from synack.stack.config import link_tcp_config
from synack.stack.host import ANY, LOOPBACK, Host, HostConfig, TcpListener, TcpStream

_KernelSocket = _std.socket  # the class as it was before install(): kept for AF_UNIX & co
_kernel_getaddrinfo = _std.getaddrinfo
_kernel_has_ipv6 = _std.has_ipv6
_TYPE_FLAGS = getattr(_std, "SOCK_NONBLOCK", 0) | getattr(_std, "SOCK_CLOEXEC", 0)
_LINGER = struct.Struct("ii")

# Options a program may set (stored; the TCP ones reach the connection's config).
_KNOWN_OPTS = {
    (_std.SOL_SOCKET, _std.SO_REUSEADDR),
    (_std.SOL_SOCKET, getattr(_std, "SO_REUSEPORT", 15)),
    (_std.SOL_SOCKET, _std.SO_KEEPALIVE),
    (_std.SOL_SOCKET, _std.SO_RCVBUF),
    (_std.SOL_SOCKET, _std.SO_SNDBUF),
    (_std.SOL_SOCKET, _std.SO_BROADCAST),
    (_std.SOL_SOCKET, _std.SO_OOBINLINE),
    (_std.IPPROTO_TCP, _std.TCP_NODELAY),
    (_std.IPPROTO_TCP, getattr(_std, "TCP_KEEPIDLE", 4)),
    (_std.IPPROTO_TCP, getattr(_std, "TCP_KEEPINTVL", 5)),
    (_std.IPPROTO_TCP, getattr(_std, "TCP_KEEPCNT", 6)),
    (_std.IPPROTO_TCP, SocketModule.TCP_FASTOPEN),  # a listener's Fast Open queue (RFC 7413)
    (_std.IPPROTO_IP, _std.IP_TOS),
    (_std.IPPROTO_IP, _std.IP_TTL),
}


_active: SocketModule | None = None
_saved_policy: asyncio.AbstractEventLoopPolicy | None = None


class _Policy(asyncio.DefaultEventLoopPolicy):
    """asyncio's default policy, whose new loops drive the installed stack while they run."""

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return loop_factory() if _active is not None else super().new_event_loop()


def _kernel_pair(type_: int) -> tuple[int, _std.socket]:
    """(app end's descriptor, stack end as a non-blocking kernel socket)."""
    a, b = _socket.socketpair(_std.AF_UNIX, type_)
    stack_end = _KernelSocket(_std.AF_UNIX, type_, 0, b.detach())
    stack_end.setblocking(False)
    return a.detach(), stack_end


def _addr(address: Any) -> tuple[IPv4Address, int]:
    if not isinstance(address, tuple) or len(address) != 2:
        raise TypeError("AF_INET address must be a tuple (host, port)")
    host, port = address
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise OverflowError("port must be 0-65535.")
    if isinstance(host, (bytes, bytearray)):
        try:
            host = bytes(host).decode("ascii")
        except UnicodeDecodeError:  # the kernel's resolver knows no such name either
            raise _std.gaierror(_std.EAI_NONAME, "Name or service not known") from None
    elif not isinstance(host, str):
        raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
    if (ip := ipv4(host)) is not None:
        return ip, port
    infos = getaddrinfo(host, port, _std.AF_INET)
    return IPv4Address(infos[0][4][0]), port


class socket(_KernelSocket):  # named as the class it stands in for
    """``socket.socket`` with AF_INET on synack's stack (see the module doc)."""

    def __init__(
        self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None
    ) -> None:
        self._sk: State | None = None
        self._gone = False  # this object closed or detached its descriptor
        module = _active
        fam = _std.AF_INET if family == -1 else family
        if fileno is not None or module is None or fam not in (_std.AF_INET, _std.AF_INET6):
            super().__init__(family, type, proto, fileno)
            return
        if fam == _std.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        t = _std.SOCK_STREAM if type == -1 else type
        base = t & ~_TYPE_FLAGS
        if base not in (_std.SOCK_STREAM, _std.SOCK_DGRAM):
            raise OSError(errno.ESOCKTNOSUPPORT, "Socket type not supported")
        p = 0 if proto == -1 else proto
        if p not in (0, _std.IPPROTO_TCP if base == _std.SOCK_STREAM else _std.IPPROTO_UDP):
            raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")
        fd, stack_end = _kernel_pair(base)
        super().__init__(_std.AF_INET, t, p, fd)
        self._sk = State(module, base, stack_end)

    def _lends(self, sk: State) -> bool:
        """A call on this socket may block, and the program loop of this very
        thread drives the stack: it lends the stack to its own thread for the
        call (the loop cannot drive it while the call waits)."""
        return self.gettimeout() != 0.0 and sk.m.runtime.hosted_here()

    def _state(self) -> State | None:
        """This socket's synack state (None: a kernel socket); EBADF once closed."""
        sk = self._sk
        if sk is not None and self._gone:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return sk

    # -- names ----------------------------------------------------------------
    def bind(self, address: Any) -> None:
        sk = self._state()
        if sk is None:
            return super().bind(address)
        if sk.local is not None:
            raise OSError(errno.EINVAL, "Invalid argument")
        ip, port = _addr(address)
        host = sk.m.host
        if ip not in (ANY, host.ip) and not ip.is_loopback:
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        if sk.type == _std.SOCK_DGRAM:
            sk.open_udp(ip, port)
            return
        rt = sk.m.runtime
        if port == 0:
            port = rt.call(host.pick_ephemeral_port)
        elif rt.call(lambda: host.tcp_port_in_use(port)) and not sk.reuse():
            raise OSError(errno.EADDRINUSE, "Address already in use")
        sk.local = (ip, port)

    def getsockname(self) -> Any:
        sk = self._state()
        if sk is None:
            return super().getsockname()
        ip, port = sk.local or (ANY, 0)
        if ip == ANY and sk.stream is not None:
            ip = sk.stream.key[0]
        elif ip == ANY and sk.remote is not None:  # connected UDP: the routed source
            dst = sk.remote[0]
            ip = sk.m.runtime.call(lambda: sk.m.host.source_for(dst))
        return (str(ip), port)

    def getpeername(self) -> Any:
        sk = self._state()
        if sk is None:
            return super().getpeername()
        if sk.remote is None:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        return (str(sk.remote[0]), sk.remote[1])

    # -- options --------------------------------------------------------------
    def setsockopt(self, level: int, optname: int, value: Any, optlen: Any = None) -> None:
        sk = self._state()
        if sk is None:
            if optlen is None:
                return super().setsockopt(level, optname, value)
            return super().setsockopt(level, optname, value, optlen)
        if (level, optname) == (_std.SOL_SOCKET, _std.SO_LINGER):
            if not isinstance(value, bytes | bytearray) or len(value) != _LINGER.size:
                raise OSError(errno.EINVAL, "Invalid argument")
            sk.linger = _LINGER.unpack(value)
            return
        if (level, optname) not in _KNOWN_OPTS:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        v = int.from_bytes(value, "little") if isinstance(value, bytes | bytearray) else int(value)
        sk.opts[(level, optname)] = v
        if (ln := sk.listener) is not None and optname == SocketModule.TCP_FASTOPEN:
            sk.m.runtime.call(lambda: setattr(ln, "fastopen_qlen", max(0, v)))
        stream = sk.stream
        if stream is None:
            return
        cfg = sk.config()  # one object per option set: unchanged options, no post
        if cfg is not stream.conn.config:
            # Not waited for: asyncio sets TCP_NODELAY on every connection it
            # makes, and a round trip to the loop thread per option was a
            # good part of a new connection's cost. Ordered before any data
            # the program writes next (that reaches the loop later).
            sk.m.runtime.post(lambda: setattr(stream.conn, "config", cfg))

    def getsockopt(self, level: int, optname: int, buflen: int = 0) -> Any:
        sk = self._state()
        if sk is None:
            return (
                super().getsockopt(level, optname, buflen)
                if buflen
                else super().getsockopt(level, optname)
            )
        key = (level, optname)
        if key == (_std.SOL_SOCKET, _std.SO_ERROR):
            err, sk.error = sk.error, None
            return (err.errno or errno.EIO) if err is not None else 0
        if key == (_std.SOL_SOCKET, _std.SO_TYPE):
            return sk.type
        if key == (_std.SOL_SOCKET, _std.SO_LINGER):
            return _LINGER.pack(*sk.linger) if buflen else sk.linger[0]
        if key == (_std.SOL_SOCKET, _std.SO_ACCEPTCONN):
            return int(sk.listener is not None)
        if key == (_std.SOL_SOCKET, _std.SO_RCVBUF):
            return int(sk.config().receive_buffer)
        if key == (_std.SOL_SOCKET, _std.SO_SNDBUF):
            return int(sk.config().send_buffer)
        if key not in _KNOWN_OPTS:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        return sk.opts.get(key, 0)

    # -- TCP ------------------------------------------------------------------
    def listen(self, backlog: int = 128) -> None:
        sk = self._state()
        if sk is None:
            return super().listen(backlog)
        if sk.type != _std.SOCK_STREAM:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        ip, port = sk.local or (ANY, 0)
        cfg = sk.config()
        host = sk.m.host
        qlen = sk.opts.get((_std.IPPROTO_TCP, SocketModule.TCP_FASTOPEN), 0)

        def go() -> TcpListener:
            listener = host.tcp_listen(
                port, ip, backlog=max(1, min(backlog, 4096)), config=cfg, fastopen_qlen=qlen
            )
            listener.owner = ListenerBridge(sk, listener, _child)
            return listener

        try:
            sk.listener = sk.m.runtime.call(go)
        except LocalProtocolError as exc:
            raise oserror(exc) from None
        sk.local = sk.listener.local
        listening.add(sk)
        served.add(sk.m.driver)

    def accept(self) -> tuple[Any, Any]:
        sk = self._state()
        if sk is None:
            return super().accept()
        if sk.listener is None:
            raise OSError(errno.EINVAL, "Invalid argument")
        # One byte while connections wait (see State.signalled): the
        # kernel's own blocking, timeout and non-blocking behaviour on the
        # descriptor. Taking it, the program puts it back if more wait.
        # Non-blocking with none waiting, the byte is not there either: the
        # kernel's answer without its system call (asyncio's accept loop
        # asks until it is told so, once per batch of connections).
        if not sk.accepted and self.gettimeout() == 0.0:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        if self._lends(sk):
            with sk.m.runtime.lent():
                signal = _KernelSocket.recv(self, 1)
        else:
            signal = _KernelSocket.recv(self, 1)
        if not signal:
            raise OSError(errno.EBADF, "Bad file descriptor")
        with sk.accept_lock:
            if not sk.accepted:  # the listener was closed meanwhile
                sk.signalled = False
                raise OSError(errno.EBADF, "Bad file descriptor")
            child: socket = sk.accepted.popleft()
            if sk.accepted:
                try:
                    sk.stack_end.send(ACCEPT_SIGNAL)
                except OSError:
                    sk.signalled = False
            else:
                sk.signalled = False
            bridge = sk.listener.owner
            if isinstance(bridge, ListenerBridge) and bridge.held:
                bridge.held = False  # room again: take what waits in the stack's queue
                sk.m.runtime.post(bridge._activity)
        if self.gettimeout() is None and _std.getdefaulttimeout() is not None:
            child.settimeout(_std.getdefaulttimeout())
        return child, child.getpeername()

    def connect(self, address: Any) -> None:
        err = self._connect(address)
        if err:
            raise (
                from_errno(err)
                if err != errno.EINPROGRESS
                else BlockingIOError(errno.EINPROGRESS, "Operation now in progress")
            )

    def connect_ex(self, address: Any) -> int:
        try:
            return self._connect(address)
        except OSError as exc:
            return exc.errno or errno.EIO

    def _connect(self, address: Any, fastopen: bytes | None = None) -> int:
        sk = self._state()
        if sk is None:
            return super().connect_ex(address)
        ip, port = _addr(address)
        if sk.type == _std.SOCK_DGRAM:
            if sk.endpoint is None:
                sk.open_udp(ANY, 0)
            ep = sk.endpoint
            assert ep is not None
            sk.m.runtime.call(lambda: setattr(ep, "remote", (ip, port)))
            sk.remote = (ip, port)
            return 0
        if sk.stream is not None:
            return errno.EISCONN if sk.connected.is_set() else errno.EALREADY
        if ip == ANY:
            ip = LOOPBACK
        blocking = self.gettimeout() != 0.0
        if not blocking and fastopen is None:
            # Not writable until the handshake is over (see the module doc).
            sk.filled = _fill(self)
        cfg = sk.config()
        local = sk.local
        d = sk.m.driver

        def go() -> TcpStream:
            stream = d.host.tcp_connect(
                (ip, port), d.now(), local=local, config=cfg, fastopen=fastopen is not None
            )
            Bridge(sk, stream)
            if fastopen is not None:  # RFC 7413: the data goes on (or right after) the SYN
                stream.send(fastopen, d.now())
            d.pump()
            return stream

        try:
            sk.stream = sk.m.runtime.call(go)
        except LocalProtocolError as exc:
            raise oserror(exc) from None
        sk.remote = (ip, port)
        sk.local = sk.stream.local
        if fastopen is not None:
            return 0  # as Linux's sendto(MSG_FASTOPEN): queued, not waited for
        if not blocking:
            return errno.EINPROGRESS
        with sk.m.runtime.lent():
            connected = sk.connected.wait(self.gettimeout())
        if not connected:
            sk.m.runtime.call(lambda: sk.bridge_abort())
            raise TimeoutError("timed out")
        if sk.error is not None:
            err, sk.error = sk.error, None
            sk.stream = None
            return err.errno or errno.EIO
        return 0

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        sk = self._sk
        if sk is not None and sk.type == _std.SOCK_DGRAM:
            return self.recvfrom(bufsize, flags)[0]
        if sk is not None and self._lends(sk):
            with sk.m.runtime.lent():
                data = super().recv(bufsize, flags)
        else:
            data = super().recv(bufsize, flags)
        if not data and bufsize and sk is not None and sk.error is not None:
            err, sk.error = sk.error, None
            raise err
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        sk = self._sk
        if sk is not None and sk.type == _std.SOCK_DGRAM:
            return self.recvfrom_into(buffer, nbytes, flags)[0]
        if sk is not None and self._lends(sk):
            with sk.m.runtime.lent():
                n = super().recv_into(buffer, nbytes, flags)
        else:
            n = super().recv_into(buffer, nbytes, flags)
        if n == 0 and sk is not None and sk.error is not None:
            err, sk.error = sk.error, None
            raise err
        return n

    def shutdown(self, how: int) -> None:
        sk = self._sk
        if sk is not None and sk.stream is None and sk.endpoint is None:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        super().shutdown(how)  # the bridge sees EOF and sends FIN after the data

    # -- UDP ------------------------------------------------------------------
    def sendto(self, data: Any, *args: Any) -> int:
        if not 1 <= len(args) <= 2:  # the stdlib's own check, before anything is sent
            raise TypeError(f"sendto() takes 2 or 3 arguments ({len(args) + 1} given)")
        sk = self._sk
        if (
            sk is not None
            and sk.type == _std.SOCK_STREAM
            and len(args) == 2
            and args[0] & SocketModule.MSG_FASTOPEN
            and sk.stream is None
        ):
            # Linux's Fast Open client: connect, the data on the SYN (at most
            # what the send buffer takes; the rest with send()).
            payload = bytes(data)[: sk.config().send_buffer]
            if err := self._connect(args[1], payload):
                raise OSError(err, os.strerror(err))
            return len(payload)
        if sk is None or sk.type != _std.SOCK_DGRAM:
            return super().sendto(data, *args)
        address = args[-1]
        if sk.endpoint is None:
            sk.open_udp(ANY, 0)
        return sk.udp_send(bytes(data), _addr(address))

    def send(self, data: Any, flags: int = 0) -> int:
        sk = self._sk
        if sk is None or sk.type != _std.SOCK_DGRAM:
            if sk is not None and self._lends(sk):
                with sk.m.runtime.lent():
                    return super().send(data, flags)
            return super().send(data, flags)
        if sk.remote is None:
            raise OSError(errno.EDESTADDRREQ, "Destination address required")
        return sk.udp_send(bytes(data), sk.remote)

    def sendall(self, data: Any, flags: int = 0) -> None:
        sk = self._sk
        if sk is not None and sk.type == _std.SOCK_DGRAM:
            self.send(data, flags)
            return
        if sk is not None and self._lends(sk):
            with sk.m.runtime.lent():
                super().sendall(data, flags)
        else:
            super().sendall(data, flags)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        sk = self._sk
        if sk is None:
            return super().recvfrom(bufsize, flags)
        if sk.type == _std.SOCK_STREAM:
            return self.recv(bufsize, flags), None
        if sk.endpoint is None:
            sk.open_udp(ANY, 0)
        while True:
            if self._lends(sk):
                with sk.m.runtime.lent():
                    dgram = super().recv(bufsize + UDP_HEAD.size, flags)
            else:
                dgram = super().recv(bufsize + UDP_HEAD.size, flags)
            if sk.error is not None:
                err, sk.error = sk.error, None
                raise err
            if len(dgram) >= UDP_HEAD.size:
                ip, port = UDP_HEAD.unpack_from(dgram)
                if port:
                    return dgram[UDP_HEAD.size :], (_std.inet_ntoa(ip), port)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        if self._sk is None:
            return super().recvfrom_into(buffer, nbytes, flags)
        mv = memoryview(buffer).cast("B")
        data, addr = self.recvfrom(nbytes or len(mv), flags)
        mv[: len(data)] = data
        return len(data), addr

    # -- closing --------------------------------------------------------------
    def _real_close(self, _ss: Any = _KernelSocket) -> None:
        sk = self._sk
        if sk is None or self._gone or not self._release(sk):
            super()._real_close()  # type: ignore[misc]
            return
        # The last descriptor. Bytes the program never read, counted before
        # the close drops them: the bridge then resets rather than FINs
        # (SHLD-3), if no other descriptor (a fork's) still holds this end.
        sk.unread = sk.bridge is not None and _unread(self.fileno())
        super()._real_close()  # type: ignore[misc]
        rt = sk.m.runtime
        if rt.closed:
            return
        if sk.bridge is not None and rt.host_loop.owned_here():
            # The program runs where the stack runs (its loop drives the
            # host, or it runs on the stack's own loop): its close is acted on
            # now, before the pump that sends what it wrote last (the FIN
            # then rides on that data). Only a connection's: nothing posted
            # earlier for it (an option) needs to come first. A failure is
            # the loop's to report, as a post's would be, not the close's.
            try:
                sk.app_closed()
            except Exception as exc:
                rt.host_loop.call_exception_handler(
                    {"message": "synack close failed", "exception": exc}
                )
        else:
            rt.post(sk.app_closed)

    def _release(self, sk: State) -> bool:
        """This object lets go of ``sk``: True if it was the last to hold it."""
        self._gone = True
        with sk.accept_lock:
            sk.refs -= 1
            return sk.refs == 0

    def detach(self) -> int:
        """The descriptor, which this object stops owning. For a TCP connection
        it carries the connection's bytes (its last close is the FIN, or the
        RST if the peer's data is still coming); a listener's or a UDP
        socket's carries synack's own framing, so those are not detached."""
        sk = self._sk
        if sk is None or self._gone:
            return super().detach()
        if sk.bridge is None:
            raise OSError(errno.EOPNOTSUPP, "only a connected synack TCP socket can be detached")
        self._release(sk)
        return super().detach()

    def dup(self) -> Any:
        """A second socket on the same connection (or listener, or endpoint),
        as the kernel's dup() shares one socket: the connection is closed
        when the last of them is."""
        sk = self._state()
        if sk is None:
            return super().dup()
        with sk.accept_lock:
            sk.refs += 1
        try:
            new = type(self)(self.family, self.type, self.proto, os.dup(self.fileno()))
        except BaseException:
            with sk.accept_lock:
                sk.refs -= 1
            raise
        new._sk = sk
        new.settimeout(self.gettimeout())
        return new


def _unread(fd: int) -> bool:
    try:
        return bool(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, bytes(4)))[0] > 0)
    except OSError:
        return False


def _fill(sock: socket) -> int:
    """Fill the app end's send buffer; the bytes written (the bridge discards them)."""
    n = 0
    junk = bytes(65536)
    while True:
        try:
            n += _KernelSocket.send(sock, junk, _std.MSG_DONTWAIT)
        except BlockingIOError:
            return n


# Installing -------------------------------------------------------------------------
def getaddrinfo(
    host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
) -> list[Any]:
    """The kernel's resolver (literals, /etc/hosts, DNS), IPv4 answers only."""
    if family not in (0, _std.AF_INET, _std.AF_UNSPEC):
        raise _std.gaierror(_std.EAI_FAMILY, "ai_family not supported")
    return _kernel_getaddrinfo(host, port, _std.AF_INET, type, proto, flags)


def install(module: SocketModule) -> None:
    """From now on, every AF_INET socket this process opens is on ``module``'s host."""
    global _active, _saved_policy
    _active = module
    if _saved_policy is None:
        _saved_policy = asyncio.get_event_loop_policy()
        asyncio.set_event_loop_policy(_Policy())
    _std.socket = socket  # type: ignore[misc]
    _std.getaddrinfo = getaddrinfo
    _std.has_ipv6 = False


def install_tap(
    tap: str,
    ip: str,
    *,
    gateway: str | None = None,
    mtu: int = 1500,
    offload: bool = False,
    big_tcp: bool = True,
    linger: float = 2.0,
) -> Runtime:
    r"""The one line: ``synack.adapters.patch.install_tap("tap0", "10.0.0.2/24")``.

    Opens TAP device ``tap`` (root), starts a synack host with address ``ip``
    on a loop thread, :func:`install`\ s it, and at interpreter exit closes its
    connections (:func:`close_all`) and the device. Returns the runtime."""
    iface = IPv4Interface(ip)
    device = TapDevice(tap, mtu=mtu, offload=offload, big_tcp=big_tcp)
    host = Host(
        HostConfig(
            mac=bytes([0x02]) + secrets.token_bytes(5),  # locally administered, unicast
            interface=iface,
            gateway=IPv4Address(gateway) if gateway else None,
            mtu=min(mtu, TAP_MAX_MTU),
            name="synack",
            tcp=link_tcp_config(min(mtu, TAP_MAX_MTU)),
        ),
        rng=random.Random(secrets.randbits(64)),
        isn_secret=secrets.token_bytes(32),
    )
    runtime = Runtime()
    install(runtime.add_host(host, TapLink(device)))

    def at_exit() -> None:
        try:
            close_all(runtime, linger=linger)
        finally:
            uninstall()
            runtime.close()
            device.close()

    atexit.register(at_exit)
    return runtime


def uninstall() -> None:
    """Back to the kernel's sockets (synack sockets already open stay synack's)."""
    global _active, _saved_policy
    _active = None
    if _saved_policy is not None:
        asyncio.set_event_loop_policy(_saved_policy)
        _saved_policy = None
    _std.socket = _KernelSocket  # type: ignore[misc]
    _std.getaddrinfo = _kernel_getaddrinfo
    _std.has_ipv6 = _kernel_has_ipv6


def installed() -> SocketModule | None:
    return _active


def loop_factory() -> asyncio.AbstractEventLoop:
    """For ``asyncio.Runner(loop_factory=...)`` / ``asyncio.run(..., loop_factory=...)``
    (and what ``asyncio.new_event_loop()`` makes once :func:`install` ran): asyncio's
    own selector loop, whose sockets are synack's, and which drives the stack in
    its own thread while it runs (:class:`~synack.adapters.loopthread.HostingLoop`)."""
    if _active is None:
        raise RuntimeError("call synack.adapters.patch.install(module) first")
    return native.NativeLoop(_active.runtime, _active.driver)


def close_all(
    runtime: Runtime, linger: float = 2.0, drivers: list[HostDriver] | None = None
) -> dict[str, int]:
    """End of program (:func:`synack.adapters.bridge.close_all`), the native
    listeners of hosting loops (:mod:`synack.adapters.native`) included."""
    for d in runtime.drivers if drivers is None else drivers:
        runtime.call(lambda d=d: native.close_listeners(d))  # type: ignore[misc]
    return _close_bridges(runtime, linger, drivers)


def stop_listening(runtime: Runtime) -> None:
    """The program has ended: every port it listens on closes now (a SYN gets
    RST), before its connections do. Called while the program's sockets are
    still alive: once its module is torn down they close in the order the
    garbage collector frees them, and a connection's FIN could leave while
    its listener (held by a reference cycle) still accepted the peer's next
    SYN. :func:`close_all` does this too, first."""
    if runtime.closed:
        return
    for d in runtime.drivers:

        def stop(d: HostDriver = d) -> None:
            native.close_listeners(d)
            bridge_close_listeners(d)

        runtime.call(stop)


def _child() -> socket:
    return socket(_std.AF_INET, _std.SOCK_STREAM, _std.IPPROTO_TCP)


__all__ = [
    "close_all",
    "getaddrinfo",
    "install",
    "install_tap",
    "installed",
    "loop_factory",
    "socket",
    "stop_listening",
    "uninstall",
]
