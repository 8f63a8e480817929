"""UDP (RFC 768): ports, length, pseudo-header checksum (zero means "none").

Layer: wire. Imports synack.errors and the rest of synack.wire.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from synack.errors import LocalProtocolError
from synack.wire._fast import address_int
from synack.wire.checksum import finish, fold, is_valid, ones_sum
from synack.wire.errors import MalformedPacket

HEADER_LEN = 8
PROTO_UDP = 17

# Header layout (RFC 768): octet offsets of the fields.
SRC_PORT_AT = 0
DST_PORT_AT = 2
LENGTH_AT = 4
CHECKSUM_AT = 6

_HDR = struct.Struct("!HHHH")


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    src_port: int
    dst_port: int
    payload: bytes


def parse(
    data: bytes | memoryview, src: IPv4Address, dst: IPv4Address, *, verify_checksum: bool = True
) -> UdpDatagram:
    """A zero checksum means "none" (RFC 768) and is accepted.

    The UDP length field is authoritative: octets after it are ignored.
    """
    n = len(data)
    if n < HEADER_LEN:
        raise MalformedPacket("udp", "truncated", f"{n} bytes, header needs {HEADER_LEN}")
    sport, dport, length, csum = _HDR.unpack_from(data)
    if length < HEADER_LEN:
        raise MalformedPacket("udp", "bad-length", f"length field {length} < 8")
    if length > n:
        raise MalformedPacket("udp", "truncated", f"length field {length} but {n} bytes present")
    if length < n:
        data = data[:length]
    if verify_checksum and csum:
        total = address_int(src) + address_int(dst) + PROTO_UDP + length + ones_sum(data)
        if not is_valid(total):
            raise MalformedPacket("udp", "bad-checksum", f"checksum 0x{csum:04x} is wrong")
    return UdpDatagram(sport, dport, bytes(data[HEADER_LEN:]))


def build(
    datagram: UdpDatagram, src: IPv4Address, dst: IPv4Address, *, checksum: bool = True
) -> bytes:
    """A computed checksum of 0 is sent as 0xFFFF (RFC 768)."""
    payload = datagram.payload
    length = HEADER_LEN + len(payload)
    if length > 0xFFFF:
        raise LocalProtocolError(f"udp: datagram of {length} octets exceeds 65535")
    try:
        header = _HDR.pack(datagram.src_port, datagram.dst_port, length, 0)
    except (struct.error, TypeError) as exc:
        raise LocalProtocolError(f"udp: cannot build {datagram!r}: {exc}") from None
    if not checksum:
        return header + payload
    csum = finish(
        address_int(src)
        + address_int(dst)
        + PROTO_UDP
        + length
        + ones_sum(header)
        + ones_sum(payload)
    )
    # RFC 768: an all-zero computed checksum is transmitted as all ones; zero means "none".
    csum = csum or 0xFFFF
    return b"".join((header[:6], csum.to_bytes(2, "big"), payload))


def build_header_offload(
    src_port: int, dst_port: int, payload_len: int, src: IPv4Address, dst: IPv4Address
) -> bytes:
    """The header of a datagram for checksum offload: the checksum field holds
    the folded pseudo-header sum only (RFC 768), for the link to complete over
    header and payload, as :func:`synack.wire.tcp.build_header_offload`."""
    length = HEADER_LEN + payload_len
    if length > 0xFFFF:
        raise LocalProtocolError(f"udp: datagram of {length} octets exceeds 65535")
    partial = fold(address_int(src) + address_int(dst) + PROTO_UDP + length)
    return _HDR.pack(src_port, dst_port, length, partial)
