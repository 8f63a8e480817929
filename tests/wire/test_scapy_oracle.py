"""scapy as an independent oracle, both ways.

synack -> scapy: bytes built by synack dissect in scapy to the same field
values, and scapy's own checksum code agrees with every checksum synack wrote.
scapy -> synack: packets built by scapy from generated field values parse in
synack to the same values.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, Raw  # type: ignore[attr-defined]
from scapy.layers.inet import TCPOptions as SCAPY_TCP_OPTIONS
from scapy.layers.inet import in4_chksum
from scapy.utils import checksum as scapy_checksum

from synack.wire import arp, ethernet, icmp, ipv4, tcp, udp
from tests.wire import strategies as s

EXAMPLES = 250

# scapy decodes some option kinds we treat as unknown (UTO, TCP-AO, TFO...) into
# its own value types; compare raw bytes only for kinds scapy leaves raw.
_SCAPY_NAMED = set(SCAPY_TCP_OPTIONS[0])
segments = s.tcp_segments.filter(
    lambda seg: all(k not in _SCAPY_NAMED for k, _ in seg.options.unknown)
)


def scapy_tcp_options(options: tcp.TcpOptions) -> list[tuple[Any, Any]]:
    out: list[tuple[Any, Any]] = []
    if options.mss is not None:
        out.append(("MSS", options.mss))
    if options.wscale is not None:
        out.append(("WScale", options.wscale))
    if options.sack_permitted:
        out.append(("SAckOK", b""))
    if options.timestamps is not None:
        out.append(("Timestamp", options.timestamps))
    if options.sack_blocks:
        out.append(("SAck", tuple(edge for block in options.sack_blocks for edge in block)))
    out.extend(options.unknown)
    return out


def synack_view_of_scapy_options(opts: list[tuple[Any, Any]]) -> tcp.TcpOptions:
    fields: dict[str, Any] = {}
    unknown: list[tuple[int, bytes]] = []
    for name, value in opts:
        if name == "MSS":
            fields["mss"] = value
        elif name == "WScale":
            fields["wscale"] = value
        elif name == "SAckOK":
            fields["sack_permitted"] = True
        elif name == "Timestamp":
            fields["timestamps"] = tuple(value)
        elif name == "SAck":
            fields["sack_blocks"] = tuple(zip(value[::2], value[1::2], strict=True))
        elif name in ("NOP", "EOL"):
            continue
        else:
            assert isinstance(name, int), name
            unknown.append((name, bytes(value)))
    return tcp.TcpOptions(**fields, unknown=tuple(unknown))


# --- synack builds, scapy reads -------------------------------------------------


@settings(max_examples=EXAMPLES)
@given(segments, s.addresses, s.addresses)
def test_scapy_reads_synack_tcp(seg: tcp.TcpSegment, src: IPv4Address, dst: IPv4Address) -> None:
    raw = tcp.build(seg, src, dst)
    p = TCP(raw)
    assert (p.sport, p.dport, p.seq, p.ack) == (seg.src_port, seg.dst_port, seg.seq, seg.ack)
    assert (int(p.flags), p.window, p.urgptr) == (int(seg.flags), seg.window, seg.urgent)
    assert p.dataofs * 4 == len(raw) - len(seg.payload)
    assert synack_view_of_scapy_options(p.options) == seg.options
    assert bytes(p.payload) == seg.payload
    zeroed = raw[:16] + b"\x00\x00" + raw[18:]
    assert in4_chksum(6, IP(src=str(src), dst=str(dst)), zeroed) == p.chksum


@settings(max_examples=EXAMPLES)
@given(s.udp_datagrams, s.addresses, s.addresses)
def test_scapy_reads_synack_udp(dgram: udp.UdpDatagram, src: IPv4Address, dst: IPv4Address) -> None:
    raw = udp.build(dgram, src, dst)
    p = UDP(raw)
    assert (p.sport, p.dport, p.len) == (dgram.src_port, dgram.dst_port, len(raw))
    assert bytes(p.payload) == dgram.payload
    zeroed = raw[:6] + b"\x00\x00" + raw[8:]
    assert (in4_chksum(17, IP(src=str(src), dst=str(dst)), zeroed) or 0xFFFF) == p.chksum


@settings(max_examples=EXAMPLES)
@given(s.icmp_messages)
def test_scapy_checksums_synack_icmp(msg: icmp.IcmpMessage) -> None:
    assert scapy_checksum(icmp.build(msg)) == 0


@settings(max_examples=EXAMPLES)
@given(st.sampled_from([0, 8]), s.u16, s.u16, s.payloads)
def test_scapy_reads_synack_icmp_echo(type_: int, ident: int, seq: int, data: bytes) -> None:
    p = ICMP(icmp.build(icmp.echo(type_, ident, seq, data)))
    assert (p.type, p.code, p.id, p.seq, bytes(p.payload)) == (type_, 0, ident, seq, data)


@settings(max_examples=50)
@given(st.sampled_from([3, 11]), s.u8, s.u16)
def test_scapy_reads_synack_icmp_errors(type_: int, code: int, mtu: int) -> None:
    quoted = bytes(IP(src="10.213.0.2", dst="10.213.0.1") / UDP(sport=5000, dport=9))[:28]
    p = ICMP(icmp.build(icmp.IcmpMessage(type_, code, mtu, quoted)))
    assert (p.type, p.code) == (type_, code)
    assert bytes(p.payload)[:28] == quoted


@settings(max_examples=EXAMPLES)
@given(s.ipv4_packets)
def test_scapy_reads_synack_ipv4(pkt: ipv4.Ipv4Packet) -> None:
    raw = ipv4.build(pkt)
    # Only the header: scapy would otherwise dissect the payload by protocol.
    hlen = 20 + len(pkt.options)
    assert scapy_checksum(raw[:hlen]) == 0
    p = IP(raw[:hlen])
    assert (p.src, p.dst, p.proto, p.ttl, p.id) == (
        str(pkt.src),
        str(pkt.dst),
        pkt.proto,
        pkt.ttl,
        pkt.ident,
    )
    assert (p.tos, p.len, p.ihl * 4, p.frag) == (
        (pkt.dscp << 2) | pkt.ecn,
        len(raw),
        hlen,
        pkt.frag_offset,
    )
    assert bool(p.flags.DF) == pkt.dont_fragment and bool(p.flags.MF) == pkt.more_fragments


@settings(max_examples=100)
@given(s.arp_packets)
def test_scapy_reads_synack_arp(pkt: arp.ArpPacket) -> None:
    p = ARP(arp.build(pkt))
    assert (p.op, p.psrc, p.pdst) == (pkt.op, str(pkt.sender_ip), str(pkt.target_ip))
    assert (p.hwsrc, p.hwdst) == (
        ethernet.format_mac(pkt.sender_mac),
        ethernet.format_mac(pkt.target_mac),
    )


@settings(max_examples=100)
@given(segments, s.addresses, s.addresses, s.macs, s.macs, s.u16)
def test_scapy_reads_synack_full_frame(
    seg: tcp.TcpSegment, src: IPv4Address, dst: IPv4Address, smac: bytes, dmac: bytes, ident: int
) -> None:
    packet = ipv4.Ipv4Packet(src, dst, ipv4.PROTO_TCP, tcp.build(seg, src, dst), ident=ident)
    frame = ethernet.build(
        ethernet.EthernetFrame(dmac, smac, ethernet.ETHERTYPE_IPV4, ipv4.build(packet))
    )
    p = Ether(frame)
    assert p.src == ethernet.format_mac(smac) and p.dst == ethernet.format_mac(dmac)
    assert p[IP].src == str(src) and p[IP].id == ident
    assert p[TCP].seq == seg.seq and bytes(p[TCP].payload) == seg.payload
    # scapy recomputes both checksums from scratch and must get ours.
    q = p.copy()
    del q[IP].chksum
    del q[TCP].chksum
    q = Ether(bytes(q))
    assert (q[IP].chksum, q[TCP].chksum) == (p[IP].chksum, p[TCP].chksum)


# --- scapy builds, synack reads -------------------------------------------------


@settings(max_examples=EXAMPLES)
@given(segments, s.addresses, s.addresses)
def test_synack_reads_scapy_tcp(seg: tcp.TcpSegment, src: IPv4Address, dst: IPv4Address) -> None:
    layer = TCP(
        sport=seg.src_port,
        dport=seg.dst_port,
        seq=seg.seq,
        ack=seg.ack,
        flags=int(seg.flags),
        window=seg.window,
        urgptr=seg.urgent,
        options=scapy_tcp_options(seg.options),
    )
    raw = bytes(IP(src=str(src), dst=str(dst)) / layer / Raw(seg.payload))[20:]
    assert tcp.parse(raw, src, dst) == seg


@settings(max_examples=EXAMPLES)
@given(s.udp_datagrams, s.addresses, s.addresses)
def test_synack_reads_scapy_udp(dgram: udp.UdpDatagram, src: IPv4Address, dst: IPv4Address) -> None:
    raw = bytes(
        IP(src=str(src), dst=str(dst))
        / UDP(sport=dgram.src_port, dport=dgram.dst_port)
        / Raw(dgram.payload)
    )
    packet = ipv4.parse(raw)
    assert packet.proto == ipv4.PROTO_UDP
    assert udp.parse(packet.payload, src, dst) == dgram


@settings(max_examples=EXAMPLES)
@given(s.ipv4_packets.filter(lambda p: p.proto not in (1, 6, 17)))
def test_synack_reads_scapy_ipv4(pkt: ipv4.Ipv4Packet) -> None:
    flags = (1 if pkt.more_fragments else 0) | (2 if pkt.dont_fragment else 0)
    layer = IP(
        src=str(pkt.src),
        dst=str(pkt.dst),
        proto=pkt.proto,
        ttl=pkt.ttl,
        id=pkt.ident,
        tos=(pkt.dscp << 2) | pkt.ecn,
        flags=flags,
        frag=pkt.frag_offset,
        options=pkt.options,
    )
    assert ipv4.parse(bytes(layer / Raw(pkt.payload))) == pkt


@settings(max_examples=EXAMPLES)
@given(st.sampled_from([0, 3, 8, 11]), s.u8, s.u16, s.u16, s.payloads)
def test_synack_reads_scapy_icmp(type_: int, code: int, ident: int, seq: int, data: bytes) -> None:
    raw = bytes(ICMP(type=type_, code=code, id=ident, seq=seq) / Raw(data))
    msg = icmp.parse(raw)
    assert (msg.type, msg.code, msg.payload) == (type_, code, data)
    if type_ in (0, 8):
        assert (msg.ident, msg.sequence) == (ident, seq)


@settings(max_examples=100)
@given(st.sampled_from([1, 2]), s.macs, s.addresses, s.macs, s.addresses)
def test_synack_reads_scapy_arp(
    op: int, sha: bytes, spa: IPv4Address, tha: bytes, tpa: IPv4Address
) -> None:
    raw = bytes(
        Ether(dst="ff:ff:ff:ff:ff:ff", src=ethernet.format_mac(sha))
        / ARP(
            op=op,
            hwsrc=ethernet.format_mac(sha),
            psrc=str(spa),
            hwdst=ethernet.format_mac(tha),
            pdst=str(tpa),
        )
    )
    frame = ethernet.parse(raw)
    assert frame.dst == ethernet.BROADCAST and frame.ethertype == ethernet.ETHERTYPE_ARP
    assert arp.parse(frame.payload) == arp.ArpPacket(op, sha, spa, tha, tpa)


def test_synack_reads_scapy_dest_unreachable_quote() -> None:
    quoted = bytes(IP(src="10.213.0.2", dst="10.213.0.1") / UDP(sport=5000, dport=9))[:28]
    raw = bytes(IP(src="10.213.0.1", dst="10.213.0.2") / ICMP(type=3, code=3) / Raw(quoted))
    packet = ipv4.parse(raw)
    msg = icmp.parse(packet.payload)
    assert (msg.type, msg.code) == (icmp.TYPE_DEST_UNREACHABLE, icmp.CODE_PORT_UNREACHABLE)
    inner = ipv4.parse(msg.payload)
    assert inner.dst == IPv4Address("10.213.0.1") and inner.payload[:4] == b"\x13\x88\x00\x09"
