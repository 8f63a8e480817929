"""Small builders for in-memory networks used by the stack tests."""

from __future__ import annotations

import random
from collections import Counter
from ipaddress import IPv4Address, IPv4Interface

from synack.links.lan import Lan
from synack.stack.host import Host, HostConfig, TcpStream
from synack.stack.router import Router, RouterInterface
from synack.tcp.states import State


def mac(n: int) -> bytes:
    return bytes([0x02, 0, 0, 0, 0, n])


def make_host(n: int, cidr: str, gateway: str | None = None, **kw: object) -> Host:
    cfg = HostConfig(
        mac=mac(n),
        interface=IPv4Interface(cidr),
        gateway=IPv4Address(gateway) if gateway else None,
        name=f"h{n}",
        **kw,  # type: ignore[arg-type]
    )
    return Host(cfg, rng=random.Random(n), isn_secret=bytes([n]) * 16)


def drained(h: Host) -> tuple[Counter[str], list[bytes], list[str]]:
    """What a host did since last asked: its counters, the frames it has to
    send and the names of its events (both taken), to compare two runs."""
    frames = h.frames_to_send()
    events = []
    while (e := h.next_event()) is not None:
        events.append(type(e).__name__)
    return Counter(h.counters), frames, events


def two_hosts(**kw: object) -> tuple[Lan, Host, Host]:
    lan = Lan()
    sw, _ = lan.switch()
    a = make_host(1, "10.213.0.1/24", **kw)
    b = make_host(2, "10.213.0.2/24", **kw)
    lan.attach_host(a, sw)
    lan.attach_host(b, sw)
    a.start(0.0)
    b.start(0.0)
    lan.run()
    return lan, a, b


def offload_pair(tso: bool) -> tuple[Lan, Host, Host, TcpStream, TcpStream]:
    """Two hosts on a LAN, B's link taking split frames (checksums and TSO
    left to it when ``tso``), and a connection from A to B's port 80
    established: (lan, a, b, A's stream, B's accepted stream)."""
    lan, a, b = two_hosts()
    b.enable_offload(split=True, tso=tso)
    listener = b.tcp_listen(80)
    client = a.tcp_connect((IPv4Address("10.213.0.2"), 80), lan.now)
    lan.run()
    server = listener.accept()
    assert server is not None and server.conn.state is State.ESTABLISHED
    return lan, a, b, client, server


def acks_back(a: Host, b: Host, now: float) -> float:
    """A millisecond on, A's ACKs go to B; with none to send, 0.2 s more pass
    and both hosts' timers run (delayed ACK, retransmission). The new now."""
    now += 0.001
    acks = a.frames_to_send()
    b.receive_frames(acks, now)
    if not acks:
        now += 0.2
        for h in (a, b):
            h.handle_timer(now)
    return now


def routed() -> tuple[Lan, Host, Host, Router]:
    lan = Lan()
    sw1, _ = lan.switch()
    sw2, _ = lan.switch()
    a = make_host(1, "10.213.1.10/24", gateway="10.213.1.1")
    b = make_host(2, "10.213.2.10/24", gateway="10.213.2.1")
    router = Router(
        [
            RouterInterface(mac(0x81), IPv4Interface("10.213.1.1/24")),
            RouterInterface(mac(0x82), IPv4Interface("10.213.2.1/24"), mtu=576),
        ]
    )
    lan.attach_host(a, sw1)
    lan.attach_host(b, sw2)
    lan.attach_router(router, [sw1, sw2])
    a.start(0.0)
    b.start(0.0)
    lan.run()
    return lan, a, b, router
