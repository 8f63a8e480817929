"""The one frame decoder: a captured frame, layer by layer, as far as it parses.

Ethernet -> ARP | IPv4 (fragments included) -> ICMP | UDP | TCP, each layer
parsed by its own wire module. :func:`decode` never raises for bad bytes: the
first layer that does not parse stops it, ``fault`` is the
:class:`MalformedPacket` that layer's parser raised (``fault.layer`` says which
layer, ``fault.reason`` why), and the layers outside it are kept. The
tcpdump-style lines (:mod:`synack.wire.summary`), the field-by-field dissection
(:mod:`synack.wire.dissect`) and the trace (:mod:`synack.trace`) all read
frames through it.

Checksums are verified only when asked (``verify=True``): captures taken on
the sending host carry checksums the NIC (or loopback) never filled in. A bad
checksum does not stop decoding; it is listed in ``bad_checksums`` and the
layer is decoded anyway. A first fragment's transport checksum covers the
whole datagram, so it is never verified.

Layer: wire. Imports synack.errors and the rest of synack.wire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from synack.wire import arp, ethernet, icmp, ipv4, tcp, udp
from synack.wire._fast import slot_maker
from synack.wire.errors import MalformedPacket
from synack.wire.pcap import LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_RAW

A = TypeVar("A")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one frame means, layer by layer (None where a layer is absent)."""

    linktype: int
    ethernet: ethernet.EthernetFrame | None = None
    arp: arp.ArpPacket | None = None
    ipv4: ipv4.Ipv4Packet | None = None
    icmp: icmp.IcmpMessage | None = None
    udp: udp.UdpDatagram | None = None
    tcp: tcp.TcpSegment | None = None
    ip_at: int | None = None  # where the IPv4 header starts in the frame
    transport_at: int | None = None  # where the ICMP/UDP/TCP header starts
    fault: MalformedPacket | None = None  # the first layer that failed to parse, and why
    bad_checksums: tuple[MalformedPacket, ...] = ()  # outermost first (verify=True only)

    @property
    def error(self) -> str | None:
        """``"layer: reason"`` of the layer that failed to parse, or None."""
        return None if self.fault is None else f"{self.fault.layer}: {self.fault.reason}"


Transport = icmp.IcmpMessage | udp.UdpDatagram | tcp.TcpSegment


def _ipv4(data: bytes, verify: bool) -> ipv4.Ipv4Packet:
    return ipv4.parse(data, verify_checksum=verify)


def _icmp(p: ipv4.Ipv4Packet, verify: bool) -> Transport:
    return icmp.parse(p.payload, verify_checksum=verify)


def _udp(p: ipv4.Ipv4Packet, verify: bool) -> Transport:
    return udp.parse(p.payload, p.src, p.dst, verify_checksum=verify)


def _tcp(p: ipv4.Ipv4Packet, verify: bool) -> Transport:
    return tcp.parse(p.payload, p.src, p.dst, verify_checksum=verify)


# Each transport's parser, given its IPv4 packet and whether to verify the checksum.
_TRANSPORTS: dict[int, Callable[[ipv4.Ipv4Packet, bool], Transport]] = {
    ipv4.PROTO_ICMP: _icmp,
    ipv4.PROTO_UDP: _udp,
    ipv4.PROTO_TCP: _tcp,
}


def _checked(parse: Callable[[A, bool], T], arg: A, verify: bool, bad: list[MalformedPacket]) -> T:
    """``parse(arg, verify_checksum)``; a bad checksum is noted in ``bad`` and parsed past.

    Every parser checks structure before (or regardless of) the checksum, so
    a structural fault found by the unverified parse is the layer's fault.
    """
    if not verify:
        return parse(arg, False)
    try:
        return parse(arg, True)
    except MalformedPacket as exc:
        if exc.reason != "bad-checksum":
            raise
        result = parse(arg, False)
        bad.append(exc)
        return result


# Decoded's fields, positionally: linktype, ethernet, arp, ipv4, icmp, udp, tcp,
# ip_at, transport_at, fault, bad_checksums. Built per frame: slots filled directly.
_make = slot_maker(Decoded)


def decode(
    frame: bytes | memoryview,
    linktype: int = LINKTYPE_ETHERNET,
    *,
    verify: bool = False,
    first_fragment: bool = True,
) -> Decoded:
    """Parse ``frame`` (of pcap link type ``linktype``) as far as it goes; never raises.

    ``first_fragment=False`` stops at the IPv4 layer of a first fragment as
    of any other: its transport header is there, but the segment is not whole.
    """
    data = frame if type(frame) is bytes else bytes(frame)
    eth: ethernet.EthernetFrame | None = None
    if linktype == LINKTYPE_ETHERNET:
        try:
            eth = ethernet.parse(data)
        except MalformedPacket as exc:
            return _make(linktype, None, None, None, None, None, None, None, None, exc, ())
        if eth.ethertype == ethernet.ETHERTYPE_ARP:
            try:
                packet = arp.parse(eth.payload)
            except MalformedPacket as exc:
                return _make(linktype, eth, None, None, None, None, None, None, None, exc, ())
            return _make(linktype, eth, packet, None, None, None, None, None, None, None, ())
        if eth.ethertype != ethernet.ETHERTYPE_IPV4:
            return _make(linktype, eth, None, None, None, None, None, None, None, None, ())
        ip_at = ethernet.HEADER_LEN
        ip_bytes = eth.payload
    elif linktype in (LINKTYPE_RAW, LINKTYPE_IPV4):
        ip_at = 0
        ip_bytes = data
    else:
        unsupported = MalformedPacket("pcap", "unsupported", f"link type {linktype}")
        return _make(linktype, None, None, None, None, None, None, None, None, unsupported, ())
    bad: list[MalformedPacket] = []
    try:
        ip = _checked(_ipv4, ip_bytes, verify, bad)
    except MalformedPacket as exc:
        return _make(linktype, eth, None, None, None, None, None, ip_at, None, exc, ())
    ip_bad = tuple(bad)
    parse = _TRANSPORTS.get(ip.proto)
    if parse is None or ip.frag_offset or (ip.more_fragments and not first_fragment):
        # Another protocol, or a fragment without its transport header (or, with
        # first_fragment=False, without the rest of its segment).
        return _make(linktype, eth, None, ip, None, None, None, ip_at, None, None, ip_bad)
    at = ip_at + ipv4.MIN_HEADER_LEN + len(ip.options)
    try:
        layer = _checked(parse, ip, verify and not ip.more_fragments, bad)
    except MalformedPacket as exc:
        return _make(linktype, eth, None, ip, None, None, None, ip_at, at, exc, ip_bad)
    return _make(
        linktype,
        eth,
        None,
        ip,
        layer if type(layer) is icmp.IcmpMessage else None,
        layer if type(layer) is udp.UdpDatagram else None,
        layer if type(layer) is tcp.TcpSegment else None,
        ip_at,
        at,
        None,
        tuple(bad),
    )


def checksums_ok(frame: bytes | memoryview, linktype: int = LINKTYPE_ETHERNET) -> bool:
    """Whether every checksum of ``frame``'s whole layers verifies (IPv4 header, TCP/UDP/ICMP)."""
    return not decode(frame, linktype, verify=True, first_fragment=False).bad_checksums


def parse_quoted_ipv4(quote: bytes) -> ipv4.Ipv4Packet:
    """The IPv4 header an ICMP error quotes (RFC 792: header + 8 octets).

    The quote keeps the original total length though it is cut short after
    the header, so the header is parsed with its total length clamped to
    what is there; the packet's payload is the quoted part of the original.
    Raises :class:`MalformedPacket` (layer ``ipv4``) when even that fails.
    """
    if len(quote) >= 4:
        hlen = (quote[0] & 0x0F) * 4
        at = ipv4.TOTAL_LENGTH_AT
        total = int.from_bytes(quote[at : at + 2], "big")
        clamped = min(len(quote), max(hlen, total))
        if clamped != total and hlen >= ipv4.MIN_HEADER_LEN:
            quote = quote[:at] + clamped.to_bytes(2, "big") + quote[at + 2 :]
    return ipv4.parse(quote, verify_checksum=False)
