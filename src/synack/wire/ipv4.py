"""IPv4 header (RFC 791): every field, options carried and skipped, header checksum.

Fragments are parsed like any packet (their fields are in the representation);
reassembly is the stack's business.

Layer: wire. Imports synack.errors and the rest of synack.wire.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from synack.errors import LocalProtocolError
from synack.wire import options as tlv
from synack.wire._fast import address_int as address_int
from synack.wire._fast import slot_maker
from synack.wire.checksum import finish, le_residue, ones_sum
from synack.wire.errors import MalformedPacket

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

MIN_HEADER_LEN = 20
VERSION_IHL = 0x45  # first octet of an option-less header: version 4, IHL 5
MAX_HEADER_LEN = 60
MAX_TOTAL_LEN = 0xFFFF

# Header layout (RFC 791 §3.1): octet offsets of the fields, for code that reads
# or patches one field in place (the dissection, checksum offload).
VERSION_IHL_AT = 0  # version: high nibble; IHL (32-bit words): low nibble
TOS_AT = 1  # DSCP: high six bits; ECN: low two
TOTAL_LENGTH_AT = 2
IDENT_AT = 4
FRAGMENT_AT = 6  # flags: high three bits; offset (8-octet units): low thirteen
TTL_AT = 8
PROTO_AT = 9
CHECKSUM_AT = 10
SRC_AT = 12
DST_AT = 16
FRAG_OFFSET_MASK = 0x1FFF

# Option kinds that are a single octet (RFC 791 §3.1, "Case 1").
OPT_EOL = tlv.OPT_EOL
OPT_NOP = tlv.OPT_NOP

FLAG_RESERVED = 0x8000
FLAG_DF = 0x4000
FLAG_MF = 0x2000

_HDR = struct.Struct("!BBHHHBBHII")
# The option-less header as ten 16-bit words but for the addresses (which
# count as themselves in a ones'-complement sum, see checksum.py): version/IHL
# and TOS, total length, ident, flags and fragment offset, TTL and protocol,
# checksum, source, destination. A host's receive fast path reads it from the
# frame and sums it without slicing it out.
HEADER_WORDS = struct.Struct("!HHHHHHII")

# An Ethernet header and an option-less IPv4 header packed at once (a host's
# fast path to a resolved neighbour): destination MAC, then source MAC and
# EtherType as one 8-octet field, then the fields of the IPv4 header: version
# and IHL, TOS, total length, ident, flags and fragment offset, TTL and
# protocol as one word, header checksum, source, destination.
ETH_IPV4_HEADER = struct.Struct("!6s8sBBHHHHHII")
ETH_IPV4_HEADER_LEN = ETH_IPV4_HEADER.size  # 34: where the transport header starts
_from_bytes = int.from_bytes

# IPv4Address construction costs more than the rest of a header parse; hosts see
# few distinct addresses, and the objects are immutable, so share them.
_ADDR_CACHE: dict[int, IPv4Address] = {}
_ADDR_CACHE_MAX = 4096


def address_from_int(value: int) -> IPv4Address:
    """``IPv4Address(value)``, shared from a small bounded cache."""
    addr = _ADDR_CACHE.get(value)
    if addr is None:
        if len(_ADDR_CACHE) >= _ADDR_CACHE_MAX:
            _ADDR_CACHE.clear()
        addr = _ADDR_CACHE[value] = IPv4Address(value)
    return addr


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

    @property
    def is_fragment(self) -> bool:
        return self.more_fragments or self.frag_offset != 0


def check_options(options: bytes | memoryview) -> None:
    """Walk the option TLVs (RFC 791 §3.1); an option running past the header is ``bad-option``."""
    for _ in tlv.walk(options, "ipv4"):
        pass


_make = slot_maker(Ipv4Packet)
_cached_address = _ADDR_CACHE.get


def parse(data: bytes | memoryview, *, verify_checksum: bool = True) -> Ipv4Packet:
    """Bytes beyond total_length (Ethernet padding) are ignored."""
    if type(data) is not bytes:
        data = bytes(data)
    n = len(data)
    if n < MIN_HEADER_LEN:
        raise MalformedPacket("ipv4", "truncated", f"{n} bytes, header needs {MIN_HEADER_LEN}")
    vihl, tos, total, ident, frag, ttl, proto, csum, src, dst = _HDR.unpack_from(data)
    if vihl >> 4 != 4:
        raise MalformedPacket("ipv4", "bad-version", f"version {vihl >> 4}")
    hlen = (vihl & 0x0F) << 2
    if hlen < MIN_HEADER_LEN:
        raise MalformedPacket("ipv4", "bad-ihl", f"IHL {hlen >> 2} is below 5")
    if total < hlen:
        raise MalformedPacket("ipv4", "bad-length", f"total length {total} < header length {hlen}")
    if total > n:
        raise MalformedPacket("ipv4", "truncated", f"total length {total} but {n} bytes present")
    # A correct header sums to ones'-complement -0 (RFC 791 §3.1 "Header Checksum");
    # the version nibble makes the sum non-zero, so a zero residue is the whole test.
    if verify_checksum and le_residue(data[:hlen]):
        raise MalformedPacket("ipv4", "bad-checksum", f"header checksum 0x{csum:04x} is wrong")
    if hlen > MIN_HEADER_LEN:
        options = data[MIN_HEADER_LEN:hlen]
        check_options(options)
    else:
        options = b""
    src_addr = _cached_address(src)
    if src_addr is None:
        src_addr = address_from_int(src)
    dst_addr = _cached_address(dst)
    if dst_addr is None:
        dst_addr = address_from_int(dst)
    return _make(
        src_addr,
        dst_addr,
        proto,
        data[hlen:total],
        ttl,
        ident,
        tos >> 2,
        tos & 3,
        (frag & FLAG_DF) != 0,
        (frag & FLAG_MF) != 0,
        frag & FRAG_OFFSET_MASK,
        options,
    )


def build_header(packet: Ipv4Packet, payload_len: int) -> bytes:
    """The header alone (with checksum) for a payload of ``payload_len`` octets."""
    options = packet.options
    olen = len(options)
    if olen % 4 or olen > MAX_HEADER_LEN - MIN_HEADER_LEN:
        raise LocalProtocolError(
            f"ipv4: options must be a multiple of 4 octets, at most 40 (got {olen})"
        )
    hlen = MIN_HEADER_LEN + olen
    total = hlen + payload_len
    if total > MAX_TOTAL_LEN:
        raise LocalProtocolError(f"ipv4: packet of {total} octets exceeds 65535")
    frag = packet.frag_offset
    if not 0 <= frag <= FRAG_OFFSET_MASK:
        raise LocalProtocolError(f"ipv4: fragment offset {frag} out of range")
    if not 0 <= packet.dscp <= 63 or not 0 <= packet.ecn <= 3:
        raise LocalProtocolError("ipv4: dscp must be 0..63 and ecn 0..3")
    if packet.dont_fragment:
        frag |= FLAG_DF
    if packet.more_fragments:
        frag |= FLAG_MF
    try:
        header = _HDR.pack(
            0x40 | (hlen >> 2),
            (packet.dscp << 2) | packet.ecn,
            total,
            packet.ident,
            frag,
            packet.ttl,
            packet.proto,
            0,
            address_int(packet.src),
            address_int(packet.dst),
        )
    except (struct.error, TypeError) as exc:
        raise LocalProtocolError(f"ipv4: cannot build {packet!r}: {exc}") from None
    if olen:
        try:
            check_options(options)
        except MalformedPacket as exc:
            raise LocalProtocolError(f"ipv4: bad options: {exc.detail}") from None
        header += options
    csum = finish(ones_sum(header))
    return b"".join((header[:10], csum.to_bytes(2, "big"), header[12:]))


def build(packet: Ipv4Packet) -> bytes:
    return build_header(packet, len(packet.payload)) + packet.payload
