"""ICMP for IPv4 (RFC 792): echo, destination unreachable, time exceeded.

Every message is type, code, checksum, a 4-octet "rest of header" and a body;
the representation keeps that shape, so unknown types parse and build too.

Layer: wire. Imports synack.errors and the rest of synack.wire.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from synack.errors import LocalProtocolError
from synack.wire.checksum import finish, is_valid, ones_sum
from synack.wire.errors import MalformedPacket

TYPE_ECHO_REPLY = 0
TYPE_DEST_UNREACHABLE = 3
TYPE_ECHO_REQUEST = 8
TYPE_TIME_EXCEEDED = 11

CODE_NET_UNREACHABLE = 0
CODE_HOST_UNREACHABLE = 1
CODE_PROTOCOL_UNREACHABLE = 2
CODE_PORT_UNREACHABLE = 3
CODE_FRAG_NEEDED = 4

HEADER_LEN = 8
# An error message quotes the datagram's IPv4 header and this much of its payload.
QUOTE_PAYLOAD_LEN = 8  # RFC 792: "the first 64 bits of the original data datagram"

# Header layout (RFC 792): octet offsets of the fields.
TYPE_AT = 0
CODE_AT = 1
CHECKSUM_AT = 2
REST_AT = 4  # echo: identifier, then sequence number at 6; frag-needed: next-hop MTU at 6

_HDR = struct.Struct("!BBHI")


@dataclass(frozen=True, slots=True)
class IcmpMessage:
    """``rest`` is the 4-byte "rest of header" as an int (echo: ident<<16|seq;
    frag-needed: next-hop MTU in the low 16 bits). ``payload`` follows it: echo
    data, or for errors the quoted IP header + 8 octets."""

    type: int
    code: int
    rest: int = 0
    payload: bytes = b""

    @property
    def ident(self) -> int:
        return (self.rest >> 16) & 0xFFFF

    @property
    def sequence(self) -> int:
        return self.rest & 0xFFFF

    @property
    def is_error(self) -> bool:
        """Error messages quote the offending datagram (RFC 792); echo does not."""
        return self.type in (TYPE_DEST_UNREACHABLE, TYPE_TIME_EXCEEDED, 4, 5, 12)


def echo(type_: int, ident: int, sequence: int, data: bytes) -> IcmpMessage:
    return IcmpMessage(type_, 0, ((ident & 0xFFFF) << 16) | (sequence & 0xFFFF), data)


def parse(data: bytes | memoryview, *, verify_checksum: bool = True) -> IcmpMessage:
    n = len(data)
    if n < HEADER_LEN:
        raise MalformedPacket("icmp", "truncated", f"{n} bytes, header needs {HEADER_LEN}")
    type_, code, csum, rest = _HDR.unpack_from(data)
    if verify_checksum and not is_valid(ones_sum(data)):
        raise MalformedPacket("icmp", "bad-checksum", f"checksum 0x{csum:04x} is wrong")
    return IcmpMessage(type_, code, rest, bytes(data[HEADER_LEN:]))


def build(message: IcmpMessage) -> bytes:
    try:
        header = _HDR.pack(message.type, message.code, 0, message.rest)
    except (struct.error, TypeError) as exc:
        raise LocalProtocolError(f"icmp: cannot build {message!r}: {exc}") from None
    csum = finish(ones_sum(header) + ones_sum(message.payload))
    return b"".join((header[:2], csum.to_bytes(2, "big"), header[4:], message.payload))


@dataclass(frozen=True, slots=True)
class Quote:
    """What an error message quotes of the datagram it is about (RFC 792: its
    IPv4 header and at least 8 octets of its payload): the addresses, the
    protocol and, for TCP and UDP, the ports (its first 4 octets)."""

    src: IPv4Address
    dst: IPv4Address
    proto: int
    src_port: int
    dst_port: int


def parse_quote(payload: bytes) -> Quote | None:
    """The quote in an error message's ``payload``; None when it is not an
    IPv4 header followed by 8 octets."""
    if len(payload) < 20 + QUOTE_PAYLOAD_LEN or payload[0] >> 4 != 4:
        return None
    ihl = (payload[0] & 0xF) * 4
    if len(payload) < ihl + QUOTE_PAYLOAD_LEN:
        return None
    return Quote(
        IPv4Address(payload[12:16]),
        IPv4Address(payload[16:20]),
        payload[9],
        int.from_bytes(payload[ihl : ihl + 2], "big"),
        int.from_bytes(payload[ihl + 2 : ihl + 4], "big"),
    )
