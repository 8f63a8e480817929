"""A minimal chat peer written from PROTOCOLS.md alone (struct + json + asyncio
streams), so the server is tested against something that shares none of its code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from synack.apps.chat import ChatConfig, ChatServer

TIMEOUT = 10.0

# Every peer a test opens, so that run_with_server closes them all (no socket left to the GC).
_opened: list[Peer] = []


class Peer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.nick: str | None = None

    @classmethod
    async def open(cls, port: int) -> Peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        peer = cls(reader, writer)
        _opened.append(peer)
        return peer

    def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)

    def send_payload(self, payload: bytes) -> None:
        self.writer.write(struct.pack(">I", len(payload)) + payload)

    def send(self, **obj: Any) -> None:
        self.send_payload(json.dumps(obj).encode())

    async def drain(self) -> None:
        await self.writer.drain()

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any] | None:
        """The next message, or None at a clean end of stream."""
        try:
            header = await asyncio.wait_for(self.reader.readexactly(4), timeout)
        except asyncio.IncompleteReadError as exc:
            assert exc.partial == b"", "stream ended inside a header"
            return None
        (n,) = struct.unpack(">I", header)
        payload = await asyncio.wait_for(self.reader.readexactly(n), timeout)
        obj = json.loads(payload.decode("utf-8"))
        assert isinstance(obj, dict) and "type" in obj
        return obj

    async def expect(self, type_: str, timeout: float = TIMEOUT, **members: Any) -> dict[str, Any]:
        """Skip heartbeats; the next other message must have this type (and members)."""
        while True:
            m = await self.recv(timeout)
            assert m is not None, f"connection closed while waiting for {type_}"
            if m["type"] == "ping" and type_ != "ping":
                self.send(type="pong")
                continue
            assert m["type"] == type_, m
            for k, v in members.items():
                assert m.get(k) == v, (k, m)
            return m

    async def until(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT
    ) -> list[dict[str, Any]]:
        """Every message up to and including the first that satisfies ``pred``."""
        seen = []
        while True:
            m = await self.recv(timeout)
            assert m is not None, f"closed; saw {seen[-3:]}"
            seen.append(m)
            if pred(m):
                return seen

    async def closed(self, timeout: float = TIMEOUT) -> bool:
        """True once the server has closed the stream (after any pending messages)."""
        while True:
            try:
                m = await self.recv(timeout)
            except (ConnectionResetError, asyncio.IncompleteReadError):
                return True
            if m is None:
                return True

    async def hello(self, nick: str) -> dict[str, Any]:
        self.send(type="hello", nick=nick)
        self.nick = nick
        return await self.expect("welcome", nick=nick)

    def close(self) -> None:
        self.writer.close()


async def run_with_server(
    body: Callable[[ChatServer, int], Awaitable[None]], config: ChatConfig | None = None
) -> ChatServer:
    _opened.clear()  # peers of a test that ran without this helper belong to a closed loop
    server = ChatServer(config or ChatConfig())
    await server.start("127.0.0.1", 0)
    try:
        await asyncio.wait_for(body(server, server.addresses[0][1]), 30)
    finally:
        await server.stop()
        peers, _opened[:] = list(_opened), []
        for p in peers:
            p.writer.close()
        for p in peers:
            with contextlib.suppress(Exception):
                await p.writer.wait_closed()
    return server


async def registered(port: int, *nicks: str) -> list[Peer]:
    """Connect and register in order, each seeing the later ones join."""
    peers: list[Peer] = []
    for nick in nicks:
        p = await Peer.open(port)
        await p.hello(nick)
        for q in peers:
            await q.expect("joined", nick=nick)
        peers.append(p)
    return peers
