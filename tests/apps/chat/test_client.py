"""The async client API (``ChatClient``) against the real server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from synack.apps.chat import ChatClient, ChatConfig, ChatError, ChatServer
from synack.apps.chat.connection import ConnectionClosed, open_framed_connection
from synack.apps.chat.messages import Bye, Joined, Left, Msg, Ping

from .helpers import run_with_server


def test_connect_say_who_events_bye() -> None:
    async def body(server: ChatServer, port: int) -> None:
        async with ChatClient.connect("127.0.0.1", port, "ada") as ada:
            assert ada.welcome.users == ["ada"]
            async with ChatClient.connect("127.0.0.1", port, "bob") as bob:
                assert await ada.next_event(timeout=5) == Joined(nick="bob")
                await bob.say("hi ada", to="ada")
                await bob.say("hi all")
                assert sorted(await ada.who(timeout=5)) == ["ada", "bob"]
                got = []
                async for ev in ada.events():
                    got.append(ev)
                    if len(got) == 2:
                        break
                assert [(m.from_, m.text, m.to) for m in got if isinstance(m, Msg)] == [
                    ("bob", "hi ada", "ada"),
                    ("bob", "hi all", None),
                ]
                assert await bob.ping(timeout=5) >= 0
            assert await ada.next_event(timeout=5) == Left(nick="bob", reason="bye")
        assert ada.closed

    asyncio.run(run_with_server(body))


def test_refused_nick_raises() -> None:
    async def body(server: ChatServer, port: int) -> None:
        async with ChatClient.connect("127.0.0.1", port, "ada"):
            with pytest.raises(ChatError) as exc:
                await ChatClient.open("127.0.0.1", port, "ada")
            assert exc.value.code == "nick-taken"
            with pytest.raises(ChatError) as exc:
                await ChatClient.open("127.0.0.1", port, "no spaces")
            assert exc.value.code == "bad-nick"

    asyncio.run(run_with_server(body))


def test_heartbeat_is_answered_automatically() -> None:
    async def body(server: ChatServer, port: int) -> None:
        async with ChatClient.connect("127.0.0.1", port, "ada") as ada:
            pings = 0
            while pings < 4:  # four heartbeats: past the idle timeout, still online
                ev = await ada.next_event(timeout=5)
                assert not isinstance(ev, Bye) and ev is not None
                pings += isinstance(ev, Ping)
            assert await ada.who(timeout=5) == ["ada"]

    server = asyncio.run(run_with_server(body, ChatConfig(heartbeat=0.1, idle_timeout=0.35)))
    assert server.stats["timeout"] == 0


def test_events_end_when_the_server_stops() -> None:
    async def body() -> None:
        server = ChatServer()
        await server.start("127.0.0.1", 0)
        ada = await ChatClient.open("127.0.0.1", server.addresses[0][1], "ada")
        await server.stop()
        assert [ev async for ev in ada.events()] == [Bye()]
        assert ada.bye_received
        await ada.bye()  # harmless when already closed

    asyncio.run(body())


def test_injected_transport_factories() -> None:
    """Server and client take create_server/create_connection-shaped callables."""
    calls: list[str] = []

    async def body() -> None:
        loop = asyncio.get_running_loop()

        async def create_server(factory: Any, host: str, port: int) -> Any:
            calls.append(f"server {host}")
            return await loop.create_server(factory, host, port)

        async def create_connection(factory: Any, host: str, port: int) -> Any:
            calls.append(f"connect {port}")
            return await loop.create_connection(factory, host, port)

        server = ChatServer(create_server=create_server)
        await server.start("127.0.0.1", 0)
        port = server.addresses[0][1]
        async with ChatClient.connect(
            "127.0.0.1", port, "ada", create_connection=create_connection
        ) as c:
            await c.say("via injected transports")
            m = await c.next_event(timeout=5)
            assert isinstance(m, Msg) and m.text == "via injected transports"
        await server.stop()
        assert calls == ["server 127.0.0.1", f"connect {port}"]

    asyncio.run(body())


def test_framed_connection_round_trip() -> None:
    """The generic framed connection: batched sends, in-order receives, clean end."""

    async def body() -> None:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)
            writer.close()

        srv = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        conn = await open_framed_connection("127.0.0.1", port)
        payloads = [bytes([i % 256]) * (i * 37 % 70_000 if i % 5 else i) for i in range(200)]
        big = [p for p in payloads if len(p) <= 65_536]
        for p in big:
            conn.send(p)
        await conn.drain()
        got: list[bytes] = []
        while len(got) < len(big):
            got.extend(await conn.recv_batch())
        assert got == big
        conn.close()
        with pytest.raises(ConnectionClosed):
            await conn.recv()
        srv.close()

    asyncio.run(body())


def test_client_gives_up_on_a_silent_server() -> None:
    """A server that stops answering (no FIN, no RST) is noticed by the client's heartbeat."""
    import json
    import struct

    async def body() -> None:
        got: list[bytes] = []

        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            welcome = json.dumps({"type": "welcome", "nick": "ada", "users": ["ada"]}).encode()
            writer.write(struct.pack(">I", len(welcome)) + welcome)
            while data := await reader.read(1024):
                got.append(data)  # reads (so the client's ping arrives) but never answers

        srv = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        ada = await ChatClient.open("127.0.0.1", port, "ada", heartbeat=0.1)
        assert [ev async for ev in ada.events()] == []  # ends: the connection is given up
        assert ada.closed
        assert b'"ping"' in b"".join(got)  # it asked before giving up
        srv.close()

    asyncio.run(body())
