"""TCP Fast Open (RFC 7413) on the manual clock: the exact segments of each case.

Client ISS 1000, server ISS 5000 (TcpPair's defaults); the client is
10.213.0.1, the server 10.213.0.2.
"""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address

import pytest

from synack.errors import LocalProtocolError
from synack.tcp import events as ev
from synack.tcp.fastopen import COOKIE_LEN, FastOpen, FastOpenCache, FastOpenCookies
from synack.tcp.pair import TcpPair
from synack.tcp.states import State
from synack.wire import tcp as wtcp
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment

SECRET = bytes(range(16))
S, A, P = TcpFlags.SYN, TcpFlags.ACK, TcpFlags.PSH
CLIENT_IP = TcpPair.CLIENT[0]
SERVER_IP = TcpPair.SERVER[0]


def _events(conn: object) -> list[ev.Event]:
    out = []
    while (e := conn.next_event()) is not None:  # type: ignore[attr-defined]
        out.append(e)
    return out


def _open_with(pair: TcpPair, fo: FastOpen | None, data: bytes) -> list[TcpSegment]:
    pair.client.connect(pair.now, fastopen=fo)
    if data:
        pair.client.send(data, pair.now)
    return pair.out_a()


def test_a_cookie_request_gets_a_cookie_and_the_data_waits_for_the_handshake() -> None:
    jar = FastOpenCookies(SECRET)
    cache = FastOpenCache()
    pair = TcpPair(server_fastopen=jar)
    fo = cache.offer(SERVER_IP, 0.0)
    assert fo is not None and fo.cookie == b""
    (syn,) = _open_with(pair, fo, b"GET /")
    # RFC 7413 §4.2.1: an empty option asks for a cookie; no data without one.
    assert syn.flags == S and syn.seq == 1000 and syn.payload == b""
    assert syn.options.fastopen == b""
    pair.to_b([syn])
    (synack,) = pair.out_b()
    assert synack.flags == S | A and synack.ack == 1001
    assert synack.options.fastopen == jar.cookie(CLIENT_IP, 0.0)
    assert len(synack.options.fastopen) == COOKIE_LEN
    pair.to_a([synack])
    (data,) = pair.out_a()
    assert data.flags == A | P and data.seq == 1001 and data.payload == b"GET /"
    pair.to_b([data])
    assert pair.b.receive() == b"GET /"
    cache.learn(SERVER_IP, fo, 0.0)
    assert cache.cookie(SERVER_IP) == jar.cookie(CLIENT_IP, 0.0)
    assert fo.synack_seen and not fo.data_acked and fo.peer_mss == 1460


def _cached(jar: FastOpenCookies) -> FastOpenCache:
    cache = FastOpenCache()
    fo = FastOpen(b"")
    fo.synack_seen = True
    fo.cookie_received = jar.cookie(CLIENT_IP, 0.0)
    fo.peer_mss = 1460
    cache.learn(SERVER_IP, fo, 0.0)
    return cache


def test_data_on_the_syn_is_delivered_at_once_and_acknowledged_by_the_syn_ack() -> None:
    jar = FastOpenCookies(SECRET)
    cache = _cached(jar)
    pair = TcpPair(server_fastopen=jar)
    fo = cache.offer(SERVER_IP, 0.0)
    assert fo is not None and fo.cookie == jar.cookie(CLIENT_IP, 0.0)
    (syn,) = _open_with(pair, fo, b"GET /")
    assert syn.flags == S and syn.seq == 1000 and syn.payload == b"GET /"
    assert syn.options.fastopen == fo.cookie
    pair.to_b([syn])
    # The server's application has the request before the handshake is over.
    assert pair.b.state is State.SYN_RECEIVED
    assert any(isinstance(e, ev.DataAvailable) for e in _events(pair.b))
    assert pair.b.receive() == b"GET /"
    pair.b.send(b"200 OK", pair.now)
    synack, answer = pair.out_b()
    # The SYN-ACK acknowledges the SYN and its data; no cookie for a good one.
    assert synack.flags == S | A and synack.ack == 1006 and synack.options.fastopen is None
    # RFC 7413 §4.2.2: the server may answer before the handshake completes.
    assert answer.flags == A | P and answer.seq == 5001 and answer.payload == b"200 OK"
    pair.to_a([synack, answer])
    assert pair.a.state is State.ESTABLISHED and pair.a.receive() == b"200 OK"
    (ack,) = pair.out_a()
    assert ack.flags == A and ack.seq == 1006 and ack.ack == 5007 and ack.payload == b""
    pair.to_b([ack])
    assert pair.b.state is State.ESTABLISHED
    assert pair.a.stats.retransmissions == 0 and pair.b.stats.retransmissions == 0
    assert fo.syn_data == 5 and fo.data_acked
    assert pair.exchange() == 0  # nothing left to send: the data went once each way


def test_an_invalid_cookie_has_its_data_ignored_and_resent_after_the_handshake() -> None:
    jar = FastOpenCookies(SECRET)
    pair = TcpPair(server_fastopen=jar)
    fo = FastOpen(b"\x00" * COOKIE_LEN)  # a cookie the server never made
    (syn,) = _open_with(pair, fo, b"hello")
    assert syn.payload == b"hello"
    pair.to_b([syn])
    assert pair.b.receive() == b"" and pair.b.readable_bytes == 0
    (synack,) = pair.out_b()
    # Only the SYN is acknowledged; a fresh cookie comes back (RFC 7413 §4.2.2).
    assert synack.flags == S | A and synack.ack == 1001
    assert synack.options.fastopen == jar.cookie(CLIENT_IP, 0.0)
    pair.to_a([synack])
    (again,) = pair.out_a()
    assert again.flags == A | P and again.seq == 1001 and again.payload == b"hello"
    pair.to_b([again])
    assert pair.b.receive() == b"hello"
    assert not fo.data_acked and fo.cookie_received == jar.cookie(CLIENT_IP, 0.0)
    cache = FastOpenCache()
    cache.learn(SERVER_IP, fo, 0.0)
    # A refused cookie with a new one in its place: the new one is used next.
    nxt = cache.offer(SERVER_IP, 1.0)
    assert nxt is not None and nxt.cookie == jar.cookie(CLIENT_IP, 0.0)


def test_a_server_without_fast_open_makes_the_client_fall_back() -> None:
    jar = FastOpenCookies(SECRET)
    cache = _cached(jar)
    pair = TcpPair()  # this server does not do Fast Open
    fo = cache.offer(SERVER_IP, 0.0)
    assert fo is not None
    (syn,) = _open_with(pair, fo, b"ping")
    assert syn.payload == b"ping"
    pair.to_b([syn])
    (synack,) = pair.out_b()
    assert synack.ack == 1001 and synack.options.fastopen is None
    pair.to_a([synack])
    (again,) = pair.out_a()
    assert again.seq == 1001 and again.payload == b"ping"
    pair.to_b([again])
    assert pair.b.receive() == b"ping"
    cache.learn(SERVER_IP, fo, 10.0)
    # RFC 7413 §4.1.3.1: a negative result: ordinary opens for a while.
    assert cache.offer(SERVER_IP, 10.0 + cache.negative_time - 1) is None
    again_fo = cache.offer(SERVER_IP, 10.0 + cache.negative_time)
    assert again_fo is not None and again_fo.cookie == b""  # asks anew


def test_a_lost_syn_with_data_is_resent_without_it_and_fast_open_is_dropped() -> None:
    jar = FastOpenCookies(SECRET)
    cache = _cached(jar)
    pair = TcpPair(server_fastopen=jar)
    fo = cache.offer(SERVER_IP, 0.0)
    assert fo is not None
    (lost,) = _open_with(pair, fo, b"data")
    assert lost.payload == b"data"
    pair.advance(1.0)  # the initial RTO
    (syn,) = pair.out_a()
    assert syn.flags == S and syn.seq == 1000 and syn.payload == b""
    pair.to_b([syn])
    (synack,) = pair.out_b()
    assert synack.ack == 1001
    pair.to_a([synack])
    (again,) = pair.out_a()
    assert again.seq == 1001 and again.payload == b"data"
    assert fo.syn_lost
    cache.learn(SERVER_IP, fo, 2.0)
    assert cache.offer(SERVER_IP, 3.0) is None


def test_a_lost_syn_ack_after_accepted_data_does_not_resend_the_data() -> None:
    jar = FastOpenCookies(SECRET)
    pair = TcpPair(server_fastopen=jar)
    fo = FastOpen(jar.cookie(CLIENT_IP, 0.0))
    (syn,) = _open_with(pair, fo, b"once")
    pair.to_b([syn])
    assert pair.b.receive() == b"once"
    pair.out_b()  # the SYN-ACK is lost
    pair.advance(1.0)
    (resent,) = pair.out_a()
    assert resent.payload == b"" and resent.options.fastopen == fo.cookie
    pair.to_b([resent])  # a duplicate SYN in SYN-RECEIVED: the SYN-ACK again
    (synack,) = pair.out_b()
    assert synack.flags == S | A and synack.ack == 1005
    pair.to_a([synack])
    (ack,) = pair.out_a()
    assert ack.flags == A and ack.seq == 1005 and ack.payload == b""
    pair.to_b([ack])
    assert pair.b.state is State.ESTABLISHED and pair.b.readable_bytes == 0
    assert fo.data_acked and pair.exchange() == 0


def test_syn_data_is_bounded_by_the_mss_and_the_rest_follows() -> None:
    jar = FastOpenCookies(SECRET)
    pair = TcpPair(server_fastopen=jar)
    fo = FastOpen(jar.cookie(CLIENT_IP, 0.0))  # no MSS cached: RFC 9293's 536
    body = bytes(range(256)) * 8
    (syn,) = _open_with(pair, fo, body)
    assert len(syn.payload) == 536 - 40 and syn.payload == body[:496]
    pair.to_b([syn])
    pair.exchange()
    got = pair.b.receive()
    assert got == body and pair.a.stats.retransmissions == 0


def test_the_pair_without_fast_open_is_unchanged() -> None:
    pair = TcpPair(server_fastopen=FastOpenCookies(SECRET))
    syn, synack, _ = pair.open()
    assert syn[0].options.fastopen is None and synack[0].options.fastopen is None


# -- cookies (RFC 7413 §4.1.2) ---------------------------------------------


def test_cookies_authenticate_the_address_and_expire() -> None:
    jar = FastOpenCookies(SECRET, lifetime=100.0)
    a, b = IPv4Address("10.213.0.1"), IPv4Address("10.213.0.9")
    ca = jar.cookie(a, 0.0)
    assert jar.valid(a, ca, 0.0) and jar.valid(a, ca, 150.0)
    assert not jar.valid(b, ca, 0.0)  # another source cannot use it
    assert not jar.valid(a, ca, 200.0)  # two periods later it is gone
    assert not jar.valid(a, ca[:-1], 0.0) and not jar.valid(a, ca + b"x", 0.0)
    other = FastOpenCookies(bytes(16))
    assert not other.valid(a, ca, 0.0)
    jar.rekey(bytes(range(1, 17)))
    assert jar.cookie(a, 0.0) != ca
    assert jar.valid(a, ca, 0.0)  # the old secret stays good for a while
    jar.rekey(bytes(range(2, 18)))
    assert not jar.valid(a, ca, 0.0)
    with pytest.raises(LocalProtocolError):
        FastOpenCookies(b"short")
    with pytest.raises(LocalProtocolError):
        FastOpen(b"abc")  # RFC 7413 §4.1.1: 4 to 16 octets


def test_the_cache_is_bounded() -> None:
    cache = FastOpenCache(limit=3)
    for i in range(10):
        fo = FastOpen(b"")
        fo.synack_seen = True
        fo.cookie_received = bytes([i]) * 8
        cache.learn(IPv4Address(f"10.213.1.{i}"), fo, 0.0)
    assert len(cache) == 3
    assert cache.cookie(IPv4Address("10.213.1.9")) == bytes([9]) * 8
    assert cache.cookie(IPv4Address("10.213.1.0")) is None


# -- the option on the wire (RFC 7413 §4.1.1) ------------------------------


@pytest.mark.parametrize("cookie", [b"", b"abcd", b"12345678", bytes(16)])
def test_the_option_round_trips_beside_every_syn_option(cookie: bytes) -> None:
    opts = TcpOptions(mss=1460, wscale=7, sack_permitted=True, timestamps=(1, 2), fastopen=cookie)
    seg = TcpSegment(1, 2, 3, 0, S, 100, b"x", opts)
    raw = wtcp.build(seg, CLIENT_IP, SERVER_IP)
    assert (len(raw) - 1 - 20) % 4 == 0 and len(raw) - 1 - 20 <= 40
    assert wtcp.parse(raw, CLIENT_IP, SERVER_IP) == seg


@pytest.mark.parametrize("forged", [b"", bytes(3), bytes(17)])
def test_a_syn_ack_cookie_of_a_forged_length_is_not_cached(forged: bytes) -> None:
    # A hostile server answers a cookie request with a cookie RFC 7413 §4.1.1
    # does not allow: the handshake completes, the client keeps no cookie
    # (a cached one would make every later open to that server fail), and a
    # later open asks anew instead of raising.
    cache = FastOpenCache()
    pair = TcpPair()
    fo = cache.offer(SERVER_IP, 0.0)
    assert fo is not None
    pair.to_b(_open_with(pair, fo, b""))
    (synack,) = pair.out_b()
    opts = dataclasses.replace(synack.options, fastopen=forged)
    pair.to_a([dataclasses.replace(synack, options=opts)])
    assert pair.a.state is State.ESTABLISHED
    assert fo.synack_seen and fo.cookie_received is None
    cache.learn(SERVER_IP, fo, 1.0)
    assert cache.cookie(SERVER_IP) is None
    later = cache.offer(SERVER_IP, 1.0 + cache.negative_time)
    assert later is not None and later.cookie == b""


def test_a_cookie_of_an_odd_length_is_kept_not_refused() -> None:
    # kind 34, length 5: three octets, below the 4-octet minimum.
    raw_opts = bytes((34, 5, 1, 2, 3, 0, 0, 0))
    opts = wtcp.parse_options(raw_opts)
    assert opts.fastopen == b"\x01\x02\x03"
    jar = FastOpenCookies(SECRET)
    seg = TcpSegment(1, 2, 3, 0, S, 100, b"data", opts)
    fo, outcome = jar.answer(CLIENT_IP, seg, 0.0)
    assert outcome == "bad-cookie" and fo is not None and not fo.accepted


def test_a_lost_syn_ack_and_early_answer_are_both_sent_again() -> None:
    jar = FastOpenCookies(SECRET)
    pair = TcpPair(server_fastopen=jar)
    fo = FastOpen(jar.cookie(CLIENT_IP, 0.0))
    (syn,) = _open_with(pair, fo, b"req")
    pair.to_b([syn])
    assert pair.b.receive() == b"req"
    pair.b.send(b"resp", pair.now)
    lost = pair.out_b()
    assert [s.payload for s in lost] == [b"", b"resp"]
    pair.advance(1.0)  # both ends' initial RTO
    (resyn,) = pair.out_a()
    assert resyn.payload == b"" and resyn.flags == S
    synack, answer = pair.out_b()
    # The server goes back to its SYN-ACK and resends what followed it.
    assert synack.flags == S | A and synack.ack == 1004
    assert answer.seq == 5001 and answer.payload == b"resp"
    pair.to_a([synack, answer])
    assert pair.a.state is State.ESTABLISHED and pair.a.receive() == b"resp"
    pair.to_b([resyn])  # the client's resent SYN arrives late: a duplicate
    pair.exchange()
    assert pair.b.state is State.ESTABLISHED and pair.b.readable_bytes == 0
    assert pair.a.readable_bytes == 0 and pair.a.stats.retransmissions == 0
    assert pair.b.stats.retransmissions == 1 and fo.data_acked


def test_the_option_is_summarized_and_dissected_by_name() -> None:
    from synack.wire.dissect import dissect
    from tests.wire.test_summary import tcp_frame

    for cookie, summary, field in (
        (b"", "tfo cookiereq", "cookie request"),
        (bytes(range(8)), "tfo cookie 0001020304050607", "cookie 0x0001020304050607"),
    ):
        seg = TcpSegment(40000, 80, 1, 0, S, 64240, b"GET", TcpOptions(mss=1460, fastopen=cookie))
        d = dissect(tcp_frame(seg))
        assert summary in d.summary and d.error is None
        tcp_layer = d.layer("TCP")
        assert tcp_layer is not None
        (f,) = [f for f in tcp_layer.fields if f.name == "Fast Open cookie"]
        assert f.value_text == field and f.problem == ""
        assert d.frame[f.byte_offset] == 34 and d.frame[f.byte_offset + 1] == 2 + len(cookie)


def test_a_simultaneous_open_sends_no_cookie_on_its_syn_ack() -> None:
    jar = FastOpenCookies(SECRET)
    pair = TcpPair(server_fastopen=jar)
    fo = FastOpen(jar.cookie(CLIENT_IP, 0.0))
    (syn,) = _open_with(pair, fo, b"")
    assert syn.options.fastopen == fo.cookie and syn.payload == b""
    # The peer's own SYN crosses ours (RFC 9293 Figure 7): we answer SYN,ACK.
    peer_syn = TcpSegment(7, 40000, 9000, 0, S, 65535, b"", TcpOptions(mss=1460))
    pair.to_a([peer_syn])
    (synack,) = pair.out_a()
    assert synack.flags == S | A and synack.options.fastopen is None
