"""A minimal chat peer written from docs/protocol.md alone (struct + json + asyncio
streams), so the server is tested against something that shares none of its code;
and ``Room``, the sans-IO room on a manual clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from synack.apps.chat import ChatConfig, ChatServer
from synack.apps.chat.core import ChatRoom, ClientState, Disconnect
from synack.core.framing import FrameDecoder

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


WALL = 1_700_000_000.0  # the Unix time the manual clock starts at


class Room:
    """A ``ChatRoom`` on a manual clock, driven as the asyncio adapter drives it: every
    input is followed by the end of its turn (``flush``) unless batched with ``turn``.
    What each client receives is decoded and kept, with the time it was sent."""

    def __init__(self, config: ChatConfig | None = None) -> None:
        self.room: ChatRoom[str] = ChatRoom(config or ChatConfig())
        self.now = 0.0
        # What each client received, with the time it was sent.
        self.inbox: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        self.gone: dict[str, Disconnect[str]] = {}
        self.frame_sizes: list[int] = []
        self._batch = 0

    # -- inputs --------------------------------------------------------------

    def connect(self, key: str) -> bool:
        self.inbox.setdefault(key, [])
        self.gone.pop(key, None)
        ok = self.room.connect(key, self.now, f"peer-{key}")
        self._end()
        return ok

    def raw(self, key: str, *payloads: bytes) -> None:
        self.room.receive(key, list(payloads), self.now, WALL + self.now)
        self._end()

    def send(self, key: str, **obj: Any) -> None:
        self.raw(key, json.dumps(obj).encode())

    def hello(self, key: str, nick: str | None = None) -> dict[str, Any]:
        """Register ``key`` as ``nick`` (default: the key), connecting it first if need be;
        returns its welcome."""
        if self.room.state(key) is ClientState.CLOSED:
            self.connect(key)
        self.send(key, type="hello", nick=nick or key)
        (welcome,) = self.take(key)
        assert welcome["type"] == "welcome", welcome
        return welcome

    def lost(self, key: str) -> None:
        self.room.connection_lost(key)
        self._end()

    @contextlib.contextmanager
    def turn(self) -> Any:
        """Inputs inside ``with room.turn():`` share one event-loop turn (one flush)."""
        self._batch += 1
        try:
            yield
        finally:
            self._batch -= 1
            self._end()

    def advance(self, seconds: float) -> None:
        """Let time pass, waking at each deadline the room asks for (as the one timer does)."""
        until = self.now + seconds
        while (at := self.room.get_timer()) is not None and at <= until:
            self.now = max(self.now, at)
            self.room.handle_timer(self.now)
            self._end()
        self.now = until

    # -- outputs -------------------------------------------------------------

    def _deliver(self, key: str, data: bytes) -> None:
        dec = FrameDecoder()
        dec.receive_data(data)
        for payload in dec:
            self.frame_sizes.append(len(payload))
            self.inbox[key].append((self.now, json.loads(payload)))

    def _end(self) -> None:
        if self._batch:
            return
        while True:  # a flush can start the next turn (`left` for a too-slow reader)
            for key, data in self.room.flush():
                assert key not in self.gone, f"{key} written to after its disconnect"
                self._deliver(key, data)
            for d in self.room.disconnects():
                assert d.client not in self.gone, f"{d.client} disconnected twice"
                self.gone[d.client] = d
                self._deliver(d.client, d.data)
            if not self.room.pending:
                break

    def take_timed(self, key: str) -> list[tuple[float, dict[str, Any]]]:
        """What ``key`` received since the last ``take``, with when."""
        got, self.inbox[key] = self.inbox[key], []
        return got

    def take(self, key: str) -> list[dict[str, Any]]:
        """What ``key`` received since the last ``take``."""
        return [m for _, m in self.take_timed(key)]

    def types(self, key: str) -> list[str]:
        return [m["type"] for m in self.take(key)]
