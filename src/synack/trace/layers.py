"""A frame, layer by layer, with the bytes each layer and field occupies.

The HTML page lights up a layer's (or a field's) bytes in the hex dump, so
every layer and field carries its offset and length in the frame. Values come
from the wire parsers' representations; offsets are the fixed header layouts
of RFC 894, 826, 791, 792, 768 and 9293 §3.1.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from synack.trace.model import Decoded, LinkType, checksums_ok, decode, flag_names, options_text
from synack.wire import arp as warp
from synack.wire import ethernet as weth
from synack.wire import icmp as wicmp
from synack.wire import ipv4 as wip


@dataclass(frozen=True, slots=True)
class FieldView:
    name: str
    value: str
    start: int  # offset in the frame
    length: int  # bytes; 0 for a value that lives in bits of a neighbour


@dataclass(frozen=True, slots=True)
class LayerView:
    name: str  # "Ethernet", "IPv4", "TCP", "data", ...
    start: int
    end: int
    fields: tuple[FieldView, ...]


_ETHERTYPES = {weth.ETHERTYPE_IPV4: "IPv4", weth.ETHERTYPE_ARP: "ARP"}
_PROTOS = {wip.PROTO_TCP: "TCP", wip.PROTO_UDP: "UDP", wip.PROTO_ICMP: "ICMP"}


def _u16(frame: bytes, at: int) -> int:
    return int(struct.unpack_from("!H", frame, at)[0]) if at + 2 <= len(frame) else 0


def dissect(frame: bytes, linktype: LinkType = LinkType.ETHERNET) -> list[LayerView]:
    """Every layer of ``frame`` that parses, then whatever bytes remain as "data"."""
    d = decode(frame, linktype)
    layers: list[LayerView] = []
    at = 0
    if d.ethernet is not None:
        e = d.ethernet
        kind = _ETHERTYPES.get(e.ethertype, "")
        layers.append(
            LayerView(
                "Ethernet",
                0,
                14,
                (
                    FieldView("destination", weth.format_mac(e.dst), 0, 6),
                    FieldView("source", weth.format_mac(e.src), 6, 6),
                    FieldView("ethertype", f"0x{e.ethertype:04x} {kind}".strip(), 12, 2),
                ),
            )
        )
        at = 14
    if d.arp is not None:
        layers.append(_arp(d.arp, at))
        at += 28
    elif d.ipv4 is not None:
        at = _ip_and_above(frame, d, at, linktype, layers)
    if at < len(frame):
        rest = len(frame) - at
        name = f"undecoded ({d.error})" if d.error else "payload"
        layers.append(
            LayerView(name, at, len(frame), (FieldView("length", f"{rest} bytes", at, rest),))
        )
    return layers


def _arp(a: warp.ArpPacket, at: int) -> LayerView:
    op = {warp.OP_REQUEST: "request", warp.OP_REPLY: "reply"}.get(a.op, str(a.op))
    return LayerView(
        "ARP",
        at,
        at + 28,
        (
            FieldView("hardware type", "1 (Ethernet)", at, 2),
            FieldView("protocol type", "0x0800 (IPv4)", at + 2, 2),
            FieldView("hardware size", "6", at + 4, 1),
            FieldView("protocol size", "4", at + 5, 1),
            FieldView("opcode", f"{a.op} ({op})", at + 6, 2),
            FieldView("sender MAC", weth.format_mac(a.sender_mac), at + 8, 6),
            FieldView("sender IP", str(a.sender_ip), at + 14, 4),
            FieldView("target MAC", weth.format_mac(a.target_mac), at + 18, 6),
            FieldView("target IP", str(a.target_ip), at + 24, 4),
        ),
    )


def _ip_and_above(
    frame: bytes, d: Decoded, at: int, linktype: LinkType, layers: list[LayerView]
) -> int:
    ip = d.ipv4
    assert ip is not None
    ihl = 20 + len(ip.options)
    good = checksums_ok(frame, linktype)
    flags = [name for on, name in ((ip.dont_fragment, "DF"), (ip.more_fragments, "MF")) if on]
    fields = [
        FieldView("version", "4", at, 0),
        FieldView("header length", f"{ihl} bytes (IHL {ihl // 4})", at, 1),
        FieldView("DSCP / ECN", f"{ip.dscp} / {ip.ecn}", at + 1, 1),
        FieldView("total length", str(_u16(frame, at + 2)), at + 2, 2),
        FieldView("identification", f"0x{ip.ident:04x}", at + 4, 2),
        FieldView(
            "flags / fragment offset",
            f"{','.join(flags) or 'none'} / {ip.frag_offset}",
            at + 6,
            2,
        ),
        FieldView("TTL", str(ip.ttl), at + 8, 1),
        FieldView("protocol", f"{ip.proto} {_PROTOS.get(ip.proto, '')}".strip(), at + 9, 1),
        FieldView("header checksum", f"0x{_u16(frame, at + 10):04x}", at + 10, 2),
        FieldView("source", str(ip.src), at + 12, 4),
        FieldView("destination", str(ip.dst), at + 16, 4),
    ]
    if ip.options:
        fields.append(FieldView("options", ip.options.hex(), at + 20, len(ip.options)))
    layers.append(LayerView("IPv4", at, at + ihl, tuple(fields)))
    at += ihl
    total_end = at + len(ip.payload)
    if d.tcp is not None:
        seg = d.tcp
        hlen = len(ip.payload) - len(seg.payload)
        tcp_fields = [
            FieldView("source port", str(seg.src_port), at, 2),
            FieldView("destination port", str(seg.dst_port), at + 2, 2),
            FieldView("sequence number", str(seg.seq), at + 4, 4),
            FieldView("acknowledgment number", str(seg.ack), at + 8, 4),
            FieldView("data offset", f"{hlen} bytes ({hlen // 4} words)", at + 12, 1),
            FieldView("flags", f"0x{int(seg.flags):02x} {flag_names(seg.flags)}", at + 13, 1),
            FieldView("window", str(seg.window), at + 14, 2),
            FieldView(
                "checksum",
                f"0x{_u16(frame, at + 16):04x}" + ("" if good else " (not verified: offloaded?)"),
                at + 16,
                2,
            ),
            FieldView("urgent pointer", str(seg.urgent), at + 18, 2),
        ]
        if hlen > 20:
            tcp_fields.append(
                FieldView("options", options_text(seg.options) or "padding", at + 20, hlen - 20)
            )
        layers.append(LayerView("TCP", at, at + hlen, tuple(tcp_fields)))
        at += hlen
    elif d.udp is not None:
        u = d.udp
        layers.append(
            LayerView(
                "UDP",
                at,
                at + 8,
                (
                    FieldView("source port", str(u.src_port), at, 2),
                    FieldView("destination port", str(u.dst_port), at + 2, 2),
                    FieldView("length", str(_u16(frame, at + 4)), at + 4, 2),
                    FieldView("checksum", f"0x{_u16(frame, at + 6):04x}", at + 6, 2),
                ),
            )
        )
        at += 8
    elif d.icmp is not None:
        m = d.icmp
        rest = (
            f"id {m.ident} seq {m.sequence}"
            if m.type in (wicmp.TYPE_ECHO_REQUEST, wicmp.TYPE_ECHO_REPLY)
            else f"0x{m.rest:08x}"
        )
        layers.append(
            LayerView(
                "ICMP",
                at,
                at + 8,
                (
                    FieldView("type", str(m.type), at, 1),
                    FieldView("code", str(m.code), at + 1, 1),
                    FieldView("checksum", f"0x{_u16(frame, at + 2):04x}", at + 2, 2),
                    FieldView("rest of header", rest, at + 4, 4),
                ),
            )
        )
        at += 8
    if at < total_end:
        n = total_end - at
        text = frame[at:total_end][:48]
        preview = "".join(chr(c) if 32 <= c < 127 else "." for c in text)
        layers.append(
            LayerView(
                "data",
                at,
                total_end,
                (FieldView(f"{n} bytes", preview + ("…" if n > 48 else ""), at, n),),
            )
        )
        at = total_end
    if at < len(frame):
        layers.append(
            LayerView(
                "padding",
                at,
                len(frame),
                (FieldView("length", f"{len(frame) - at} bytes", at, len(frame) - at),),
            )
        )
        at = len(frame)
    return at
