"""The one error every wire parser may raise, and its stable reasons.

Reasons (``MalformedPacket.reason``; the stack's drop counters key on them):

==================  ==============================================================
truncated           fewer octets than the header (or a length field) needs
bad-length          a length field below its minimum (IPv4 total length below its
                    own header length, UDP length < 8), or a pcap record
                    over the reader's limit / with a sub-second field >= 1 s
bad-ihl             IPv4 IHL below 5
bad-version         IPv4 version field is not 4
bad-data-offset     TCP data offset below 5 or past the end of the segment
bad-option          an IPv4 or TCP option with an illegal length (below 2, past
                    the header, wrong for its kind: RFC 9293 MUST-7)
bad-checksum        header (IPv4) or pseudo-header (ICMP, UDP, TCP) checksum
                    does not verify
unsupported         well-formed but not handled: IEEE 802.3 length field instead
                    of an EtherType, ARP for other than Ethernet/IPv4, pcap link
                    types other than Ethernet and raw IPv4
bad-magic           a pcap file that does not start with a libpcap magic number
==================  ==============================================================

``layer`` names the format: ``ethernet``, ``arp``, ``ipv4``, ``icmp``,
``udp``, ``tcp`` or ``pcap``.

Layer: wire. Imports synack.errors.
"""

from __future__ import annotations

from typing import ClassVar

from synack.errors import RemoteProtocolError


class MalformedPacket(RemoteProtocolError):
    """Bytes that are not a valid packet of the expected format.

    ``reason`` is a short stable key (see the module docstring) so that counters
    can key on it; ``layer`` names the format; ``detail`` is for people.
    """

    REASONS: ClassVar[frozenset[str]] = frozenset(
        {
            "truncated",
            "bad-length",
            "bad-ihl",
            "bad-version",
            "bad-data-offset",
            "bad-option",
            "bad-checksum",
            "unsupported",
            "bad-magic",
        }
    )

    def __init__(self, layer: str, reason: str, detail: str = "") -> None:
        self.layer = layer
        self.reason = reason
        self.detail = detail
        super().__init__(f"{layer}: {reason}" + (f" ({detail})" if detail else ""))
