"""Chat fan-out: 1,000 connected clients, deliveries per second and p99 latency.

The server runs in its own process; the clients (1,000 receivers and one sender)
in another. The sender posts bursts of broadcasts and waits until a sampling
receiver has the burst's last message, so the load is closed-loop. Receivers
only count bytes (every client receives the identical stream of broadcasts),
20 sampling receivers decode every frame and measure the delivery latency from
the sender's clock reading carried in the text (CLOCK_MONOTONIC is system-wide).

Contenders: synack's ``ChatServer`` and a minimal asyncio broadcast server
written here (streams, one ``write`` per client per message), both speaking
docs/protocol.md §2, on asyncio and on uvloop.

    .venv/bin/python bench/chat_fanout.py
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing as mp
import resource
import statistics
import struct
import sys
import time
from multiprocessing.connection import Connection
from typing import Any, ClassVar

from synack.apps.chat import ChatConfig, ChatServer
from synack.core.framing import FrameDecoder

try:
    import uvloop
except ImportError:  # optional extra
    uvloop = None

CLIENTS = 1000
SAMPLERS = 20
BURST = 50
_H = struct.Struct(">I")


def _run(coro: Any, use_uvloop: bool) -> Any:
    if use_uvloop:
        assert uvloop is not None
        return uvloop.run(coro)
    return asyncio.run(coro)


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _frame(obj: dict[str, Any]) -> bytes:
    payload = json.dumps(obj, separators=(",", ":")).encode()
    return _H.pack(len(payload)) + payload


# -- servers -----------------------------------------------------------------------


def serve_synack(conn: Connection, use_uvloop: bool) -> None:
    _raise_fd_limit()

    async def main() -> None:
        server = ChatServer(
            ChatConfig(
                rate=0,
                heartbeat=3600,
                idle_timeout=7200,
                max_clients=CLIENTS + 10,
                max_queue=8 << 20,  # the clients share one process on a busy machine
            )
        )
        await server.start("127.0.0.1", 0)
        conn.send(server.addresses[0][1])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await server.stop()
        conn.send(dict(server.stats))

    _run(main(), use_uvloop)


def serve_minimal(conn: Connection, use_uvloop: bool) -> None:
    """The straightforward asyncio broadcast server: streams, a write per client."""
    _raise_fd_limit()

    async def main() -> None:
        writers: dict[str, asyncio.StreamWriter] = {}
        ids = itertools.count(1)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nick = None
            try:
                while True:
                    (n,) = _H.unpack(await reader.readexactly(4))
                    m = json.loads(await reader.readexactly(n))
                    if m["type"] == "hello":
                        nick = m["nick"]
                        writers[nick] = writer
                        writer.write(
                            _frame({"type": "welcome", "nick": nick, "users": list(writers)})
                        )
                    elif m["type"] == "say":
                        frame = _frame(
                            {
                                "type": "msg",
                                "id": next(ids),
                                "from": nick,
                                "text": m["text"],
                                "ts": time.time(),
                                "to": None,
                            }
                        )
                        for w in list(writers.values()):
                            w.write(frame)
                        await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                if nick is not None:
                    writers.pop(nick, None)
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=2048)
        conn.send(server.sockets[0].getsockname()[1])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        server.close()
        conn.send({})

    _run(main(), use_uvloop)


# -- clients -----------------------------------------------------------------------


class Counting(asyncio.Protocol):
    total: ClassVar[list[int]] = [0]

    def data_received(self, data: bytes) -> None:
        Counting.total[0] += len(data)


class Sampling(asyncio.Protocol):
    """Decodes every frame; records latency of each message and total bytes."""

    def __init__(self) -> None:
        self.dec = FrameDecoder()
        self.bytes = 0
        self.latencies: list[float] = []
        self.last_seq = -1
        self.waiter: asyncio.Future[None] | None = None
        self.want_seq = -2

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.bytes += len(data)
        self.dec.receive_data(data)
        for payload in self.dec.frames():
            m = json.loads(payload)
            if m["type"] == "msg":
                seq, sent = m["text"].split(" ")[:2]
                self.latencies.append(now - float(sent))
                self.last_seq = int(seq)
        if self.waiter is not None and self.last_seq >= self.want_seq and not self.waiter.done():
            self.waiter.set_result(None)


async def _register(
    loop: asyncio.AbstractEventLoop, port: int, nick: str, proto: asyncio.Protocol
) -> asyncio.Transport:
    transport, _ = await loop.create_connection(lambda: proto, "127.0.0.1", port)
    assert isinstance(transport, asyncio.Transport)
    transport.write(_frame({"type": "hello", "nick": nick}))
    return transport


def run_clients(port: int, messages: int) -> dict[str, float]:
    _raise_fd_limit()

    async def main() -> dict[str, float]:
        loop = asyncio.get_running_loop()
        samplers = [Sampling() for _ in range(SAMPLERS)]
        transports = []
        for i in range(CLIENTS):
            proto: asyncio.Protocol = (
                samplers[i // (CLIENTS // SAMPLERS)]
                if i % (CLIENTS // SAMPLERS) == 0
                else Counting()
            )
            transports.append(await _register(loop, port, f"c{i}", proto))
        sender_reader, sender = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        sender.write(_frame({"type": "hello", "nick": "sender"}))
        await asyncio.sleep(1.0)  # registrations and joined notices settle

        async def discard() -> None:
            while await sender_reader.read(1 << 20):
                pass

        draining = asyncio.create_task(discard())
        Counting.total[0] = 0
        for s in samplers:
            s.bytes = 0
            s.latencies.clear()
        probe = samplers[-1]
        start = time.monotonic()
        for b in range(0, messages, BURST):
            for seq in range(b, min(b + BURST, messages)):
                sender.write(
                    _frame({"type": "say", "text": f"{seq} {time.monotonic():.6f} " + "x" * 40})
                )
            await sender.drain()
            probe.want_seq = min(b + BURST, messages) - 1
            probe.waiter = loop.create_future()
            await asyncio.wait_for(probe.waiter, 60)
        # Wait until every receiver has the whole stream (same bytes for everyone).
        expected = probe.bytes
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if Counting.total[0] >= expected * (CLIENTS - SAMPLERS) and all(
                s.bytes >= expected for s in samplers
            ):
                break
            await asyncio.sleep(0.001)
        elapsed = time.monotonic() - start
        lat = sorted(x for s in samplers for x in s.latencies)
        draining.cancel()
        for t in transports:
            t.close()
        sender.close()
        return {
            "deliveries_per_s": messages * CLIENTS / elapsed,
            "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
            "complete": float(Counting.total[0] >= expected * (CLIENTS - SAMPLERS)),
        }

    return asyncio.run(main())


def measure(server: Any, use_uvloop: bool, messages: int) -> dict[str, float]:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=server, args=(child, use_uvloop))
    p.start()
    try:
        port = parent.recv()
        result = run_clients(port, messages)
    finally:
        parent.send("stop")
    stats = parent.recv() if parent.poll(30) else {}
    result["too_slow"] = float(stats.get("too-slow", 0))
    p.join(20)
    if p.is_alive():
        p.kill()
    return result


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None).parse_args()
    loops = [False] + ([True] if uvloop is not None else [])
    rows: list[tuple[str, dict[str, float]]] = []
    for u in loops:
        tag = " (uvloop)" if u else ""
        rows.append(("minimal asyncio broadcast server" + tag, measure(serve_minimal, u, 600)))
        rows.append(("synack ChatServer" + tag, measure(serve_synack, u, 3000)))
    print(
        f"chat fan-out: {CLIENTS} clients, bursts of {BURST} broadcasts, server in its own process"
    )
    for name, r in rows:
        print(
            f"  {name:42s} {r['deliveries_per_s'] / 1e6:6.3f} M deliveries/s   "
            f"p50 {r['p50_ms']:7.2f} ms   p99 {r['p99_ms']:7.2f} ms"
            + ("" if r["complete"] else "   (INCOMPLETE)")
            + (f"   ({r['too_slow']:.0f} dropped as too-slow)" if r.get("too_slow") else "")
        )
    base = rows[0][1]["deliveries_per_s"]
    for (bname, b), (sname, r) in zip(rows[0::2], rows[1::2], strict=True):
        print(f"  {sname} / {bname}: {r['deliveries_per_s'] / b['deliveries_per_s']:.1f}x")
    best = max(r["deliveries_per_s"] for name, r in rows if name.startswith("synack"))
    print(f"  synack (best loop) / minimal asyncio server (asyncio loop): {best / base:.1f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
