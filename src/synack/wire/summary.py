"""One-line summaries in the style of tcpdump, per layer and for a whole frame.

``summarize(frame)`` never raises: a frame that does not parse is summarised as
far as it goes, followed by the error in brackets, e.g.
``IP 10.0.0.1.40000 > 10.0.0.2.80: [tcp bad-data-offset]``; a bad checksum
still shows the decoded segment, followed by ``[tcp bad-checksum]``.

Layer: wire. Imports synack.errors and the rest of synack.wire.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from synack.wire import arp, ethernet, icmp, ipv4, tcp, udp
from synack.wire.decode import Decoded, decode, parse_quoted_ipv4
from synack.wire.errors import MalformedPacket
from synack.wire.pcap import LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_RAW

_PORTS = struct.Struct("!HH")  # source and destination port, as TCP and UDP both begin

# tcpdump's letters, in tcpdump's order (F S R P . U E W).
_FLAG_LETTERS = (
    (tcp.TcpFlags.FIN, "F"),
    (tcp.TcpFlags.SYN, "S"),
    (tcp.TcpFlags.RST, "R"),
    (tcp.TcpFlags.PSH, "P"),
    (tcp.TcpFlags.ACK, "."),
    (tcp.TcpFlags.URG, "U"),
    (tcp.TcpFlags.ECE, "E"),
    (tcp.TcpFlags.CWR, "W"),
)
_FLAG_TEXT = tuple(
    "".join(letter for bit, letter in _FLAG_LETTERS if i & bit) or "none" for i in range(256)
)

ETHERTYPE_NAMES = {
    ethernet.ETHERTYPE_IPV4: "IPv4",
    ethernet.ETHERTYPE_ARP: "ARP",
    0x86DD: "IPv6",
    0x8100: "802.1Q",
}
IP_PROTO_NAMES = {
    ipv4.PROTO_ICMP: "ICMP",
    ipv4.PROTO_TCP: "TCP",
    ipv4.PROTO_UDP: "UDP",
    2: "IGMP",
    41: "IPv6",
    47: "GRE",
}
ICMP_TYPE_NAMES = {
    icmp.TYPE_ECHO_REPLY: "echo reply",
    icmp.TYPE_DEST_UNREACHABLE: "destination unreachable",
    4: "source quench",
    5: "redirect",
    icmp.TYPE_ECHO_REQUEST: "echo request",
    icmp.TYPE_TIME_EXCEEDED: "time exceeded",
    12: "parameter problem",
    13: "timestamp request",
    14: "timestamp reply",
}
UNREACHABLE_CODES = {
    0: "net unreachable",
    1: "host unreachable",
    2: "protocol unreachable",
    3: "port unreachable",
    4: "fragmentation needed",
    5: "source route failed",
    9: "net administratively prohibited",
    10: "host administratively prohibited",
    13: "communication administratively prohibited",
}


def tcp_flags_text(flags: int) -> str:
    """``TcpFlags.SYN | TcpFlags.ACK`` -> ``"S."`` (tcpdump's letters)."""
    return _FLAG_TEXT[int(flags) & 0xFF]


def tcp_options_text(options: tcp.TcpOptions) -> str:
    """``mss 1460,sackOK,TS val 1 ecr 0,wscale 7`` (empty for no options)."""
    parts: list[str] = []
    if options.mss is not None:
        parts.append(f"mss {options.mss}")
    if options.sack_permitted:
        parts.append("sackOK")
    if options.timestamps is not None:
        parts.append(f"TS val {options.timestamps[0]} ecr {options.timestamps[1]}")
    if options.wscale is not None:
        parts.append(f"wscale {options.wscale}")
    if options.sack_blocks:
        blocks = "".join(f"{{{left}:{right}}}" for left, right in options.sack_blocks)
        parts.append(f"sack {len(options.sack_blocks)} {blocks}")
    if options.fastopen is not None:  # as tcpdump prints RFC 7413's option
        parts.append(
            f"tfo cookie {options.fastopen.hex()}" if options.fastopen else "tfo cookiereq"
        )
    for kind, data in options.unknown:
        parts.append(f"unknown-{kind}" + (f" 0x{data.hex()}" if data else ""))
    return ",".join(parts)


def summarize_tcp(segment: tcp.TcpSegment) -> str:
    """``Flags [S.], seq 0, ack 1, win 65535, options [mss 1460], length 0``."""
    s = segment
    n = len(s.payload)
    out = [f"Flags [{tcp_flags_text(s.flags)}]"]
    # Like tcpdump: without data, SYN, FIN or RST the sequence number says nothing.
    if n:
        out.append(f"seq {s.seq}:{(s.seq + n) & 0xFFFFFFFF}")
    elif s.flags & (tcp.TcpFlags.SYN | tcp.TcpFlags.FIN | tcp.TcpFlags.RST):
        out.append(f"seq {s.seq}")
    if s.flags & tcp.TcpFlags.ACK:
        out.append(f"ack {s.ack}")
    out.append(f"win {s.window}")
    if s.flags & tcp.TcpFlags.URG:
        out.append(f"urg {s.urgent}")
    if s.options != tcp.NO_OPTIONS:
        out.append(f"options [{tcp_options_text(s.options)}]")
    out.append(f"length {n}")
    return ", ".join(out)


def summarize_udp(datagram: udp.UdpDatagram) -> str:
    return f"UDP, length {len(datagram.payload)}"


def summarize_icmp(message: icmp.IcmpMessage) -> str:
    """``ICMP echo request, id 7, seq 1, length 12`` / ``ICMP 10.0.0.2 udp port 9 unreachable, length 36``."""
    m = message
    length = icmp.HEADER_LEN + len(m.payload)
    if m.type in (icmp.TYPE_ECHO_REQUEST, icmp.TYPE_ECHO_REPLY):
        return f"ICMP {ICMP_TYPE_NAMES[m.type]}, id {m.ident}, seq {m.sequence}, length {length}"
    if m.type == icmp.TYPE_DEST_UNREACHABLE:
        return f"ICMP {_unreachable_text(m)}, length {length}"
    if m.type == icmp.TYPE_TIME_EXCEEDED:
        if m.code == 1:
            return f"ICMP ip reassembly time exceeded, length {length}"
        what = "in-transit" if m.code == 0 else f"code {m.code}"
        return f"ICMP time exceeded {what}, length {length}"
    name = ICMP_TYPE_NAMES.get(m.type, f"type {m.type}")
    return f"ICMP {name}, code {m.code}, length {length}"


def _unreachable_text(m: icmp.IcmpMessage) -> str:
    try:
        quoted: ipv4.Ipv4Packet | None = parse_quoted_ipv4(m.payload)
    except MalformedPacket:
        quoted = None
    if m.code == 3 and quoted is not None and quoted.proto in (ipv4.PROTO_UDP, ipv4.PROTO_TCP):
        hlen = ipv4.MIN_HEADER_LEN + len(quoted.options)
        ports = _ports(m.payload[hlen:])
        if ports is not None:
            proto = "udp" if quoted.proto == ipv4.PROTO_UDP else "tcp"
            return f"{quoted.dst} {proto} port {ports[1]} unreachable"
    if m.code == 4:
        return f"{quoted.dst if quoted else '?'} unreachable - need to frag (mtu {m.rest & 0xFFFF})"
    dst = quoted.dst if quoted else "?"
    if m.code == 2 and quoted is not None:
        return f"{dst} protocol {quoted.proto} unreachable"
    if m.code in (0, 1):
        return f"{'net' if m.code == 0 else 'host'} {dst} unreachable"
    text = UNREACHABLE_CODES.get(m.code, f"unreachable code {m.code}")
    return f"{dst} {text}"


def summarize_arp(packet: arp.ArpPacket) -> str:
    """``ARP, Request who-has 10.0.0.2 tell 10.0.0.1, length 28``."""
    p = packet
    if p.op == arp.OP_REQUEST:
        return f"ARP, Request who-has {p.target_ip} tell {p.sender_ip}, length 28"
    if p.op == arp.OP_REPLY:
        return f"ARP, Reply {p.sender_ip} is-at {ethernet.format_mac(p.sender_mac)}, length 28"
    return f"ARP, op {p.op} {p.sender_ip} > {p.target_ip}, length 28"


def _fault(exc: MalformedPacket) -> str:
    return f"[{exc.layer} {exc.reason}]"


def summarize_ip(data: bytes | memoryview) -> str:
    """A tcpdump line for one IPv4 packet (without the link layer)."""
    return _ip_text(decode(data, LINKTYPE_IPV4, verify=True))


def _ip_text(d: Decoded) -> str:
    """The line for a decoded IPv4 packet; fragments get ``(frag ID:LEN@OFFSET[+])`` at the end."""
    p = d.ipv4
    if p is None:
        assert d.fault is not None
        return f"IP {_fault(d.fault)}"
    line = _ipv4_line(p, d)
    if p.is_fragment:
        line += f" (frag {p.ident}:{len(p.payload)}@{p.frag_offset * 8}{'+' if p.more_fragments else ''})"
    for exc in d.bad_checksums:
        if exc.layer == "ipv4":
            line += f" {_fault(exc)}"
    return line


def _ipv4_line(p: ipv4.Ipv4Packet, d: Decoded) -> str:
    if p.frag_offset:
        # Later fragments carry no transport header to summarise.
        return f"IP {p.src} > {p.dst}: ip-proto-{p.proto}"
    ports = _ports(p.payload)
    if p.proto not in (ipv4.PROTO_TCP, ipv4.PROTO_UDP, ipv4.PROTO_ICMP):
        name = IP_PROTO_NAMES.get(p.proto, f"ip-proto-{p.proto}")
        return f"IP {p.src} > {p.dst}: {name}, length {len(p.payload)}"
    if (
        p.more_fragments
        and p.proto == ipv4.PROTO_UDP
        and len(p.payload) >= udp.HEADER_LEN
        and ports is not None
    ):
        # A first fragment holds only part of the datagram: report its UDP header as it stands.
        length = int.from_bytes(p.payload[udp.LENGTH_AT : udp.LENGTH_AT + 2], "big")
        return f"IP {p.src}.{ports[0]} > {p.dst}.{ports[1]}: UDP, length {max(length - udp.HEADER_LEN, 0)}"
    if d.fault is not None:
        if p.proto != ipv4.PROTO_ICMP and ports is not None:
            return f"IP {p.src}.{ports[0]} > {p.dst}.{ports[1]}: {_fault(d.fault)}"
        return f"IP {p.src} > {p.dst}: {_fault(d.fault)}"
    if d.tcp is not None:
        seg = d.tcp
        line = f"IP {p.src}.{seg.src_port} > {p.dst}.{seg.dst_port}: {summarize_tcp(seg)}"
    elif d.udp is not None:
        dg = d.udp
        line = f"IP {p.src}.{dg.src_port} > {p.dst}.{dg.dst_port}: {summarize_udp(dg)}"
    else:
        assert d.icmp is not None
        line = f"IP {p.src} > {p.dst}: {summarize_icmp(d.icmp)}"
    # A damaged segment still shows what it says, and that it is damaged.
    for exc in d.bad_checksums:
        if exc.layer != "ipv4":
            line += f" {_fault(exc)}"
    return line


def _ports(data: bytes) -> tuple[int, int] | None:
    """The two port numbers TCP and UDP both start with, if the octets are there."""
    if len(data) < 4:
        return None
    return _PORTS.unpack_from(data, udp.SRC_PORT_AT)


def summarize(
    frame: bytes | memoryview, linktype: int = LINKTYPE_ETHERNET, *, link: bool = False
) -> str:
    """The tcpdump line for one captured frame; ``link=True`` adds MACs like ``tcpdump -e``."""
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4):
        if len(frame) and frame[0] >> 4 == 6:
            return f"IP6, length {len(frame)}"
        return _ip_text(decode(frame, linktype, verify=True))
    if linktype != LINKTYPE_ETHERNET:
        return f"link type {linktype}, length {len(frame)}"
    d = decode(frame, linktype, verify=True)
    eth = d.ethernet
    if eth is None:
        assert d.fault is not None
        return _fault(d.fault)
    prefix = ""
    if link:
        name = ETHERTYPE_NAMES.get(eth.ethertype, "Unknown")
        prefix = (
            f"{ethernet.format_mac(eth.src)} > {ethernet.format_mac(eth.dst)}, "
            f"ethertype {name} (0x{eth.ethertype:04x}), length {len(frame)}: "
        )
    if eth.ethertype == ethernet.ETHERTYPE_IPV4:
        return prefix + _ip_text(d)
    if eth.ethertype == ethernet.ETHERTYPE_ARP:
        if d.arp is None:
            assert d.fault is not None
            return prefix + f"ARP {_fault(d.fault)}"
        return prefix + summarize_arp(d.arp)
    name = ETHERTYPE_NAMES.get(eth.ethertype, f"ethertype 0x{eth.ethertype:04x}")
    return prefix + f"{name}, length {len(eth.payload)}"


def describe_address(addr: IPv4Address, port: int | None = None) -> str:
    """``10.0.0.1.80`` the way tcpdump writes an endpoint."""
    return f"{addr}.{port}" if port is not None else str(addr)
