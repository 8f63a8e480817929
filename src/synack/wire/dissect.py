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

Layer: wire. Imports synack.errors and the rest of synack.wire.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

from synack.wire import arp, ethernet, icmp, ipv4, tcp, udp
from synack.wire.checksum import finish, internet_checksum, ones_sum, pseudo_header_sum
from synack.wire.decode import Decoded, decode, parse_quoted_ipv4
from synack.wire.errors import MalformedPacket
from synack.wire.pcap import LINKTYPE_ETHERNET
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


def _ethernet(b: _Builder, d: Decoded) -> None:
    for name, rel in (("Destination", ethernet.DST_AT), ("Source", ethernet.SRC_AT)):
        if b.have(rel, 6):
            b.add(name, rel, 6, _mac_text(b.raw(rel, 6)))
    if b.have(ethernet.ETHERTYPE_AT, 2):
        et = b.u(ethernet.ETHERTYPE_AT, 2)
        text = f"0x{et:04x} ({ETHERTYPE_NAMES.get(et, 'unknown')})"
        b.add("EtherType", ethernet.ETHERTYPE_AT, 2, text)
    if d.ethernet is None:
        b.error = d.fault


_Fmt = Callable[[int], str]


def _arp(b: _Builder, d: Decoded) -> None:
    specs: list[tuple[str, int, int, _Fmt]] = [
        ("Hardware type", arp.HTYPE_AT, 2, lambda v: f"{v} ({'Ethernet' if v == 1 else 'other'})"),
        (
            "Protocol type",
            arp.PTYPE_AT,
            2,
            lambda v: f"0x{v:04x} ({ETHERTYPE_NAMES.get(v, 'other')})",
        ),
        ("Hardware size", arp.HLEN_AT, 1, str),
        ("Protocol size", arp.PLEN_AT, 1, str),
        (
            "Opcode",
            arp.OP_AT,
            2,
            lambda v: f"{v} ({ {1: 'request', 2: 'reply'}.get(v, 'other') })",
        ),
    ]
    for name, rel, n, fmt in specs:
        if b.have(rel, n):
            b.add(name, rel, n, fmt(b.u(rel, n)))
    for name, rel, n in (
        ("Sender MAC", arp.SENDER_MAC_AT, 6),
        ("Sender IP", arp.SENDER_IP_AT, 4),
        ("Target MAC", arp.TARGET_MAC_AT, 6),
        ("Target IP", arp.TARGET_IP_AT, 4),
    ):
        if b.have(rel, n):
            b.add(
                name,
                rel,
                n,
                ethernet.format_mac(b.raw(rel, n)) if n == 6 else str(IPv4Address(b.raw(rel, n))),
            )
    if d.arp is None:
        b.error = d.fault


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


def _ipv4(
    b: _Builder,
    packet: ipv4.Ipv4Packet | None,
    structural: MalformedPacket | None,
    *,
    quoted: bool = False,
) -> _IpInfo | None:
    """Fields of an IPv4 header that parsed as ``packet`` (or failed with ``structural``);
    ``quoted`` for the header inside an ICMP error (cut short by design)."""
    if not b.have(0, 1):
        b.error = MalformedPacket("ipv4", "truncated", "no header")
        return None
    vihl = b.u(ipv4.VERSION_IHL_AT, 1)
    hlen = (vihl & 0x0F) * 4
    b.add("Version", ipv4.VERSION_IHL_AT, 1, str(vihl >> 4), 0xF0)
    b.add("IHL", ipv4.VERSION_IHL_AT, 1, f"{vihl & 0x0F} ({hlen} bytes)", 0x0F)
    if b.have(ipv4.TOS_AT, 1):
        tos = b.u(ipv4.TOS_AT, 1)
        b.add("DSCP", ipv4.TOS_AT, 1, str(tos >> 2), 0xFC)
        ecn = {0: "0 (not ECT)", 1: "1 (ECT(1))", 2: "2 (ECT(0))", 3: "3 (CE)"}[tos & 3]
        b.add("ECN", ipv4.TOS_AT, 1, ecn, 0x03)
    if b.have(ipv4.TOTAL_LENGTH_AT, 2):
        b.add("Total length", ipv4.TOTAL_LENGTH_AT, 2, str(b.u(ipv4.TOTAL_LENGTH_AT, 2)))
    if b.have(ipv4.IDENT_AT, 2):
        ident = b.u(ipv4.IDENT_AT, 2)
        b.add("Identification", ipv4.IDENT_AT, 2, f"0x{ident:04x} ({ident})")
    if b.have(ipv4.FRAGMENT_AT, 2):
        frag = b.u(ipv4.FRAGMENT_AT, 2)
        flag_bits = ((ipv4.FLAG_RESERVED, "reserved"), (ipv4.FLAG_DF, "DF"), (ipv4.FLAG_MF, "MF"))
        names = [n for bit, n in flag_bits if frag & bit]
        b.add(
            "Flags", ipv4.FRAGMENT_AT, 1, f"0x{frag >> 13:x} ({', '.join(names) or 'none'})", 0xE0
        )
        off = frag & ipv4.FRAG_OFFSET_MASK
        b.add(
            "Fragment offset",
            ipv4.FRAGMENT_AT,
            2,
            f"{off} ({off * 8} bytes)",
            ipv4.FRAG_OFFSET_MASK,
        )
    if b.have(ipv4.TTL_AT, 1):
        b.add("TTL", ipv4.TTL_AT, 1, str(b.u(ipv4.TTL_AT, 1)))
    if b.have(ipv4.PROTO_AT, 1):
        proto = b.u(ipv4.PROTO_AT, 1)
        b.add("Protocol", ipv4.PROTO_AT, 1, f"{proto} ({IP_PROTO_NAMES.get(proto, 'unknown')})")
    header_ok = (
        structural is None
        or structural.reason in ("bad-option",)
        or (hlen >= ipv4.MIN_HEADER_LEN and b.have(0, hlen))
    )
    if b.have(ipv4.CHECKSUM_AT, 2):
        expected = None
        if hlen >= ipv4.MIN_HEADER_LEN and b.have(0, hlen) and header_ok:
            hdr = bytearray(b.raw(0, hlen))
            hdr[ipv4.CHECKSUM_AT : ipv4.CHECKSUM_AT + 2] = b"\x00\x00"
            expected = internet_checksum(hdr)
        report = structural is None and not quoted
        _checksum_field(b, "ipv4", "Header checksum", ipv4.CHECKSUM_AT, expected, report)
    for name, rel in (("Source", ipv4.SRC_AT), ("Destination", ipv4.DST_AT)):
        if b.have(rel, 4):
            b.add(name, rel, 4, str(IPv4Address(b.raw(rel, 4))))
    if hlen > ipv4.MIN_HEADER_LEN and b.have(
        ipv4.MIN_HEADER_LEN, min(hlen, b.end - b.start) - ipv4.MIN_HEADER_LEN
    ):
        olen = min(hlen, b.end - b.start) - ipv4.MIN_HEADER_LEN
        if olen > 0:
            b.add("Options", ipv4.MIN_HEADER_LEN, olen, b.raw(ipv4.MIN_HEADER_LEN, olen).hex(" "))
    if structural is not None or packet is None:
        b.error = structural
        return None
    return _IpInfo(
        packet.src,
        packet.dst,
        packet.proto,
        b.start + hlen,
        b.end if quoted else b.start + hlen + len(packet.payload),
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


def _tcp(b: _Builder, ip: _IpInfo, verify: bool, structural: MalformedPacket | None) -> int | None:
    """Returns where the payload starts, or None when the header is unusable."""
    specs = (
        ("Source port", tcp.SRC_PORT_AT, 2),
        ("Destination port", tcp.DST_PORT_AT, 2),
        ("Sequence number", tcp.SEQ_AT, 4),
        ("Acknowledgment number", tcp.ACK_AT, 4),
    )
    for name, rel, n in specs:
        if b.have(rel, n):
            b.add(name, rel, n, str(b.u(rel, n)))
    if b.have(tcp.DATA_OFFSET_AT, 1):
        doff = b.u(tcp.DATA_OFFSET_AT, 1) >> 4
        b.add("Data offset", tcp.DATA_OFFSET_AT, 1, f"{doff} ({doff * 4} bytes)", 0xF0)
        b.add("Reserved", tcp.DATA_OFFSET_AT, 1, str(b.u(tcp.DATA_OFFSET_AT, 1) & 0x0F), 0x0F)
    if b.have(tcp.FLAGS_AT, 1):
        fl = b.u(tcp.FLAGS_AT, 1)
        names = [f.name for f in tcp.TcpFlags if fl & f]
        b.add(
            "Flags",
            tcp.FLAGS_AT,
            1,
            f"0x{fl:02x} [{tcp_flags_text(fl)}] ({', '.join(n or '' for n in names) or 'none'})",
        )
    if b.have(tcp.WINDOW_AT, 2):
        b.add("Window", tcp.WINDOW_AT, 2, str(b.u(tcp.WINDOW_AT, 2)))
    if b.have(tcp.CHECKSUM_AT, 2):
        expected = None
        if verify:
            seg_bytes = b.frame[b.start : b.end]
            expected = _pseudo_checksum(ip.src, ip.dst, tcp.PROTO_TCP, seg_bytes, tcp.CHECKSUM_AT)
        _checksum_field(b, "tcp", "Checksum", tcp.CHECKSUM_AT, expected, structural is None)
    if b.have(tcp.URGENT_AT, 2):
        b.add("Urgent pointer", tcp.URGENT_AT, 2, str(b.u(tcp.URGENT_AT, 2)))
    if b.have(tcp.DATA_OFFSET_AT, 1):
        hlen = (b.u(tcp.DATA_OFFSET_AT, 1) >> 4) * 4
        _tcp_options(b, tcp.MIN_HEADER_LEN, min(hlen, b.end - b.start))
    if structural is not None:
        b.error = structural
        return None
    return b.start + (b.u(tcp.DATA_OFFSET_AT, 1) >> 4) * 4


_TCP_OPTION_NAMES = {
    tcp.OPT_MSS: "MSS",
    tcp.OPT_WSCALE: "Window scale",
    tcp.OPT_SACK_PERMITTED: "SACK permitted",
    tcp.OPT_SACK: "SACK",
    tcp.OPT_TIMESTAMPS: "Timestamps",
    tcp.OPT_FASTOPEN: "Fast Open cookie",
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
            text = f"{data[0]} (multiply by {1 << min(data[0], tcp.MAX_WSCALE)})"
        elif kind == tcp.OPT_SACK_PERMITTED and length == 2:
            text = "yes"
        elif kind == tcp.OPT_TIMESTAMPS and length == 10:
            text = (
                f"TSval {int.from_bytes(data[:4], 'big')}, TSecr {int.from_bytes(data[4:], 'big')}"
            )
        elif kind == tcp.OPT_FASTOPEN and (length == 2 or 6 <= length <= 18):
            text = f"cookie 0x{data.hex()}" if data else "cookie request"  # RFC 7413 §4.1.1
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


def _udp(b: _Builder, ip: _IpInfo, verify: bool, structural: MalformedPacket | None) -> int | None:
    for name, rel in (
        ("Source port", udp.SRC_PORT_AT),
        ("Destination port", udp.DST_PORT_AT),
        ("Length", udp.LENGTH_AT),
    ):
        if b.have(rel, 2):
            b.add(name, rel, 2, str(b.u(rel, 2)))
    if b.have(udp.CHECKSUM_AT, 2):
        stored = b.u(udp.CHECKSUM_AT, 2)
        if stored == 0:
            b.add("Checksum", udp.CHECKSUM_AT, 2, "0x0000 (none)")
        else:
            expected = None
            if verify and structural is None:
                dgram = b.frame[b.start : b.start + b.u(udp.LENGTH_AT, 2)]
                # RFC 768: a computed zero is sent as all ones.
                expected = (
                    _pseudo_checksum(ip.src, ip.dst, udp.PROTO_UDP, dgram, udp.CHECKSUM_AT)
                    or 0xFFFF
                )
            _checksum_field(b, "udp", "Checksum", udp.CHECKSUM_AT, expected)
    if structural is not None:
        b.error = structural
        return None
    return b.start + udp.HEADER_LEN


def _icmp(
    b: _Builder, msg: icmp.IcmpMessage | None, structural: MalformedPacket | None
) -> int | None:
    """Returns where the payload starts, or None."""
    if b.have(icmp.TYPE_AT, 1):
        t = b.u(icmp.TYPE_AT, 1)
        b.add("Type", icmp.TYPE_AT, 1, f"{t} ({ICMP_TYPE_NAMES.get(t, 'unknown')})")
    if b.have(icmp.CODE_AT, 1):
        code = b.u(icmp.CODE_AT, 1)
        text = str(code)
        if b.u(icmp.TYPE_AT, 1) == icmp.TYPE_DEST_UNREACHABLE:
            text += f" ({UNREACHABLE_CODES.get(code, 'unknown')})"
        b.add("Code", icmp.CODE_AT, 1, text)
    if b.have(icmp.CHECKSUM_AT, 2):
        expected = None
        if structural is None:
            buf = bytearray(b.frame[b.start : b.end])
            buf[icmp.CHECKSUM_AT : icmp.CHECKSUM_AT + 2] = b"\x00\x00"
            expected = internet_checksum(buf)
        _checksum_field(b, "icmp", "Checksum", icmp.CHECKSUM_AT, expected)
    if structural is not None or msg is None:
        b.error = structural
        return None
    seq_at = icmp.REST_AT + 2
    if msg.type in (icmp.TYPE_ECHO_REQUEST, icmp.TYPE_ECHO_REPLY):
        b.add("Identifier", icmp.REST_AT, 2, str(msg.ident))
        b.add("Sequence number", seq_at, 2, str(msg.sequence))
    elif msg.type == icmp.TYPE_DEST_UNREACHABLE and msg.code == icmp.CODE_FRAG_NEEDED:
        b.add("Unused", icmp.REST_AT, 2, str(msg.ident))
        b.add("Next-hop MTU", seq_at, 2, str(msg.sequence))
    elif msg.is_error:
        b.add("Unused", icmp.REST_AT, 4, f"0x{msg.rest:08x}")
    else:
        b.add("Rest of header", icmp.REST_AT, 4, f"0x{msg.rest:08x}")
    return b.start + icmp.HEADER_LEN


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
    d = decode(data, linktype)
    out = _Collector()
    end = len(data)
    payload_at = end
    payload_stop = end
    if linktype == LINKTYPE_ETHERNET:
        b = _Builder(data, "Ethernet", 0, end)
        _ethernet(b, d)
        out.push(b)
        payload_at = min(ethernet.HEADER_LEN, end)
        if d.ethernet is not None and d.ethernet.ethertype == ethernet.ETHERTYPE_ARP:
            b = _Builder(data, "ARP", ethernet.HEADER_LEN, end)
            _arp(b, d)
            out.push(b)
            if b.error is None:
                payload_at = payload_stop = ethernet.HEADER_LEN + arp.PACKET_LEN
                out.padding(data, payload_at)
    elif d.ip_at is None:
        out.error = d.fault  # a link type synack does not read
    if d.ip_at is not None:
        payload_at, payload_stop = _dissect_ip(data, d, out)
    return Dissection(
        data,
        linktype,
        tuple(out.layers),
        payload_at,
        data[payload_at:payload_stop],
        out.error,
        summarize(data, linktype),
    )


def _dissect_ip(data: bytes, d: Decoded, out: _Collector) -> tuple[int, int]:
    """Dissect IPv4 and what it carries; returns the payload's (start, stop)."""
    at = d.ip_at
    assert at is not None
    end = len(data)
    b = _Builder(data, "IPv4", at, end)
    ip = _ipv4(b, d.ipv4, d.fault if d.ipv4 is None else None)
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
            got = _tcp(b, ip, verify, d.fault)
            out.push(b)
            start = got if got is not None else ip.payload_start + b.length
        elif ip.proto == ipv4.PROTO_UDP:
            got = _udp(b, ip, verify, d.fault)
            out.push(b)
            if got is not None:
                start = got
                stop = min(stop, ip.payload_start + b.u(udp.LENGTH_AT, 2))
            else:
                start = ip.payload_start + b.length
        elif ip.proto == ipv4.PROTO_ICMP:
            got = _icmp(b, d.icmp, d.fault)
            out.push(b)
            if got is None:
                start = ip.payload_start + b.length
            else:
                start = got
                if d.icmp is not None and d.icmp.is_error:
                    start = _quoted(data, start, ip.payload_end, out)
    out.padding(data, ip.payload_end)
    return start, max(start, stop)


def _quoted(data: bytes, at: int, end: int, out: _Collector) -> int:
    """The IP header + first 8 octets an ICMP error quotes (RFC 792); errors here are not the frame's."""
    b = _Builder(data, "IPv4 (quoted)", at, end)
    packet: ipv4.Ipv4Packet | None = None
    structural: MalformedPacket | None = None
    try:
        packet = parse_quoted_ipv4(data[at:end])
    except MalformedPacket as exc:
        structural = exc
    ip = _ipv4(b, packet, structural, quoted=True)
    # A damaged quote is the quoting host's business, not an error of this frame.
    out.layers.append(b.layer())
    if ip is None:
        return at + b.length
    name = {ipv4.PROTO_TCP: "TCP (quoted)", ipv4.PROTO_UDP: "UDP (quoted)"}.get(ip.proto)
    if name is None:
        return ip.payload_start
    q = _Builder(data, name, ip.payload_start, end)
    # Both transports start with the two ports (at the same offsets in tcp and udp).
    for fname, rel in (("Source port", tcp.SRC_PORT_AT), ("Destination port", tcp.DST_PORT_AT)):
        if q.have(rel, 2):
            q.add(fname, rel, 2, str(q.u(rel, 2)))
    if ip.proto == ipv4.PROTO_TCP and q.have(tcp.SEQ_AT, 4):
        q.add("Sequence number", tcp.SEQ_AT, 4, str(q.u(tcp.SEQ_AT, 4)))
    elif ip.proto == ipv4.PROTO_UDP:
        if q.have(udp.LENGTH_AT, 2):
            q.add("Length", udp.LENGTH_AT, 2, str(q.u(udp.LENGTH_AT, 2)))
        if q.have(udp.CHECKSUM_AT, 2):
            q.add("Checksum", udp.CHECKSUM_AT, 2, f"0x{q.u(udp.CHECKSUM_AT, 2):04x}")
    out.layers.append(q.layer())
    return ip.payload_start + q.length
