"""TCP Fast Open (RFC 7413) attacks on a listener that accepts it.

Fast Open lets data reach the application before the client has proved its
address, so its defences are the cookie (RFC 7413 §4.1.2: only the server can
make one, and one is good only for the address it was made for) and a bound on
the opens pending at once (§5.1, Linux's ``max_qlen``). Each attack below is
injected as raw frames into the sans-IO host on a virtual clock:

- 1,000 SYNs with data and forged cookies from spoofed sources: none accepted,
  each counted, no octet of theirs readable, and a real client still served;
- a real client's cookie replayed from other addresses: refused;
- 500 SYNs with data and a *valid* cookie (the attacker's own address, many
  ports, never completing the handshake): at most ``fastopen_qlen`` accepted,
  the rest answered with an ordinary handshake and counted, and once the
  pending opens time out the listener accepts Fast Open again;
- the same past the half-open queue: SYN cookies answer, no data is taken.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address

from synack.stack.host import Host
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment
from tests.stack.netfix import make_host

B = IPv4Address("10.213.0.2")
GATEWAY = "10.213.0.254"  # the spoofed sources' route: nobody answers its ARP
QLEN = 8


def _server() -> Host:
    b = make_host(2, "10.213.0.2/24", gateway=GATEWAY, tcp_fastopen=3)
    b.start(0.0)
    b.tcp_listen(80, syn_backlog=4096, backlog=1024, fastopen_qlen=QLEN)
    return b


def _syn(b: Host, src: IPv4Address, sport: int, cookie: bytes, data: bytes) -> bytes:
    seg = TcpSegment(
        sport,
        80,
        random.Random(sport).randrange(1 << 32),
        0,
        TcpFlags.SYN,
        65535,
        data,
        TcpOptions(mss=1460, sack_permitted=True, wscale=7, fastopen=cookie),
    )
    raw = wip.build(wip.Ipv4Packet(src, B, wip.PROTO_TCP, wtcp.build(seg, src, B)))
    return weth.build(weth.EthernetFrame(b.mac, b"\x02\x99\x99\x99\x99\x99", 0x0800, raw))


def _readable(b: Host) -> int:
    return sum(s.conn.readable_bytes for s in b.tcp.conns.values())


def test_forged_cookies_from_spoofed_sources_are_refused_and_counted() -> None:
    b = _server()
    rng = random.Random(7)
    n = 1000
    for i in range(n):
        src = IPv4Address(f"10.213.{rng.randrange(128, 256)}.{rng.randrange(1, 255)}")
        cookie = rng.randbytes(rng.choice((4, 8, 8, 8, 16)))
        b.receive_frame(_syn(b, src, 1024 + i, cookie, b"EVIL" * 10), i * 1e-4)
    assert b.counters["tcp-fastopen-bad-cookie"] == n
    assert b.counters["tcp-fastopen-accepted"] == 0
    listener = b.tcp.listeners[80]
    assert listener.fastopen_pending == 0 and listener.accept() is None
    assert _readable(b) == 0  # not one forged octet reached a connection
    # A real client's cookie, replayed from other addresses, is refused too.
    real = IPv4Address("10.213.0.1")
    cookie = b.tcp.fastopen.cookies.cookie(real, 1.0)
    for i in range(50):
        b.receive_frame(_syn(b, IPv4Address(f"10.213.200.{i + 1}"), 5000 + i, cookie, b"x"), 1.0)
    assert b.counters["tcp-fastopen-bad-cookie"] == n + 50 and _readable(b) == 0
    # ... and from its own address it is good: the listener still serves.
    b.receive_frame(_syn(b, real, 6000, cookie, b"hello"), 1.0)
    assert b.counters["tcp-fastopen-accepted"] == 1
    child = listener.accept()
    assert child is not None and child.receive(100, 1.0) == b"hello"


def test_the_pending_bound_holds_under_a_flood_of_valid_cookies() -> None:
    b = _server()
    attacker = IPv4Address("10.213.0.66")
    cookie = b.tcp.fastopen.cookies.cookie(attacker, 0.0)
    n = 500
    for i in range(n):
        b.receive_frame(_syn(b, attacker, 1024 + i, cookie, b"GET /"), i * 1e-4)
    listener = b.tcp.listeners[80]
    assert b.counters["tcp-fastopen-accepted"] == QLEN
    assert b.counters["tcp-fastopen-overflow"] == n - QLEN
    assert listener.fastopen_pending == QLEN
    # Only the accepted opens' data is readable; the others wait for a
    # handshake the attacker never completes.
    assert _readable(b) == QLEN * len(b"GET /")
    assert b.counters["tcp-passive-opens"] == n
    # The pending opens time out (SYN-ACK retries exhausted): the bound frees.
    now = 0.1
    while now < 400.0 and listener.fastopen_pending:
        now += 1.0
        b.handle_timer(now)
    assert listener.fastopen_pending == 0
    b.receive_frame(
        _syn(b, attacker, 9000, b.tcp.fastopen.cookies.cookie(attacker, now), b"again"), now
    )
    assert b.counters["tcp-fastopen-accepted"] == QLEN + 1
    assert listener.fastopen_pending == 1


def test_past_the_half_open_queue_syn_cookies_answer_without_taking_data() -> None:
    b = make_host(2, "10.213.0.2/24", gateway=GATEWAY, tcp_fastopen=3)
    b.start(0.0)
    b.tcp_listen(80, syn_backlog=4, backlog=1024, fastopen_qlen=2)
    attacker = IPv4Address("10.213.0.66")
    cookie = b.tcp.fastopen.cookies.cookie(attacker, 0.0)
    n = 20
    for i in range(n):
        b.receive_frame(_syn(b, attacker, 2000 + i, cookie, b"DATA"), 0.001 * i)
    # Two accepted (the bound), four in the half-open queue, the rest SYN cookies.
    assert b.counters["tcp-fastopen-accepted"] == 2
    assert b.counters["tcp-fastopen-overflow"] == 4
    assert b.counters["tcp-syncookies-sent"] == n - 6
    assert _readable(b) == 2 * len(b"DATA")
    # The half-open children acknowledge the SYN only (the SYN cookies' SYN-ACKs
    # keep no state: their ACK is the SYN's plus one, stack/syncookies.py).
    taken = sorted((s.conn.rcv_nxt - s.conn.irs) % (1 << 32) for s in b.tcp.conns.values())
    assert taken == [1, 1, 1, 1, 5, 5]
