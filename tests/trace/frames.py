"""Frames built with synack's wire builders for the trace tests."""

from __future__ import annotations

from ipaddress import IPv4Address

from synack.wire import arp, ethernet, ipv4, tcp, udp
from synack.wire.tcp import TcpFlags, TcpOptions

A = IPv4Address("172.16.10.1")
B = IPv4Address("172.16.10.2")
MAC = {A: b"\x02\x00\x00\x00\x00\x01", B: b"\x02\x00\x00\x00\x00\x02"}

S, SA, AK, PA, FA, R, RA = (
    TcpFlags.SYN,
    TcpFlags.SYN | TcpFlags.ACK,
    TcpFlags.ACK,
    TcpFlags.PSH | TcpFlags.ACK,
    TcpFlags.FIN | TcpFlags.ACK,
    TcpFlags.RST,
    TcpFlags.RST | TcpFlags.ACK,
)


def tcp_frame(
    src: IPv4Address,
    dst: IPv4Address,
    sport: int,
    dport: int,
    flags: TcpFlags,
    seq: int,
    ack: int = 0,
    payload: bytes = b"",
    window: int = 64240,
    options: TcpOptions | None = None,
) -> bytes:
    seg = tcp.TcpSegment(
        sport, dport, seq % 2**32, ack % 2**32, flags, window, payload, options or TcpOptions()
    )
    packet = ipv4.Ipv4Packet(src, dst, ipv4.PROTO_TCP, tcp.build(seg, src, dst))
    return ethernet.build(
        ethernet.EthernetFrame(MAC[dst], MAC[src], ethernet.ETHERTYPE_IPV4, ipv4.build(packet))
    )


def udp_frame(src: IPv4Address, dst: IPv4Address, sport: int, dport: int, payload: bytes) -> bytes:
    dgram = udp.build(udp.UdpDatagram(sport, dport, payload), src, dst)
    packet = ipv4.build(ipv4.Ipv4Packet(src, dst, ipv4.PROTO_UDP, dgram))
    return ethernet.build(
        ethernet.EthernetFrame(MAC[dst], MAC[src], ethernet.ETHERTYPE_IPV4, packet)
    )


def arp_request(src: IPv4Address, target: IPv4Address) -> bytes:
    body = arp.build(arp.ArpPacket(arp.OP_REQUEST, MAC[src], src, b"\x00" * 6, target))
    return ethernet.build(
        ethernet.EthernetFrame(ethernet.BROADCAST, MAC[src], ethernet.ETHERTYPE_ARP, body)
    )


def arp_reply(src: IPv4Address, target: IPv4Address) -> bytes:
    body = arp.build(arp.ArpPacket(arp.OP_REPLY, MAC[src], src, MAC[target], target))
    return ethernet.build(
        ethernet.EthernetFrame(MAC[target], MAC[src], ethernet.ETHERTYPE_ARP, body)
    )


# A textbook conversation: A:40000 opens to B:8898, sends "hello", B answers
# "world!", A closes first. ISNs 1000 (A) and 5000 (B).
ISN_A, ISN_B = 1000, 5000
CONVERSATION: list[tuple[float, bytes]] = [
    (0.000, arp_request(A, B)),
    (0.001, arp_reply(B, A)),
    (0.010, tcp_frame(A, B, 40000, 8898, S, ISN_A, options=TcpOptions(mss=1460))),
    (0.020, tcp_frame(B, A, 8898, 40000, SA, ISN_B, ISN_A + 1, options=TcpOptions(mss=1460))),
    (0.030, tcp_frame(A, B, 40000, 8898, AK, ISN_A + 1, ISN_B + 1)),
    (0.040, tcp_frame(A, B, 40000, 8898, PA, ISN_A + 1, ISN_B + 1, b"hello")),
    (0.050, tcp_frame(B, A, 8898, 40000, PA, ISN_B + 1, ISN_A + 6, b"world!")),
    (0.060, tcp_frame(A, B, 40000, 8898, AK, ISN_A + 6, ISN_B + 7)),
    (0.070, tcp_frame(A, B, 40000, 8898, FA, ISN_A + 6, ISN_B + 7)),
    (0.080, tcp_frame(B, A, 8898, 40000, AK, ISN_B + 7, ISN_A + 7)),
    (0.090, tcp_frame(B, A, 8898, 40000, FA, ISN_B + 7, ISN_A + 7)),
    (0.100, tcp_frame(A, B, 40000, 8898, AK, ISN_A + 7, ISN_B + 8)),
]
