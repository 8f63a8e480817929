"""synack.adapters.base.ipv4: the one host-string parser of the adapters, and the
error each caller makes of what it refuses."""

from __future__ import annotations

import errno
import socket
from ipaddress import IPv4Address

import pytest

from synack.adapters import patch
from synack.adapters.base import ipv4
from synack.adapters.sockets import _ip
from synack.adapters.tcp import TcpApi
from synack.adapters.udp import parse_addr
from synack.stack.host import ANY


def test_ipv4_parses_each_form_once() -> None:
    given = IPv4Address("10.213.0.9")
    assert ipv4(given) is given  # an address it was given is not parsed again
    for any_ in ("", "0.0.0.0", None):
        assert ipv4(any_) == ANY
    assert ipv4("localhost") == IPv4Address("127.0.0.1")
    first = ipv4("10.213.7.7")
    assert first == IPv4Address("10.213.7.7")
    assert ipv4("10.213.7.7") is first  # the second time from the memo
    for bad in ("example.com", "10.0.0.256", "::1", "010.1.1.1", 42, b"10.0.0.1", ("a",)):
        assert ipv4(bad) is None, bad


def test_each_caller_raises_its_own_error() -> None:
    with pytest.raises(socket.gaierror) as gai:  # a resolver's error (socket-shaped API)
        _ip("example.com")
    assert gai.value.errno == socket.EAI_NONAME
    with pytest.raises(OSError) as einval:  # a kernel call's error (asyncio-shaped API)
        TcpApi(None)._ip("example.com")  # type: ignore[arg-type]
    assert einval.value.errno == errno.EINVAL
    with pytest.raises(OSError) as udp:
        parse_addr(("example.com", 53))
    assert udp.value.errno == errno.EINVAL
    with pytest.raises(OSError):
        parse_addr((None, 53))  # type: ignore[arg-type]
    assert patch._addr((b"10.213.0.3", 80)) == (IPv4Address("10.213.0.3"), 80)
    assert patch._addr(("localhost", 80)) == (IPv4Address("127.0.0.1"), 80)
    with pytest.raises(TypeError):
        patch._addr((42, 80))
