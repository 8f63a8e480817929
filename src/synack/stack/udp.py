"""UDP for a host (RFC 768, RFC 1122 §4.1): bound endpoints, their queues, their errors.

Layer: stack. Imports synack.errors, synack.wire and lower stack modules (ipv4 and below).
"""

from __future__ import annotations

from collections import Counter, deque
from ipaddress import IPv4Address

from synack.errors import LocalProtocolError
from synack.stack.config import ANY, Address, AddressInUseError, as_address
from synack.stack.endpoints import UdpEndpoint
from synack.stack.events import DatagramError, DatagramReadable, HostEvent
from synack.stack.interface import count_malformed
from synack.stack.ipv4 import Ipv4
from synack.stack.offload import SplitFrame
from synack.stack.ports import EphemeralPorts
from synack.wire import icmp as wicmp
from synack.wire import ipv4 as wip
from synack.wire import udp as wudp
from synack.wire.errors import MalformedPacket

_L4_START = wip.ETH_IPV4_HEADER_LEN  # where the UDP header starts in a frame
_IP_HLEN = wip.MIN_HEADER_LEN  # our IPv4 headers carry no options
_MAX_PAYLOAD = wip.MAX_TOTAL_LEN - _IP_HLEN - wudp.HEADER_LEN


class Udp:
    """A host's UDP ports. ``tso``: the link completes transport checksums,
    so a datagram to a resolved neighbour goes out as a :class:`SplitFrame`
    with the pseudo-header sum only (see :meth:`Host.enable_offload`)."""

    __slots__ = ("_endpoints", "_events", "_ip", "_ports", "counters", "queue_limit", "tso")

    def __init__(
        self,
        ip: Ipv4,
        ports: EphemeralPorts,
        events: deque[HostEvent],
        counters: Counter[str],
        queue_limit: int,
    ) -> None:
        self._ip = ip
        self._ports = ports
        self._events = events
        self.counters = counters
        self.queue_limit = queue_limit
        self._endpoints: dict[int, UdpEndpoint] = {}
        self.tso = False

    def port_in_use(self, port: int) -> bool:
        return port in self._endpoints

    def open(self, port: int = 0, addr: IPv4Address = ANY) -> UdpEndpoint:
        self._ip.check_local(addr)
        if not 0 <= port <= 65535:
            raise LocalProtocolError("port must be 0-65535")
        if port == 0:
            port = self._ports.pick(self._endpoints.__contains__)
        elif port in self._endpoints:
            raise AddressInUseError(f"UDP port {port} in use")
        endpoint = UdpEndpoint((addr, port), self.queue_limit, self.sendto, self.close)
        self._endpoints[port] = endpoint
        return endpoint

    def close(self, endpoint: UdpEndpoint) -> None:
        if not endpoint.closed:
            endpoint.closed = True
            if self._endpoints.get(endpoint.local[1]) is endpoint:
                del self._endpoints[endpoint.local[1]]

    def sendto(self, endpoint: UdpEndpoint, data: bytes, addr: Address, now: float) -> None:
        if endpoint.closed:
            raise LocalProtocolError("endpoint is closed")
        if len(data) > _MAX_PAYLOAD:
            raise LocalProtocolError("datagram too long for IPv4 (EMSGSIZE)")
        ip, port = as_address(addr[0]), addr[1]
        if not 0 < port <= 65535:
            raise LocalProtocolError("destination port must be 1-65535")
        if self.tso and self._ip.dest_cache and self._send_offloaded(endpoint, data, ip, port, now):
            self.counters["udp-out"] += 1
            return
        src = self._ip.source_for(ip)
        datagram = wudp.build(wudp.UdpDatagram(endpoint.local[1], port, bytes(data)), src, ip)
        self.counters["udp-out"] += 1
        self._ip.send(ip, wip.PROTO_UDP, datagram, now)

    def _send_offloaded(
        self, endpoint: UdpEndpoint, data: bytes, ip: IPv4Address, port: int, now: float
    ) -> bool:
        """UDP over a checksum-offloading link to a resolved neighbour, as
        TCP's split frames: the checksum field holds the pseudo-header sum
        (RFC 768) and the link completes it. False when the datagram needs
        fragmenting or the next hop is not cached."""
        ipl = self._ip
        cached = ipl.dest_cache.get(wip.address_int(ip))
        length = wudp.HEADER_LEN + len(data)
        if cached is None or cached[1] <= now or _IP_HLEN + length > ipl.mtu:
            return False
        head = ipl.eth_ip_head(
            cached[0], _IP_HLEN + length, 0, wip.PROTO_UDP, ipl.ip_int, wip.address_int(ip)
        ) + wudp.build_header_offload(endpoint.local[1], port, len(data), ipl.ip, ip)
        ipl.emit(SplitFrame(head, bytes(data), _L4_START, wudp.CHECKSUM_AT), now)
        return True

    def receive(self, pkt: wip.Ipv4Packet, broadcast: bool, now: float) -> None:
        try:
            dgram = wudp.parse(pkt.payload, pkt.src, pkt.dst, verify_checksum=self._ip.verify_l4)
        except MalformedPacket as exc:
            count_malformed(self.counters, exc)
            return
        endpoint = self._endpoints.get(dgram.dst_port)
        if endpoint is not None and (
            (endpoint.local[0] != ANY and endpoint.local[0] != pkt.dst and not broadcast)
            or (endpoint.remote is not None and endpoint.remote != (pkt.src, dgram.src_port))
        ):
            endpoint = None
        if endpoint is None:
            self.counters["udp-closed-port"] += 1
            if not broadcast:
                # RFC 1122 §4.1.3.1: port unreachable for a closed port.
                self._ip.icmp_error(
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
            self._events.append(DatagramReadable(endpoint))

    def error(self, port: int, remote: Address, code: int) -> None:
        """An ICMP error about a datagram sent from ``port`` to ``remote``:
        reported only to an endpoint connected there, as Linux does."""
        endpoint = self._endpoints.get(port)
        if endpoint is None or endpoint.remote != remote:
            return
        endpoint.error = code
        self._events.append(DatagramError(endpoint, code, remote))
