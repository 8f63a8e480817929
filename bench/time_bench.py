"""Time service throughput against a minimal asyncio DatagramProtocol echo.

    .venv/bin/python bench/time_bench.py [--seconds 1] [--rounds 3] [--loops asyncio,uvloop]

For each event loop (plain asyncio and uvloop) and each server, a server
process is started on loopback and a client process keeps 1 or 64 requests in
flight for a fixed time; requests/s are printed with the ratio to the minimal
echo server on the same loop and the same concurrency (the anchor, written
here: the least any UDP server on that loop can do per datagram).

Two figures per server: requests/s seen by the client (wall clock), and
requests per CPU-second of the server process (its capacity when saturated;
not skewed by other processes competing for the machine's cores).

Servers:
  echo        anchor: asyncio.DatagramProtocol that sends each datagram back
  time        synack's format protocol (strftime + per-source token bucket;
              the bucket is set high enough not to drop, but runs on every
              request), kernel fast path (recvfrom loop from add_reader)
  time/proto  the same service as a DatagramProtocol (the path synack's own
              stack will use)
  sntp        synack's SNTP server, fast path
  sntp/proto  SNTP as a DatagramProtocol

The client is plain Python (blocking sockets, recv then send). One client
process tops out near 100 k requests/s, so with 64 in flight the window is
shared by ``--clients`` processes (default 2). On a small machine clients and
server share the CPUs, which compresses ratios toward 1: the figures are
honest for this setup, not a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from synack.apps.services import open_udp_service
from synack.apps.time import sntp
from synack.apps.time.fmtproto import MAX_REQUEST, FormatService
from synack.apps.time.server import format_handler, sntp_handler

SERVERS = ("echo", "time", "time/proto", "sntp", "sntp/proto")
# A real format (not the empty default): payload size matters on the
# DatagramProtocol path (asyncio's transport receives into a 256 KiB buffer
# and shrinks it per datagram), and the echo anchor gets the same bytes.
FORMAT_REQUEST = b"%Y-%m-%d %H:%M:%S"
SNTP_REQUEST = sntp.client_request(time.time_ns())


class Echo(asyncio.DatagramProtocol):
    received = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        Echo.received += 1
        self.transport.sendto(data, addr)


async def serve(kind: str) -> None:
    loop = asyncio.get_running_loop()
    cpu_start = time.process_time()
    counted: Any = None
    if kind == "echo":
        transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
    else:
        base, _, variant = kind.partition("/")
        create = loop.create_datagram_endpoint if variant == "proto" else None
        if base == "time":
            handler = format_handler(FormatService(rate=1e9, burst=1e9))
            size = MAX_REQUEST + 1
        else:
            handler = sntp_handler(sntp.SntpServer())
            size = sntp.MAX_REQUEST_LEN + 1
        service = await open_udp_service(
            base, handler, "127.0.0.1", 0, create_datagram_endpoint=create, recv_size=size
        )
        port = service.sockname[1]
        counted = service.stats
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    # Run until the parent closes our stdin, then report what this process
    # spent: requests per CPU-second is the server's capacity, and it is not
    # skewed by other processes competing for the machine.
    await loop.run_in_executor(None, sys.stdin.read)
    received = Echo.received if counted is None else counted.received
    sys.stdout.write(f"{received} {time.process_time() - cpu_start}\n")
    sys.stdout.flush()


def run_server(kind: str, loop_name: str) -> None:
    if loop_name == "uvloop":
        import uvloop

        uvloop.run(serve(kind))
    else:
        asyncio.run(serve(kind))


def client(port: int, payload: bytes, inflight: int, seconds: float) -> float:
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    s.settimeout(0.2)
    send, recv = s.send, s.recv
    # Warm up (and make sure the server answers at all).
    send(payload)
    recv(2048)
    for _ in range(inflight):
        send(payload)
    count = 0
    lost_refills = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        for _ in range(256):
            try:
                recv(2048)
            except TimeoutError:
                # Replies were lost (socket buffers overflowed): refill.
                lost_refills += 1
                for _ in range(inflight):
                    send(payload)
                continue
            count += 1
            send(payload)
        if time.perf_counter() >= end:
            break
    elapsed = time.perf_counter() - start
    s.close()
    return count / elapsed


def payload_for(kind: str) -> bytes:
    if kind == "echo":
        return FORMAT_REQUEST
    return SNTP_REQUEST if kind.startswith("sntp") else FORMAT_REQUEST


def measure(
    kind: str, loop_name: str, inflight: int, seconds: float, clients: int
) -> tuple[float, float]:
    """(requests/s seen by the client, requests per server CPU-second)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--loop", loop_name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        port = int(proc.stdout.readline())
        if clients == 1 or inflight < clients:
            wall = client(port, payload_for(kind), inflight, seconds)
        else:
            wall = _many_clients(port, kind, inflight, seconds, clients)
        proc.stdin.close()
        count, cpu = proc.stdout.readline().split()
        return wall, int(count) / max(float(cpu), 1e-9)
    finally:
        if not proc.stdin.closed:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _many_clients(port: int, kind: str, inflight: int, seconds: float, clients: int) -> float:
    # Several client processes share the window: one Python client tops
    # out near 100 k/s (two syscalls per request) before a fast server does.
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                f"{port},{kind},{inflight // clients},{seconds}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(clients)
    ]
    return sum(float(w.communicate(timeout=seconds + 30)[0]) for w in workers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=1.0, help="per measurement (default 1)")
    ap.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds; the median is shown (default 3)"
    )
    ap.add_argument("--loops", default="asyncio,uvloop")
    ap.add_argument(
        "--clients", type=int, default=1, help="client processes sharing the 64 (default 1)"
    )
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        run_server(args.serve, args.loop)
        return
    if args.client:
        port, kind, inflight, seconds = args.client.split(",")
        print(client(int(port), payload_for(kind), int(inflight), float(seconds)))
        return
    loops = [name for name in args.loops.split(",") if name]
    if "uvloop" in loops:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            print("uvloop not installed: skipping it")
            loops.remove("uvloop")
    print(
        f"{'loop':8} {'server':11} {'in flight':>9} {'req/s':>9} {'x echo':>7}"
        f" {'req/CPU-s':>10} {'x echo':>7}   (medians of {args.rounds} rounds)"
    )
    for loop_name in loops:
        for inflight in (1, 64):
            # Rounds interleave the servers so a burst of load from elsewhere
            # on the machine hits them all alike; medians are shown.
            walls: dict[str, list[float]] = {kind: [] for kind in SERVERS}
            cpus: dict[str, list[float]] = {kind: [] for kind in SERVERS}
            for _ in range(args.rounds):
                for kind in SERVERS:
                    wall, cpu = measure(kind, loop_name, inflight, args.seconds, args.clients)
                    walls[kind].append(wall)
                    cpus[kind].append(cpu)
            wall0 = statistics.median(walls["echo"])
            cpu0 = statistics.median(cpus["echo"])
            for kind in SERVERS:
                wall = statistics.median(walls[kind])
                cpu = statistics.median(cpus[kind])
                print(
                    f"{loop_name:8} {kind:11} {inflight:9} {wall:9.0f} {wall / wall0:7.2f}"
                    f" {cpu:10.0f} {cpu / cpu0:7.2f}"
                )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
