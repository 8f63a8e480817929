"""ARP for IPv4 over Ethernet (RFC 826).

Layer: wire. Imports synack.errors and the rest of synack.wire.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from synack.errors import LocalProtocolError
from synack.wire.errors import MalformedPacket
from synack.wire.ipv4 import address_from_int

OP_REQUEST = 1
OP_REPLY = 2
HTYPE_ETHERNET = 1
PTYPE_IPV4 = 0x0800
PACKET_LEN = 28

# Packet layout for Ethernet/IPv4 (RFC 826): octet offsets of the fields.
HTYPE_AT = 0
PTYPE_AT = 2
HLEN_AT = 4
PLEN_AT = 5
OP_AT = 6
SENDER_MAC_AT = 8
SENDER_IP_AT = 14
TARGET_MAC_AT = 18
TARGET_IP_AT = 24

_HDR = struct.Struct("!HHBBH6sI6sI")
_PREFIX = b"\x00\x01\x08\x00\x06\x04"


@dataclass(frozen=True, slots=True)
class ArpPacket:
    op: int  # OP_REQUEST or OP_REPLY
    sender_mac: bytes  # sha, 6 bytes
    sender_ip: IPv4Address  # spa
    target_mac: bytes  # tha, 6 bytes (zeros in a request)
    target_ip: IPv4Address  # tpa


def parse(data: bytes | memoryview) -> ArpPacket:
    """Only htype 1 / ptype 0x0800 / hlen 6 / plen 4; others: MalformedPacket('arp', 'unsupported').

    Octets after the 28 of the packet (Ethernet padding) are ignored.
    """
    n = len(data)
    if n < 8:
        raise MalformedPacket("arp", "truncated", f"{n} bytes, fixed header needs 8")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = (
        _HDR.unpack_from(data)
        if n >= PACKET_LEN
        else (*struct.unpack_from("!HHBBH", data), 0, 0, 0, 0)
    )
    if htype != HTYPE_ETHERNET or ptype != PTYPE_IPV4 or hlen != 6 or plen != 4:
        raise MalformedPacket(
            "arp",
            "unsupported",
            f"htype {htype} ptype 0x{ptype:04x} hlen {hlen} plen {plen} (only Ethernet/IPv4)",
        )
    if n < PACKET_LEN:
        raise MalformedPacket(
            "arp", "truncated", f"{n} bytes, Ethernet/IPv4 ARP needs {PACKET_LEN}"
        )
    return ArpPacket(op, sha, address_from_int(spa), tha, address_from_int(tpa))


def build(packet: ArpPacket) -> bytes:
    if len(packet.sender_mac) != 6 or len(packet.target_mac) != 6:
        raise LocalProtocolError("arp: MAC addresses must be 6 bytes")
    try:
        return _PREFIX + struct.pack(
            "!H6sI6sI",
            packet.op,
            packet.sender_mac,
            int(packet.sender_ip),
            packet.target_mac,
            int(packet.target_ip),
        )
    except (struct.error, TypeError) as exc:
        raise LocalProtocolError(f"arp: cannot build {packet!r}: {exc}") from None
