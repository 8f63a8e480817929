"""The router on the host's interface code: ARP checks, ICMP error rules and rate limit."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

from synack.stack.router import Router, RouterInterface
from synack.wire import arp as warp
from synack.wire import ethernet as weth
from synack.wire import icmp as wicmp
from synack.wire import ipv4 as wip
from tests.stack.netfix import mac

A = IPv4Address("10.213.1.10")
B = IPv4Address("10.213.2.10")
R1 = IPv4Address("10.213.1.1")


def _router(**kw: float) -> Router:
    return Router(
        [
            RouterInterface(mac(0x81), IPv4Interface(f"{R1}/24")),
            RouterInterface(mac(0x82), IPv4Interface("10.213.2.1/24")),
        ],
        **kw,  # type: ignore[arg-type]
    )


def _arp(op: int, eth_src: bytes, sender_mac: bytes, sender: IPv4Address) -> bytes:
    pkt = warp.ArpPacket(op, sender_mac, sender, bytes(6) if op == 1 else mac(0x81), R1)
    dst = weth.BROADCAST if op == warp.OP_REQUEST else mac(0x81)
    return weth.build(weth.EthernetFrame(dst, eth_src, weth.ETHERTYPE_ARP, warp.build(pkt)))


def _ip(pkt: wip.Ipv4Packet) -> bytes:
    return weth.build(weth.EthernetFrame(mac(0x81), mac(1), weth.ETHERTYPE_IPV4, wip.build(pkt)))


def _learn_a(router: Router) -> None:
    # A asks for the router: the router answers and learns A (no ARP later).
    out = router.receive(0, _arp(warp.OP_REQUEST, mac(1), mac(1), A), 0.0)
    assert len(out) == 1 and warp.parse(weth.parse(out[0][1]).payload).op == warp.OP_REPLY


def _icmp_out(out: list[tuple[int, bytes]]) -> list[wicmp.IcmpMessage]:
    found = []
    for _port, frame in out:
        eth = weth.parse(frame)
        if eth.ethertype == weth.ETHERTYPE_IPV4:
            pkt = wip.parse(eth.payload)
            if pkt.proto == wip.PROTO_ICMP:
                found.append(wicmp.parse(pkt.payload))
    return found


def test_router_arp_has_the_hosts_spoofing_checks() -> None:
    router = _router()
    # The ARP sender MAC is not the frame's source: a forged body, not learnt.
    assert router.receive(0, _arp(warp.OP_REQUEST, mac(7), mac(1), A), 0.0) == []
    assert router.counters["arp-mac-mismatch"] == 1
    # A reply nobody asked for is refused (Linux arp_accept=0).
    assert router.receive(0, _arp(warp.OP_REPLY, mac(1), mac(1), A), 0.0) == []
    assert router.counters["arp-refused-unsolicited"] == 1
    # Someone claiming the router's own address is never learnt.
    assert router.receive(0, _arp(warp.OP_REQUEST, mac(1), mac(1), R1), 0.0) == []
    assert router.counters["arp-address-conflict"] == 1
    assert all(not cache.entries for cache in router.arp)


def test_router_icmp_errors_are_rate_limited() -> None:
    router = _router(icmp_errors_per_second=1.0, icmp_error_burst=2)
    _learn_a(router)
    expired = wip.Ipv4Packet(A, B, wip.PROTO_UDP, bytes(12), ttl=1)
    errors = [m for _ in range(5) for m in _icmp_out(router.receive(0, _ip(expired), 1.0))]
    assert [(m.type, m.code) for m in errors] == [(wicmp.TYPE_TIME_EXCEEDED, 0)] * 2
    assert router.counters["ttl-exceeded"] == 5
    assert router.counters["icmp-errors-ratelimited"] == 3
    # A second later the bucket has a token again.
    assert len(_icmp_out(router.receive(0, _ip(expired), 2.0))) == 1


def test_router_sends_no_error_about_an_icmp_error_or_a_later_fragment() -> None:
    router = _router()
    _learn_a(router)
    error = wicmp.build(wicmp.IcmpMessage(wicmp.TYPE_DEST_UNREACHABLE, 3, 0, bytes(28)))
    about_error = wip.Ipv4Packet(A, B, wip.PROTO_ICMP, error, ttl=1)
    later_fragment = wip.Ipv4Packet(A, B, wip.PROTO_UDP, bytes(16), ttl=1, frag_offset=8)
    echo = wicmp.build(wicmp.echo(wicmp.TYPE_ECHO_REQUEST, 1, 1, b"x"))
    about_echo = wip.Ipv4Packet(A, B, wip.PROTO_ICMP, echo, ttl=1)
    assert _icmp_out(router.receive(0, _ip(about_error), 1.0)) == []
    assert _icmp_out(router.receive(0, _ip(later_fragment), 1.0)) == []
    assert len(_icmp_out(router.receive(0, _ip(about_echo), 1.0))) == 1
    assert router.counters["ttl-exceeded"] == 3
