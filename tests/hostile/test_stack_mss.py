"""A SYN announcing MSS 1 (issue 14, item 9).

The attack: a peer announcing MSS 1 made synack send one-octet segments
(62k of them in 2 s). Guarantee: a peer's MSS is raised to
TcpConfig.min_peer_mss (88, Linux's TCP_MIN_MSS; why in synack/tcp/config.py).
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from synack.errors import LocalProtocolError
from synack.stack.host import Host
from synack.tcp.config import TcpConfig
from synack.wire import arp as warp
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment
from tests.stack.netfix import mac, make_host

B = IPv4Address("10.213.0.2")
X = IPv4Address("10.213.0.9")
REPLY = 10_000  # octets the server sends the tiny-MSS peer


def _inject_tcp(host: Host, seg: TcpSegment, now: float) -> None:
    raw = wip.build(wip.Ipv4Packet(X, B, wip.PROTO_TCP, wtcp.build(seg, X, B)))
    host.receive_frame(weth.build(weth.EthernetFrame(host.mac, mac(9), 0x0800, raw)), now)


def _tcp_out(host: Host) -> list[TcpSegment]:
    out = []
    for frame in host.frames_to_send():
        eth = weth.parse(frame)
        if eth.ethertype == weth.ETHERTYPE_IPV4:
            pkt = wip.parse(eth.payload)
            if pkt.proto == wip.PROTO_TCP:
                out.append(wtcp.parse(pkt.payload, pkt.src, pkt.dst))
    return out


def _segments_for(announced_mss: int, config: TcpConfig | None = None) -> list[int]:
    b = make_host(2, "10.213.0.2/24", tcp=config)
    listener = b.tcp_listen(7)
    arp = warp.ArpPacket(warp.OP_REQUEST, mac(9), X, bytes(6), B)
    b.receive_frame(
        weth.build(weth.EthernetFrame(weth.BROADCAST, mac(9), 0x0806, warp.build(arp))), 0.0
    )
    syn = TcpSegment(4000, 7, 1000, 0, TcpFlags.SYN, 65535, options=TcpOptions(mss=announced_mss))
    _inject_tcp(b, syn, 0.0)
    (synack,) = [s for s in _tcp_out(b) if s.flags & TcpFlags.SYN]
    _inject_tcp(b, TcpSegment(4000, 7, 1001, synack.seq + 1, TcpFlags.ACK, 65535), 0.01)
    server = listener.accept()
    assert server is not None
    assert server.send(bytes(REPLY), 0.02) == REPLY
    sizes: list[int] = []
    now = 0.02
    acked = synack.seq + 1
    for _ in range(500):  # ack everything until the reply is through
        sent = [s for s in _tcp_out(b) if s.payload]
        sizes += [len(s.payload) for s in sent]
        if sum(sizes) >= REPLY:
            break
        for s in sent:
            acked = max(acked, s.seq + len(s.payload))
        now += 0.01
        _inject_tcp(b, TcpSegment(4000, 7, 1001, acked, TcpFlags.ACK, 65535), now)
    assert sum(sizes) == REPLY
    return sizes


def test_mss_1_is_raised_to_the_floor() -> None:
    sizes = _segments_for(1)
    assert max(sizes) == 88  # no timestamps agreed: the whole MSS is payload
    # 10,000 octets in 114 segments, not 10,000.
    assert len(sizes) == -(-REPLY // 88)


def test_an_honest_small_mss_is_kept_and_the_floor_is_configurable() -> None:
    assert max(_segments_for(256)) == 256  # RFC 1191's 296-octet plateau
    assert max(_segments_for(1, TcpConfig(mss=1460, min_peer_mss=1))) == 1
    with pytest.raises(LocalProtocolError):
        TcpConfig(min_peer_mss=0)
