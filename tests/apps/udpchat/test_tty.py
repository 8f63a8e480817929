"""Full duplex in a terminal: a message arrives while the user is typing."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import sys
import time

import pytest

pty = pytest.importorskip("pty", reason="needs a POSIX pseudo-terminal")


def test_message_arrives_while_typing() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bob:
        bob.bind(("127.0.0.1", 0))
        bob.settimeout(10)
        bob_port = bob.getsockname()[1]
        pid, fd = pty.fork()
        if pid == 0:  # the child: synack on a terminal
            # No cursor-position request: the test is not a real terminal.
            os.environ["PROMPT_TOOLKIT_NO_CPR"] = "1"
            os.execv(
                sys.executable,
                [
                    sys.executable,
                    "-m",
                    "synack",
                    "udpchat",
                    "--name",
                    "alice",
                    "--port",
                    "0",
                    "--contact",
                    f"bob=127.0.0.1:{bob_port}",
                    "--timeout",
                    "0.05",
                    "--tries",
                    "2",
                ],
            )
        screen = b""

        def read_until(pattern: bytes, limit: float = 10.0) -> re.Match[bytes]:
            nonlocal screen
            end = time.monotonic() + limit
            while time.monotonic() < end:
                m = re.search(pattern, screen)
                if m:
                    return m
                if select.select([fd], [], [], 0.1)[0]:
                    try:
                        screen += os.read(fd, 4096)
                    except OSError:
                        break
            raise AssertionError(f"{pattern!r} not seen in {screen[-500:]!r}")

        try:
            alice_port = int(read_until(rb"listening on 127\.0\.0\.1:(\d+)").group(1))
            read_until(rb"bob>")  # the prompt: the one contact is selected
            os.write(fd, b"hel")  # half a line typed...
            read_until(rb"hel")
            incoming = {"type": "msg", "id": 1, "from": "bob", "text": "incoming!"}
            bob.sendto(json.dumps(incoming).encode(), ("127.0.0.1", alice_port))
            read_until(rb"\[bob\] incoming!")  # ...shown while the line is open
            os.write(fd, b"lo\r")  # finish the line
            got = []
            while not any(m["type"] == "msg" for m in got):
                got.append(json.loads(bob.recv(2048)))
            msg = next(m for m in got if m["type"] == "msg")
            assert msg["text"] == "hello" and msg["from"] == "alice"
            bob.sendto(
                json.dumps({"type": "ack", "id": msg["id"]}).encode(), ("127.0.0.1", alice_port)
            )
            read_until(rb"delivered to bob")
            read_until(rb"delivered to bob[\s\S]*bob>", 5)  # the prompt is back
            os.write(fd, b"\x04")  # Ctrl-D: end of input
            end = time.monotonic() + 10
            status = None
            while status is None and time.monotonic() < end:
                done, raw = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = os.waitstatus_to_exitcode(raw)
                elif select.select([fd], [], [], 0.1)[0]:
                    try:
                        screen += os.read(fd, 4096)  # keep the terminal drained
                    except OSError:
                        pass
            assert status == 0, screen[-800:]
        finally:
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            os.close(fd)
