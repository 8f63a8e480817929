"""The asyncio driver: runs one sans-IO synack host on a link inside an event loop.

:class:`HostDriver` is the adapter loop around a
:class:`~synack.stack.host.Host`: frames in from the link -> the host's events
out to their owners (transports, sockets) -> the host's frames out to the link
-> the host's one timer re-armed only when its deadline moved. It also offers,
for that host, the networking methods an asyncio loop offers for the kernel's
stack: TCP from :mod:`synack.adapters.tcp`, UDP from :mod:`synack.adapters.udp`,
and an ICMP echo (``ping``).

Layer: adapters. Imports synack.adapters (base, oserrors, tcp, udp), synack.links,
synack.stack, synack.errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from synack.adapters.oserrors import oserror
from synack.adapters.tcp import TcpApi
from synack.adapters.udp import DatagramTransport, create_datagram_endpoint
from synack.errors import LocalProtocolError
from synack.links.base import Link
from synack.stack import events as ev
from synack.stack.host import Host, SplitFrame, TcpStream

# The largest MTU at which a link without offloads gets whole frames (see
# HostDriver); above it, large payloads are written apart from the headers.
JOIN_UP_TO_MTU = 16 * 1024


class HostDriver:
    """Runs ``host`` on ``link`` in an asyncio loop (the running one by default).

    What ``asyncio``'s loop and module functions are for the kernel's stack,
    this is for one synack host: ``create_server``, ``create_connection``,
    ``start_server``, ``open_connection`` (:class:`~synack.adapters.tcp.TcpApi`)
    and ``create_datagram_endpoint`` take the same arguments and return the
    same shapes (a server, a transport and protocol, a reader and writer), so
    code written against asyncio runs here by being handed these callables.
    Unlike the kernel, the stack lives in this process: nothing moves unless
    the loop runs, and :meth:`close` stops the host (its connections go with it).
    ``start()`` attaches the link and starts the host; ``ping`` has no stdlib
    counterpart (the kernel needs a raw socket for it).
    """

    def __init__(
        self, host: Host, link: Link, *, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.host = host
        self.link = link
        # A link that cuts large TCP frames itself (TAP offloads) lets the
        # host send TSO super-segments.
        self._send_split: Callable[[SplitFrame], None] | None = getattr(link, "send_split", None)
        self._send_frames: Callable[[list[bytes | SplitFrame]], None] | None = getattr(
            link, "send_frames", None
        )
        # The type of the frames whose checksums the link vouches for (a TAP
        # with offloads), if any.
        self._vouched: type[bytes] | None = getattr(link, "vouched", None)
        split = self._send_split is not None
        tso = bool(getattr(link, "tso", False)) and split
        # Without offloads, split frames only where a frame may be large:
        # up to 16 KiB, the payload joined to the headers and written with
        # one write() costs less than a SplitFrame and a gather write (~0.2
        # against ~0.4 us a frame), the same octets. TCP still hands over
        # super-segments (gso), cut into joined frames below it (TcpOutput).
        host.enable_offload(
            split=tso or (split and host.mtu > JOIN_UP_TO_MTU),
            tso=tso,
            gso=split,
            tso_max=int(getattr(link, "tso_max", 0)) if tso else 0,
        )
        self.loop = loop or asyncio.get_running_loop()
        # The host's clock is the loop's (``now()``): its bound method, not a
        # method calling it (transports ask on every read and write).
        self.now: Callable[[], float] = self.loop.time
        # How a pump is scheduled: a HostLoop queues it without making an
        # asyncio.Handle that nobody would cancel (HostLoop.post_soon);
        # another loop with its call_soon.
        self._post: Callable[[Callable[[], object]], object] = getattr(
            self.loop, "post_soon", self.loop.call_soon
        )
        self._timer: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        self._pings: dict[tuple[int, int], asyncio.Future[float]] = {}
        self._ping_ident = host.rng.randrange(1 << 16)
        self._ping_seq = 0
        self._flush_scheduled = False
        self._pumping = False  # inside pump() (schedule_pump has nothing to add)
        # Streams whose lone short write is held (see hold): written this
        # pass, and written the pass before (sent at the next _hold_pass).
        self._held: list[TcpStream] = []
        self._held_due: list[TcpStream] = []
        self._hold_posted = False
        self.closed = False
        self.tcp = TcpApi(self)
        # asyncio-shaped entry points, for apps that take them as callables.
        self.create_server = self.tcp.create_server
        self.create_connection = self.tcp.create_connection
        self.start_server = self.tcp.start_server
        self.open_connection = self.tcp.open_connection

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
        # The kernel vouches for the checksums of what it made (offloads): a
        # 64 KiB segment is then not summed again.
        self.host.receive_frames(frames, self.now(), vouched=self._vouched)
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
        # While it runs, schedule_pump adds nothing: what the events' owners
        # ask of the host meanwhile (a reply written in data_received, a
        # window update after a read) is news the rounds below send, and the
        # end re-checks has_news. A pump queued from in here found nothing
        # left to do three times in four (aiohttp, a request per connection).
        pumping, self._pumping = self._pumping, True
        try:
            host = self.host
            send = self.link.send
            # Dispatching events runs application code, which may send and so
            # make more news; bounded rounds, then a fresh loop iteration.
            next_event, dispatch, activity = host.next_event, self._dispatch, ev.TcpActivity
            owner: Any  # a socket's owner is opaque to the host (as in _dispatch)
            for _ in range(8):
                while (event := next_event()) is not None:
                    # A connection's news (nearly every event), as _dispatch's
                    # first case, without its call.
                    if type(event) is activity:
                        owner = event.socket.owner
                        if owner is not None:
                            owner._activity()
                    else:
                        dispatch(event)
                if self._send_frames is not None:
                    self._send_frames(host.drain_frames())  # a link that writes a list in one loop
                else:
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
            armed = self._armed
            # Re-armed only for an earlier deadline: one that moved later (an ACK
            # stopped the earliest retransmission timer: most new connections do)
            # keeps the armed timer, which then wakes the host early once and is
            # re-armed then (handle_timer with nothing due does nothing), instead
            # of a cancel and a new loop timer per move.
            if deadline is not None and (armed is None or deadline < armed):
                if self._timer is not None:
                    self._timer.cancel()
                self._armed = deadline
                self._timer = self.loop.call_at(deadline, self._on_timer)
        finally:
            self._pumping = pumping
        if self.host.has_news():
            self.schedule_pump()

    def schedule_pump(self) -> None:
        """Coalesce many API calls (writes) of one loop iteration into one pump."""
        if not self._flush_scheduled and not self._pumping:
            self._flush_scheduled = True
            self._post(self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._flush_scheduled = False
        if not self.closed:
            self.pump()

    def hold(self, stream: TcpStream) -> None:
        """``stream.conn`` was given a lone short write without a touch
        (:class:`~synack.adapters.tcp.TcpTransport`, ``Tcb.sends_alone``):
        its segment is made at the latest one loop pass after the one that
        would have sent it, so that a close or more writes of that next pass
        join it (a web server's reply and FIN in one segment, not two; the
        peer's kernel then answers both with one FIN+ACK).

        Inside a pump (a reply written in ``data_received``) it is made by the
        pump's own rounds, which send it with the pump as before: only what
        else that callback asks of the connection (its close) joins it.
        Outside (a program's task), the pump it would have had is the next
        pass's; it is made in the pass after that, by :meth:`_hold_pass`
        (or earlier, by anything else that touches the stream: a close, more
        data, an arriving segment, a timer)."""
        if self._pumping:
            self.host.tcp_touch_later(stream, self.now())
            return
        self._held.append(stream)
        if not self._hold_posted:
            self._hold_posted = True
            self._post(self._hold_pass)

    def _hold_pass(self) -> None:
        """Once a pass while writes are held: those of the pass before are
        sent now; this pass's (and those made before it this pass) wait for
        the next one."""
        self._hold_posted = False
        due = self._held_due
        self._held_due, self._held = self._held, []
        if self._held_due:
            self._hold_posted = True
            self._post(self._hold_pass)
        if self.closed:
            return
        touched = False
        now = self.now()
        owner: Any  # (as in _dispatch: a TcpTransport, opaque to the host)
        for stream in due:
            # (Its segment may be out already: a close or a later write, an
            # arriving segment or a timer touched the stream since.)
            if not stream.gone and stream.conn.unsent:
                self.host.tcp_touch_later(stream, now)
                touched = True
                # Nothing joined it: its owner holds no more (a keep-alive
                # connection would pay a pass per reply for nothing).
                owner = stream.owner
                if owner is not None:
                    owner._sent_alone()
        if touched:
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
        arguments such as ``reuse_port`` are accepted and ignored); see
        :mod:`synack.adapters.udp`."""
        return await create_datagram_endpoint(self, protocol_factory, local_addr, remote_addr)
