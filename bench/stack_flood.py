"""What a SYN or ICMP echo flood costs the in-process stack, per frame and per second.

The sans-IO host is fed pre-built frames on a virtual clock, in batches as a
TAP link reads them, and timed with ``time.process_time`` (best of three): a
spoofed SYN flood at 48,000 SYN/s and an echo flood at 281,000 requests/s
(the rates issue 14 measured over TAP), from random off-link sources, to a
host whose listener is already under flood (its half-open queue full) and
whose gateway is resolved. Rows: the default budgets; every SYN (echo)
answered (budgets opened wide); every SYN dropped (a budget of nothing).
"CPU left" is the share of one CPU a flood at that rate leaves for
everything else (reading and writing the frames not counted: over TAP, see
bench/stack_tap_flood.py). Run it with another checkout's interpreter for
the before:

    .venv/bin/python bench/stack_flood.py
    /work/wt/base/.venv/bin/python bench/stack_flood.py
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface

from synack.stack.host import Host, HostConfig
from synack.wire import arp as warp
from synack.wire import ethernet as weth
from synack.wire import icmp as wicmp
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment

B = IPv4Address("10.213.0.2")
MAC = b"\x02\x00\x00\x00\x00\x02"
FRAMES = 40_000
WIDE = 1e9  # a budget nothing reaches
ROUNDS = 3  # the best of three (a shared machine)
BATCH = 64  # frames a TapLink reads per wake-up


GATEWAY = IPv4Address("10.213.0.254")
GATEWAY_MAC = b"\x02\x99\x99\x99\x99\x99"


def _host(**kw: float) -> Host:
    cfg = HostConfig(MAC, IPv4Interface("10.213.0.2/24"), gateway=GATEWAY, **kw)
    host = Host(cfg, rng=random.Random(2))
    host.tcp_listen(80, syn_backlog=64)
    # The gateway asks for us: the host learns it (answers go out at once,
    # not queued for ARP, as on a real link).
    ask = warp.ArpPacket(warp.OP_REQUEST, GATEWAY_MAC, GATEWAY, bytes(6), B)
    host.receive_frame(
        weth.build(weth.EthernetFrame(MAC, GATEWAY_MAC, weth.ETHERTYPE_ARP, warp.build(ask))), 0.5
    )
    host.drain_frames()
    return host


def _frames(make: Callable[[random.Random, IPv4Address], bytes]) -> list[bytes]:
    rng = random.Random(14)
    out = []
    for _ in range(FRAMES):
        src = IPv4Address(f"10.213.{rng.randrange(128, 256)}.{rng.randrange(1, 255)}")
        raw = make(rng, src)
        out.append(weth.build(weth.EthernetFrame(MAC, b"\x02\x99\x99\x99\x99\x99", 0x0800, raw)))
    return out


def _syn(rng: random.Random, src: IPv4Address) -> bytes:
    seg = TcpSegment(
        rng.randrange(1024, 65536),
        80,
        rng.randrange(1 << 32),
        0,
        TcpFlags.SYN,
        65535,
        options=TcpOptions(mss=1460, sack_permitted=True, timestamps=(1, 0), wscale=7),
    )
    return wip.build(wip.Ipv4Packet(src, B, wip.PROTO_TCP, wtcp.build(seg, src, B)))


def _echo(rng: random.Random, src: IPv4Address) -> bytes:
    msg = wicmp.build(wicmp.echo(wicmp.TYPE_ECHO_REQUEST, 1, rng.randrange(1 << 16), bytes(56)))
    return wip.build(wip.Ipv4Packet(src, B, wip.PROTO_ICMP, msg))


def _cost(host: Host, frames: list[bytes], rate: float) -> float:
    """CPU seconds per frame, frames arriving at ``rate`` on the virtual clock
    and handed over as a TAP link does: in batches of BATCH read at one
    instant (Host.receive_frames where the code has it, else frame by frame),
    the output drained after each batch."""
    now = 1.0
    for f in frames[:200]:  # fill the half-open queue: the flood is on
        host.receive_frame(f, now)
        host.drain_frames()
    batched = getattr(host, "receive_frames", None)
    start = time.process_time()
    for i in range(0, len(frames), BATCH):
        batch = frames[i : i + BATCH]
        now += len(batch) / rate
        if batched is not None:
            batched(batch, now)
        else:
            for f in batch:
                host.receive_frame(f, now)
        host.drain_frames()
    return (time.process_time() - start) / len(frames)


def main() -> None:
    syn_frames, echo_frames = _frames(_syn), _frames(_echo)
    rows = [
        ("SYN flood, default budgets", 48_000.0, syn_frames, {}),
        (
            "SYN flood, every SYN answered",
            48_000.0,
            syn_frames,
            {"syn_flood_per_second": WIDE, "syn_flood_per_source": WIDE},
        ),
        (
            "SYN flood, every SYN dropped",
            48_000.0,
            syn_frames,
            {"syn_flood_per_second": 1e-6, "syn_flood_burst": 1},
        ),
        ("echo flood, default budgets", 281_000.0, echo_frames, {}),
        (
            "echo flood, every echo answered",
            281_000.0,
            echo_frames,
            {"icmp_echo_per_second": WIDE, "icmp_echo_per_source": WIDE},
        ),
    ]
    print(f"{'flood':<32} {'rate/s':>8} {'us/frame':>9} {'CPU left':>9}")
    for name, rate, frames, kw in rows:
        cost = min(_cost(_host(**kw), frames, rate) for _ in range(ROUNDS))
        print(f"{name:<32} {rate:>8.0f} {cost * 1e6:>9.2f} {max(0.0, 1 - rate * cost):>8.0%}")


if __name__ == "__main__":
    main()
