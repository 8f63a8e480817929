"""ARP for IPv4 over Ethernet (RFC 826). CONTRACT: representation below."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

OP_REQUEST = 1
OP_REPLY = 2


@dataclass(frozen=True, slots=True)
class ArpPacket:
    op: int  # OP_REQUEST or OP_REPLY
    sender_mac: bytes  # sha, 6 bytes
    sender_ip: IPv4Address  # spa
    target_mac: bytes  # tha, 6 bytes (zeros in a request)
    target_ip: IPv4Address  # tpa


def parse(data: bytes | memoryview) -> ArpPacket:
    """Only htype 1 / ptype 0x0800 / hlen 6 / plen 4; others: MalformedPacket('arp', 'unsupported')."""
    raise NotImplementedError


def build(packet: ArpPacket) -> bytes:
    raise NotImplementedError
