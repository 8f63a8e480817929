"""A peer can never make the host raise: random and mutated frames are
counted and dropped, and the host keeps working."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from synack.stack import events as ev
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire import udp as wudp
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment
from tests.stack.netfix import mac, make_host

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")


def _valid_frames() -> list[bytes]:
    seg = TcpSegment(1234, 80, 1000, 0, TcpFlags.SYN, 65535, options=TcpOptions(mss=1460, wscale=7))
    frames = []
    for proto, payload in (
        (wip.PROTO_TCP, wtcp.build(seg, A, B)),
        (wip.PROTO_UDP, wudp.build(wudp.UdpDatagram(5, 7, b"hello"), A, B)),
        (wip.PROTO_ICMP, bytes([8, 0, 0xF7, 0xFF, 0, 0, 0, 0])),
    ):
        raw = wip.build(wip.Ipv4Packet(A, B, proto, payload, ident=7))
        frames.append(weth.build(weth.EthernetFrame(mac(2), mac(1), weth.ETHERTYPE_IPV4, raw)))
    return frames


VALID = _valid_frames()


@settings(max_examples=300)
@given(
    base=st.sampled_from(VALID),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 200),
)
def test_mutated_frames_never_raise(base: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    h = make_host(2, "10.213.0.2/24")
    h.tcp_listen(80)
    h.udp_open(7)
    data = bytearray(base)
    for pos, value in edits:
        if pos < len(data):
            data[pos] = value
    h.receive_frame(bytes(data[: max(cut, 14)] if cut < len(data) else data), 1.0)
    h.frames_to_send()
    while h.next_event() is not None:
        pass
    h.handle_timer(2.0)


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    h = make_host(2, "10.213.0.2/24")
    h.receive_frame(data, 1.0)
    h.receive_frame(mac(2) + mac(1) + b"\x08\x00" + data, 1.0)
    h.receive_frame(weth.BROADCAST + mac(1) + b"\x08\x06" + data, 1.0)
    h.frames_to_send()


def test_zero_ports_are_dropped_not_raised() -> None:
    h = make_host(2, "10.213.0.2/24")
    h.tcp_listen(80)
    seg = TcpSegment(0, 80, 1000, 0, TcpFlags.SYN, 65535)
    raw = wip.build(wip.Ipv4Packet(A, B, wip.PROTO_TCP, wtcp.build(seg, A, B)))
    h.receive_frame(weth.build(weth.EthernetFrame(mac(2), mac(1), weth.ETHERTYPE_IPV4, raw)), 1.0)
    assert h.counters["tcp-bad-port"] == 1
    # Still serving.
    ok = TcpSegment(1234, 80, 1000, 0, TcpFlags.SYN, 65535)
    raw = wip.build(wip.Ipv4Packet(A, B, wip.PROTO_TCP, wtcp.build(ok, A, B)))
    h.receive_frame(weth.build(weth.EthernetFrame(mac(2), mac(1), weth.ETHERTYPE_IPV4, raw)), 1.0)
    assert h.counters["tcp-passive-opens"] == 1
    assert not [e for e in iter(h.next_event, None) if isinstance(e, ev.ArpRefused)]


def test_land_attack_and_loopback_sources_are_martians() -> None:
    h = make_host(2, "10.213.0.2/24")
    h.tcp_listen(80)
    for src in (B, IPv4Address("127.0.0.1")):
        seg = TcpSegment(80, 80, 1000, 0, TcpFlags.SYN, 65535)
        raw = wip.build(wip.Ipv4Packet(src, B, wip.PROTO_TCP, wtcp.build(seg, src, B)))
        h.receive_frame(
            weth.build(weth.EthernetFrame(mac(2), mac(1), weth.ETHERTYPE_IPV4, raw)), 1.0
        )
    assert h.counters["ipv4-martian"] == 2
    assert h.counters["tcp-passive-opens"] == 0 and h.frames_to_send() == []
