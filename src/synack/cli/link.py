"""``synack link bridge``: a lossy link between two TAP devices (synack.links.bridge).

It opens (creates) the two TAP devices and forwards frames between them
through the simulated link until SIGINT/SIGTERM or ``--duration``; then prints
one JSON line per direction with what the link did. Move each device into the
namespace that should own it (``ip link set DEV netns NS``) after the
``bridging`` line: the open file descriptors stay attached.

Layer: cli. May import every other package; nothing imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import sys
from typing import Any

from synack.cli.args import seconds, stop_on_signals
from synack.core.sim import LinkParams
from synack.errors import LocalProtocolError, UsageError
from synack.links.bridge import LinkBridge, parse_delay, parse_percent, parse_rate
from synack.links.tap import TapDevice, TapLink


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "link",
        help="emulated links (delay, loss, rate) between TAP devices",
        description="Emulated network links in user space (what tc netem does, without netem).",
    )
    sub = p.add_subparsers(dest="link_command", metavar="COMMAND")
    sub.required = True
    b = sub.add_parser(
        "bridge",
        help="bridge two TAP devices through a lossy, delayed, rate-limited link",
        description="Forward Ethernet frames between two TAP devices through synack's simulated "
        "link. Each direction gets the same delay, jitter, rate, queue, loss, duplication and "
        "reordering (independently drawn, from one --seed). On exit (SIGINT/SIGTERM or "
        "--duration) prints one JSON line per direction: frames sent, delivered, lost, "
        "queue drops, duplicated, reordered.",
        epilog="example: synack link bridge --tap-a la0 --tap-b lb0 --delay 25ms --loss 1%% "
        "--rate 10mbit --queue 50 --seed 1   (then: ip link set la0 netns A; "
        "ip link set lb0 netns B)",
    )
    b.add_argument("--tap-a", required=True, metavar="DEV", help="first TAP device (created)")
    b.add_argument("--tap-b", required=True, metavar="DEV", help="second TAP device (created)")
    b.add_argument(
        "--delay", default="0ms", metavar="TIME", help="one-way delay per direction (e.g. 25ms)"
    )
    b.add_argument("--jitter", default="0ms", metavar="TIME", help="extra uniform delay [0, TIME)")
    b.add_argument(
        "--rate",
        metavar="RATE",
        help="bottleneck rate per direction (e.g. 10mbit, 100mbit; default: none)",
    )
    b.add_argument(
        "--queue",
        type=int,
        metavar="FRAMES",
        help="drop-tail queue limit in frames at the --rate bottleneck (default: unbounded)",
    )
    b.add_argument("--loss", default="0%", metavar="PCT", help="random loss (e.g. 1%%)")
    b.add_argument("--duplicate", default="0%", metavar="PCT", help="duplicated frames")
    b.add_argument(
        "--reorder", default="0%", metavar="PCT", help="frames held back by 2*delay (reordered)"
    )
    b.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    b.add_argument("--mtu", type=int, default=1500, help="MTU of both TAP devices (default 1500)")
    b.add_argument("--duration", type=seconds, metavar="SECONDS", help="stop after this long")
    b.set_defaults(func=_bridge)


def params_from(args: argparse.Namespace) -> LinkParams:
    """The link's parameters from the command line (UsageError when they make no sense)."""
    if args.queue is not None and args.rate is None:
        raise UsageError("--queue needs --rate (the queue is the one before the bottleneck)")
    try:
        return LinkParams(
            delay=parse_delay(args.delay),
            jitter=parse_delay(args.jitter),
            bandwidth=parse_rate(args.rate) if args.rate is not None else None,
            queue_limit=args.queue,
            loss=parse_percent(args.loss),
            duplicate=parse_percent(args.duplicate),
            reorder=parse_percent(args.reorder),
        )
    except LocalProtocolError as exc:
        raise UsageError(str(exc)) from None


def _bridge(args: argparse.Namespace) -> int:
    params = params_from(args)
    if not 68 <= args.mtu <= 65535:
        raise UsageError("--mtu must be between 68 and 65535")
    if args.tap_a == args.tap_b:
        raise UsageError("--tap-a and --tap-b must be two different devices")
    return asyncio.run(_run(args, params))


async def _run(args: argparse.Namespace, params: LinkParams) -> int:
    try:
        a = TapDevice(args.tap_a, mtu=args.mtu)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        b = TapDevice(args.tap_b, mtu=args.mtu)
    except (ValueError, OSError) as exc:
        a.close()
        raise UsageError(str(exc)) if isinstance(exc, ValueError) else exc from None
    bridge = LinkBridge(TapLink(a), TapLink(b), params, seed=args.seed)
    with stop_on_signals() as stop:
        bridge.start(asyncio.get_running_loop())
        sys.stderr.write(f"bridging {a.name} <-> {b.name}\n")
        sys.stderr.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.duration)
    bridge.close()
    for direction, st in bridge.stats.items():
        print(json.dumps({"direction": direction, **dataclasses.asdict(st)}), flush=True)
    return 0
