"""ARP spoofing against the stack's neighbour table (issue 14, item 2).

The attack: while synack's entry for a neighbour is STALE (after first
contact and after every 30 s without confirmation) or REACHABLE, forged ARP
(an unsolicited reply, a gratuitous request, a request for synack's own IP,
each carrying the neighbour's IP and the attacker's MAC) tries to take the
entry over. Guarantee: the binding never changes while the real neighbour
answers a unicast probe, traffic keeps reaching it, and every refusal is
counted and reported as an ArpRefused event. What is and is not defended:
docs/arp-defence.md.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from synack.stack import events as ev
from synack.stack.arp import NeighbourState
from synack.stack.host import Host
from synack.wire import arp as warp
from synack.wire import ethernet as weth
from tests.stack.netfix import mac, make_host, routed, two_hosts

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")
EVIL = b"\x02\xee\xee\xee\xee\xee"
ROUNDS = 100  # forged packets of each kind


def _arp(op: int, sender_mac: bytes, sender: IPv4Address, target: IPv4Address, dst: bytes) -> bytes:
    target_mac = bytes(6) if op == warp.OP_REQUEST else dst
    pkt = warp.ArpPacket(op, sender_mac, sender, target_mac, target)
    return weth.build(weth.EthernetFrame(dst, sender_mac, weth.ETHERTYPE_ARP, warp.build(pkt)))


def _forgeries(victim_ip: IPv4Address, us_ip: IPv4Address, us_mac: bytes) -> dict[str, bytes]:
    return {
        "unsolicited reply": _arp(warp.OP_REPLY, EVIL, victim_ip, us_ip, us_mac),
        "gratuitous request": _arp(warp.OP_REQUEST, EVIL, victim_ip, victim_ip, weth.BROADCAST),
        "request for our IP": _arp(warp.OP_REQUEST, EVIL, victim_ip, us_ip, weth.BROADCAST),
    }


def _drain(host: Host) -> list[object]:
    out = []
    while (e := host.next_event()) is not None:
        out.append(e)
    return out


@pytest.mark.parametrize("kind", ["unsolicited reply", "gratuitous request", "request for our IP"])
@pytest.mark.parametrize("age", [0.0, 31.0], ids=["reachable", "stale"])
def test_forged_arp_never_takes_over_an_entry(kind: str, age: float) -> None:
    lan, a, b = two_hosts()
    a.ping(B, 1, 1, b"", lan.now)
    lan.run()
    lan.run(until=lan.now + age)
    assert a.arp.state(B, lan.now) is (NeighbourState.STALE if age else NeighbourState.REACHABLE)
    _drain(a)
    forged = _forgeries(B, A, a.mac)[kind]
    for _ in range(ROUNDS):
        a.receive_frame(forged, lan.now)
        lan.run(until=lan.now + 0.05)
    lan.run(until=lan.now + 5)  # every probe answered or timed out
    assert a.arp.entries[B].mac == b.mac
    assert a.counters["arp-moved"] == 0
    refused = [e for e in _drain(a) if isinstance(e, ev.ArpRefused)]
    # Counted and reported: each refusal names the forged MAC.
    assert refused and all(e.ip == B and e.mac == EVIL for e in refused)
    assert a.counters["arp-refused-conflict"] == len(refused)
    # Traffic still reaches the real b.
    a.ping(B, 1, 2, b"after", lan.now)
    lan.run()
    assert [e.data for e in _drain(a) if isinstance(e, ev.EchoReply)] == [b"after"]


def test_a_host_that_really_moved_is_believed_once_probes_of_the_old_mac_fail() -> None:
    # a alone on its link: b's old MAC is gone; b comes back with a new NIC.
    a = make_host(1, "10.213.0.1/24")
    a.receive_frame(_arp(warp.OP_REQUEST, mac(2), B, A, weth.BROADCAST), 0.0)
    assert a.arp.state(B, 0.0) is NeighbourState.STALE
    a.frames_to_send()
    a.receive_frame(_arp(warp.OP_REQUEST, EVIL, B, B, weth.BROADCAST), 1.0)
    assert a.arp.entries[B].mac == mac(2)  # not yet
    probes = [weth.parse(f) for f in a.frames_to_send()]
    assert [p.dst for p in probes] == [mac(2)]  # unicast probe of the old MAC
    now = 1.0
    while (t := a.get_timer()) is not None and t < 10.0:
        now = t
        a.handle_timer(now)
        probes += [weth.parse(f) for f in a.frames_to_send()]
    assert [p.dst for p in probes] == [mac(2)] * 3  # max_tries, none answered
    assert a.arp.entries[B].mac == EVIL
    assert a.counters["arp-moved"] == 1
    # Adopted STALE: confirmed by a probe of the new MAC on first use.
    assert a.arp.state(B, now) is NeighbourState.STALE


def test_forged_answers_while_resolving_do_not_fill_the_entry() -> None:
    lan, a, b = two_hosts()
    a.ping(B, 1, 1, b"x", lan.now)  # request out, entry INCOMPLETE
    assert a.arp.state(B, lan.now) is NeighbourState.INCOMPLETE
    # A gratuitous request, or a reply addressed to someone else, answers nothing.
    a.receive_frame(_arp(warp.OP_REQUEST, EVIL, B, B, weth.BROADCAST), lan.now)
    other = IPv4Address("10.213.0.9")
    a.receive_frame(_arp(warp.OP_REPLY, EVIL, B, other, weth.BROADCAST), lan.now)
    assert a.arp.entries[B].mac is None
    assert a.counters["arp-refused-unsolicited"] == 2
    lan.run()
    assert a.arp.entries[B].mac == b.mac
    assert [e.data for e in _drain(a) if isinstance(e, ev.EchoReply)] == [b"x"]


def test_router_shares_the_defence() -> None:
    lan, a, _b, router = routed()
    evil = Attacker()
    lan.attach_host(evil, 0)  # on the router's first subnet, next to a
    a.ping(IPv4Address("10.213.2.10"), 1, 1, b"", lan.now)
    lan.run()
    lan.run(until=lan.now + 40)  # past the re-probe's confirmation too
    r1 = router.ports[0]
    assert r1.arp.state(a.ip, lan.now) is NeighbourState.STALE
    for forged in _forgeries(a.ip, r1.ip, r1.mac).values():
        for _ in range(ROUNDS):
            evil.queue.append(forged)
            lan.kick()
            lan.run(until=lan.now + 0.05)
    lan.run(until=lan.now + 5)
    assert r1.arp.entries[a.ip].mac == a.mac
    assert router.counters["arp-refused-conflict"] > 0
    assert router.counters["arp-moved"] == 0
    a.ping(IPv4Address("10.213.2.10"), 1, 2, b"after", lan.now)
    lan.run()
    assert [e.data for e in _drain(a) if isinstance(e, ev.EchoReply)][-1] == b"after"


class Attacker:
    """A station on the switch that sends whatever frames it is given."""

    def __init__(self) -> None:
        self.queue: list[bytes] = []

    def receive_frame(self, data: bytes, now: float) -> None:
        del data, now

    def frames_to_send(self) -> list[bytes]:
        out, self.queue = self.queue, []
        return out

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        del now
