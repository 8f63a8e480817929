"""A real redis-server for a test: Debian's binary on a free loopback port, no persistence,
stopped (by its own pid) at the end. Skips with a reason where redis-server is missing."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

REDIS = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(
    REDIS is None, reason="redis-server is not installed (CI installs Debian's redis-server)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS is not None
        self.proc = subprocess.Popen(
            [
                REDIS,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def command(self, *words: str) -> bytes:
        """One command; a bulk reply's bytes, or the status/integer/error line."""
        with socket.create_connection(("127.0.0.1", self.port), 2) as s:
            req = [f"*{len(words)}\r\n".encode()]
            for w in words:  # RESP: any bytes in an argument (JSON with spaces, quotes)
                req.append(f"${len(w.encode())}\r\n".encode() + w.encode() + b"\r\n")
            s.sendall(b"".join(req))
            data = b""
            s.settimeout(2)
            while b"\r\n" not in data:
                data += s.recv(65536)
            head, _, rest = data.partition(b"\r\n")
            if not head.startswith(b"$"):  # +OK, -ERR, :N
                return head
            n = int(head[1:])
            while len(rest) < n + 2:
                rest += s.recv(65536)
            return rest[:n]

    def commandstats(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.command("INFO", "commandstats").decode().splitlines():
            if line.startswith("cmdstat_"):
                name, rest = line[len("cmdstat_") :].split(":", 1)
                fields = dict(kv.split("=") for kv in rest.split(","))
                out[name] = int(fields["calls"])
        return out

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    r = RedisServer()
    r.start()
    try:
        yield r
    finally:
        r.stop()
