"""ICMP errors delivered to TCP (RFC 9293 §3.9.2.2, RFC 5927)."""

from __future__ import annotations

import errno
from ipaddress import IPv4Address

from synack.adapters.oserrors import for_event
from synack.links.lan import Lan
from synack.stack.host import Host, TcpStream
from synack.tcp.events import ConnectionRefused
from synack.tcp.seq import seq_add
from synack.tcp.states import State
from synack.wire import ethernet as weth
from synack.wire import icmp as wicmp
from synack.wire import ipv4 as wip
from tests.stack.netfix import mac, two_hosts

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")
R = IPv4Address("10.213.0.254")  # a router on the path, as far as A can tell


def syn_in_flight(port: int) -> tuple[Lan, Host, TcpStream, wip.Ipv4Packet]:
    """A's connection to B:``port`` with its SYN taken off the wire (never delivered)."""
    lan, a, b = two_hosts()
    b.tcp_listen(7)
    warm = a.tcp_connect((B, 7), lan.now)  # resolves B's MAC
    lan.run()
    assert warm.conn.state is State.ESTABLISHED
    client = a.tcp_connect((B, port), lan.now)
    (frame,) = a.frames_to_send()
    pkt = wip.parse(weth.parse(frame).payload)
    assert pkt.proto == wip.PROTO_TCP
    return lan, a, client, pkt


def icmp_about(
    host: Host,
    pkt: wip.Ipv4Packet,
    type_: int,
    code: int,
    now: float,
    *,
    rest: int = 0,
    seq_delta: int = 0,
) -> None:
    """``host`` receives an ICMP error from R quoting ``pkt`` (its sequence number moved by ``seq_delta``)."""
    l4 = bytearray(pkt.payload[: wicmp.QUOTE_PAYLOAD_LEN])
    seq = seq_add(int.from_bytes(l4[4:8], "big"), seq_delta)
    l4[4:8] = seq.to_bytes(4, "big")
    quoted = wip.build_header(pkt, len(pkt.payload)) + bytes(l4)
    msg = wicmp.build(wicmp.IcmpMessage(type_, code, rest, quoted))
    raw = wip.build(wip.Ipv4Packet(R, pkt.src, wip.PROTO_ICMP, msg))
    host.receive_frame(
        weth.build(weth.EthernetFrame(mac(1), mac(2), weth.ETHERTYPE_IPV4, raw)), now
    )


def test_port_unreachable_aborts_a_connect() -> None:
    lan, a, client, syn = syn_in_flight(9)
    # A quoted sequence number we never sent is ignored (RFC 5927 §4.1).
    icmp_about(
        a, syn, wicmp.TYPE_DEST_UNREACHABLE, wicmp.CODE_PORT_UNREACHABLE, lan.now, seq_delta=7
    )
    assert a.counters["tcp-icmp-bad-seq"] == 1 and client.conn.state is State.SYN_SENT
    # The real one: a hard error in SYN-SENT aborts the connect (SHLD-26).
    icmp_about(a, syn, wicmp.TYPE_DEST_UNREACHABLE, wicmp.CODE_PORT_UNREACHABLE, lan.now)
    assert client.gone and client.conn.state is State.CLOSED
    (hard,) = [e for e in client.pending if isinstance(e, ConnectionRefused)]
    assert hard.icmp == "port-unreachable"
    err = for_event(hard)
    assert isinstance(err, ConnectionRefusedError) and err.errno == errno.ECONNREFUSED
    assert a.counters["tcp-icmp-hard-abort"] == 1
    assert a.frames_to_send() == []  # no RST for a connection in SYN-SENT


def test_protocol_unreachable_is_enoprotoopt() -> None:
    lan, a, client, syn = syn_in_flight(9)
    icmp_about(a, syn, wicmp.TYPE_DEST_UNREACHABLE, wicmp.CODE_PROTOCOL_UNREACHABLE, lan.now)
    (hard,) = [e for e in client.pending if isinstance(e, ConnectionRefused)]
    err = for_event(hard)
    assert err is not None and err.errno == errno.ENOPROTOOPT and client.gone


def test_soft_errors_never_abort_but_are_kept() -> None:
    lan, a, client, syn = syn_in_flight(7)
    icmp_about(a, syn, wicmp.TYPE_DEST_UNREACHABLE, wicmp.CODE_HOST_UNREACHABLE, lan.now)
    assert client.conn.state is State.SYN_SENT and not client.gone  # MUST-56
    assert client.soft_error == errno.EHOSTUNREACH  # SHLD-25
    icmp_about(a, syn, wicmp.TYPE_DEST_UNREACHABLE, wicmp.CODE_NET_UNREACHABLE, lan.now)
    assert client.soft_error == errno.ENETUNREACH
    icmp_about(a, syn, wicmp.TYPE_TIME_EXCEEDED, 0, lan.now)
    assert client.conn.state is State.SYN_SENT and a.counters["tcp-icmp-soft"] == 3
    # The SYN is retransmitted and the connection completes.
    assert lan.run_until(lambda: client.conn.state is State.ESTABLISHED, timeout=5)
    assert not any(isinstance(e, ConnectionRefused) for e in client.pending)


def test_hard_error_on_an_established_connection_is_soft() -> None:
    lan, a, b = two_hosts()
    listener = b.tcp_listen(7)
    client = a.tcp_connect((B, 7), lan.now)
    lan.run()
    assert listener.accept() is not None
    client.send(b"data", lan.now)
    (frame,) = a.frames_to_send()  # the data segment, never delivered
    pkt = wip.parse(weth.parse(frame).payload)
    icmp_about(a, pkt, wicmp.TYPE_DEST_UNREACHABLE, wicmp.CODE_PORT_UNREACHABLE, lan.now)
    assert client.conn.state is State.ESTABLISHED and client.soft_error == errno.ECONNREFUSED


def test_frag_needed_about_tcp_lowers_the_path_mtu() -> None:
    lan, a, b = two_hosts()
    listener = b.tcp_listen(7)
    client = a.tcp_connect((B, 7), lan.now)
    lan.run()
    server = listener.accept()
    assert server is not None
    client.send(b"x" * 1400, lan.now)
    (frame,) = a.frames_to_send()
    pkt = wip.parse(weth.parse(frame).payload)
    assert pkt.dont_fragment
    icmp_about(a, pkt, wicmp.TYPE_DEST_UNREACHABLE, wicmp.CODE_FRAG_NEEDED, lan.now, rest=1000)
    assert a.ipv4.path_mtu(B) == 1000 and a.counters["tcp-icmp-frag-needed"] == 1
    assert client.conn.state is State.ESTABLISHED
    # The retransmission leaves fragmented and arrives whole.
    lan.run(until=lan.now + 3)
    assert server.receive(2000, lan.now) == b"x" * 1400
