"""What a transport needs of the driver that runs its host, and the adapters' address parser.

:class:`Driver` is the part of :class:`synack.adapters.driver.HostDriver` the
TCP and UDP transports use: the loop, the host, the clock, and a way to have
the host's frames sent. A protocol rather than an import, so the driver can
build its transports without an import cycle. :func:`ipv4` is the one parser
of a host string every adapter uses (each raises its own error on ``None``).

Layer: adapters. Imports synack.stack.
"""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address
from typing import Protocol

from synack.stack.host import ANY, LOOPBACK, Host, TcpStream

__all__ = ["Driver", "ipv4"]

_NAMED = {"": ANY, "0.0.0.0": ANY, "localhost": LOOPBACK}
# Strings parsed before: IPv4Address() costs microseconds a call, and a
# program names the same few addresses on every connect/sendto.
_parsed: dict[str, IPv4Address] = dict(_NAMED)


def ipv4(host: object) -> IPv4Address | None:
    """``host`` as an IPv4 address: an :class:`IPv4Address` as it is, ``""``,
    ``"0.0.0.0"`` and ``None`` any address, ``"localhost"`` 127.0.0.1 (as the
    resolver says), a dotted literal parsed; ``None`` for anything else (the
    caller's error: EINVAL for a kernel call, gaierror for a resolver)."""
    if type(host) is IPv4Address:
        return host
    if host is None:
        return ANY
    if not isinstance(host, str):
        return host if isinstance(host, IPv4Address) else None
    ip = _parsed.get(host)
    if ip is None:
        try:
            ip = IPv4Address(host)
        except ValueError:
            return None
        if len(_parsed) >= 1024:  # bounded: a program naming many addresses
            _parsed.clear()
            _parsed.update(_NAMED)
        _parsed[host] = ip
    return ip


class Driver(Protocol):
    """The driver as a transport sees it (:class:`~synack.adapters.driver.HostDriver`)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def host(self) -> Host: ...
    def now(self) -> float:
        """The loop's clock, the ``now`` every host call takes."""
        ...

    def pump(self) -> None:
        """Deliver the host's events and send its frames now."""
        ...

    def schedule_pump(self) -> None:
        """Pump once, soon: many calls in one loop iteration make one pump."""
        ...

    def hold(self, stream: TcpStream) -> None:
        """Make ``stream``'s segments (a lone short write given to its
        connection directly) at the latest one loop pass later than a pump
        would (:meth:`synack.adapters.driver.HostDriver.hold`)."""
        ...
