"""synack's TCP vs Linux's on the same emulated lossy path (synack link bridge).

For each path (loss 0/0.5/1/2 %, RTT 20/50 ms, a 10 or 100 Mbit/s bottleneck
with a 50-frame drop-tail queue), the bridge is started afresh with the same
seed for every transfer, and one bulk transfer is timed in each of:

    kernel->kernel   namespace A's kernel to namespace B's kernel  (a->b)
    kernel->synack   namespace A's kernel to synack's stack         (a->b)
    kernel<-kernel   namespace B's kernel to namespace A's kernel  (b->a)
    synack->kernel   synack's stack to namespace A's kernel         (b->a)

synack's stack sits in this process on a TAP device bridged (a Linux bridge)
with the link's B end inside namespace B, so both B-side endpoints see the
same link. Goodput is bytes / time until the receiver has seen the sender's
FIN; RTOs are the sender's retransmission timeouts (Linux: TcpExt
TCPTimeouts of the sender's namespace; synack: the connection's stats).
Printed as ratios to the kernel->kernel figure of the same direction,
with synack's process CPU time per second of each synack transfer (a pure
Python sender at 10 Mbit/s uses 3-11 %: not CPU-bound).

Like for like: the kernel senders' congestion control is set per socket
(TCP_CONGESTION, default cubic: Linux's default and the issue's premise)
and synack runs CUBIC with Linux's initial window of 10. The machine's own
default may be BBR (net.ipv4.tcp_congestion_control; this one's is), a
model-based sender that does not back off on random loss: at 1 % loss and
50 ms it keeps ~8 Mbit/s of a 10 Mbit/s link where any loss-based sender
(Linux's CUBIC included) gets 2-3. ``--kernel-cc default`` measures against
that; ``--synack-cc newreno --synack-iw rfc3390`` is synack's own default.
Needs root and /dev/net/tun. Every transfer is bounded by --timeout.

    .venv/bin/python bench/tcp_vs_linux.py --quick      # ~1-2 minutes
    .venv/bin/python bench/tcp_vs_linux.py [--mbytes 5]  # the whole matrix
    .venv/bin/python bench/tcp_vs_linux.py --loss 1% --rtt 50 --rate 10mbit --mbytes 20
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from ipaddress import IPv4Interface

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.interop.linkpath import LinkPath, link_path

from synack.adapters.driver import HostDriver
from synack.links.tap import TapDevice, TapLink
from synack.stack.host import Host, HostConfig
from synack.tcp.config import TcpConfig

SINK = r"""
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1]))); srv.listen(4); srv.settimeout(float(sys.argv[2]))
print("ready", flush=True)
c, _ = srv.accept(); c.settimeout(float(sys.argv[2]))
n = 0
while data := c.recv(1 << 20):
    n += len(data)
c.close()
print(n, flush=True)
"""

SOURCE = r"""
import json, socket, sys, time
ip, port, total, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
cc = sys.argv[5]
def timeouts():
    with open("/proc/net/netstat") as f:
        lines = [l.split() for l in f if l.startswith("TcpExt:")]
    return int(lines[1][lines[0].index("TCPTimeouts")])
def retrans():
    with open("/proc/net/snmp") as f:
        lines = [l.split() for l in f if l.startswith("Tcp:")]
    return int(lines[1][lines[0].index("RetransSegs")])
rto0, re0 = timeouts(), retrans()
chunk = b"k" * 65536
t0 = time.perf_counter()
s = socket.socket()
s.settimeout(timeout)
if cc != "default":
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
s.connect((ip, port))
sent = 0
while sent < total:
    sent += s.send(chunk[: total - sent])
s.shutdown(socket.SHUT_WR)
s.recv(1)  # the receiver closes once it has everything
elapsed = time.perf_counter() - t0
print(json.dumps({"bytes": sent, "seconds": elapsed, "rtos": timeouts() - rto0,
                  "retrans": retrans() - re0}))
"""


@dataclass
class Result:
    mbps: float | None  # goodput, Mbit/s; None: did not finish in time
    rtos: int | None
    retrans: int | None = None  # segments the sender resent
    cpu: float | None = None  # synack's process: CPU seconds per second of transfer


def ns_exec(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


async def kernel_to(
    path: LinkPath, src_ns: str, dst_ip: str, total: int, timeout: float, cc: str
) -> Result:
    """A kernel source in ``src_ns`` (congestion control ``cc``) to ``dst_ip``:9000."""
    proc = await asyncio.create_subprocess_exec(
        *ns_exec(
            src_ns, sys.executable, "-c", SOURCE, dst_ip, "9000", str(total), str(timeout), cc
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return Result(None, None)
    if proc.returncode != 0:
        sys.stderr.write(f"kernel source failed: {err.decode()[-300:]}\n")
        return Result(None, None)
    rec = json.loads(out)
    return Result(rec["bytes"] * 8 / rec["seconds"] / 1e6, rec["rtos"], rec["retrans"])


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    await proc.wait()


async def kernel_sink(ns: str, timeout: float) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        *ns_exec(ns, sys.executable, "-c", SINK, "9000", str(timeout)),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"ready"
    return proc


def add_synack_tap(path: LinkPath) -> tuple[TapDevice, str]:
    """A TAP for synack's stack, bridged with the link's B end inside namespace B."""
    ns, ip_b = path.ns_b, path.ip_b
    tap = TapDevice(f"ls{secrets.token_hex(4)}", mtu=1500)

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)

    ip("link", "set", tap.name, "netns", ns)
    ip("-n", ns, "link", "add", "br0", "type", "bridge")
    ip("-n", ns, "addr", "del", f"{ip_b}/24", "dev", path.tap_b)
    ip("-n", ns, "link", "set", path.tap_b, "master", "br0")
    ip("-n", ns, "link", "set", tap.name, "master", "br0")
    ip("-n", ns, "link", "set", tap.name, "up")
    ip("-n", ns, "addr", "add", f"{ip_b}/24", "dev", "br0")
    ip("-n", ns, "link", "set", "br0", "up")
    prefix = ip_b.rsplit(".", 1)[0]
    return tap, f"{prefix}.3"


@dataclass(frozen=True)
class Setup:
    """What each side runs: the kernel sender's congestion control, synack's TcpConfig."""

    kernel_cc: str
    tcp: TcpConfig


async def run_one(
    bridge_args: list[str], which: str, total: int, timeout: float, setup: Setup
) -> Result:
    """One transfer on a fresh bridge (same seed every time)."""
    with link_path(*bridge_args) as path:
        tap, synack_ip = add_synack_tap(path)
        host = Host(
            HostConfig(
                mac=b"\x02SYN\x00\x03",
                interface=IPv4Interface(f"{synack_ip}/24"),
                mtu=1500,
                tcp=setup.tcp,
            ),
        )
        d = HostDriver(host, TapLink(tap))
        d.start()
        try:
            return await asyncio.wait_for(
                _transfer(path, d, synack_ip, which, total, timeout, setup.kernel_cc), timeout + 10
            )
        except TimeoutError:
            return Result(None, None)
        finally:
            d.close()


async def _transfer(
    path: LinkPath,
    d: HostDriver,
    synack_ip: str,
    which: str,
    total: int,
    timeout: float,
    cc: str,
) -> Result:
    if which == "kernel->kernel":
        sink = await kernel_sink(path.ns_b, timeout)
        try:
            return await kernel_to(path, path.ns_a, path.ip_b, total, timeout, cc)
        finally:
            await stop(sink)
    if which == "kernel<-kernel":
        sink = await kernel_sink(path.ns_a, timeout)
        try:
            return await kernel_to(path, path.ns_b, path.ip_a, total, timeout, cc)
        finally:
            await stop(sink)
    if which == "kernel->synack":

        async def discard(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while await r.read(1 << 20):
                pass
            w.close()

        await d.start_server(discard, "0.0.0.0", 9000)
        cpu0, t0 = time.process_time(), time.perf_counter()
        r = await kernel_to(path, path.ns_a, synack_ip, total, timeout, cc)
        r.cpu = (time.process_time() - cpu0) / (time.perf_counter() - t0)
        return r
    assert which == "synack->kernel"
    sink = await kernel_sink(path.ns_a, timeout)
    try:
        await asyncio.sleep(0.2)
        cpu0, t0 = time.process_time(), time.perf_counter()
        reader, writer = await d.open_connection(path.ip_a, 9000)
        stream = writer.get_extra_info("synack_stream")
        chunk = b"s" * 65536
        sent = 0
        while sent < total:
            piece = chunk[: total - sent]
            writer.write(piece)
            sent += len(piece)
            await writer.drain()
        writer.write_eof()
        await reader.read()  # the kernel closes once it has everything
        elapsed = time.perf_counter() - t0
        writer.close()
        return Result(
            total * 8 / elapsed / 1e6,
            stream.conn.stats.timeouts,
            stream.conn.stats.retransmissions,
            (time.process_time() - cpu0) / elapsed,
        )
    finally:
        await stop(sink)


def fmt(r: Result) -> str:
    return "   -   " if r.mbps is None else f"{r.mbps:7.2f}"


def cpu(r: Result) -> str:
    return "-" if r.cpu is None else f"{r.cpu:.0%}"


def ratio(a: Result, b: Result) -> str:
    if a.mbps is None or b.mbps is None or not b.mbps:
        return "  -  "
    return f"{a.mbps / b.mbps:5.2f}"


async def main_async(args: argparse.Namespace) -> None:
    if args.quick:
        losses, rtts, rates = ["0%", "1%"], [50], ["10mbit"]
    else:
        losses, rtts, rates = ["0%", "0.5%", "1%", "2%"], [20, 50], ["10mbit", "100mbit"]
    losses = args.loss.split(",") if args.loss else losses
    rtts = [int(r) for r in args.rtt.split(",")] if args.rtt else rtts
    rates = args.rate.split(",") if args.rate else rates
    total = int(args.mbytes * 1e6)
    timeout = args.timeout or max(60.0, 10.0 * args.mbytes)
    tcp = TcpConfig(congestion_control=args.synack_cc, initial_window=args.synack_iw)
    setup = Setup(args.kernel_cc, tcp)
    print(
        f"bulk {args.mbytes:g} MB per transfer, drop-tail queue {args.queue} frames, seed "
        f"{args.seed}; goodput Mbit/s (RTOs/segments resent); ratios to kernel->kernel in "
        "the same direction\n"
        f"kernel senders: {args.kernel_cc} (TCP_CONGESTION); synack: {tcp.congestion_control}, "
        f"IW {tcp.initial_window}, loss detection {tcp.loss_detection}, min RTO {tcp.min_rto:g} s; "
        "CPU: synack's process CPU time / transfer time"
    )
    head = (
        f"{'loss':>5} {'RTT':>5} {'rate':>8} | {'k->k':>17} {'k->synack':>17} {'ratio':>5} | "
        f"{'k<-k':>17} {'synack->k':>17} {'ratio':>5} | {'CPU k->s s->k':>13}"
    )
    print(head)
    print("-" * len(head))
    for loss, rtt, rate in itertools.product(losses, rtts, rates):
        bridge_args = [
            "--delay",
            f"{rtt / 2:g}ms",
            "--loss",
            loss,
            "--rate",
            rate,
            "--queue",
            str(args.queue),
            "--seed",
            str(args.seed),
        ]
        res = {}
        for which in ("kernel->kernel", "kernel->synack", "kernel<-kernel", "synack->kernel"):
            res[which] = await run_one(bridge_args, which, total, timeout, setup)

        def cell(r: Result) -> str:
            if r.rtos is None:
                return f"{fmt(r)} ({'-':>7})"
            return f"{fmt(r)} ({r.rtos:>2}/{r.retrans:>4})"

        print(
            f"{loss:>5} {rtt:>3}ms {rate:>8} | {cell(res['kernel->kernel'])} "
            f"{cell(res['kernel->synack'])} {ratio(res['kernel->synack'], res['kernel->kernel'])} | "
            f"{cell(res['kernel<-kernel'])} {cell(res['synack->kernel'])} "
            f"{ratio(res['synack->kernel'], res['kernel<-kernel'])} | "
            f"{cpu(res['kernel->synack']):>6} {cpu(res['synack->kernel']):>6}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="loss 0/1%%, RTT 50 ms, 10 Mbit/s only")
    ap.add_argument("--mbytes", type=float, default=None, help="MB per transfer (quick 2, else 5)")
    ap.add_argument("--queue", type=int, default=50, help="drop-tail queue, frames (default 50)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--timeout",
        type=float,
        help="seconds per transfer at most (default: 10 per MB, at least 60: 1 Mbit/s would do)",
    )
    ap.add_argument("--loss", help="only these losses, e.g. 1%%,2%%")
    ap.add_argument("--rtt", help="only these RTTs in ms, e.g. 50")
    ap.add_argument("--rate", help="only these rates, e.g. 10mbit")
    ap.add_argument(
        "--kernel-cc",
        default="cubic",
        help="the kernel senders' congestion control, set per socket (default cubic, Linux's "
        "default; 'default' keeps the machine's net.ipv4.tcp_congestion_control, which may be "
        "bbr, a model-based sender that ignores random loss)",
    )
    ap.add_argument("--synack-cc", choices=("newreno", "cubic"), default="cubic")
    ap.add_argument(
        "--synack-iw",
        choices=("rfc3390", "rfc6928"),
        default="rfc6928",
        help="synack's initial window (default rfc6928: 10 segments, as Linux)",
    )
    args = ap.parse_args()
    if args.mbytes is None:
        args.mbytes = 2.0 if args.quick else 5.0
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        sys.exit("needs root and /dev/net/tun")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
