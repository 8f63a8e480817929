"""synack.adapters.patch: unchanged stdlib code (socket, selectors, socketserver,
http.server, urllib, asyncio) running on one synack host (its own loopback and
address, on a MemoryHub), checked byte for byte."""

from __future__ import annotations

import asyncio
import errno
import gc
import hashlib
import http.server
import os
import resource
import select
import selectors
import shutil
import socket
import socketserver
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
import weakref
from pathlib import Path
from typing import Any

import pytest

from synack.adapters import patch
from synack.adapters.bridge import Latch
from synack.adapters.sockets import Runtime, SocketModule
from synack.stack.events import FrameTrace
from tests.adapters import IP
from tests.stack.netfix import make_host


def blob(n: int) -> bytes:
    return hashlib.shake_256(str(n).encode()).digest(n)


def test_sockets_are_synack_and_unix_stays_kernel(stack: tuple[Runtime, SocketModule]) -> None:
    s = socket.socket()
    assert s._sk is not None and s.family == socket.AF_INET  # type: ignore[attr-defined]
    assert s.fileno() >= 0
    s.close()
    a, b = socket.socketpair()
    with a, b:
        assert a.family == socket.AF_UNIX and a._sk is None  # type: ignore[attr-defined]
        a.sendall(b"kernel")
        assert b.recv(10) == b"kernel"


def test_unsupported_requests_get_the_kernels_errors(
    stack: tuple[Runtime, SocketModule],
) -> None:
    with pytest.raises(OSError) as e:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    assert e.value.errno == errno.EAFNOSUPPORT
    with pytest.raises(OSError) as e:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    assert e.value.errno == errno.ESOCKTNOSUPPORT
    with socket.socket() as s:
        with pytest.raises(OSError) as e:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, 3)
        assert e.value.errno == errno.ENOPROTOOPT
        with pytest.raises(OSError) as e:
            s.bind(("192.0.2.7", 0))
        assert e.value.errno == errno.EADDRNOTAVAIL
        with pytest.raises(ConnectionRefusedError):
            s.connect((IP, 9))  # nobody listens: RST
    assert socket.has_ipv6 is False
    assert {ai[0] for ai in socket.getaddrinfo("localhost", 80)} == {socket.AF_INET}


def test_blocking_socketserver_echo_with_makefile(stack: tuple[Runtime, SocketModule]) -> None:
    class Echo(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while line := self.rfile.readline():
                self.wfile.write(line)

    data = b"".join(blob(100 + i).hex().encode() + b"\n" for i in range(200))
    with socketserver.ThreadingTCPServer((IP, 0), Echo) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        with socket.create_connection((IP, port), timeout=10) as c:
            assert c.getpeername() == (IP, port)
            reader = c.makefile("rb")
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
            got = reader.read()
            reader.close()
        server.shutdown()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_selectors_non_blocking_accept_connect_and_timeouts(
    stack: tuple[Runtime, SocketModule],
) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    srv.setblocking(False)
    with pytest.raises(BlockingIOError):
        srv.accept()
    c = socket.socket()
    c.setblocking(False)
    assert c.connect_ex(srv.getsockname()) == errno.EINPROGRESS
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ, "accept")
    sel.register(c, selectors.EVENT_WRITE, "connected")
    seen: set[str] = set()
    for _ in range(10):
        for key, _ in sel.select(5):
            seen.add(key.data)
            sel.unregister(key.fileobj)
        if seen == {"accept", "connected"}:
            break
    assert seen == {"accept", "connected"}
    assert c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    conn, addr = srv.accept()
    assert addr == c.getsockname()
    conn.settimeout(0.2)
    with pytest.raises(TimeoutError):
        conn.recv(10)
    c.setblocking(True)
    c.sendall(b"ping")
    assert conn.recv(10) == b"ping"
    for s in (c, conn, srv):
        s.close()
    sel.close()


def test_http_server_and_urllib(stack: tuple[Runtime, SocketModule]) -> None:
    with tempfile.TemporaryDirectory() as root:
        body = blob(300_000)
        with open(os.path.join(root, "f.bin"), "wb") as f:
            f.write(body)

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a: object, **kw: object) -> None:
                super().__init__(*a, directory=root, **kw)  # type: ignore[arg-type]

            def log_message(self, *args: object) -> None:
                pass

        with http.server.ThreadingHTTPServer((IP, 0), Quiet) as server:
            threading.Thread(target=server.serve_forever, daemon=True).start()
            url = f"http://{IP}:{server.server_address[1]}/f.bin"
            with urllib.request.urlopen(url, timeout=10) as r:
                got = r.read()
            server.shutdown()
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()


def test_asyncio_streams_datagrams_and_sendfile(stack: tuple[Runtime, SocketModule]) -> None:
    data = blob(1_000_000)

    async def main() -> None:
        async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while chunk := await r.read(65536):
                w.write(chunk)
                await w.drain()
            w.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)

        async def feed() -> None:
            w.write(data)
            await w.drain()
            w.write_eof()

        feeder = asyncio.create_task(feed())
        got = await r.read()
        await feeder
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        w.close()

        # loop.sendfile on a transport: the descriptor path (os.sendfile) works.
        with tempfile.TemporaryFile() as f:
            f.write(data[:200_000])
            f.flush()
            f.seek(0)
            r2, w2 = await asyncio.open_connection("127.0.0.1", port)
            sent = await asyncio.get_running_loop().sendfile(w2.transport, f)
            w2.write_eof()
            assert sent == 200_000
            assert await r2.read() == data[:200_000]
            w2.close()
        server.close()
        await server.wait_closed()

        class Udp(asyncio.DatagramProtocol):
            def __init__(self) -> None:
                self.got: asyncio.Queue[tuple[bytes, object]] = asyncio.Queue()
                self.transport: asyncio.DatagramTransport | None = None

            def connection_made(self, t: asyncio.BaseTransport) -> None:
                self.transport = t  # type: ignore[assignment]

            def datagram_received(self, d: bytes, addr: object) -> None:
                self.got.put_nowait((d, addr))

        loop = asyncio.get_running_loop()
        ta, pa = await loop.create_datagram_endpoint(Udp, local_addr=(IP, 0))
        tb, pb = await loop.create_datagram_endpoint(Udp, remote_addr=ta.get_extra_info("sockname"))
        tb.sendto(b"over synack udp")
        d, addr = await asyncio.wait_for(pa.got.get(), 5)
        assert d == b"over synack udp" and addr == tb.get_extra_info("sockname")
        ta.sendto(b"back", addr)
        assert (await asyncio.wait_for(pb.got.get(), 5))[0] == b"back"
        ta.close()
        tb.close()

    with asyncio.Runner(loop_factory=patch.loop_factory) as runner:
        runner.run(asyncio.wait_for(main(), 30))


def test_close_all_sends_fin_to_open_connections(stack: tuple[Runtime, SocketModule]) -> None:
    rt, module = stack
    # The peer: a second host with synack's own socket API, left open by close_all.
    hub = module.driver.link.hub  # type: ignore[attr-defined]
    peer = rt.add_host(make_host(2, "10.213.0.2/24"), hub.port())
    srv = peer.create_server(("10.213.0.2", 0))
    c = socket.create_connection(srv.getsockname(), timeout=5)
    conn, _ = srv.accept()
    c.sendall(b"last words")
    got: list[bytes] = []

    def peer_reads_then_closes() -> None:
        conn.settimeout(5)
        while chunk := conn.recv(100):
            got.append(chunk)
        got.append(b"<EOF>")  # the FIN
        conn.close()

    t = threading.Thread(target=peer_reads_then_closes)
    t.start()
    counts = patch.close_all(rt, linger=3.0, drivers=[module.driver])
    t.join(5)
    assert got == [b"last words", b"<EOF>"]
    assert counts == {"closed": 1, "reset": 0}  # the peer's FIN came within the linger
    srv.close()


def test_close_all_resets_what_outlives_the_linger(stack: tuple[Runtime, SocketModule]) -> None:
    rt, module = stack
    hub = module.driver.link.hub  # type: ignore[attr-defined]
    peer = rt.add_host(make_host(2, "10.213.0.2/24"), hub.port())
    srv = peer.create_server(("10.213.0.2", 0))
    c = socket.create_connection(srv.getsockname(), timeout=5)  # kept open, never closed
    conn, _ = srv.accept()
    counts = patch.close_all(rt, linger=0.3, drivers=[module.driver])
    assert counts == {"closed": 1, "reset": 1}  # FIN, no answer from the app, then RST
    conn.settimeout(5)
    with pytest.raises(ConnectionResetError):  # (b"" for the FIN may come first)
        for _ in range(3):
            conn.recv(100)
            time.sleep(0.1)
    srv.close()
    assert c.fileno() >= 0


def _pair_with_peer(rt: Runtime, module: SocketModule) -> tuple[socket.socket, Any, Any]:
    """A synack (patched) socket connected to a peer host's socket-shaped API."""
    hub = module.driver.link.hub  # type: ignore[attr-defined]
    peer = rt.add_host(make_host(2, "10.213.0.2/24"), hub.port())
    srv = peer.create_server(("10.213.0.2", 0))
    c = socket.create_connection(srv.getsockname(), timeout=5)
    conn, _ = srv.accept()
    conn.settimeout(5)
    return c, conn, srv


def test_close_with_unread_data_resets(stack: tuple[Runtime, SocketModule]) -> None:
    """RFC 9293 §3.6 SHLD-3, as Linux: a close with received data unread sends
    RST (the peer learns data was lost); read to the end, the close is a FIN."""
    rt, module = stack
    c, conn, srv = _pair_with_peer(rt, module)
    conn.sendall(b"never read")
    assert select.select([c], [], [], 5)[0]  # the bytes wait in c's buffer
    c.close()
    with pytest.raises(ConnectionResetError):
        conn.recv(100)
    conn.close()
    c = socket.create_connection(srv.getsockname(), timeout=5)
    conn, _ = srv.accept()
    conn.settimeout(5)
    conn.sendall(b"read")
    assert c.recv(100) == b"read"
    c.close()
    assert conn.recv(100) == b""  # all read: FIN, not RST
    conn.close()
    srv.close()


def test_close_with_unread_data_but_another_descriptor_is_no_reset(
    stack: tuple[Runtime, SocketModule],
) -> None:
    """The bytes are not lost while another descriptor (a dup, a fork's) holds
    the socket: the close is no RST, the other descriptor reads them."""
    rt, module = stack
    c, conn, srv = _pair_with_peer(rt, module)
    conn.sendall(b"for the other one")
    assert select.select([c], [], [], 5)[0]
    other = os.dup(c.fileno())
    c.close()
    time.sleep(0.1)  # the loop thread has seen the close
    assert os.read(other, 100) == b"for the other one"
    os.close(other)
    assert conn.recv(100) == b""  # the last close, nothing unread: FIN
    conn.close()
    srv.close()


def test_dup_shares_the_connection_and_detach_hands_over_its_descriptor(
    stack: tuple[Runtime, SocketModule],
) -> None:
    rt, module = stack
    c, conn, srv = _pair_with_peer(rt, module)
    d = c.dup()
    assert d.fileno() != c.fileno() and d.getpeername() == c.getpeername()
    c.close()  # not the last: the connection stays
    with pytest.raises(OSError) as closed:
        c.send(b"x")
    assert closed.value.errno == errno.EBADF
    d.sendall(b"through the dup")
    assert conn.recv(100) == b"through the dup"
    conn.sendall(b"to the dup")
    assert d.recv(100) == b"to the dup"
    fd = d.detach()  # the descriptor now carries the connection's bytes
    assert d.fileno() == -1
    raw = socket.socket(fileno=fd)
    raw.settimeout(5)  # (the descriptor is non-blocking, as a kernel one from a timeout socket)
    assert raw.family == socket.AF_UNIX  # a plain kernel socket object
    raw.sendall(b"raw bytes")
    assert conn.recv(100) == b"raw bytes"
    conn.sendall(b"raw back")
    assert raw.recv(100) == b"raw back"
    raw.close()
    assert conn.recv(100) == b""  # its close is the connection's FIN
    conn.close()
    srv.close()


def test_a_dup_listener_accepts_and_framed_sockets_are_not_detached(
    stack: tuple[Runtime, SocketModule],
) -> None:
    lst = socket.create_server((IP, 0))
    again = lst.dup()
    lst.close()
    with socket.create_connection(again.getsockname(), timeout=5) as c:
        conn, _ = again.accept()
        c.sendall(b"via the dup listener")
        assert conn.recv(100) == b"via the dup listener"
        conn.close()
    port = again.getsockname()[1]
    for s in (again, socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket()):
        with pytest.raises(OSError) as exc:
            s.detach()  # a listener's, a datagram's or an unconnected descriptor
        assert exc.value.errno == errno.EOPNOTSUPP
        s.close()
    time.sleep(0.1)  # the loop thread has closed the listener
    socket.create_server((IP, port)).close()  # the last close released the port


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
def test_ssl_wraps_a_synack_socket(stack: tuple[Runtime, SocketModule], tmp_path: Path) -> None:
    """ssl's wrap_socket() detaches the socket it wraps: TLS runs over the
    descriptor that carries the connection's bytes, both ends on synack."""
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    make_cert = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost"
    subprocess.run(
        [*make_cert.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=cert)
    client_ctx.check_hostname = False
    srv = socket.create_server((IP, 0))

    def serve() -> None:
        conn, _ = srv.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"tls: " + tls.recv(100))

    t = threading.Thread(target=serve)
    t.start()
    with client_ctx.wrap_socket(socket.create_connection(srv.getsockname(), timeout=5)) as tls:
        tls.sendall(b"over synack")
        assert tls.recv(100) == b"tls: over synack"  # the certificate verified, too
    t.join(5)
    srv.close()


def test_hostile_calls_get_the_kernels_errors(stack: tuple[Runtime, SocketModule]) -> None:
    s = socket.socket()
    with pytest.raises(TypeError):
        s.connect(("10.213.0.9",))  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        s.bind((IP, 70000))
    with pytest.raises(socket.gaierror):
        s.connect(("no-such-host.invalid", 80))
    with pytest.raises(OSError) as e:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        s.shutdown(socket.SHUT_WR)
    assert e.value.errno == errno.ENOTCONN
    s.close()
    for call in (lambda: s.bind((IP, 0)), lambda: s.connect((IP, 80)), s.getsockname, s.listen):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EBADF
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(OSError) as e:
        u.send(b"nowhere")
    assert e.value.errno == errno.EDESTADDRREQ
    # What the stdlib's socket raises for these, not an IndexError or a
    # UnicodeDecodeError from inside synack.
    with pytest.raises(TypeError, match=r"2 or 3 arguments \(1 given\)"):
        u.sendto(b"x")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"\(4 given\)"):
        u.sendto(b"x", 0, (IP, 9), 5)  # type: ignore[call-overload]
    with pytest.raises(socket.gaierror):
        u.sendto(b"x", (b"\xff", 9))
    u.close()


def test_peer_reset_is_raised_once_then_eof(stack: tuple[Runtime, SocketModule]) -> None:
    srv = socket.create_server((IP, 0))
    c = socket.create_connection(srv.getsockname(), timeout=5)
    conn, _ = srv.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()  # RST
    with pytest.raises(ConnectionResetError):
        c.recv(10)
    assert c.recv(10) == b""
    c.close()
    srv.close()


def test_options_reach_the_connection_in_order_without_a_round_trip(
    stack: tuple[Runtime, SocketModule],
) -> None:
    rt, _ = stack
    srv = socket.create_server((IP, 0))
    c = socket.create_connection(srv.getsockname(), timeout=5)
    conn, _ = srv.accept()
    stream = conn._sk.stream  # type: ignore[attr-defined]
    assert stream is not None
    assert not rt.call(lambda: stream.conn.config.nodelay)
    # What asyncio and aiohttp do to every connection they make.
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    conn.sendall(b"after the options")  # reaches the loop after them
    assert c.recv(100) == b"after the options"
    cfg = rt.call(lambda: stream.conn.config)
    assert cfg.nodelay and cfg.keepalive
    assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    # The same options make the same configuration object (built once).
    c2 = socket.create_connection(srv.getsockname(), timeout=5)
    conn2, _ = srv.accept()
    conn2.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    conn2.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream2 = conn2._sk.stream  # type: ignore[attr-defined]
    assert rt.call(lambda: stream2.conn.config) is cfg
    conn2.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    assert not rt.call(lambda: stream2.conn.config.nodelay)
    # A value the stack refuses is still the caller's EINVAL, at once.
    with pytest.raises(OSError) as e:
        conn2.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 40)
    assert e.value.errno == errno.EINVAL
    for s in (c, c2, conn, conn2, srv):
        s.close()


def test_posts_run_in_order_and_one_failure_strands_none(
    stack: tuple[Runtime, SocketModule],
) -> None:
    rt, _ = stack
    seen: list[int] = []
    errors: list[dict[str, object]] = []
    rt.call(lambda: rt.loop.set_exception_handler(lambda loop, ctx: errors.append(ctx)))

    def boom() -> None:
        raise ValueError("a failing post")

    for i in range(50):
        rt.post(lambda i=i: seen.append(i))
        if i == 10:
            rt.post(boom)
    rt.call(lambda: None)  # the loop has run everything posted before this
    assert seen == list(range(50))
    assert len(errors) == 1 and isinstance(errors[0]["exception"], ValueError)
    rt.call(lambda: rt.loop.set_exception_handler(None))


def test_hundreds_waiting_to_be_accepted_are_all_accepted(
    stack: tuple[Runtime, SocketModule],
) -> None:
    # One byte per waiting connection used to fill the listener's pair after
    # ~280 (a Unix socket charges each send about a kilobyte): the rest were reset.
    n = 600
    srv = socket.create_server((IP, 0), backlog=1024)
    clients = []
    for _ in range(n):
        c = socket.socket()
        c.setblocking(False)
        assert c.connect_ex(srv.getsockname()) == errno.EINPROGRESS
        clients.append(c)
    deadline = time.monotonic() + 20
    while len(srv._sk.accepted) < n and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.05)
    srv.setblocking(False)
    accepted = []
    while True:
        try:
            accepted.append(srv.accept()[0])
        except BlockingIOError:
            break
    assert len(accepted) == n
    # Each is a working connection: a byte from every client reaches its peer.
    _each_carries_a_byte(clients, accepted, b"!")
    srv.close()


def _each_carries_a_byte(
    clients: list[socket.socket], accepted: list[socket.socket], byte: bytes
) -> None:
    """A byte from every client reaches its accepted peer; then all are closed."""
    for c in clients:
        c.setblocking(True)
        c.sendall(byte)
    for a in accepted:
        a.settimeout(5)
        assert a.recv(1) == byte
    for s in [*clients, *accepted]:
        s.close()


def test_an_option_set_on_the_listener_after_listen_reaches_its_children(
    stack: tuple[Runtime, SocketModule],
) -> None:
    rt, _ = stack
    srv = socket.create_server((IP, 0))
    srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # after listen()
    c = socket.create_connection(srv.getsockname(), timeout=5)
    conn, _ = srv.accept()
    stream = conn._sk.stream  # type: ignore[attr-defined]
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited value, set again
    assert rt.call(lambda: stream.conn.config.nodelay)
    for s in (c, conn, srv):
        s.close()


def test_the_backlog_bounds_what_waits_and_the_rest_is_accepted_later(
    stack: tuple[Runtime, SocketModule],
) -> None:
    rt, module = stack
    n, backlog = 12, 3
    srv = socket.create_server((IP, 0), backlog=backlog)
    clients = []
    for _ in range(n):
        c = socket.socket()
        c.setblocking(False)
        assert c.connect_ex(srv.getsockname()) == errno.EINPROGRESS
        clients.append(c)
    time.sleep(0.5)
    # As the kernel's accept queue: no more than the backlog taken off the
    # stack (each is a descriptor pair), the stack's own queue as long again.
    assert len(srv._sk.accepted) == backlog  # type: ignore[attr-defined]
    listener = srv._sk.listener  # type: ignore[attr-defined]
    assert rt.call(lambda: len(listener.queue)) == backlog
    overflow = rt.call(lambda: module.host.counters["tcp-listen-overflow"])
    assert overflow >= n - 2 * backlog
    accepted = []
    srv.settimeout(10)
    while len(accepted) < n:  # the dropped SYNs come back (retransmitted after ~1 s)
        accepted.append(srv.accept()[0])
    _each_carries_a_byte(clients, accepted, b"?")
    srv.close()


def test_out_of_descriptors_resets_the_connection_and_the_stack_runs_on(
    stack: tuple[Runtime, SocketModule],
) -> None:
    srv = socket.create_server((IP, 0))
    c = socket.create_connection(srv.getsockname(), timeout=5)
    conn, _ = srv.accept()
    late = socket.socket()  # its own pair made while descriptors remain
    late.settimeout(5)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    filler: list[int] = []
    try:
        # Every descriptor taken: the accepted connection's pair cannot be made
        # (EMFILE on the loop thread).
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
        while True:
            try:
                filler.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        with pytest.raises(ConnectionResetError):
            late.connect(srv.getsockname())  # the stack completes the handshake...
            late.recv(1)  # ...and resets what it cannot hand over
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    # The established connection and the listener still work.
    c.sendall(b"still")
    assert conn.recv(5) == b"still"
    c2 = socket.create_connection(srv.getsockname(), timeout=5)
    conn2, _ = srv.accept()
    c2.sendall(b"new")
    assert conn2.recv(3) == b"new"
    for s in (c, conn, c2, conn2, late, srv):
        s.close()


def _tcp_flags_out(frames: list[bytes], port: int) -> list[int]:
    """The TCP flags of each frame from ``port`` (IPv4 in Ethernet II)."""
    flags = []
    for f in frames:
        if f[12:14] != b"\x08\x00" or f[23] != socket.IPPROTO_TCP:
            continue
        tcp = f[14 + (f[14] & 0x0F) * 4 :]
        if int.from_bytes(tcp[:2], "big") == port:
            flags.append(tcp[13])
    return flags


def _peer(rt: Runtime, module: SocketModule) -> SocketModule:
    """A second host on the first one's hub (the kernel-less peer)."""
    return rt.add_host(make_host(2, "10.213.0.2/24"), module.driver.link.hub.port())  # type: ignore[attr-defined]


def _frames_out(rt: Runtime, module: SocketModule) -> list[bytes]:
    """Every frame ``module``'s host sends from now on (filled in as they go)."""
    out: list[bytes] = []
    host = module.driver.host

    def watch(r: object) -> None:
        if isinstance(r, FrameTrace) and r.direction == "out":
            out.append(r.frame)

    rt.call(lambda: host.observers.append(watch))
    return out


def _settled_flags(out: list[bytes], port: int, n: int) -> list[int]:
    """:func:`_tcp_flags_out` once ``n`` frames from ``port`` went out and a
    moment passed with nothing more (or 5 s)."""
    deadline = time.monotonic() + 5
    while len(_tcp_flags_out(out, port)) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    return _tcp_flags_out(out, port)


def test_a_one_request_connection_is_three_frames_out(
    stack: tuple[Runtime, SocketModule],
) -> None:
    """A server that reads one request, writes its reply and closes sends three
    frames: SYN-ACK; the reply with the FIN on it (RFC 9293 §3.10.4: FIN after
    the queued data), which also carries the delayed ACK of the request
    (§3.8.6.3) and the scaled window (no window update of its own after the
    read); the ACK of the peer's FIN."""
    rt, module = stack
    peer = _peer(rt, module)
    out = _frames_out(rt, module)
    with socket.socket() as srv:
        srv.bind((IP, 0))
        srv.listen()
        port = srv.getsockname()[1]
        c = peer.create_connection((IP, port), timeout=5)
        conn, _ = srv.accept()
        conn.settimeout(5)
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert conn.recv(100) == b"GET / HTTP/1.0\r\n\r\n"
        # The loop thread waits while the program writes and closes: it then
        # finds both at once, as it does when the program's thread runs on.
        gate = threading.Event()
        rt.post(lambda: gate.wait(5))
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello")
        conn.close()
        gate.set()
        got = b""
        while chunk := c.recv(100):
            got += chunk
        assert got == b"HTTP/1.0 200 OK\r\n\r\nhello"
        c.close()
        syn, ack, psh, fin = 0x02, 0x10, 0x08, 0x01
        assert _settled_flags(out, port, 3) == [syn | ack, fin | psh | ack, ack]


def test_a_closed_connection_is_freed_without_the_cycle_collector(
    stack: tuple[Runtime, SocketModule],
) -> None:
    """Once the program closed its socket and the connection is in TIME-WAIT,
    the bridge, stream and TCB are freed by reference counting (a program's
    asyncio transport keeps its socket in a cycle; what hangs off the socket
    must not wait for the collector)."""
    rt, module = stack
    peer = _peer(rt, module)
    gc.disable()
    try:
        with socket.socket() as srv:
            srv.bind((IP, 0))
            srv.listen()
            c = peer.create_connection((IP, srv.getsockname()[1]), timeout=5)
            conn, _ = srv.accept()
            sk = conn._sk  # type: ignore[attr-defined]
            tcb = weakref.ref(sk.stream)  # the stream holds the TCB
            bridge = weakref.ref(sk.bridge)
            conn.sendall(b"bye")
            conn.close()
            assert c.recv(10) == b"bye" and c.recv(10) == b""
            c.close()
            deadline = time.monotonic() + 5
            while (tcb() is not None or bridge() is not None) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert tcb() is None and bridge() is None
            assert len(module.driver.host.tcp.time_wait) == 1  # the record answers the peer
    finally:
        gc.enable()


def test_latch_wakes_a_blocked_waiter_and_times_out_like_an_event() -> None:
    latch = Latch()
    assert not latch.is_set() and latch.wait(0.01) is False
    woken: list[bool] = []
    waiter = threading.Thread(target=lambda: woken.append(latch.wait(5)))
    waiter.start()
    time.sleep(0.05)  # the waiter blocks on the Event it made
    latch.set()
    waiter.join(5)
    assert woken == [True] and latch.is_set() and latch.wait(0) is True


def test_a_program_on_the_stacks_loop_gets_its_fin_on_its_reply(
    stack: tuple[Runtime, SocketModule],
) -> None:
    """A program running on the stack's own loop (as aiohttp does there):
    it writes its reply, and closes two loop iterations later, after the
    bridge has read the reply. The reply's segment is made at the pump,
    after the close: one segment with the data and the FIN (§3.10.4)."""
    rt, module = stack
    peer = _peer(rt, module)
    out = _frames_out(rt, module)
    with socket.socket() as srv:
        srv.bind((IP, 0))
        srv.listen()
        port = srv.getsockname()[1]
        c = peer.create_connection((IP, port), timeout=5)
        conn, _ = srv.accept()
        c.sendall(b"GET")
        conn.settimeout(5)
        assert conn.recv(10) == b"GET"
        loop = rt.loop

        def reply() -> None:  # on the loop thread
            conn.send(b"reply")
            loop.call_soon(lambda: loop.call_soon(conn.close))

        rt.call(reply)
        got = b""
        while chunk := c.recv(100):
            got += chunk
        assert got == b"reply"
        c.close()
        # SYN-ACK, FIN+PSH+ACK, ACK
        assert _settled_flags(out, port, 3) == [0x12, 0x19, 0x10]
