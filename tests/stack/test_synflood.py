"""The SYN-flood path (synack.stack.synflood): the raw-bytes cookie answer and its budgets.

The attack: a spoofed SYN flood at 48,000 SYN/s (the rate issue 14 measured
over TAP) from random off-link sources, on a virtual clock. The guarantees:
the stateless answer built from raw bytes is exactly the SYN-ACK the
reference cookie code builds; a never-seen client's first SYN is answered
mid-flood, so it connects within 100 ms of virtual time; one loud source, a
bad-checksum flood or a flood past the shared budget cannot take a newcomer's
answer away; every SYN is answered or counted as dropped.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest

from synack.core.ratelimit import HashedBuckets
from synack.links.lan import Lan
from synack.stack.host import Host
from synack.stack.syncookies import SynCookies
from synack.tcp.config import TcpConfig
from synack.tcp.states import State
from synack.wire import ethernet as weth
from synack.wire import icmp as wicmp
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.checksum import finish, ones_sum
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment
from tests.stack.netfix import mac, make_host

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")
FLOOD_PER_MS = 48  # 48,000 SYN/s
MSS_ONLY = TcpOptions(mss=1460)


def _syn_frame(
    src: IPv4Address,
    sport: int,
    isn: int,
    options: TcpOptions = MSS_ONLY,
    *,
    port: int = 80,
    bad_checksum: bool = False,
) -> bytes:
    tcp = wtcp.build(TcpSegment(sport, port, isn, 0, TcpFlags.SYN, 65535, options=options), src, B)
    if bad_checksum:
        tcp = tcp[:16] + bytes([tcp[16] ^ 0xFF]) + tcp[17:]
    raw = wip.build(wip.Ipv4Packet(src, B, wip.PROTO_TCP, tcp))
    return weth.build(weth.EthernetFrame(mac(2), mac(99), weth.ETHERTYPE_IPV4, raw))


def _spoofed(rng: random.Random) -> IPv4Address:
    return IPv4Address(f"10.{rng.randrange(214, 250)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")


def _lan(n_clients: int = 0, **kw: object) -> tuple[Lan, Host, list[Host]]:
    """b (10.213.0.2) listening on 80 with a small half-open queue, a = its
    gateway (so spoofed off-link sources are answered through a, which drops
    the SYN-ACKs: not for it), and ``n_clients`` hosts that never talked to b."""
    lan = Lan()
    sw, _ = lan.switch()
    b = make_host(2, "10.213.0.2/24", gateway=str(A), **kw)
    hosts = [make_host(1, "10.213.0.1/24")] + [
        make_host(10 + i, f"10.213.0.{10 + i}/24") for i in range(n_clients)
    ]
    for h in [b, *hosts]:
        lan.attach_host(h, sw)
        h.start(0.0)
    lan.run()
    b.tcp_listen(80, syn_backlog=64)
    # b learns a (its gateway) as any host would, from traffic.
    b.ping(A, 1, 1, b"", lan.now)
    lan.run(until=lan.now + 0.01)
    return lan, b, hosts[1:]


def _answers(b: Host, frames: list[bytes]) -> list[bytes]:
    out = []
    for frame in frames:
        before = len(b._out)
        b.receive_frame(frame, 1.0)
        out.extend(bytes(f) for f in b.drain_frames()[before:])
    return out


OPTION_SHAPES = [
    TcpOptions(),
    TcpOptions(mss=1460),
    TcpOptions(mss=100),
    TcpOptions(mss=9000, wscale=7),
    TcpOptions(mss=1460, sack_permitted=True, timestamps=(123, 0), wscale=7),
    TcpOptions(mss=1460, sack_permitted=True, timestamps=(0xFFFFFFFF, 0), wscale=14),
    TcpOptions(mss=65535, timestamps=(5, 9), wscale=20),
    TcpOptions(sack_permitted=True, timestamps=(77, 0)),
    TcpOptions(mss=1220, sack_permitted=True),
    TcpOptions(mss=1460, unknown=((30, b"\x01\x02"),), timestamps=(1, 0)),
]
CONFIGS = [
    None,
    TcpConfig(timestamps=False),
    TcpConfig(window_scale=False, mss=1400, receive_buffer=60_000),
    TcpConfig(sack=False, receive_buffer=1 << 20),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_raw_answer_is_the_reference_cookie_syn_ack(config: TcpConfig | None) -> None:
    _, b, _ = _lan()
    listener = b.tcp.listeners[80]
    if config is not None:
        listener.config = config
    rng = random.Random(3)
    for i in range(64):  # the flood: the half-open queue fills
        b.receive_frame(_syn_frame(_spoofed(rng), 1000 + i, i), 1.0)
    b.drain_frames()
    assert len(listener.half_open) == 64
    reference = SynCookies(b.isn_secret)
    checked = 0
    for options in OPTION_SHAPES:
        for src in (_spoofed(rng), IPv4Address("10.213.0.1")):  # off-link, on-link
            sport, isn = rng.randrange(1, 65536), rng.randrange(1 << 32)
            frame = _syn_frame(src, sport, isn, options)
            seg = wtcp.parse(frame[wip.ETH_IPV4_HEADER_LEN :], src, B)
            (reply,) = _answers(b, [frame])
            eth = weth.parse(reply)
            assert eth.dst == mac(1) and eth.src == b.mac  # to a, the gateway or itself
            pkt = wip.parse(eth.payload)  # its header checksum verified
            assert (pkt.src, pkt.dst, pkt.ttl, pkt.dont_fragment) == (B, src, 64, True)
            want = reference.syn_ack((B, 80, src, sport), seg, listener.config, 1.0)
            assert pkt.payload == wtcp.build(want, B, src)
            checked += 1
    assert b.counters["tcp-syncookies-sent"] == checked
    assert len(listener.half_open) == 64  # no state kept


def test_a_raw_cookie_completes_the_handshake() -> None:
    # A real client's SYN, answered on the raw path, its ACK rebuilds the
    # connection with every option kept (window scale, SACK, timestamps).
    lan, b, (c,) = _lan(1)
    rng = random.Random(4)
    for i in range(64):
        b.receive_frame(_syn_frame(_spoofed(rng), 1000 + i, i), lan.now)
    sent = b.counters["tcp-syncookies-sent"]
    client = c.tcp_connect((B, 80), lan.now)
    lan.run(until=lan.now + 0.05)
    assert client.conn.state is State.ESTABLISHED
    assert b.counters["tcp-syncookies-sent"] == sent + 1
    assert b.counters["tcp-syncookies-ok"] == 1
    server = b.tcp.listeners[80].accept()
    assert server is not None
    # The options the cookie kept, as the connection's own variables.
    assert server.conn._snd_wscale == client.conn._rcv_wscale > 0
    assert server.conn._sack_ok and client.conn._sack_ok
    client.send(b"x" * 5000, lan.now)
    lan.run(until=lan.now + 0.1)
    assert server.receive(10_000, lan.now) == b"x" * 5000


def test_never_seen_clients_connect_within_100ms_under_a_48k_spoofed_flood() -> None:
    # One virtual second of 48,000 spoofed SYN/s; every 50 ms a client that
    # never talked to b connects. Each must be ESTABLISHED 100 ms later: its
    # first SYN was answered (a lost one would wait for the 1 s retry).
    lan, b, clients = _lan(20)
    rng = random.Random(14)
    for i in range(64):  # the flood has filled the half-open queue
        b.receive_frame(_syn_frame(_spoofed(rng), 1000 + i, i), lan.now)
    pending: list[tuple[float, object]] = []
    connected = 0
    flood = 0
    start = lan.now
    for ms in range(1000):
        now = start + ms / 1000
        for i in range(FLOOD_PER_MS):
            b.receive_frame(
                _syn_frame(_spoofed(rng), rng.randrange(1024, 65536), rng.randrange(1 << 32)),
                now + i / (FLOOD_PER_MS * 1000),
            )
            flood += 1
        if ms % 50 == 0:
            client = clients[ms // 50].tcp_connect((B, 80), now)
            pending.append((now, client))
        lan.kick()
        lan.run(until=now + 0.001)
        for began, stream in list(pending):
            if stream.conn.state is State.ESTABLISHED:  # type: ignore[attr-defined]
                pending.remove((began, stream))
                connected += 1
            else:
                assert lan.now - began <= 0.1, "a newcomer waited over 100 ms"
    lan.run(until=lan.now + 0.1)
    connected += sum(s.conn.state is State.ESTABLISHED for _, s in pending)  # type: ignore[attr-defined]
    assert connected == 20
    c = b.counters
    assert c["tcp-syncookies-ok"] == 20
    # Every SYN after the queue filled answered with a cookie or counted as
    # dropped.
    dropped = c["tcp-syn-flood-dropped"] + c["tcp-syn-flood-source-dropped"]
    assert c["tcp-syncookies-sent"] + dropped == flood + 20
    assert c["tcp-syncookies-sent"] >= flood * 0.95  # the default budgets answer such a flood


def test_one_loud_source_drains_only_its_own_bucket() -> None:
    lan, b, (c,) = _lan(1)
    rng = random.Random(5)
    loud = IPv4Address("10.220.1.1")
    for i in range(64):
        b.receive_frame(_syn_frame(_spoofed(rng), 1000 + i, i), lan.now)
    start = lan.now
    for ms in range(200):  # 200 ms of 48,000 SYN/s from one address
        for i in range(FLOOD_PER_MS):
            b.receive_frame(
                _syn_frame(loud, rng.randrange(1024, 65536), rng.randrange(1 << 32)),
                start + ms / 1000 + i / 48000,
            )
    cfg = b.config
    answered = b.counters["tcp-syncookies-sent"]
    assert answered <= cfg.syn_flood_source_burst + cfg.syn_flood_per_source * 0.2 + 1
    assert b.counters["tcp-syn-flood-source-dropped"] == 200 * FLOOD_PER_MS - answered
    client = c.tcp_connect((B, 80), lan.now)
    lan.run(until=lan.now + 0.05)
    assert client.conn.state is State.ESTABLISHED


def test_bad_syns_are_counted_and_never_answered() -> None:
    lan, b, (c,) = _lan(1)
    rng = random.Random(6)
    for i in range(64):
        b.receive_frame(_syn_frame(_spoofed(rng), 1000 + i, i), lan.now)
    for i in range(3000):
        b.receive_frame(_syn_frame(_spoofed(rng), 2000, i, bad_checksum=True), lan.now + i / 48000)
    # An option whose length runs past the header (RFC 9293 MUST-7), the
    # checksum right.
    src = _spoofed(rng)
    tcp = bytearray(wtcp.build(TcpSegment(2001, 80, 1, 0, TcpFlags.SYN, 65535), src, B))
    tcp[12] = 6 << 4  # 24-octet header
    tcp[16:18] = bytes(2)
    tcp += b"\x1e\x09\x00\x00"  # kind 30, length 9
    pseudo = int(src) + int(B) + wip.PROTO_TCP + len(tcp)
    tcp[16:18] = finish(pseudo + ones_sum(bytes(tcp))).to_bytes(2, "big")
    raw = wip.build(wip.Ipv4Packet(src, B, wip.PROTO_TCP, bytes(tcp)))
    for _ in range(2):  # the second meets the remembered verdict on its options
        b.receive_frame(weth.build(weth.EthernetFrame(mac(2), mac(99), 0x0800, raw)), lan.now)
    assert b.counters["tcp-bad-checksum"] == 3000
    assert b.counters["tcp-bad-option"] == 2
    assert b.counters["tcp-syncookies-sent"] == 0
    client = c.tcp_connect((B, 80), lan.now)
    lan.run(until=lan.now + 0.05)
    assert client.conn.state is State.ESTABLISHED


def test_a_flood_past_the_shared_budget_is_dropped_and_counted() -> None:
    lan, b, _ = _lan(0, syn_flood_per_second=1000.0, syn_flood_burst=50)
    rng = random.Random(7)
    for i in range(64):
        b.receive_frame(_syn_frame(_spoofed(rng), 1000 + i, i), lan.now)
    start, n = lan.now, 48_000
    for i in range(n):  # one virtual second
        b.receive_frame(_syn_frame(_spoofed(rng), 3000, i), start + i / n)
    c = b.counters
    assert c["tcp-syncookies-sent"] <= 1000 * 1.0 + 50 + 1
    assert c["tcp-syncookies-sent"] + c["tcp-syn-flood-dropped"] == n
    assert c["tcp-syn-flood-source-dropped"] == 0  # random sources: per-source buckets untouched


def test_hashed_buckets_spread_random_keys_and_limit_one() -> None:
    buckets = HashedBuckets(50.0, 20, slots=4096, seed=12345)
    rng = random.Random(8)
    # 48,000 random keys in one second: about 12 a bucket, under its 50/s.
    allowed = sum(buckets.allow(rng.getrandbits(32), i / 48000) for i in range(48000))
    assert allowed >= 47_900
    # One key: its burst, then its rate.
    one = HashedBuckets(50.0, 20, slots=4096, seed=1)
    assert sum(one.allow(7, 0.0) for _ in range(100)) == 20
    assert sum(one.allow(7, 1.0) for _ in range(100)) == 20  # refilled to the burst, no more
    with pytest.raises(ValueError):
        HashedBuckets(1.0, 1, slots=1000)


def test_a_proven_clients_syn_on_its_connection_gets_a_challenge_ack_mid_flood() -> None:
    # A SYN for an established 4-tuple is the connection's business (RFC 9293
    # §3.10.7.4: a challenge ACK), not a cookie's, flood or no flood.
    lan, b, (c,) = _lan(1)
    client = c.tcp_connect((B, 80), lan.now)
    lan.run(until=lan.now + 0.05)
    assert client.conn.state is State.ESTABLISHED
    rng = random.Random(9)
    for i in range(64):
        b.receive_frame(_syn_frame(_spoofed(rng), 1000 + i, i), lan.now)
    b.drain_frames()
    sent = b.counters["tcp-syncookies-sent"]
    (reply,) = _answers(b, [_syn_frame(client.local[0], client.local[1], 12345)])
    seg = wtcp.parse(reply[wip.ETH_IPV4_HEADER_LEN :], B, client.local[0])
    assert seg.flags == TcpFlags.ACK  # no SYN: not a cookie
    assert b.counters["tcp-syncookies-sent"] == sent


def test_a_batch_is_handled_as_frame_by_frame() -> None:
    # Host.receive_frames (a link's batch) takes SYNs and echo requests by
    # their raw bytes without a call per frame: the same answers, in the
    # same order, and the same counts as receive_frame one by one.
    rng = random.Random(10)
    frames: list[bytes] = []
    for i in range(600):
        src = _spoofed(rng)
        kind = i % 5
        if kind == 3:
            echo = wicmp.build(wicmp.echo(wicmp.TYPE_ECHO_REQUEST, 1, i, bytes(8)))
            raw = wip.build(wip.Ipv4Packet(src, B, wip.PROTO_ICMP, echo))
            frames.append(weth.build(weth.EthernetFrame(mac(2), mac(99), 0x0800, raw)))
        elif kind == 4:
            frames.append(_syn_frame(src, 3000 + i, i, bad_checksum=i % 2 == 0))
        else:
            frames.append(_syn_frame(src, 1000 + i, i, OPTION_SHAPES[i % len(OPTION_SHAPES)]))
    outputs = []
    for batched in (False, True):
        _, b, _ = _lan(icmp_echo_per_second=100.0, icmp_echo_burst=10)
        b.drain_frames()
        for i in range(0, len(frames), 64):
            if batched:
                b.receive_frames(frames[i : i + 64], 2.0 + i / 1000)
            else:
                for f in frames[i : i + 64]:
                    b.receive_frame(f, 2.0 + i / 1000)
        outputs.append(([bytes(f) for f in b.drain_frames()], dict(b.counters)))
    assert outputs[0] == outputs[1]
    _, counters = outputs[1]
    assert counters["tcp-syncookies-sent"] > 300 and counters["icmp-echo-ratelimited"] > 40


def test_a_retransmitted_syn_of_a_half_open_connection_gets_its_own_syn_ack() -> None:
    # A client whose SYN made the last half-open entry (its SYN-ACK lost)
    # retransmits while the flood keeps the queue full: it gets that entry's
    # SYN-ACK again, not a cookie with another ISN.
    _, b, _ = _lan()
    rng = random.Random(12)
    for i in range(63):
        b.receive_frame(_syn_frame(_spoofed(rng), 1000 + i, i), 1.0)
    b.drain_frames()
    client = _spoofed(rng)
    syn = _syn_frame(client, 4242, 777_000, MSS_ONLY)
    (first,) = _answers(b, [syn])  # the 64th: a half-open entry, the queue now full
    (_cookie,) = _answers(b, [_syn_frame(_spoofed(rng), 5000, 1)])
    (again,) = _answers(b, [syn])
    seq = [wtcp.parse(f[wip.ETH_IPV4_HEADER_LEN :], B, client).seq for f in (first, again)]
    assert seq[0] == seq[1]
    assert b.counters["tcp-syncookies-sent"] == 1  # only the stranger's
    assert len(b.tcp.listeners[80].half_open) == 64


def test_the_fast_paths_inline_budget_test_drops_what_the_slow_path_drops() -> None:
    # TcpDemux.receive_at tests a pure SYN's listener budget inline; receive
    # (the slow path) asks _syn_over_budget. The same SYNs to a flooded
    # listener, one way on one host and the other way on its twin, past the
    # shared budget (one loud source, then spoofed ones): the same drops,
    # counters and answers; a SYN to a port with no listener is not refused early.
    results = []
    for fast in (True, False):
        lan, b, _ = _lan(0, syn_flood_per_second=1000.0, syn_flood_burst=50)
        rng = random.Random(11)
        for i in range(64):
            b.receive_frame(_syn_frame(_spoofed(rng), 1000 + i, i), lan.now)
        b.drain_frames()
        loud = _spoofed(rng)
        frames = [_syn_frame(loud, 2000 + i, i) for i in range(150)]
        frames += [_syn_frame(_spoofed(rng), 3000, i) for i in range(150)]
        frames += [_syn_frame(_spoofed(rng), 4000, 1, port=81)]
        for i, f in enumerate(frames):
            now = lan.now + i * 1e-5
            l3 = f[weth.HEADER_LEN :]
            if fast:
                src = int.from_bytes(l3[12:16])
                b.tcp.receive_at(f, wip.ETH_IPV4_HEADER_LEN, len(f), src, int(B), now)
            else:
                b.tcp.receive(wip.parse(l3), False, now)
        b.tcp.flush()
        out = [bytes(f) for f in b.drain_frames()]
        results.append((dict(b.counters), out))
    assert results[0] == results[1]
    counters = results[0][0]
    assert counters["tcp-syn-flood-dropped"] >= 200  # past the shared budget (burst 50)
    assert counters["tcp-syncookies-sent"] > 0  # within it: on to the listener's answer
