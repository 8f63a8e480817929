"""ICMP for a host (RFC 792, RFC 1122 §3.2.2) and the error messages hosts and routers send.

:class:`IcmpErrors` builds an error message about a datagram, under the rules
every sender shares (RFC 1122 §3.2.2, RFC 1812 §4.3.2.7: never about a
non-initial fragment or another ICMP error) and one rate limit (a token
bucket, as Linux's ``icmp_msgs_per_sec``/``icmp_msgs_burst``); a host and a
router each own one. :class:`Icmp` is a host's ICMP: echo (``ping`` and
replies), destination unreachable and time exceeded (path MTU, errors for
connected UDP endpoints and for TCP connections, RFC 9293 §3.9.2.2 MUST-54)
and the errors it sends about datagrams addressed to it.

Layer: stack. Imports synack.core, synack.wire and lower stack modules (ipv4 and below).
"""

from __future__ import annotations

import errno
from collections import Counter, deque
from collections.abc import Callable
from ipaddress import IPv4Address

from synack.core.ratelimit import TokenBucket, TokenBuckets
from synack.stack.config import Address, NoRouteError
from synack.stack.events import EchoReply, HostEvent
from synack.stack.interface import count_malformed
from synack.stack.ipv4 import Ipv4
from synack.wire import icmp as wicmp
from synack.wire import ipv4 as wip
from synack.wire.errors import MalformedPacket

# Tells UDP about an error for a datagram it sent: (local port, remote, errno).
UdpErrorSink = Callable[[int, Address, int], None]
# Tells TCP about an error for a segment it sent: (local, remote, the quoted
# sequence number, ICMP type, code, the next-hop MTU of a frag-needed, now).
TcpErrorSink = Callable[[Address, Address, int, int, int, int, float], None]

# The first octet (the type) of the ICMP messages an error may be about.
_ECHO_TYPES = (bytes([wicmp.TYPE_ECHO_REPLY]), bytes([wicmp.TYPE_ECHO_REQUEST]))


class IcmpErrors:
    """Builds rate-limited ICMP error messages; counts into ``counters``."""

    __slots__ = ("bucket", "counters")

    def __init__(self, per_second: float, burst: int, counters: Counter[str]) -> None:
        self.bucket = TokenBucket(per_second, burst)
        self.counters = counters

    def build(
        self, about: wip.Ipv4Packet, type_: int, code: int, now: float, rest: int = 0
    ) -> bytes | None:
        """The ICMP message (type, code, ``rest`` of header) about ``about``,
        or None when none may be sent about it (or not now: rate limit)."""
        if about.frag_offset:
            return None  # only the first fragment says what the datagram was
        if about.proto == wip.PROTO_ICMP and about.payload[:1] not in _ECHO_TYPES:
            return None  # never an error about an error (only echo is quoted)
        if not self.bucket.allow(now):
            self.counters["icmp-errors-ratelimited"] += 1
            return None
        # The quote: the original header as it was (its own total length and
        # checksum) and the first 8 octets of its payload (RFC 792).
        quoted = (
            wip.build_header(about, len(about.payload)) + about.payload[: wicmp.QUOTE_PAYLOAD_LEN]
        )
        self.counters[f"icmp-errors-out-{type_}-{code}"] += 1
        return wicmp.build(wicmp.IcmpMessage(type_, code, rest, quoted))


_ECHO_REQUEST_OCTET = bytes([wicmp.TYPE_ECHO_REQUEST])


class EchoBudget:
    """How many echo requests are answered: per source, and all together.

    Checked on the type octet, before the message is parsed or its checksum
    summed: an echo flood beyond the budget costs only the IP layer's work
    (issue 14: a 281k pps flood stalled transfers)."""

    __slots__ = ("all", "per_source")

    def __init__(self, per_second: float, burst: int, per_source: float, source_burst: int) -> None:
        self.all = TokenBucket(per_second, burst)
        self.per_source = TokenBuckets(per_source, source_burst)

    def exhausted(self, now: float) -> bool:
        """The shared bucket has no token at ``now`` (nothing spent): the
        host then drops an echo request from its raw bytes, unparsed."""
        bucket = self.all
        return bucket.tokens + max(0.0, now - bucket.at) * bucket.rate < 1.0

    def allow(self, src: IPv4Address, now: float) -> bool:
        # The source's own bucket first, so one loud source cannot drain the
        # shared one.
        return self.per_source.allow(str(src), now) and self.all.allow(now)


class Icmp:
    """A host's ICMP, on its :class:`~synack.stack.ipv4.Ipv4` layer."""

    __slots__ = ("_events", "_ip", "_tcp_error", "_udp_error", "counters", "echo_budget", "errors")

    def __init__(
        self,
        ip: Ipv4,
        errors: IcmpErrors,
        events: deque[HostEvent],
        counters: Counter[str],
        udp_error: UdpErrorSink,
        echo_budget: EchoBudget | None = None,
        tcp_error: TcpErrorSink | None = None,
    ) -> None:
        self.echo_budget = echo_budget
        self._ip = ip
        self.errors = errors
        self._events = events
        self.counters = counters
        self._udp_error = udp_error
        self._tcp_error = tcp_error

    def ping(self, dst: IPv4Address, ident: int, sequence: int, data: bytes, now: float) -> None:
        msg = wicmp.echo(wicmp.TYPE_ECHO_REQUEST, ident, sequence, data)
        self._ip.send(dst, wip.PROTO_ICMP, wicmp.build(msg), now)

    def receive(self, pkt: wip.Ipv4Packet, broadcast: bool, now: float) -> None:
        payload = pkt.payload
        budget = self.echo_budget
        if (
            budget is not None
            and payload[:1] == _ECHO_REQUEST_OCTET
            and not broadcast
            and not budget.allow(pkt.src, now)
        ):
            self.counters["icmp-echo-ratelimited"] += 1
            return
        try:
            msg = wicmp.parse(pkt.payload, verify_checksum=self._ip.verify_l4)
        except MalformedPacket as exc:
            count_malformed(self.counters, exc)
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
                self._ip.send(pkt.src, wip.PROTO_ICMP, wicmp.build(reply), now)
            except NoRouteError:
                self.counters["icmp-no-route"] += 1
        elif msg.type == wicmp.TYPE_ECHO_REPLY:
            self._events.append(EchoReply(now, pkt.src, msg.ident, msg.sequence, msg.payload))
        elif msg.type == wicmp.TYPE_DEST_UNREACHABLE:
            self._unreachable(msg, now)
        elif msg.type == wicmp.TYPE_TIME_EXCEEDED:
            self.counters[f"icmp-type-{msg.type}"] += 1
            self._to_tcp(msg, now)  # a soft error for TCP (RFC 9293 §3.9.2.2)
        else:
            self.counters[f"icmp-type-{msg.type}"] += 1

    def _unreachable(self, msg: wicmp.IcmpMessage, now: float) -> None:
        quote = wicmp.parse_quote(msg.payload)
        if quote is None:
            self.counters["icmp-bad-quote"] += 1
            return
        ours = quote.src == self._ip.ip
        if msg.code == wicmp.CODE_FRAG_NEEDED and ours:
            # RFC 1191: a router could not forward our DF packet. Remember
            # the path MTU and stop setting DF above it, so the retransmission
            # is fragmented on the way instead of being lost again (TCP's MSS
            # is fixed at the handshake here; fragmenting is the safe fallback).
            self.counters["icmp-frag-needed"] += 1
            self._ip.learn_path_mtu(quote.dst, msg.rest & 0xFFFF or 576)
            self._to_tcp(msg, now)
            return
        if quote.proto == wip.PROTO_TCP:
            self._to_tcp(msg, now)
            return
        if quote.proto != wip.PROTO_UDP or not (ours or quote.src.is_loopback):
            return
        code = errno.ECONNREFUSED if msg.code == wicmp.CODE_PORT_UNREACHABLE else errno.EHOSTUNREACH
        self._udp_error(quote.src_port, (quote.dst, quote.dst_port), code)

    def _to_tcp(self, msg: wicmp.IcmpMessage, now: float) -> None:
        """RFC 9293 §3.9.2.2 (MUST-54): an error about a TCP segment we sent
        goes to the connection that sent it, found from the quoted IP header
        and the first 8 octets of the segment (ports and sequence number)."""
        quote = wicmp.parse_quote(msg.payload)
        if self._tcp_error is None or quote is None or quote.proto != wip.PROTO_TCP:
            return
        if quote.src != self._ip.ip and not quote.src.is_loopback:
            return
        at = (msg.payload[0] & 0xF) * 4 + 4  # the sequence number in the TCP header
        seq = int.from_bytes(msg.payload[at : at + 4], "big")
        self.counters["icmp-to-tcp"] += 1
        self._tcp_error(
            (quote.src, quote.src_port),
            (quote.dst, quote.dst_port),
            seq,
            msg.type,
            msg.code,
            msg.rest & 0xFFFF,
            now,
        )

    def send_error(self, about: wip.Ipv4Packet, type_: int, code: int, now: float) -> None:
        """An error about a datagram that came to us (RFC 1122 §3.2.2: never
        about one sent to a broadcast address)."""
        if about.dst != self._ip.ip and not about.dst.is_loopback:
            return
        message = self.errors.build(about, type_, code, now)
        if message is None:
            return
        try:
            self._ip.send(about.src, wip.PROTO_ICMP, message, now)
        except NoRouteError:
            self.counters["icmp-no-route"] += 1
