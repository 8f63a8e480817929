from __future__ import annotations

import random
from ipaddress import IPv4Address

from synack.stack import events as ev
from synack.stack.host import Host, TcpStream
from synack.stack.offload import coalesce
from synack.tcp import events as tev
from synack.tcp.states import State
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.tcp import TcpFlags, TcpSegment
from tests.stack.netfix import mac, make_host, two_hosts

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")


def drain(host: Host) -> list[object]:
    out = []
    while (e := host.next_event()) is not None:
        out.append(e)
    return out


def kinds(stream: TcpStream) -> list[str]:
    out = [type(e).__name__ for e in stream.pending]
    stream.pending.clear()
    return out


def test_connect_echo_close_both_sides() -> None:
    lan, a, b = two_hosts()
    states: list[ev.TcpStateTrace] = []
    b.observers.append(lambda r: states.append(r) if isinstance(r, ev.TcpStateTrace) else None)
    listener = b.tcp_listen(7)
    client = a.tcp_connect((B, 7), lan.now)
    lan.run()
    assert client.conn.state is State.ESTABLISHED
    server = listener.accept()
    assert server is not None and server.conn.state is State.ESTABLISHED
    assert server.remote == (A, client.local[1])
    assert [(s.old, s.new) for s in states] == [
        ("CLOSED", "LISTEN"),
        ("LISTEN", "SYN-RECEIVED"),
        ("SYN-RECEIVED", "ESTABLISHED"),
    ]
    payload = bytes(random.Random(3).randbytes(100_000))
    sent = 0
    got = bytearray()
    echoed = bytearray()
    for _ in range(2000):
        if sent < len(payload):
            sent += client.send(payload[sent : sent + 16384], lan.now)
        chunk = server.receive(1 << 20, lan.now)
        if chunk:
            got += chunk
            assert server.send(chunk, lan.now) == len(chunk)
        echoed += client.receive(1 << 20, lan.now)
        if len(echoed) == len(payload):
            break
        lan.run(until=lan.now + 0.01)
    assert bytes(got) == payload and bytes(echoed) == payload
    client.close(lan.now)
    lan.run()
    assert "EndOfStream" in kinds(server)
    server.close(lan.now)
    lan.run()
    assert client.conn.state is State.TIME_WAIT
    assert server.gone and (server.key not in b.connections)
    lan.run(until=lan.now + 121)  # 2*MSL
    assert client.gone and not a.connections


def test_rst_for_closed_port_refuses_connect() -> None:
    lan, a, b = two_hosts()
    client = a.tcp_connect((B, 9), lan.now)
    lan.run()
    assert "ConnectionRefused" in kinds(client)
    assert b.counters["tcp-closed-port"] == 1 and b.counters["tcp-rst-out"] == 1
    assert client.gone


def test_backlog_full_drops_syn_until_accepted() -> None:
    lan, a, b = two_hosts()
    listener = b.tcp_listen(80, backlog=2)
    clients = [a.tcp_connect((B, 80), lan.now) for _ in range(2)]
    lan.run()
    clients.append(a.tcp_connect((B, 80), lan.now))
    lan.run(until=lan.now + 0.5)
    assert [c.conn.state for c in clients] == [State.ESTABLISHED, State.ESTABLISHED, State.SYN_SENT]
    assert b.counters["tcp-listen-overflow"] == 1
    assert listener.accept() is not None
    lan.run(until=lan.now + 4)  # the third retries its SYN (RTO 1 s, then 2 s)
    assert all(c.conn.state is State.ESTABLISHED for c in clients)
    assert listener.accept() is not None and listener.accept() is not None
    assert listener.accept() is None


def _flood(b: Host, lan: object, a: Host, count: int) -> TcpStream:
    rng = random.Random(5)
    client = None
    for i in range(count):
        src = IPv4Address(f"10.213.0.{100 + i % 100}")
        syn = TcpSegment(
            rng.randrange(1024, 65535), 80, rng.randrange(1 << 32), 0, TcpFlags.SYN, 65535
        )
        raw = wip.build(wip.Ipv4Packet(src, B, wip.PROTO_TCP, wtcp.build(syn, src, B)))
        b.receive_frame(
            weth.build(weth.EthernetFrame(mac(2), mac(99), weth.ETHERTYPE_IPV4, raw)),
            lan.now,  # type: ignore[attr-defined]
        )
        if i == count // 2:
            client = a.tcp_connect((B, 80), lan.now)  # type: ignore[attr-defined]
            lan.run(until=lan.now + 0.01)  # type: ignore[attr-defined]
    lan.run(until=lan.now + 0.5)  # type: ignore[attr-defined]
    assert client is not None
    return client


def test_syn_flood_answered_with_cookies_and_real_client_connects() -> None:
    lan, a, b = two_hosts()
    listener = b.tcp_listen(80, syn_backlog=16)
    client = _flood(b, lan, a, 200)
    assert b.counters["tcp-syncookies-sent"] >= 180
    assert len(listener.half_open) <= 16
    assert client.conn.state is State.ESTABLISHED
    server = listener.accept()
    assert server is not None and server.remote == client.local
    # The cookie connection works like any other (its options kept in the TSval).
    client.send(b"through a cookie", lan.now)
    lan.run()
    assert server.receive(100, lan.now) == b"through a cookie"
    assert b.counters["tcp-syncookies-ok"] == 1
    # A forged ACK with a wrong cookie is refused with a reset.
    src = IPv4Address("10.213.0.77")
    bogus = TcpSegment(4000, 80, 1000, 12345, TcpFlags.ACK, 65535)
    raw = wip.build(wip.Ipv4Packet(src, B, wip.PROTO_TCP, wtcp.build(bogus, src, B)))
    b.receive_frame(
        weth.build(weth.EthernetFrame(mac(2), mac(99), weth.ETHERTYPE_IPV4, raw)), lan.now
    )
    assert b.counters["tcp-syncookies-bad"] == 1 and listener.accept() is None


def test_syn_flood_evicts_half_open_and_real_client_connects() -> None:
    lan, a, b = two_hosts(syn_cookies=False)
    listener = b.tcp_listen(80, syn_backlog=16)
    rng = random.Random(5)
    for i in range(200):
        src = IPv4Address(f"10.213.0.{100 + i % 100}")
        syn = TcpSegment(
            rng.randrange(1024, 65535), 80, rng.randrange(1 << 32), 0, TcpFlags.SYN, 65535
        )
        raw = wip.build(wip.Ipv4Packet(src, B, wip.PROTO_TCP, wtcp.build(syn, src, B)))
        b.receive_frame(
            weth.build(weth.EthernetFrame(mac(2), mac(99), weth.ETHERTYPE_IPV4, raw)), lan.now
        )
        if i == 100:
            client = a.tcp_connect((B, 80), lan.now)
            lan.run(until=lan.now + 0.01)
    lan.run(until=lan.now + 0.5)
    assert b.counters["tcp-synq-evicted"] >= 150
    assert len(listener.half_open) <= 16
    assert client.conn.state is State.ESTABLISHED
    assert listener.accept() is not None


def test_many_short_connections_leave_nothing_behind() -> None:
    lan, a, b = two_hosts()
    listener = b.tcp_listen(13)
    for _ in range(50):
        c = a.tcp_connect((B, 13), lan.now)
        lan.run(until=lan.now + 0.01)
        s = listener.accept()
        assert s is not None
        s.send(b"daytime\r\n", lan.now)
        s.close(lan.now)
        lan.run(until=lan.now + 0.01)
        assert c.receive(100, lan.now) == b"daytime\r\n"
        c.close(lan.now)
        lan.run(until=lan.now + 0.01)
    # The server closed first: it holds TIME-WAIT; the clients are gone.
    assert not a.connections
    lan.run(until=lan.now + 121)
    assert not b.connections
    assert a.get_timer() is None or a.get_timer() > lan.now


def test_loopback_connection_on_one_host() -> None:
    h = make_host(1, "10.213.0.1/24")
    listener = h.tcp_listen(5000, IPv4Address("127.0.0.1"))
    c = h.tcp_connect((IPv4Address("127.0.0.1"), 5000), 0.0)
    s = listener.accept()
    assert s is not None and c.conn.state is State.ESTABLISHED
    c.send(b"ping", 0.0)
    assert s.receive(10, 0.0) == b"ping"
    assert h.frames_to_send() == []  # nothing went on the link
    assert any(isinstance(e, tev.Connected) for e in c.pending)


def _transfer(
    lan: object, client: TcpStream, server: TcpStream, payload: bytes, step: float
) -> bytes:
    got = bytearray()
    sent = 0
    for _ in range(20000):
        if sent < len(payload):
            sent += client.send(payload[sent : sent + 65536], lan.now)  # type: ignore[attr-defined]
        got += server.receive(1 << 20, lan.now)  # type: ignore[attr-defined]
        if len(got) == len(payload):
            break
        lan.run(until=lan.now + step)  # type: ignore[attr-defined]
    return bytes(got)


def test_tcp_through_router_with_smaller_mtu() -> None:
    from tests.stack.netfix import routed

    lan, a, b, router = routed()
    listener = b.tcp_listen(9)
    client = a.tcp_connect((IPv4Address("10.213.2.10"), 9), lan.now)
    lan.run()
    server = listener.accept()
    assert server is not None
    payload = random.Random(2).randbytes(50_000)
    assert _transfer(lan, client, server, payload, 0.01) == payload
    # The first full-sized DF segment met the 576-MTU side: the router said
    # "fragmentation needed", the host learnt the path MTU and its
    # retransmissions crossed in fragments (no PMTU black hole).
    assert router.counters["frag-needed"] >= 1
    assert a.counters["icmp-frag-needed"] >= 1 and a.path_mtu(IPv4Address("10.213.2.10")) == 576
    assert router.counters["fragmented"] > 0


def test_tcp_over_lossy_lan_is_byte_exact() -> None:
    from synack.links.lan import Lan

    lan = Lan(loss=0.05, seed=11)
    sw, _ = lan.switch()
    a = make_host(1, "10.213.0.1/24")
    b = make_host(2, "10.213.0.2/24")
    lan.attach_host(a, sw)
    lan.attach_host(b, sw)
    listener = b.tcp_listen(9)
    client = a.tcp_connect((B, 9), lan.now)
    assert lan.run_until(lambda: bool(listener.queue), timeout=30)
    server = listener.accept()
    assert server is not None
    payload = random.Random(4).randbytes(200_000)
    assert _transfer(lan, client, server, payload, 0.05) == payload
    assert client.conn.stats.retransmissions > 0


def test_connect_to_absent_neighbour_fails_host_unreachable() -> None:
    lan, a, _ = two_hosts()
    c = a.tcp_connect((IPv4Address("10.213.0.77"), 80), lan.now)
    lan.run(until=lan.now + 5)  # ARP: three requests a second apart, then gives up
    assert [type(e).__name__ for e in c.pending][:1] == ["HostUnreachable"]
    assert c.gone and a.counters["tcp-host-unreachable"] == 1


def test_tso_coalesces_only_contiguous_alike_segments() -> None:
    from synack.wire.tcp import TcpOptions

    ts = TcpOptions(timestamps=(5, 6))
    A_ = TcpFlags.ACK

    def data(seq: int, n: int, flags: TcpFlags = A_, opts: TcpOptions = ts) -> TcpSegment:
        return TcpSegment(1, 2, seq, 77, flags, 500, bytes([seq % 256]) * n, opts)

    segs = [
        data(0, 100),
        data(100, 100),
        data(200, 100, A_ | TcpFlags.PSH),  # PSH closes the run
        data(300, 100),
        data(500, 100),  # a gap: not contiguous
        TcpSegment(1, 2, 600, 77, A_ | TcpFlags.FIN, 500),  # control: kept apart
        data(601, 50, opts=TcpOptions(timestamps=(9, 9))),
    ]
    out = coalesce(segs)
    assert [(s.seq, len(s.payload), int(s.flags)) for s in out] == [
        (0, 300, int(A_ | TcpFlags.PSH)),
        (300, 100, int(A_)),
        (500, 100, int(A_)),
        (600, 0, int(A_ | TcpFlags.FIN)),
        (601, 50, int(A_)),
    ]
    assert out[0].payload == segs[0].payload + segs[1].payload + segs[2].payload
    big = [data(i * 1448, 1448) for i in range(100)]
    # Up to IPv4's largest packet (tests/stack/test_tso_limit.py): 45 pieces a run.
    assert [len(s.payload) for s in coalesce(big)] == [45 * 1448, 45 * 1448, 10 * 1448]
    assert sum(len(s.payload) for s in coalesce(big)) == 144800
