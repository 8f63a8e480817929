"""Chat over Redis: 1 node embedded vs 1 node on Redis vs 2 and 3 nodes on Redis.

Same clients, same messages in every setup: RECEIVERS clients spread round-robin over the
nodes, SENDERS of them also talk. Each sender posts bursts of BURST broadcasts and waits until
its own last message comes back (closed loop, bounded in flight). Every receiver decodes every
frame; the text carries the sender's clock reading (time.monotonic in this process, where all
clients live), so a delivery's latency is sender -> receiver through the node(s) and Redis.

Printed per setup: deliveries/s, p50/p99 latency (same-node and cross-node apart), Redis
commands per message (INFO commandstats before and after). Then the ratios the issue asks for:
1 node on Redis vs embedded (goal >= 0.8x) and cross-node p99 vs same-node p99 (goal <= 2x).

Nodes are `synack chat serve` child processes; Redis is Debian's redis-server on a free port.
Bounded: ROUNDS bursts per sender and a time limit per setup.

    .venv/bin/python bench/chat_cluster.py [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from typing import Any

import psutil

from synack.core.framing import FrameDecoder

RECEIVERS = 60
SENDERS = 6
BURST = 10
LIMIT = 60.0  # seconds per setup at most


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_cmd(port: int, *words: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), 2) as s:
        s.sendall(" ".join(words).encode() + b"\r\n")
        data = b""
        while b"\r\n" not in data:
            data += s.recv(65536)
        head, _, rest = data.partition(b"\r\n")
        if not head.startswith(b"$"):
            return head
        n = int(head[1:])
        while len(rest) < n + 2:
            rest += s.recv(65536)
        return rest[:n]


def redis_calls(port: int) -> int:
    text = redis_cmd(port, "INFO", "commandstats").decode()
    return sum(int(m) for m in re.findall(r"calls=(\d+)", text))


def start_redis(port: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("bench/chat_cluster.py needs redis-server (apt-get install redis-server)")
    p = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(500):
        try:
            if redis_cmd(port, "PING").startswith(b"+PONG"):
                return p
        except OSError:
            time.sleep(0.01)
    raise SystemExit("redis-server did not start")


def start_node(redis_url: str | None, name: str) -> tuple[subprocess.Popen[bytes], int]:
    args = [sys.executable, "-m", "synack", "chat", "serve", "--port", "0", "--rate", "0"]
    if redis_url is not None:
        args += ["--redis", redis_url, "--node", name]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert p.stderr is not None
    line = p.stderr.readline().decode()
    m = re.search(r":(\d+) \(chat\)", line)
    if m is None:
        p.kill()
        raise SystemExit(f"node did not start: {line!r}")
    return p, int(m.group(1))


def frame(obj: dict[str, Any]) -> bytes:
    payload = json.dumps(obj).encode()
    return struct.pack(">I", len(payload)) + payload


class Client:
    def __init__(self, i: int, node: int, reader: Any, writer: Any) -> None:
        self.i, self.node, self.reader, self.writer = i, node, reader, writer
        self.dec = FrameDecoder(max_frame=1 << 22)
        self.lat_same: list[float] = []
        self.lat_cross: list[float] = []
        self.msgs = 0
        self.echo = asyncio.Event()
        self.waiting: str | None = None

    async def run(self, node_of: dict[str, int]) -> None:
        while True:
            data = await self.reader.read(1 << 16)
            if not data:
                return
            now = time.monotonic()
            self.dec.receive_data(data)
            for p in self.dec:
                m = json.loads(bytes(p))
                if m["type"] != "msg":
                    continue
                self.msgs += 1
                sender, _, sent = m["text"].split(" ")
                lat = now - float(sent)
                (self.lat_same if node_of[sender] == self.node else self.lat_cross).append(lat)
                if self.waiting is not None and m["text"].startswith(self.waiting):
                    self.echo.set()


def cpu(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far."""
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


async def one_setup(
    ports: list[int], rounds: int, redis_port: int | None, pids: list[int], redis_pid: int | None
) -> dict[str, float]:
    clients: list[Client] = []
    node_of: dict[str, int] = {}
    for i in range(RECEIVERS):
        node = i % len(ports)
        reader, writer = await asyncio.open_connection("127.0.0.1", ports[node], limit=1 << 22)
        writer.write(frame({"type": "hello", "nick": f"c{i}"}))
        await reader.read(1 << 16)  # welcome (and maybe joined: not messages)
        clients.append(Client(i, node, reader, writer))
        node_of[f"c{i}"] = node
    await asyncio.sleep(0.5)  # every node has heard every join
    tasks = [asyncio.create_task(c.run(node_of)) for c in clients]
    senders = clients[:SENDERS]
    before = redis_calls(redis_port) if redis_port is not None else 0
    cpu0 = cpu(pids)
    rcpu0 = cpu([redis_pid]) if redis_pid is not None else 0.0
    t0 = time.monotonic()

    async def talk(c: Client) -> None:
        for r in range(rounds):
            c.echo.clear()
            for k in range(BURST):
                text = f"c{c.i} {r}.{k} {time.monotonic():.6f}"
                c.writer.write(frame({"type": "say", "text": text}))
            c.waiting = f"c{c.i} {r}.{BURST - 1} "
            await c.echo.wait()

    await asyncio.wait_for(asyncio.gather(*(talk(c) for c in senders)), LIMIT)
    total = SENDERS * rounds * BURST
    deadline = time.monotonic() + 10
    while any(c.msgs < total for c in clients) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - t0
    node_cpu = cpu(pids) - cpu0
    redis_cpu = cpu([redis_pid]) - rcpu0 if redis_pid is not None else 0.0
    ops = redis_calls(redis_port) - before - 1 if redis_port is not None else 0  # -1: INFO
    deliveries = sum(c.msgs for c in clients)
    for c in clients:
        c.writer.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    same = sorted(x for c in clients for x in c.lat_same)
    cross = sorted(x for c in clients for x in c.lat_cross)

    def q(xs: list[float], p: float) -> float:
        return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")

    every = sorted(same + cross)
    return {
        "messages": total,
        "deliveries": deliveries,
        "missing": RECEIVERS * total - deliveries,
        "per_s": deliveries / elapsed,
        "p50": q(every, 0.5),
        "p99": q(every, 0.99),
        "same_p99": q(same, 0.99),
        "cross_p99": q(cross, 0.99),
        "mean": statistics.fmean(every) * 1000 if every else float("nan"),
        "ops_per_msg": ops / total if redis_port is not None else float("nan"),
        # CPU per delivery: steadier than deliveries/s on a shared, loaded machine.
        "node_us": node_cpu / max(deliveries, 1) * 1e6,
        "redis_us": redis_cpu / max(deliveries, 1) * 1e6,
    }


def run(
    name: str, nodes: int, redis_port: int | None, rounds: int, redis_pid: int | None = None
) -> dict[str, float]:
    url = f"redis://127.0.0.1:{redis_port}/0" if redis_port is not None else None
    procs = [start_node(url, f"{name}-{i}") for i in range(nodes)]
    try:
        ports = [port for _, port in procs]
        pids = [p.pid for p, _ in procs]
        res = asyncio.run(one_setup(ports, rounds, redis_port, pids, redis_pid))
    finally:
        for p, _ in procs:
            p.terminate()
        for p, _ in procs:
            p.wait(10)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40, help="bursts per sender (default 40)")
    args = ap.parse_args()
    port = free_port()
    redis = start_redis(port)
    try:
        results = {
            "1 node embedded": run("e", 1, None, args.rounds),
            "1 node on Redis": run("r1", 1, port, args.rounds, redis.pid),
            "2 nodes on Redis": run("r2", 2, port, args.rounds, redis.pid),
            "3 nodes on Redis": run("r3", 3, port, args.rounds, redis.pid),
        }
    finally:
        redis.kill()
        redis.wait(10)
    print(f"{RECEIVERS} clients ({SENDERS} also send), {args.rounds} bursts of {BURST} per sender")
    print(
        f"{'setup':18} {'deliv/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'same p99':>9} "
        f"{'cross p99':>9} {'redis ops/msg':>13} {'missing':>7} {'node us/deliv':>13} "
        f"{'redis us/deliv':>14}"
    )
    for name, r in results.items():
        ops = "-" if r["ops_per_msg"] != r["ops_per_msg"] else f"{r['ops_per_msg']:.2f}"
        print(
            f"{name:18} {r['per_s']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r['same_p99']:9.2f} "
            f"{r['cross_p99']:9.2f} {ops:>13} {int(r['missing']):7d} {r['node_us']:13.2f} "
            f"{r['redis_us']:14.2f}"
        )
    emb = results["1 node embedded"]["per_s"]
    emb_cpu = results["1 node embedded"]["node_us"]
    for n in ("1 node on Redis", "2 nodes on Redis", "3 nodes on Redis"):
        print(f"{n}: node CPU per delivery {results[n]['node_us'] / emb_cpu:.2f}x embedded")
    print(
        f"1 node on Redis / embedded, deliveries/s: {results['1 node on Redis']['per_s'] / emb:.2f}x (goal >= 0.8x)"
    )
    for n in ("2 nodes on Redis", "3 nodes on Redis"):
        r = results[n]
        print(
            f"{n}: deliveries/s {r['per_s'] / emb:.2f}x embedded; "
            f"cross-node p99 / same-node p99 {r['cross_p99'] / r['same_p99']:.2f}x (goal <= 2x)"
        )


if __name__ == "__main__":
    main()
