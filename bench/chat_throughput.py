"""One-way framed throughput over loopback: 100-byte and 64 KiB messages.

Sender and receiver run in two processes (one core each); the receiver times
from the connection's arrival to the last complete message. Contenders:

- synack: ``FramedProtocol`` (BufferedProtocol receive into preallocated memory,
  memoryview/bytes decode) and ``FramedConnection.send_many`` (one write per batch);
- the anchor: a plain asyncio BufferedProtocol receiver written here (one
  preallocated buffer, struct + memoryview) fed by a sender that joins the
  same batches synack's ``send_many`` gets into one ``write`` each: the same
  batching opportunity, so the ratio is the framing machinery, not batching;
- asyncio streams, one ``write`` + ``drain`` per message, and batched (drain
  every 1,000 messages), reading with ``readexactly`` (second rows);
- pyzmq PUSH/PULL;
- raw blocking sockets (64 KiB only: 1 MiB ``sendall``/``recv_into``, no framing).

synack, the anchor and the asyncio streams also run on uvloop when it is
installed; ratios compare contenders on the same loop only. What the ratio
means: messages per second (wall clock, from the connection's arrival to the
last message) of synack over the anchor; the goal for 100-byte messages is
>= 1.5x. The receiver's CPU per message is reported beside it.

    .venv/bin/python bench/chat_throughput.py [--rounds 3] [100|65536]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Figure
from synack.apps.chat.connection import FramedProtocol, open_framed_connection

try:
    import uvloop
except ImportError:  # optional extra
    uvloop = None

try:
    import zmq
except ImportError:
    zmq = None

BATCH = 1000
_H = struct.Struct(">I")


def _run(coro: Any, use_uvloop: bool) -> Any:
    if use_uvloop:
        assert uvloop is not None
        return uvloop.run(coro)
    return asyncio.run(coro)


# -- receivers: bind, report the port, count `n` messages, report seconds ----------


def recv_synack(conn: Connection, n: int, size: int, use_uvloop: bool) -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[float, float]] = loop.create_future()

        class Counter(FramedProtocol):
            count = 0
            start = 0.0

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                self.start = time.perf_counter()
                self.cpu = time.process_time()

            def frames_received(self, frames: list[bytes]) -> None:
                self.count += len(frames)
                if self.count >= n and not done.done():
                    done.set_result(
                        (time.perf_counter() - self.start, time.process_time() - self.cpu)
                    )

        server = await loop.create_server(lambda: Counter(max_frame=1 << 20), "127.0.0.1", 0)
        conn.send(server.sockets[0].getsockname()[1])
        secs = await done
        server.close()
        return secs

    conn.send(_run(main(), use_uvloop))


def recv_streams(conn: Connection, n: int, size: int, use_uvloop: bool) -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[float, float]] = loop.create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(n):
                (length,) = _H.unpack(await reader.readexactly(4))
                await reader.readexactly(length)
            done.set_result((time.perf_counter() - start, time.process_time() - cpu))
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=1 << 20)
        conn.send(server.sockets[0].getsockname()[1])
        secs = await done
        server.close()
        return secs

    conn.send(_run(main(), use_uvloop))


def recv_buffered(conn: Connection, n: int, size: int, use_uvloop: bool) -> None:
    """The anchor's receiver: a plain BufferedProtocol (one preallocated buffer,
    frames cut with struct and memoryview slices, leftovers moved to the front),
    what a competent engineer writes for length-prefixed frames on asyncio."""

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[float, float]] = loop.create_future()

        class Plain(asyncio.BufferedProtocol):
            def __init__(self) -> None:
                self.buf = bytearray(1 << 21)
                self.view = memoryview(self.buf)
                self.filled = 0
                self.count = 0

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.start, self.cpu = time.perf_counter(), time.process_time()

            def get_buffer(self, sizehint: int) -> memoryview:
                return self.view[self.filled :]

            def buffer_updated(self, nbytes: int) -> None:
                end = self.filled + nbytes
                pos = 0
                unpack = _H.unpack_from
                frames = []
                while end - pos >= 4:
                    (length,) = unpack(self.buf, pos)
                    if end - pos - 4 < length:
                        break
                    frames.append(bytes(self.view[pos + 4 : pos + 4 + length]))
                    pos += 4 + length
                if pos:
                    self.buf[: end - pos] = self.view[pos:end]
                self.filled = end - pos
                self.count += len(frames)
                if self.count >= n and not done.done():
                    done.set_result(
                        (time.perf_counter() - self.start, time.process_time() - self.cpu)
                    )

        server = await loop.create_server(Plain, "127.0.0.1", 0)
        conn.send(server.sockets[0].getsockname()[1])
        secs = await done
        server.close()
        return secs

    conn.send(_run(main(), use_uvloop))


def recv_zmq(conn: Connection, n: int, size: int, use_uvloop: bool) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)
    port = s.bind_to_random_port("tcp://127.0.0.1")
    conn.send(port)
    s.recv()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n - 1):
        s.recv(copy=size < 10_000)
    conn.send((time.perf_counter() - start, time.process_time() - cpu))
    s.close(linger=0)
    ctx.term()


def recv_raw(conn: Connection, n: int, size: int, use_uvloop: bool) -> None:
    lsock = socket.create_server(("127.0.0.1", 0))
    conn.send(lsock.getsockname()[1])
    sock, _ = lsock.accept()
    start, cpu = time.perf_counter(), time.process_time()
    buf = bytearray(1 << 20)
    total, want = 0, n * size
    while total < want:
        got = sock.recv_into(buf)
        if not got:
            break
        total += got
    conn.send((time.perf_counter() - start, time.process_time() - cpu))
    sock.close()
    lsock.close()


# -- senders ---------------------------------------------------------------------------


def send_synack(port: int, n: int, size: int, use_uvloop: bool) -> None:
    async def main() -> None:
        c = await open_framed_connection("127.0.0.1", port, max_frame=1 << 20)
        payload = b"x" * size
        batch = [payload] * min(BATCH, max(1, (256 << 10) // size))
        sent = 0
        while sent < n:
            k = min(len(batch), n - sent)
            c.send_many(batch if k == len(batch) else batch[:k])
            sent += k
            await c.drain()
        c.close()
        await asyncio.sleep(0.2)

    _run(main(), use_uvloop)


def _send_streams(port: int, n: int, size: int, use_uvloop: bool, every: int) -> None:
    async def main() -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        frame = _H.pack(size) + b"x" * size
        for i in range(1, n + 1):
            writer.write(frame)
            if i % every == 0:
                await writer.drain()
        await writer.drain()
        writer.close()
        await asyncio.sleep(0.2)

    _run(main(), use_uvloop)


def send_joined(port: int, n: int, size: int, use_uvloop: bool) -> None:
    """The anchor's sender: the same batches as synack's ``send_many``, each
    joined into one bytes and written once, then ``drain``."""

    async def main() -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        frame = _H.pack(size) + b"x" * size
        per = min(BATCH, max(1, (256 << 10) // size))
        sent = 0
        while sent < n:
            k = min(per, n - sent)
            writer.write(b"".join([frame] * k))
            sent += k
            await writer.drain()
        writer.close()
        await asyncio.sleep(0.2)

    _run(main(), use_uvloop)


def send_streams_each(port: int, n: int, size: int, use_uvloop: bool) -> None:
    _send_streams(port, n, size, use_uvloop, 1)


def send_streams_batched(port: int, n: int, size: int, use_uvloop: bool) -> None:
    _send_streams(port, n, size, use_uvloop, BATCH)


def send_zmq(port: int, n: int, size: int, use_uvloop: bool) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.connect(f"tcp://127.0.0.1:{port}")
    payload = b"x" * size
    for _ in range(n):
        s.send(payload, copy=size < 10_000)
    s.close(linger=-1)
    ctx.term()


def send_raw(port: int, n: int, size: int, use_uvloop: bool) -> None:
    # The upper bound: the same bytes in 1 MiB sendall() calls, nothing else.
    sock = socket.create_connection(("127.0.0.1", port))
    chunk = b"x" * (1 << 20)
    left = n * size
    while left > 0:
        sock.sendall(chunk if left >= len(chunk) else chunk[:left])
        left -= len(chunk)
    time.sleep(0.2)
    sock.close()


Side = Callable[..., None]


def measure(recv: Side, send: Side, n: int, size: int, use_uvloop: bool = False) -> float:
    """Messages per second, sender and receiver in separate processes."""
    return measure_cpu(recv, send, n, size, use_uvloop)[0]


def measure_cpu(
    recv: Side, send: Side, n: int, size: int, use_uvloop: bool = False
) -> tuple[float, float]:
    """(messages per second, receiver CPU microseconds per message)."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    rp = ctx.Process(target=recv, args=(child, n, size, use_uvloop))
    rp.start()
    port = parent.recv()
    sp = ctx.Process(target=send, args=(port, n, size, use_uvloop))
    sp.start()
    if not parent.poll(120):
        rp.kill()
        sp.kill()
        raise RuntimeError("receiver timed out")
    secs, cpu = parent.recv()
    sp.join(10)
    rp.join(10)
    return n / secs, cpu / n * 1e6


def figures(quick: bool) -> list[Figure]:
    """100-byte messages (and 64 KiB when not quick), per loop, interleaved rounds."""
    rounds = 3 if quick else 5
    loops = [False] + ([True] if uvloop is not None else [])
    sizes = ((100, 200_000),) if quick else ((100, 500_000), (65_536, 40_000))
    contenders: dict[str, tuple[Side, Side]] = {
        "synack": (recv_synack, send_synack),
        "BufferedProtocol + joined writes": (recv_buffered, send_joined),
        "asyncio streams, drain every 1,000": (recv_streams, send_streams_batched),
    }
    out = []
    for size, n in sizes:
        for u in loops:
            loop_name = "uvloop" if u else "asyncio"
            got: dict[str, list[tuple[float, float]]] = {k: [] for k in contenders}
            for _ in range(rounds):
                for name, (recv, send) in contenders.items():
                    got[name].append(measure_cpu(recv, send, n, size, u))
            mine = [r for r, _ in got["synack"]]
            for name in list(contenders)[1:]:
                theirs = [r for r, _ in got[name]]
                out.append(
                    Figure(
                        bench="chat_throughput",
                        name=f"framed throughput, {size}-byte messages, {loop_name}",
                        value=statistics.median(mine),
                        unit="messages/s",
                        anchor=f"{name}, {loop_name}",
                        anchor_value=statistics.median(theirs),
                        ratios=[a / b for a, b in zip(mine, theirs, strict=True)],
                        goal=1.5 if size == 100 and name.startswith("Buffered") else None,
                        command=".venv/bin/python bench/chat_throughput.py "
                        f"--rounds {rounds} {size}",
                        note=f"receiver CPU {statistics.median(c for _, c in got['synack']):.2f}"
                        f" us/msg (anchor {statistics.median(c for _, c in got[name]):.2f});"
                        f" {n:,} messages per sample",
                    )
                )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    # No `choices=` here: on Python 3.11 argparse checks an empty `nargs="*"`
    # positional's default ([]) against the choices and refuses a bare run.
    parser.add_argument("sizes", nargs="*", type=int, help="only these message sizes: 100, 65536")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    only = set(args.sizes)  # e.g. `chat_throughput.py 65536`
    if only - {100, 65_536}:
        parser.error(f"sizes must be 100 or 65536, not {sorted(only - {100, 65_536})}")
    loops = [False] + ([True] if uvloop is not None else [])
    results: dict[int, dict[str, float]] = {}
    for size, n, n_each in ((100, 500_000, 100_000), (65_536, 40_000, 40_000)):
        if only and size not in only:
            continue
        plan: list[tuple[str, Side, Side, int, bool]] = []
        for u in loops:
            tag = " (uvloop)" if u else ""
            plan.append(("synack" + tag, recv_synack, send_synack, n, u))
            plan.append(
                ("BufferedProtocol + joined writes" + tag, recv_buffered, send_joined, n, u)
            )
            plan.append(
                ("asyncio streams, batched" + tag, recv_streams, send_streams_batched, n, u)
            )
            if size == 100:
                plan.append(
                    (
                        "asyncio streams, write+drain each" + tag,
                        recv_streams,
                        send_streams_each,
                        n_each,
                        u,
                    )
                )
        if zmq is not None:
            plan.append(("pyzmq PUSH/PULL", recv_zmq, send_zmq, n, False))
        if size > 100:
            plan.append(("raw blocking sockets (no framing)", recv_raw, send_raw, n, False))
        # Round robin, medians: the machine is shared, and a burst of
        # someone else's load should hit every contender alike.
        samples: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, recv, send, count, u in plan:
                samples.setdefault(name, []).append(measure(recv, send, count, size, u))
        results[size] = {k: statistics.median(v) for k, v in samples.items()}

    print("one-way framed throughput over loopback (sender and receiver in two processes)")
    for size, r in results.items():
        print(f"\n{size}-byte messages")
        for name, mps in r.items():
            gbs = mps * size / 1e9
            print(f"  {name:40s} {mps / 1e6:7.3f} M msg/s  {gbs:6.2f} GB/s")
        for tag in ("", " (uvloop)"):
            if "synack" + tag not in r:
                continue
            for anchor in ("BufferedProtocol + joined writes", "asyncio streams, batched"):
                if anchor + tag in r:
                    ratio = r["synack" + tag] / r[anchor + tag]
                    print(f"  synack{tag} / {anchor}{tag}: {ratio:.2f}x")
        for anchor in ("pyzmq PUSH/PULL", "raw blocking sockets (no framing)"):
            if anchor in r and "synack" in r:
                print(f"  synack (asyncio) / {anchor}: {r['synack'] / r[anchor]:.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
