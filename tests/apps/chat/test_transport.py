"""The server on an in-memory transport: any transport provider will do, and the
per-turn merge of broadcasts and private messages is exact."""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

from synack.apps.chat import ChatConfig, ChatServer
from synack.apps.chat.connection import open_framed_connection
from synack.core.framing import FrameDecoder


class FakeTransport(asyncio.Transport):
    """Just the asyncio.Transport methods the brief allows, recording writes."""

    def __init__(self, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.out = bytearray()
        self.closing = False

    def write(self, data: Any) -> None:
        assert not self.closing
        self.out += data

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.1", 4242) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def messages(self) -> list[dict[str, Any]]:
        dec = FrameDecoder()
        dec.receive_data(bytes(self.out))
        self.out.clear()
        return [json.loads(f) for f in dec]


class FakeListener:
    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


def frame(**obj: Any) -> bytes:
    p = json.dumps(obj).encode()
    return struct.pack(">I", len(p)) + p


def test_server_runs_on_a_foreign_transport_and_merges_each_turn_exactly() -> None:
    async def body() -> None:
        factories: list[Any] = []

        async def create_server(factory: Any, host: str, port: int) -> FakeListener:
            factories.append(factory)
            return FakeListener()

        server = ChatServer(ChatConfig(), create_server=create_server)
        await server.start("192.0.2.1", 8898)
        (factory,) = factories

        def connect() -> tuple[Any, FakeTransport]:
            proto = factory()
            t = FakeTransport(proto)
            proto.connection_made(t)
            return proto, t

        ada, ta = connect()
        ada.data_received(frame(type="hello", nick="ada"))
        await asyncio.sleep(0)  # one loop turn: the flush
        assert [m["type"] for m in ta.messages()] == ["welcome"]

        # One loop turn: ada says something, bob registers, ada says more,
        # ada sends bob a direct message, bob asks who is online.
        ada.data_received(frame(type="say", text="before bob"))
        bob, tb = connect()
        bob.data_received(frame(type="hello", nick="bob"))
        ada.data_received(
            frame(type="say", text="after bob") + frame(type="say", text="psst", to="bob")
        )
        bob.data_received(frame(type="who") + frame(type="say", text="hi"))
        assert ta.out == tb.out == b""  # nothing is written before the end of the turn
        await asyncio.sleep(0)

        got_a = [
            (m["type"], m.get("text") or m.get("nick") or m.get("users")) for m in ta.messages()
        ]
        got_b = [
            (m["type"], m.get("text") or m.get("nick") or m.get("users")) for m in tb.messages()
        ]
        assert got_a == [
            ("msg", "before bob"),
            ("joined", "bob"),
            ("msg", "after bob"),
            ("msg", "psst"),
            ("msg", "hi"),
        ]
        assert got_b == [
            ("welcome", "bob"),  # nothing from before bob's registration
            ("msg", "after bob"),
            ("msg", "psst"),
            ("users", ["ada", "bob"]),
            ("msg", "hi"),
        ]

        bob.data_received(frame(type="bye"))
        await asyncio.sleep(0)
        assert [m["type"] for m in tb.messages()] == ["bye"]
        assert tb.closing
        await asyncio.sleep(0)
        assert ta.messages() == [{"type": "left", "nick": "bob", "reason": "bye"}]
        await server.stop()
        assert [m["type"] for m in ta.messages()] == ["bye"] and ta.closing

    asyncio.run(body())


class ReadRecorder(FakeTransport):
    def __init__(self, protocol: asyncio.BaseProtocol) -> None:
        super().__init__(protocol)
        self.reading: list[str] = []

    def pause_reading(self) -> None:
        self.reading.append("pause")

    def resume_reading(self) -> None:
        self.reading.append("resume")


def test_reading_pauses_while_the_application_lags_behind() -> None:
    """Read backpressure (QueueingProtocol, shared by FramedConnection and ChatClient):
    past max_queued unread frames the transport stops reading; at half, it resumes."""

    async def body() -> None:
        made: list[ReadRecorder] = []

        async def create_connection(factory: Any, host: str, port: int) -> Any:
            proto = factory()
            made.append(ReadRecorder(proto))
            proto.connection_made(made[0])
            return made[0], proto

        conn = await open_framed_connection(
            "192.0.2.1", 1, max_queued=4, create_connection=create_connection
        )
        (t,) = made
        proto: Any = t.protocol
        proto.data_received(b"".join(struct.pack(">I", 1) + bytes([i]) for i in range(4)))
        assert t.reading == []  # four waiting: at the bound, not past it
        proto.data_received(struct.pack(">I", 1) + b"\x04" + struct.pack(">I", 1) + b"\x05")
        assert t.reading == ["pause"]  # once, however far past
        assert [await conn.recv() for _ in range(3)] == [b"\x00", b"\x01", b"\x02"]
        assert t.reading == ["pause"]  # three still waiting: more than half
        assert await conn.recv() == b"\x03"
        assert t.reading == ["pause", "resume"]
        assert await conn.recv_batch() == [b"\x04", b"\x05"]
        assert t.reading == ["pause", "resume"]

    asyncio.run(body())
