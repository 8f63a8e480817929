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


def format_batch_handler(
    service: FormatService,
    *,
    monotonic: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> tuple[Handler, Callable[[], None]]:
    """(handler, on_batch) for :func:`open_udp_service`: the clocks are read once
    per batch of datagrams, and a datagram costs one call into the core."""
    tick = service.tick

    def on_batch() -> None:
        tick(monotonic(), int(wall()))

    return service.answer, on_batch


def sntp_handler(
    server: SntpServer,
    *,
    clock_ns: Callable[[], int] = time.time_ns,
    monotonic: Callable[[], float] = time.monotonic,
) -> Handler:
    """The SNTP server as one handler that reads every clock per datagram."""
    handler, on_batch = sntp_batch_handler(server, clock_ns=clock_ns, monotonic=monotonic)

    def on_datagram(data: bytes, addr: Address) -> bytes | None:
        on_batch()
        return handler(data, addr)

    return on_datagram


def sntp_batch_handler(
    server: SntpServer,
    *,
    clock_ns: Callable[[], int] = time.time_ns,
    monotonic: Callable[[], float] = time.monotonic,
) -> tuple[Handler, Callable[[], None]]:
    """(handler, on_batch) for :func:`open_udp_service`. The rate limit's clock
    is read once per batch; the timestamps are read per datagram, always."""
    reply = server.reply
    tick = server.tick

    def on_batch() -> None:
        tick(monotonic())

    def on_datagram(data: bytes, addr: Address) -> bytes | None:
        # t2 is read first thing, t3 as late as the core allows: the client
        # subtracts (t3 - t2) as our processing time. The rate limit is per
        # source host, like the format protocol's (a new port is no new bucket).
        received = clock_ns()
        return reply(data, received, clock_ns(), addr[0])

    return on_datagram, on_batch


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
    fmt_handler, fmt_batch = format_batch_handler(fmt)
    fmt_ep = await open_udp_service(
        "time",
        fmt_handler,
        host,
        port,
        create_datagram_endpoint=create_datagram_endpoint,
        recv_size=MAX_REQUEST + 1,
        on_batch=fmt_batch,
    )
    try:
        sntp_handle, sntp_batch = sntp_batch_handler(sntp)
        sntp_ep = await open_udp_service(
            "sntp",
            sntp_handle,
            host,
            sntp_port,
            create_datagram_endpoint=create_datagram_endpoint,
            recv_size=MAX_REQUEST_LEN + 1,
            on_batch=sntp_batch,
        )
    except BaseException:
        fmt_ep.close()
        raise
    return TimeServer(fmt, sntp, fmt_ep, sntp_ep)
