"""One request and its answer, with TCP Fast Open (RFC 7413) and without, in virtual time.

Two synack hosts on the simulated LAN (host - switch - host, each hop half of
the one-way delay, so RTT = 2 x 2 x hop). The client connects, sends a
100-octet request and reads a 100-octet answer; the server answers as soon as
it has read the request. The figure is the virtual time from connect() to the
answer read (the app loop polls every 0.5 ms, so up to a millisecond of it is
polling): with Fast Open (a cookie obtained by an earlier connection, the
request on the SYN, the answer sent in SYN-RECEIVED) against an ordinary open.

What the ratio means: time without Fast Open / time with it (higher is
better; 2.0 is one round trip saved out of two). Virtual time, so the
machine's load does not enter.

    .venv/bin/python bench/tcp_fastopen.py [--rtt-ms 20,50,100]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from ipaddress import IPv4Address, IPv4Interface

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Figure
from synack.core.sim import LinkParams
from synack.links.lan import Lan
from synack.stack.host import Host, HostConfig

SERVER = IPv4Address("10.213.0.2")
REQUEST = b"q" * 100
ANSWER = b"a" * 100
STEP = 0.0005


def _hosts(rtt: float) -> tuple[Lan, Host, Host]:
    lan = Lan(params=LinkParams(delay=rtt / 4))
    sw, _ = lan.switch()
    hosts = []
    for n in (1, 2):
        cfg = HostConfig(
            mac=bytes([2, 0, 0, 0, 0, n]),
            interface=IPv4Interface(f"10.213.0.{n}/24"),
            name=f"h{n}",
            tcp_fastopen=3,
        )
        host = Host(cfg, rng=random.Random(n), isn_secret=bytes([n]) * 16)
        lan.attach_host(host, sw)
        host.start(0.0)
        hosts.append(host)
    lan.run()
    a, b = hosts
    a.ping(SERVER, 1, 1, b"", lan.now)  # ARP out of the way
    lan.run()
    b.tcp_listen(80, fastopen_qlen=16)
    return lan, a, b


def request(lan: Lan, a: Host, b: Host, fastopen: bool) -> float:
    """Virtual seconds from connect() to the whole answer read."""
    listener = b.tcp.listeners[80]
    start = lan.now
    client = a.tcp_connect((SERVER, 80), lan.now, fastopen=fastopen)
    client.send(REQUEST, lan.now)
    lan.kick()
    server = None
    got = b""
    answered = False
    for _ in range(100_000):
        lan.run(until=lan.now + STEP)
        if server is None:
            server = listener.accept()
        if server is not None and not answered and server.conn.readable_bytes >= len(REQUEST):
            server.receive(1 << 16, lan.now)
            server.send(ANSWER, lan.now)
            answered = True
            lan.kick()
        got += client.receive(1 << 16, lan.now)
        if len(got) >= len(ANSWER):
            break
    took = lan.now - start
    assert server is not None and got == ANSWER
    client.close(lan.now)
    server.close(lan.now)
    lan.run(until=lan.now + 1.0)
    return took


def measure(rtt: float) -> tuple[float, float]:
    """(with Fast Open, without), seconds; the first Fast Open gets the cookie."""
    lan, a, b = _hosts(rtt)
    request(lan, a, b, True)  # cookie request
    fast = request(lan, a, b, True)
    plain = request(lan, a, b, False)
    assert b.counters["tcp-fastopen-accepted"] == 1
    return fast, plain


def figures(quick: bool) -> list[Figure]:
    out = []
    for rtt_ms in (50,) if quick else (20, 50, 100):
        fast, plain = measure(rtt_ms / 1000)
        out.append(
            Figure(
                bench="tcp_fastopen",
                name=f"request-response, new connection, RTT {rtt_ms} ms, TCP Fast Open",
                value=fast * 1000,
                unit="ms (virtual time)",
                anchor="the same without Fast Open",
                anchor_value=plain * 1000,
                ratios=[plain / fast],
                command=f".venv/bin/python bench/tcp_fastopen.py --rtt-ms {rtt_ms}",
                note="ratio: time without / with (2.0 = one RTT saved of two)",
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--rtt-ms", default="20,50,100", help="round-trip times, ms (default 20,50,100)"
    )
    args = ap.parse_args()
    print(f"{'RTT':>8} {'Fast Open':>12} {'ordinary':>12} {'ratio':>7}")
    for rtt_ms in (float(x) for x in args.rtt_ms.split(",")):
        fast, plain = measure(rtt_ms / 1000)
        print(f"{rtt_ms:6.0f}ms {fast * 1000:10.1f}ms {plain * 1000:10.1f}ms {plain / fast:6.2f}x")


if __name__ == "__main__":
    main()
