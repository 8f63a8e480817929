"""Parse and build of a full-size TCP segment in IPv4 in Ethernet: synack vs dpkt vs scapy.

The frame is what a Linux sender puts on the wire in bulk transfer: 1460
payload octets, NOP NOP timestamps option, so 1526 octets in all. Every case
runs on the same bytes, interleaved round by round (the minimum of each case
is kept), so a busy machine slows all of them alike; ratios are per run.

What each parse does:
- synack (verified): Ethernet, IPv4 and TCP to immutable representations,
  IPv4 header checksum and TCP pseudo-header checksum verified, options parsed.
- synack (no checksum): the same without the two checksum verifications, the
  work dpkt and scapy do (neither verifies checksums when parsing).
- dpkt: ``dpkt.ethernet.Ethernet(frame)`` decodes Ethernet, IP and TCP (TCP
  options stay raw bytes).
- scapy: ``Ether(frame)`` dissects every layer, options included.

Build: from field values to bytes with both checksums computed.

What the ratio means: the anchor's seconds per frame over synack's (higher is
better for synack), doing the same work (parse without checksums against dpkt
and scapy, which verify none).

    .venv/bin/python bench/wire_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dpkt
from scapy.all import IP, TCP, Ether, Raw  # type: ignore[attr-defined]
from scapy.utils import checksum as scapy_checksum

from _common import Figure
from synack.wire import ethernet, ipv4, tcp
from synack.wire.checksum import internet_checksum

SRC = IPv4Address("10.213.0.1")
DST = IPv4Address("10.213.0.2")
SMAC = bytes.fromhex("020000000001")
DMAC = bytes.fromhex("020000000002")
PAYLOAD = bytes(range(256)) * 5 + bytes(180)
FLAGS = tcp.TcpFlags.ACK | tcp.TcpFlags.PSH
OPTIONS = tcp.TcpOptions(timestamps=(123456789, 987654321))


def synack_build() -> bytes:
    seg = tcp.TcpSegment(40000, 80, 1_000_000, 2_000_000, FLAGS, 502, PAYLOAD, OPTIONS)
    packet = ipv4.Ipv4Packet(
        SRC, DST, ipv4.PROTO_TCP, tcp.build(seg, SRC, DST), ident=7, dont_fragment=True
    )
    return ethernet.build(
        ethernet.EthernetFrame(DMAC, SMAC, ethernet.ETHERTYPE_IPV4, ipv4.build(packet))
    )


FRAME = synack_build()
assert len(FRAME) == 1526


def synack_parse() -> tcp.TcpSegment:
    frame = ethernet.parse(FRAME)
    packet = ipv4.parse(frame.payload)
    return tcp.parse(packet.payload, packet.src, packet.dst)


def synack_parse_unverified() -> tcp.TcpSegment:
    frame = ethernet.parse(FRAME)
    packet = ipv4.parse(frame.payload, verify_checksum=False)
    return tcp.parse(packet.payload, packet.src, packet.dst, verify_checksum=False)


def dpkt_parse() -> object:
    return dpkt.ethernet.Ethernet(FRAME)


def scapy_parse() -> object:
    return Ether(FRAME)


def dpkt_build() -> bytes:
    seg = dpkt.tcp.TCP(
        sport=40000,
        dport=80,
        seq=1_000_000,
        ack=2_000_000,
        flags=int(FLAGS),
        win=502,
        opts=b"\x01\x01\x08\x0a" + (123456789).to_bytes(4, "big") + (987654321).to_bytes(4, "big"),
        data=PAYLOAD,
    )
    seg.off = 8
    ip = dpkt.ip.IP(src=SRC.packed, dst=DST.packed, p=6, id=7, df=1, data=seg)
    ip.len = 20 + len(bytes(seg))
    return bytes(dpkt.ethernet.Ethernet(dst=DMAC, src=SMAC, type=0x0800, data=ip))


def scapy_build() -> bytes:
    return bytes(
        Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01")
        / IP(src="10.213.0.1", dst="10.213.0.2", id=7, flags="DF")
        / TCP(
            sport=40000,
            dport=80,
            seq=1_000_000,
            ack=2_000_000,
            flags="PA",
            window=502,
            options=[("NOP", None), ("NOP", None), ("Timestamp", (123456789, 987654321))],
        )
        / Raw(PAYLOAD)
    )


SEGMENT_BYTES = FRAME[34:]


def checks() -> None:
    """Every builder makes the same frame, and every parser reads the same fields."""
    assert dpkt_build() == FRAME, "dpkt builds a different frame"
    assert scapy_build() == FRAME, "scapy builds a different frame"
    seg = synack_parse()
    d = dpkt_parse()
    s = scapy_parse()
    assert (seg.seq, seg.ack, seg.payload) == (d.data.data.seq, d.data.data.ack, d.data.data.data)  # type: ignore[attr-defined]
    assert (seg.seq, seg.window, seg.payload) == (s[TCP].seq, s[TCP].window, bytes(s[TCP].payload))
    assert (
        internet_checksum(SEGMENT_BYTES)
        == dpkt.in_cksum(SEGMENT_BYTES)
        == scapy_checksum(SEGMENT_BYTES)
    )


def measure(cases: dict[str, Callable[[], object]], rounds: int, budget: float) -> dict[str, float]:
    """Seconds per call for each case: interleaved rounds, best round kept."""
    loops: dict[str, int] = {}
    for name, fn in cases.items():
        n = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            if time.perf_counter() - t0 > budget / 4:
                break
            n *= 2
        loops[name] = n
    best = dict.fromkeys(cases, float("inf"))
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in cases.items():
                n = loops[name]
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                best[name] = min(best[name], (time.perf_counter() - t0) / n)
    finally:
        gc.enable()
    return best


def report(title: str, results: dict[str, float], anchor: str) -> None:
    print(f"\n{title}")
    base = results[anchor]
    for name, sec in results.items():
        note = "(anchor)" if name == anchor else f"{sec / base:6.2f}x synack's time"
        print(f"  {name:<26} {sec * 1e6:9.2f} µs   {1 / sec:>11,.0f} pkt/s   {note}")


def figures(quick: bool) -> list[Figure]:
    rounds, budget = (3, 0.1) if quick else (7, 0.3)
    checks()
    # Each repetition is its own interleaved measurement: the page shows the
    # median ratio with min and max.
    reps = [
        measure(
            {
                "synack": synack_parse_unverified,
                "dpkt": dpkt_parse,
                "scapy": scapy_parse,
                "synack build": synack_build,
                "dpkt build": dpkt_build,
            },
            rounds,
            budget,
        )
        for _ in range(3)
    ]
    command = ".venv/bin/python bench/wire_bench.py" + (" --quick" if quick else "")

    def fig(name: str, mine: str, theirs: str, anchor: str, goal: float) -> Figure:
        return Figure(
            bench="wire_bench",
            name=name,
            value=1 / min(r[mine] for r in reps),
            unit="frames/s",
            anchor=anchor,
            anchor_value=1 / min(r[theirs] for r in reps),
            ratios=[r[theirs] / r[mine] for r in reps],
            goal=goal,
            command=command,
            note=f"{min(r[mine] for r in reps) * 1e6:.2f} us per 1,526-octet frame",
        )

    return [
        fig("parse Ethernet+IPv4+TCP, no checksum", "synack", "dpkt", "dpkt", 1.0),
        fig("parse Ethernet+IPv4+TCP, no checksum", "synack", "scapy", "scapy", 20.0),
        fig("build Ethernet+IPv4+TCP, both checksums", "synack build", "dpkt build", "dpkt", 1.0),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    args = parser.parse_args(argv)
    rounds, budget = (3, 0.1) if args.quick else (7, 0.3)
    checks()
    print(
        f"frame: Ethernet + IPv4 + TCP (NOP NOP TS) + {len(PAYLOAD)} payload = {len(FRAME)} octets"
    )
    print(f"python {sys.version.split()[0]}, dpkt {dpkt.__version__}, rounds {rounds}")

    parse = measure(
        {
            "synack parse (verified)": synack_parse,
            "synack parse (no checksum)": synack_parse_unverified,
            "dpkt parse": dpkt_parse,
            "scapy parse": scapy_parse,
        },
        rounds,
        budget,
    )
    build = measure(
        {"synack build": synack_build, "dpkt build": dpkt_build, "scapy build": scapy_build},
        rounds,
        budget,
    )
    cks = measure(
        {
            "synack internet_checksum": lambda: internet_checksum(SEGMENT_BYTES),
            "dpkt in_cksum": lambda: dpkt.in_cksum(SEGMENT_BYTES),
            "scapy checksum": lambda: scapy_checksum(SEGMENT_BYTES),
        },
        rounds,
        budget,
    )
    report("parse (whole frame)", parse, "synack parse (verified)")
    report("build (whole frame, both checksums)", build, "synack build")
    report(f"internet checksum of {len(SEGMENT_BYTES)} octets", cks, "synack internet_checksum")

    v, u = parse["synack parse (verified)"], parse["synack parse (no checksum)"]
    print("\nsummary (ratios >1 mean synack is faster)")
    print(
        f"  parse vs dpkt,  same work (no checksum):  {parse['dpkt parse'] / u:5.2f}x   (target >= 1.0x)"
    )
    print(f"  parse vs dpkt,  synack also verifying:    {parse['dpkt parse'] / v:5.2f}x")
    print(
        f"  parse vs scapy, same work (no checksum):  {parse['scapy parse'] / u:5.1f}x   (target >= 20x)"
    )
    print(f"  parse vs scapy, synack also verifying:    {parse['scapy parse'] / v:5.1f}x")
    print(
        f"  build vs dpkt: {build['dpkt build'] / build['synack build']:5.2f}x   build vs scapy: {build['scapy build'] / build['synack build']:5.1f}x"
    )
    print(
        f"  full receive-path parse: {v * 1e6:.2f} µs verified, {u * 1e6:.2f} µs without checksums (target well under 5 µs)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
