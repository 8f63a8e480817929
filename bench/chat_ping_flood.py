"""A legitimate chat client's latency while another connection floods pings (issue 14).

Starts `synack chat serve` on loopback, registers two clients, and measures
the say -> msg round trip of one (200 samples, 10 ms apart) first alone, then
while a third connection sends pings as fast as the socket takes them (bounded
by the same sampling period). Prints the median and 95th percentile of each,
and the server's CPU time during the flood.

    .venv/bin/python bench/chat_ping_flood.py
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path


def frame(obj: dict[str, object]) -> bytes:
    data = json.dumps(obj).encode()
    return len(data).to_bytes(4, "big") + data


def read_frame(sock: socket.socket) -> dict[str, object]:
    def exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    n = int.from_bytes(exact(4), "big")
    return dict(json.loads(exact(n)))


def join(port: int, nick: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(frame({"type": "hello", "nick": nick}))
    while read_frame(s)["type"] != "welcome":
        pass
    return s


def samples(s: socket.socket, n: int = 200) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        s.sendall(frame({"type": "say", "text": f"probe {i}"}))
        while True:
            m = read_frame(s)
            if m["type"] == "msg" and m["text"] == f"probe {i}":
                break
            if m["type"] == "ping":
                s.sendall(frame({"type": "pong"}))
        out.append((time.perf_counter() - t) * 1000)
        time.sleep(0.01)
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


FLOOD_SECONDS = 4.0


def flood(port: int, seconds: float) -> None:
    """Send pings as fast as the socket takes them for ``seconds``; a thread
    reads the pongs (as the attack did, so the server never pauses it)."""
    s = join(port, "flood")
    ping = frame({"type": "ping"}) * 256
    sent = 0
    closed = threading.Event()

    def drain() -> None:
        while True:
            try:
                if not s.recv(65536):
                    break
            except TimeoutError:  # the send timeout applies here too
                continue
            except OSError:
                break
        closed.set()

    threading.Thread(target=drain, daemon=True).start()
    s.settimeout(0.2)
    end = time.monotonic() + seconds
    while time.monotonic() < end and not closed.is_set():
        try:
            s.sendall(ping)
            sent += 256
        except TimeoutError:
            pass
        except OSError:
            break
    time.sleep(0.2)
    print(sent, "closed" if closed.is_set() else "open")


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--flood":
        flood(int(sys.argv[2]), float(sys.argv[3]))
        return 0
    server = subprocess.Popen(
        [sys.executable, "-m", "synack", "chat", "serve", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        port = int(server.stderr.readline().split(":")[-1].split()[0])
        probe = join(port, "probe")
        join(port, "bystander")
        alone = samples(probe)
        # The flood comes from another process (a thread here would take the
        # probe's GIL and measure this script, not the server).
        flooder = subprocess.Popen(
            [sys.executable, __file__, "--flood", str(port), str(FLOOD_SECONDS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)
        cpu0 = cpu_seconds(server.pid)
        t0 = time.monotonic()
        flooded = samples(probe)
        cpu = (cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0)
        out, _ = flooder.communicate(timeout=FLOOD_SECONDS + 10)
        sent, closed = out.split()

        def fmt(xs: list[float]) -> str:
            p95 = statistics.quantiles(xs, n=20)[-1]
            return f"median {statistics.median(xs):.2f} ms, p95 {p95:.2f} ms"

        print(f"alone:        {fmt(alone)}")
        how = "the server closed the flooder" if closed == "closed" else "flooder never closed"
        print(
            f"ping flood:   {fmt(flooded)} ({int(sent):,} pings sent, {how}; server CPU {cpu:.0%})"
        )
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
