"""IPv4 reassembly under attack (issue 14, item 4).

The attack that worked: 17 fragments at offset 64000 (25 KB on the wire)
were charged by their highest offset (65 KB each), filled the 1 MiB limit,
and a full table refused new datagrams: every fragmented datagram was lost
for 29 s. Guarantees: memory is charged by octets held; when a limit is
reached the oldest incomplete datagram goes, not the new one; one source
cannot push out another's datagrams.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from synack.links.lan import Lan
from synack.stack.host import Host
from synack.stack.reassembly import FRAGMENT_OVERHEAD, Reassembler
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from tests.stack.netfix import mac, two_hosts

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")
EVIL = IPv4Address("10.213.0.66")
PAYLOAD = bytes(range(256)) * 20  # 5120 octets: four fragments at MTU 1500


def _inject(host: Host, pkt: wip.Ipv4Packet, now: float) -> None:
    frame = weth.EthernetFrame(host.mac, mac(0x66), weth.ETHERTYPE_IPV4, wip.build(pkt))
    host.receive_frame(weth.build(frame), now)


def _high_fragment(src: IPv4Address, ident: int) -> wip.Ipv4Packet:
    # 1480 octets at offset 64000, more to come: never completes.
    return wip.Ipv4Packet(
        src, B, wip.PROTO_UDP, bytes(1480), ident=ident, frag_offset=8000, more_fragments=True
    )


def _legit_datagram_gets_through(lan: Lan, a: Host, b: Host) -> None:
    server = b.udp_open(9)
    client = a.udp_open()
    client.sendto(PAYLOAD, (B, 9), lan.now)
    lan.run()
    assert server.recvfrom() == (PAYLOAD, (A, client.local[1]))


def test_seventeen_high_offset_fragments_no_longer_block_fragmented_traffic() -> None:
    lan, a, b = two_hosts()
    for ident in range(17):
        _inject(b, _high_fragment(EVIL, ident), lan.now)
    # Charged what they hold, 1480 + overhead each, not 65480; and one source
    # keeps at most 16 partial datagrams (its oldest went).
    assert b.reassembler.bytes_held == 16 * (1480 + FRAGMENT_OVERHEAD)
    assert b.counters["reasm-evicted-source"] == 1
    _legit_datagram_gets_through(lan, a, b)
    assert b.counters["reasm-memory"] == 0


def test_a_table_full_of_junk_from_many_sources_evicts_oldest_first() -> None:
    lan, a, b = two_hosts()
    # 1,000 never-completing datagrams from 250 spoofed sources (4 each):
    # far more than the table's 64 datagrams; the per-source limit never bites.
    for i in range(1000):
        src = IPv4Address(f"10.213.1.{i % 250 + 1}")
        _inject(b, _high_fragment(src, i), lan.now)
    assert len(b.reassembler) == 64
    assert b.counters["reasm-evicted"] == 1000 - 64
    _legit_datagram_gets_through(lan, a, b)


def test_one_source_cannot_push_out_another() -> None:
    r = Reassembler(max_datagrams=64, per_source=16)
    victim = wip.Ipv4Packet(A, B, wip.PROTO_UDP, bytes(1480), ident=1, more_fragments=True)
    assert r.add(victim, 0.0) is None
    # One source, 10,000 datagrams: only its own oldest are evicted.
    for ident in range(10_000):
        r.add(_high_fragment(EVIL, ident), 0.0)
    assert len(r) == 1 + 16
    assert r.counters["reasm-evicted-source"] == 10_000 - 16
    assert r.counters.get("reasm-evicted", 0) == 0
    last = wip.Ipv4Packet(A, B, wip.PROTO_UDP, b"end!", ident=1, frag_offset=185)
    whole = r.add(last, 0.0)
    assert whole is not None and whole.payload == bytes(1480) + b"end!"


def test_memory_per_source_and_in_all_is_bounded_by_evicting_oldest() -> None:
    r = Reassembler(max_datagrams=1000, max_bytes=200_000, per_source=1000)
    # One source: a quarter of the memory at most.
    for ident in range(200):
        r.add(_high_fragment(EVIL, ident), 0.0)
    assert r.bytes_held <= 50_000 and r.counters["reasm-evicted-source"] > 0
    # Many sources: the whole limit, oldest evicted.
    for i in range(400):
        r.add(_high_fragment(IPv4Address(f"10.213.2.{i % 200 + 1}"), 1000 + i), 0.0)
    assert r.bytes_held <= 200_000 and r.counters["reasm-evicted"] > 0
    # A new datagram still gets in and completes.
    first = wip.Ipv4Packet(A, B, wip.PROTO_UDP, bytes(8), ident=7, more_fragments=True)
    assert r.add(first, 0.0) is None
    done = r.add(wip.Ipv4Packet(A, B, wip.PROTO_UDP, b"x", ident=7, frag_offset=1), 0.0)
    assert done is not None and done.payload == bytes(8) + b"x"


def test_repeated_fragments_are_not_charged_twice() -> None:
    r = Reassembler()
    frag = _high_fragment(EVIL, 1)
    for _ in range(1000):
        r.add(frag, 0.0)
    assert r.bytes_held == 1480 + FRAGMENT_OVERHEAD
    assert r.counters["reasm-duplicate"] == 999
