"""TCP Fast Open (RFC 7413) through the socket-shaped API and ``synack run``'s patch.

One host talks to itself (its own address): the server asks for Fast Open
with ``setsockopt(IPPROTO_TCP, TCP_FASTOPEN, qlen)``, the client opens with
``sendto(data, MSG_FASTOPEN, address)`` (or ``TCP_FASTOPEN_CONNECT`` and
``send``), as on Linux. The first open gets a cookie, the second carries its
request on the SYN: the host's counters say which.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from synack.adapters import patch
from synack.adapters.sockets import Runtime, SocketModule
from synack.links.memory import MemoryHub
from synack.stack.host import Host
from tests.stack.netfix import make_host
from tests.support import serve_upper

IP = "10.213.0.1"


@pytest.fixture
def stack() -> Iterator[tuple[SocketModule, Host]]:
    rt = Runtime()
    try:
        host = make_host(1, f"{IP}/24", tcp_fastopen=3)
        yield rt.add_host(host, MemoryHub().port()), host
    finally:
        rt.close()


def _read_all(s: Any) -> bytes:
    got = b""
    while chunk := s.recv(4096):
        got += chunk
    return got


def _twice(make: Callable[[], Any], open_: Callable[[Any, bytes], None], host: Host) -> None:
    srv = make()
    srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 8)
    srv.bind((IP, 8200))
    srv.listen()
    seen: list[bytes] = []
    t = serve_upper(srv, 2, seen)
    for req in (b"one", b"two"):
        s = make()
        s.settimeout(10)
        open_(s, req)
        assert _read_all(s) == req.upper()
        s.close()
    t.join(10)
    srv.close()
    assert seen == [b"one", b"two"]
    assert host.counters["tcp-fastopen-request"] == 1
    assert host.counters["tcp-fastopen-accepted"] == 1
    assert host.counters["tcp-fastopen-active-acked"] == 1


def _sendto(s: Any, req: bytes) -> None:
    assert s.sendto(req, socket.MSG_FASTOPEN, (IP, 8200)) == len(req)


def test_socket_api_sendto_msg_fastopen(stack: tuple[SocketModule, Host]) -> None:
    module, host = stack
    _twice(module.socket, _sendto, host)


def test_socket_api_tcp_fastopen_connect(stack: tuple[SocketModule, Host]) -> None:
    module, host = stack

    def open_(s: Any, req: bytes) -> None:
        s.setsockopt(socket.IPPROTO_TCP, module.TCP_FASTOPEN_CONNECT, 1)
        s.connect((IP, 8200))  # returns at once: the SYN waits for the data
        s.sendall(req)

    _twice(module.socket, open_, host)


def test_patched_socket_sendto_msg_fastopen(stack: tuple[SocketModule, Host]) -> None:
    module, host = stack
    patch.install(module)
    try:
        _twice(socket.socket, _sendto, host)
    finally:
        patch.uninstall()
