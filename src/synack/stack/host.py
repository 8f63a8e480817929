"""One host: an Ethernet interface with an IPv4 address, ARP, ICMP, UDP, TCP.

:class:`Host` is the face of a host's protocol modules, each in its own
module (smoltcp splits its interface the same way):

==========================  ====================================================
:mod:`.interface`           Ethernet demux, ARP and its spoofing checks, the
                            neighbour fast path (shared with the router)
:mod:`.ipv4`                routing by subnet, fragmenting, reassembling,
                            loopback
:mod:`.icmp`                echo, destination unreachable, the error messages
                            and their rate limit (shared with the router)
:mod:`.udp`                 bound endpoints
:mod:`.tcp_demux`           listeners, connections, ephemeral ports, TIME-WAIT
:mod:`.tcp_output`          a segment onto the link (split frames, fast path)
:mod:`.syncookies`          the stateless SYN-flood answer
:mod:`.offload`             split frames and TSO super-segments
:mod:`.gro`                 receive coalescing of a batch's in-order segments
==========================  ====================================================

Sans-IO (ARCHITECTURE.md item 1-2): :meth:`Host.receive_frame` takes a frame
and ``now``; :meth:`Host.frames_to_send` gives frames; :meth:`Host.get_timer`
is the one deadline of the whole host (ARP retries and ageing, reassembly
timeouts, every TCP connection); :meth:`Host.handle_timer` handles it.
Application-facing news comes out of :meth:`Host.next_event`; every frame and
every TCP state change also goes to the plain observer list
:attr:`Host.observers` (the trace's feed).

Nothing here reads a clock or a global RNG: ISNs use an injected secret,
ephemeral ports and IP idents an injected ``random.Random``.

Layer: stack. Imports synack.wire, synack.tcp and the rest of synack.stack.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Mapping
from ipaddress import IPv4Address

from synack.stack.arp import ArpCache
from synack.stack.config import (
    ANY,
    EPHEMERAL_HIGH,
    EPHEMERAL_LOW,
    LIMITED_BROADCAST,
    LOOPBACK,
    Address,
    AddressInUseError,
    AddressNotAvailableError,
    ConnKey,
    HostConfig,
    NoRouteError,
)
from synack.stack.endpoints import TcpListener, TcpStream, UdpEndpoint
from synack.stack.events import (
    ArpRefused,
    FrameTrace,
    HostEvent,
    NeighbourUnreachable,
    Observer,
)
from synack.stack.gro import Coalescer
from synack.stack.icmp import EchoBudget, Icmp, IcmpErrors
from synack.stack.interface import Interface
from synack.stack.ipv4 import Ipv4
from synack.stack.offload import IPV4_MAX_TOTAL, TSO_MAX_PAYLOAD, SplitFrame, tso_max_payload
from synack.stack.ports import EphemeralPorts
from synack.stack.reassembly import Reassembler
from synack.stack.rx import FrameInput
from synack.stack.tcp_demux import TcpDemux
from synack.stack.udp import Udp
from synack.tcp.config import TcpConfig
from synack.tcp.isn import IsnGenerator
from synack.wire import ethernet as weth
from synack.wire import icmp as wicmp
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp

# Where a raw Ethernet frame holds what the flood early drops read.
_RAW_ETHERTYPE_AT = weth.ETHERTYPE_AT  # then the IPv4 version/IHL octet
_RAW_IPV4_NO_OPTIONS = weth.ETHERTYPE_IPV4.to_bytes(2, "big") + bytes([wip.VERSION_IHL])
_RAW_FRAG_AT = weth.HEADER_LEN + wip.FRAGMENT_AT  # flags and fragment offset
_RAW_PROTO_AT = weth.HEADER_LEN + wip.PROTO_AT
_RAW_L4_AT = wip.ETH_IPV4_HEADER_LEN
_RAW_TCP_FLAGS_AT = _RAW_L4_AT + wtcp.FLAGS_AT
_RAW_MIN_LEN = _RAW_TCP_FLAGS_AT + 1
_RAW_PROTO_ICMP = wip.PROTO_ICMP
_RAW_PROTO_TCP = wip.PROTO_TCP
_RAW_ECHO_REQUEST = wicmp.TYPE_ECHO_REQUEST
_RAW_SYN_MASK = int(wtcp.TcpFlags.SYN | wtcp.TcpFlags.ACK | wtcp.TcpFlags.RST | wtcp.TcpFlags.FIN)
_RAW_SYN = int(wtcp.TcpFlags.SYN)
# What may join a coalesced run (stack/gro.py): ACK or ACK|PSH, longer than a
# pure ACK with timestamps (so pure ACKs, a download's, skip the attempt).
_RAW_DATA_FLAGS = (int(wtcp.TcpFlags.ACK), int(wtcp.TcpFlags.ACK | wtcp.TcpFlags.PSH))
_RAW_ACK = int(wtcp.TcpFlags.ACK)
_RAW_PURE_ACK_LEN = _RAW_L4_AT + wtcp.MIN_HEADER_LEN + 12
_RAW_TCP_FLAGS_SPAN = slice(_RAW_TCP_FLAGS_AT, _RAW_TCP_FLAGS_AT + 1)  # (no IndexError)
_RAW_ACK_BYTE = bytes([_RAW_ACK])
# IPv4 source and destination, then the TCP ports: one flow's frames share them.
_RAW_FLOW = slice(weth.HEADER_LEN + 12, _RAW_L4_AT + 4)

__all__ = [
    "ANY",
    "EPHEMERAL_HIGH",
    "EPHEMERAL_LOW",
    "LIMITED_BROADCAST",
    "LOOPBACK",
    "TSO_MAX_PAYLOAD",
    "Address",
    "AddressInUseError",
    "AddressNotAvailableError",
    "ConnKey",
    "Host",
    "HostConfig",
    "NoRouteError",
    "Observer",
    "SplitFrame",
    "TcpListener",
    "TcpStream",
    "UdpEndpoint",
]


class Host:
    """One host on an Ethernet link: a sans-IO IPv4 stack with ARP, ICMP, UDP and TCP.

    Drive it with frames and time: :meth:`receive_frame` (a frame from the
    link, at ``now``), :meth:`get_timer` / :meth:`handle_timer` (its one
    deadline), and take :meth:`frames_to_send` (or :meth:`drain_frames` on a
    link that takes :class:`SplitFrame`) and :meth:`next_event` after each.
    Applications use :meth:`tcp_listen`, :meth:`tcp_connect`,
    :meth:`udp_open`, :meth:`ping`; the sockets they get
    (:class:`TcpListener`, :class:`TcpStream`, :class:`UdpEndpoint`) report
    news through :class:`~synack.stack.events.TcpActivity` and the datagram
    events. :attr:`observers` see every frame and TCP state change
    (:data:`~synack.stack.events.TraceRecord`); :attr:`counters` count every
    drop and decision by name.

    ``rng`` (default: seeded 0) gives the ISN secret when ``isn_secret`` is
    not given, the first IP ident and the ephemeral ports: a seed reproduces
    a run. The protocol modules are its attributes ``iface``, ``ipv4``,
    ``icmp``, ``udp`` and ``tcp``.
    """

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
        self.counters: Counter[str] = Counter()
        self.observers: list[Observer] = []
        self._out: list[bytes | SplitFrame] = []
        self._events: deque[HostEvent] = deque()
        counters, events = self.counters, self._events
        self.iface = Interface(
            config.mac,
            config.interface,
            config.mtu,
            counters,
            self._emit,
            timings=config.arp_timings,
            policy=config.arp_policy,
            on_refused=self._arp_refused,
        )
        self.ipv4 = ip = Ipv4(config, self.iface, counters, self._emit, self.rng.randrange(1 << 16))
        ip.emit_frames = self._emit_frames
        self._arp, self._reassembler = self.iface.arp, ip.reassembler  # (get_timer's)
        ports = EphemeralPorts(self.rng)
        self.udp = Udp(ip, ports, events, counters, config.udp_queue_limit)
        errors = IcmpErrors(config.icmp_errors_per_second, config.icmp_error_burst, counters)
        echo = EchoBudget(
            config.icmp_echo_per_second,
            config.icmp_echo_burst,
            config.icmp_echo_per_source,
            config.icmp_echo_source_burst,
        )
        self._echo_budget = echo
        self.tcp = TcpDemux(
            config, ip, ports, self.isn_secret, events, self.observers, counters, self.name
        )
        self.icmp = Icmp(
            ip,
            errors,
            events,
            counters,
            self.udp.error,
            echo_budget=echo,
            tcp_error=self.tcp.icmp_error,
        )
        ip.attach(
            icmp=self.icmp.receive,
            udp=self.udp.receive,
            tcp=self.tcp.receive,
            icmp_error=self.icmp.send_error,
            tcp_raw=self.tcp.receive_at,
        )
        # Receive coalescing of a batch's frames (stack/gro.py): on unless a
        # test compares it with the frames one by one.
        self.coalesce = True
        # A batch's frame that cannot join a run goes to the one pass first
        # (receive_frames), without the coalescing tests; off: through them,
        # as before (the tests compare).
        self.lone_first = True
        self._gro = Coalescer(ip, self.tcp, counters)
        # The common TCP frame in one pass (stack/rx.py); it declines any other.
        self._rx = FrameInput(ip, self.tcp, counters)

    # ------------------------------------------------------------ properties
    @property
    def arp(self) -> ArpCache:
        """The interface's neighbour table."""
        return self.iface.arp

    @property
    def reassembler(self) -> Reassembler:
        return self.ipv4.reassembler

    @property
    def isn(self) -> IsnGenerator:
        """The TCP initial sequence number generator (RFC 6528)."""
        return self.tcp.isn

    @property
    def tcp_config(self) -> TcpConfig:
        """The TCP configuration connections get unless given their own."""
        return self.tcp.config

    @property
    def connections(self) -> Mapping[ConnKey, TcpStream]:
        """Every TCP connection the host keeps, by 4-tuple (TIME-WAIT ones are
        compact records in ``tcp.time_wait``, see synack.stack.timewait)."""
        return self.tcp.conns

    @property
    def tso(self) -> bool:
        """The link segments and checksums TCP/UDP itself (see :meth:`enable_offload`)."""
        return self.tcp.tso

    @property
    def split(self) -> bool:
        """The link takes :class:`SplitFrame` (see :meth:`enable_offload`)."""
        return self.tcp.split

    def enable_offload(
        self, *, split: bool, tso: bool = False, gso: bool | None = None, tso_max: int = 0
    ) -> None:
        """Tell the host what its link can do, as a NIC driver tells Linux.

        ``split``: the link takes :class:`SplitFrame` (headers and payload
        apart, one gather write), so :meth:`drain_frames` may return them.
        ``tso`` (only with ``split``): the link also segments large TCP frames
        and completes TCP/UDP checksums (a TAP device with offloads), so
        consecutive segments of one flush go out as one and their checksum
        fields hold only the pseudo-header sum.
        ``gso`` (default: as ``split``): TCP sends up to 65,455 octets of new
        data as one segment, cut into MSS-sized frames below it (by the link
        with ``tso``, else in software: the same frames as without it).
        ``tso_max`` (only with ``tso``; 0: 65,535): the largest IPv4 packet
        the link takes as one super-segment. Above 65,535 (Linux's BIG TCP,
        stack/offload.BIG_TSO_MAX_TOTAL) such packets carry total length 0
        and TCP hands over up to that much less 80 octets at once.
        """
        if tso and not split:
            raise ValueError("tso needs split frames")
        self.tcp.split = split
        self.tcp.tso = self.udp.tso = tso
        if tso_max and not (tso and IPV4_MAX_TOTAL <= tso_max <= 1 << 20):
            raise ValueError("tso_max needs tso and 65535..1048576 octets")
        self.tcp.output.ip_max = ip_max = tso_max or IPV4_MAX_TOTAL
        # (tso_max_payload(65,535) is TSO_MAX_PAYLOAD: 45 x 1,448 octets at most.)
        self.tcp.output.gso = tso_max_payload(ip_max) if (split if gso is None else gso) else 0

    def path_mtu(self, dst: IPv4Address) -> int:
        """The MTU towards ``dst``: learnt from ICMP (RFC 1191), else the link's."""
        return self.ipv4.path_mtu(dst)

    # ------------------------------------------------------------------ I/O
    def start(self, now: float) -> None:
        """Announce ourselves: a gratuitous ARP (RFC 5227 §3 announcement) so
        neighbours holding a stale entry for our address update it."""
        if now > self.tcp.now:
            self.tcp.now = now
        self.iface.announce(now)

    def frames_to_send(self) -> list[bytes]:
        """Whole frames to send (split ones joined: see :meth:`drain_frames`)."""
        return [f if type(f) is bytes else bytes(f) for f in self.drain_frames()]

    def drain_frames(self) -> list[bytes | SplitFrame]:
        """Frames to send; with offload enabled some are :class:`SplitFrame`
        (headers and payload apart, maybe the transport checksum left to the link)."""
        tcp = self.tcp
        if tcp.dirty:  # (the dict, not has_dirty(): several times a frame)
            tcp.flush()
        out, self._out = self._out, []
        return out

    def next_event(self) -> HostEvent | None:
        """The next piece of news for the adapters, oldest first."""
        tcp = self.tcp
        if tcp.dirty:
            tcp.flush()
        return self._events.popleft() if self._events else None

    def has_news(self) -> bool:
        """Events or frames are waiting (an adapter then pumps again)."""
        return bool(self._events or self._out or self.tcp.dirty)

    def _emit(self, frame: bytes | SplitFrame, now: float) -> None:
        self._out.append(frame)
        self.counters["frames-out"] += 1
        if self.observers:
            # A split frame is recorded as it leaves us: its checksum field
            # holds the pseudo-header sum the link's offload completes (what
            # tcpdump shows on an offloading NIC).
            rec = FrameTrace(self.name, now, "out", bytes(frame))
            for obs in self.observers:
                obs(rec)

    def _emit_frames(self, frames: list[bytes], now: float) -> None:
        """``frames`` in order, as :meth:`_emit` each (a software-cut
        segment's: 45 per 65,160 octets), the counter updated once."""
        if self.observers:
            for frame in frames:
                self._emit(frame, now)
            return
        self._out += frames
        self.counters["frames-out"] += len(frames)

    def _arp_refused(self, refused: ArpRefused) -> None:
        self._events.append(refused)
        for obs in self.observers:  # visible in traces too
            obs(refused)

    def receive_frame(self, data: bytes, now: float, *, l4_verified: bool = False) -> None:
        """One Ethernet frame from the link. ``l4_verified``: the link vouches
        for its TCP/UDP/ICMP checksum (a TAP with offloads), so it is not
        summed again."""
        if l4_verified:
            ip = self.ipv4
            ip.verify_l4 = False
            try:
                self.receive_frame(data, now)
            finally:
                ip.verify_l4 = True
            return
        tcp = self.tcp
        if now > tcp.now:
            tcp.now = now
        self.counters["frames-in"] += 1
        if self.observers:
            rec = FrameTrace(self.name, now, "in", bytes(data))
            for obs in self.observers:
                obs(rec)
        if (
            len(data) >= _RAW_MIN_LEN
            and data[_RAW_ETHERTYPE_AT : _RAW_ETHERTYPE_AT + 3] == _RAW_IPV4_NO_OPTIONS
            and not data[_RAW_FRAG_AT] & 0x3F
            and not data[_RAW_FRAG_AT + 1]
        ):
            # The flood early drops, from the raw bytes of an unfragmented
            # IPv4 packet without options, before Ethernet, IP and transport
            # parsing (7-9 us a frame in Python, more than a 281k pps echo
            # flood leaves; bench/stack_flood.py): an echo request while the
            # shared echo budget is empty; a pure SYN to a flooded listener
            # answered with a SYN cookie or dropped (synack.stack.synflood).
            proto = data[_RAW_PROTO_AT]
            if proto == _RAW_PROTO_ICMP:
                if data[_RAW_L4_AT] == _RAW_ECHO_REQUEST and self._echo_budget.exhausted(now):
                    self.counters["icmp-echo-ratelimited"] += 1
                    return
            elif proto == _RAW_PROTO_TCP:
                if data[_RAW_TCP_FLAGS_AT] & _RAW_SYN_MASK == _RAW_SYN:
                    if self.tcp.raw_syn(data, now):
                        return  # answered with a cookie or dropped (synack.stack.synflood)
                elif self._rx.take(data, now, self.ipv4.verify_l4):
                    return  # the common frame in one pass (stack/rx.py)
                # The common frame, TCP to us: straight from the frame's
                # bytes to the segment (stack/ipv4.py), unless something in
                # it needs the slow path below.
                if self.ipv4.receive_tcp_frame(data, now):
                    return
        frame = self.iface.receive(data, now)
        if frame is not None:
            self.ipv4.receive(frame, now)

    def receive_frames(
        self, frames: list[bytes], now: float, *, vouched: type[bytes] | None = None
    ) -> None:
        """Frames that arrived together at ``now`` (one read of the link), in
        order; those of type ``vouched`` as :meth:`receive_frame` with
        ``l4_verified``. An ICMP echo flood is dropped here, on raw bytes,
        without a call per frame: while the shared echo budget is empty (it
        cannot refill within one instant) an echo request in an unfragmented
        IPv4 packet without options is counted (``icmp-echo-ratelimited``)
        and nothing else is done with it; a pure SYN to a flooded listener goes
        straight to the SYN-flood path (bench/stack_flood.py), one to another
        listener to the one-pass input (stack/rx.py). With :attr:`coalesce`, runs of
        one connection's in-order data segments go to TCP as one segment
        (stack/gro.py: Linux's GRO; ``tcp-coalesced`` counts the merged frames)."""
        if self.observers:  # every frame is recorded: the ordinary way
            for f in frames:
                self.receive_frame(f, now, l4_verified=type(f) is vouched)
            return
        single = len(frames) == 1
        if single:
            # A frame alone in its read (a keep-alive request, most frames of
            # a new connection): the common TCP frame in one pass (stack/rx.py)
            # before the loop's set-up; declined, it goes the loop's way.
            f = frames[0]
            if now > self.tcp.now:
                self.tcp.now = now
            if self._rx.take(f, now, self.ipv4.verify_l4 and type(f) is not vouched):
                self.counters["frames-in"] += 1
                return
        budget = self._echo_budget
        exhausted = budget.exhausted(now)
        receive = self.receive_frame
        raw_syn = self.tcp.raw_syn
        receive_tcp_frame = self.ipv4.receive_tcp_frame
        take = self._rx.take
        verify = self.ipv4.verify_l4
        if now > self.tcp.now:
            self.tcp.now = now
        taken = dropped = 0
        # One frame cannot be merged with anything: it goes the per-frame way
        # without being offered (a keep-alive request is often alone in its read).
        gro = self._gro if self.coalesce and not single else None
        last = len(frames) - 1
        skip = 0
        lone_first = self.lone_first
        for i, f in enumerate(frames):
            if i < skip:
                continue  # taken by an ACK run (stack/gro.py)
            # The common TCP frame in one pass (stack/rx.py), when there is
            # no run to offer it to: no coalescing, or nothing held and the
            # next frame another flow's (each ACK run and offer below needs
            # one or the other; interleaved connections' frames, a new
            # connection's, rarely make a run).
            if gro is None:
                tried = not single
            else:
                tried = (
                    lone_first
                    and not gro.run
                    and (i == last or frames[i + 1][_RAW_FLOW] != f[_RAW_FLOW])
                )
            if tried and take(f, now, verify and type(f) is not vouched):
                taken += 1
                continue
            if (
                len(f) < _RAW_MIN_LEN
                or f[_RAW_ETHERTYPE_AT : _RAW_ETHERTYPE_AT + 3] != _RAW_IPV4_NO_OPTIONS
                or f[_RAW_FRAG_AT] & 0x3F
                or f[_RAW_FRAG_AT + 1]
            ):
                if gro is not None and gro.run:
                    gro.flush(now)
                receive(f, now, l4_verified=type(f) is vouched)
                continue
            proto = f[_RAW_PROTO_AT]
            if (
                gro is not None
                and proto == _RAW_PROTO_TCP
                and len(f) <= _RAW_PURE_ACK_LEN
                and f[_RAW_TCP_FLAGS_AT] == _RAW_ACK
                and i < last
                and frames[i + 1][_RAW_FLOW] == f[_RAW_FLOW]
                # A run needs a second pure ACK (flags ACK alone, as gro's
                # _pure_ack asks): a handshake's ACK and the request after it
                # are not offered (ack_run would parse both to take none).
                and frames[i + 1][_RAW_TCP_FLAGS_SPAN] == _RAW_ACK_BYTE
            ):
                if gro.run:
                    gro.flush(now)
                if n := gro.ack_run(frames, i, now, vouched):
                    skip = i + n
                    continue
            if gro is not None:
                # Offered only when it may join something: a run already
                # held, or a next frame of the same flow (keep-alive requests
                # of many connections interleave: each goes the direct way).
                if (
                    proto == _RAW_PROTO_TCP
                    and len(f) > _RAW_PURE_ACK_LEN
                    and f[_RAW_TCP_FLAGS_AT] in _RAW_DATA_FLAGS
                    and (gro.run or (i < last and frames[i + 1][_RAW_FLOW] == f[_RAW_FLOW]))
                    and gro.offer(f, now, type(f) is vouched)
                ):
                    continue
                if gro.run:  # what the run holds goes first, in order
                    gro.flush(now)
            if proto == _RAW_PROTO_ICMP and f[_RAW_L4_AT] == _RAW_ECHO_REQUEST:
                if exhausted:
                    dropped += 1
                    continue
                receive(f, now, l4_verified=type(f) is vouched)
                exhausted = budget.exhausted(now)  # it may have spent the last token
            elif proto == _RAW_PROTO_TCP:
                # The SYN-flood path for a pure SYN (synack.stack.synflood),
                # then the one-pass input (stack/rx.py; a vouched frame's
                # checksum not summed), then the TCP fast path, then the slow
                # one: as receive_frame takes them, without the call.
                plain = type(f) is not vouched
                syn = f[_RAW_TCP_FLAGS_AT] & _RAW_SYN_MASK == _RAW_SYN
                if not syn and gro is not None and not tried and take(f, now, verify and plain):
                    taken += 1
                elif plain:
                    taken += 1
                    if not (syn and raw_syn(f, now)) and not receive_tcp_frame(f, now):
                        frame = self.iface.receive(f, now)
                        if frame is not None:
                            self.ipv4.receive(frame, now)
                else:
                    receive(f, now, l4_verified=True)
            else:
                receive(f, now, l4_verified=type(f) is vouched)
        if gro is not None and gro.run:
            gro.flush(now)
        if dropped or taken:
            counters = self.counters
            counters["frames-in"] += dropped + taken
            if dropped:
                counters["icmp-echo-ratelimited"] += dropped

    # ---------------------------------------------------------------- timers
    def get_timer(self) -> float | None:
        """The earliest deadline of the whole host (a pure query)."""
        tcp = self.tcp
        if tcp.dirty:
            # Segments were fed but not yet processed (frames_to_send or
            # next_event would do it): due now, handle_timer flushes them.
            return tcp.now
        # Interface.get_timer is its ARP table's, Ipv4.get_timer its
        # reassembler's: asked directly (a pump asks this after every batch).
        deadline = self._arp.get_timer()
        t = self._reassembler.get_timer()
        if t is not None and (deadline is None or t < deadline):
            deadline = t
        t = tcp.get_timer()
        if t is not None and (deadline is None or t < deadline):
            deadline = t
        return deadline

    def handle_timer(self, now: float) -> None:
        tcp = self.tcp
        if tcp.dirty:
            tcp.flush()
        if now > tcp.now:
            tcp.now = now
        for ip, dropped in self.iface.handle_timer(now):
            self._events.append(NeighbourUnreachable(now, ip, dropped))
            tcp.unreachable(ip, now)
        self.iface.flush_requests(now)
        self.ipv4.handle_timer(now)
        tcp.handle_timer(now)

    # ------------------------------------------------------------------ IPv4
    def next_hop(self, dst: IPv4Address) -> IPv4Address:
        """The lessons' rule: on-link iff dst AND mask == own network AND mask."""
        return self.ipv4.next_hop(dst)

    def source_for(self, dst: IPv4Address) -> IPv4Address:
        """Our address as seen from ``dst``: 127.0.0.1 over loopback."""
        return self.ipv4.source_for(dst)

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
        self.ipv4.send(dst, proto, payload, now, dont_fragment=dont_fragment, oversize=oversize)

    def ping(self, dst: IPv4Address, ident: int, sequence: int, data: bytes, now: float) -> None:
        """An ICMP echo request; the answer comes as an :class:`EchoReply` event."""
        self.icmp.ping(dst, ident, sequence, data, now)

    # ------------------------------------------------------------------- UDP
    def udp_open(self, port: int = 0, addr: IPv4Address = ANY) -> UdpEndpoint:
        """Bind a UDP port (0: an ephemeral one) on ``addr`` (ANY: every address)."""
        return self.udp.open(port, addr)

    def udp_close(self, endpoint: UdpEndpoint) -> None:
        self.udp.close(endpoint)

    def udp_sendto(self, endpoint: UdpEndpoint, data: bytes, addr: Address, now: float) -> None:
        self.udp.sendto(endpoint, data, addr, now)

    def udp_port_in_use(self, port: int) -> bool:
        """A UDP endpoint is bound to ``port``."""
        return self.udp.port_in_use(port)

    # ------------------------------------------------------------------- TCP
    def tcp_listen(
        self,
        port: int,
        addr: IPv4Address = ANY,
        *,
        backlog: int = 128,
        syn_backlog: int = 256,
        config: TcpConfig | None = None,
        fastopen_qlen: int = 0,
    ) -> TcpListener:
        """Listen on ``port`` (0: an ephemeral one): ``backlog`` established
        connections wait to be accepted, ``syn_backlog`` half-open ones;
        ``fastopen_qlen`` > 0 accepts TCP Fast Open (RFC 7413) if the host
        allows it (``HostConfig.tcp_fastopen`` bit 2), that many pending."""
        listener = self.tcp.listen(
            port, addr, backlog=backlog, syn_backlog=syn_backlog, config=config
        )
        listener.fastopen_qlen = max(0, fastopen_qlen)
        return listener

    def tcp_connect(
        self,
        remote: Address,
        now: float,
        *,
        local: Address | None = None,
        config: TcpConfig | None = None,
        fastopen: bool = False,
    ) -> TcpStream:
        """Open a connection to ``remote`` (from ``local``, or our address and
        an ephemeral port); its SYN is on its way when this returns. With
        ``fastopen`` (RFC 7413, ``HostConfig.tcp_fastopen`` bit 1) the SYN
        waits for the first ``send()`` (or ``poll()``) to carry its data."""
        return self.tcp.connect(remote, now, local=local, config=config, fastopen=fastopen)

    def tcp_fastopen_rekey(self, secret: bytes) -> None:
        """A new TCP Fast Open cookie secret (RFC 7413 §4.1.2); cookies made with
        the old one stay valid for one more period (an hour)."""
        self.tcp.fastopen.cookies.rekey(secret)

    def tcp_touch_later(self, stream: TcpStream, now: float) -> None:
        """Calls made on ``stream.conn`` directly (at ``now``) are acted on
        (segments, events, timer) at the next ``next_event()`` or
        ``drain_frames()``, together with whatever else is asked of it before
        then: a close that follows data puts the FIN on the data's last segment."""
        self.tcp.touch_later(stream, now)

    def tcp_close_listener(self, listener: TcpListener, now: float) -> None:
        """Stop listening; connections not yet accepted are reset (as Linux)."""
        self.tcp.close_listener(listener, now)

    def tcp_port_in_use(self, port: int) -> bool:
        """A TCP listener or connection has ``port`` as its local port."""
        return self.tcp.port_in_use(port)

    def tcp_has_listener(self, port: int) -> bool:
        """A TCP listener is bound to ``port``."""
        return port in self.tcp.listeners

    def pick_ephemeral_port(self) -> int:
        """A free port for a TCP listener (as ``tcp_listen(0)`` would pick)."""
        return self.tcp.pick_listen_port()
