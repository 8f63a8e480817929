"""The host's connections by ConnKey (TcpDemux.conns, Host.connections): a
read-only view of its table by flow (stack/endpoints.StreamsByKey) that must
answer as the dict by ConnKey it replaced did, through opens, TIME-WAIT and
resets."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from synack.stack.host import Host, TcpStream
from synack.tcp.states import State
from tests.stack.netfix import two_hosts

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")


def expected(host: Host) -> dict[object, TcpStream]:
    """What the old dict held: every stream the host keeps, by its key, in order."""
    return {s.key: s for s in host.tcp.flows.values()}


def check(host: Host) -> None:
    conns = host.connections
    want = expected(host)
    assert dict(conns) == want
    assert list(conns) == list(want)  # insertion order, as a dict's
    assert len(conns) == len(want)
    assert list(conns.values()) == list(want.values())
    for key, stream in want.items():
        assert key in conns and conns[key] is stream and conns.get(key) is stream


def test_view_follows_opens_time_wait_and_reset() -> None:
    lan, a, b = two_hosts()
    listener = b.tcp_listen(7)
    clients = [a.tcp_connect((B, 7), lan.now) for _ in range(3)]
    check(a), check(b)  # SYN-SENT on one side, nothing accepted on the other yet
    lan.run()
    servers = []
    while (s := listener.accept()) is not None:
        servers.append(s)
    assert len(servers) == 3 and len(a.connections) == len(b.connections) == 3
    check(a), check(b)
    # The first closes both ways, A first: A keeps a TIME-WAIT record, not the stream.
    clients[0].close(lan.now)
    lan.run()
    servers[0].close(lan.now)
    lan.run()
    assert clients[0].conn.state is State.TIME_WAIT
    assert clients[0].key not in a.connections and clients[0].key in a.tcp.time_wait
    assert servers[0].key not in b.connections  # CLOSED: forgotten
    check(a), check(b)
    # The second is reset: gone on both hosts.
    clients[1].abort(lan.now)
    lan.run()
    assert clients[1].key not in a.connections and servers[1].key not in b.connections
    check(a), check(b)
    assert list(a.connections) == [clients[2].key]


def test_keys_that_name_no_connection() -> None:
    lan, a, b = two_hosts()
    b.tcp_listen(7)
    client = a.tcp_connect((B, 7), lan.now)
    lan.run()
    conns = a.connections
    lip, lport, rip, rport = client.key
    for key in [
        (lip, lport, rip, rport + 1),  # another port
        (rip, lport, lip, rport),  # the addresses swapped
        (IPv6Address(f"::{lip}"), lport, IPv6Address(f"::{rip}"), rport),  # same ints, IPv6
        (str(lip), lport, str(rip), rport),  # not addresses
        (lip, lport),  # not a 4-tuple
        None,
        "10.213.0.1",
    ]:
        assert key not in conns
        assert conns.get(key) is None  # type: ignore[call-overload]
    assert client.key in conns
