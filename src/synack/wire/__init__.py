"""Packet formats: parse bytes to small immutable representations and build them back.

No state, no I/O. One module per format: ``ethernet``, ``arp``, ``ipv4``,
``icmp``, ``udp``, ``tcp`` (each ``parse(data) -> repr`` and
``build(repr) -> bytes``, checksums verified on parse and computed on build),
``checksum`` (RFC 1071: the one fold), ``options`` (the option list walk IPv4
and TCP share), ``virtio`` (the virtio-net header of a TAP device with
offloads), ``pcap`` (classic libpcap files), ``decode`` (the one decoder of a
captured frame into its layers, tolerant of damage), and on top of it
``summary`` (tcpdump-style lines) and ``dissect`` (every field of every layer
with its byte range). Each header module names its fields' offsets
(``tcp.CHECKSUM_AT``, ``ipv4.PROTO_AT``, ...) for code that reads or patches
one field in place. Every parser raises only :class:`MalformedPacket` on bad
input, with a stable ``reason`` (listed in ``wire/errors.py``) that the stack's
counters key on; builders raise ``LocalProtocolError`` for values the format
cannot carry.

Layer: wire. Imports synack.errors and the rest of synack.wire.
"""

from __future__ import annotations

from synack.wire.errors import MalformedPacket

__all__ = ["MalformedPacket"]
