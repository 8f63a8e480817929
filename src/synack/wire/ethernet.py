"""Ethernet II frames (RFC 894). CONTRACT: representation below; parse/build by the wire work."""

from __future__ import annotations

from dataclasses import dataclass

BROADCAST = b"\xff" * 6
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806


def format_mac(mac: bytes) -> str:
    """``b"\\x02\\x00..."`` -> ``"02:00:..."``."""
    raise NotImplementedError


def parse_mac(text: str) -> bytes:
    """``"02:00:5e:10:00:01"`` -> 6 bytes; ValueError on bad input."""
    raise NotImplementedError


@dataclass(frozen=True, slots=True)
class EthernetFrame:
    dst: bytes  # 6 bytes
    src: bytes  # 6 bytes
    ethertype: int
    payload: bytes


def parse(data: bytes | memoryview) -> EthernetFrame:
    raise NotImplementedError


def build(frame: EthernetFrame) -> bytes:
    """Header + payload (no FCS, no padding to 60: TAP and pcap carry neither)."""
    raise NotImplementedError
