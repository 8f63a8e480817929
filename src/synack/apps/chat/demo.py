"""A scripted chat on loopback: one server, three clients, one process.

Printed as a conversation: who does what (▶) and what each client receives (◀),
including a direct message, the heartbeat (the server pings quiet clients, the
client library answers pong by itself), a ``who``, a goodbye and the server's
own ``bye`` when it stops. ``run_chat_demo`` is reusable as one stage of a
bigger tour.

Layer: apps. Imports chat.client, chat.messages, chat.server and rich.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape

from synack.apps.chat.client import ChatClient
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
)
from synack.apps.chat.server import ChatConfig, ChatServer

__all__ = ["run_chat_demo"]

_COLOURS = {"ada": "cyan", "bob": "magenta", "cleo": "green"}


def _who(nick: str, width: int = 5) -> str:
    return f"[bold {_COLOURS.get(nick, 'white')}]{nick:>{width}}[/]"


def _render(m: ServerMessage) -> str:
    if isinstance(m, Msg):
        to = f" → {_who(m.to, 0)}" if m.to else " → everyone"
        return f"msg #{m.id} from {_who(m.from_, 0)}{to}: [bold]{escape(m.text)}[/]"
    if isinstance(m, Welcome):
        return f"[green]welcome[/] {m.nick}, online: {', '.join(m.users)}"
    if isinstance(m, Joined):
        return f"[green]joined[/] {m.nick}"
    if isinstance(m, Left):
        return f"[yellow]left[/] {m.nick} ({m.reason})"
    if isinstance(m, Users):
        return f"[cyan]users[/] {', '.join(m.users)}"
    if isinstance(m, Ping):
        return "[dim]ping (heartbeat) → the client answers pong by itself[/]"
    if isinstance(m, Pong):
        return "[dim]pong[/]"
    if isinstance(m, Error):
        return f"[red]error {m.code}[/]: {escape(m.detail)}"
    if isinstance(m, Bye):
        return "[yellow]bye[/] (connection closes)"
    return escape(repr(m))


async def run_chat_demo(
    console: Console | None = None,
    *,
    heartbeat: float = 1.0,
    timeout: float = 5.0,
) -> dict[str, int]:
    """Run the scripted chat; returns the server's counters. Takes about 2 s."""
    con = console or Console()
    start = time.monotonic()

    def say(line: str) -> None:
        con.print(f"[dim]{time.monotonic() - start:5.2f}s[/] {line}")

    async def expect(c: ChatClient, done: Callable[[ServerMessage], bool]) -> None:
        """Print what ``c`` receives until a message satisfies ``done``."""
        while True:
            m = await c.next_event(timeout=timeout)
            if m is None:
                say(f"{_who(c.nick)} ◀ [dim](connection closed)[/]")
                return
            say(f"{_who(c.nick)} ◀ {_render(m)}")
            if done(m):
                return

    con.rule("[bold]synack chat: a framed TCP chat on loopback[/]")
    server = ChatServer(ChatConfig(heartbeat=heartbeat, idle_timeout=heartbeat * 10))
    await server.start("127.0.0.1", 0)
    host, port = server.addresses[0]
    say(f"[bold]server[/] listening on {host}:{port} (heartbeat {heartbeat:g} s)")
    clients: dict[str, ChatClient] = {}
    try:
        for nick in ("ada", "bob", "cleo"):
            say(f"{_who(nick)} ▶ connects, sends hello")
            c = await ChatClient.open(host, port, nick, timeout=timeout)
            say(f"{_who(nick)} ◀ {_render(c.welcome)}")

            def joined(m: ServerMessage, n: str = nick) -> bool:
                return isinstance(m, Joined) and m.nick == n

            for other in clients.values():
                await expect(other, joined)
            clients[nick] = c
        ada, bob, cleo = clients["ada"], clients["bob"], clients["cleo"]

        say(f"{_who('ada')} ▶ say 'hello, everyone'  [dim](broadcast)[/]")
        await ada.say("hello, everyone")
        for c in (ada, bob, cleo):
            await expect(c, lambda m: isinstance(m, Msg))

        say(f"{_who('bob')} ▶ say 'psst, cleo: lunch?' to cleo  [dim](direct message)[/]")
        await bob.say("psst, cleo: lunch?", to="cleo")
        for c in (bob, cleo):
            await expect(c, lambda m: isinstance(m, Msg))

        say(f"{_who('cleo')} ▶ who")
        users = await cleo.who(timeout=timeout)
        say(f"{_who('cleo')} ◀ {_render(Users(users=users))}")

        say("[dim]everyone stays quiet for a moment: the server checks they are alive[/]")
        await expect(ada, lambda m: isinstance(m, Ping))
        rtt = await ada.ping(timeout=timeout)
        say(f"{_who('ada')} ▶ ping  ◀ pong after {rtt * 1000:.2f} ms")

        say(f"{_who('cleo')} ▶ say 'sure, bob!' to bob")
        await cleo.say("sure, bob!", to="bob")
        await expect(bob, lambda m: isinstance(m, Msg))

        say(f"{_who('bob')} ▶ bye")
        await bob.bye(timeout=timeout)
        say(f"{_who('bob')} ◀ {_render(Bye())}")
        for c in (ada, cleo):
            await expect(c, lambda m: isinstance(m, Left))

        say("[bold]server[/] stops: it tells everyone still online bye")
        await server.stop()
        for c in (ada, cleo):
            await expect(c, lambda m: isinstance(m, Bye))
    finally:
        for c in clients.values():
            c.abort()
        await server.stop()
    stats = dict(server.stats)
    con.rule(
        f"[dim]{stats.get('registered', 0)} registrations, {stats.get('messages', 0)} "
        f"messages, {stats.get('frames', 0)} frames received by the server[/]"
    )
    return stats
