"""TCP Fast Open (RFC 7413) between two synack hosts on the simulated LAN.

Each end is a whole host (synack.stack.fastopen): the listener's queue length,
the host's switch (HostConfig.tcp_fastopen), the client's cookie cache, the
counters. Times are virtual: two 12.5 ms hops (host, switch, host) make a 50 ms RTT, so a
request and its answer take one RTT with Fast Open and two without.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from synack.core.sim import LinkParams
from synack.links.lan import Lan
from synack.stack.host import Host
from synack.tcp.states import Cause, State
from tests.stack.netfix import make_host

B = IPv4Address("10.213.0.2")


def _hosts(
    client_mode: int = 1, server_mode: int = 3, delay: float = 0.0125
) -> tuple[Lan, Host, Host]:
    lan = Lan(params=LinkParams(delay=delay))
    sw, _ = lan.switch()
    a = make_host(1, "10.213.0.1/24", tcp_fastopen=client_mode)
    b = make_host(2, "10.213.0.2/24", tcp_fastopen=server_mode)
    lan.attach_host(a, sw)
    lan.attach_host(b, sw)
    a.start(0.0)
    b.start(0.0)
    lan.run()
    # ARP both ways, so that round trips below count TCP only.
    a.ping(B, 1, 1, b"", lan.now)
    lan.run()
    return lan, a, b


def _request(lan: Lan, a: Host, b: Host, *, fastopen: bool) -> tuple[float, bytes, State]:
    """One request-response: the virtual time from connect to the answer read,
    the request as the server read it and the server's state when it read it."""
    listener = b.tcp.listeners[80]
    start = lan.now
    client = a.tcp_connect((B, 80), lan.now, fastopen=fastopen)
    client.send(b"GET / HTTP/1.0\r\n\r\n", lan.now)
    lan.kick()
    server = None
    request = b""
    seen = State.CLOSED
    answer = b""
    for _ in range(2000):
        lan.run(until=lan.now + 0.001)
        if server is None:
            server = listener.accept()
        if server is not None and not request:
            request = server.receive(1 << 16, lan.now)
            if request:
                seen = server.conn.state
                server.send(b"HTTP/1.0 200 OK\r\n\r\n", lan.now)
                lan.kick()
        answer += client.receive(1 << 16, lan.now)
        if answer:
            break
    assert answer == b"HTTP/1.0 200 OK\r\n\r\n"
    took = lan.now - start
    client.close(lan.now)
    assert server is not None
    server.close(lan.now)
    lan.run(until=lan.now + 1.0)
    return took, request, seen


def test_fast_open_saves_a_round_trip_between_two_hosts() -> None:
    lan, a, b = _hosts()
    b.tcp_listen(80, fastopen_qlen=16)
    plain, req, _ = _request(lan, a, b, fastopen=False)
    assert req == b"GET / HTTP/1.0\r\n\r\n"
    # First Fast Open: a cookie request, the data after the handshake.
    first, req, _ = _request(lan, a, b, fastopen=True)
    assert req == b"GET / HTTP/1.0\r\n\r\n"
    assert b.counters["tcp-fastopen-request"] == 1
    assert a.tcp.fastopen.cache.cookie(B) is not None
    # Then the data rides on the SYN: the server reads it in SYN-RECEIVED
    # and answers at once: one RTT (50 ms) instead of two.
    fast, req, seen = _request(lan, a, b, fastopen=True)
    assert req == b"GET / HTTP/1.0\r\n\r\n" and seen is State.SYN_RECEIVED
    assert b.counters["tcp-fastopen-accepted"] == 1
    assert a.counters["tcp-fastopen-active-acked"] == 1
    assert 0.100 <= plain < 0.110 and 0.100 <= first < 0.110
    assert 0.050 <= fast < 0.060
    assert b.tcp.listeners[80].fastopen_pending == 0


def test_a_listener_that_did_not_ask_ignores_fast_open_and_the_client_falls_back() -> None:
    lan, a, b = _hosts()
    b.tcp_listen(80)  # no queue length: off
    for _ in range(2):
        took, req, _ = _request(lan, a, b, fastopen=True)
        assert req == b"GET / HTTP/1.0\r\n\r\n" and took >= 0.100
    assert not any(
        k.startswith("tcp-fastopen-") and v for k, v in b.counters.items() if "active" not in k
    )
    # The request went unanswered: the client does not ask this server again for a while.
    assert a.counters["tcp-fastopen-active"] == 1


@pytest.mark.parametrize("server_mode", [0, 1])
def test_the_server_side_is_off_unless_the_host_allows_it(server_mode: int) -> None:
    lan, a, b = _hosts(server_mode=server_mode)
    b.tcp_listen(80, fastopen_qlen=16)
    for _ in range(2):
        _request(lan, a, b, fastopen=True)
    assert b.counters["tcp-fastopen-request"] == 0 and b.counters["tcp-fastopen-accepted"] == 0


def test_a_client_host_without_fast_open_opens_normally() -> None:
    lan, a, b = _hosts(client_mode=0)
    b.tcp_listen(80, fastopen_qlen=16)
    for _ in range(2):
        took, _, _ = _request(lan, a, b, fastopen=True)
        assert took >= 0.100
    assert b.counters["tcp-fastopen-request"] == 0 and a.counters["tcp-fastopen-active"] == 0


def test_a_timed_out_fast_open_drops_it_for_that_server_but_a_refused_one_does_not() -> None:
    lan, a, b = _hosts()
    refused = a.tcp_connect((B, 81), lan.now, fastopen=True)  # nobody listens: RST
    refused.send(b"x", lan.now)
    lan.kick()
    lan.run(until=lan.now + 1.0)
    assert refused.gone and a.counters["tcp-fastopen-active-failed"] == 0
    fo = a.tcp.fastopen.cache.offer(B, lan.now)
    assert fo is not None and fo.cookie == b""  # still asks
    # A listener whose accept queue is full drops SYNs (as Linux): no answer.
    b.tcp_listen(82, backlog=1)
    a.tcp_connect((B, 82), lan.now)
    lan.run(until=lan.now + 1.0)
    lost = a.tcp_connect((B, 82), lan.now, fastopen=True)
    lost.send(b"x", lan.now)
    lan.kick()
    lan.run(until=lan.now + 400.0)
    assert lost.gone and lost.conn.transitions[-1].cause is Cause.TIMEOUT
    assert a.counters["tcp-fastopen-active-failed"] == 1
    assert a.tcp.fastopen.cache.offer(B, lan.now) is None  # §4.1.3.1: not for a while


@pytest.mark.parametrize("mode", [-1, 4])
def test_the_host_refuses_an_unknown_fast_open_mode(mode: int) -> None:
    with pytest.raises(ValueError, match="tcp_fastopen"):
        make_host(1, "10.213.0.1/24", tcp_fastopen=mode)


def test_rekeying_keeps_old_cookies_for_one_period_then_refuses_them() -> None:
    lan, a, b = _hosts()
    b.tcp_listen(80, fastopen_qlen=16)
    _request(lan, a, b, fastopen=True)  # the cookie
    b.tcp_fastopen_rekey(b"n" * 16)
    _, _, seen = _request(lan, a, b, fastopen=True)
    assert seen is State.SYN_RECEIVED and b.counters["tcp-fastopen-accepted"] == 1
    b.tcp_fastopen_rekey(b"m" * 16)
    took, req, _ = _request(lan, a, b, fastopen=True)
    # Refused: the data waited for the handshake; a fresh cookie came back.
    assert b.counters["tcp-fastopen-bad-cookie"] == 1 and took >= 0.100
    assert req == b"GET / HTTP/1.0\r\n\r\n"
    _, _, seen = _request(lan, a, b, fastopen=True)
    assert seen is State.SYN_RECEIVED and b.counters["tcp-fastopen-accepted"] == 2
