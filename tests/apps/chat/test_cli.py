"""End-to-end: `synack chat serve` and `join`/`say` processes over stdin/stdout."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SYNACK = [sys.executable, "-m", "synack"]
T = 20.0


class Proc:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.p = proc

    @classmethod
    async def start(cls, *args: str) -> Proc:
        p = await asyncio.create_subprocess_exec(
            *SYNACK,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(p)

    def write(self, line: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(line.encode() + b"\n")

    def close_stdin(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.close()

    async def line(self, stream: str = "stdout") -> str:
        s = self.p.stdout if stream == "stdout" else self.p.stderr
        assert s is not None
        raw = await asyncio.wait_for(s.readline(), T)
        assert raw, f"{stream} ended"
        return raw.decode().rstrip("\n")

    async def json_until(self, pred: Any) -> list[dict[str, Any]]:
        seen = []
        while True:
            m = json.loads(await self.line())
            seen.append(m)
            if pred(m):
                return seen

    async def wait(self) -> int:
        return await asyncio.wait_for(self.p.wait(), T)

    def kill(self) -> None:
        if self.p.returncode is None:
            self.p.kill()


async def serve(*extra: str) -> tuple[Proc, int]:
    server = await Proc.start("chat", "serve", "--port", "0", *extra)
    line = await server.line("stderr")
    m = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+) \(chat\)", line)
    assert m, line
    return server, int(m.group(1))


def test_serve_join_say_end_to_end() -> None:
    async def body() -> None:
        server, port = await serve("--heartbeat", "0.3")
        procs = [server]
        try:
            ada = await Proc.start("chat", "join", "--nick", "ada", "--port", str(port), "--json")
            procs.append(ada)
            w = json.loads(await ada.line())
            assert w == {"type": "welcome", "nick": "ada", "users": ["ada"]}

            bob = await Proc.start("chat", "join", "--nick", "bob", "--port", str(port))
            procs.append(bob)
            assert await bob.line() == "* welcome bob; online: ada, bob"
            await ada.json_until(lambda m: m == {"type": "joined", "nick": "bob"})

            bob.write("hello from bob")
            bob.write("/to ada just for you")
            bob.write("/who")
            seen = await ada.json_until(lambda m: m.get("to") == "ada")
            msgs = [m for m in seen if m["type"] == "msg"]
            assert [(m["from"], m["text"], m["to"]) for m in msgs] == [
                ("bob", "hello from bob", None),
                ("bob", "just for you", "ada"),
            ]
            assert msgs[0]["id"] < msgs[1]["id"]
            lines = [await bob.line() for _ in range(3)]
            assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] #\d+ bob: hello from bob", lines[0]), lines
            assert lines[1].endswith("bob -> ada: just for you")
            assert lines[2] == "* online: ada, bob"

            # A short connection: connect, register, say, bye, exit 0.
            say = await Proc.start("chat", "say", "--nick", "cleo", "--port", str(port), "one shot")
            assert await say.wait() == 0
            seen = await ada.json_until(lambda m: m["type"] == "left" and m["nick"] == "cleo")
            assert [m["type"] for m in seen if m["type"] != "ping"] == ["joined", "msg", "left"]
            assert seen[-1]["reason"] == "bye"

            # The heartbeat reaches a waiting `join` and is answered: ada stays online.
            await ada.json_until(lambda m: m["type"] == "ping")

            # End of input: bob says bye and exits 0; ada hears it.
            bob.close_stdin()
            assert await bob.wait() == 0
            await ada.json_until(lambda m: m == {"type": "left", "nick": "bob", "reason": "bye"})

            # SIGTERM: the server tells ada bye and exits 0; ada exits 0 too.
            server.p.send_signal(signal.SIGTERM)
            await ada.json_until(lambda m: m == {"type": "bye"})
            assert await server.wait() == 0
            assert await ada.wait() == 0
        finally:
            for p in procs:
                p.kill()

    asyncio.run(body())


def test_sigint_stops_the_server_cleanly() -> None:
    async def body() -> None:
        server, _ = await serve()
        try:
            server.p.send_signal(signal.SIGINT)
            assert await server.wait() == 0
        finally:
            server.kill()

    asyncio.run(body())


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SYNACK, *args], capture_output=True, text=True, timeout=T, stdin=subprocess.DEVNULL
    )


def test_port_in_use_is_one_line_and_status_2() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = _run("chat", "serve", "--port", str(port))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "address already in use" in r.stderr, r.stderr


def test_user_mistakes_are_status_2() -> None:
    with socket.socket() as s:
        # Bound but not listening: connecting is refused, and nobody can take the port.
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
        cases = [
            ("chat", "join", "--nick", "ada", "--port", str(free)),  # connection refused
            ("chat", "say", "--nick", "ada", "--port", str(free), "hi"),
            ("chat", "join", "--nick", "bad nick", "--port", str(free)),
            ("chat", "serve", "--port", "70000"),
            ("chat", "serve", "--host", "256.1.1.1", "--port", "0"),
            ("chat", "serve", "--heartbeat", "-1"),
        ]
        for args in cases:
            r = _run(*args)
            assert r.returncode == 2, (args, r)
            assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, (args, r.stderr)


def test_help_everywhere() -> None:
    for args in (["chat"], ["chat", "serve"], ["chat", "join"], ["chat", "say"], ["demo"]):
        r = _run(*args, "--help")
        assert r.returncode == 0 and "usage:" in r.stdout, args


def test_demo_runs_the_scripted_chat(tmp_path: Path) -> None:
    r = _run("demo", "--chat", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "chat.txt").read_text()
    for needle in (
        "welcome ada",
        "joined cleo",
        "→ everyone: hello, everyone",
        "from bob → cleo: psst",
        "ping (heartbeat)",
        "left bob (bye)",
        "bye",
    ):
        assert needle in text, needle
    assert (tmp_path / "chat.html").exists()


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_join_in_a_terminal_is_full_duplex() -> None:
    """`join` on a pseudo-terminal: prompt_toolkit prompt, messages arrive while it waits."""
    loop = asyncio.new_event_loop()
    server, port = loop.run_until_complete(serve())
    env = {**os.environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: `synack chat join` with a terminal as stdin and stdout
        os.execve(
            sys.executable, [*SYNACK, "chat", "join", "--nick", "ada", "--port", str(port)], env
        )
    seen = ""
    reaped = False

    def read_until(needle: str) -> None:
        nonlocal seen
        for _ in range(200):  # bounded: at most ~20 s
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    seen += os.read(fd, 65536).decode(errors="replace")
                except OSError:  # the child closed the terminal
                    break
            if needle in _ANSI.sub("", seen):
                return
        raise AssertionError(f"{needle!r} not in {_ANSI.sub('', seen)!r}")

    try:
        read_until("ada>")  # the prompt is up
        r = _run("chat", "say", "--nick", "bob", "--port", str(port), "hello ada")
        assert r.returncode == 0
        read_until("bob: hello ada")  # arrived while the prompt was waiting
        os.write(fd, b"hi bob\r")
        read_until("ada: hi bob")  # typed, sent, and back from the server
        os.write(fd, b"/quit\r")
        read_until("* bye")
        _, status = os.waitpid(pid, 0)
        reaped = True
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        if not reaped:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
        server.p.send_signal(signal.SIGTERM)
        loop.run_until_complete(server.wait())
        loop.close()


def test_input_lines_map_to_messages(capsys: pytest.CaptureFixture[str]) -> None:
    from synack.cli.chat import _send_line

    class Recorder:
        def __init__(self) -> None:
            self.sent: list[tuple[str, str | None]] = []

        async def say(self, text: str, to: str | None = None) -> None:
            self.sent.append((text, to))

        async def send(self, message: object) -> None:
            self.sent.append((type(message).__name__, None))

    async def feed(*lines: str) -> tuple[list[tuple[str, str | None]], bool]:
        rec = Recorder()
        go_on = True
        for line in lines:
            go_on = await _send_line(rec, line)  # type: ignore[arg-type]
        return rec.sent, go_on

    sent, go_on = asyncio.run(feed("hi all", "/to bob psst  there", "/who", "", "   "))
    assert sent == [("hi all", None), ("psst  there", "bob"), ("Who", None)] and go_on
    # A /to without a recipient or without text is a local usage hint, not a message.
    sent, _ = asyncio.run(feed("/to", "/to bob", "/to bob   "))
    assert sent == []
    assert capsys.readouterr().err.count("usage: /to NICK TEXT") == 3
    assert asyncio.run(feed("/quit"))[1] is False


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this host")
def test_listening_line_brackets_an_ipv6_host() -> None:
    # HOST:PORT must be parseable: ::1:8898 is not; [::1]:8898 is (as the time server prints).
    proc = subprocess.Popen(
        [sys.executable, "-m", "synack", "chat", "serve", "--host", "::1", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert re.fullmatch(r"listening on \[::1\]:\d+ \(chat\)\n", line), line
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        if proc.stderr is not None:
            proc.stderr.close()
