"""One host: an Ethernet interface with an IPv4 address, ARP, ICMP, UDP, TCP.

Sans-IO (ARCHITECTURE.md item 1-2): :meth:`Host.receive_frame` takes a frame
and ``now``; :meth:`Host.frames_to_send` gives frames; :meth:`Host.get_timer`
is the one deadline of the whole host (ARP retries and ageing, reassembly
timeouts, every TCP connection); :meth:`Host.handle_timer` handles it.
Application-facing news comes out of :meth:`Host.next_event`; every frame and
every TCP state change also goes to the plain observer list
:attr:`Host.observers` (the trace's feed).

Nothing here reads a clock or a global RNG: ISNs use an injected secret,
ephemeral ports and IP idents an injected ``random.Random``.
"""

from __future__ import annotations

import errno
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface

from synack.errors import LocalProtocolError
from synack.stack import events as ev
from synack.stack.arp import ArpCache, ArpDecision, ArpPolicy, ArpTimings
from synack.stack.reassembly import Reassembler, fragment
from synack.wire import arp as warp
from synack.wire import ethernet as weth
from synack.wire import icmp as wicmp
from synack.wire import ipv4 as wip
from synack.wire import udp as wudp
from synack.wire.errors import MalformedPacket

Observer = Callable[[object], None]
Address = tuple[IPv4Address, int]

EPHEMERAL_LOW = 49152  # RFC 6335 §6 dynamic ports
EPHEMERAL_HIGH = 65535
LIMITED_BROADCAST = IPv4Address("255.255.255.255")
ANY = IPv4Address("0.0.0.0")


class NoRouteError(LocalProtocolError):
    """No route to the destination (off-link and no gateway): ENETUNREACH."""

    errno = errno.ENETUNREACH


class AddressInUseError(LocalProtocolError):
    errno = errno.EADDRINUSE


class AddressNotAvailableError(LocalProtocolError):
    errno = errno.EADDRNOTAVAIL


@dataclass(frozen=True, slots=True)
class HostConfig:
    mac: bytes
    interface: IPv4Interface  # address and prefix, e.g. IPv4Interface("10.213.0.2/24")
    gateway: IPv4Address | None = None
    mtu: int = 1500  # largest IP packet the link carries
    name: str = ""
    arp_policy: ArpPolicy = field(default_factory=ArpPolicy)
    arp_timings: ArpTimings = field(default_factory=ArpTimings)
    reassembly_timeout: float = 30.0
    reassembly_max_datagrams: int = 64
    udp_queue_limit: int = 256  # datagrams per endpoint before drops
    icmp_errors_per_second: float = 1000.0  # Linux icmp_msgs_per_sec
    icmp_error_burst: int = 50  # Linux icmp_msgs_burst
    ttl: int = 64

    def __post_init__(self) -> None:
        if len(self.mac) != 6:
            raise ValueError("mac must be 6 bytes")
        if self.mac[0] & 1:
            raise ValueError("mac must be unicast")
        if not 68 <= self.mtu <= 65535:
            # RFC 791: every host must handle 68-octet packets.
            raise ValueError("mtu must be between 68 and 65535")
        if self.gateway is not None and self.gateway not in self.interface.network:
            raise ValueError(f"gateway {self.gateway} is not on {self.interface.network}")


class UdpEndpoint:
    """One bound UDP port. Its receive queue is bounded: when full, arriving
    datagrams are dropped and counted, as UDP does (no back-pressure)."""

    def __init__(self, host: Host, local: Address, limit: int) -> None:
        self.host = host
        self.local = local
        self.remote: Address | None = None  # set by connect()
        self.queue: deque[tuple[bytes, Address]] = deque()
        self.limit = limit
        self.dropped = 0
        self.closed = False
        self.error: int | None = None  # pending errno from an ICMP error (connected only)
        self.owner: object = None  # the adapter object using it

    def recvfrom(self) -> tuple[bytes, Address] | None:
        return self.queue.popleft() if self.queue else None

    def sendto(self, data: bytes, addr: Address, now: float) -> None:
        self.host.udp_sendto(self, data, addr, now)

    def close(self) -> None:
        self.host.udp_close(self)


class Host:
    def __init__(
        self,
        config: HostConfig,
        *,
        rng: random.Random | None = None,
        isn_secret: bytes | None = None,
    ) -> None:
        self.config = config
        self.mac = config.mac
        self.ip = config.interface.ip
        self.network = config.interface.network
        self.mtu = config.mtu
        self.name = config.name or str(self.ip)
        self.rng = rng if rng is not None else random.Random(0)
        self.isn_secret = isn_secret if isn_secret is not None else self.rng.randbytes(16)
        self.arp = ArpCache(config.arp_timings, config.arp_policy)
        self.reassembler = Reassembler(
            timeout=config.reassembly_timeout, max_datagrams=config.reassembly_max_datagrams
        )
        self.counters: Counter[str] = Counter()
        self.observers: list[Observer] = []
        self._out: list[bytes] = []
        self._events: deque[object] = deque()
        self._ip_ident = self.rng.randrange(1 << 16)
        self._udp: dict[int, UdpEndpoint] = {}
        self._icmp_tokens = float(config.icmp_error_burst)
        self._icmp_tokens_at = 0.0
        self._now = 0.0
        self._timer_heap: list[tuple[float, int, object]] = []
        self._init_tcp()

    # ------------------------------------------------------------------ I/O
    def start(self, now: float) -> None:
        """Announce ourselves: a gratuitous ARP (RFC 5227 §3 announcement) so
        neighbours holding a stale entry for our address update it."""
        self._now = now
        self._send_arp(warp.OP_REQUEST, weth.BROADCAST, bytes(6), self.ip, now)

    def frames_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> object | None:
        return self._events.popleft() if self._events else None

    def _emit(self, frame: bytes, now: float) -> None:
        self._out.append(frame)
        self.counters["frames-out"] += 1
        if self.observers:
            rec = ev.FrameTrace(self.name, now, "out", frame)
            for obs in self.observers:
                obs(rec)

    def receive_frame(self, data: bytes, now: float) -> None:
        self._now = now
        self.counters["frames-in"] += 1
        if self.observers:
            rec = ev.FrameTrace(self.name, now, "in", bytes(data))
            for obs in self.observers:
                obs(rec)
        try:
            frame = weth.parse(data)
        except MalformedPacket as exc:
            self._malformed(exc)
            return
        if frame.dst != self.mac and frame.dst != weth.BROADCAST:
            self.counters["eth-not-for-us"] += 1
            return
        if frame.ethertype == weth.ETHERTYPE_IPV4:
            self._receive_ipv4(frame, now)
        elif frame.ethertype == weth.ETHERTYPE_ARP:
            self._receive_arp(frame, now)
        else:
            self.counters["eth-unknown-type"] += 1

    def _malformed(self, exc: MalformedPacket) -> None:
        # Counters keyed on the layer and MalformedPacket.reason.
        self.counters[f"{exc.layer}-{exc.reason}"] += 1

    # ----------------------------------------------------------------- timers
    def get_timer(self) -> float | None:
        deadline = self.arp.get_timer()
        t = self.reassembler.get_timer()
        if t is not None and (deadline is None or t < deadline):
            deadline = t
        t = self._tcp_timer()
        if t is not None and (deadline is None or t < deadline):
            deadline = t
        return deadline

    def handle_timer(self, now: float) -> None:
        self._now = now
        for ip, dropped in self.arp.handle_timer(now):
            self.counters["arp-failed"] += 1
            self.counters["arp-pending-dropped"] += dropped
            self._events.append(ev.NeighbourUnreachable(now, ip, dropped))
        self._flush_arp_requests(now)
        for first in self.reassembler.handle_timer(now):
            # RFC 792: time exceeded, code 1 (fragment reassembly time exceeded).
            self._send_icmp_error(first, wicmp.TYPE_TIME_EXCEEDED, 1, now)
        self.counters.update(self.reassembler.counters)
        self.reassembler.counters.clear()
        self._tcp_handle_timer(now)

    # -------------------------------------------------------------------- ARP
    def _send_arp(
        self, op: int, dst_mac: bytes, target_mac: bytes, target_ip: IPv4Address, now: float
    ) -> None:
        pkt = warp.ArpPacket(op, self.mac, self.ip, target_mac, target_ip)
        self._emit(
            weth.build(weth.EthernetFrame(dst_mac, self.mac, weth.ETHERTYPE_ARP, warp.build(pkt))),
            now,
        )

    def _flush_arp_requests(self, now: float) -> None:
        for ip, unicast in self.arp.requests:
            self.counters["arp-requests-out"] += 1
            self._send_arp(warp.OP_REQUEST, unicast or weth.BROADCAST, bytes(6), ip, now)
        self.arp.requests.clear()

    def _receive_arp(self, frame: weth.EthernetFrame, now: float) -> None:
        try:
            pkt = warp.parse(frame.payload)
        except MalformedPacket as exc:
            self._malformed(exc)
            return
        if pkt.sender_mac != frame.src and frame.src != self.mac:
            # The Ethernet source and ARP sender disagree: a forged ARP body.
            self.counters["arp-mac-mismatch"] += 1
            return
        if pkt.sender_ip == self.ip:
            # Someone else claims our address (RFC 5227 conflict); never learn it.
            if pkt.sender_mac != self.mac:
                self.counters["arp-address-conflict"] += 1
            return
        if pkt.sender_ip not in self.network or pkt.sender_ip in (
            self.network.network_address,
            self.network.broadcast_address,
        ):
            self.counters["arp-off-subnet"] += 1
            return
        for_us = pkt.target_ip == self.ip
        reply = pkt.op == warp.OP_REPLY
        if pkt.op not in (warp.OP_REQUEST, warp.OP_REPLY):
            self.counters["arp-bad-op"] += 1
            return
        decision, ready = self.arp.learn(
            pkt.sender_ip, pkt.sender_mac, now, reply=reply, for_us=for_us
        )
        if decision in (ArpDecision.REFUSED_CONFLICT, ArpDecision.REFUSED_UNSOLICITED):
            self.counters[f"arp-refused-{decision.value}"] += 1
            self._events.append(ev.ArpRefused(now, pkt.sender_ip, pkt.sender_mac, decision.value))
        for packet, ethertype in ready:
            self._emit(
                weth.build(weth.EthernetFrame(pkt.sender_mac, self.mac, ethertype, packet)), now
            )
        if pkt.op == warp.OP_REQUEST and for_us:
            self.counters["arp-replies-out"] += 1
            self._send_arp(warp.OP_REPLY, pkt.sender_mac, pkt.sender_mac, pkt.sender_ip, now)

    # ------------------------------------------------------------------- IPv4
    def next_hop(self, dst: IPv4Address) -> IPv4Address:
        """The lessons' rule: on-link iff dst AND mask == own network AND mask."""
        mask = int(self.network.netmask)
        if int(dst) & mask == int(self.network.network_address) & mask or dst == LIMITED_BROADCAST:
            return dst
        if self.config.gateway is None:
            raise NoRouteError(f"no route to {dst}: off-link and no gateway")
        return self.config.gateway

    def send_ip(
        self,
        dst: IPv4Address,
        proto: int,
        payload: bytes,
        now: float,
        *,
        dont_fragment: bool = False,
    ) -> None:
        hop = self.next_hop(dst)
        self._ip_ident = (self._ip_ident + 1) & 0xFFFF
        pkt = wip.Ipv4Packet(
            src=self.ip,
            dst=dst,
            proto=proto,
            payload=payload,
            ttl=self.config.ttl,
            ident=self._ip_ident,
            dont_fragment=dont_fragment,
        )
        if 20 + len(payload) > self.mtu:
            if dont_fragment:
                self.counters["ipv4-too-big-df"] += 1
                raise LocalProtocolError(
                    f"packet of {20 + len(payload)} octets exceeds mtu {self.mtu} with DF"
                )
            self.counters["ipv4-fragmented"] += 1
            packets = [wip.build(p) for p in fragment(pkt, self.mtu)]
        else:
            packets = [wip.build(pkt)]
        if hop == LIMITED_BROADCAST or hop == self.network.broadcast_address:
            mac: bytes | None = weth.BROADCAST
        else:
            mac = self.arp.resolve(hop, now)
        if mac is None:
            for raw in packets:
                if not self.arp.enqueue(hop, raw, weth.ETHERTYPE_IPV4, now):
                    self.counters["arp-pending-full"] += 1
        else:
            for raw in packets:
                self._emit(
                    weth.build(weth.EthernetFrame(mac, self.mac, weth.ETHERTYPE_IPV4, raw)), now
                )
        self._flush_arp_requests(now)

    def _receive_ipv4(self, frame: weth.EthernetFrame, now: float) -> None:
        try:
            pkt = wip.parse(frame.payload)
        except MalformedPacket as exc:
            self._malformed(exc)
            return
        # RFC 1122 §3.2.1.7: a host must not discard a datagram for a low TTL,
        # so TTL is the router's business (links/lan.py), not checked here.
        dst = pkt.dst
        broadcast = dst == LIMITED_BROADCAST or dst == self.network.broadcast_address
        if dst != self.ip and not broadcast:
            self.counters["ipv4-not-for-us"] += 1
            return
        if (
            pkt.src.is_multicast
            or pkt.src == LIMITED_BROADCAST
            or pkt.src == self.network.broadcast_address
        ):
            # RFC 1122 §3.2.1.3: a broadcast/multicast source is discarded.
            self.counters["ipv4-bad-source"] += 1
            return
        if pkt.more_fragments or pkt.frag_offset:
            whole = self.reassembler.add(pkt, now)
            self.counters.update(self.reassembler.counters)
            self.reassembler.counters.clear()
            if whole is None:
                return
            pkt = whole
        self.counters["ipv4-in"] += 1
        if pkt.proto == wip.PROTO_ICMP:
            self._receive_icmp(pkt, broadcast, now)
        elif pkt.proto == wip.PROTO_UDP:
            self._receive_udp(pkt, broadcast, now)
        elif pkt.proto == wip.PROTO_TCP:
            if broadcast:
                self.counters["tcp-broadcast"] += 1
                return
            self._receive_tcp(pkt, now)
        else:
            self.counters["ipv4-unknown-proto"] += 1
            # RFC 1122 §3.2.2.1: protocol unreachable.
            self._send_icmp_error(pkt, wicmp.TYPE_DEST_UNREACHABLE, 2, now)

    # ------------------------------------------------------------------- ICMP
    def ping(self, dst: IPv4Address, ident: int, sequence: int, data: bytes, now: float) -> None:
        msg = wicmp.echo(wicmp.TYPE_ECHO_REQUEST, ident, sequence, data)
        self.send_ip(dst, wip.PROTO_ICMP, wicmp.build(msg), now)

    def _receive_icmp(self, pkt: wip.Ipv4Packet, broadcast: bool, now: float) -> None:
        try:
            msg = wicmp.parse(pkt.payload)
        except MalformedPacket as exc:
            self._malformed(exc)
            return
        self.counters["icmp-in"] += 1
        if msg.type == wicmp.TYPE_ECHO_REQUEST:
            if broadcast:
                # Linux's icmp_echo_ignore_broadcasts: smurf amplification defence.
                self.counters["icmp-echo-broadcast-ignored"] += 1
                return
            reply = wicmp.IcmpMessage(wicmp.TYPE_ECHO_REPLY, 0, msg.rest, msg.payload)
            self.counters["icmp-echo-replies-out"] += 1
            try:
                self.send_ip(pkt.src, wip.PROTO_ICMP, wicmp.build(reply), now)
            except NoRouteError:
                self.counters["icmp-no-route"] += 1
        elif msg.type == wicmp.TYPE_ECHO_REPLY:
            self._events.append(ev.EchoReply(now, pkt.src, msg.ident, msg.sequence, msg.payload))
        elif msg.type == wicmp.TYPE_DEST_UNREACHABLE:
            self._receive_icmp_unreachable(msg)
        else:
            self.counters[f"icmp-type-{msg.type}"] += 1

    def _receive_icmp_unreachable(self, msg: wicmp.IcmpMessage) -> None:
        # The quoted datagram: IP header + at least 8 octets (RFC 792).
        quoted = msg.payload
        if len(quoted) < 28 or quoted[0] >> 4 != 4:
            self.counters["icmp-bad-quote"] += 1
            return
        ihl = (quoted[0] & 0xF) * 4
        if len(quoted) < ihl + 8 or quoted[9] != wip.PROTO_UDP:
            return
        src = IPv4Address(quoted[12:16])
        dst = IPv4Address(quoted[16:20])
        sport = int.from_bytes(quoted[ihl : ihl + 2], "big")
        dport = int.from_bytes(quoted[ihl + 2 : ihl + 4], "big")
        if src != self.ip:
            return
        endpoint = self._udp.get(sport)
        if endpoint is None or endpoint.remote != (dst, dport):
            # Linux reports ICMP errors only to connected UDP sockets.
            return
        code = errno.ECONNREFUSED if msg.code == wicmp.CODE_PORT_UNREACHABLE else errno.EHOSTUNREACH
        endpoint.error = code
        self._events.append(ev.DatagramError(endpoint, code, (dst, dport)))

    def _send_icmp_error(self, about: wip.Ipv4Packet, type_: int, code: int, now: float) -> None:
        # RFC 1122 §3.2.2: never about a broadcast, a non-initial fragment, or
        # another ICMP error; and rate-limited (token bucket, as Linux).
        if about.frag_offset or about.dst != self.ip:
            return
        if about.proto == wip.PROTO_ICMP and about.payload[:1] not in (b"\x00", b"\x08"):
            return
        rate = self.config.icmp_errors_per_second
        self._icmp_tokens = min(
            float(self.config.icmp_error_burst),
            self._icmp_tokens + (now - self._icmp_tokens_at) * rate,
        )
        self._icmp_tokens_at = now
        if self._icmp_tokens < 1.0:
            self.counters["icmp-errors-ratelimited"] += 1
            return
        self._icmp_tokens -= 1.0
        # The quote: the original header as it was (its own total length and
        # checksum) and the first 8 octets of its payload (RFC 792).
        quoted = wip.build_header(about, len(about.payload)) + about.payload[:8]
        msg = wicmp.IcmpMessage(type_, code, 0, quoted)
        self.counters[f"icmp-errors-out-{type_}-{code}"] += 1
        try:
            self.send_ip(about.src, wip.PROTO_ICMP, wicmp.build(msg), now)
        except NoRouteError:
            self.counters["icmp-no-route"] += 1

    # -------------------------------------------------------------------- UDP
    def _ephemeral(self, used: Callable[[int], bool]) -> int:
        span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
        start = self.rng.randrange(span)
        for i in range(span):
            port = EPHEMERAL_LOW + (start + i) % span
            if not used(port):
                return port
        raise AddressInUseError("no free ephemeral port")

    def _check_local(self, addr: IPv4Address) -> None:
        if addr not in (ANY, self.ip):
            raise AddressNotAvailableError(f"{addr} is not this host's address")

    def udp_open(self, port: int = 0, addr: IPv4Address = ANY) -> UdpEndpoint:
        self._check_local(addr)
        if not 0 <= port <= 65535:
            raise LocalProtocolError("port must be 0-65535")
        if port == 0:
            port = self._ephemeral(lambda p: p in self._udp)
        elif port in self._udp:
            raise AddressInUseError(f"UDP port {port} in use")
        endpoint = UdpEndpoint(self, (addr, port), self.config.udp_queue_limit)
        self._udp[port] = endpoint
        return endpoint

    def udp_close(self, endpoint: UdpEndpoint) -> None:
        if not endpoint.closed:
            endpoint.closed = True
            if self._udp.get(endpoint.local[1]) is endpoint:
                del self._udp[endpoint.local[1]]

    def udp_sendto(self, endpoint: UdpEndpoint, data: bytes, addr: Address, now: float) -> None:
        if endpoint.closed:
            raise LocalProtocolError("endpoint is closed")
        if len(data) > 65535 - 28:
            raise LocalProtocolError("datagram too long for IPv4 (EMSGSIZE)")
        ip, port = IPv4Address(addr[0]), addr[1]
        if not 0 < port <= 65535:
            raise LocalProtocolError("destination port must be 1-65535")
        datagram = wudp.build(wudp.UdpDatagram(endpoint.local[1], port, bytes(data)), self.ip, ip)
        self.counters["udp-out"] += 1
        self.send_ip(ip, wip.PROTO_UDP, datagram, now)

    def _receive_udp(self, pkt: wip.Ipv4Packet, broadcast: bool, now: float) -> None:
        try:
            dgram = wudp.parse(pkt.payload, pkt.src, pkt.dst)
        except MalformedPacket as exc:
            self._malformed(exc)
            return
        endpoint = self._udp.get(dgram.dst_port)
        if endpoint is None or (
            endpoint.remote is not None and endpoint.remote != (pkt.src, dgram.src_port)
        ):
            self.counters["udp-closed-port"] += 1
            if not broadcast:
                # RFC 1122 §4.1.3.1: port unreachable for a closed port.
                self._send_icmp_error(
                    pkt, wicmp.TYPE_DEST_UNREACHABLE, wicmp.CODE_PORT_UNREACHABLE, now
                )
            return
        if len(endpoint.queue) >= endpoint.limit:
            endpoint.dropped += 1
            self.counters["udp-queue-full"] += 1
            return
        self.counters["udp-in"] += 1
        was_empty = not endpoint.queue
        endpoint.queue.append((dgram.payload, (pkt.src, dgram.src_port)))
        if was_empty:
            self._events.append(ev.DatagramReadable(endpoint))

    # -------------------------------------------------------------------- TCP
    def _init_tcp(self) -> None:
        pass

    def _tcp_timer(self) -> float | None:
        return None

    def _tcp_handle_timer(self, now: float) -> None:
        pass

    def _receive_tcp(self, pkt: wip.Ipv4Packet, now: float) -> None:
        self.counters["tcp-in"] += 1
