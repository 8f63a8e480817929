"""``synack chat serve | join | say`` (docs/protocol.md §5).

Layer: cli. May import every other package; nothing imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from synack.apps.chat.broker import ClusterUnavailable
from synack.apps.chat.client import ChatClient, ChatError, RawEvent
from synack.apps.chat.messages import (
    Bye,
    Error,
    Joined,
    Left,
    Msg,
    Ping,
    Pong,
    Replayed,
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
from synack.core.printable import escape, is_unsafe
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
        "--max-per-host",
        type=int,
        default=4_096,
        metavar="N",
        help="connections at once from one host (default 4096)",
    )
    serve.add_argument(
        "--hello-timeout",
        type=cliargs.seconds,
        default=10.0,
        metavar="S",
        help="disconnect a connection that has not said hello after S seconds (default 10)",
    )
    serve.add_argument(
        "--max-queue",
        type=int,
        default=1 << 20,
        metavar="BYTES",
        help="output held for a slow reader before it is dropped (default 1 MiB)",
    )
    serve.add_argument(
        "--history",
        type=int,
        default=0,
        metavar="N",
        help="replay the last N broadcasts to each client after welcome (default 0: off)",
    )
    serve.add_argument(
        "--redis",
        metavar="URL",
        help="share one chat with every server on this Redis: redis://HOST:PORT[/DB]",
    )
    serve.add_argument(
        "--node", metavar="NAME", help="this server's name in the cluster (default HOST-PID)"
    )
    serve.add_argument(
        "--presence-ttl",
        type=cliargs.seconds,
        default=None,
        metavar="S",
        help="a node silent this long is gone and its users left (default 10)",
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
            max_per_host=args.max_per_host,
            hello_timeout=args.hello_timeout,
            max_queue=args.max_queue,
            history=args.history,
        )
    except LocalProtocolError as exc:
        raise UsageError(str(exc)) from None
    if args.redis is None and (args.node is not None or args.presence_ttl is not None):
        raise UsageError("--node and --presence-ttl need --redis")
    return asyncio.run(_serve_async(config, args.host, args.port, args))


async def _cluster(config: ChatConfig, args: argparse.Namespace) -> Any:
    """The Redis engine, connected; a user mistake or an unreachable Redis is a UsageError."""
    if args.redis is None:
        return None
    if not args.redis.startswith(("redis://", "rediss://", "unix://")):
        raise UsageError(f"--redis wants redis://HOST:PORT[/DB], not {args.redis!r}")
    if args.node is not None and (why := check_nick(args.node)) is not None:
        # A node's name follows the nick rule: it names Redis keys and shows in logs.
        raise UsageError(f"bad node name {args.node!r}: {why.replace('a nick', 'a name')}")
    try:
        # Deferred: the redis client is only needed (and only installed, see the `cluster`
        # extra) for a chat spread over several servers.
        from synack.apps.chat.redis_broker import RedisBroker
    except ImportError:
        raise UsageError("--redis needs the redis client: pip install 'synack[cluster]'") from None
    try:
        broker = RedisBroker(
            args.redis,
            args.node,
            presence_ttl=10.0 if args.presence_ttl is None else args.presence_ttl,
            history=config.history,
        )
        await broker.connect()
    except (ClusterUnavailable, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return broker


async def _serve_async(config: ChatConfig, host: str, port: int, args: argparse.Namespace) -> int:
    cluster = await _cluster(config, args)
    with cliargs.stop_on_signals() as stop:
        server = ChatServer(config, cluster=cluster)
        try:
            await server.start(host, port)
        except ClusterUnavailable as exc:
            raise UsageError(str(exc)) from None
        for address in server.addresses:
            announce(address, "chat")  # the §5 line; [::1]:PORT for IPv6, like the other servers
        try:
            await stop.wait()
        finally:
            # Bounded: bye to everyone, then abort whoever does not read
            # (the process exits within 2 s of the signal, issue 14).
            await server.stop(timeout=1.0)
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


def json_line(raw: bytes | bytearray) -> str:
    """A server payload as one safe line: as received, or (when it carries a
    raw C1, bidi or other unsafe character that JSON allows unescaped, or a
    line break) re-encoded with JSON's own escapes."""
    text = bytes(raw).decode("utf-8", "replace")
    if any(is_unsafe(c) for c in text):
        try:
            return json.dumps(json.loads(text))
        except ValueError:
            return escape(text)
    return text


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def _online(users: list[str], more: int) -> str:
    return ", ".join(map(escape, users)) + (f" and {more} more" if more else "")


def describe(m: ServerMessage) -> str | None:
    """One plain line for a server message (None: not worth a line).

    Every string from the network goes through ``escape``: a newline or ESC
    in a message must not print a forged line or move the cursor (issue 14)."""
    if isinstance(m, Msg):
        where = f" -> {escape(m.to)}" if m.to is not None else ""
        # A replayed message (§2a) says so: it was said before this client joined.
        was = " (earlier)" if isinstance(m, Replayed) and m.history else ""
        return f"[{_clock(m.ts)}] #{m.id}{was} {escape(m.from_)}{where}: {escape(m.text)}"
    if isinstance(m, Joined):
        return f"* {escape(m.nick)} joined"
    if isinstance(m, Left):
        return f"* {escape(m.nick)} left ({escape(m.reason)})"
    if isinstance(m, Welcome):
        return f"* welcome {escape(m.nick)}; online: {_online(m.users, m.more)}"
    if isinstance(m, Users):
        return f"* online: {_online(m.users, m.more)}"
    if isinstance(m, Error):
        return f"! {escape(m.code)}: {escape(m.detail)}"
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

    def put(item: str | None) -> None:
        line = item.rstrip("\r\n") if item is not None else None
        loop.call_soon_threadsafe(queue.put_nowait, line)

    cliargs.stdin_lines(put)


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
    sys.stderr.write(f"synack: the server refused: {escape(str(exc))}\n")
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
            out.write(json_line(ev.raw) + "\n")
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
            parts = [("ansibrightblack", f"{_clock(m.ts)} "), (who_style, escape(m.from_))]
            if m.to is not None:
                parts.append(("ansimagenta", f" -> {escape(m.to)}"))
            parts.append(("", f": {escape(m.text)}"))
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
            sys.stderr.write(f"synack: {escape(m.code)}: {escape(m.detail)}\n")
            status = 1
        if m is None:
            break
    await client.bye()
    return status
