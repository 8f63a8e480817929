"""An IPv4 router for the simulated network: forwards between subnets.

Sans-IO like the host: a frame arrives on a port with ``now``; the frames to
forward come back as ``(port, frame)`` pairs. It answers ARP for its own
addresses, decrements TTL, fragments to the egress MTU and sends the ICMP
errors of RFC 1812 (time exceeded, no route, fragmentation needed).

Layer: stack. Imports synack.wire, synack.core and the rest of synack.stack.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Interface

from synack.stack.arp import ArpCache
from synack.stack.reassembly import fragment
from synack.wire import arp as warp
from synack.wire import ethernet as weth
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
    next link's MTU is smaller, ARP on each side, echo replies for itself."""

    def __init__(self, interfaces: list[RouterInterface]) -> None:
        self.interfaces = interfaces
        self.arp = [ArpCache() for _ in interfaces]
        self.counters: dict[str, int] = {}
        self._out: Forward = []

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def get_timer(self) -> float | None:
        times = [t for t in (a.get_timer() for a in self.arp) if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> Forward:
        for i, cache in enumerate(self.arp):
            for _ip, dropped in cache.handle_timer(now):
                self.counters["arp-pending-dropped"] = (
                    self.counters.get("arp-pending-dropped", 0) + dropped
                )
            self._flush_requests(i)
        out, self._out = self._out, []
        return out

    def _flush_requests(self, i: int) -> None:
        iface = self.interfaces[i]
        for ip, unicast in self.arp[i].requests:
            pkt = warp.ArpPacket(warp.OP_REQUEST, iface.mac, iface.interface.ip, bytes(6), ip)
            self._out.append(
                (
                    i,
                    weth.build(
                        weth.EthernetFrame(
                            unicast or weth.BROADCAST,
                            iface.mac,
                            weth.ETHERTYPE_ARP,
                            warp.build(pkt),
                        )
                    ),
                )
            )
        self.arp[i].requests.clear()

    def receive(self, port: int, frame: bytes, now: float) -> Forward:
        iface = self.interfaces[port]
        try:
            eth = weth.parse(frame)
        except MalformedPacket:
            self._count("malformed")
            return []
        if eth.dst not in (iface.mac, weth.BROADCAST):
            return []
        if eth.ethertype == weth.ETHERTYPE_ARP:
            self._receive_arp(port, eth, now)
        elif eth.ethertype == weth.ETHERTYPE_IPV4:
            self._receive_ipv4(port, eth, now)
        out, self._out = self._out, []
        return out

    def _receive_arp(self, port: int, eth: weth.EthernetFrame, now: float) -> None:
        iface = self.interfaces[port]
        try:
            pkt = warp.parse(eth.payload)
        except MalformedPacket:
            self._count("malformed")
            return
        if pkt.sender_ip not in iface.interface.network:
            return
        for_us = pkt.target_ip == iface.interface.ip
        _, ready = self.arp[port].learn(
            pkt.sender_ip, pkt.sender_mac, now, reply=pkt.op == warp.OP_REPLY, for_us=for_us
        )
        for packet, ethertype in ready:
            self._out.append(
                (port, weth.build(weth.EthernetFrame(pkt.sender_mac, iface.mac, ethertype, packet)))
            )
        if pkt.op == warp.OP_REQUEST and for_us:
            reply = warp.ArpPacket(
                warp.OP_REPLY, iface.mac, iface.interface.ip, pkt.sender_mac, pkt.sender_ip
            )
            self._out.append(
                (
                    port,
                    weth.build(
                        weth.EthernetFrame(
                            pkt.sender_mac, iface.mac, weth.ETHERTYPE_ARP, warp.build(reply)
                        )
                    ),
                )
            )

    def _route(self, dst: IPv4Address) -> int | None:
        for i, iface in enumerate(self.interfaces):
            if dst in iface.interface.network:
                return i
        return None

    def _receive_ipv4(self, port: int, eth: weth.EthernetFrame, now: float) -> None:
        try:
            pkt = wip.parse(eth.payload)
        except MalformedPacket:
            self._count("malformed")
            return
        mine = [i for i, f in enumerate(self.interfaces) if f.interface.ip == pkt.dst]
        if mine:
            if pkt.proto == wip.PROTO_ICMP and not (pkt.more_fragments or pkt.frag_offset):
                try:
                    msg = wicmp.parse(pkt.payload)
                except MalformedPacket:
                    return
                if msg.type == wicmp.TYPE_ECHO_REQUEST:
                    reply = wicmp.IcmpMessage(wicmp.TYPE_ECHO_REPLY, 0, msg.rest, msg.payload)
                    self._originate(pkt.dst, pkt.src, wicmp.build(reply), now)
            return
        if pkt.ttl <= 1:
            # RFC 1812 §5.3.1: a datagram whose TTL would reach zero is
            # discarded with an ICMP time exceeded (code 0) to its source.
            self._count("ttl-exceeded")
            self._icmp_error(port, pkt, wicmp.TYPE_TIME_EXCEEDED, 0, 0, now)
            return
        out = self._route(pkt.dst)
        if out is None:
            self._count("no-route")
            self._icmp_error(port, pkt, wicmp.TYPE_DEST_UNREACHABLE, 0, 0, now)
            return
        fwd = replace(pkt, ttl=pkt.ttl - 1)
        mtu = self.interfaces[out].mtu
        if 20 + len(fwd.options) + len(fwd.payload) > mtu:
            if fwd.dont_fragment:
                # RFC 1191: fragmentation needed, with the next-hop MTU.
                self._count("frag-needed")
                self._icmp_error(
                    port, pkt, wicmp.TYPE_DEST_UNREACHABLE, wicmp.CODE_FRAG_NEEDED, mtu, now
                )
                return
            self._count("fragmented")
            packets = fragment(fwd, mtu)
        else:
            packets = [fwd]
        self._count("forwarded")
        for p in packets:
            self._send(out, p.dst, wip.build(p), now)

    def _icmp_error(
        self, port: int, about: wip.Ipv4Packet, type_: int, code: int, rest: int, now: float
    ) -> None:
        """An ICMP error about ``about`` (which arrived on ``port``) to its
        source, from that interface. The quote: the original header and the
        first 8 octets of its payload (RFC 792)."""
        quote = wip.build_header(about, len(about.payload)) + about.payload[:8]
        msg = wicmp.IcmpMessage(type_, code, rest, quote)
        self._originate(self.interfaces[port].interface.ip, about.src, wicmp.build(msg), now)

    def _originate(self, src: IPv4Address, dst: IPv4Address, icmp: bytes, now: float) -> None:
        out = self._route(dst)
        if out is None:
            return
        self._send(out, dst, wip.build(wip.Ipv4Packet(src, dst, wip.PROTO_ICMP, icmp)), now)

    def _send(self, port: int, hop: IPv4Address, raw: bytes, now: float) -> None:
        iface = self.interfaces[port]
        mac = self.arp[port].resolve(hop, now)
        if mac is None:
            if not self.arp[port].enqueue(hop, raw, weth.ETHERTYPE_IPV4, now):
                self._count("arp-pending-full")
        else:
            self._out.append(
                (port, weth.build(weth.EthernetFrame(mac, iface.mac, weth.ETHERTYPE_IPV4, raw)))
            )
        self._flush_requests(port)
