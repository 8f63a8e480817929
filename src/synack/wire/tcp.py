"""TCP header and options (RFC 9293 §3.1, RFC 7323, RFC 2018).

CONTRACT (shared by wire/, tcp/, stack/ and trace/): the representation
classes below. ``parse``/``build`` are implemented by the wire work.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address


class TcpFlags(enum.IntFlag):
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


@dataclass(frozen=True, slots=True)
class TcpOptions:
    """The options synack understands; unknown ones are kept as (kind, data).

    Built in a canonical order (MSS, SACK-permitted, timestamps, window scale,
    SACK blocks, unknown) padded with NOPs/EOL to a multiple of 4 bytes.
    """

    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()  # (left edge, right edge)
    timestamps: tuple[int, int] | None = None  # (TSval, TSecr)
    unknown: tuple[tuple[int, bytes], ...] = ()  # (kind, data without kind/len)


NO_OPTIONS = TcpOptions()


@dataclass(frozen=True, slots=True)
class TcpSegment:
    """One TCP segment's meaning. ``window`` is the raw 16-bit header field
    (unscaled); scaling is the connection's business (RFC 7323 §2.3)."""

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: TcpFlags
    window: int
    payload: bytes = b""
    options: TcpOptions = field(default=NO_OPTIONS)
    urgent: int = 0

    @property
    def seg_len(self) -> int:
        """SEG.LEN: payload octets plus one for SYN and one for FIN (RFC 9293 §3.4)."""
        n = len(self.payload)
        if self.flags & TcpFlags.SYN:
            n += 1
        if self.flags & TcpFlags.FIN:
            n += 1
        return n


def parse(data: bytes | memoryview, src: IPv4Address, dst: IPv4Address, *, verify_checksum: bool = True) -> TcpSegment:
    """Parse one TCP segment (header + payload) carried between ``src`` and ``dst``."""
    raise NotImplementedError  # filled in by the wire work


def build(segment: TcpSegment, src: IPv4Address, dst: IPv4Address) -> bytes:
    """Serialise ``segment`` with a correct pseudo-header checksum."""
    raise NotImplementedError  # filled in by the wire work
