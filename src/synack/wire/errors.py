"""The one error every wire parser may raise."""

from __future__ import annotations

from synack.errors import RemoteProtocolError


class MalformedPacket(RemoteProtocolError):
    """Bytes that are not a valid packet of the expected format.

    ``reason`` is a short stable key (e.g. ``"truncated"``, ``"bad-checksum"``,
    ``"bad-ihl"``, ``"bad-length"``, ``"bad-data-offset"``, ``"bad-option"``,
    ``"unsupported"``) so that counters can key on it; ``layer`` names the
    format (``"ethernet"``, ``"arp"``, ``"ipv4"``, ``"icmp"``, ``"udp"``,
    ``"tcp"``, ``"pcap"``).
    """

    def __init__(self, layer: str, reason: str, detail: str = "") -> None:
        self.layer = layer
        self.reason = reason
        self.detail = detail
        super().__init__(f"{layer}: {reason}" + (f" ({detail})" if detail else ""))
