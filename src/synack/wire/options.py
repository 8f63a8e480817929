"""Option lists in the type-length-value form IPv4 and TCP share.

RFC 791 §3.1 and RFC 9293 §3.1 lay options out alike: kind 0 (End of Option
List) and kind 1 (No-Operation) are one octet; every other option is a kind
octet, a length octet counting both, and data. :func:`walk` is the one walk
over such a list; each format gives the options it finds their meaning.

Layer: wire. Imports synack.wire.errors.
"""

from __future__ import annotations

from collections.abc import Iterator

from synack.wire.errors import MalformedPacket

OPT_EOL = 0
OPT_NOP = 1


def walk(options: bytes | memoryview, layer: str) -> Iterator[tuple[int, int, int]]:
    """``(kind, offset, length)`` of each option that has a length octet, up to End of List.

    An option whose length is illegal (below 2, or running past the list)
    raises :class:`MalformedPacket` ``(layer, "bad-option")``: RFC 9293
    MUST-7, and RFC 791's options are measured the same way.
    """
    i = 0
    n = len(options)
    while i < n:
        kind = options[i]
        if kind == OPT_EOL:
            return
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise MalformedPacket(layer, "bad-option", f"option {kind} at {i} has no length octet")
        length = options[i + 1]
        if length < 2 or i + length > n:
            raise MalformedPacket(layer, "bad-option", f"option {kind} at {i} has length {length}")
        yield kind, i, length
        i += length
