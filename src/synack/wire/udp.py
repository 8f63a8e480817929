"""UDP (RFC 768). CONTRACT: representation below; parse/build by the wire work."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    src_port: int
    dst_port: int
    payload: bytes


def parse(data: bytes | memoryview, src: IPv4Address, dst: IPv4Address, *, verify_checksum: bool = True) -> UdpDatagram:
    """A zero checksum means "none" (RFC 768) and is accepted."""
    raise NotImplementedError


def build(datagram: UdpDatagram, src: IPv4Address, dst: IPv4Address, *, checksum: bool = True) -> bytes:
    """A computed checksum of 0 is sent as 0xFFFF (RFC 768)."""
    raise NotImplementedError
