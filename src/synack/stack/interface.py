"""One Ethernet interface with an IPv4 address: frames in, ARP, neighbours out.

What a host and a router port both are at the link layer (smoltcp's
interface + neighbour cache): the Ethernet demux, the ARP protocol with its
spoofing checks (RFC 826, RFC 5227), and sending IPv4 packets to an on-link
next hop, resolving it first (and queueing them until it answers). The
:class:`~synack.stack.arp.ArpCache` decides; this module sends and counts.

It also keeps the host's neighbour fast path, :attr:`Interface.dest_cache`:
destination (as an int: no ``IPv4Address`` hashed per packet) -> (next-hop
MAC, until), so a unicast packet to a resolved
neighbour is framed without asking ARP. It is dropped whenever ARP learns or
probes anything, so ageing and re-probing still see every use that matters.

Layer: stack. Imports synack.wire and synack.stack.arp, .config, .events.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface

from synack.stack.arp import ArpCache, ArpDecision, ArpPolicy, ArpTimings, NeighbourState
from synack.stack.config import LIMITED_BROADCAST
from synack.stack.events import ArpRefused
from synack.wire import arp as warp
from synack.wire import ethernet as weth
from synack.wire.errors import MalformedPacket
from synack.wire.ipv4 import address_int

Emit = Callable[[bytes, float], None]  # a frame onto the link, at ``now``

# A cached neighbour is used without asking ARP for at most this long.
DEST_CACHE_TTL = 1.0
DEST_CACHE_MAX = 1024


def count_malformed(counters: Counter[str], exc: MalformedPacket) -> None:
    """Counters keyed on the layer and :attr:`MalformedPacket.reason`."""
    counters[f"{exc.layer}-{exc.reason}"] += 1


class Interface:
    """One Ethernet port: ``mac``, an address on ``network``, its ARP cache.

    Frames leave through ``emit``; an ARP packet the spoofing defence refuses
    is reported to ``on_refused``. ``counters`` is the owner's (a host's or a
    router's), shared by all its interfaces.
    """

    __slots__ = (
        "_emit",
        "_on_refused",
        "arp",
        "counters",
        "dest_cache",
        "ip",
        "mac",
        "mtu",
        "network",
    )

    def __init__(
        self,
        mac: bytes,
        interface: IPv4Interface,
        mtu: int,
        counters: Counter[str],
        emit: Emit,
        *,
        timings: ArpTimings | None = None,
        policy: ArpPolicy | None = None,
        on_refused: Callable[[ArpRefused], None] | None = None,
    ) -> None:
        self.mac = mac
        self.ip = interface.ip
        self.network = interface.network
        self.mtu = mtu
        self.counters = counters
        self.arp = ArpCache(timings, policy)
        self.dest_cache: dict[int, tuple[bytes, float]] = {}
        self._emit = emit
        self._on_refused = on_refused

    # ------------------------------------------------------------- Ethernet
    def receive(self, data: bytes, now: float) -> weth.EthernetFrame | None:
        """One frame from the link: ARP is handled here; an IPv4 frame for us
        is returned for the IP layer; anything else is counted and dropped."""
        try:
            frame = weth.parse(data)
        except MalformedPacket as exc:
            count_malformed(self.counters, exc)
            return None
        if frame.dst != self.mac and frame.dst != weth.BROADCAST:
            self.counters["eth-not-for-us"] += 1
            return None
        if frame.ethertype == weth.ETHERTYPE_IPV4:
            return frame
        if frame.ethertype == weth.ETHERTYPE_ARP:
            self._receive_arp(frame, now)
        else:
            self.counters["eth-unknown-type"] += 1
        return None

    # ------------------------------------------------------------------ ARP
    def announce(self, now: float) -> None:
        """A gratuitous ARP (RFC 5227 §3 announcement), so neighbours holding
        a stale entry for our address update it."""
        self._send_arp(warp.OP_REQUEST, weth.BROADCAST, bytes(6), self.ip, now)

    def _send_arp(
        self, op: int, dst_mac: bytes, target_mac: bytes, target_ip: IPv4Address, now: float
    ) -> None:
        pkt = warp.ArpPacket(op, self.mac, self.ip, target_mac, target_ip)
        self._emit(
            weth.build(weth.EthernetFrame(dst_mac, self.mac, weth.ETHERTYPE_ARP, warp.build(pkt))),
            now,
        )

    def flush_requests(self, now: float) -> None:
        """Send the requests and probes the ARP cache has asked for."""
        arp = self.arp
        for ip, unicast in arp.requests:
            self.counters["arp-requests-out"] += 1
            self._send_arp(warp.OP_REQUEST, unicast or weth.BROADCAST, bytes(6), ip, now)
        arp.requests.clear()

    def _receive_arp(self, frame: weth.EthernetFrame, now: float) -> None:
        try:
            pkt = warp.parse(frame.payload)
        except MalformedPacket as exc:
            count_malformed(self.counters, exc)
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
        self.dest_cache.clear()
        entry = self.arp.entries.get(pkt.sender_ip)
        claimant = entry.claim if entry is not None else None
        decision, ready = self.arp.learn(
            pkt.sender_ip, pkt.sender_mac, now, reply=reply, for_us=for_us
        )
        if decision is ArpDecision.PROBING:
            # Not refused yet, not believed either: the old MAC is probed.
            self.counters["arp-claims-probed"] += 1
        elif decision is ArpDecision.IGNORED:
            self.counters["arp-ignored"] += 1
        elif decision in (ArpDecision.REFUSED_CONFLICT, ArpDecision.REFUSED_UNSOLICITED):
            self.counters[f"arp-refused-{decision.value}"] += 1
            # When the old MAC answered a probe, the refused one is the
            # claimant's, not the sender's of this packet.
            refused_mac = pkt.sender_mac
            if claimant is not None and claimant != pkt.sender_mac:
                refused_mac = claimant
            if self._on_refused is not None:
                self._on_refused(ArpRefused(now, pkt.sender_ip, refused_mac, decision.value))
        self.flush_requests(now)
        for packet, ethertype in ready:
            self._emit(
                weth.build(weth.EthernetFrame(pkt.sender_mac, self.mac, ethertype, packet)), now
            )
        if pkt.op == warp.OP_REQUEST and for_us:
            self.counters["arp-replies-out"] += 1
            self._send_arp(warp.OP_REPLY, pkt.sender_mac, pkt.sender_mac, pkt.sender_ip, now)

    # ----------------------------------------------------------- neighbours
    def send_ipv4(self, hop: IPv4Address, packets: list[bytes], now: float) -> bytes | None:
        """Frame IPv4 ``packets`` to the on-link ``hop`` (broadcast addresses
        go to the broadcast MAC); queued until ARP resolves ``hop`` if it has
        not. Returns the unicast MAC they went to, if resolved."""
        if hop == LIMITED_BROADCAST or hop == self.network.broadcast_address:
            mac: bytes | None = weth.BROADCAST
            resolved = None
        else:
            mac = resolved = self.arp.resolve(hop, now)
        if mac is None:
            for raw in packets:
                if not self.arp.enqueue(hop, raw, weth.ETHERTYPE_IPV4, now):
                    self.counters["arp-pending-full"] += 1
        else:
            for raw in packets:
                self._emit(
                    weth.build(weth.EthernetFrame(mac, self.mac, weth.ETHERTYPE_IPV4, raw)), now
                )
        self.flush_requests(now)
        return resolved

    def remember(self, dst: IPv4Address, hop: IPv4Address, mac: bytes, now: float) -> None:
        """Put ``dst`` in the fast path (via ``hop`` at ``mac``) if ``hop``
        may be used without asking ARP for a while: REACHABLE, or STALE with
        its re-probe already scheduled (then a use changes nothing in ARP;
        Linux's DELAY). A STALE entry the kernel never needs to confirm (it
        learnt us from its own request) stays STALE for minutes, and every
        segment would otherwise take the slow path."""
        state = self.arp.state(hop, now)
        if state is not NeighbourState.REACHABLE:
            n = self.arp.entries.get(hop)
            if state is not NeighbourState.STALE or n is None or n.retry_at is None:
                return
        cache = self.dest_cache
        if len(cache) >= DEST_CACHE_MAX:
            cache.clear()
        cache[address_int(dst)] = (mac, now + DEST_CACHE_TTL)

    # --------------------------------------------------------------- timers
    def get_timer(self) -> float | None:
        return self.arp.get_timer()  # (Host.get_timer asks arp itself: keep it so)

    def handle_timer(self, now: float) -> list[tuple[IPv4Address, int]]:
        """ARP retries and ageing. Returns (address, packets dropped) for each
        neighbour that failed to resolve; the caller reports them, then calls
        :meth:`flush_requests`."""
        arp = self.arp
        entries = len(arp.entries)
        failed = arp.handle_timer(now)
        if failed or arp.requests or len(arp.entries) != entries:
            # A probe went out or an entry went: the next send asks ARP again.
            self.dest_cache.clear()
        for _ip, dropped in failed:
            self.counters["arp-failed"] += 1
            self.counters["arp-pending-dropped"] += dropped
        if arp.moved:
            # A claim whose old MAC never answered the probes: the host moved.
            self.counters["arp-moved"] += len(arp.moved)
            arp.moved.clear()
            self.dest_cache.clear()
        return failed
