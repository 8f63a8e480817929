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
