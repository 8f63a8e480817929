"""Ethernet II frames (RFC 894): destination, source, EtherType, payload.

No FCS and no padding to the 60-octet minimum: a TAP device and a pcap file
carry neither, and IPv4 trims padding by its total length.

Layer: wire. Imports synack.errors and the rest of synack.wire.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from synack.errors import LocalProtocolError
from synack.wire._fast import slot_maker
from synack.wire.errors import MalformedPacket

BROADCAST = b"\xff" * 6
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
HEADER_LEN = 14
# Header layout: octet offsets of the fields (IEEE 802.3 clause 3, Ethernet II).
DST_AT = 0
SRC_AT = 6
ETHERTYPE_AT = 12
# Values below 0x0600 are IEEE 802.3 length fields, not EtherTypes (RFC 894 vs 802.3).
MIN_ETHERTYPE = 0x0600

_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}$")


def format_mac(mac: bytes) -> str:
    """``b"\\x02\\x00..."`` -> ``"02:00:..."``."""
    return mac.hex(":")


def parse_mac(text: str) -> bytes:
    """``"02:00:5e:10:00:01"`` (or with ``-``) -> 6 bytes; ValueError on bad input."""
    if not isinstance(text, str) or not _MAC_RE.match(text):
        raise ValueError(f"not a MAC address (want six hex pairs like 02:00:5e:10:00:01): {text!r}")
    return bytes.fromhex(text.replace(text[2], ""))


def is_broadcast(mac: bytes) -> bool:
    return mac == BROADCAST


def is_multicast(mac: bytes) -> bool:
    """The group bit (least significant bit of the first octet); broadcast is a group address."""
    return bool(mac[0] & 1)


@dataclass(frozen=True, slots=True)
class EthernetFrame:
    dst: bytes  # 6 bytes
    src: bytes  # 6 bytes
    ethertype: int
    payload: bytes


_HDR = struct.Struct("!6s6sH")
_make = slot_maker(EthernetFrame)


def parse(data: bytes | memoryview) -> EthernetFrame:
    if type(data) is not bytes:
        data = bytes(data)
    n = len(data)
    if n < HEADER_LEN:
        raise MalformedPacket("ethernet", "truncated", f"{n} bytes, header needs {HEADER_LEN}")
    dst, src, ethertype = _HDR.unpack_from(data)
    if ethertype < MIN_ETHERTYPE:
        raise MalformedPacket(
            "ethernet",
            "unsupported",
            f"0x{ethertype:04x} is an IEEE 802.3 length, not an EtherType",
        )
    return _make(dst, src, ethertype, data[HEADER_LEN:])


def build(frame: EthernetFrame) -> bytes:
    """Header + payload (no FCS, no padding to 60: TAP and pcap carry neither)."""
    if len(frame.dst) != 6 or len(frame.src) != 6:
        raise LocalProtocolError("ethernet: MAC addresses must be 6 bytes")
    et = frame.ethertype
    if not MIN_ETHERTYPE <= et <= 0xFFFF:
        raise LocalProtocolError(f"ethernet: EtherType out of range: {et!r}")
    return b"".join((frame.dst, frame.src, et.to_bytes(2, "big"), frame.payload))
