"""Start a synack server as a subprocess and read its `listening on` lines (§5)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

LISTENING = re.compile(r"listening on (\S+):(\d+) \((\S+)\)")


@dataclass
class ServerProc:
    proc: subprocess.Popen[str]
    ports: dict[str, int] = field(default_factory=dict)
    stderr_lines: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def synack_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "synack", *args]


@contextmanager
def running_server(args: Sequence[str], expect: int, timeout: float = 20.0) -> Iterator[ServerProc]:
    """Run `synack ARGS`; yield once `expect` listening lines have been read."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        synack_cmd(*args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    server = ServerProc(proc)
    try:
        deadline = time.monotonic() + timeout
        assert proc.stderr is not None
        while len(server.ports) < expect and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            server.stderr_lines.append(line)
            m = LISTENING.search(line)
            if m:
                server.ports[m.group(3)] = int(m.group(2))
        assert len(server.ports) == expect, f"server did not start: {server.stderr_lines}"
        yield server
    finally:
        server.stop()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
