"""What a SYN or ICMP echo flood costs the in-process stack, per frame and per second.

The sans-IO host is fed pre-built frames on a virtual clock and timed with
``time.process_time``: a spoofed SYN flood at 48,000 SYN/s and an echo flood
at 281,000 requests/s (the rates issue 14 measured over TAP), each from
random sources, to a host whose listener is already under flood (its
half-open queue full). The anchor is the same host with the flood budgets
opened wide (every SYN answered with a cookie, every echo answered: the
behaviour before issue 14), in the same run. The figure that matters is the
CPU share a flood at that rate leaves for everything else: on a host whose
one CPU runs the stack, an established transfer keeps at most that share of
its rate.

    .venv/bin/python bench/stack_flood.py
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface

from synack.stack.host import Host, HostConfig
from synack.wire import ethernet as weth
from synack.wire import icmp as wicmp
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment

B = IPv4Address("10.213.0.2")
MAC = b"\x02\x00\x00\x00\x00\x02"
FRAMES = 40_000
WIDE = 1e9  # a budget nothing reaches


def _host(**kw: float) -> Host:
    cfg = HostConfig(MAC, IPv4Interface("10.213.0.2/24"), gateway=IPv4Address("10.213.0.254"), **kw)
    host = Host(cfg, rng=random.Random(2))
    host.tcp_listen(80, syn_backlog=64)
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
    """CPU seconds per frame, frames arriving at ``rate`` on the virtual clock."""
    now = 1.0
    for f in frames[:200]:  # fill the half-open queue: the flood is on
        host.receive_frame(f, now)
        host.drain_frames()
    start = time.process_time()
    for f in frames:
        now += 1.0 / rate
        host.receive_frame(f, now)
        host.drain_frames()
    return (time.process_time() - start) / len(frames)


def main() -> None:
    syn_frames, echo_frames = _frames(_syn), _frames(_echo)
    rows = [
        (
            "SYN flood",
            48_000.0,
            syn_frames,
            {},
            {"syn_flood_per_second": WIDE, "syn_flood_per_source": WIDE},
        ),
        (
            "echo flood",
            281_000.0,
            echo_frames,
            {},
            {"icmp_echo_per_second": WIDE, "icmp_echo_per_source": WIDE},
        ),
    ]
    print(
        f"{'flood':<11} {'rate/s':>8} {'us/frame':>9} {'wide us':>8} {'ratio':>6} "
        f"{'CPU left':>9} {'wide left':>9}"
    )
    for name, rate, frames, kw, wide in rows:
        ours = _cost(_host(**kw), frames, rate)
        anchor = _cost(_host(**wide), frames, rate)
        left, wide_left = max(0.0, 1 - rate * ours), max(0.0, 1 - rate * anchor)
        print(
            f"{name:<11} {rate:>8.0f} {ours * 1e6:>9.2f} {anchor * 1e6:>8.2f} "
            f"{anchor / ours:>5.1f}x {left:>8.0%} {wide_left:>9.0%}"
        )


if __name__ == "__main__":
    main()
