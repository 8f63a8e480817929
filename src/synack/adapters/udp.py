"""UDP on synack's stack for asyncio: an endpoint is an ``asyncio.DatagramTransport``.

:func:`create_datagram_endpoint` is shaped like
``loop.create_datagram_endpoint`` (the driver offers it as a method), and
:class:`DatagramTransport` like the transport it returns, so a
``DatagramProtocol`` written for asyncio runs on synack's stack unchanged.

Layer: adapters. Imports synack.adapters (base, oserrors), synack.stack, synack.errors.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from synack.adapters.base import Driver, ipv4
from synack.adapters.oserrors import from_errno, oserror
from synack.errors import LocalProtocolError
from synack.stack.host import ANY, UdpEndpoint

__all__ = ["DatagramTransport", "create_datagram_endpoint", "parse_addr"]


def parse_addr(addr: tuple[str, int] | tuple[IPv4Address, int]) -> tuple[IPv4Address, int]:
    """``(host, port)`` as the host takes it; EINVAL, as the kernel says, if it is not one.

    ``""`` is any address; ``localhost`` is 127.0.0.1, as the resolver says."""
    try:
        host, port = addr
    except (ValueError, TypeError) as exc:
        raise OSError(errno.EINVAL, f"bad IPv4 address {addr!r}: {exc}") from None
    if (ip := ipv4(host)) is None or host is None:
        raise OSError(errno.EINVAL, f"bad IPv4 address {addr!r}")
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise OSError(errno.EINVAL, f"bad port {port!r}")
    return ip, port


class DatagramTransport(asyncio.DatagramTransport):
    """One UDP endpoint of a synack host as an ``asyncio.DatagramTransport``.

    Behaves like the transport ``loop.create_datagram_endpoint`` returns:
    ``sendto`` never blocks or buffers (``get_write_buffer_size`` is 0; a
    datagram the host refuses reaches ``error_received``, as an OSError the
    kernel would give); ``datagram_received`` gets ``(data, (ip, port))``; an
    ICMP error about a datagram sent reaches ``error_received`` (port
    unreachable: ``ConnectionRefusedError``; host unreachable: OSError
    EHOSTUNREACH); ``abort`` is ``close``. ``get_extra_info`` knows
    ``sockname``, ``peername`` and ``synack_endpoint`` (the host's
    :class:`~synack.stack.host.UdpEndpoint`).
    """

    def __init__(
        self, driver: Driver, endpoint: UdpEndpoint, protocol: asyncio.DatagramProtocol
    ) -> None:
        super().__init__()
        self._driver = driver
        self._endpoint = endpoint
        self._protocol = protocol
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        ep = self._endpoint
        if name == "sockname":
            ip = ep.local[0] if ep.local[0] != ANY else self._driver.host.ip
            return (str(ip), ep.local[1])
        if name == "peername":
            return (str(ep.remote[0]), ep.remote[1]) if ep.remote else default
        if name == "synack_endpoint":
            return ep
        return default

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            return
        ep = self._endpoint
        if addr is None:
            if ep.remote is None:
                raise OSError(errno.EDESTADDRREQ, "destination address required")
            dst = ep.remote
        else:
            dst = parse_addr(addr)
            if ep.remote is not None and dst != ep.remote:
                raise ValueError(f"Invalid address: must be None or {ep.remote}")
        try:
            self._driver.host.udp_sendto(ep, bytes(data), dst, self._driver.now())
        except LocalProtocolError as exc:
            self._driver.loop.call_soon(self._protocol.error_received, oserror(exc))
            return
        self._driver.schedule_pump()

    def _readable(self) -> None:
        ep = self._endpoint
        while not self._closing and (item := ep.recvfrom()) is not None:
            data, (ip, port) = item
            self._protocol.datagram_received(data, (str(ip), port))

    def _error(self, code: int) -> None:
        self._endpoint.error = None
        self._protocol.error_received(from_errno(code))

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._driver.host.udp_close(self._endpoint)
        self._driver.loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return 0


async def create_datagram_endpoint(
    driver: Driver,
    protocol_factory: Callable[[], asyncio.DatagramProtocol],
    local_addr: tuple[str, int] | None = None,
    remote_addr: tuple[str, int] | None = None,
) -> tuple[DatagramTransport, asyncio.DatagramProtocol]:
    """Open a UDP endpoint on ``driver``'s host, as ``loop.create_datagram_endpoint``
    would on the kernel's: bound to ``local_addr`` (an ephemeral port if none),
    connected to ``remote_addr`` if given (``sendto`` then needs no address)."""
    ip, port = parse_addr(local_addr) if local_addr else (ANY, 0)
    try:
        endpoint = driver.host.udp_open(port, ip)
    except LocalProtocolError as exc:
        raise oserror(exc) from None
    if remote_addr is not None:
        endpoint.remote = parse_addr(remote_addr)
    protocol = protocol_factory()
    transport = DatagramTransport(driver, endpoint, protocol)
    endpoint.owner = transport
    protocol.connection_made(transport)
    # Datagrams that arrived before the owner was set.
    if endpoint.queue:
        transport._readable()
    return transport, protocol
