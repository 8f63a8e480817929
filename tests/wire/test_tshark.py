"""tshark (Wireshark) reads pcaps written by synack, with checksum validation on.

Every frame kind synack builds goes in; tshark must find no malformed frame, no
bad checksum and no protocol error, and must have validated the checksums.
Preference names checked against ``tshark -G defaultprefs`` (Wireshark 4.0).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from synack.wire import arp, ethernet, icmp, ipv4, tcp, udp
from synack.wire.pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, write_pcap

pytestmark = pytest.mark.skipif(
    shutil.which("tshark") is None, reason="tshark is not installed (.ci/run installs it)"
)

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
F = tcp.TcpFlags

CHECKS = [
    "-o",
    "tcp.check_checksum:TRUE",
    "-o",
    "udp.check_checksum:TRUE",
    "-o",
    "ip.check_checksum:TRUE",
]


def _ip_packets() -> list[bytes]:
    syn_opts = tcp.TcpOptions(mss=1460, sack_permitted=True, timestamps=(1000, 0), wscale=7)
    segments = [
        (
            A,
            B,
            tcp.TcpSegment(40000, 40001, 1000, 0, F.SYN | F.ECE | F.CWR, 64240, options=syn_opts),
        ),
        (
            B,
            A,
            tcp.TcpSegment(
                40001, 40000, 5000, 1001, F.SYN | F.ACK | F.ECE, 65160, options=syn_opts
            ),
        ),
        (
            A,
            B,
            tcp.TcpSegment(
                40000, 40001, 1001, 5001, F.ACK, 502, options=tcp.TcpOptions(timestamps=(1001, 7))
            ),
        ),
        (
            A,
            B,
            tcp.TcpSegment(40000, 40001, 1001, 5001, F.ACK | F.PSH, 502, b"hello, world\n" * 20),
        ),
        (A, B, tcp.TcpSegment(40000, 40001, 1261, 5001, F.ACK | F.PSH, 502, b"odd")),
        (
            B,
            A,
            tcp.TcpSegment(
                40001,
                40000,
                5001,
                1001,
                F.ACK,
                509,
                options=tcp.TcpOptions(sack_blocks=((1261, 1264),)),
            ),
        ),
        (A, B, tcp.TcpSegment(40000, 40001, 1264, 5001, F.ACK | F.URG, 502, b"!", urgent=1)),
        (A, B, tcp.TcpSegment(40000, 40001, 1265, 5001, F.FIN | F.ACK, 502)),
        (B, A, tcp.TcpSegment(40001, 40000, 5001, 1266, F.RST | F.ACK, 0)),
        (
            A,
            B,
            tcp.TcpSegment(
                40002,
                40003,
                0,
                0,
                F.SYN,
                1024,
                options=tcp.TcpOptions(mss=536, unknown=((99, b"\x01\x02"),)),
            ),
        ),
    ]
    packets = [
        ipv4.Ipv4Packet(s, d, ipv4.PROTO_TCP, tcp.build(seg, s, d), ident=i, dont_fragment=True)
        for i, (s, d, seg) in enumerate(segments)
    ]
    packets += [
        ipv4.Ipv4Packet(
            A,
            B,
            ipv4.PROTO_UDP,
            udp.build(udp.UdpDatagram(40010, 40011, b"time?"), A, B),
            ident=100,
        ),
        ipv4.Ipv4Packet(
            A, B, ipv4.PROTO_UDP, udp.build(udp.UdpDatagram(40010, 40011, b"odd"), A, B), ident=101
        ),
        ipv4.Ipv4Packet(
            A,
            B,
            ipv4.PROTO_UDP,
            udp.build(udp.UdpDatagram(40010, 40011, b"no sum"), A, B, checksum=False),
        ),
        ipv4.Ipv4Packet(
            A,
            B,
            ipv4.PROTO_UDP,
            udp.build(udp.UdpDatagram(40010, 40011, b""), A, B),
            ttl=1,
            dscp=46,
            ecn=2,
        ),
        ipv4.Ipv4Packet(
            A,
            B,
            ipv4.PROTO_ICMP,
            icmp.build(icmp.echo(icmp.TYPE_ECHO_REQUEST, 77, 1, bytes(range(56)))),
        ),
        ipv4.Ipv4Packet(
            B,
            A,
            ipv4.PROTO_ICMP,
            icmp.build(icmp.echo(icmp.TYPE_ECHO_REPLY, 77, 1, bytes(range(56)))),
        ),
        # IPv4 options: NOP, Router Alert (RFC 2113), EOL padding.
        ipv4.Ipv4Packet(
            A,
            B,
            ipv4.PROTO_UDP,
            udp.build(udp.UdpDatagram(40010, 40011, b"opt"), A, B),
            options=b"\x01\x94\x04\x00\x00\x00\x00\x00",
        ),
    ]
    # ICMP errors quoting what they answer (RFC 792: IP header + 8 octets).
    offending = ipv4.build(packets[10])[:28]
    packets += [
        ipv4.Ipv4Packet(
            B,
            A,
            ipv4.PROTO_ICMP,
            icmp.build(
                icmp.IcmpMessage(
                    icmp.TYPE_DEST_UNREACHABLE, icmp.CODE_PORT_UNREACHABLE, 0, offending
                )
            ),
        ),
        ipv4.Ipv4Packet(
            B,
            A,
            ipv4.PROTO_ICMP,
            icmp.build(
                icmp.IcmpMessage(icmp.TYPE_DEST_UNREACHABLE, icmp.CODE_FRAG_NEEDED, 1400, offending)
            ),
        ),
        ipv4.Ipv4Packet(
            B,
            A,
            ipv4.PROTO_ICMP,
            icmp.build(icmp.IcmpMessage(icmp.TYPE_TIME_EXCEEDED, 0, 0, offending)),
        ),
    ]
    return [ipv4.build(p) for p in packets]


def _ethernet_frames() -> list[bytes]:
    frames = [
        ethernet.build(ethernet.EthernetFrame(MAC_B, MAC_A, ethernet.ETHERTYPE_IPV4, p))
        for p in _ip_packets()
    ]
    request = arp.ArpPacket(arp.OP_REQUEST, MAC_A, A, bytes(6), B)
    reply = arp.ArpPacket(arp.OP_REPLY, MAC_B, B, MAC_A, A)
    frames.append(
        ethernet.build(
            ethernet.EthernetFrame(
                ethernet.BROADCAST, MAC_A, ethernet.ETHERTYPE_ARP, arp.build(request)
            )
        )
    )
    frames.append(
        ethernet.build(
            ethernet.EthernetFrame(MAC_A, MAC_B, ethernet.ETHERTYPE_ARP, arp.build(reply))
        )
    )
    return frames


def _tshark(path: Path) -> str:
    result = subprocess.run(
        ["tshark", "-n", "-r", str(path), *CHECKS, "-V"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("linktype", "nanosecond"),
    [(LINKTYPE_ETHERNET, False), (LINKTYPE_ETHERNET, True), (LINKTYPE_RAW, False)],
)
def test_tshark_accepts_synack_pcaps(tmp_path: Path, linktype: int, nanosecond: bool) -> None:
    frames = _ethernet_frames() if linktype == LINKTYPE_ETHERNET else _ip_packets()
    path = tmp_path / "synack.pcap"
    write_pcap(
        path,
        [(1_700_000_000 + i / 8, f) for i, f in enumerate(frames)],
        linktype,
        nanosecond=nanosecond,
    )
    out = _tshark(path)
    assert len(re.findall(r"^Frame \d+:", out, re.M)) == len(frames)
    assert "Malformed" not in out
    assert "Checksum Status: Bad" not in out
    assert "Expert Info (Error" not in out, "\n".join(
        line for line in out.splitlines() if "Error" in line
    )
    # The checks really ran: every IPv4 header (quoted ones included) and every
    # checksummed TCP/UDP segment was validated as good.
    good = out.count("[Header checksum status: Good]") + out.count("[Checksum Status: Good]")
    n_ip = len(_ip_packets())
    assert good >= n_ip + 10 + 3, good
    assert out.count("Transmission Control Protocol") >= 10
    if linktype == LINKTYPE_ETHERNET:
        assert out.count("Address Resolution Protocol (request)") == 1
        assert out.count("Address Resolution Protocol (reply)") == 1
    if nanosecond:
        assert "Epoch Time: 1700000000.125000000 seconds" in out


# tshark field -> (synack layer, synack field): where Wireshark puts each field
# must be where synack's dissection says it is (the trace page highlights it).
FIELD_MAP = {
    "eth.dst": ("Ethernet", "Destination"),
    "eth.src": ("Ethernet", "Source"),
    "eth.type": ("Ethernet", "EtherType"),
    "arp.hw.type": ("ARP", "Hardware type"),
    "arp.proto.type": ("ARP", "Protocol type"),
    "arp.hw.size": ("ARP", "Hardware size"),
    "arp.proto.size": ("ARP", "Protocol size"),
    "arp.opcode": ("ARP", "Opcode"),
    "arp.src.hw_mac": ("ARP", "Sender MAC"),
    "arp.src.proto_ipv4": ("ARP", "Sender IP"),
    "arp.dst.hw_mac": ("ARP", "Target MAC"),
    "arp.dst.proto_ipv4": ("ARP", "Target IP"),
    "ip.version": ("IPv4", "Version"),
    "ip.hdr_len": ("IPv4", "IHL"),
    "ip.dsfield.dscp": ("IPv4", "DSCP"),
    "ip.dsfield.ecn": ("IPv4", "ECN"),
    "ip.len": ("IPv4", "Total length"),
    "ip.id": ("IPv4", "Identification"),
    "ip.flags": ("IPv4", "Flags"),
    "ip.frag_offset": ("IPv4", "Fragment offset"),
    "ip.ttl": ("IPv4", "TTL"),
    "ip.proto": ("IPv4", "Protocol"),
    "ip.checksum": ("IPv4", "Header checksum"),
    "ip.src": ("IPv4", "Source"),
    "ip.dst": ("IPv4", "Destination"),
    "tcp.srcport": ("TCP", "Source port"),
    "tcp.dstport": ("TCP", "Destination port"),
    "tcp.seq_raw": ("TCP", "Sequence number"),
    "tcp.ack_raw": ("TCP", "Acknowledgment number"),
    "tcp.hdr_len": ("TCP", "Data offset"),
    "tcp.window_size_value": ("TCP", "Window"),
    "tcp.checksum": ("TCP", "Checksum"),
    "tcp.urgent_pointer": ("TCP", "Urgent pointer"),
    "tcp.options.mss": ("TCP", "MSS"),
    "tcp.options.wscale": ("TCP", "Window scale"),
    "tcp.options.sack_perm": ("TCP", "SACK permitted"),
    "tcp.options.timestamp": ("TCP", "Timestamps"),
    "tcp.options.sack": ("TCP", "SACK"),
    "udp.srcport": ("UDP", "Source port"),
    "udp.dstport": ("UDP", "Destination port"),
    "udp.length": ("UDP", "Length"),
    "udp.checksum": ("UDP", "Checksum"),
    "icmp.type": ("ICMP", "Type"),
    "icmp.code": ("ICMP", "Code"),
    "icmp.checksum": ("ICMP", "Checksum"),
    "icmp.ident": ("ICMP", "Identifier"),
    "icmp.seq": ("ICMP", "Sequence number"),
    "icmp.mtu": ("ICMP", "Next-hop MTU"),
}


def test_dissection_byte_ranges_match_wireshark(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from synack.wire.dissect import dissect

    frames = _ethernet_frames()
    path = tmp_path / "fields.pcap"
    write_pcap(path, [(1_700_000_000 + i, f) for i, f in enumerate(frames)])
    pdml = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-T", "pdml"], capture_output=True, timeout=120
    )
    assert pdml.returncode == 0, pdml.stderr
    packets = ET.fromstring(pdml.stdout).findall("packet")
    assert len(packets) == len(frames)
    compared = 0
    for frame, packet in zip(frames, packets, strict=True):
        theirs: dict[str, tuple[int, int]] = {}
        for f in packet.iter("field"):
            name = f.get("name", "")
            # The first occurrence is the outer header (ICMP errors quote a second one).
            if name in FIELD_MAP and name not in theirs:
                theirs[name] = (int(f.get("pos", "-1")), int(f.get("size", "-1")))
        ours: dict[tuple[str, str], tuple[int, int]] = {}
        for layer in dissect(frame):
            for f in layer.fields:
                base = layer.name.removesuffix(" (quoted)")
                ours.setdefault((base, f.name), (f.byte_offset, f.byte_length))
        for name, where in theirs.items():
            assert ours.get(FIELD_MAP[name]) == where, (
                name,
                FIELD_MAP[name],
                where,
                ours.get(FIELD_MAP[name]),
            )
            compared += 1
    assert compared > 300
