"""UDP time service against the floor: a recvfrom/sendto echo on the same event loop.

    .venv/bin/python bench/time_bench.py [--seconds 1] [--rounds 3] [--loops asyncio,uvloop]

For each event loop (plain asyncio and uvloop) and each server, a server
process is started on loopback and a client process keeps 1 or 64 requests in
flight for a fixed time. Rounds interleave the servers (a burst of load from
elsewhere on the machine hits them all alike); medians are printed, and the
per-round ratios' min and max go to docs/performance.md.

What the ratio means: requests synack's time service answers per CPU-second of
its server process, divided by the same for the floor on the same loop, same
payload, same concurrency. The floor is the least any Python UDP server can do
per datagram: a non-blocking ``recvfrom``/``sendto`` loop drained from
``loop.add_reader`` that sends each datagram back (its cost, nearly all system
calls, caps every server; the floor's CPU per request is printed). 1.0x means
the service's formatting, rate limit and cache cost nothing measurable; the
goal is >= 0.95x.
The second anchor is the DatagramProtocol echo most people would write; its
per-datagram cost swings with glibc's malloc state (asyncio receives into a
256 KiB buffer), so it is printed as a second row, never the headline. The
servers run with glibc's mmap and trim thresholds pinned above that buffer
(``SERVER_MALLOC``, unless GLIBC_TUNABLES is set already): left dynamic, a
process's allocation history decided whether each DatagramProtocol row paid
system calls and page faults per datagram (the echo at 5.6 or 21-28 us per
request, time/proto at 6.5 or 20 us, swapping between two checkouts of
nearly the same code). The fast-path rows do not use that buffer.

Wall-clock requests/s (what the client sees) are printed too; on a small
machine clients and server share the CPUs, which compresses wall-clock ratios
toward 1. Per CPU-second is the server's capacity when saturated.

Servers:
  floor       anchor: add_reader + recvfrom/sendto loop, echo (batch 256)
  echo        second anchor: asyncio.DatagramProtocol that sends each datagram back
  time        synack's format protocol (strftime + per-source token bucket;
              the bucket is set high enough not to drop, but runs on every
              request), kernel fast path (recvfrom loop from add_reader), as
              start_time_server runs it: the clocks are read once per drained
              batch, then one call into the core per datagram
  time/proto  the same service as a DatagramProtocol (the path synack's own
              stack will use; clocks read per datagram)
  sntp        synack's SNTP server, fast path: token bucket as for time (the
              limit's clock once per batch), two clock reads per datagram (the
              receive and transmit timestamps)
  sntp/proto  SNTP as a DatagramProtocol

The client is plain Python (blocking sockets, recv then send). One client
process tops out near 100 k requests/s, so with 64 in flight the window may
be shared by ``--clients`` processes (default 1). The warm-up waits until the
server answers (up to 60 s), never a fixed delay, so a busy machine slows the
bench down but does not crash it.
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
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Figure, environment
from synack.apps.services import open_udp_service
from synack.apps.time import sntp
from synack.apps.time.fmtproto import MAX_REQUEST, FormatService
from synack.apps.time.server import format_batch_handler, sntp_batch_handler

SERVERS = ("floor", "echo", "time", "time/proto", "sntp", "sntp/proto")
ANCHOR = "floor"
READY_TIMEOUT = 60.0
SERVER_MALLOC = "glibc.malloc.mmap_threshold=1048576:glibc.malloc.trim_threshold=4194304"


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GLIBC_TUNABLES", SERVER_MALLOC)
    return env


# A real format (not the empty default): payload size matters on the
# DatagramProtocol path (asyncio's transport receives into a 256 KiB buffer
# and shrinks it per datagram), and the echo anchor gets the same bytes.
FORMAT_REQUEST = b"%Y-%m-%d %H:%M:%S"
SNTP_REQUEST = sntp.client_request(time.time_ns())


def _echo(data: bytes, addr: Any) -> bytes:
    # The floor's whole per-datagram work: the drain loop calls this between
    # recvfrom and sendto (one Python call, as any handler-based server has).
    return data


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
    if kind == "floor":
        service = await open_udp_service("floor", _echo, "127.0.0.1", 0, recv_size=2048)
        port = service.sockname[1]
        counted = service.stats
    elif kind == "echo":
        transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
    else:
        base, _, variant = kind.partition("/")
        create = loop.create_datagram_endpoint if variant == "proto" else None
        # The same handlers and per-batch clock reads as start_time_server.
        if base == "time":
            handler, on_batch = format_batch_handler(FormatService(rate=1e9, burst=1e9))
            size = MAX_REQUEST + 1
        else:
            handler, on_batch = sntp_batch_handler(sntp.SntpServer(rate=1e9, burst=1e9))
            size = sntp.MAX_REQUEST_LEN + 1
        service = await open_udp_service(
            base,
            handler,
            "127.0.0.1",
            0,
            create_datagram_endpoint=create,
            recv_size=size,
            on_batch=on_batch,
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
    send, recv = s.send, s.recv
    # Warm up: wait until the server answers, however busy the machine is.
    s.settimeout(0.2)
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        send(payload)
        try:
            recv(2048)
            break
        except (TimeoutError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                msg = f"server on port {port} did not answer in {READY_TIMEOUT:g} s"
                raise SystemExit(msg) from None
    # Drain late replies to the warm-up retries so they are not counted.
    s.settimeout(0.05)
    while True:
        try:
            recv(2048)
        except TimeoutError:
            break
    s.settimeout(1.0)
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
            except (TimeoutError, ConnectionRefusedError):
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
    if kind in ("floor", "echo"):
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
        env=server_env(),
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


def handler_cost() -> dict[str, float]:
    """Nanoseconds of Python per datagram in each service's handler alone (in-process,
    best of 5): the part of the per-request cost that synack's code decides. The
    once-per-batch clock read is not in it (a batch is tens to hundreds of datagrams
    at 64 in flight)."""
    import timeit

    addr = ("127.0.0.1", 40000)
    time_handler, time_batch = format_batch_handler(FormatService(rate=1e9, burst=1e9))
    sntp_handler, sntp_batch = sntp_batch_handler(sntp.SntpServer(rate=1e9, burst=1e9))
    time_batch()
    sntp_batch()
    handlers = {"floor": _echo, "time": time_handler, "sntp": sntp_handler}
    out = {}
    for kind, handler in handlers.items():
        payload = payload_for(kind)
        n = 100_000
        best = min(timeit.repeat(lambda h=handler, p=payload: h(p, addr), number=n, repeat=5))
        out[kind] = best / n * 1e9
    return out


Results = dict[tuple[str, int, str], tuple[list[float], list[float]]]


def run(
    loops: list[str], inflights: tuple[int, ...], seconds: float, rounds: int, clients: int
) -> Results:
    """{(loop, in flight, server): (wall-clock req/s per round, req per CPU-s per round)}."""
    results: Results = {}
    for loop_name in loops:
        for inflight in inflights:
            for kind in SERVERS:
                results[loop_name, inflight, kind] = ([], [])
            # Rounds interleave the servers so a burst of load from elsewhere
            # on the machine hits them all alike.
            for _ in range(rounds):
                for kind in SERVERS:
                    wall, cpu = measure(kind, loop_name, inflight, seconds, clients)
                    results[loop_name, inflight, kind][0].append(wall)
                    results[loop_name, inflight, kind][1].append(cpu)
    return results


def available_loops(names: list[str]) -> list[str]:
    loops = [name for name in names if name]
    if "uvloop" in loops:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            print("uvloop not installed: skipping it", file=sys.stderr)
            loops.remove("uvloop")
    return loops


def figures(quick: bool) -> list[Figure]:
    """For bench/run_all.py: time and sntp vs the floor and vs the echo, per loop, 64 in flight."""
    seconds, rounds = (0.5, 3) if quick else (1.0, 5)
    loops = available_loops(["asyncio", "uvloop"])
    results = run(loops, (64,), seconds, rounds, 1)
    command = f".venv/bin/python bench/time_bench.py --seconds {seconds:g} --rounds {rounds}"
    handler_ns = handler_cost()
    out = []
    for loop_name in loops:
        for kind, anchor, goal in (
            ("time", "floor", 0.95),
            ("time", "echo", None),
            ("sntp", "floor", 0.95),
            ("time/proto", "echo", None),
        ):
            cpu = results[loop_name, 64, kind][1]
            cpu0 = results[loop_name, 64, anchor][1]
            label = {
                "floor": "recvfrom/sendto echo (add_reader)",
                "echo": "DatagramProtocol echo",
            }[anchor]
            out.append(
                Figure(
                    bench="time_bench",
                    name=f"UDP {kind} service, 64 in flight, {loop_name}",
                    value=statistics.median(cpu),
                    unit="requests per server CPU-s",
                    anchor=f"{label}, {loop_name}",
                    anchor_value=statistics.median(cpu0),
                    ratios=[a / b for a, b in zip(cpu, cpu0, strict=True)],
                    goal=goal,
                    command=command,
                    note=f"{1e6 / statistics.median(cpu):.2f} us server CPU per request "
                    f"({handler_ns[kind.partition('/')[0]]:.0f} ns in the handler alone); "
                    f"wall clock {statistics.median(results[loop_name, 64, kind][0]):,.0f} req/s; "
                    f"servers ran with GLIBC_TUNABLES={server_env()['GLIBC_TUNABLES']}",
                )
            )
    return out


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
    if args.seconds <= 0 or args.rounds < 1 or args.clients < 1:
        ap.error("--seconds must be > 0, --rounds and --clients >= 1")
    loops = available_loops(args.loops.split(","))
    for key, value in environment().items():
        print(f"# {key}: {value}")
    print(f"# server processes: GLIBC_TUNABLES={server_env()['GLIBC_TUNABLES']}")
    print(
        f"{'loop':8} {'server':11} {'in flight':>9} {'req/s':>9} {'x floor':>7}"
        f" {'req/CPU-s':>10} {'x floor':>7} {'min-max':>11} {'us CPU/req':>10}"
        f"   (medians of {args.rounds} rounds)"
    )
    cost = handler_cost()
    print("# handler alone, ns per datagram: " + ", ".join(f"{k} {v:.0f}" for k, v in cost.items()))
    results = run(loops, (1, 64), args.seconds, args.rounds, args.clients)
    for loop_name in loops:
        for inflight in (1, 64):
            walls0, cpus0 = results[loop_name, inflight, ANCHOR]
            for kind in SERVERS:
                walls, cpus = results[loop_name, inflight, kind]
                ratios = [a / b for a, b in zip(cpus, cpus0, strict=True)]
                cpu = statistics.median(cpus)
                print(
                    f"{loop_name:8} {kind:11} {inflight:9} {statistics.median(walls):9.0f}"
                    f" {statistics.median(walls) / statistics.median(walls0):7.2f}"
                    f" {cpu:10.0f} {statistics.median(ratios):7.2f}"
                    f" {min(ratios):5.2f}-{max(ratios):<5.2f} {1e6 / cpu:10.2f}"
                )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
