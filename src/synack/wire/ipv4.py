"""IPv4 header (RFC 791). CONTRACT: representation below; parse/build by the wire work."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17


@dataclass(frozen=True, slots=True)
class Ipv4Packet:
    """One IPv4 packet (or fragment). ``total_length``, ``ihl`` and the header
    checksum are derived on build and verified on parse."""

    src: IPv4Address
    dst: IPv4Address
    proto: int
    payload: bytes
    ttl: int = 64
    ident: int = 0
    dscp: int = 0
    ecn: int = 0
    dont_fragment: bool = False
    more_fragments: bool = False
    frag_offset: int = 0  # in 8-octet units, as on the wire
    options: bytes = b""  # raw options, carried and skipped; length a multiple of 4


def parse(data: bytes | memoryview, *, verify_checksum: bool = True) -> Ipv4Packet:
    """Bytes beyond total_length (Ethernet padding) are ignored."""
    raise NotImplementedError


def build(packet: Ipv4Packet) -> bytes:
    raise NotImplementedError
