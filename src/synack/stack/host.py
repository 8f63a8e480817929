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
import hashlib
import heapq
import random
import struct
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface

from synack.errors import LocalProtocolError
from synack.stack import events as ev
from synack.stack.arp import ArpCache, ArpDecision, ArpPolicy, ArpTimings, NeighbourState
from synack.stack.reassembly import Reassembler, fragment
from synack.tcp import events as tev
from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection, reply_when_closed, reply_when_listening
from synack.tcp.isn import IsnGenerator
from synack.tcp.seq import seq_gt
from synack.tcp.states import State
from synack.wire import arp as warp
from synack.wire import ethernet as weth
from synack.wire import icmp as wicmp
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire import udp as wudp
from synack.wire.checksum import finish, ones_sum
from synack.wire.errors import MalformedPacket
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment

Observer = Callable[[object], None]
_UDP_HEADER = struct.Struct("!HHHH")
_ETH_IP_HEADER = struct.Struct("!6s8sBBHHHHHII")  # dst MAC, src MAC + type, IPv4 header
Address = tuple[IPv4Address, int]
ConnKey = tuple[IPv4Address, int, IPv4Address, int]  # local ip, port, remote ip, port

EPHEMERAL_LOW = 49152  # RFC 6335 §6 dynamic ports
EPHEMERAL_HIGH = 65535
LIMITED_BROADCAST = IPv4Address("255.255.255.255")
ANY = IPv4Address("0.0.0.0")
LOOPBACK = IPv4Address("127.0.0.1")


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
    tcp: TcpConfig | None = None  # default: TcpConfig with mss = mtu - 40
    # SYN-flood defence once a listener's half-open queue is full: SYN
    # cookies (True), or evicting the oldest half-open connection (False).
    syn_cookies: bool = True

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


class TcpStream:
    """One TCP connection on a host. The sans-IO connection is ``conn``; the
    host keeps its events in ``pending`` for the owner (an adapter) and
    reports :class:`~synack.stack.events.TcpActivity` when there are new ones.
    Every call takes ``now``, like the connection itself."""

    def __init__(
        self, host: Host, key: ConnKey, conn: TcpConnection, listener: TcpListener | None
    ) -> None:
        self.host = host
        self.key = key
        self.conn = conn
        self.listener = listener  # the listener that made it (passive), until accepted
        self.pending: deque[tev.Event] = deque()
        self.deadline: float | None = None
        self.gone = False  # forgotten by the host (CLOSED)
        self.owner: object = None

    @property
    def local(self) -> Address:
        return (self.key[0], self.key[1])

    @property
    def remote(self) -> Address:
        return (self.key[2], self.key[3])

    def send(self, data: bytes | bytearray | memoryview, now: float) -> int:
        n = self.conn.send(data, now)
        self.host._tcp_touch(self, now)
        return n

    def receive(self, max_bytes: int, now: float) -> bytes:
        data = self.conn.receive(max_bytes)
        if data:
            self.host._tcp_touch(self, now)  # may carry a window update
        return data

    def shutdown_write(self, now: float) -> None:
        self.conn.shutdown_write(now)
        self.host._tcp_touch(self, now)

    def close(self, now: float) -> None:
        self.conn.close(now)
        self.host._tcp_touch(self, now)

    def abort(self, now: float) -> None:
        self.conn.abort(now)
        self.host._tcp_touch(self, now)

    def poll(self, now: float) -> None:
        """Flush what calls on ``conn`` made directly have queued."""
        self.host._tcp_touch(self, now)


class TcpListener:
    """A listening port: a half-open queue (bounded, evicting its oldest:
    the SYN-flood defence) and an accept queue bounded by ``backlog``."""

    def __init__(
        self, host: Host, local: Address, backlog: int, syn_backlog: int, config: TcpConfig
    ) -> None:
        self.host = host
        self.local = local
        self.backlog = backlog
        self.syn_backlog = syn_backlog
        self.config = config
        self.half_open: dict[ConnKey, TcpStream] = {}  # insertion order = age
        self.queue: deque[TcpStream] = deque()  # established, not yet accepted
        self.closed = False
        self.owner: object = None

    def accept(self) -> TcpStream | None:
        if self.host._dirty:
            self.host._flush_dirty()  # a handshake may have just completed
        while self.queue:
            stream = self.queue.popleft()
            stream.listener = None
            if not stream.gone or stream.pending:
                return stream
        return None

    def close(self, now: float) -> None:
        self.host.tcp_close_listener(self, now)


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
        self._out: list[bytes | SplitFrame] = []
        self._events: deque[object] = deque()
        self._ip_ident = self.rng.randrange(1 << 16)
        self._udp: dict[int, UdpEndpoint] = {}
        self._icmp_tokens = float(config.icmp_error_burst)
        self._icmp_tokens_at = 0.0
        self._now = 0.0
        self._timer_heap: list[tuple[float, int, object]] = []
        self._loop_queue: deque[wip.Ipv4Packet] = deque()
        self._verify_l4 = True  # False while handling a frame whose link vouched for it
        # Set by an adapter whose link segments large TCP frames itself (a
        # TAP device with offloads): consecutive segments of one flush are
        # then sent as one (TSO), like a NIC driver does.
        self.tso = False
        # Set by an adapter whose link takes SplitFrame (headers and payload
        # apart, one gather write).
        self.split = False
        self._route_cache: dict[
            IPv4Address, tuple[bytes, float]
        ] = {}  # dst -> (next-hop MAC, until)
        self._ip_int = int(self.ip)
        self._ttl_word = config.ttl << 8  # the IPv4 header's TTL/protocol word, less protocol
        self._eth_ipv4_tail = self.mac + weth.ETHERTYPE_IPV4.to_bytes(2, "big")
        self._dirty: dict[TcpStream, None] = {}  # streams fed segments, not yet touched
        self._pmtu: dict[IPv4Address, int] = {}  # path MTU learnt from ICMP (RFC 1191)
        self._looping = False
        self._init_tcp()

    # ------------------------------------------------------------------ I/O
    def start(self, now: float) -> None:
        """Announce ourselves: a gratuitous ARP (RFC 5227 §3 announcement) so
        neighbours holding a stale entry for our address update it."""
        if now > self._now:
            self._now = now
        self._send_arp(warp.OP_REQUEST, weth.BROADCAST, bytes(6), self.ip, now)

    def frames_to_send(self) -> list[bytes]:
        """Whole frames to send (split ones joined: see :meth:`drain_frames`)."""
        return [f if type(f) is bytes else bytes(f) for f in self.drain_frames()]

    def drain_frames(self) -> list[bytes | SplitFrame]:
        """Frames to send; with ``tso`` some are :class:`SplitFrame` (headers
        and payload apart, transport checksum left to the link)."""
        if self._dirty:
            self._flush_dirty()
        out, self._out = self._out, []
        return out

    def next_event(self) -> object | None:
        if self._dirty:
            self._flush_dirty()
        return self._events.popleft() if self._events else None

    def _flush_dirty(self) -> None:
        # Touching one stream may feed another (loopback): until none is left.
        while self._dirty:
            dirty, self._dirty = self._dirty, {}
            for stream in dirty:
                self._tcp_touch(stream, self._now)

    def has_news(self) -> bool:
        """Events or frames are waiting (an adapter then pumps again)."""
        return bool(self._events or self._out or self._dirty)

    def _emit(self, frame: bytes | SplitFrame, now: float) -> None:
        self._out.append(frame)
        self.counters["frames-out"] += 1
        if self.observers:
            # A split frame is recorded as it leaves us: its checksum field
            # holds the pseudo-header sum the link's offload completes (what
            # tcpdump shows on an offloading NIC).
            rec = ev.FrameTrace(self.name, now, "out", bytes(frame))
            for obs in self.observers:
                obs(rec)

    def receive_frame(self, data: bytes, now: float, *, l4_verified: bool = False) -> None:
        """One Ethernet frame from the link. ``l4_verified``: the link vouches
        for its TCP/UDP/ICMP checksum (a TAP with offloads), so it is not
        summed again."""
        if not l4_verified:
            self._receive_frame(data, now)
            return
        self._verify_l4 = False
        try:
            self._receive_frame(data, now)
        finally:
            self._verify_l4 = True

    def _receive_frame(self, data: bytes, now: float) -> None:
        if now > self._now:
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
        """The earliest deadline of the whole host (a pure query)."""
        if self._dirty:
            # Segments were fed but not yet processed (frames_to_send or
            # next_event would do it): due now, handle_timer flushes them.
            return self._now
        deadline = self.arp.get_timer()
        t = self.reassembler.get_timer()
        if t is not None and (deadline is None or t < deadline):
            deadline = t
        t = self._tcp_timer()
        if t is not None and (deadline is None or t < deadline):
            deadline = t
        return deadline

    def handle_timer(self, now: float) -> None:
        if self._dirty:
            self._flush_dirty()
        if now > self._now:
            self._now = now
        entries = len(self.arp.entries)
        failed = self.arp.handle_timer(now)
        if failed or self.arp.requests or len(self.arp.entries) != entries:
            # A probe went out or an entry went: the next send asks ARP again.
            self._route_cache.clear()
        for ip, dropped in failed:
            self.counters["arp-failed"] += 1
            self.counters["arp-pending-dropped"] += dropped
            self._events.append(ev.NeighbourUnreachable(now, ip, dropped))
            self._tcp_unreachable(ip, now)
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
        self._route_cache.clear()
        decision, ready = self.arp.learn(
            pkt.sender_ip, pkt.sender_mac, now, reply=reply, for_us=for_us
        )
        if decision in (ArpDecision.REFUSED_CONFLICT, ArpDecision.REFUSED_UNSOLICITED):
            self.counters[f"arp-refused-{decision.value}"] += 1
            refused = ev.ArpRefused(now, pkt.sender_ip, pkt.sender_mac, decision.value)
            self._events.append(refused)
            for obs in self.observers:  # visible in traces too
                obs(refused)
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
        oversize: bool = False,
    ) -> None:
        """Send one IPv4 packet (fragmented if over the MTU, unless
        ``oversize``: a TSO segment the link will cut up itself)."""
        total = 20 + len(payload)
        cached = self._route_cache.get(dst) if total <= self.mtu or oversize else None
        if cached is not None and cached[1] > now:
            # The fast path for a unicast packet to a resolved neighbour: the
            # headers packed at once, no intermediate objects.
            self._emit(
                self._eth_ip_head(
                    cached[0], total, 0x4000 if dont_fragment else 0, proto, self._ip_int, int(dst)
                )
                + payload,
                now,
            )
            return
        self._ip_ident = (self._ip_ident + 1) & 0xFFFF
        if dst.is_loopback or dst == self.ip:
            self._loopback(
                wip.Ipv4Packet(
                    src=self.source_for(dst),
                    dst=dst,
                    proto=proto,
                    payload=payload,
                    ttl=self.config.ttl,
                    ident=self._ip_ident,
                ),
                now,
            )
            return
        hop = self.next_hop(dst)
        pkt = wip.Ipv4Packet(
            src=self.ip,
            dst=dst,
            proto=proto,
            payload=payload,
            ttl=self.config.ttl,
            ident=self._ip_ident,
            dont_fragment=dont_fragment,
        )
        if 20 + len(payload) > self.mtu and not oversize:
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
            if mac is not None and self._cacheable(hop, now):
                # Cached for at most a second, and dropped whenever ARP learns
                # or probes anything, so ageing and re-probing still see every
                # use that matters.
                if len(self._route_cache) >= 1024:
                    self._route_cache.clear()
                self._route_cache[dst] = (mac, now + 1.0)
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

    def _eth_ip_head(
        self, mac: bytes, total: int, flags: int, proto: int, src: int, dst: int
    ) -> bytes:
        """The Ethernet and IPv4 headers (next ident) of a packet to a resolved
        neighbour, packed at once. The header checksum is summed from its
        words (RFC 1071: an address counts as itself modulo 0xFFFF), no buffer
        built to be summed."""
        self._ip_ident = ident = (self._ip_ident + 1) & 0xFFFF
        ttl_proto = self._ttl_word | proto
        csum = finish(0x4500 + total + ident + flags + ttl_proto + src + dst)
        return _ETH_IP_HEADER.pack(
            mac, self._eth_ipv4_tail, 0x45, 0, total, ident, flags, ttl_proto, csum, src, dst
        )

    def _cacheable(self, hop: IPv4Address, now: float) -> bool:
        """A neighbour whose MAC may be used without asking ARP for a while:
        REACHABLE, or STALE with its re-probe already scheduled (then a use
        changes nothing in ARP; Linux's DELAY). A STALE entry the kernel never
        needs to confirm (it learnt us from its own request) stays STALE for
        minutes, and every segment would otherwise take the slow path."""
        state = self.arp.state(hop, now)
        if state is NeighbourState.REACHABLE:
            return True
        n = self.arp.entries.get(hop)
        return state is NeighbourState.STALE and n is not None and n.retry_at is not None

    def source_for(self, dst: IPv4Address) -> IPv4Address:
        """Our address as seen from ``dst``: 127.0.0.1 over loopback."""
        return LOOPBACK if dst.is_loopback else self.ip

    def _loopback(self, pkt: wip.Ipv4Packet, now: float) -> None:
        # Packets to ourselves never touch the link (like Linux's lo). A queue,
        # not recursion: a reply sent while delivering waits its turn.
        self.counters["ipv4-loopback"] += 1
        self._loop_queue.append(pkt)
        if self._looping:
            return
        self._looping = True
        try:
            while self._loop_queue:
                self._deliver_ipv4(self._loop_queue.popleft(), False, now)
        finally:
            self._looping = False

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
        if (
            pkt.src == self.ip
            or pkt.src.is_loopback
            or (pkt.src.is_unspecified and pkt.proto != wip.PROTO_UDP)
        ):
            # Martians: our own or a loopback address cannot come from the
            # link (a "land" attack would make us talk to ourselves).
            self.counters["ipv4-martian"] += 1
            return
        if pkt.more_fragments or pkt.frag_offset:
            whole = self.reassembler.add(pkt, now)
            self.counters.update(self.reassembler.counters)
            self.reassembler.counters.clear()
            if whole is None:
                return
            pkt = whole
        self._deliver_ipv4(pkt, broadcast, now)

    def _deliver_ipv4(self, pkt: wip.Ipv4Packet, broadcast: bool, now: float) -> None:
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
            msg = wicmp.parse(pkt.payload, verify_checksum=self._verify_l4)
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
        if len(quoted) < ihl + 8:
            return
        src = IPv4Address(quoted[12:16])
        dst = IPv4Address(quoted[16:20])
        if msg.code == wicmp.CODE_FRAG_NEEDED and src == self.ip:
            # RFC 1191: a router could not forward our DF packet. Remember
            # the path MTU and stop setting DF above it, so the retransmission
            # is fragmented on the way instead of being lost again (TCP's MSS
            # is fixed at the handshake here; fragmenting is the safe fallback).
            mtu = msg.rest & 0xFFFF or 576
            self.counters["icmp-frag-needed"] += 1
            if len(self._pmtu) >= 4096:
                self._pmtu.clear()
            self._pmtu[dst] = max(68, min(mtu, self.mtu))
            return
        if quoted[9] != wip.PROTO_UDP:
            return
        sport = int.from_bytes(quoted[ihl : ihl + 2], "big")
        dport = int.from_bytes(quoted[ihl + 2 : ihl + 4], "big")
        if src != self.ip and not src.is_loopback:
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
        if about.frag_offset or (about.dst != self.ip and not about.dst.is_loopback):
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

    def _ephemeral_for(self, remote: Address, used: Callable[[int], bool]) -> int:
        """RFC 6056 §3.3.3-style: a random starting point per destination,
        then consecutive ports, so a destination sees a port again only after
        the whole range (its TIME-WAIT entries have long expired by then)."""
        span = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1
        nxt = self._port_next.get(remote)
        if nxt is None:
            if len(self._port_next) >= 4096:
                self._port_next.clear()
            nxt = self.rng.randrange(span)
        for i in range(span):
            port = EPHEMERAL_LOW + (nxt + i) % span
            if not used(port):
                self._port_next[remote] = (nxt + i + 1) % span
                return port
        raise AddressInUseError("no free ephemeral port")

    def _check_local(self, addr: IPv4Address) -> None:
        if addr not in (ANY, self.ip) and not addr.is_loopback:
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
        if (
            self.tso
            and self._route_cache
            and self._send_udp_offloaded(endpoint, data, ip, port, now)
        ):
            self.counters["udp-out"] += 1
            return
        src = self.source_for(ip)
        datagram = wudp.build(wudp.UdpDatagram(endpoint.local[1], port, bytes(data)), src, ip)
        self.counters["udp-out"] += 1
        self.send_ip(ip, wip.PROTO_UDP, datagram, now)

    def _send_udp_offloaded(
        self, endpoint: UdpEndpoint, data: bytes, ip: IPv4Address, port: int, now: float
    ) -> bool:
        """UDP over a checksum-offloading link to a resolved neighbour, as
        :meth:`_send_split` does for TCP: the checksum field holds the
        pseudo-header sum (RFC 768) and the link completes it. False when
        the datagram needs fragmenting or the next hop is not cached."""
        cached = self._route_cache.get(ip)
        length = 8 + len(data)
        if cached is None or cached[1] <= now or 20 + length > self.mtu:
            return False
        partial = self._ip_int + int(ip) + wip.PROTO_UDP + length
        while partial >> 16:
            partial = (partial & 0xFFFF) + (partial >> 16)
        head = self._eth_ip_head(
            cached[0], 20 + length, 0, wip.PROTO_UDP, self._ip_int, int(ip)
        ) + _UDP_HEADER.pack(endpoint.local[1], port, length, partial)
        self._emit(SplitFrame(head, bytes(data), 34, 6), now)
        return True

    def _receive_udp(self, pkt: wip.Ipv4Packet, broadcast: bool, now: float) -> None:
        try:
            dgram = wudp.parse(pkt.payload, pkt.src, pkt.dst, verify_checksum=self._verify_l4)
        except MalformedPacket as exc:
            self._malformed(exc)
            return
        endpoint = self._udp.get(dgram.dst_port)
        if endpoint is not None and (
            (endpoint.local[0] != ANY and endpoint.local[0] != pkt.dst and not broadcast)
            or (endpoint.remote is not None and endpoint.remote != (pkt.src, dgram.src_port))
        ):
            endpoint = None
        if endpoint is None:
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
        self.isn = IsnGenerator(self.isn_secret)
        # Our MSS is what the link carries minus the IP and TCP headers.
        self.tcp_config = self.config.tcp or TcpConfig(mss=self.mtu - 40)
        self._conns: dict[ConnKey, TcpStream] = {}
        self._listeners: dict[int, TcpListener] = {}
        self._tcp_heap: list[tuple[float, int, TcpStream]] = []
        self._tcp_seq = 0
        self._port_next: dict[Address, int] = {}
        self._cookie_secret = hashlib.blake2s(b"syn-cookie" + self.isn_secret).digest()

    @property
    def connections(self) -> dict[ConnKey, TcpStream]:
        return self._conns

    def _tcp_timer(self) -> float | None:
        heap = self._tcp_heap
        # Lazy deletion: an entry is live only if it still is its stream's deadline.
        while heap and (heap[0][2].deadline != heap[0][0] or heap[0][2].gone):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _tcp_handle_timer(self, now: float) -> None:
        heap = self._tcp_heap
        while heap and heap[0][0] <= now:
            t, _, stream = heapq.heappop(heap)
            if stream.deadline != t or stream.gone:
                continue
            stream.deadline = None
            stream.conn.handle_timer(now)
            self._tcp_touch(stream, now)

    def _tcp_touch(self, stream: TcpStream, now: float) -> None:
        """The per-connection adapter loop: events, segments, timer."""
        # The host's clock only moves forward: a stale `now` would send
        # timestamps that go back in time (RFC 7323 PAWS would drop them).
        if now > self._now:
            self._now = now
        else:
            now = self._now
        conn = stream.conn
        notify = False
        while (event := conn.next_event()) is not None:
            if isinstance(event, tev.StateChanged):
                if self.observers:
                    rec = ev.TcpStateTrace(
                        self.name,
                        event.time,
                        conn.local,
                        conn.remote,
                        event.old.value,
                        event.new.value,
                    )
                    for obs in self.observers:
                        obs(rec)
                continue
            if isinstance(event, tev.Connected) and stream.listener is not None:
                listener = stream.listener
                listener.half_open.pop(stream.key, None)
                if listener.closed:
                    conn.abort(now)
                else:
                    listener.queue.append(stream)
                    self._events.append(ev.TcpActivity(listener))
            elif isinstance(event, tev.Closed):
                self._tcp_forget(stream)
            stream.pending.append(event)
            notify = True
        segments = conn.segments_to_send(now)
        if self.tso and len(segments) > 1:
            segments = _coalesce(segments)
        for seg in segments:
            self._tcp_output(conn.local[0], conn.remote[0], seg, now)
        if notify and stream.owner is not None:
            self._events.append(ev.TcpActivity(stream))
        t = conn.get_timer()
        if t != stream.deadline and not stream.gone:
            stream.deadline = t
            if t is not None:
                self._tcp_seq += 1
                heapq.heappush(self._tcp_heap, (t, self._tcp_seq, stream))

    def _tcp_unreachable(self, hop: IPv4Address, now: float) -> None:
        """ARP failed for ``hop``: connections still in SYN-SENT through it fail
        (Linux reports EHOSTUNREACH to connect() then)."""
        for stream in list(self._conns.values()):
            if stream.conn.state is not State.SYN_SENT or stream.remote[0].is_loopback:
                continue
            try:
                via = self.next_hop(stream.remote[0])
            except NoRouteError:
                continue
            if via == hop:
                self.counters["tcp-host-unreachable"] += 1
                stream.pending.append(ev.HostUnreachable(stream.remote[0]))
                stream.conn.abort(now)
                self._tcp_touch(stream, now)  # CLOSED: the owner is told, in order

    def _tcp_forget(self, stream: TcpStream) -> None:
        if stream.gone:
            return
        stream.gone = True
        if self._conns.get(stream.key) is stream:
            del self._conns[stream.key]
        if stream.listener is not None:
            stream.listener.half_open.pop(stream.key, None)

    def _tcp_output(self, src: IPv4Address, dst: IPv4Address, seg: TcpSegment, now: float) -> None:
        if self.split and self._route_cache and self._send_split(src, dst, seg, now):
            return
        raw = wtcp.build(seg, src, dst)
        self.counters["tcp-out"] += 1
        try:
            # DF as Linux does for TCP (PMTU discovery), when the segment fits.
            mtu = self._pmtu.get(dst, self.mtu) if self._pmtu else self.mtu
            if self.tso and 20 + len(raw) > mtu and mtu == self.mtu:
                # A coalesced segment: the link cuts it into MTU-sized ones.
                self.counters["tcp-tso-out"] += 1
                self.send_ip(dst, wip.PROTO_TCP, raw, now, dont_fragment=True, oversize=True)
            else:
                self.send_ip(dst, wip.PROTO_TCP, raw, now, dont_fragment=20 + len(raw) <= mtu)
        except NoRouteError:
            self.counters["tcp-no-route"] += 1

    def _send_split(self, src: IPv4Address, dst: IPv4Address, seg: TcpSegment, now: float) -> bool:
        """The fast path to a resolved neighbour over a link that takes split
        frames (``split``): Ethernet, IPv4 and TCP headers built as one
        string, the payload left as it is (never copied). With a
        checksum-offloading link (``tso``) the payload is not summed either:
        the TCP checksum field holds the pseudo-header sum for the link to
        complete, as a NIC with TX checksum offload does. False when the slow
        path must do it (unresolved next hop, a learnt path MTU, loopback, a
        segment to fragment)."""
        cached = self._route_cache.get(dst)
        if cached is None or cached[1] <= now or self._pmtu:
            return False
        tcp_header = wtcp.build_header_offload(seg, src, dst)
        payload = seg.payload
        total = 20 + len(tcp_header) + len(payload)
        if not self.tso:
            if total > self.mtu:
                return False
            # The field holds the pseudo-header sum: summing the header with
            # it is summing pseudo-header and header at once.
            csum = finish(ones_sum(tcp_header) + ones_sum(payload))
            tcp_header = b"".join((tcp_header[:16], csum.to_bytes(2, "big"), tcp_header[18:]))
        self.counters["tcp-out"] += 1
        if total > self.mtu:
            self.counters["tcp-tso-out"] += 1
        head = (
            self._eth_ip_head(cached[0], total, 0x4000, wip.PROTO_TCP, int(src), int(dst))
            + tcp_header
        )
        self._emit(SplitFrame(head, payload, 34 if self.tso else 0, 16), now)
        return True

    def _receive_tcp(self, pkt: wip.Ipv4Packet, now: float) -> None:
        try:
            seg = wtcp.parse(pkt.payload, pkt.src, pkt.dst, verify_checksum=self._verify_l4)
        except MalformedPacket as exc:
            self._malformed(exc)
            return
        self.counters["tcp-in"] += 1
        if not seg.src_port or not seg.dst_port:
            # Port 0 is reserved (RFC 9293 §3.1): never a connection's.
            self.counters["tcp-bad-port"] += 1
            return
        key = (pkt.dst, seg.dst_port, pkt.src, seg.src_port)
        stream = self._conns.get(key)
        if stream is not None:
            if not (
                stream.conn.state is State.TIME_WAIT
                and seg.flags & (TcpFlags.SYN | TcpFlags.ACK | TcpFlags.RST) == TcpFlags.SYN
                and seq_gt(seg.seq, stream.conn.rcv_nxt)
                and seg.dst_port in self._listeners
            ):
                stream.conn.receive_segment(seg, now)
                # Touched (events, output, timer) once per batch of frames, so
                # a burst of segments is acknowledged by one ACK (RFC 9293
                # §3.10.7.4 MUST-58/59) and its owner woken once.
                self._dirty[stream] = None
                return
            # RFC 9293 §3.6.1 (MAY-2): a new SYN beyond the old incarnation's
            # sequence space may reopen a TIME-WAIT 4-tuple; our ISNs grow
            # with the clock (RFC 6528) so the new one is larger too.
            self.counters["tcp-timewait-reopen"] += 1
            self._tcp_forget(stream)
        listener = self._listeners.get(seg.dst_port)
        if listener is not None and listener.local[0] not in (ANY, pkt.dst):
            listener = None
        if listener is None:
            # RFC 9293 §3.10.7.1: a segment to a closed port gets a reset.
            self.counters["tcp-closed-port"] += 1
            reply = reply_when_closed(seg)
            if reply is not None:
                self.counters["tcp-rst-out"] += 1
                self._tcp_output(pkt.dst, pkt.src, reply, now)
            return
        if seg.flags & (TcpFlags.SYN | TcpFlags.ACK | TcpFlags.RST) != TcpFlags.SYN:
            if (
                seg.flags & (TcpFlags.SYN | TcpFlags.ACK | TcpFlags.RST) == TcpFlags.ACK
                and self.config.syn_cookies
                and self._tcp_cookie_ack(listener, key, seg, now)
            ):
                return
            reply = reply_when_listening(seg)
            if reply is not None:
                self.counters["tcp-rst-out"] += 1
                self._tcp_output(pkt.dst, pkt.src, reply, now)
            return
        self._tcp_syn(listener, key, seg, now)

    def _tcp_syn(self, listener: TcpListener, key: ConnKey, seg: TcpSegment, now: float) -> None:
        if len(listener.queue) >= listener.backlog:
            # The accept queue is full: drop the SYN (as Linux does) so the
            # client retries later instead of being refused.
            self.counters["tcp-listen-overflow"] += 1
            return
        if len(listener.half_open) >= listener.syn_backlog and self.config.syn_cookies:
            self._tcp_cookie_syn(listener, key, seg, now)
            return
        if len(listener.half_open) >= listener.syn_backlog:
            # SYN-flood defence: a bounded half-open queue that evicts its
            # oldest entry. Spoofed SYNs never complete, so they age out in
            # arrival order, while a real client completes its handshake in
            # one round trip, long before syn_backlog newer SYNs push it out.
            oldest_key = next(iter(listener.half_open))
            victim = listener.half_open.pop(oldest_key)
            self.counters["tcp-synq-evicted"] += 1
            self._tcp_forget(victim)
        local = (key[0], key[1])
        remote = (key[2], key[3])
        conn = TcpConnection.accept_syn(
            seg, local, remote, listener.config, self.isn(local, remote, now), now
        )
        stream = TcpStream(self, key, conn, listener)
        self._conns[key] = stream
        listener.half_open[key] = stream
        self.counters["tcp-passive-opens"] += 1
        self._tcp_touch(stream, now)

    # SYN cookies ----------------------------------------------------------
    # When the half-open queue is full, answer a SYN without keeping any state
    # (RFC 4987 §3.6): our ISN is a keyed hash of the 4-tuple, the client's
    # ISN and a 64-second counter, with the client's MSS (rounded down to one
    # of eight values) in its low three bits. The handshake's ACK proves the
    # client saw that ISN, and the connection is rebuilt from it. Window
    # scaling, SACK and timestamps are not offered then (the cost of keeping
    # no state, as in Linux without timestamps).
    _COOKIE_MSS = (536, 1220, 1440, 1460, 4312, 8960, 16344, 65495)

    def _cookie(self, key: ConnKey, client_isn: int, counter: int) -> int:
        material = b"".join(
            (
                key[0].packed,
                key[1].to_bytes(2, "big"),
                key[2].packed,
                key[3].to_bytes(2, "big"),
                client_isn.to_bytes(4, "big"),
                (counter % (1 << 64)).to_bytes(8, "big"),
            )
        )
        digest = hashlib.blake2s(material, key=self._cookie_secret, digest_size=4).digest()
        return int.from_bytes(digest, "big") & ~7 & 0xFFFFFFFF

    def _tcp_cookie_syn(
        self, listener: TcpListener, key: ConnKey, seg: TcpSegment, now: float
    ) -> None:
        mss = seg.options.mss or 536
        index = max(i for i, m in enumerate(self._COOKIE_MSS) if m <= max(mss, 536))
        iss = self._cookie(key, seg.seq, int(now // 64)) | index
        cfg = listener.config
        reply = TcpSegment(
            seg.dst_port,
            seg.src_port,
            iss,
            (seg.seq + 1) & 0xFFFFFFFF,
            TcpFlags.SYN | TcpFlags.ACK,
            min(65535, cfg.receive_buffer),
            options=TcpOptions(mss=cfg.mss),
        )
        self.counters["tcp-syncookies-sent"] += 1
        self._tcp_output(key[0], key[2], reply, now)

    def _tcp_cookie_ack(
        self, listener: TcpListener, key: ConnKey, seg: TcpSegment, now: float
    ) -> bool:
        iss = (seg.ack - 1) & 0xFFFFFFFF
        client_isn = (seg.seq - 1) & 0xFFFFFFFF
        counter = int(now // 64)
        if (iss & ~7) not in (
            self._cookie(key, client_isn, counter),
            self._cookie(key, client_isn, counter - 1),
        ):
            self.counters["tcp-syncookies-bad"] += 1
            return False
        if len(listener.queue) >= listener.backlog:
            self.counters["tcp-listen-overflow"] += 1
            return True  # dropped; the client retransmits
        syn = TcpSegment(
            seg.src_port,
            seg.dst_port,
            client_isn,
            0,
            TcpFlags.SYN,
            seg.window,
            options=TcpOptions(mss=self._COOKIE_MSS[iss & 7]),
        )
        local, remote = (key[0], key[1]), (key[2], key[3])
        conn = TcpConnection.accept_syn(syn, local, remote, listener.config, iss, now)
        conn.segments_to_send(now)  # the SYN-ACK the cookie already answered with
        stream = TcpStream(self, key, conn, listener)
        self._conns[key] = stream
        listener.half_open[key] = stream
        conn.receive_segment(seg, now)
        self.counters["tcp-syncookies-ok"] += 1
        self._tcp_touch(stream, now)
        return True

    # The TCP API (used by the adapters) -----------------------------------
    def tcp_listen(
        self,
        port: int,
        addr: IPv4Address = ANY,
        *,
        backlog: int = 128,
        syn_backlog: int = 256,
        config: TcpConfig | None = None,
    ) -> TcpListener:
        self._check_local(addr)
        if not 0 <= port <= 65535:
            raise LocalProtocolError("port must be 0-65535")
        if port == 0:
            port = self._ephemeral(self._tcp_port_used)
        elif port in self._listeners:
            raise AddressInUseError(f"TCP port {port} already has a listener")
        listener = TcpListener(
            self, (addr, port), max(1, backlog), max(1, syn_backlog), config or self.tcp_config
        )
        self._listeners[port] = listener
        return listener

    def _tcp_port_used(self, port: int) -> bool:
        return port in self._listeners or any(k[1] == port for k in self._conns)

    def tcp_connect(
        self,
        remote: Address,
        now: float,
        *,
        local: Address | None = None,
        config: TcpConfig | None = None,
    ) -> TcpStream:
        rip, rport = IPv4Address(remote[0]), remote[1]
        if not 0 < rport <= 65535:
            raise LocalProtocolError("destination port must be 1-65535")
        if not (rip.is_loopback or rip == self.ip):
            self.next_hop(rip)  # NoRouteError now, not later
        lip = self.source_for(rip)
        if local is not None and local[0] != ANY:
            self._check_local(local[0])
            lip = local[0]
        if local is not None and local[1]:
            lport = local[1]
            if (lip, lport, rip, rport) in self._conns:
                raise AddressInUseError(f"{lip}:{lport} -> {rip}:{rport} exists")
        else:
            lport = self._ephemeral_for(
                (rip, rport), lambda p: p in self._listeners or (lip, p, rip, rport) in self._conns
            )
        key = (lip, lport, rip, rport)
        conn = TcpConnection(
            (lip, lport),
            (rip, rport),
            config=config or self.tcp_config,
            iss=self.isn((lip, lport), (rip, rport), now),
        )
        stream = TcpStream(self, key, conn, None)
        self._conns[key] = stream
        conn.connect(now)
        self.counters["tcp-active-opens"] += 1
        self._tcp_touch(stream, now)
        return stream

    def tcp_close_listener(self, listener: TcpListener, now: float) -> None:
        """Stop listening; connections not yet accepted are reset (as Linux)."""
        if listener.closed:
            return
        listener.closed = True
        if self._listeners.get(listener.local[1]) is listener:
            del self._listeners[listener.local[1]]
        for stream in [*listener.half_open.values(), *listener.queue]:
            stream.conn.abort(now)
            self._tcp_touch(stream, now)
            self._tcp_forget(stream)
        listener.half_open.clear()
        listener.queue.clear()


class SplitFrame:
    """An outgoing Ethernet frame as ``head`` (all headers) and ``payload``,
    so a link sends it with one gather write instead of joining them (only
    made for such a link: ``Host.split``). With ``csum_start`` 0 it is
    complete. Otherwise its transport checksum is partial: the field at
    ``csum_start + csum_offset`` holds the pseudo-header sum, and the link
    must have the sum from ``csum_start`` to the end added in (virtio's
    NEEDS_CSUM; only with ``Host.tso``)."""

    __slots__ = ("csum_offset", "csum_start", "head", "payload")

    def __init__(self, head: bytes, payload: bytes, csum_start: int, csum_offset: int) -> None:
        self.head = head
        self.payload = payload
        self.csum_start = csum_start
        self.csum_offset = csum_offset

    def __bytes__(self) -> bytes:
        return self.head + self.payload

    def __len__(self) -> int:
        return len(self.head) + len(self.payload)


TSO_MAX_PAYLOAD = 64000  # a coalesced segment stays under IPv4's 65535


def _coalesce(segments: list[TcpSegment]) -> list[TcpSegment]:
    """Join runs of contiguous data segments that differ in nothing else
    (same ACK, window, options; only ACK/PSH flags) into single segments."""
    out: list[TcpSegment] = []
    run: list[TcpSegment] = []

    def close_run() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            flags = TcpFlags(0)
            for r in run:
                flags |= r.flags
            out.append(
                TcpSegment(
                    run[0].src_port,
                    run[0].dst_port,
                    run[0].seq,
                    run[0].ack,
                    flags,
                    run[0].window,
                    b"".join(r.payload for r in run),
                    run[0].options,
                )
            )
        run.clear()

    size = 0
    for seg in segments:
        mergeable = (
            seg.payload and not seg.flags & ~(TcpFlags.ACK | TcpFlags.PSH) and not seg.urgent
        )
        if run and mergeable:
            prev = run[-1]
            if (
                not prev.flags & TcpFlags.PSH
                and prev.ack == seg.ack
                and prev.window == seg.window
                and prev.options == seg.options
                and (prev.seq + len(prev.payload)) & 0xFFFFFFFF == seg.seq
                and size + len(seg.payload) <= TSO_MAX_PAYLOAD
            ):
                run.append(seg)
                size += len(seg.payload)
                continue
        close_run()
        size = 0
        if mergeable:
            run.append(seg)
            size = len(seg.payload)
        else:
            out.append(seg)
    close_run()
    return out
