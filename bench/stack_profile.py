"""Two synack hosts moving bytes as real Ethernet frames, and where a frame's time goes.

    .venv/bin/python bench/stack_profile.py [--mb 8] [--rounds 3] [--profile]

Two ``HostDriver``s (one per host, each with its own Host, ARP, IPv4, TCP) on
one asyncio loop, joined by an in-memory Ethernet hub (synack.links.memory):
A writes ``--mb`` MB through asyncio-style streams, B reads them. Unlike
bench/tcp_bulk.py (two TCP cores exchanging segment objects on the simulator:
no building, parsing or checksums), every segment here is serialised to bytes,
checksummed, parsed and demultiplexed, as on a TAP; only the TAP's read and
write system calls are missing (bench/stack_tap.py measures those).

What the ratio means: MB of payload per CPU-second of the one process running
both hosts, divided by the Linux kernel's TCP over loopback moving the same
bytes (sender and receiver threads, CPU of both), measured in the same run,
rounds interleaved. It is the cost of a byte through a pure-Python stack
relative to the kernel's: expect a small fraction.

``--profile`` (and bench/run_all.py) also runs one transfer under cProfile and
splits its self time by where the code lives: wire parse/build, checksum, TCP
core, host glue (stack/), ``ipaddress`` objects, adapters and links, the event
loop, and the rest. run_all.py writes that table into docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import random
import statistics
import sys
import time
from ipaddress import IPv4Interface

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Figure
from synack.adapters.driver import HostDriver
from synack.links.memory import MemoryHub
from synack.stack.host import Host, HostConfig
from tcp_bulk import kernel_loopback

CHUNK = 64 * 1024


def _host(n: int, cidr: str) -> Host:
    cfg = HostConfig(mac=bytes([2, 0, 0, 0, 0, n]), interface=IPv4Interface(cidr), name=f"h{n}")
    return Host(cfg, rng=random.Random(n), isn_secret=bytes([n]) * 16)


async def _transfer(size: int) -> int:
    """Move ``size`` bytes A -> B; returns the number of frames on the hub."""
    hub = MemoryHub()
    frames = [0]
    port_a, port_b = hub.port(), hub.port()
    for port in (port_a, port_b):
        send = port.send

        def counted(frame: bytes, send: object = send) -> None:
            frames[0] += 1
            send(frame)  # type: ignore[operator]

        port.send = counted  # type: ignore[method-assign]
    da = HostDriver(_host(1, "10.213.0.1/24"), port_a)
    db = HostDriver(_host(2, "10.213.0.2/24"), port_b)
    da.start()
    db.start()
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = 0
        while chunk := await reader.read(1 << 20):
            got += len(chunk)
        writer.close()
        done.set_result(got)

    server = await db.start_server(sink, "0.0.0.0", 7000)
    try:
        _, writer = await da.open_connection("10.213.0.2", 7000)
        # Not zeros: an all-zero payload takes a slow path in the checksum
        # (wire/checksum.ones_sum scans it with any()), which real data rarely does.
        block = bytes(range(256)) * (CHUNK // 256)
        sent = 0
        while sent < size:
            n = min(CHUNK, size - sent)
            writer.write(block[:n])
            await writer.drain()
            sent += n
        writer.close()
        got = await asyncio.wait_for(done, 300)
        if got != size:
            raise RuntimeError(f"received {got} of {size} bytes")
    finally:
        server.close()
        da.close()
        db.close()
    return frames[0]


def synack_run(mb: float) -> tuple[float, float]:
    """(MB per CPU-second, CPU microseconds per frame) of one transfer."""
    size = int(mb * 1_000_000)
    c0 = time.process_time()
    frames = asyncio.run(_transfer(size))
    cpu = time.process_time() - c0
    return size / 1e6 / cpu, cpu / frames * 1e6


# (label, test on the profiled function's file name), first match wins.
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("checksum (wire/checksum.py)", ("synack/wire/checksum",)),
    ("parse/build (wire/)", ("synack/wire/",)),
    ("TCP core (tcp/)", ("synack/tcp/",)),
    ("ipaddress objects (host glue)", ("/ipaddress.py",)),
    ("host glue (stack/)", ("synack/stack/",)),
    ("adapters and link (adapters/, links/)", ("synack/adapters/", "synack/links/")),
    ("event loop (asyncio, selectors)", ("/asyncio/", "/selectors.py", "uvloop")),
    ("this bench (hub counter, sink)", ("bench/stack_profile",)),
)


Profile = tuple[list[tuple[str, float, float]], list[tuple[str, float, float, float]], int, float]


def profile_breakdown(mb: float) -> Profile:
    """[(bucket, share of self time, us per frame)], the top functions as
    [(where, share, us per frame, calls per frame)], frames, profiled seconds."""
    size = int(mb * 1_000_000)
    prof = cProfile.Profile()
    frames = prof.runcall(asyncio.run, _transfer(size))
    stats = pstats.Stats(prof)
    totals: dict[str, float] = {}
    all_time = 0.0
    raw = stats.stats  # type: ignore[attr-defined]
    funcs = []
    for (filename, line, func), (_cc, nc, tt, _ct, _callers) in raw.items():
        all_time += tt
        label = "other (builtins, bytes, struct, ...)"
        if filename != "~":
            for name, needles in BUCKETS:
                if any(n in filename for n in needles):
                    label = name
                    break
        totals[label] = totals.get(label, 0.0) + tt
        short = (
            filename.split("/src/synack/")[-1]
            if "/src/synack/" in filename
            else (os.path.basename(filename) if filename != "~" else "builtin")
        )
        funcs.append((f"{short}:{line} {func}", tt, nc))
    rows = sorted(
        ((k, v / all_time, v / frames * 1e6) for k, v in totals.items()),
        key=lambda r: -r[1],
    )
    top = [
        (where, tt / all_time, tt / frames * 1e6, nc / frames)
        for where, tt, nc in sorted(funcs, key=lambda f: -f[1])[:15]
    ]
    return rows, top, frames, all_time


def ipaddress_calls(mb: float) -> list[tuple[str, float]]:
    """Calls per frame into the ipaddress module, by function (the issue's 7 __eq__ etc.)."""
    prof = cProfile.Profile()
    frames = prof.runcall(asyncio.run, _transfer(int(mb * 1_000_000)))
    raw = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    calls = [
        (func, nc / frames)
        for (filename, _l, func), (_cc, nc, _tt, _ct, _c) in raw.items()
        if filename.endswith("/ipaddress.py")
    ]
    return sorted(calls, key=lambda c: -c[1])[:8]


def measure(mb: float, rounds: int) -> tuple[list[float], list[float], list[float]]:
    synack, per_frame, kernel = [], [], []
    for _ in range(rounds):
        rate, us = synack_run(mb)
        synack.append(rate)
        per_frame.append(us)
        kernel.append(kernel_loopback(mb * 10))
    return synack, per_frame, kernel


def figures(quick: bool) -> list[Figure]:
    mb, rounds = (2.0, 3) if quick else (8.0, 5)
    synack, per_frame, kernel = measure(mb, rounds)
    return [
        Figure(
            bench="stack_profile",
            name=f"two synack hosts, real frames over an in-memory hub ({mb:g} MB)",
            value=statistics.median(synack),
            unit="MB per CPU-s",
            anchor="Linux TCP over loopback",
            anchor_value=statistics.median(kernel),
            ratios=[s / k for s, k in zip(synack, kernel, strict=True)],
            command=f".venv/bin/python bench/stack_profile.py --mb {mb:g} --rounds {rounds}",
            note=f"{statistics.median(per_frame):.1f} us CPU per frame (either direction)",
        )
    ]


def profile_markdown(quick: bool) -> str:
    """The profile section of docs/performance.md."""
    mb = 3.0 if quick else 8.0
    rows, top, frames, total = profile_breakdown(mb)
    lines = [
        f"One {mb:g} MB transfer between two synack hosts on one loop "
        f"(`.venv/bin/python bench/stack_profile.py --profile --mb {mb:g}`), under cProfile "
        f"(which inflates Python-call-heavy code): {frames:,} frames, {total:.2f} s of "
        "profiled self time. No TAP here: the TAP's read/write system calls are what "
        "bench/stack_tap.py adds.",
        "",
        "| where | share of self time | us per frame (profiled) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {k} | {share:.1%} | {us:.2f} |" for k, share, us in rows]
    lines += [
        "",
        "The 15 functions with the most self time:",
        "",
        "| function | share | us per frame | calls per frame |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| `{where.replace('|', '/')}` | {share:.1%} | {us:.2f} | {calls:.1f} |"
        for where, share, us, calls in top
    ]
    calls = ipaddress_calls(mb)
    if calls:
        lines += [
            "",
            "Calls into `ipaddress` per frame: "
            + ", ".join(f"`{f}` {n:.1f}" for f, n in calls)
            + ".",
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--mb", type=float, default=8.0, help="megabytes per transfer (default 8)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--profile", action="store_true", help="print the cProfile breakdown only")
    args = ap.parse_args()
    if args.mb <= 0 or args.rounds < 1:
        ap.error("--mb must be > 0 and --rounds >= 1")
    if args.profile:
        print(profile_markdown(args.mb <= 3.0))
        return
    synack, per_frame, kernel = measure(args.mb, args.rounds)
    ratios = [s / k for s, k in zip(synack, kernel, strict=True)]
    print(f"{args.mb:g} MB A -> B, two synack hosts on an in-memory hub, {args.rounds} rounds")
    print(
        f"synack: {statistics.median(synack):.2f} MB/CPU-s "
        f"(min {min(synack):.2f}, max {max(synack):.2f}), "
        f"{statistics.median(per_frame):.1f} us CPU per frame"
    )
    print(f"kernel loopback: {statistics.median(kernel):.0f} MB/CPU-s")
    print(f"ratio: {statistics.median(ratios):.4f}x ({min(ratios):.4f}-{max(ratios):.4f})")


if __name__ == "__main__":
    main()
