"""An IPv4 router for the simulated network: forwards between subnets.

Sans-IO like the host: a frame arrives on a port with ``now``; the frames to
forward come back as ``(port, frame)`` pairs. Each port is an
:class:`~synack.stack.interface.Interface`, the host's own: the same ARP
(with its spoofing checks) and neighbour resolution. It decrements TTL,
fragments to the egress MTU and sends the ICMP errors of RFC 1812 (time
exceeded, no route, fragmentation needed), built and rate-limited by the
host's :class:`~synack.stack.icmp.IcmpErrors`; it answers echo requests to
its own addresses.

Layer: stack. Imports synack.wire, synack.core and the rest of synack.stack.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Interface

from synack.stack.arp import ArpCache
from synack.stack.icmp import IcmpErrors
from synack.stack.interface import Emit, Interface, count_malformed
from synack.stack.reassembly import fragment
from synack.wire import icmp as wicmp
from synack.wire import ipv4 as wip
from synack.wire.errors import MalformedPacket

Forward = list[tuple[int, bytes]]


@dataclass(frozen=True, slots=True)
class RouterInterface:
    mac: bytes
    interface: IPv4Interface
    mtu: int = 1500


class Router:
    """Forwards IPv4 between its interfaces' subnets (RFC 1812 in miniature):
    TTL decremented and checked (time exceeded at zero), fragmentation when the
    next link's MTU is smaller, ARP on each side, echo replies for itself.

    ICMP errors are limited to ``icmp_errors_per_second`` with bursts of
    ``icmp_error_burst`` (RFC 1812 §4.3.2.8), as a host's."""

    def __init__(
        self,
        interfaces: list[RouterInterface],
        *,
        icmp_errors_per_second: float = 1000.0,
        icmp_error_burst: int = 50,
    ) -> None:
        self.interfaces = interfaces
        self.counters: Counter[str] = Counter()
        self._out: Forward = []
        self.ports = [
            Interface(
                spec.mac,
                spec.interface,
                spec.mtu,
                self.counters,
                self._emitter(i),
            )
            for i, spec in enumerate(interfaces)
        ]
        self.icmp_errors = IcmpErrors(icmp_errors_per_second, icmp_error_burst, self.counters)
        self._own = {port.ip for port in self.ports}

    def _emitter(self, port: int) -> Emit:
        def emit(frame: bytes, _now: float) -> None:
            self._out.append((port, frame))

        return emit

    @property
    def arp(self) -> list[ArpCache]:
        """Each port's neighbour table, by port number."""
        return [port.arp for port in self.ports]

    def get_timer(self) -> float | None:
        times = [t for t in (p.get_timer() for p in self.ports) if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> Forward:
        for port in self.ports:
            port.handle_timer(now)
            port.flush_requests(now)
        return self.flush()

    def flush(self) -> Forward:
        """The frames to send, as ``(port, frame)``."""
        out, self._out = self._out, []
        return out

    def receive(self, port: int, frame: bytes, now: float) -> Forward:
        eth = self.ports[port].receive(frame, now)
        if eth is not None:
            self._receive_ipv4(port, eth.payload, now)
        return self.flush()

    def _route(self, dst: IPv4Address) -> int | None:
        for i, port in enumerate(self.ports):
            if dst in port.network:
                return i
        return None

    def _receive_ipv4(self, port: int, payload: bytes, now: float) -> None:
        try:
            pkt = wip.parse(payload)
        except MalformedPacket as exc:
            count_malformed(self.counters, exc)
            return
        if pkt.dst in self._own:
            if pkt.proto == wip.PROTO_ICMP and not (pkt.more_fragments or pkt.frag_offset):
                try:
                    msg = wicmp.parse(pkt.payload)
                except MalformedPacket as exc:
                    count_malformed(self.counters, exc)
                    return
                if msg.type == wicmp.TYPE_ECHO_REQUEST:
                    reply = wicmp.IcmpMessage(wicmp.TYPE_ECHO_REPLY, 0, msg.rest, msg.payload)
                    self._originate(pkt.dst, pkt.src, wicmp.build(reply), now)
            return
        if pkt.ttl <= 1:
            # RFC 1812 §5.3.1: a datagram whose TTL would reach zero is
            # discarded with an ICMP time exceeded (code 0) to its source.
            self.counters["ttl-exceeded"] += 1
            self._icmp_error(port, pkt, wicmp.TYPE_TIME_EXCEEDED, 0, 0, now)
            return
        out = self._route(pkt.dst)
        if out is None:
            self.counters["no-route"] += 1
            self._icmp_error(port, pkt, wicmp.TYPE_DEST_UNREACHABLE, 0, 0, now)
            return
        fwd = replace(pkt, ttl=pkt.ttl - 1)
        mtu = self.ports[out].mtu
        if wip.MIN_HEADER_LEN + len(fwd.options) + len(fwd.payload) > mtu:
            if fwd.dont_fragment:
                # RFC 1191: fragmentation needed, with the next-hop MTU.
                self.counters["frag-needed"] += 1
                self._icmp_error(
                    port, pkt, wicmp.TYPE_DEST_UNREACHABLE, wicmp.CODE_FRAG_NEEDED, mtu, now
                )
                return
            self.counters["fragmented"] += 1
            packets = fragment(fwd, mtu)
        else:
            packets = [fwd]
        self.counters["forwarded"] += 1
        self.ports[out].send_ipv4(pkt.dst, [wip.build(p) for p in packets], now)

    def _icmp_error(
        self, port: int, about: wip.Ipv4Packet, type_: int, code: int, rest: int, now: float
    ) -> None:
        """An ICMP error about ``about`` (which arrived on ``port``) to its
        source, from that interface (RFC 1812 §4.3.2.4)."""
        message = self.icmp_errors.build(about, type_, code, now, rest)
        if message is not None:
            self._originate(self.ports[port].ip, about.src, message, now)

    def _originate(self, src: IPv4Address, dst: IPv4Address, icmp: bytes, now: float) -> None:
        out = self._route(dst)
        if out is None:
            return
        packet = wip.build(wip.Ipv4Packet(src, dst, wip.PROTO_ICMP, icmp))
        self.ports[out].send_ipv4(dst, [packet], now)
