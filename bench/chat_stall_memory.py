"""Memory of a chat server holding stalled frames (issue 14): N connections
each send only a frame header (4 bytes announcing 64 KiB, or 16 bytes: the
header and 12 body bytes), then nothing. Prints the server's resident memory
(VmRSS) before, with the connections held, after the hello timeout has
closed them, and with a second round held: RSS seldom shrinks (the C
allocator keeps freed pages), so "released" shows as a second round that
costs nothing more.

    .venv/bin/python bench/chat_stall_memory.py [--connections 2000] [--body 0]

Bounded: N connections on loopback, one header each, a fixed wait.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmRSS:\s+(\d+) kB", text)
    assert m is not None
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--body", type=int, default=0, help="body bytes sent after the header")
    ap.add_argument("--hello-timeout", type=float, default=5.0)
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "synack", "chat", "serve", "--port", "0"]
    cmd += ["--idle-timeout", str(args.hello_timeout), "--heartbeat", str(args.hello_timeout)]
    if (
        "--hello-timeout"
        in subprocess.run([*cmd[:4], "serve", "--help"], capture_output=True, text=True).stdout
    ):
        cmd += ["--hello-timeout", str(args.hello_timeout)]
    server = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        port = int(line.split(":")[-1].split()[0])
        time.sleep(0.5)
        before = rss_kib(server.pid)
        frame = (65536).to_bytes(4, "big") + b"x" * args.body

        def round_() -> list[socket.socket]:
            socks = []
            for _ in range(args.connections):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(frame)
                socks.append(s)
            time.sleep(1.0)
            return socks

        socks = round_()
        held = rss_kib(server.pid)
        time.sleep(args.hello_timeout + 2.0)
        after = rss_kib(server.pid)
        for s in socks:
            s.close()
        socks = round_()
        again = rss_kib(server.pid)
        for s in socks:
            s.close()
        mb = lambda kib: f"+{(kib - before) / 1024:.1f} MB"  # noqa: E731
        print(
            f"{args.connections} connections x {len(frame)}-byte header: server RSS "
            f"{before / 1024:.1f} MB before; {mb(held)} held; {mb(after)} after the "
            f"timeout; {mb(again)} with a second round held"
        )
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
