"""A host's IPv4 layer: routing by subnet, sending (fragmenting), receiving (reassembling).

Above one :class:`~synack.stack.interface.Interface`: :meth:`Ipv4.send` picks
the next hop (on-link or the gateway), frames the packet at once when the
destination is in the neighbour fast path, and otherwise builds it, fragments
it to the MTU (RFC 791) and hands it to the interface. :meth:`Ipv4.receive`
applies a host's input checks (RFC 1122 §3.2.1), reassembles fragments and
hands each datagram to ICMP, UDP or TCP, which the host attaches. Packets to
ourselves go round a loopback queue and never touch the link.

Layer: stack. Imports synack.errors, synack.wire and lower stack modules (interface ...).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from ipaddress import IPv4Address

from synack.errors import LocalProtocolError
from synack.stack.config import (
    ANY,
    LIMITED_BROADCAST,
    LOOPBACK,
    AddressNotAvailableError,
    HostConfig,
    NoRouteError,
)
from synack.stack.interface import Interface, count_malformed
from synack.stack.offload import SplitFrame
from synack.stack.reassembly import Reassembler, fragment
from synack.wire import ethernet as weth
from synack.wire import icmp as wicmp
from synack.wire import ipv4 as wip
from synack.wire.checksum import finish
from synack.wire.errors import MalformedPacket

Emit = Callable[[bytes | SplitFrame, float], None]
# An upper layer's input: (datagram, it was a broadcast, now).
Input = Callable[[wip.Ipv4Packet, bool, float], None]
# Sends an ICMP error about a datagram: (datagram, type, code, now).
IcmpErrorSender = Callable[[wip.Ipv4Packet, int, int, float], None]

_pack_eth_ip = wip.ETH_IPV4_HEADER.pack
_HLEN = wip.MIN_HEADER_LEN  # the headers this host sends carry no options
_VERSION_IHL = wip.VERSION_IHL
_VERSION_WORD = wip.VERSION_IHL << 8  # the header's first word (TOS 0)


def _unattached(*_args: object) -> None:
    raise RuntimeError("Ipv4.attach() was not called")


class Ipv4:
    """The IPv4 layer of one host on one interface (see the module docstring).

    ``verify_l4`` is False while a frame whose link vouched for its transport
    checksum is handled: the upper layers then do not sum it again.
    """

    __slots__ = (
        "_eth_ipv4_tail",
        "_icmp_input",
        "_loop_queue",
        "_looping",
        "_tcp_input",
        "_ttl_word",
        "_udp_input",
        "counters",
        "dest_cache",
        "emit",
        "gateway",
        "icmp_error",
        "ident",
        "iface",
        "ip",
        "ip_int",
        "mtu",
        "network",
        "pmtu",
        "reassembler",
        "ttl",
        "verify_l4",
    )

    def __init__(
        self, config: HostConfig, iface: Interface, counters: Counter[str], emit: Emit, ident: int
    ) -> None:
        self.iface = iface
        self.counters = counters
        self.ip = iface.ip
        self.ip_int = int(iface.ip)
        self.network = iface.network
        self.mtu = iface.mtu
        self.gateway = config.gateway
        self.ttl = config.ttl
        self._ttl_word = config.ttl << 8  # the header's TTL/protocol word, less protocol
        self._eth_ipv4_tail = iface.mac + weth.ETHERTYPE_IPV4.to_bytes(2, "big")
        self.ident = ident
        self.dest_cache = iface.dest_cache
        self.emit = emit
        self.reassembler = Reassembler(
            timeout=config.reassembly_timeout,
            max_datagrams=config.reassembly_max_datagrams,
            max_bytes=config.reassembly_max_bytes,
            per_source=config.reassembly_per_source,
        )
        self.pmtu: dict[IPv4Address, int] = {}  # path MTU learnt from ICMP (RFC 1191)
        self._loop_queue: deque[wip.Ipv4Packet] = deque()
        self._looping = False
        self.verify_l4 = True
        self._icmp_input: Input = _unattached
        self._udp_input: Input = _unattached
        self._tcp_input: Input = _unattached
        self.icmp_error: IcmpErrorSender = _unattached

    def attach(self, *, icmp: Input, udp: Input, tcp: Input, icmp_error: IcmpErrorSender) -> None:
        """Connect the upper layers (they are built on this one)."""
        self._icmp_input = icmp
        self._udp_input = udp
        self._tcp_input = tcp
        self.icmp_error = icmp_error

    # -------------------------------------------------------------- routing
    def next_hop(self, dst: IPv4Address) -> IPv4Address:
        """The lessons' rule: on-link iff dst AND mask == own network AND mask."""
        mask = int(self.network.netmask)
        if int(dst) & mask == int(self.network.network_address) & mask or dst == LIMITED_BROADCAST:
            return dst
        if self.gateway is None:
            raise NoRouteError(f"no route to {dst}: off-link and no gateway")
        return self.gateway

    def source_for(self, dst: IPv4Address) -> IPv4Address:
        """Our address as seen from ``dst``: 127.0.0.1 over loopback."""
        return LOOPBACK if dst.is_loopback else self.ip

    def check_local(self, addr: IPv4Address) -> None:
        """Raise unless ``addr`` may be bound here: ANY, ours or a loopback one."""
        if addr not in (ANY, self.ip) and not addr.is_loopback:
            raise AddressNotAvailableError(f"{addr} is not this host's address")

    def path_mtu(self, dst: IPv4Address) -> int:
        """The MTU towards ``dst``: learnt from ICMP (RFC 1191), else the link's."""
        return self.pmtu.get(dst, self.mtu) if self.pmtu else self.mtu

    def learn_path_mtu(self, dst: IPv4Address, mtu: int) -> None:
        if len(self.pmtu) >= 4096:
            self.pmtu.clear()
        self.pmtu[dst] = max(68, min(mtu, self.mtu))

    # --------------------------------------------------------------- output
    def eth_ip_head(
        self, mac: bytes, total: int, flags: int, proto: int, src: int, dst: int
    ) -> bytes:
        """The Ethernet and IPv4 headers (next ident) of a packet to a resolved
        neighbour, packed at once. The header checksum is summed from its
        words (RFC 1071: an address counts as itself modulo 0xFFFF), no buffer
        built to be summed."""
        self.ident = ident = (self.ident + 1) & 0xFFFF
        ttl_proto = self._ttl_word | proto
        csum = finish(_VERSION_WORD + total + ident + flags + ttl_proto + src + dst)
        return _pack_eth_ip(
            mac,
            self._eth_ipv4_tail,
            _VERSION_IHL,
            0,
            total,
            ident,
            flags,
            ttl_proto,
            csum,
            src,
            dst,
        )

    def send(
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
        total = _HLEN + len(payload)
        cached = self.dest_cache.get(dst) if total <= self.mtu or oversize else None
        if cached is not None and cached[1] > now:
            # The fast path for a unicast packet to a resolved neighbour: the
            # headers packed at once, no intermediate objects.
            self.emit(
                self.eth_ip_head(
                    cached[0],
                    total,
                    wip.FLAG_DF if dont_fragment else 0,
                    proto,
                    self.ip_int,
                    int(dst),
                )
                + payload,
                now,
            )
            return
        self.ident = (self.ident + 1) & 0xFFFF
        if dst.is_loopback or dst == self.ip:
            self._loopback(
                wip.Ipv4Packet(
                    src=self.source_for(dst),
                    dst=dst,
                    proto=proto,
                    payload=payload,
                    ttl=self.ttl,
                    ident=self.ident,
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
            ttl=self.ttl,
            ident=self.ident,
            dont_fragment=dont_fragment,
        )
        if total > self.mtu and not oversize:
            if dont_fragment:
                self.counters["ipv4-too-big-df"] += 1
                raise LocalProtocolError(f"packet of {total} octets exceeds mtu {self.mtu} with DF")
            self.counters["ipv4-fragmented"] += 1
            packets = [wip.build(p) for p in fragment(pkt, self.mtu)]
        else:
            packets = [wip.build(pkt)]
        iface = self.iface
        mac = iface.send_ipv4(hop, packets, now)
        if mac is not None:
            iface.remember(dst, hop, mac, now)

    def _loopback(self, pkt: wip.Ipv4Packet, now: float) -> None:
        # Packets to ourselves never touch the link (like Linux's lo). A queue,
        # not recursion: a reply sent while delivering waits its turn.
        self.counters["ipv4-loopback"] += 1
        self._loop_queue.append(pkt)
        if self._looping:
            return
        self._looping = True
        try:
            queue = self._loop_queue
            while queue:
                self.deliver(queue.popleft(), False, now)
        finally:
            self._looping = False

    # ---------------------------------------------------------------- input
    def receive(self, frame: weth.EthernetFrame, now: float) -> None:
        """An IPv4 frame the interface accepted."""
        try:
            pkt = wip.parse(frame.payload)
        except MalformedPacket as exc:
            count_malformed(self.counters, exc)
            return
        # RFC 1122 §3.2.1.7: a host must not discard a datagram for a low TTL,
        # so TTL is the router's business (stack/router.py), not checked here.
        dst = pkt.dst
        broadcast = dst == LIMITED_BROADCAST or dst == self.network.broadcast_address
        if dst != self.ip and not broadcast:
            self.counters["ipv4-not-for-us"] += 1
            return
        src = pkt.src
        if src.is_multicast or src == LIMITED_BROADCAST or src == self.network.broadcast_address:
            # RFC 1122 §3.2.1.3: a broadcast/multicast source is discarded.
            self.counters["ipv4-bad-source"] += 1
            return
        if src == self.ip or src.is_loopback or (src.is_unspecified and pkt.proto != wip.PROTO_UDP):
            # Martians: our own or a loopback address cannot come from the
            # link (a "land" attack would make us talk to ourselves).
            self.counters["ipv4-martian"] += 1
            return
        if pkt.more_fragments or pkt.frag_offset:
            reassembler = self.reassembler
            whole = reassembler.add(pkt, now)
            self.counters.update(reassembler.counters)
            reassembler.counters.clear()
            if whole is None:
                return
            pkt = whole
        self.deliver(pkt, broadcast, now)

    def deliver(self, pkt: wip.Ipv4Packet, broadcast: bool, now: float) -> None:
        """A whole datagram for us, to its protocol."""
        self.counters["ipv4-in"] += 1
        proto = pkt.proto
        if proto == wip.PROTO_TCP:
            if broadcast:
                self.counters["tcp-broadcast"] += 1
                return
            self._tcp_input(pkt, False, now)
        elif proto == wip.PROTO_UDP:
            self._udp_input(pkt, broadcast, now)
        elif proto == wip.PROTO_ICMP:
            self._icmp_input(pkt, broadcast, now)
        else:
            self.counters["ipv4-unknown-proto"] += 1
            # RFC 1122 §3.2.2.1: protocol unreachable.
            self.icmp_error(pkt, wicmp.TYPE_DEST_UNREACHABLE, wicmp.CODE_PROTOCOL_UNREACHABLE, now)

    # --------------------------------------------------------------- timers
    def get_timer(self) -> float | None:
        return self.reassembler.get_timer()

    def handle_timer(self, now: float) -> None:
        reassembler = self.reassembler
        for first in reassembler.handle_timer(now):
            # RFC 792: time exceeded, code 1 (fragment reassembly time exceeded).
            self.icmp_error(first, wicmp.TYPE_TIME_EXCEEDED, 1, now)
        self.counters.update(reassembler.counters)
        reassembler.counters.clear()
