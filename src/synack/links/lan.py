"""Ethernet on the simulator: a learning switch and an IPv4 router.

Both are sans-IO like the hosts: a frame arrives on a port with ``now``, the
frames to forward come back as ``(port, frame)`` pairs. :class:`Lan` wires
hosts, switches and routers together on a virtual clock (deterministic, no
threads, no sockets) so whole networks can be tested in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Interface
from typing import Protocol

from synack.links.sim import Link, LinkParams, LinkStats, Simulator, TimerHandle
from synack.stack.arp import ArpCache
from synack.stack.reassembly import fragment
from synack.wire import arp as warp
from synack.wire import ethernet as weth
from synack.wire import icmp as wicmp
from synack.wire import ipv4 as wip
from synack.wire.errors import MalformedPacket

Forward = list[tuple[int, bytes]]


class Switch:
    """A learning bridge (IEEE 802.1D in miniature): learn the source MAC's
    port, forward to the known port of the destination, flood the rest."""

    def __init__(self, *, ageing: float = 300.0, max_entries: int = 4096) -> None:
        self.ports = 0
        self.ageing = ageing
        self.max_entries = max_entries
        self.table: dict[bytes, tuple[int, float]] = {}  # mac -> (port, last seen)
        self.counters: dict[str, int] = {}

    def add_port(self) -> int:
        self.ports += 1
        return self.ports - 1

    def receive(self, port: int, frame: bytes, now: float) -> Forward:
        if len(frame) < 14:
            self.counters["runt"] = self.counters.get("runt", 0) + 1
            return []
        dst, src = bytes(frame[0:6]), bytes(frame[6:12])
        if not src[0] & 1 and (src in self.table or len(self.table) < self.max_entries):
            self.table[src] = (port, now)
        entry = self.table.get(dst)
        if entry is not None and now - entry[1] < self.ageing and not dst[0] & 1:
            out = entry[0]
            return [] if out == port else [(out, frame)]
        return [(p, frame) for p in range(self.ports) if p != port]


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


class Node(Protocol):
    """Anything with Ethernet ports on a :class:`Lan`: sans-IO, port numbers
    local to the node."""

    def receive(self, port: int, frame: bytes, now: float) -> Forward: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> Forward: ...


class HostNode(Node):
    """A :class:`~synack.stack.host.Host` as a one-port node."""

    def __init__(self, host: HostLike) -> None:
        self.host = host

    def receive(self, port: int, frame: bytes, now: float) -> Forward:
        self.host.receive_frame(frame, now)
        return [(0, f) for f in self.host.frames_to_send()]

    def get_timer(self) -> float | None:
        return self.host.get_timer()

    def handle_timer(self, now: float) -> Forward:
        self.host.handle_timer(now)
        return [(0, f) for f in self.host.frames_to_send()]

    def flush(self) -> Forward:
        return [(0, f) for f in self.host.frames_to_send()]


class SwitchNode(Node):
    def __init__(self, switch: Switch) -> None:
        self.switch = switch

    def receive(self, port: int, frame: bytes, now: float) -> Forward:
        return self.switch.receive(port, frame, now)

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> Forward:
        return []


class RouterNode(Node):
    def __init__(self, router: Router) -> None:
        self.router = router

    def receive(self, port: int, frame: bytes, now: float) -> Forward:
        return self.router.receive(port, frame, now)

    def get_timer(self) -> float | None:
        return self.router.get_timer()

    def handle_timer(self, now: float) -> Forward:
        return self.router.handle_timer(now)


class HostLike(Protocol):
    """The sans-IO host interface a :class:`HostNode` drives."""

    def receive_frame(self, data: bytes, now: float) -> None: ...
    def frames_to_send(self) -> list[bytes]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...


Tap = Callable[[str, float, bytes], None]  # (link name, time, frame)


class Lan:
    """Nodes joined by point-to-point wires on the simulator's virtual clock.

    Built on :mod:`synack.links.sim`: one :class:`~synack.links.sim.Simulator`
    (the clock and the seeded randomness) and, for each direction of each
    wire, a :class:`~synack.links.sim.Link` shaped by ``params`` (delay, loss,
    duplication, reordering, corruption, bandwidth), so a seed reproduces a
    run bit for bit. :attr:`taps` see every frame put on a wire (pcap capture
    hooks in there). Nothing sleeps: :meth:`run` jumps from event to event.
    """

    def __init__(
        self,
        *,
        delay: float = 50e-6,
        loss: float = 0.0,
        seed: int = 0,
        params: LinkParams | None = None,
    ) -> None:
        self.sim = Simulator(seed)
        self.params = params if params is not None else LinkParams(delay=delay, loss=loss)
        self.taps: list[Tap] = []
        self._wires: dict[tuple[int, int], tuple[Link[bytes], str]] = {}
        self._nodes: list[Node] = []
        self._timers: dict[int, tuple[float, TimerHandle]] = {}
        self.frames_carried = 0

    @property
    def now(self) -> float:
        return self.sim.now

    def add(self, node: Node) -> int:
        self._nodes.append(node)
        return len(self._nodes) - 1

    def connect(
        self,
        a: int,
        a_port: int,
        b: int,
        b_port: int,
        name: str = "",
        params: LinkParams | None = None,
    ) -> None:
        label = name or f"{a}.{a_port}-{b}.{b_port}"
        p = params or self.params

        def deliver_to(node: int, port: int) -> Callable[[bytes, float], None]:
            def deliver(frame: bytes, now: float) -> None:
                self.frames_carried += 1
                self._send(node, self._nodes[node].receive(port, frame, now))
                self._arm(node)

            return deliver

        self._wires[(a, a_port)] = (Link(self.sim, deliver_to(b, b_port), p, name=label), label)
        self._wires[(b, b_port)] = (Link(self.sim, deliver_to(a, a_port), p, name=label), label)

    def wire_stats(self, node: int, port: int) -> LinkStats:
        """The sending direction's statistics of the wire at (node, port)."""
        return self._wires[(node, port)][0].stats

    def switch(self) -> tuple[int, Switch]:
        sw = Switch()
        return self.add(SwitchNode(sw)), sw

    def attach_host(self, host: HostLike, switch_index: int, name: str = "") -> int:
        """Plug ``host`` into the switch at node ``switch_index``; return its node id."""
        node = self.add(HostNode(host))
        sw = self._nodes[switch_index]
        assert isinstance(sw, SwitchNode)
        self.connect(node, 0, switch_index, sw.switch.add_port(), name)
        return node

    def attach_router(self, router: Router, switches: list[int]) -> int:
        node = self.add(RouterNode(router))
        for port, sw_index in enumerate(switches):
            sw = self._nodes[sw_index]
            assert isinstance(sw, SwitchNode)
            self.connect(node, port, sw_index, sw.switch.add_port())
        return node

    def _send(self, node: int, out: Forward) -> None:
        for port, frame in out:
            wire = self._wires.get((node, port))
            if wire is None:
                continue
            link, label = wire
            for tap in self.taps:
                tap(label, self.sim.now, frame)
            link.send(frame)

    def _arm(self, node: int) -> None:
        t = self._nodes[node].get_timer()
        armed = self._timers.get(node)
        if armed is not None and armed[0] == t:
            return
        if armed is not None:
            armed[1].cancel()
            del self._timers[node]
        if t is not None:
            self._timers[node] = (t, self.sim.schedule(t, lambda: self._fire(node)))

    def _fire(self, node: int) -> None:
        self._timers.pop(node, None)
        self._send(node, self._nodes[node].handle_timer(self.sim.now))
        self._arm(node)

    def kick(self) -> None:
        """Send what nodes have queued outside :meth:`run` (an API call on a
        host produced frames) and re-arm their timers."""
        for i, node in enumerate(self._nodes):
            if isinstance(node, HostNode):
                self._send(i, node.flush())
            self._arm(i)

    def run(self, until: float | None = None, *, max_events: int = 1_000_000) -> int:
        """Process events up to virtual time ``until`` (default: one virtual
        second from now, plenty for exchanges on a LAN; timers further out,
        such as ARP ageing, need an explicit ``until``)."""
        if until is None:
            until = self.sim.now + 1.0
        self.kick()
        return self.sim.run(until, max_events=max_events)

    def run_until(self, done: Callable[[], bool], *, timeout: float = 60.0) -> bool:
        """Run until ``done()`` holds or ``timeout`` virtual seconds pass."""
        end = self.sim.now + timeout
        self.kick()
        self.sim.run(end, stop=done)
        return done()
