"""asyncio over a synack host: the driver, and stdlib-shaped endpoints.

:class:`HostDriver` runs one sans-IO :class:`~synack.stack.host.Host` on a
link (a TAP device, or an in-memory hub) inside an asyncio loop, following the
adapter loop of ARCHITECTURE.md: feed frames -> drain events -> flush frames
-> re-arm the one timer only if the deadline changed.

On top of it: ``create_datagram_endpoint`` (UDP), and in
:mod:`synack.adapters.tcp` the TCP side (``create_server``,
``create_connection``, ``start_server``, ``open_connection``), all shaped like
their ``asyncio`` namesakes so applications written against asyncio run on
synack's stack unchanged.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from synack.adapters.oserrors import oserror
from synack.adapters.tcp import TcpApi
from synack.errors import LocalProtocolError
from synack.links.base import Link
from synack.links.tap import KernelChecked
from synack.stack import events as ev
from synack.stack.host import ANY, Host, SplitFrame, UdpEndpoint


def parse_addr(addr: tuple[str, int] | tuple[IPv4Address, int]) -> tuple[IPv4Address, int]:
    try:
        host, port = addr
        ip = IPv4Address(str(host)) if str(host) not in ("", "localhost") else ANY
    except (ValueError, TypeError) as exc:
        raise OSError(errno.EINVAL, f"bad IPv4 address {addr!r}: {exc}") from None
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise OSError(errno.EINVAL, f"bad port {port!r}")
    return ip, port


class HostDriver:
    """Runs ``host`` on ``link`` in the current asyncio loop."""

    def __init__(
        self, host: Host, link: Link, *, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.host = host
        self.link = link
        # A link that cuts large TCP frames itself (TAP offloads) lets the
        # host send TSO super-segments.
        self._send_split: Callable[[SplitFrame], None] | None = getattr(link, "send_split", None)
        split = self._send_split is not None
        host.enable_offload(split=split, tso=bool(getattr(link, "tso", False)) and split)
        self.loop = loop or asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        self._pings: dict[tuple[int, int], asyncio.Future[float]] = {}
        self._ping_ident = host.rng.randrange(1 << 16)
        self._ping_seq = 0
        self._flush_scheduled = False
        self.closed = False
        self.tcp = TcpApi(self)
        # asyncio-shaped entry points, for apps that take them as callables.
        self.create_server = self.tcp.create_server
        self.create_connection = self.tcp.create_connection
        self.start_server = self.tcp.start_server
        self.open_connection = self.tcp.open_connection

    def now(self) -> float:
        return self.loop.time()

    def start(self) -> None:
        self.link.start(self.loop, self._frames_in)
        self.host.start(self.now())
        self.pump()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.link.close()

    # The adapter loop -------------------------------------------------------
    def _frames_in(self, frames: list[bytes]) -> None:
        if self.closed:
            return
        now = self.now()
        receive = self.host.receive_frame
        for f in frames:
            # The kernel vouches for the checksums of what it made (offloads):
            # a 64 KiB segment is then not summed again.
            receive(f, now, l4_verified=type(f) is KernelChecked)
        self.pump()

    def _on_timer(self) -> None:
        self._timer = None
        self._armed = None
        if self.closed:
            return
        self.host.handle_timer(self.now())
        self.pump()

    def pump(self) -> None:
        """Drain events, send frames, re-arm the timer if it changed."""
        host = self.host
        send = self.link.send
        # Dispatching events runs application code, which may send and so
        # make more news; bounded rounds, then a fresh loop iteration.
        for _ in range(8):
            while (event := host.next_event()) is not None:
                self._dispatch(event)
            for f in host.drain_frames():
                if not isinstance(f, SplitFrame):
                    send(f)
                elif self._send_split is not None:
                    self._send_split(f)
                else:
                    send(bytes(f))
            if not host.has_news():
                break
        deadline = host.get_timer()
        if deadline != self._armed:
            if self._timer is not None:
                self._timer.cancel()
            self._armed = deadline
            self._timer = None if deadline is None else self.loop.call_at(deadline, self._on_timer)
        if host.has_news():
            self.schedule_pump()

    def schedule_pump(self) -> None:
        """Coalesce many API calls (writes) of one loop iteration into one pump."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._flush_scheduled = False
        if not self.closed:
            self.pump()

    def _dispatch(self, event: ev.HostEvent) -> None:
        owner: Any  # a socket's owner is opaque to the host: whatever adapter set it
        if isinstance(event, ev.TcpActivity):
            owner = event.socket.owner
            if owner is not None:
                owner._activity()
        elif isinstance(event, ev.DatagramReadable):
            owner = event.endpoint.owner
            if isinstance(owner, DatagramTransport):
                owner._readable()
            elif owner is not None:
                owner._activity()
        elif isinstance(event, ev.DatagramError):
            owner = event.endpoint.owner
            if isinstance(owner, DatagramTransport):
                owner._error(event.errno)
            elif owner is not None:
                owner._activity()
        elif isinstance(event, ev.EchoReply):
            fut = self._pings.pop((event.ident, event.sequence), None)
            if fut is not None and not fut.done():
                fut.set_result(event.ts)

    # ICMP ---------------------------------------------------------------------
    async def ping(
        self, dst: str | IPv4Address, data: bytes = b"synack", timeout: float = 2.0
    ) -> float:
        """Echo request to ``dst``; the round-trip time in seconds (TimeoutError if none)."""
        self._ping_seq = (self._ping_seq + 1) & 0xFFFF
        key = (self._ping_ident, self._ping_seq)
        fut: asyncio.Future[float] = self.loop.create_future()
        self._pings[key] = fut
        sent = self.now()
        try:
            self.host.ping(IPv4Address(str(dst)), key[0], key[1], data, sent)
        except LocalProtocolError as exc:
            del self._pings[key]
            raise oserror(exc) from None
        self.pump()
        try:
            got = await asyncio.wait_for(fut, timeout)
        finally:
            self._pings.pop(key, None)
        return got - sent

    # UDP ----------------------------------------------------------------------
    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], asyncio.DatagramProtocol],
        local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None,
        **_kw: Any,
    ) -> tuple[DatagramTransport, asyncio.DatagramProtocol]:
        """Shaped like ``loop.create_datagram_endpoint`` (extra keyword
        arguments such as ``reuse_port`` are accepted and ignored)."""
        ip, port = parse_addr(local_addr) if local_addr else (ANY, 0)
        try:
            endpoint = self.host.udp_open(port, ip)
        except LocalProtocolError as exc:
            raise oserror(exc) from None
        if remote_addr is not None:
            endpoint.remote = parse_addr(remote_addr)
        protocol = protocol_factory()
        transport = DatagramTransport(self, endpoint, protocol)
        endpoint.owner = transport
        protocol.connection_made(transport)
        # Datagrams that arrived before the owner was set.
        if endpoint.queue:
            transport._readable()
        return transport, protocol


class DatagramTransport(asyncio.DatagramTransport):
    def __init__(
        self, driver: HostDriver, endpoint: UdpEndpoint, protocol: asyncio.DatagramProtocol
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
        self._protocol.error_received(ConnectionRefusedError(code, os.strerror(code)))

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
