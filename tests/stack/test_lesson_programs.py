"""The lesson's three programs, unchanged but for their import line, on synack's stack.

Each program is the text a socket-programming lesson shows, with
``import socket`` replaced by
``from synack.adapters.sockets import default_module as socket``; input() and
print() are scripted so the test can drive and check them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from synack.adapters import sockets
from synack.links.memory import MemoryHub
from tests.stack.netfix import make_host

IMPORT = "from synack.adapters.sockets import default_module as socket"

TCP_SERVER = """
import socket

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 8888))
server.listen(5)
print("waiting for connection...")
conn, addr = server.accept()
print("connected by", addr)
data = conn.recv(1024)
print("received:", data.decode())
conn.send("hello client".encode())
conn.close()
server.close()
"""

TCP_CLIENT = """
import socket

client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
client.connect(("127.0.0.1", 8888))
client.send("hello server".encode())
data = client.recv(1024)
print("received:", data.decode())
client.close()
"""

CHAT_SERVER = """
import socket

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 8899))
s.listen(1)
conn, addr = s.accept()
while True:
    data = conn.recv(1024).decode()
    print("client:", data)
    if data == "bye":
        conn.send("bye".encode())
        break
    reply = input("server> ")
    conn.send(reply.encode())
conn.close()
s.close()
"""

CHAT_CLIENT = """
import socket

c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
c.connect(("127.0.0.1", 8899))
while True:
    msg = input("client> ")
    c.send(msg.encode())
    data = c.recv(1024).decode()
    print("server:", data)
    if data == "bye":
        break
c.close()
"""

UDP_TIME_SERVER = """
import socket
import time

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 9999))
print("time server on 9999")
while True:
    data, addr = s.recvfrom(1024)
    fmt = data.decode() or "%Y-%m-%d %X"
    s.sendto(time.strftime(fmt, time.gmtime(0)).encode(), addr)
"""

UDP_TIME_CLIENT = """
import socket

c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(5)
for fmt in ["", "%Y"]:
    c.sendto(fmt.encode(), ("127.0.0.1", 9999))
    data, addr = c.recvfrom(1024)
    print(data.decode(), addr)
c.close()
"""


def _converted(src: str) -> str:
    assert src.count("import socket\n") == 1
    return src.replace("import socket\n", IMPORT + "\n")


class Program:
    def __init__(self, src: str, inputs: list[str] | None = None) -> None:
        self.out: list[str] = []
        self.error: BaseException | None = None
        feed: Iterator[str] = iter(inputs or [])

        def fake_input(prompt: str = "") -> str:
            return next(feed)

        def fake_print(*args: object, **_kw: object) -> None:
            self.out.append(" ".join(str(a) for a in args))

        env: dict[str, object] = {"input": fake_input, "print": fake_print, "__name__": "__main__"}
        code = compile(_converted(src), "<lesson>", "exec")

        def run() -> None:
            try:
                exec(code, env)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 20) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "program hung"
        if self.error is not None:
            raise self.error


@pytest.fixture
def stack() -> Iterator[Callable[[], None]]:
    rt = sockets.Runtime()
    module = rt.add_host(make_host(1, "10.213.0.1/24"), MemoryHub().port())
    sockets.set_default(module)
    try:
        yield lambda: None
    finally:
        sockets.set_default(None)
        rt.close()


def _wait_listening(port: int) -> None:
    import time

    mod = sockets.default_module
    for _ in range(500):
        if mod.runtime.call(
            lambda: mod.host.tcp_has_listener(port) or mod.host.udp_port_in_use(port)
        ):
            return
        time.sleep(0.01)
    raise AssertionError("server never started")


def test_tcp_one_shot(stack: object) -> None:
    server = Program(TCP_SERVER)
    _wait_listening(8888)
    client = Program(TCP_CLIENT)
    client.join()
    server.join()
    assert server.out[0] == "waiting for connection..."
    assert server.out[1].startswith("connected by ('127.0.0.1', ")
    assert server.out[2] == "received: hello server"
    assert client.out == ["received: hello client"]


def test_bye_chat_loop(stack: object) -> None:
    server = Program(CHAT_SERVER, ["hi there", "fine"])
    _wait_listening(8899)
    client = Program(CHAT_CLIENT, ["hello", "how are you", "bye"])
    client.join()
    server.join()
    assert server.out == ["client: hello", "client: how are you", "client: bye"]
    assert client.out == ["server: hi there", "server: fine", "server: bye"]


def test_udp_time_server(stack: object) -> None:
    server = Program(UDP_TIME_SERVER)
    _wait_listening(9999)
    client = Program(UDP_TIME_CLIENT)
    client.join()
    assert client.out == [
        "1970-01-01 00:00:00 ('127.0.0.1', 9999)",
        "1970 ('127.0.0.1', 9999)",
    ]
    assert server.out == ["time server on 9999"]
    assert server.thread.is_alive()  # still serving; the fixture's shutdown ends it


def test_socket_errors_match_stdlib(stack: object) -> None:
    socket = sockets.default_module
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", 1))
    s.close()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        srv.settimeout(0.2)
        with pytest.raises(socket.timeout):
            srv.accept()
        srv.setblocking(False)
        with pytest.raises(BlockingIOError):
            srv.accept()
        with socket.create_connection(("127.0.0.1", port)) as c:
            srv.setblocking(True)
            conn, addr = srv.accept()
            assert addr == c.getsockname() and conn.getpeername() == addr
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
            cfg = c._stream.conn.config
            assert (
                cfg.nodelay,
                cfg.keepalive,
                cfg.keepalive_idle,
                cfg.keepalive_interval,
                cfg.keepalive_count,
            ) == (
                True,
                True,
                30.0,
                5.0,
                3,
            )
            c.sendall(b"x" * 100_000)
            c.shutdown(socket.SHUT_WR)
            buf = bytearray(4096)
            total = 0
            while n := conn.recv_into(buf):
                total += n
            assert total == 100_000
            conn.close()
    with pytest.raises(OSError):
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind(("10.9.9.9", 0))
    assert socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM) == [
        (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 80))
    ]
    with pytest.raises(socket.gaierror):
        socket.gethostbyname("example.com")
    # Buffer sizes apply to connections made after setting them.
    with socket.socket() as small:
        small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        assert small.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 8192
    # UDP to a closed port on a connected socket: ConnectionRefusedError, as Linux.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(2)
        u.connect(("127.0.0.1", 5))
        u.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            u.recv(100)
