"""SYN cookies that keep window scale, SACK-permitted and timestamps (in the TSval)."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

from synack.links.lan import Lan
from synack.stack.host import Host, TcpStream
from synack.stack.syncookies import TS_OPT_MASK, TS_SACK, TS_USED, TS_WSCALE_NONE, SynCookies
from synack.tcp.config import TcpConfig
from synack.tcp.states import State
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment
from tests.stack.netfix import mac, make_host

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")
PAYLOAD = random.Random(9).randbytes(300_000)


def lossy_pair(loss: float) -> tuple[Lan, Host, Host, list[TcpSegment]]:
    """Two hosts on a seeded lossy switch; every TCP segment put on a wire is recorded."""
    lan = Lan(loss=loss, seed=4)
    seen: list[TcpSegment] = []

    def tap(_name: str, _now: float, frame: bytes) -> None:
        eth = weth.parse(frame)
        if eth.ethertype != weth.ETHERTYPE_IPV4:
            return
        pkt = wip.parse(eth.payload)
        if pkt.proto == wip.PROTO_TCP and pkt.dst in (A, B) and pkt.src in (A, B):
            seen.append(wtcp.parse(pkt.payload, pkt.src, pkt.dst))

    lan.taps.append(tap)
    sw, _ = lan.switch()
    a = make_host(1, "10.213.0.1/24")
    b = make_host(2, "10.213.0.2/24")
    lan.attach_host(a, sw)
    lan.attach_host(b, sw)
    a.start(0.0)
    b.start(0.0)
    lan.run(until=5.0)
    return lan, a, b, seen


def flood(b: Host, now: float, count: int) -> None:
    rng = random.Random(5)
    for i in range(count):
        src = IPv4Address(f"10.213.0.{100 + i % 100}")
        syn = TcpSegment(
            rng.randrange(1024, 65535), 80, rng.randrange(1 << 32), 0, TcpFlags.SYN, 65535
        )
        raw = wip.build(wip.Ipv4Packet(src, B, wip.PROTO_TCP, wtcp.build(syn, src, B)))
        b.receive_frame(
            weth.build(weth.EthernetFrame(mac(2), mac(99), weth.ETHERTYPE_IPV4, raw)), now
        )


def handshake_and_transfer(flooded: bool) -> tuple[TcpStream, TcpStream, list[TcpSegment], Host]:
    lan, a, b, seen = lossy_pair(0.02)
    listener = b.tcp_listen(80, syn_backlog=16)
    if flooded:
        flood(b, lan.now, 100)
    client = a.tcp_connect((B, 80), lan.now)
    assert lan.run_until(lambda: client.conn.state is State.ESTABLISHED, timeout=30)
    server = None
    for _ in range(300):
        server = listener.accept()
        if server is not None:
            break
        lan.run(until=lan.now + 0.1)
    assert server is not None
    # Server -> client, through 2% loss: the client reports holes with SACK.
    sent = 0
    got = bytearray()
    for _ in range(20_000):
        if sent < len(PAYLOAD):
            sent += server.send(PAYLOAD[sent : sent + 65536], lan.now)
        got += client.receive(1 << 20, lan.now)
        if len(got) == len(PAYLOAD):
            break
        lan.run(until=lan.now + 0.01)
    assert bytes(got) == PAYLOAD
    return client, server, seen, b


def agreed(stream: TcpStream) -> tuple[object, ...]:
    conn = stream.conn
    # The options agreed on the handshake (the connection keeps them private).
    return (conn._wscale_agreed, conn._snd_wscale, conn._rcv_wscale, conn._sack_ok, conn._ts.ok)


def test_cookie_handshake_agrees_the_same_options_and_sack_works() -> None:
    n_client, n_server, n_seen, _ = handshake_and_transfer(flooded=False)
    c_client, c_server, c_seen, b = handshake_and_transfer(flooded=True)
    assert b.counters["tcp-syncookies-ok"] == 1  # the connection came through a cookie
    assert agreed(c_server) == agreed(n_server)
    wscale_ok, shift, _, sack_ok, ts_ok = agreed(n_server)
    assert wscale_ok and sack_ok and ts_ok and shift == c_client.conn.config.rcv_wscale
    assert agreed(c_client) == agreed(n_client)

    def synack_opts(seen: list[TcpSegment], port: int) -> TcpOptions:
        return next(
            s.options for s in seen if s.flags == TcpFlags.SYN | TcpFlags.ACK and s.dst_port == port
        )

    n_opts = synack_opts(n_seen, n_client.local[1])
    c_opts = synack_opts(c_seen, c_client.local[1])
    assert (c_opts.mss, c_opts.wscale, c_opts.sack_permitted) == (
        n_opts.mss,
        n_opts.wscale,
        n_opts.sack_permitted,
    )
    assert c_opts.timestamps is not None and c_opts.timestamps[0] & TS_USED
    # Data flowed with SACK: the client's ACKs reported holes, the server
    # used them (no more retransmissions than there were holes reported).
    sacks = [s for s in c_seen if s.src_port == c_client.local[1] and s.options.sack_blocks]
    assert len(sacks) >= 3
    assert c_server.conn.stats.timeouts <= 2


def test_cookie_ts_bits_round_trip_and_without_timestamps_only_mss() -> None:
    cookies = SynCookies(b"k" * 16)
    key = (B, 80, A, 40000)
    cfg = TcpConfig(mss=1460, receive_buffer=1 << 20)
    for wscale, sack in ((None, False), (0, True), (14, False), (9, True)):
        syn = TcpSegment(
            40000,
            80,
            123456,
            0,
            TcpFlags.SYN,
            65535,
            options=TcpOptions(mss=1400, wscale=wscale, sack_permitted=sack, timestamps=(777, 0)),
        )
        reply = cookies.syn_ack(key, syn, cfg, 100.0)
        assert reply.options.timestamps is not None
        tsval = reply.options.timestamps[0]
        # Never above the TSval the rebuilt connection sends (ISS + ms): PAWS.
        assert 0 <= ((reply.seq + 100_000) - tsval) % (1 << 32) <= TS_OPT_MASK
        bits = tsval & TS_OPT_MASK
        assert bits & TS_WSCALE_NONE == (TS_WSCALE_NONE if wscale is None else wscale)
        assert bool(bits & TS_SACK) == sack
        ack = TcpSegment(
            40000,
            80,
            123457,
            (reply.seq + 1) % (1 << 32),
            TcpFlags.ACK,
            500,
            options=TcpOptions(timestamps=(778, tsval)),
        )
        found = cookies.check_ack(key, ack, 101.0)
        assert found is not None
        iss, rebuilt = found
        assert iss == reply.seq
        assert rebuilt.options.wscale == wscale and rebuilt.options.sack_permitted == sack
        assert rebuilt.options.mss == 1220  # the largest cookie MSS <= 1400
        assert rebuilt.options.timestamps == (778, 0)
    # A SYN without timestamps: nothing to keep the options in.
    bare = TcpSegment(40000, 80, 5, 0, TcpFlags.SYN, 65535, options=TcpOptions(mss=1460, wscale=7))
    reply = cookies.syn_ack(key, bare, cfg, 0.0)
    assert reply.options == TcpOptions(mss=1460)
    # A forged cookie is refused whatever its TSecr says.
    forged = TcpSegment(
        40000, 80, 6, 99, TcpFlags.ACK, 500, options=TcpOptions(timestamps=(1, TS_USED | 7))
    )
    assert cookies.check_ack(key, forged, 0.0) is None
