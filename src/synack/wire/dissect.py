"""Layer-by-layer dissection of a whole frame, every field with its byte range.

``dissect(frame)`` returns the layers outermost first ([Ethernet][IPv4][TCP]),
each a list of :class:`Field` carrying ``byte_offset``/``byte_length`` within the
frame, so a hex dump can light up a layer or a field; sub-octet fields (IHL,
flags, data offset) also carry a ``bit_mask`` over their bytes. The bytes after
the last header are the ``payload``.

It never raises for bad bytes: a layer that does not parse is still shown with
every field that is present, its ``error`` set (the same
:class:`MalformedPacket` the parser raises), and the layers outside it intact.
A bad checksum does not stop the dissection (the field says what it should be);
any other error stops it at that layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

from synack.wire import arp, ethernet, icmp, ipv4, tcp, udp
from synack.wire.checksum import finish, internet_checksum, ones_sum, pseudo_header_sum
from synack.wire.errors import MalformedPacket
from synack.wire.pcap import LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_RAW
from synack.wire.summary import (
    ETHERTYPE_NAMES,
    ICMP_TYPE_NAMES,
    IP_PROTO_NAMES,
    UNREACHABLE_CODES,
    summarize,
    tcp_flags_text,
)


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    value_text: str
    byte_offset: int  # within the whole frame
    byte_length: int
    bit_mask: int = (
        0  # for sub-octet fields: the bits they use within their bytes (big-endian); 0 = all
    )
    problem: str = ""  # a reason key when this field is what is wrong (e.g. "bad-checksum")


@dataclass(frozen=True, slots=True)
class Layer:
    name: (
        str  # "Ethernet", "ARP", "IPv4", "ICMP", "UDP", "TCP", "IPv4 (quoted)", "Ethernet padding"
    )
    fields: tuple[Field, ...]
    byte_offset: int  # where the layer's header starts in the frame
    byte_length: int  # header octets present (the payload is not included)
    error: MalformedPacket | None = None


@dataclass(frozen=True, slots=True)
class Dissection:
    frame: bytes
    linktype: int
    layers: tuple[Layer, ...]
    payload_offset: int
    payload: bytes  # the application bytes (or whatever no layer claimed)
    error: MalformedPacket | None  # the first problem found, if any
    summary: str  # the tcpdump-style line

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def layer(self, name: str) -> Layer | None:
        return next((layer for layer in self.layers if layer.name == name), None)


class _Builder:
    """Collects the fields of one layer whose header starts at ``start`` and may not pass ``end``."""

    def __init__(self, frame: bytes, name: str, start: int, end: int) -> None:
        self.frame = frame
        self.name = name
        self.start = start
        self.end = end
        self.fields: list[Field] = []
        self.error: MalformedPacket | None = None
        self.length = 0

    def have(self, rel: int, n: int) -> bool:
        return self.start + rel + n <= self.end

    def u(self, rel: int, n: int) -> int:
        a = self.start + rel
        return int.from_bytes(self.frame[a : a + n], "big")

    def raw(self, rel: int, n: int) -> bytes:
        a = self.start + rel
        return self.frame[a : a + n]

    def add(self, name: str, rel: int, n: int, text: str, mask: int = 0, problem: str = "") -> None:
        self.fields.append(Field(name, text, self.start + rel, n, mask, problem))
        self.length = max(self.length, rel + n)

    def layer(self) -> Layer:
        return Layer(self.name, tuple(self.fields), self.start, self.length, self.error)


def _mac_text(mac: bytes) -> str:
    text = ethernet.format_mac(mac)
    if mac == ethernet.BROADCAST:
        return text + " (broadcast)"
    if mac[0] & 1:
        return text + " (multicast)"
    return text


def _checksum_text(stored: int, expected: int | None) -> tuple[str, str]:
    if expected is None:
        return f"0x{stored:04x}", ""
    if stored == expected:
        return f"0x{stored:04x} (correct)", ""
    return f"0x{stored:04x} (bad, should be 0x{expected:04x})", "bad-checksum"


def _checksum_field(
    b: _Builder, proto: str, name: str, rel: int, expected: int | None, report: bool = True
) -> None:
    """Add the 16-bit checksum field at ``rel``; a mismatch becomes the layer's error if ``report``."""
    stored = b.u(rel, 2)
    text, problem = _checksum_text(stored, expected)
    b.add(name, rel, 2, text, problem=problem)
    if problem and report:
        b.error = MalformedPacket(
            proto, "bad-checksum", f"{name.lower()} 0x{stored:04x} should be 0x{expected:04x}"
        )


# --- link layer -------------------------------------------------------------------


def _ethernet(frame: bytes, b: _Builder) -> int | None:
    if b.have(0, 6):
        b.add("Destination", 0, 6, _mac_text(frame[0:6]))
    if b.have(6, 6):
        b.add("Source", 6, 6, _mac_text(frame[6:12]))
    if b.have(12, 2):
        et = b.u(12, 2)
        b.add("EtherType", 12, 2, f"0x{et:04x} ({ETHERTYPE_NAMES.get(et, 'unknown')})")
    try:
        return ethernet.parse(frame).ethertype
    except MalformedPacket as exc:
        b.error = exc
        return None


_Fmt = Callable[[int], str]


def _arp(b: _Builder) -> None:
    specs: list[tuple[str, int, int, _Fmt]] = [
        ("Hardware type", 0, 2, lambda v: f"{v} ({'Ethernet' if v == 1 else 'other'})"),
        ("Protocol type", 2, 2, lambda v: f"0x{v:04x} ({ETHERTYPE_NAMES.get(v, 'other')})"),
        ("Hardware size", 4, 1, str),
        ("Protocol size", 5, 1, str),
        ("Opcode", 6, 2, lambda v: f"{v} ({ {1: 'request', 2: 'reply'}.get(v, 'other') })"),
    ]
    for name, rel, n, fmt in specs:
        if b.have(rel, n):
            b.add(name, rel, n, fmt(b.u(rel, n)))
    for name, rel, n in (
        ("Sender MAC", 8, 6),
        ("Sender IP", 14, 4),
        ("Target MAC", 18, 6),
        ("Target IP", 24, 4),
    ):
        if b.have(rel, n):
            b.add(
                name,
                rel,
                n,
                ethernet.format_mac(b.raw(rel, n)) if n == 6 else str(IPv4Address(b.raw(rel, n))),
            )
    try:
        arp.parse(b.frame[b.start : b.end])
    except MalformedPacket as exc:
        b.error = exc


# --- IPv4 -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _IpInfo:
    src: IPv4Address
    dst: IPv4Address
    proto: int
    payload_start: int
    payload_end: int
    more_fragments: bool
    frag_offset: int


def _ipv4(b: _Builder, *, quoted: bool = False) -> _IpInfo | None:
    """Fields of an IPv4 header; ``quoted`` for the header inside an ICMP error (cut short by design)."""
    if not b.have(0, 1):
        b.error = MalformedPacket("ipv4", "truncated", "no header")
        return None
    vihl = b.u(0, 1)
    hlen = (vihl & 0x0F) * 4
    b.add("Version", 0, 1, str(vihl >> 4), 0xF0)
    b.add("IHL", 0, 1, f"{vihl & 0x0F} ({hlen} bytes)", 0x0F)
    if b.have(1, 1):
        tos = b.u(1, 1)
        b.add("DSCP", 1, 1, str(tos >> 2), 0xFC)
        b.add(
            "ECN",
            1,
            1,
            {0: "0 (not ECT)", 1: "1 (ECT(1))", 2: "2 (ECT(0))", 3: "3 (CE)"}[tos & 3],
            0x03,
        )
    if b.have(2, 2):
        b.add("Total length", 2, 2, str(b.u(2, 2)))
    if b.have(4, 2):
        ident = b.u(4, 2)
        b.add("Identification", 4, 2, f"0x{ident:04x} ({ident})")
    if b.have(6, 2):
        frag = b.u(6, 2)
        names = [
            n for bit, n in ((0x8000, "reserved"), (0x4000, "DF"), (0x2000, "MF")) if frag & bit
        ]
        b.add("Flags", 6, 1, f"0x{frag >> 13:x} ({', '.join(names) or 'none'})", 0xE0)
        off = frag & 0x1FFF
        b.add("Fragment offset", 6, 2, f"{off} ({off * 8} bytes)", 0x1FFF)
    if b.have(8, 1):
        b.add("TTL", 8, 1, str(b.u(8, 1)))
    if b.have(9, 1):
        proto = b.u(9, 1)
        b.add("Protocol", 9, 1, f"{proto} ({IP_PROTO_NAMES.get(proto, 'unknown')})")
    structural: MalformedPacket | None = None
    view = b.frame[b.start : b.end]
    if quoted and len(view) >= 4 and hlen >= 20:
        # The quote keeps the original total length; let the header parse on its own.
        view = (
            view[:2]
            + min(len(view), max(hlen, int.from_bytes(view[2:4], "big"))).to_bytes(2, "big")
            + view[4:]
        )
    try:
        packet = ipv4.parse(view, verify_checksum=False)
    except MalformedPacket as exc:
        structural = exc
        packet = None
    header_ok = (
        structural is None
        or structural.reason in ("bad-option",)
        or (hlen >= 20 and b.have(0, hlen))
    )
    if b.have(10, 2):
        expected = None
        if hlen >= 20 and b.have(0, hlen) and header_ok:
            hdr = bytearray(b.raw(0, hlen))
            hdr[10:12] = b"\x00\x00"
            expected = internet_checksum(hdr)
        report = structural is None and not quoted
        _checksum_field(b, "ipv4", "Header checksum", 10, expected, report)
    if b.have(12, 4):
        b.add("Source", 12, 4, str(IPv4Address(b.raw(12, 4))))
    if b.have(16, 4):
        b.add("Destination", 16, 4, str(IPv4Address(b.raw(16, 4))))
    if hlen > 20 and b.have(20, min(hlen, b.end - b.start) - 20):
        olen = min(hlen, b.end - b.start) - 20
        if olen > 0:
            b.add("Options", 20, olen, b.raw(20, olen).hex(" "))
    if structural is not None:
        b.error = structural
        return None
    assert packet is not None
    payload_start = b.start + hlen
    payload_end = b.start + (len(view) if quoted else b.u(2, 2))
    return _IpInfo(
        packet.src,
        packet.dst,
        packet.proto,
        payload_start,
        payload_end,
        packet.more_fragments,
        packet.frag_offset,
    )


# --- transports -------------------------------------------------------------------


def _pseudo_checksum(
    src: IPv4Address, dst: IPv4Address, proto: int, segment: bytes, csum_at: int
) -> int:
    data = bytearray(segment)
    data[csum_at : csum_at + 2] = b"\x00\x00"
    return finish(pseudo_header_sum(int(src), int(dst), proto, len(data)) + ones_sum(data))


def _tcp(b: _Builder, ip: _IpInfo, verify: bool) -> int | None:
    """Returns where the payload starts, or None when the header is unusable."""
    specs: list[tuple[str, int, int, _Fmt]] = [
        ("Source port", 0, 2, str),
        ("Destination port", 2, 2, str),
        ("Sequence number", 4, 4, str),
        ("Acknowledgment number", 8, 4, str),
    ]
    for name, rel, n, fmt in specs:
        if b.have(rel, n):
            b.add(name, rel, n, fmt(b.u(rel, n)))
    if b.have(12, 1):
        doff = b.u(12, 1) >> 4
        b.add("Data offset", 12, 1, f"{doff} ({doff * 4} bytes)", 0xF0)
        b.add("Reserved", 12, 1, str(b.u(12, 1) & 0x0F), 0x0F)
    if b.have(13, 1):
        fl = b.u(13, 1)
        names = [f.name for f in tcp.TcpFlags if fl & f]
        b.add(
            "Flags",
            13,
            1,
            f"0x{fl:02x} [{tcp_flags_text(fl)}] ({', '.join(n or '' for n in names) or 'none'})",
        )
    if b.have(14, 2):
        b.add("Window", 14, 2, str(b.u(14, 2)))
    seg_bytes = b.frame[b.start : b.end]
    structural: MalformedPacket | None = None
    try:
        tcp.parse(seg_bytes, ip.src, ip.dst, verify_checksum=False)
    except MalformedPacket as exc:
        structural = exc
    if b.have(16, 2):
        expected = (
            _pseudo_checksum(ip.src, ip.dst, ipv4.PROTO_TCP, seg_bytes, 16) if verify else None
        )
        _checksum_field(b, "tcp", "Checksum", 16, expected, structural is None)
    if b.have(18, 2):
        b.add("Urgent pointer", 18, 2, str(b.u(18, 2)))
    if b.have(12, 1):
        hlen = (b.u(12, 1) >> 4) * 4
        _tcp_options(b, 20, min(hlen, b.end - b.start))
    if structural is not None:
        b.error = structural
        return None
    return b.start + (b.u(12, 1) >> 4) * 4


_TCP_OPTION_NAMES = {
    tcp.OPT_MSS: "MSS",
    tcp.OPT_WSCALE: "Window scale",
    tcp.OPT_SACK_PERMITTED: "SACK permitted",
    tcp.OPT_SACK: "SACK",
    tcp.OPT_TIMESTAMPS: "Timestamps",
}


def _tcp_options(b: _Builder, rel: int, end: int) -> None:
    """One field per option, tolerant: stops at the first option that does not fit."""
    i = rel
    while i < end:
        kind = b.u(i, 1)
        if kind == tcp.OPT_EOL:
            b.add("End of options", i, 1, "EOL")
            if end - i - 1 > 0:
                b.add("Padding", i + 1, end - i - 1, f"{end - i - 1} octets")
            return
        if kind == tcp.OPT_NOP:
            b.add("No-operation", i, 1, "NOP")
            i += 1
            continue
        if i + 1 >= end:
            b.add(f"Option {kind}", i, 1, "no length octet", problem="bad-option")
            return
        length = b.u(i + 1, 1)
        if length < 2 or i + length > end:
            b.add(
                f"Option {kind}", i, end - i, f"length {length} does not fit", problem="bad-option"
            )
            return
        data = b.raw(i + 2, length - 2)
        name = _TCP_OPTION_NAMES.get(kind, f"Option {kind}")
        if kind == tcp.OPT_MSS and length == 4:
            text = f"{int.from_bytes(data, 'big')} bytes"
        elif kind == tcp.OPT_WSCALE and length == 3:
            text = f"{data[0]} (multiply by {1 << min(data[0], 14)})"
        elif kind == tcp.OPT_SACK_PERMITTED and length == 2:
            text = "yes"
        elif kind == tcp.OPT_TIMESTAMPS and length == 10:
            text = (
                f"TSval {int.from_bytes(data[:4], 'big')}, TSecr {int.from_bytes(data[4:], 'big')}"
            )
        elif kind == tcp.OPT_SACK and length > 2 and (length - 2) % 8 == 0:
            edges = [int.from_bytes(data[j : j + 4], "big") for j in range(0, len(data), 4)]
            text = ", ".join(f"{edges[j]}-{edges[j + 1]}" for j in range(0, len(edges), 2))
        else:
            text = f"length {length}" + (f", 0x{data.hex()}" if data else "")
            if kind in _TCP_OPTION_NAMES:
                b.add(name, i, length, text, problem="bad-option")
                i += length
                continue
        b.add(name, i, length, text)
        i += length


def _udp(b: _Builder, ip: _IpInfo, verify: bool) -> int | None:
    for name, rel in (("Source port", 0), ("Destination port", 2), ("Length", 4)):
        if b.have(rel, 2):
            b.add(name, rel, 2, str(b.u(rel, 2)))
    seg_bytes = b.frame[b.start : b.end]
    structural: MalformedPacket | None = None
    try:
        udp.parse(seg_bytes, ip.src, ip.dst, verify_checksum=False)
    except MalformedPacket as exc:
        structural = exc
    if b.have(6, 2):
        stored = b.u(6, 2)
        if stored == 0:
            b.add("Checksum", 6, 2, "0x0000 (none)")
        else:
            expected = None
            if verify and structural is None:
                expected = (
                    _pseudo_checksum(ip.src, ip.dst, ipv4.PROTO_UDP, seg_bytes[: b.u(4, 2)], 6)
                    or 0xFFFF
                )
            _checksum_field(b, "udp", "Checksum", 6, expected)
    if structural is not None:
        b.error = structural
        return None
    return b.start + 8


def _icmp(b: _Builder) -> tuple[int, int] | None:
    """Returns (payload start, type) or None."""
    if b.have(0, 1):
        t = b.u(0, 1)
        b.add("Type", 0, 1, f"{t} ({ICMP_TYPE_NAMES.get(t, 'unknown')})")
    if b.have(1, 1):
        code = b.u(1, 1)
        text = str(code)
        if b.u(0, 1) == icmp.TYPE_DEST_UNREACHABLE:
            text += f" ({UNREACHABLE_CODES.get(code, 'unknown')})"
        b.add("Code", 1, 1, text)
    data = b.frame[b.start : b.end]
    structural: MalformedPacket | None = None
    try:
        msg = icmp.parse(data, verify_checksum=False)
    except MalformedPacket as exc:
        structural = exc
    if b.have(2, 2):
        expected = None
        if structural is None:
            buf = bytearray(data)
            buf[2:4] = b"\x00\x00"
            expected = internet_checksum(buf)
        _checksum_field(b, "icmp", "Checksum", 2, expected)
    if structural is not None:
        b.error = structural
        return None
    if msg.type in (icmp.TYPE_ECHO_REQUEST, icmp.TYPE_ECHO_REPLY):
        b.add("Identifier", 4, 2, str(msg.ident))
        b.add("Sequence number", 6, 2, str(msg.sequence))
    elif msg.type == icmp.TYPE_DEST_UNREACHABLE and msg.code == icmp.CODE_FRAG_NEEDED:
        b.add("Unused", 4, 2, str(msg.ident))
        b.add("Next-hop MTU", 6, 2, str(msg.sequence))
    elif msg.is_error:
        b.add("Unused", 4, 4, f"0x{msg.rest:08x}")
    else:
        b.add("Rest of header", 4, 4, f"0x{msg.rest:08x}")
    return b.start + 8, msg.type


# --- the whole frame ----------------------------------------------------------------


class _Collector:
    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.error: MalformedPacket | None = None

    def push(self, b: _Builder) -> None:
        self.layers.append(b.layer())
        if b.error is not None and self.error is None:
            self.error = b.error

    def padding(self, data: bytes, at: int) -> None:
        """Octets after the network packet (Ethernet pads frames to 60 octets)."""
        n = len(data) - at
        if n > 0:
            self.layers.append(
                Layer("Ethernet padding", (Field("Padding", f"{n} octets", at, n),), at, n)
            )


def dissect(frame: bytes | bytearray | memoryview, linktype: int = LINKTYPE_ETHERNET) -> Dissection:
    """Every layer of ``frame`` with every field and its byte range. Never raises for bad bytes."""
    data = bytes(frame)
    out = _Collector()
    end = len(data)
    payload_at = end
    payload_stop = end
    ip_at: int | None = None
    if linktype == LINKTYPE_ETHERNET:
        b = _Builder(data, "Ethernet", 0, end)
        ethertype = _ethernet(data, b)
        out.push(b)
        payload_at = min(14, end)
        if ethertype == ethernet.ETHERTYPE_IPV4:
            ip_at = 14
        elif ethertype == ethernet.ETHERTYPE_ARP:
            b = _Builder(data, "ARP", 14, end)
            _arp(b)
            out.push(b)
            if b.error is None:
                payload_at = payload_stop = 14 + arp.PACKET_LEN
                out.padding(data, payload_at)
    elif linktype in (LINKTYPE_RAW, LINKTYPE_IPV4):
        ip_at = payload_at = 0
    else:
        out.error = MalformedPacket("pcap", "unsupported", f"link type {linktype}")
    if ip_at is not None:
        payload_at, payload_stop = _dissect_ip(data, ip_at, out)
    return Dissection(
        data,
        linktype,
        tuple(out.layers),
        payload_at,
        data[payload_at:payload_stop],
        out.error,
        summarize(data, linktype),
    )


def _dissect_ip(data: bytes, at: int, out: _Collector) -> tuple[int, int]:
    """Dissect IPv4 and what it carries; returns the payload's (start, stop)."""
    end = len(data)
    b = _Builder(data, "IPv4", at, end)
    ip = _ipv4(b)
    out.push(b)
    if ip is None:
        return at + b.length, end
    stop = ip.payload_end
    start = ip.payload_start
    if ip.frag_offset == 0:
        # A first fragment's transport checksum covers the whole datagram: not checkable here.
        verify = not ip.more_fragments
        name = {ipv4.PROTO_TCP: "TCP", ipv4.PROTO_UDP: "UDP", ipv4.PROTO_ICMP: "ICMP"}.get(ip.proto)
        b = _Builder(data, name or "", ip.payload_start, ip.payload_end)
        if ip.proto == ipv4.PROTO_TCP:
            got = _tcp(b, ip, verify)
            out.push(b)
            start = got if got is not None else ip.payload_start + b.length
        elif ip.proto == ipv4.PROTO_UDP:
            got = _udp(b, ip, verify)
            out.push(b)
            if got is not None:
                start = got
                stop = min(stop, ip.payload_start + b.u(4, 2))
            else:
                start = ip.payload_start + b.length
        elif ip.proto == ipv4.PROTO_ICMP:
            icmp_got = _icmp(b)
            out.push(b)
            if icmp_got is None:
                start = ip.payload_start + b.length
            else:
                start, itype = icmp_got
                if itype in (icmp.TYPE_DEST_UNREACHABLE, icmp.TYPE_TIME_EXCEEDED, 4, 5, 12):
                    start = _quoted(data, start, ip.payload_end, out)
    out.padding(data, ip.payload_end)
    return start, max(start, stop)


def _quoted(data: bytes, at: int, end: int, out: _Collector) -> int:
    """The IP header + first 8 octets an ICMP error quotes (RFC 792); errors here are not the frame's."""
    b = _Builder(data, "IPv4 (quoted)", at, end)
    ip = _ipv4(b, quoted=True)
    # A damaged quote is the quoting host's business, not an error of this frame.
    out.layers.append(b.layer())
    if ip is None:
        return at + b.length
    name = {6: "TCP (quoted)", 17: "UDP (quoted)"}.get(ip.proto)
    if name is None:
        return ip.payload_start
    q = _Builder(data, name, ip.payload_start, end)
    for fname, rel, n in (("Source port", 0, 2), ("Destination port", 2, 2)):
        if q.have(rel, n):
            q.add(fname, rel, n, str(q.u(rel, n)))
    if ip.proto == 6 and q.have(4, 4):
        q.add("Sequence number", 4, 4, str(q.u(4, 4)))
    elif ip.proto == 17:
        for fname, rel in (("Length", 4), ("Checksum", 6)):
            if q.have(rel, 2):
                q.add(
                    fname, rel, 2, str(q.u(rel, 2)) if fname == "Length" else f"0x{q.u(rel, 2):04x}"
                )
    out.layers.append(q.layer())
    return ip.payload_start + q.length
