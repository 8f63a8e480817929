"""Asyncio adapters of the time service: the clock is read here, never in the cores.

Layer: apps. Imports synack.apps.services and the rest of synack.apps.time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from synack.apps.services import (
    Address,
    CreateDatagramEndpoint,
    Handler,
    UdpService,
    open_udp_service,
)
from synack.apps.time.fmtproto import MAX_REQUEST, FormatService
from synack.apps.time.sntp import MAX_REQUEST_LEN, SntpServer

DEFAULT_PORT = 9000
DEFAULT_SNTP_PORT = 8123


def format_handler(
    service: FormatService,
    *,
    monotonic: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> Handler:
    handle = service.handle

    def on_datagram(data: bytes, addr: Address) -> bytes | None:
        return handle(data, addr[0], monotonic(), int(wall()))

    return on_datagram


def sntp_handler(
    server: SntpServer,
    *,
    clock_ns: Callable[[], int] = time.time_ns,
    monotonic: Callable[[], float] = time.monotonic,
) -> Handler:
    reply = server.reply
    admit = server.admit

    def on_datagram(data: bytes, addr: Address) -> bytes | None:
        # Per source host, like the format protocol (a new port is no new bucket).
        if not admit(addr[0], monotonic()):
            return None
        # t2 is read first thing, t3 as late as the core allows: the client
        # subtracts (t3 - t2) as our processing time.
        received = clock_ns()
        return reply(data, received, clock_ns())

    return on_datagram


@dataclass(slots=True)
class TimeServer:
    fmt: FormatService
    sntp: SntpServer
    fmt_endpoint: UdpService
    sntp_endpoint: UdpService

    def close(self) -> None:
        self.fmt_endpoint.close()
        self.sntp_endpoint.close()


async def start_time_server(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    sntp_port: int = DEFAULT_SNTP_PORT,
    *,
    rate: float = 50.0,
    burst: float = 100.0,
    create_datagram_endpoint: CreateDatagramEndpoint | None = None,
) -> TimeServer:
    """Both services of ``synack time serve``. Without ``create_datagram_endpoint``
    the kernel fast path is used; pass one (the loop's, or synack's stack's) to
    run them as DatagramProtocols."""
    fmt = FormatService(rate=rate, burst=burst)
    sntp = SntpServer(rate=rate, burst=burst)
    fmt_ep = await open_udp_service(
        "time",
        format_handler(fmt),
        host,
        port,
        create_datagram_endpoint=create_datagram_endpoint,
        recv_size=MAX_REQUEST + 1,
    )
    try:
        sntp_ep = await open_udp_service(
            "sntp",
            sntp_handler(sntp),
            host,
            sntp_port,
            create_datagram_endpoint=create_datagram_endpoint,
            recv_size=MAX_REQUEST_LEN + 1,
        )
    except BaseException:
        fmt_ep.close()
        raise
    return TimeServer(fmt, sntp, fmt_ep, sntp_ep)
