"""The stack's half of synack's stand-in sockets (:mod:`synack.adapters.patch`).

A :class:`State` is what a synack socket knows beyond its descriptor; the
bridges move bytes between the socketpair's stack end and the host: a
connection's (:class:`Bridge`), a listener's (one byte in the pair while
accepted connections wait), a UDP endpoint's (each datagram behind its source address).
They run on whichever thread drives the host (synack.adapters.loopthread) and
register their descriptors through the runtime's ``host_loop``, so they move with it.
:func:`close_all` is the end-of-program lifecycle.

Layer: adapters. Imports synack.adapters (driver, oserrors, sockets), synack.stack,
synack.tcp, synack.errors.
"""

from __future__ import annotations

import dataclasses
import errno
import select
import socket as _std
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from synack.adapters.driver import HostDriver
from synack.adapters.oserrors import for_event, from_errno, oserror
from synack.adapters.sockets import Runtime, SocketModule
from synack.errors import LocalProtocolError
from synack.stack.host import TcpListener, TcpStream, UdpEndpoint
from synack.tcp import events as tev

UDP_HEAD = struct.Struct("!4sH")  # a datagram's source address, ahead of its bytes
_CHUNK = 256 * 1024
ACCEPT_SIGNAL = b"\x01"  # in a listener's pair while connections wait
listening: set[State] = set()  # sockets listening now (close_all closes them)
# Hosts that had a listening port during this run: at exit their stack stays up
# for the whole linger, so a SYN to a port that was listening is answered by
# RST (RFC 9293 §3.10.7.1, a segment for no connection) rather than silence.
served: set[HostDriver] = set()
# State.config's memo: (id of the host's config, the options' changes) -> (that config, result)
_configs: dict[tuple[int, tuple[tuple[str, Any], ...]], tuple[Any, Any]] = {}


class Latch:
    """``threading.Event``'s is_set/set/wait, its Event made only for a wait
    that has to block (a blocking connect): an accepted connection is
    connected from the start, and an Event is six objects for the collector."""

    __slots__ = ("_event", "_set")
    _making = threading.Lock()

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True  # before reading _event: a waiter making it checks after
        if (event := self._event) is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self._set:
            return True
        with Latch._making:
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return self._set or event.wait(timeout)


class State:
    """What a synack socket knows beyond its descriptor (shared with its bridge)."""

    def __init__(self, module: SocketModule, type_: int, stack_end: _std.socket) -> None:
        self.m = module
        self.type = type_
        self.stack_end = stack_end
        self.local: tuple[IPv4Address, int] | None = None
        self.remote: tuple[IPv4Address, int] | None = None
        self.stream: TcpStream | None = None
        self.listener: TcpListener | None = None
        self.endpoint: UdpEndpoint | None = None
        self.bridge: Bridge | None = None
        self.accepted: deque[Any] = deque()  # accepted sockets the program has not taken
        # One byte sits in a listener's pair while ``accepted`` is not empty
        # (``signalled``). Not a byte per connection: each send on a Unix
        # socket is charged about a kilobyte against its send buffer, so a
        # few hundred waiting connections filled it and the next were reset.
        self.accept_lock = threading.Lock()
        self.signalled = False
        self.connected = Latch()
        self.error: OSError | None = None
        self.opts: dict[tuple[int, int], int] = {}
        self.linger: tuple[int, int] = (0, 0)
        self.filled = 0
        self.refs = 1  # socket objects sharing this state (dup()s), under accept_lock
        self.closed = False  # the program's last descriptor was closed (app_closed ran)
        # The program's last close left received bytes unread (set before that
        # close, so the bridge knows it whichever it sees first: the EOF or app_closed).
        self.unread = False

    def reuse(self) -> bool:
        return bool(self.opts.get((_std.SOL_SOCKET, _std.SO_REUSEADDR)))

    def config(self) -> Any:
        """The TCP configuration this socket's options make (one object per
        distinct set of options: building and validating one costs more than
        the rest of a new connection's setsockopt calls together)."""
        cfg = self.m.host.tcp_config
        o = self.opts
        changes: dict[str, Any] = {}
        if (k := (_std.IPPROTO_TCP, _std.TCP_NODELAY)) in o:
            changes["nodelay"] = bool(o[k])
        if (k := (_std.SOL_SOCKET, _std.SO_KEEPALIVE)) in o:
            changes["keepalive"] = bool(o[k])
        if (k := (_std.SOL_SOCKET, _std.SO_RCVBUF)) in o:
            changes["receive_buffer"] = max(2048, o[k])
        if (k := (_std.SOL_SOCKET, _std.SO_SNDBUF)) in o:
            changes["send_buffer"] = max(2048, o[k])
        if not changes:
            return cfg
        key = (id(cfg), tuple(sorted(changes.items())))
        made = _configs.get(key)
        if made is not None and made[0] is cfg:
            return made[1]
        try:
            new = dataclasses.replace(cfg, **changes)
        except LocalProtocolError as exc:
            raise OSError(errno.EINVAL, str(exc)) from None
        if len(_configs) >= 64:
            _configs.clear()
        _configs[key] = (cfg, new)
        return new

    # UDP ----------------------------------------------------------------------
    def open_udp(self, ip: IPv4Address, port: int) -> None:
        host = self.m.host

        def go() -> UdpEndpoint:
            ep = host.udp_open(port, ip)
            ep.owner = UdpBridge(self, ep)
            return ep

        try:
            self.endpoint = self.m.runtime.call(go)
        except LocalProtocolError as exc:
            raise oserror(exc) from None
        self.local = self.endpoint.local

    def udp_send(self, payload: bytes, dst: tuple[IPv4Address, int]) -> int:
        ep = self.endpoint
        assert ep is not None
        d = self.m.driver

        def go() -> None:
            ep.sendto(payload, dst, d.now())
            d.schedule_pump()

        try:
            self.m.runtime.call(go)
        except LocalProtocolError as exc:
            raise oserror(exc) from None
        return len(payload)

    # On the loop thread -------------------------------------------------------
    def app_closed(self) -> None:
        """The program closed its end: the bridge finishes, the port is released."""
        self.closed = True
        if self.listener is not None:
            listening.discard(self)
            self.listener.close(self.m.driver.now())
            self.m.driver.pump()
            close_end(self)
        if self.endpoint is not None:
            self.endpoint.close()
            close_end(self)
        bridge = self.bridge
        if bridge is not None:
            bridge.app_closed()
            if bridge.done:
                self.let_go()

    def let_go(self) -> None:
        """Program and connection are both done with this socket: the bridge
        and the stream are dropped, so that they and the connection's TCB are
        freed as soon as the host forgets the connection rather than by the
        cycle collector (asyncio's transports hold their socket, and so this
        State, in a reference cycle: a few dozen objects per connection left
        for the collector's older generations made it a tenth of a short
        connection's cost)."""
        self.bridge = None
        self.stream = None

    def bridge_abort(self) -> None:
        if self.bridge is not None:
            self.bridge.abort()


def close_end(sk: State) -> None:
    loop = sk.m.runtime.host_loop
    try:
        loop.remove_reader(sk.stack_end.fileno())
        loop.remove_writer(sk.stack_end.fileno())
    except (ValueError, OSError):
        pass
    sk.stack_end.close()


class ListenerBridge:
    """A listener's news: each established connection accepted into a new
    socket, as many as the listen() backlog while the program has not taken
    them; the rest wait in the stack's own accept queue (as long again), and
    past both new SYNs are dropped, as Linux drops them. ``make_socket()``
    makes the (stand-in) socket for an accepted connection."""

    def __init__(self, sk: State, listener: TcpListener, make_socket: Callable[[], Any]) -> None:
        self.sk = sk
        self.listener = listener
        self.make_socket = make_socket
        # Stopped at the backlog (or out of descriptors): the program's next
        # accept() asks for another pass (under sk.accept_lock).
        self.held = False

    def _activity(self) -> None:
        sk = self.sk
        listener = self.listener
        while True:
            with sk.accept_lock:
                if len(sk.accepted) >= listener.backlog:
                    self.held = True
                    return
            stream = listener.accept()
            if stream is None:
                return
            try:
                child = self.make_socket()
            except OSError:
                # Out of descriptors (EMFILE, ENFILE): this connection is
                # reset rather than the loop failing; the next accept() (or
                # connection) tries again.
                stream.abort(sk.m.driver.now())
                with sk.accept_lock:
                    self.held = True
                return
            csk = child._sk
            assert csk is not None
            csk.stream = stream
            csk.local, csk.remote = stream.local, stream.remote
            csk.opts = dict(sk.opts)
            Bridge(csk, stream)
            with sk.accept_lock:
                sk.accepted.append(child)
                if sk.signalled:
                    continue
                try:
                    sk.stack_end.send(ACCEPT_SIGNAL)
                    sk.signalled = True
                except OSError:  # the program closed the listener: nobody accepts
                    sk.accepted.pop()
                    stream.abort(sk.m.driver.now())


class UdpBridge:
    def __init__(self, sk: State, ep: UdpEndpoint) -> None:
        self.sk = sk
        self.ep = ep

    def _activity(self) -> None:
        sk, ep = self.sk, self.ep
        if ep.error is not None:
            code, ep.error = ep.error, None
            sk.error = from_errno(code)
            self._put(UDP_HEAD.pack(bytes(4), 0))  # wakes a blocked recvfrom
        while (item := ep.recvfrom()) is not None:
            data, (ip, port) = item
            self._put(UDP_HEAD.pack(ip.packed, port) + data)

    def _put(self, dgram: bytes) -> None:
        try:
            self.sk.stack_end.send(dgram)
        except OSError:
            pass  # the pair is full or closed: dropped, as UDP does


class Bridge:
    """Moves one TCP connection's bytes between its stream and the pair (on the host's thread)."""

    def __init__(self, sk: State, stream: TcpStream) -> None:
        self.sk = sk
        self.stream = stream
        self.d = sk.m.driver
        self.loop = sk.m.runtime.host_loop
        self.fd = sk.stack_end.fileno()
        self.end = sk.stack_end
        # Partly taken buffers are kept as memoryviews: slicing one is free,
        # slicing the bytes would copy up to a chunk per partial send.
        self.to_app: bytes | memoryview = b""  # received, not yet taken by the pair
        self.to_net: bytes | memoryview = b""  # read from the pair, not yet taken by TCP
        self.eof_in = False  # the peer's FIN (to pass on after the data)
        self.eof_out = False  # the program's EOF on its end
        self.reading = False
        self.writing = False
        self.done = False
        self.app_gone = False
        sk.bridge = self
        stream.owner = self
        self._activity()

    def _activity(self) -> None:
        s = self.stream
        while s.pending:
            e = s.pending.popleft()
            if isinstance(e, tev.Connected):
                self._connected()
            elif isinstance(e, tev.EndOfStream):
                self.eof_in = True
            elif isinstance(e, tev.SendSpaceAvailable):
                self._from_app()
            elif (exc := for_event(e)) is not None:
                self._failed(exc)
                return
        st = s.conn.state.value
        if not self.sk.connected.is_set() and (
            st == "ESTABLISHED" or (st == "SYN-RECEIVED" and s.conn.passive)
        ):
            self._connected()  # (a passive child in SYN-RECEIVED: a Fast Open one, RFC 7413)
        self._to_app()

    def _connected(self) -> None:
        sk = self.sk
        if sk.connected.is_set():
            return
        if sk.filled:  # make the app end writable: the handshake is over
            n, sk.filled = sk.filled, 0
            while n > 0:
                try:
                    n -= len(self.end.recv(min(n, 65536)))
                except BlockingIOError:
                    break
        sk.connected.set()
        self._start_reading()

    def _start_reading(self) -> None:
        if not self.reading and not self.eof_out and not self.done:
            self.reading = True
            self.loop.add_reader(self.fd, self._from_app)

    def _stop_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.fd)

    def _from_app(self) -> None:
        """The program wrote: send what TCP's buffer takes.

        The connection is given what this pass reads (data, then maybe the
        program's close) and its segments are made at the next pump, where
        the frames go anyway: a close the program makes before then (it
        wrote its reply and closed) puts the FIN on the reply's segment
        (RFC 9293 §3.10.4: the FIN follows the queued data), not on a
        segment of its own."""
        if self.done or not self.sk.connected.is_set():
            return
        s, now = self.stream, self.d.now()
        conn = s.conn
        try:
            self._from_app_pass(s, conn, now)
        finally:
            if not s.gone:
                self.d.host.tcp_touch_later(s, now)
        self.d.schedule_pump()

    def _from_app_pass(self, s: TcpStream, conn: Any, now: float) -> None:
        for _ in range(16):
            if not self.to_net:
                if self.eof_out:
                    break
                try:
                    data = self.end.recv(_CHUNK)
                except BlockingIOError:
                    break
                except OSError:
                    data = b""
                if not data:
                    self.eof_out = True
                    self._stop_reading()
                    if not self.app_gone and self._app_end_gone():
                        self.app_gone = True  # a close, not a shutdown: app_closed is on its way
                    if self.app_gone and self._resets():
                        self.abort()
                        return
                    if not s.gone:
                        if self.app_gone:
                            conn.close(now)
                        else:
                            conn.shutdown_write(now)
                    break
                self.to_net = data
            try:
                n = conn.send(self.to_net, now)
            except LocalProtocolError:
                self.to_net = b""
                break
            if n < len(self.to_net):  # TCP's buffer is full: wait for SendSpaceAvailable
                self.to_net = memoryview(self.to_net)[n:]
                self._stop_reading()
                break
            self.to_net = b""
        else:
            return
        if not self.to_net and not self.eof_out:
            self._start_reading()

    def _to_app(self) -> None:
        """Data arrived: hand the pair what it takes; the rest waits in TCP."""
        if self.done:
            return
        s = self.stream
        while True:
            if not self.to_app:
                if s.gone or not s.conn.readable_bytes:
                    break
                self.to_app = s.receive(_CHUNK, self.d.now())
                self.d.schedule_pump()  # a window update may be due
            try:
                n = self.end.send(self.to_app)
            except BlockingIOError:
                if not self.writing:
                    self.writing = True
                    self.loop.add_writer(self.fd, self._writable)
                return
            except OSError:  # the program closed its end: unread data resets (SHLD-3)
                self.app_gone = True
                self.abort()
                return
            self.to_app = memoryview(self.to_app)[n:] if n < len(self.to_app) else b""
        if self.eof_in and not self.to_app:
            try:
                self.end.shutdown(_std.SHUT_WR)
            except OSError:
                pass
        if self.eof_out and (s.gone or (self.eof_in and s.conn.state.value == "TIME-WAIT")):
            # Both directions are over: in TIME-WAIT nothing more reaches
            # the program (the host's record answers the peer for 2*MSL).
            self._finish()

    def _writable(self) -> None:
        self.writing = False
        self.loop.remove_writer(self.fd)
        self._to_app()

    def _failed(self, exc: OSError) -> None:
        sk = self.sk
        if not sk.connected.is_set():
            sk.error = exc
            self._connected()  # wakes connect(); SO_ERROR says why
        else:
            sk.error = exc
        self._finish()

    def app_closed(self) -> None:
        self.app_gone = True
        if not self._app_end_gone():
            self.sk.unread = False  # another descriptor (os.dup, a fork's) may still read it
        if self._resets():
            self.abort()
            return
        self._from_app()  # what is left, then FIN

    def _resets(self) -> bool:
        """The program's close is a RST: SO_LINGER with zero time, or data
        received and still pending (unread in the pair, or not yet handed to
        it), which RST shows the peer was lost, as Linux does (RFC 9293 §3.6,
        SHLD-3), not while another descriptor (a fork's) holds the app's end.
        Data that arrives later finds the pair closed and resets too (_to_app).
        Asked by whichever comes first: app_closed or the pair's EOF."""
        if self.sk.linger[0] and self.sk.linger[1] == 0:
            return True
        s = self.stream
        pending = self.sk.unread or self.to_app or (not s.gone and s.conn.readable_bytes)
        return bool(pending) and self._app_end_gone()

    def _app_end_gone(self) -> bool:
        """No descriptor holds the app's end any more (a fork's or a dup's would)."""
        p = select.poll()
        p.register(self.fd, select.POLLIN)
        return any(ev & select.POLLHUP for _, ev in p.poll(0))

    def abort(self) -> None:
        if not self.stream.gone:
            self.stream.abort(self.d.now())
            self.d.pump()
        self._finish()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        self.stream.owner = None
        self._stop_reading()
        if self.writing:
            self.writing = False
            self.loop.remove_writer(self.fd)
        self.end.close()  # the program reads EOF (and its error, if any)
        if self.sk.closed:
            self.sk.let_go()


def close_all(
    runtime: Runtime, linger: float = 2.0, drivers: list[HostDriver] | None = None
) -> dict[str, int]:
    """End of program: listeners closed first (from then on a SYN gets RST),
    every connection's FIN (after its unsent data; the FIN carries any pending
    ACK), ``linger`` seconds for the peers to answer, RST for what is still
    open. A host that listened during the run (:data:`served`) keeps its stack
    up for the whole ``linger``, answering SYNs with RST, even once its
    connections are closed; one that never listened ends as soon as they are.
    Counts back. ``drivers``: the hosts to close (default: every host of ``runtime``)."""
    counts = {"closed": 0, "reset": 0}
    drivers = runtime.drivers if drivers is None else drivers
    for d in drivers:

        def fin(d: Any = d) -> None:
            now = d.now()
            close_listeners(d)
            for stream in list(d.host.connections.values()):
                if stream.gone:
                    continue
                owner = stream.owner
                if isinstance(owner, Bridge):
                    owner.app_gone = True
                    owner._from_app()  # the bytes the program wrote last
                if stream.conn.state.value in ("ESTABLISHED", "SYN-RECEIVED", "CLOSE-WAIT"):
                    stream.close(now)
                    counts["closed"] += 1
            d.pump()

        runtime.call(fin)
    refusing = any(d in served for d in drivers)
    deadline = time.monotonic() + linger
    while (left := deadline - time.monotonic()) > 0:
        if not any(runtime.call(_still_open(d)) for d in drivers):
            if refusing:  # nothing to close: the rest of the window only answers RST
                time.sleep(left)
            break
        time.sleep(0.02)
    for d in drivers:

        def rst(d: Any = d) -> None:
            now = d.now()
            for stream in list(d.host.connections.values()):
                if not stream.gone and stream.conn.state.value not in ("TIME-WAIT", "CLOSED"):
                    stream.abort(now)
                    counts["reset"] += 1
            d.pump()

        runtime.call(rst)
    time.sleep(0.05)  # the last frames leave before the link closes
    served.difference_update(drivers)
    return counts


def close_listeners(d: HostDriver) -> None:
    """On the owning thread: the program's listening sockets on ``d`` close
    (from then on a SYN to their ports gets RST)."""
    now = d.now()
    for sk in list(listening):
        if sk.listener is not None and sk.m.driver is d and not sk.listener.closed:
            sk.listener.close(now)


def _still_open(d: HostDriver) -> Callable[[], bool]:
    return lambda: _lingering(d)


def _lingering(d: HostDriver) -> bool:
    return any(
        not s.gone and s.conn.state.value not in ("TIME-WAIT", "CLOSED")
        for s in d.host.connections.values()
    )
