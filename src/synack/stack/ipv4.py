"""A host's IPv4 layer: routing by subnet, sending (fragmenting), receiving (reassembling).

Above one :class:`~synack.stack.interface.Interface`: :meth:`Ipv4.send` picks
the next hop (on-link or the gateway), frames the packet at once when the
destination is in the neighbour fast path, and otherwise builds it, fragments
it to the MTU (RFC 791) and hands it to the interface. :meth:`Ipv4.receive`
applies a host's input checks (RFC 1122 §3.2.1), reassembles fragments and
hands each datagram to ICMP, UDP or TCP, which the host attaches. Packets to
ourselves go round a loopback queue and never touch the link.

:meth:`Ipv4.receive_tcp_frame` is the receive fast path for the common frame
(unicast to us, no options, not a fragment, TCP): the same checks on the
header's words read straight from the frame, addresses as ints, no
intermediate objects; the transport gets the frame and where its segment
lies. Anything it does not vouch for goes the whole slow way, which counts
and refuses it as always.

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
EmitFrames = Callable[[list[bytes], float], None]
# An upper layer's input: (datagram, it was a broadcast, now).
Input = Callable[[wip.Ipv4Packet, bool, float], None]
# Sends an ICMP error about a datagram: (datagram, type, code, now).
IcmpErrorSender = Callable[[wip.Ipv4Packet, int, int, float], None]
# The transport's input from the fast path: (frame, start, end of the segment
# in it, source and destination addresses as ints, now).
RawInput = Callable[[bytes, int, int, int, int, float], None]

_pack_eth_ip = wip.ETH_IPV4_HEADER.pack
_HLEN = wip.MIN_HEADER_LEN  # the headers this host sends carry no options
_VERSION_IHL = wip.VERSION_IHL
_VERSION_WORD = wip.VERSION_IHL << 8  # the header's first word (TOS 0)
_unpack_words = wip.HEADER_WORDS.unpack_from
_address_int = wip.address_int
_IP_AT = weth.HEADER_LEN  # where the IPv4 header starts in a frame
_L4_AT = wip.ETH_IPV4_HEADER_LEN  # and the transport's, without options
_LIMITED = 0xFFFFFFFF  # 255.255.255.255
# First octets of multicast sources (224.0.0.0/4, RFC 1122 §3.2.1.3) and of
# loopback ones (127.0.0.0/8): what IPv4Address.is_multicast/is_loopback test.
_MULTICAST_FIRST = range(224, 240)
_LOOPBACK_FIRST = 127


def _unattached(*_args: object) -> None:
    raise RuntimeError("Ipv4.attach() was not called")


class Ipv4:
    """The IPv4 layer of one host on one interface (see the module docstring).

    ``verify_l4`` is False while a frame whose link vouched for its transport
    checksum is handled: the upper layers then do not sum it again.
    """

    __slots__ = (
        "_bcast_int",
        "_eth_ipv4_tail",
        "_icmp_input",
        "_loop_queue",
        "_looping",
        "_mac",
        "_tcp_input",
        "_tcp_raw_input",
        "_ttl_word",
        "_udp_input",
        "counters",
        "dest_cache",
        "emit",
        "emit_frames",
        "fast_bad_src",
        "fast_dst",
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
        self.ip_int = ip_int = int(iface.ip)
        self.network = iface.network
        self._bcast_int = bcast = int(iface.network.broadcast_address)
        self.fast_dst = -1  # receive_tcp_frame is off until attach() gives it TCP
        # Sources the slow path refuses whatever their first octet (bad
        # source, martian: RFC 1122 §3.2.1.3); 0.0.0.0 is a martian for TCP.
        self.fast_bad_src = frozenset((0, _LIMITED, bcast, ip_int))
        self.mtu = iface.mtu
        self.gateway = config.gateway
        self.ttl = config.ttl
        self._ttl_word = config.ttl << 8  # the header's TTL/protocol word, less protocol
        self._mac = iface.mac
        self._eth_ipv4_tail = iface.mac + weth.ETHERTYPE_IPV4.to_bytes(2, "big")
        self.ident = ident
        self.dest_cache = iface.dest_cache
        self.emit = emit
        # Frames of one software-cut segment in order, as emit each would
        # leave them (the host sets its own: one counter update for all).
        self.emit_frames: EmitFrames = self._emit_each
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
        self._tcp_raw_input: RawInput = _unattached
        self.icmp_error: IcmpErrorSender = _unattached

    def _emit_each(self, frames: list[bytes], now: float) -> None:
        for frame in frames:
            self.emit(frame, now)

    def attach(
        self,
        *,
        icmp: Input,
        udp: Input,
        tcp: Input,
        icmp_error: IcmpErrorSender,
        tcp_raw: RawInput | None = None,
    ) -> None:
        """Connect the upper layers (they are built on this one). ``tcp_raw``:
        TCP's input from :meth:`receive_tcp_frame` (without it, that fast
        path declines every frame)."""
        self._icmp_input = icmp
        self._udp_input = udp
        self._tcp_input = tcp
        self._tcp_raw_input = tcp_raw or _unattached
        self.icmp_error = icmp_error
        self.set_fast_path(tcp_raw is not None)

    def set_fast_path(self, on: bool) -> None:
        """Turn :meth:`receive_tcp_frame` on (the default once TCP is attached
        with ``tcp_raw``) or off: then it declines every frame, and the
        tests compare what both paths do with the same frames."""
        ip_int, bcast = self.ip_int, self._bcast_int
        # The fast path takes frames to our address, unless that address is
        # also a broadcast one (a /31 or /32: then the slow path decides).
        attached = self._tcp_raw_input is not _unattached
        if on and attached and ip_int not in (bcast, _LIMITED):
            self.fast_dst = ip_int
        else:
            self.fast_dst = -1

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

    def eth_ip_template(self, mac: bytes) -> tuple[bytes, int]:
        """What :meth:`eth_ip_head` packs that stays the same from packet to
        packet to the neighbour at ``mac``: the Ethernet header and the
        TTL word (TTL << 8, the protocol to be added), for a sender that
        packs a run of headers itself (software TCP segmentation), taking
        identifications from ``ident`` as eth_ip_head does."""
        return mac + self._eth_ipv4_tail, self._ttl_word

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
        dst_int = _address_int(dst)
        cached = self.dest_cache.get(dst_int) if total <= self.mtu or oversize else None
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
                    dst_int,
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
    def receive_tcp_frame(self, data: bytes, now: float) -> bool:
        """The fast path for a whole Ethernet frame the host found to hold an
        unfragmented, option-less IPv4 packet carrying TCP: True when it was
        handled (given to TCP), False when the frame must take the slow path
        (:meth:`Interface.receive` then :meth:`receive`) because something
        in it is not the common case (see :meth:`tcp_frame_span`). Nothing
        is counted then, so the slow path counts exactly what it always did.
        """
        # tcp_frame_span(data), inline: once per frame.
        if data[:6] != self._mac:
            return False
        w0, total, ident, frag, ttl_proto, csum, src, dst = _unpack_words(data, _IP_AT)
        if dst != self.fast_dst or total < _HLEN or total + _IP_AT > len(data):
            return False
        if (w0 + total + ident + frag + ttl_proto + csum + src + dst) % 0xFFFF:
            return False  # RFC 791 §3.1: the header checksum (see tcp_frame_span)
        if (
            src >> 24 in _MULTICAST_FIRST
            or src >> 24 == _LOOPBACK_FIRST
            or src in self.fast_bad_src
        ):
            return False
        self.counters["ipv4-in"] += 1
        self._tcp_raw_input(data, _L4_AT, _IP_AT + total, src, dst, now)
        return True

    def tcp_frame_span(self, data: bytes) -> tuple[int, int, int] | None:
        """For a frame as :meth:`receive_tcp_frame` takes it: (source,
        destination, where the TCP segment ends in ``data``), or None when
        the frame is not the common case: not unicast to us, a length or
        header checksum that does not hold, a source the slow path refuses.
        Counts nothing."""
        if data[:6] != self._mac:
            return None
        w0, total, ident, frag, ttl_proto, csum, src, dst = _unpack_words(data, _IP_AT)
        if dst != self.fast_dst or total < _HLEN or total + _IP_AT > len(data):
            return None
        # RFC 791 §3.1: a correct header sums to ones'-complement -0, i.e. 0
        # modulo 0xFFFF (checksum.py; the version word keeps the sum non-zero).
        if (w0 + total + ident + frag + ttl_proto + csum + src + dst) % 0xFFFF:
            return None
        if (
            src >> 24 in _MULTICAST_FIRST
            or src >> 24 == _LOOPBACK_FIRST
            or src in self.fast_bad_src
        ):
            return None
        return src, dst, _IP_AT + total

    def receive(self, frame: weth.EthernetFrame, now: float) -> None:
        """An IPv4 frame the interface accepted."""
        try:
            pkt = wip.parse(frame.payload)
        except MalformedPacket as exc:
            count_malformed(self.counters, exc)
            return
        # RFC 1122 §3.2.1.7: a host must not discard a datagram for a low TTL,
        # so TTL is the router's business (stack/router.py), not checked here.
        # Addresses compared as ints (an IPv4Address comparison or range test
        # is a Python-level call, several per packet).
        dst = _address_int(pkt.dst)
        broadcast = dst == _LIMITED or dst == self._bcast_int
        if dst != self.ip_int and not broadcast:
            self.counters["ipv4-not-for-us"] += 1
            return
        src = _address_int(pkt.src)
        if src >> 24 in _MULTICAST_FIRST or src == _LIMITED or src == self._bcast_int:
            # RFC 1122 §3.2.1.3: a broadcast/multicast source is discarded.
            self.counters["ipv4-bad-source"] += 1
            return
        if (
            src == self.ip_int
            or src >> 24 == _LOOPBACK_FIRST
            or (not src and pkt.proto != wip.PROTO_UDP)
        ):
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
        return self.reassembler.get_timer()  # (Host.get_timer asks it itself: keep it so)

    def handle_timer(self, now: float) -> None:
        reassembler = self.reassembler
        for first in reassembler.handle_timer(now):
            # RFC 792: time exceeded, code 1 (fragment reassembly time exceeded).
            self.icmp_error(first, wicmp.TYPE_TIME_EXCEEDED, 1, now)
        self.counters.update(reassembler.counters)
        reassembler.counters.clear()
