"""Packet formats: parse bytes to small immutable representations and build them back.

No state, no I/O. One module per format: ``ethernet``, ``arp``, ``ipv4``,
``icmp``, ``udp``, ``tcp`` (each ``parse(data) -> repr`` and
``build(repr) -> bytes``, checksums verified on parse and computed on build),
``checksum`` (RFC 1071), ``pcap`` (classic libpcap files), ``summary``
(tcpdump-style lines) and ``dissect`` (every field of every layer with its byte
range). Every parser raises only :class:`MalformedPacket` on bad input, with a
stable ``reason`` (listed in ``wire/errors.py``) that the stack's counters key
on; builders raise ``LocalProtocolError`` for values the format cannot carry.

Layer: wire. Imports synack.errors and the rest of synack.wire.
"""

from __future__ import annotations

from synack.wire.errors import MalformedPacket

__all__ = ["MalformedPacket"]
