"""The one event -> OSError mapping (synack.adapters.oserrors) and its users."""

from __future__ import annotations

import asyncio
import errno
from ipaddress import IPv4Address

import pytest

from synack.adapters.driver import HostDriver
from synack.adapters.oserrors import for_event, from_errno, oserror
from synack.errors import LocalProtocolError
from synack.links.memory import MemoryHub
from synack.stack.events import HostUnreachable
from synack.tcp import events as tev
from tests.stack.netfix import make_host


@pytest.mark.parametrize(
    ("event", "cls", "code"),
    [
        (tev.ConnectionRefused(), ConnectionRefusedError, errno.ECONNREFUSED),
        (tev.ConnectionReset(), ConnectionResetError, errno.ECONNRESET),
        (HostUnreachable(IPv4Address("10.9.9.9")), OSError, errno.EHOSTUNREACH),
        (tev.TimedOut("retransmit"), TimeoutError, errno.ETIMEDOUT),
    ],
)
def test_failure_events_map_to_the_kernels_errors(event: object, cls: type, code: int) -> None:
    exc = for_event(event)
    assert type(exc) is cls
    assert exc is not None and exc.errno == code


def test_unreachable_and_timeout_say_which() -> None:
    assert "10.9.9.9" in str(for_event(HostUnreachable(IPv4Address("10.9.9.9"))))
    assert "keepalive" in str(for_event(tev.TimedOut("keepalive")))


@pytest.mark.parametrize("event", [tev.Connected(), tev.EndOfStream(), tev.Closed()])
def test_other_events_are_not_errors(event: object) -> None:
    assert for_event(event) is None


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (errno.ECONNREFUSED, ConnectionRefusedError),
        (errno.EPIPE, BrokenPipeError),
        (errno.EHOSTUNREACH, OSError),  # not a ConnectionRefusedError, as on Linux
    ],
)
def test_from_errno_picks_the_stdlib_subclass(code: int, cls: type) -> None:
    exc = from_errno(code, "why")
    assert type(exc) is cls and exc.errno == code and str(exc).endswith("why")


def test_host_refusal_keeps_its_errno() -> None:
    exc = LocalProtocolError("port in use")
    exc.errno = errno.EADDRINUSE  # type: ignore[attr-defined]
    assert oserror(exc).errno == errno.EADDRINUSE
    assert oserror(LocalProtocolError("bad")).errno == errno.EINVAL


def test_udp_port_unreachable_reaches_the_protocol_as_connection_refused() -> None:
    async def main() -> BaseException:
        hub = MemoryHub()
        a = HostDriver(make_host(1, "10.213.0.1/24"), hub.port())
        b = HostDriver(make_host(2, "10.213.0.2/24"), hub.port())
        a.start()
        b.start()
        got: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        class Proto(asyncio.DatagramProtocol):
            def error_received(self, exc: Exception) -> None:
                if not got.done():
                    got.set_result(exc)

        transport, _ = await a.create_datagram_endpoint(Proto, remote_addr=("10.213.0.2", 9))
        transport.sendto(b"anyone?")
        try:
            return await asyncio.wait_for(got, 5)
        finally:
            transport.close()
            a.close()
            b.close()

    exc = asyncio.run(main())
    assert type(exc) is ConnectionRefusedError and exc.errno == errno.ECONNREFUSED
