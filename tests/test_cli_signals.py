"""Every server stops within 2 s of SIGINT/SIGTERM whatever its clients do
(issue 14 item 3): bounded linger, then abort. The client here connects and
never reads."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.apps.time.serverproc import running_server, synack_cmd

DEADLINE = 2.0


def _stalled_chargen(ports: dict[str, int]) -> list[socket.socket]:
    s = socket.create_connection(("127.0.0.1", ports["chargen/tcp"]))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    time.sleep(0.3)  # chargen fills both socket buffers, then the server's
    return [s]


def _stalled_chat(ports: dict[str, int]) -> list[socket.socket]:
    s = socket.create_connection(("127.0.0.1", ports["chat"]))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    def frame(obj: dict[str, object]) -> bytes:
        data = json.dumps(obj).encode()
        return len(data).to_bytes(4, "big") + data

    # Register, then broadcast ~800 KB to ourselves, never reading any of it.
    s.sendall(frame({"type": "hello", "nick": "stall"}))
    for i in range(200):
        s.sendall(frame({"type": "say", "text": f"{i:04d}" + "x" * 4000}))
    half_open = socket.create_connection(("127.0.0.1", ports["chat"]))  # no hello either
    time.sleep(0.3)
    return [s, half_open]


def _udp(ports: dict[str, int]) -> list[socket.socket]:
    return []


CASES: dict[str, tuple[list[str], int, Callable[[dict[str, int]], list[socket.socket]]]] = {
    "serve": (["serve", "--services", "chargen:0", "--tcp"], 1, _stalled_chargen),
    "chat serve": (["chat", "serve", "--port", "0"], 1, _stalled_chat),
    "time serve": (["time", "serve", "--port", "0", "--sntp-port", "0"], 2, _udp),
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("name", list(CASES))
def test_server_stops_within_two_seconds_with_a_client_that_does_not_read(
    name: str, sig: int
) -> None:
    args, expect, attack = CASES[name]
    with running_server(args, expect) as server:
        ports = {k.split()[0]: v for k, v in server.ports.items()}
        clients = attack(ports)
        try:
            start = time.monotonic()
            server.proc.send_signal(sig)
            try:
                code = server.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                code = None
            took = time.monotonic() - start
        finally:
            for c in clients:
                c.close()
    assert code == 0, f"{name}: exit status {code}"
    assert took < DEADLINE, f"{name} took {took:.2f} s to stop after {sig!r}"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_udpchat_stops_within_two_seconds_with_stdin_open(sig: int) -> None:
    # stdin stays open (a pipe nobody writes to): only the signal can stop it.
    proc = subprocess.Popen(
        synack_cmd("udpchat", "--name", "me", "--port", "0"),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        assert proc.stderr is not None
        assert "listening on" in proc.stderr.readline()
        start = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(timeout=10)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.close()
        proc.stderr.close()
    assert code == 0 and took < DEADLINE, (code, took)
