"""synack's stack over TAP vs the Linux kernel, in network namespaces.

synack (this process, asyncio) serves on a TAP device whose other end is a
namespace with the kernel's TCP/IP; a kernel client in that namespace measures:
bulk kernel->synack and synack->kernel (MB/s) at MTU 1500 and 65521 (the TAP
ceiling), echo round-trip p50/p99, and connections per second. The same client
against kernel servers over a veth pair between two namespaces, in the same
run, is the ceiling. Also: start-up of ``synack stack serve`` to its first
``listening on`` line. Needs root and /dev/net/tun. Prints ratios.

What the ratios mean: synack's figure over the kernel's from the same client
in the same run (for round-trip times, lower is better). Churn (short
connections to daytime, all held in TIME-WAIT afterwards) is reported as
synack's CPU per connection in the first 1,000 over that in the last 1,000
(1.0 = flat, the goal >= 0.95), the connection rate per block, and every
garbage-collection pause (gc.callbacks), once with the default collector and
once with gc.freeze() after start-up (what ``synack stack serve`` does);
``--churn-only`` runs just that, which is what bench/run_all.py plugs in.

``--cpu MB`` prints only what a byte costs synack: the CPU time of this
process (the stack, asyncio, the TAP's system calls, which include the
kernel's own processing of each written frame) per MB moved kernel->synack
("in") and synack->kernel ("out"), fixed byte counts, at MTU 1500 and 65521,
without and with offloads, next to the wall-clock rate. No anchor: the
kernel's side of the same bytes runs in softirq and the client, not in one
process; the figure is for comparing two versions of synack (interleave them).

    .venv/bin/python bench/stack_tap.py [--seconds 2] [--churn 10000] [--churn-only] [--cpu MB]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from ipaddress import IPv4Interface

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tests.interop.nsnet import NsNet, nsnet

from _common import Figure
from synack.adapters.driver import HostDriver
from synack.links.tap import TapLink
from synack.stack.host import Host, HostConfig

CLIENT = r"""
import json, socket, statistics, sys, time
ip, seconds = sys.argv[1], float(sys.argv[2])
res = {}
chunk = b"x" * 65536
# kernel -> server: send for `seconds`, then half-close and wait for the close.
s = socket.create_connection((ip, 9), timeout=30)
t0 = time.perf_counter(); n = 0
while time.perf_counter() - t0 < seconds:
    s.sendall(chunk); n += len(chunk)
s.shutdown(socket.SHUT_WR); s.recv(1)
res["in_MBps"] = n / (time.perf_counter() - t0) / 1e6
s.close()
# server -> kernel: read for `seconds`.
s = socket.create_connection((ip, 19), timeout=30)
t0 = time.perf_counter(); n = 0
while time.perf_counter() - t0 < seconds:
    n += len(s.recv(1 << 20))
res["out_MBps"] = n / (time.perf_counter() - t0) / 1e6
s.close()
# echo round trips.
s = socket.create_connection((ip, 7), timeout=30)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
rtts = []
for i in range(2000):
    t = time.perf_counter(); s.sendall(b"e"); s.recv(1); rtts.append(time.perf_counter() - t)
rtts.sort()
res["rtt_p50_ms"] = rtts[len(rtts) // 2] * 1e3
res["rtt_p99_ms"] = rtts[int(len(rtts) * 0.99)] * 1e3
s.close()
# connections per second (connect, read the daytime line, close).
t0 = time.perf_counter(); n = 0
while time.perf_counter() - t0 < seconds:
    with socket.create_connection((ip, 13), timeout=10) as c:
        while c.recv(100): pass
    n += 1
res["conn_per_s"] = n / (time.perf_counter() - t0)
print(json.dumps(res))
"""

KERNEL_SERVERS = r"""
import socket, threading
def serve(port, handler):
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port)); srv.listen(128)
    def loop():
        while True:
            c, _ = srv.accept()
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
def discard(c):
    while c.recv(1 << 20): pass
    c.close()
def source(c):
    chunk = b"y" * 65536
    try:
        while True: c.sendall(chunk)
    except OSError: c.close()
def echo(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while d := c.recv(65536): c.sendall(d)
    c.close()
def daytime(c):
    c.sendall(b"Monday, November 23, 2026 12:00:00-UTC\r\n"); c.close()
for p, h in ((9, discard), (19, source), (7, echo), (13, daytime)): serve(p, h)
print("ready", flush=True)
threading.Event().wait()
"""


async def discard_handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """discard (RFC 863) on synack's stack: read until the peer closes."""
    while await r.read(1 << 20):
        pass
    w.close()


async def source_handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """A chargen-like source on synack's stack: write 64 KiB chunks until the peer goes."""
    chunk = b"y" * 65536
    try:
        while not w.is_closing():
            w.write(chunk)
            await w.drain()
    except (ConnectionError, OSError):
        pass
    w.close()


async def synack_servers(net: NsNet) -> tuple[Host, HostDriver]:
    """synack's host on the namespace's TAP, serving discard, chargen-like
    source, echo and daytime."""
    host = Host(
        HostConfig(mac=b"\x02SYN\x00\x02", interface=IPv4Interface(net.synack_cidr), mtu=net.mtu),
        rng=random.Random(1),
    )
    d = HostDriver(host, TapLink(net.tap))
    d.start()

    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            w.write(data)
        w.close()

    async def daytime(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"Monday, November 23, 2026 12:00:00-UTC\r\n")
        w.close()

    for port, handler in ((9, discard_handler), (19, source_handler), (7, echo), (13, daytime)):
        await d.start_server(handler, "0.0.0.0", port)
    return host, d


async def bench_synack(mtu: int, seconds: float, offload: bool = False) -> dict[str, float]:
    with nsnet(mtu, offload=offload) as net:
        _, d = await synack_servers(net)
        out = await net.py(CLIENT, net.synack_ip, str(seconds), timeout=120)
        d.close()
        return json.loads(out)


CPU_IN = r"""
import socket, sys, time
ip, n = sys.argv[1], int(float(sys.argv[2]) * 1e6)
chunk = b"x" * 65536
s = socket.create_connection((ip, 9), timeout=30); sent = 0; t0 = time.perf_counter()
while sent < n: s.sendall(chunk); sent += len(chunk)
s.shutdown(socket.SHUT_WR); s.recv(1); print(sent / (time.perf_counter() - t0) / 1e6)
"""
CPU_OUT = r"""
import socket, sys, time
ip, n = sys.argv[1], int(float(sys.argv[2]) * 1e6)
s = socket.create_connection((ip, 19), timeout=30); got = 0; t0 = time.perf_counter()
while got < n: got += len(s.recv(1 << 20))
print(got / (time.perf_counter() - t0) / 1e6); s.close()
"""


async def bench_cpu(mtu: int, offload: bool, mb: float) -> dict[str, float]:
    """synack's CPU milliseconds per MB and the wall MB/s, each direction (see --cpu)."""
    with nsnet(mtu, offload=offload) as net:
        _, d = await synack_servers(net)
        res = {}
        for name, script in (("in", CPU_IN), ("out", CPU_OUT)):
            c0 = time.process_time()
            out = await net.py(script, net.synack_ip, str(mb), timeout=120)
            res[f"{name}_cpu_ms_per_MB"] = (time.process_time() - c0) / mb * 1e3
            res[f"{name}_MBps"] = float(out.strip())
        d.close()
        return res


def bench_kernel(mtu: int, seconds: float) -> dict[str, float]:
    tag = secrets.token_hex(3)
    a, b = f"synack-{tag}a", f"synack-{tag}b"
    sub = 1 + secrets.randbelow(254)
    run = lambda *args: subprocess.run(args, check=True, capture_output=True, timeout=10)  # noqa: E731
    run("ip", "netns", "add", a)
    run("ip", "netns", "add", b)
    server = None
    try:
        run(
            "ip",
            "link",
            "add",
            f"va{tag}",
            "netns",
            a,
            "type",
            "veth",
            "peer",
            "name",
            f"vb{tag}",
            "netns",
            b,
        )
        for ns, dev, addr in ((a, f"va{tag}", 1), (b, f"vb{tag}", 2)):
            run("ip", "-n", ns, "link", "set", dev, "mtu", str(mtu))
            run("ip", "-n", ns, "addr", "add", f"10.213.{sub}.{addr}/24", "dev", dev)
            run("ip", "-n", ns, "link", "set", dev, "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", a, sys.executable, "-c", KERNEL_SERVERS],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        out = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                b,
                sys.executable,
                "-c",
                CLIENT,
                f"10.213.{sub}.1",
                str(seconds),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return json.loads(out.stdout)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "del", a], timeout=10)
        subprocess.run(["ip", "netns", "del", b], timeout=10)


CHURN = r"""
import json, socket, sys, time
ip, total = sys.argv[1], int(sys.argv[2])
rates = []
t0 = time.perf_counter()
for i in range(1, total + 1):
    with socket.create_connection((ip, 13), timeout=10) as c:
        while c.recv(100): pass
    if i % 1000 == 0:
        t = time.perf_counter(); rates.append(1000 / (t - t0)); t0 = t
print(json.dumps(rates))
"""


async def churn(total: int) -> tuple[list[float], int]:
    """Connections/s per block of 1000 over ``total`` connections, and how many
    connections the host still holds (TIME-WAIT) at the end."""
    with nsnet(1500) as net:
        host, d = await synack_servers(net)
        out = await net.py(CHURN, net.synack_ip, str(total), timeout=300)
        held = len(host.connections) + len(host.tcp.time_wait)  # TIME-WAIT records too
        d.close()
        return json.loads(out), held


class GcPauses:
    """gc.callbacks hook: the length of every collection, by generation."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._start))


async def churn_gc(total: int, freeze: bool) -> dict[str, float]:
    """Churn with this process's CPU per connection and every GC pause counted;
    ``freeze`` moves everything alive after start-up out of the collector's
    view (gc.freeze()), so full collections only walk what churn created."""
    with nsnet(1500) as net:
        host, d = await synack_servers(net)
        if freeze:
            gc.collect()
            gc.freeze()
        hook = GcPauses()
        gc.callbacks.append(hook)
        cpu0 = time.process_time()
        # (CPU seconds, passive opens so far), sampled while the client runs:
        # this process's CPU per connection, block by block.
        samples: list[tuple[float, int]] = []

        async def sample() -> None:
            while True:
                samples.append((time.process_time(), host.counters["tcp-passive-opens"]))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        try:
            out = await net.py(CHURN, net.synack_ip, str(total), timeout=600)
        finally:
            sampler.cancel()
            cpu = time.process_time() - cpu0
            gc.callbacks.remove(hook)
            if freeze:
                gc.unfreeze()
        samples.append((time.process_time(), host.counters["tcp-passive-opens"]))
        held = len(host.connections) + len(host.tcp.time_wait)  # TIME-WAIT records too
        d.close()
    rates = json.loads(out)
    full = [p for g, p in hook.pauses if g == 2]

    def cpu_at(opens: int) -> float:
        return next(c for c, k in samples if k >= opens)

    base = samples[0][1]
    last_block = (total // 1000 - 1) * 1000
    return {
        "cpu_first_us": (cpu_at(base + 1000) - cpu_at(base)) / 1000 * 1e6,
        "cpu_last_us": (cpu_at(base + last_block + 1000) - cpu_at(base + last_block)) / 1000 * 1e6,
        "first": rates[0],
        "last": rates[-1],
        "cpu_us_per_conn": cpu / total * 1e6,
        "max_pause_ms": max((p for _g, p in hook.pauses), default=0.0) * 1e3,
        "full_collections": float(len(full)),
        "collections": float(len(hook.pauses)),
        "held": float(held),
    }


def figures(quick: bool) -> list[Figure]:
    """Churn only (the throughput figures above need longer than --quick allows)."""
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        raise SystemExit("needs root and /dev/net/tun")
    total, rounds = (5000, 2) if quick else (10_000, 3)
    out = []
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(rounds):  # interleaved: default gc, then frozen
        for freeze in (False, True):
            runs[freeze].append(asyncio.run(churn_gc(total, freeze)))
    for freeze, rs in runs.items():
        label = "gc.freeze() after start-up" if freeze else "default gc"
        out.append(
            Figure(
                bench="stack_tap",
                name=f"churn, {total:,} short connections over TAP, {label}: "
                "synack CPU per connection, last 1,000 vs first",
                value=statistics.median(r["cpu_last_us"] for r in rs),
                unit="us per connection in the last 1,000",
                anchor="the first 1,000",
                anchor_value=statistics.median(r["cpu_first_us"] for r in rs),
                # first / last: 1.0 is flat, below 1 the last block costs more.
                ratios=[r["cpu_first_us"] / r["cpu_last_us"] for r in rs],
                goal=0.95,
                command=f".venv/bin/python bench/stack_tap.py --churn {total} --churn-only",
                note=f"{statistics.median(r['cpu_us_per_conn'] for r in rs):.0f} us per "
                f"connection overall; rate {statistics.median(r['first'] for r in rs):,.0f}/s "
                f"in the first block, {statistics.median(r['last'] for r in rs):,.0f}/s in the "
                f"last; max GC pause {max(r['max_pause_ms'] for r in rs):.0f} ms (goal <= 20), "
                f"{statistics.median(r['full_collections'] for r in rs):.0f} full collections "
                f"per run; {statistics.median(r['held'] for r in rs):.0f} held in TIME-WAIT",
            )
        )
    return out


def startup() -> float:
    """Seconds from exec of ``synack stack serve`` to its first ``listening on`` line."""
    tag = secrets.token_hex(3)
    ns = f"synack-{tag}s"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                "-m",
                "synack",
                "stack",
                "serve",
                "--tap",
                f"sy{tag}",
                "--ip",
                "10.213.250.2/24",
                "--services",
                "echo:7",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        line = proc.stderr.readline()
        elapsed = time.perf_counter() - t0
        assert line.startswith("listening on"), line
        proc.terminate()
        proc.wait(10)
        return elapsed
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument(
        "--churn", type=int, default=10_000, help="connections for the CPU-flatness figure"
    )
    ap.add_argument("--churn-only", action="store_true", help="only the churn/GC figures")
    ap.add_argument("--cpu", type=float, metavar="MB", help="only synack's CPU per MB (see above)")
    args = ap.parse_args()
    if args.churn_only:
        for f in figures(args.churn < 10_000):
            print(f"{f.name}: first/last {f.ratio:.2f} (1.0 = flat); {f.note}")
        return
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        sys.exit("needs root and /dev/net/tun")
    if args.cpu is not None:
        if args.cpu <= 0:
            ap.error("--cpu: MB must be positive")
        print(f"synack's process CPU per MB over TAP, {args.cpu:g} MB each way")
        for mtu in (1500, 65521):
            for offload in (False, True):
                r = asyncio.run(bench_cpu(mtu, offload, args.cpu))
                print(
                    f"  MTU {mtu:<6}{'offload' if offload else 'plain':<8}"
                    f" in {r['in_cpu_ms_per_MB']:6.2f} ms/MB ({r['in_MBps']:6.1f} MB/s)"
                    f"  out {r['out_cpu_ms_per_MB']:6.2f} ms/MB ({r['out_MBps']:6.1f} MB/s)"
                )
        return
    pyclient = "Python socket client in the namespace"
    print(
        f"synack stack over TAP vs kernel<->kernel over veth ({pyclient}; {args.seconds:g} s per figure)"
    )
    for mtu in (1500, 65521):
        syn = asyncio.run(bench_synack(mtu, args.seconds))
        ker = bench_kernel(mtu, args.seconds)
        print(f"\nMTU {mtu}")
        print(f"  {'figure':<14}{'synack':>12}{'kernel':>12}{'synack/kernel':>16}")
        for key in ("in_MBps", "out_MBps", "rtt_p50_ms", "rtt_p99_ms", "conn_per_s"):
            print(f"  {key:<14}{syn[key]:>12.3f}{ker[key]:>12.3f}{syn[key] / ker[key]:>16.3f}")
        print(
            f"  vs PyTCP anchors: in {syn['in_MBps'] / 0.5:.1f}x (0.5 MB/s), "
            f"out {syn['out_MBps'] / 1.0:.1f}x (~1.0 MB/s), echo RTT p50 {1.2 / syn['rtt_p50_ms']:.1f}x faster (1.2 ms)"
        )
    for mtu in (1500, 65521):
        syn = asyncio.run(bench_synack(mtu, args.seconds, offload=True))
        print(
            f"\nMTU {mtu} with --offload (IFF_VNET_HDR: TSO both ways, checksums left to the kernel both ways)"
        )
        for key in ("in_MBps", "out_MBps", "rtt_p50_ms", "conn_per_s"):
            print(f"  {key:<14}{syn[key]:>12.3f}")
    try:
        import uvloop

        syn = uvloop.run(bench_synack(1500, args.seconds))
        print("\nMTU 1500 on uvloop (what 'synack stack' uses when installed)")
        for key in ("in_MBps", "out_MBps", "rtt_p50_ms", "conn_per_s"):
            print(f"  {key:<14}{syn[key]:>12.3f}")
    except ImportError:
        pass
    rates, held = asyncio.run(churn(args.churn))
    print(
        f"\n{args.churn} short connections: {rates[0]:.0f}/s in the first 1000, {rates[-1]:.0f}/s in the last"
        f" (last/first {rates[-1] / rates[0]:.2f}; {held} connections held in TIME-WAIT at the end)"
    )
    s = startup()
    print(
        f"\nstart-up of 'synack stack serve' to 'listening on': {s:.3f} s (PyTCP anchor 7.9 s: {7.9 / s:.0f}x)"
    )


if __name__ == "__main__":
    main()
