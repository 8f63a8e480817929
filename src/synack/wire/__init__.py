"""Packet formats: parse bytes to small immutable representations and build them back.

No state, no I/O. Every parser raises only :class:`MalformedPacket` on bad
input, with a stable ``reason`` that the stack's counters key on.
"""

from __future__ import annotations

from synack.wire.errors import MalformedPacket

__all__ = ["MalformedPacket"]
