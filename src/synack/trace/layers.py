"""A frame, layer by layer, as the HTML page shows it.

The dissection itself is the wire code's (:func:`synack.wire.dissect.dissect`:
every field with its byte range). This module only lays it out for the page:
one block per layer in byte order, the application bytes as a "data" layer
with a printable preview, and a field that is wrong (a bad checksum) saying so.

Layer: trace. Imports synack.wire and synack.trace.model.
"""

from __future__ import annotations

from dataclasses import dataclass

from synack.trace.model import Checksum, LinkType, checksum_status
from synack.wire.dissect import dissect as wire_dissect

PREVIEW = 48  # payload characters shown beside the byte count


@dataclass(frozen=True, slots=True)
class FieldView:
    name: str
    value: str
    start: int  # offset in the frame
    length: int  # bytes it occupies (sub-octet fields: the bytes holding their bits)


@dataclass(frozen=True, slots=True)
class LayerView:
    name: str  # "Ethernet", "IPv4", "TCP", "data", ...
    start: int
    end: int
    fields: tuple[FieldView, ...]


def dissect(frame: bytes, linktype: LinkType = LinkType.ETHERNET) -> list[LayerView]:
    """Every layer of ``frame`` in byte order, then its payload as "data"."""
    d = wire_dissect(frame, int(linktype))
    # A checksum the sender's NIC fills in after the capture point is not wrong:
    # it cannot be checked here (checksum offload), and the dissection says so.
    offloaded = checksum_status(frame, linktype) is Checksum.UNVERIFIED
    layers: list[LayerView] = []
    for layer in d.layers:
        fields = []
        for f in layer.fields:
            value = f.value_text + (f"  ✗ {f.problem}" if f.problem else "")
            if offloaded and f.problem == "bad-checksum":
                value = f.value_text.split(" (")[0] + " (unverified: offloaded to the sender's NIC)"
            fields.append(FieldView(f.name, value, f.byte_offset, f.byte_length))
        error = layer.error
        if offloaded and error is not None and error.reason == "bad-checksum":
            error = None
        name = layer.name + (f" ✗ {error.reason}" if error is not None else "")
        layers.append(
            LayerView(name, layer.byte_offset, layer.byte_offset + layer.byte_length, tuple(fields))
        )
    if d.payload:
        n = len(d.payload)
        text = "".join(chr(c) if 32 <= c < 127 else "." for c in d.payload[:PREVIEW])
        preview = text + ("…" if n > PREVIEW else "")
        start = d.payload_offset
        layers.append(
            LayerView("data", start, start + n, (FieldView(f"{n} bytes", preview, start, n),))
        )
    layers.sort(key=lambda layer: layer.start)
    return layers
