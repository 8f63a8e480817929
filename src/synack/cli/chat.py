"""``synack chat serve | join | say`` (docs/protocol.md §5).

Layer: cli. May import every other package; nothing imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
import time
from typing import Any

from synack.apps.chat.client import ChatClient, ChatError, RawEvent
from synack.apps.chat.messages import (
    Bye,
    Error,
    Joined,
    Left,
    Msg,
    Ping,
    Pong,
    ServerMessage,
    Users,
    Welcome,
    Who,
    check_nick,
)
from synack.apps.chat.server import DEFAULT_PORT, ChatConfig, ChatServer
from synack.apps.services import announce
from synack.cli import args as cliargs
from synack.core.framing import DEFAULT_MAX_FRAME
from synack.errors import LocalProtocolError, UsageError


def register(subparsers: Any) -> None:
    chat = subparsers.add_parser(
        "chat", help="framed TCP chat: server, full-duplex client, one-shot sender"
    )
    sub = chat.add_subparsers(
        dest="chat_command", metavar="COMMAND", parser_class=type(chat), required=True
    )

    serve = sub.add_parser("serve", help="run a chat server")
    _address(serve, "address to bind")
    serve.add_argument(
        "--heartbeat",
        type=cliargs.seconds,
        default=30.0,
        metavar="S",
        help="send ping after S seconds of silence (default 30)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=cliargs.seconds,
        default=90.0,
        metavar="S",
        help="disconnect after S seconds of silence (default 90)",
    )
    serve.add_argument(
        "--max-frame",
        type=int,
        default=DEFAULT_MAX_FRAME,
        metavar="N",
        help=f"largest frame accepted, bytes (default {DEFAULT_MAX_FRAME})",
    )
    serve.add_argument(
        "--rate",
        type=cliargs.non_negative,
        default=50.0,
        metavar="N",
        help="messages per second per client, 0 = no limit (default 50, burst 200)",
    )
    serve.add_argument(
        "--max-clients",
        type=int,
        default=10_000,
        metavar="N",
        help="connections at once (default 10000)",
    )
    serve.add_argument(
        "--max-queue",
        type=int,
        default=1 << 20,
        metavar="BYTES",
        help="output held for a slow reader before it is dropped (default 1 MiB)",
    )
    serve.set_defaults(func=_serve)

    join = sub.add_parser(
        "join",
        help="join a chat (full duplex); reads lines from stdin when it is not a terminal",
        description="Input: /to NICK TEXT (direct), /who, /quit; any other line goes to everyone.",
    )
    join.add_argument("--nick", required=True)
    _address(join, "server address")
    join.add_argument(
        "--json",
        action="store_true",
        help="print the server's messages as JSON, as they are on the wire",
    )
    join.set_defaults(func=_join)

    say = sub.add_parser("say", help="connect, send one message, say bye (a short connection)")
    say.add_argument("--nick", required=True)
    say.add_argument("--to", metavar="NICK", help="send a direct message instead of a broadcast")
    _address(say, "server address")
    say.add_argument("text")
    say.set_defaults(func=_say)


def _address(p: argparse.ArgumentParser, what: str) -> None:
    cliargs.add_host_port(p, what=what, port_help="chat port", default_port=DEFAULT_PORT)


def _check_nick(nick: str) -> None:
    if (why := check_nick(nick)) is not None:
        raise UsageError(f"bad nick {nick!r}: {why}")


# -- serve ---------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    try:
        config = ChatConfig(
            heartbeat=args.heartbeat,
            idle_timeout=args.idle_timeout,
            max_frame=args.max_frame,
            rate=args.rate,
            max_clients=args.max_clients,
            max_queue=args.max_queue,
        )
    except LocalProtocolError as exc:
        raise UsageError(str(exc)) from None
    return asyncio.run(_serve_async(config, args.host, args.port))


async def _serve_async(config: ChatConfig, host: str, port: int) -> int:
    with cliargs.stop_on_signals() as stop:
        server = ChatServer(config)
        await server.start(host, port)
        for address in server.addresses:
            announce(address, "chat")  # the §5 line; [::1]:PORT for IPv6, like the other servers
        try:
            await stop.wait()
        finally:
            await server.stop()
            counts = ", ".join(f"{k} {v}" for k, v in sorted(server.stats.items()))
            sys.stderr.write(f"chat server stopped ({counts or 'no traffic'})\n")
    return 0


# -- join / say ------------------------------------------------------------------


async def _open(args: argparse.Namespace) -> ChatClient:
    _check_nick(args.nick)
    try:
        return await ChatClient.open(args.host, args.port, args.nick)
    except ChatError as exc:
        if exc.code in ("nick-taken", "bad-nick"):
            raise UsageError(f"{exc.code}: {exc.detail}") from None
        raise


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def _online(users: list[str], more: int) -> str:
    return ", ".join(users) + (f" and {more} more" if more else "")


def describe(m: ServerMessage) -> str | None:
    """One plain line for a server message (None: not worth a line)."""
    if isinstance(m, Msg):
        where = f" -> {m.to}" if m.to is not None else ""
        return f"[{_clock(m.ts)}] #{m.id} {m.from_}{where}: {m.text}"
    if isinstance(m, Joined):
        return f"* {m.nick} joined"
    if isinstance(m, Left):
        return f"* {m.nick} left ({m.reason})"
    if isinstance(m, Welcome):
        return f"* welcome {m.nick}; online: {_online(m.users, m.more)}"
    if isinstance(m, Users):
        return f"* online: {_online(m.users, m.more)}"
    if isinstance(m, Error):
        return f"! {m.code}: {m.detail}"
    if isinstance(m, Bye):
        return "* bye"
    return None  # ping/pong: the heartbeat runs by itself


_STYLE = {
    Msg: "",
    Joined: "ansigreen",
    Left: "ansiyellow",
    Welcome: "ansigreen",
    Users: "ansicyan",
    Error: "ansired bold",
    Bye: "ansiyellow",
}


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Read stdin in a daemon thread (works for pipes, files and terminals alike)."""

    def run() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\r\n"))
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=run, name="stdin", daemon=True).start()


async def _send_line(client: ChatClient, line: str) -> bool:
    """Act on one input line; False means quit."""
    if line == "/quit":
        return False
    if line == "/who":
        await client.send(Who())
    elif line == "/to" or line.startswith("/to "):
        to, _, text = line[3:].strip().partition(" ")
        if not to or not text.strip():
            # Sent on, this would only come back as bad-text (or as a broadcast of "/to").
            sys.stderr.write("synack: usage: /to NICK TEXT\n")
            sys.stderr.flush()
        else:
            await client.say(text, to=to)
    elif line.strip():  # a blank line is nothing to say
        await client.say(line)
    return True


def _refused(exc: ChatError) -> int:
    sys.stderr.write(f"synack: the server refused: {exc}\n")
    return 1


def _join(args: argparse.Namespace) -> int:
    try:
        if sys.stdin.isatty() and sys.stdout.isatty() and not args.json:
            return asyncio.run(_join_tty(args))
        return asyncio.run(_join_lines(args))
    except ChatError as exc:
        return _refused(exc)


async def _join_lines(args: argparse.Namespace) -> int:
    client = await _open(args)
    out = sys.stdout
    as_json: bool = args.json
    said_bye = False

    def show(ev: RawEvent) -> None:
        if as_json:
            out.write(ev.raw.decode() + "\n")
        elif (line := describe(ev.message)) is not None:
            out.write(line + "\n")
        out.flush()

    show(RawEvent(client.welcome, client.welcome_raw))

    async def printer() -> None:
        while (ev := await client.next_raw()) is not None:
            show(ev)

    printing = asyncio.create_task(printer())
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    _stdin_lines(asyncio.get_running_loop(), lines)
    getting: asyncio.Task[str | None] | None = None
    try:
        while not client.closed:
            getting = asyncio.ensure_future(lines.get())
            done, _ = await asyncio.wait({getting, printing}, return_when=asyncio.FIRST_COMPLETED)
            if getting not in done:
                break  # the server closed the connection
            line = getting.result()
            getting = None
            if line is None or not await _send_line(client, line):
                break
        said_bye = not client.closed
        await client.bye()
    finally:
        if getting is not None:
            getting.cancel()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(printing, 5)
    if not said_bye and not client.bye_received:
        sys.stderr.write("synack: the server closed the connection\n")
        return 1
    return 0


async def _join_tty(args: argparse.Namespace) -> int:
    from prompt_toolkit import PromptSession, print_formatted_text
    from prompt_toolkit.formatted_text import FormattedText
    from prompt_toolkit.patch_stdout import patch_stdout

    client = await _open(args)
    me = client.nick

    def show(m: ServerMessage) -> None:
        if isinstance(m, Msg):
            who_style = "ansicyan bold" if m.from_ != me else "ansiblue bold"
            parts = [("ansibrightblack", f"{_clock(m.ts)} "), (who_style, m.from_)]
            if m.to is not None:
                parts.append(("ansimagenta", f" -> {m.to}"))
            parts.append(("", f": {m.text}"))
            print_formatted_text(FormattedText(parts))
        elif (line := describe(m)) is not None:
            print_formatted_text(FormattedText([(_STYLE.get(type(m), ""), line)]))

    show(client.welcome)
    session: PromptSession[str] = PromptSession()
    with patch_stdout(raw=True):

        async def printer() -> None:
            async for m in client.events():
                if not isinstance(m, (Ping, Pong)):
                    show(m)

        printing = asyncio.create_task(printer())
        try:
            while not client.closed:
                prompting = asyncio.ensure_future(session.prompt_async(f"{me}> "))
                done, _ = await asyncio.wait(
                    {prompting, printing}, return_when=asyncio.FIRST_COMPLETED
                )
                if prompting not in done:
                    prompting.cancel()
                    break
                try:
                    line = prompting.result()
                except (EOFError, KeyboardInterrupt):
                    break
                if not await _send_line(client, line.strip()):
                    break
        finally:
            await client.bye()
            printing.cancel()
    return 0


def _say(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_say_async(args))
    except ChatError as exc:
        return _refused(exc)


async def _say_async(args: argparse.Namespace) -> int:
    if not args.text:
        raise UsageError("nothing to say: TEXT is empty")
    client = await _open(args)
    await client.say(args.text, to=args.to)
    # A ping round trip: every reply to the say has arrived once the pong has.
    await client.ping(timeout=10)
    status = 0
    while True:
        try:
            m = await client.next_event(timeout=0)
        except TimeoutError:
            break
        if isinstance(m, Error):
            sys.stderr.write(f"synack: {m.code}: {m.detail}\n")
            status = 1
        if m is None:
            break
    await client.bye()
    return status
