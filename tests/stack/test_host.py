from __future__ import annotations

import dataclasses
import errno
from ipaddress import IPv4Address, IPv4Interface

import pytest

from synack.errors import LocalProtocolError
from synack.stack import events as ev
from synack.stack.arp import ArpPolicy, NeighbourState
from synack.stack.host import EPHEMERAL_HIGH, EPHEMERAL_LOW, Host, HostConfig, NoRouteError
from synack.wire import arp as warp
from synack.wire import ethernet as weth
from synack.wire import icmp as wicmp
from synack.wire import ipv4 as wip
from synack.wire import udp as wudp
from tests.stack.netfix import mac, make_host, routed, two_hosts

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")


def events(host: Host) -> list[object]:
    out = []
    while (e := host.next_event()) is not None:
        out.append(e)
    return out


def test_gratuitous_arp_at_start() -> None:
    h = make_host(1, "10.213.0.1/24")
    h.start(0.0)
    (frame,) = h.frames_to_send()
    eth = weth.parse(frame)
    assert eth.dst == weth.BROADCAST and eth.ethertype == weth.ETHERTYPE_ARP
    pkt = warp.parse(eth.payload)
    assert pkt.sender_ip == pkt.target_ip == A and pkt.sender_mac == mac(1)


def test_ping_resolves_arp_and_gets_reply() -> None:
    lan, a, b = two_hosts()
    assert a.arp.state(B, lan.now) is None
    a.ping(B, 7, 1, b"hello", lan.now)
    lan.run()
    replies = [e for e in events(a) if isinstance(e, ev.EchoReply)]
    assert [(r.src, r.ident, r.sequence, r.data) for r in replies] == [(B, 7, 1, b"hello")]
    assert a.arp.state(B, lan.now) is NeighbourState.REACHABLE
    assert b.counters["icmp-echo-replies-out"] == 1
    assert a.counters["arp-requests-out"] == 1


def test_arp_ages_to_stale_then_reprobes() -> None:
    lan, a, _b = two_hosts()
    a.ping(B, 1, 1, b"", lan.now)
    lan.run()
    lan.run(until=lan.now + 31)
    assert a.arp.state(B, lan.now) is NeighbourState.STALE
    a.ping(B, 1, 2, b"", lan.now)
    lan.run(until=lan.now + 1)
    # Used while STALE: still used, probed after the DELAY interval (Linux).
    assert a.arp.state(B, lan.now) is NeighbourState.STALE
    assert len([e for e in events(a) if isinstance(e, ev.EchoReply)]) == 2
    lan.run(until=lan.now + 5)
    assert a.arp.state(B, lan.now) is NeighbourState.REACHABLE
    assert a.counters["arp-requests-out"] == 2


def test_arp_failure_drops_pending_and_reports() -> None:
    lan, a, _ = two_hosts()
    a.ping(IPv4Address("10.213.0.99"), 1, 1, b"x", lan.now)
    lan.run(until=lan.now + 10)
    (e,) = [e for e in events(a) if isinstance(e, ev.NeighbourUnreachable)]
    assert e.ip == IPv4Address("10.213.0.99") and e.dropped == 1
    assert a.counters["arp-requests-out"] == 3  # max_tries
    assert a.arp.get_timer() is None or a.arp.get_timer() > lan.now


def _arp_frame(op: int, sender_mac: bytes, sender_ip: str, target_ip: str, dst: bytes) -> bytes:
    pkt = warp.ArpPacket(op, sender_mac, IPv4Address(sender_ip), bytes(6), IPv4Address(target_ip))
    return weth.build(weth.EthernetFrame(dst, sender_mac, weth.ETHERTYPE_ARP, warp.build(pkt)))


def test_unsolicited_reply_refused_and_reported() -> None:
    h = make_host(1, "10.213.0.1/24")
    seen: list[object] = []
    h.observers.append(seen.append)
    evil = b"\x02\xee\xee\xee\xee\xee"
    h.receive_frame(_arp_frame(warp.OP_REPLY, evil, "10.213.0.7", "10.213.0.1", mac(1)), 1.0)
    assert h.arp.state(IPv4Address("10.213.0.7"), 1.0) is None
    assert h.counters["arp-refused-unsolicited"] == 1
    (e,) = events(h)
    assert isinstance(e, ev.ArpRefused) and e.reason == "unsolicited" and e.mac == evil
    assert [type(r).__name__ for r in seen] == ["FrameTrace", "ArpRefused"]


def test_reply_replacing_fresh_entry_refused_unless_policy_allows() -> None:
    lan, a, _b = two_hosts()
    a.ping(B, 1, 1, b"", lan.now)
    lan.run()
    evil = b"\x02\xee\xee\xee\xee\xee"
    a.receive_frame(_arp_frame(warp.OP_REPLY, evil, "10.213.0.2", "10.213.0.1", mac(1)), lan.now)
    assert a.arp.entries[B].mac == mac(2)
    assert a.counters["arp-refused-conflict"] == 1
    # A gratuitous request trying the same is refused too.
    a.receive_frame(
        _arp_frame(warp.OP_REQUEST, evil, "10.213.0.2", "10.213.0.2", weth.BROADCAST), lan.now
    )
    assert a.arp.entries[B].mac == mac(2)
    assert a.counters["arp-refused-conflict"] == 2
    # Permissive policy: the newest answer wins (RFC 826 as written).
    lenient = make_host(
        3, "10.213.0.3/24", arp_policy=ArpPolicy(accept_unsolicited=True, allow_override_fresh=True)
    )
    lenient.receive_frame(_arp_frame(warp.OP_REPLY, evil, "10.213.0.2", "10.213.0.3", mac(3)), 0.0)
    assert lenient.arp.entries[B].mac == evil


def test_udp_roundtrip_and_port_unreachable() -> None:
    lan, a, b = two_hosts()
    server = b.udp_open(9000)
    client = a.udp_open()
    assert 49152 <= client.local[1] <= 65535
    client.sendto(b"time?", (B, 9000), lan.now)
    lan.run()
    assert [type(e) for e in events(b)] == [ev.DatagramReadable]
    data, addr = server.recvfrom()  # type: ignore[misc]
    assert data == b"time?" and addr == (A, client.local[1])
    server.sendto(b"12:00", addr, lan.now)
    lan.run()
    assert client.recvfrom() == (b"12:00", (B, 9000))
    # Closed port: ICMP port unreachable, reported to a connected socket.
    client.remote = (B, 9999)
    client.sendto(b"x", (B, 9999), lan.now)
    lan.run()
    assert b.counters["udp-closed-port"] == 1
    assert b.counters["icmp-errors-out-3-3"] == 1
    errs = [e for e in events(a) if isinstance(e, ev.DatagramError)]
    assert errs and errs[0].errno == errno.ECONNREFUSED and client.error == errno.ECONNREFUSED


def test_udp_queue_bounded_drops_and_counts() -> None:
    lan, a, b = two_hosts(udp_queue_limit=4)
    server = b.udp_open(7)
    client = a.udp_open()
    for i in range(10):
        client.sendto(bytes([i]), (B, 7), lan.now)
    lan.run()
    got = []
    while (d := server.recvfrom()) is not None:
        got.append(d[0])
    assert got == [b"\x00", b"\x01", b"\x02", b"\x03"]
    assert server.dropped == 6 and b.counters["udp-queue-full"] == 6


def test_udp_bind_errors() -> None:
    h = make_host(1, "10.213.0.1/24")
    h.udp_open(53)
    with pytest.raises(LocalProtocolError):
        h.udp_open(53)
    with pytest.raises(LocalProtocolError):
        h.udp_open(54, IPv4Address("10.213.0.9"))


def test_fragmentation_and_reassembly_end_to_end() -> None:
    lan, a, b = two_hosts()
    server = b.udp_open(9)
    client = a.udp_open()
    payload = bytes(range(256)) * 20  # 5120 octets: four fragments at MTU 1500
    client.sendto(payload, (B, 9), lan.now)
    lan.run()
    assert a.counters["ipv4-fragmented"] == 1
    assert server.recvfrom() == (payload, (A, client.local[1]))
    assert b.counters["reasm-ok"] == 1


def test_routing_rule_on_link_vs_gateway() -> None:
    h = make_host(1, "10.213.0.1/24", gateway="10.213.0.254")
    assert h.next_hop(IPv4Address("10.213.0.77")) == IPv4Address("10.213.0.77")
    assert h.next_hop(IPv4Address("10.213.1.77")) == IPv4Address("10.213.0.254")
    lone = make_host(2, "10.213.0.2/16")
    assert lone.next_hop(IPv4Address("10.213.9.9")) == IPv4Address("10.213.9.9")
    with pytest.raises(NoRouteError):
        lone.next_hop(IPv4Address("10.214.0.1"))


def test_ping_through_router_with_fragmentation() -> None:
    lan, a, b, router = routed()
    big = bytes(1000)  # crosses the 576-MTU side in fragments
    a.ping(IPv4Address("10.213.2.10"), 5, 1, big, lan.now)
    lan.run()
    replies = [e for e in events(a) if isinstance(e, ev.EchoReply)]
    assert len(replies) == 1 and replies[0].data == big
    assert router.counters["fragmented"] >= 1
    assert b.counters["reasm-ok"] == 1


def test_router_ttl_exceeded() -> None:
    lan, a, b, router = routed()
    client = a.udp_open()
    raw = wip.build(
        wip.Ipv4Packet(
            A := IPv4Address("10.213.1.10"),
            IPv4Address("10.213.2.10"),
            wip.PROTO_UDP,
            wudp.build(wudp.UdpDatagram(client.local[1], 9, b"x"), A, IPv4Address("10.213.2.10")),
            ttl=1,
        )
    )
    router_mac = mac(0x81)
    lan.run()
    frame = weth.build(weth.EthernetFrame(router_mac, mac(1), weth.ETHERTYPE_IPV4, raw))
    out = router.receive(0, frame, lan.now)
    assert router.counters["ttl-exceeded"] == 1
    assert b.counters["udp-in"] == 0
    assert out  # the ICMP error (or the ARP request for its destination)


def _ip_frame(pkt: wip.Ipv4Packet, dst_mac: bytes) -> bytes:
    return weth.build(weth.EthernetFrame(dst_mac, mac(9), weth.ETHERTYPE_IPV4, wip.build(pkt)))


def test_reassembly_overlap_discards_and_duplicates_are_fine() -> None:
    h = make_host(2, "10.213.0.2/24")
    ep = h.udp_open(9)
    src = IPv4Address("10.213.0.9")
    body = wudp.build(wudp.UdpDatagram(1000, 9, bytes(range(40))), src, B)  # 48 octets
    f1 = wip.Ipv4Packet(src, B, wip.PROTO_UDP, body[:24], ident=1, more_fragments=True)
    f2 = wip.Ipv4Packet(src, B, wip.PROTO_UDP, body[24:], ident=1, frag_offset=3)
    h.receive_frame(_ip_frame(f2, mac(2)), 0.0)
    h.receive_frame(_ip_frame(f2, mac(2)), 0.0)  # exact duplicate: harmless
    h.receive_frame(_ip_frame(f1, mac(2)), 0.0)
    assert ep.recvfrom() == (bytes(range(40)), (src, 1000))
    # Overlap with different bytes: the whole datagram is discarded.
    g1 = wip.Ipv4Packet(src, B, wip.PROTO_UDP, body[:24], ident=2, more_fragments=True)
    evil = wip.Ipv4Packet(src, B, wip.PROTO_UDP, b"\xff" * 8 + body[24:], ident=2, frag_offset=2)
    h.receive_frame(_ip_frame(g1, mac(2)), 0.0)
    h.receive_frame(_ip_frame(evil, mac(2)), 0.0)
    assert h.counters["reasm-overlap"] == 1
    assert ep.recvfrom() is None and len(h.reassembler) == 0


def test_reassembly_timeout_and_limits() -> None:
    h = make_host(2, "10.213.0.2/24", reassembly_max_datagrams=2)
    src = IPv4Address("10.213.0.9")
    for ident in range(3):
        frag = wip.Ipv4Packet(src, B, wip.PROTO_UDP, bytes(16), ident=ident, more_fragments=True)
        h.receive_frame(_ip_frame(frag, mac(2)), 0.0)
    assert len(h.reassembler) == 2 and h.counters["reasm-evicted"] == 1
    assert h.get_timer() == pytest.approx(30.0)
    h.handle_timer(30.0)
    assert len(h.reassembler) == 0 and h.counters["reasm-timeout"] == 2
    # Oversized reassembly ("ping of death") refused.
    pod = wip.Ipv4Packet(src, B, wip.PROTO_ICMP, bytes(16), ident=9, frag_offset=8189)
    h.receive_frame(_ip_frame(pod, mac(2)), 31.0)
    assert h.counters["reasm-bad-fragment"] == 1


def test_malformed_counted_by_reason_and_host_keeps_working() -> None:
    lan, a, b = two_hosts()
    good = wip.build(wip.Ipv4Packet(A, B, wip.PROTO_ICMP, wicmp.build(wicmp.echo(8, 1, 1, b""))))
    bad = bytearray(good)
    bad[10] ^= 0xFF  # header checksum
    b.receive_frame(
        weth.build(weth.EthernetFrame(mac(2), mac(1), weth.ETHERTYPE_IPV4, bytes(bad))), lan.now
    )
    b.receive_frame(b"\x00" * 5, lan.now)
    assert b.counters["ipv4-bad-checksum"] == 1
    assert b.counters["ethernet-truncated"] == 1
    a.ping(B, 1, 1, b"ok", lan.now)
    lan.run()
    assert any(isinstance(e, ev.EchoReply) for e in events(a))


def test_frames_observed_in_and_out() -> None:
    lan, a, _b = two_hosts()
    seen: list[ev.FrameTrace] = []
    a.observers.append(seen.append)  # type: ignore[arg-type]
    a.ping(B, 1, 1, b"", lan.now)
    lan.run()
    dirs = [r.direction for r in seen]
    assert dirs.count("out") == 2 and dirs.count("in") == 2  # ARP + echo each way


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        HostConfig(mac=b"\x01" * 6, interface=IPv4Interface("10.213.0.1/24"))
    with pytest.raises(ValueError):
        HostConfig(
            mac=mac(1), interface=IPv4Interface("10.213.0.1/24"), gateway=IPv4Address("10.9.9.9")
        )


def test_icmp_errors_rate_limited_and_broadcast_ping_ignored() -> None:
    lan, a, b = two_hosts()
    a.ping(B, 1, 1, b"", lan.now)  # resolve ARP first (its pending queue holds 64)
    lan.run()
    assert len([e for e in events(a) if isinstance(e, ev.EchoReply)]) == 1
    client = a.udp_open()
    for _ in range(120):
        client.sendto(b"x", (B, 4444), lan.now)
    lan.run(until=lan.now + 0.001)
    # A burst of 50 (Linux icmp_msgs_burst), then the token bucket refills.
    assert b.counters["icmp-errors-out-3-3"] == 50
    assert b.counters["icmp-errors-ratelimited"] == 70
    # Echo requests to the broadcast address are not answered (smurf defence).
    a.ping(IPv4Address("10.213.0.255"), 1, 1, b"", lan.now)
    lan.run()
    assert b.counters["icmp-echo-broadcast-ignored"] == 1
    assert not [e for e in events(a) if isinstance(e, ev.EchoReply)]


def test_port_queries_and_ephemeral_pick_for_adapters() -> None:
    h = make_host(1, "10.213.0.1/24")
    port = h.pick_ephemeral_port()
    assert EPHEMERAL_LOW <= port <= EPHEMERAL_HIGH
    assert not h.tcp_port_in_use(port) and not h.tcp_has_listener(port)
    h.tcp_listen(port)
    assert h.tcp_port_in_use(port) and h.tcp_has_listener(port)
    # A port a connection uses is in use, though nothing listens on it.
    stream = h.tcp_connect((IPv4Address("10.213.0.2"), 80), 0.0)
    assert h.tcp_port_in_use(stream.local[1]) and not h.tcp_has_listener(stream.local[1])
    assert h.pick_ephemeral_port() not in (port, stream.local[1])
    ep = h.udp_open(5353)
    assert h.udp_port_in_use(5353) and not h.tcp_port_in_use(5353)
    ep.close()
    assert not h.udp_port_in_use(5353)


def test_offload_is_set_through_enable_offload() -> None:
    h = make_host(1, "10.213.0.1/24")
    assert not h.split and not h.tso
    with pytest.raises(ValueError):
        h.enable_offload(split=False, tso=True)  # TSO frames are split frames
    h.enable_offload(split=True, tso=True)
    assert h.split and h.tso
    h.enable_offload(split=True)
    assert h.split and not h.tso


def test_tcp_state_changes_are_made_only_while_observed() -> None:
    """A host's connections record every transition; the StateChanged events
    (the observers' feed) are made only while someone observes, from the
    moment an observer is added, for connections already open too."""
    lan, a, b = two_hosts()
    listener = b.tcp_listen(7)
    client = a.tcp_connect((B, 7), lan.now)
    lan.run()
    server = listener.accept()
    assert server is not None
    assert [t.new.value for t in server.conn.transitions] == [
        "LISTEN",
        "SYN-RECEIVED",
        "ESTABLISHED",
    ]
    seen: list[ev.TcpStateTrace] = []
    b.observers.append(lambda r: seen.append(r) if isinstance(r, ev.TcpStateTrace) else None)
    server.close(lan.now)
    lan.run()
    client.close(lan.now)
    lan.run()
    assert [(c.old, c.new) for c in seen] == [
        ("ESTABLISHED", "FIN-WAIT-1"),
        ("FIN-WAIT-1", "FIN-WAIT-2"),
        ("FIN-WAIT-2", "TIME-WAIT"),
    ]
    assert seen[0].change.trigger.value == "call" and seen[2].change.segment is not None


def test_a_read_that_reopens_a_closed_window_sends_the_update_through_the_host() -> None:
    """TcpStream.receive touches the connection only when the read made an ACK
    due: a read that reopens a full window sends the window update at once."""
    lan, a, b = two_hosts()
    small = dataclasses.replace(b.tcp_config, receive_buffer=4000, window_scale=False)
    listener = b.tcp_listen(7, config=small)
    client = a.tcp_connect((B, 7), lan.now)
    lan.run()
    server = listener.accept()
    assert server is not None
    assert client.send(b"z" * 9000, lan.now) == 9000
    lan.run(until=lan.now + 0.5)
    got = server.conn.readable_bytes
    assert 0 < got <= 4000  # the window is (nearly) shut: the rest waits at A
    out: list[bytes] = []
    b.observers.append(
        lambda r: (
            out.append(r.frame) if isinstance(r, ev.FrameTrace) and r.direction == "out" else None
        )
    )
    assert server.receive(4000, lan.now) == b"z" * got
    lan.run(until=lan.now + 0.5)
    assert out and out[0][14 + 20 + 13] == 0x10  # first, a pure ACK: the window update
    more = server.receive(9000, lan.now)  # the update let A send on
    assert more and set(more) == {ord("z")}


def test_touch_later_dates_the_segments_and_timers_at_its_own_now() -> None:
    """A connection idle for a while: data given to it directly and touched
    later is sent by the host's next drain with its timers armed from now (a
    stale clock would arm the retransmission timer in the past)."""
    lan, a, b = two_hosts()
    listener = b.tcp_listen(7)
    client = a.tcp_connect((B, 7), lan.now)
    lan.run()
    assert listener.accept() is not None
    now = lan.now + 10.0  # nothing touched A's connections meanwhile
    assert client.conn.send(b"late", now) == 4
    a.tcp_touch_later(client, now)
    (frame,) = a.drain_frames()
    assert isinstance(frame, bytes) and frame.endswith(b"late")
    deadline = client.conn.get_timer()
    assert deadline is not None and deadline > now
