"""The asyncio server end to end on real sockets: framing (§1) on the wire, the one
timer, flow control, stop. The rules themselves are checked on a manual clock, against
the sans-IO room, in test_rules.py."""

from __future__ import annotations

import asyncio
import json
import socket
import struct

import pytest

from synack.apps.chat import ChatConfig, ChatServer

from .helpers import Peer, registered, run_with_server


def test_register_broadcast_direct_who_ping_bye() -> None:
    async def body(server: ChatServer, port: int) -> None:
        ada, bob, cleo = await registered(port, "ada", "bob", "cleo")
        ada.send(type="say", text="hi all")
        msgs = [await p.expect("msg") for p in (ada, bob, cleo)]
        assert all(m == msgs[0] for m in msgs)  # encoded once, identical everywhere
        m = msgs[0]
        assert (m["from"], m["text"], m["to"]) == ("ada", "hi all", None)
        assert isinstance(m["id"], int) and isinstance(m["ts"], float)

        bob.send(type="say", text="psst", to="cleo")
        for p in (bob, cleo):
            d = await p.expect("msg", **{"from": "bob", "to": "cleo", "text": "psst"})
            assert d["id"] > m["id"]
        ada.send(type="who")  # ada must not have seen the direct message
        assert (await ada.expect("users"))["users"] == ["ada", "bob", "cleo"]

        cleo.send(type="say", text="note to self", to="cleo")
        await cleo.expect("msg", text="note to self", to="cleo")  # once, not twice
        cleo.send(type="ping")
        await cleo.expect("pong")

        bob.send(type="bye")
        await bob.expect("bye")
        assert await bob.closed()
        for p in (ada, cleo):
            await p.expect("left", nick="bob", reason="bye")
        ada.send(type="who")
        assert (await ada.expect("users"))["users"] == ["ada", "cleo"]

    server = asyncio.run(run_with_server(body))
    assert server.stats["messages"] == 3


def test_frame_too_large_closes_and_is_announced() -> None:
    async def body(server: ChatServer, port: int) -> None:
        ada, bob = await registered(port, "ada", "bob")
        ada.send_payload(json.dumps({"type": "say", "text": "x" * 200}).encode())
        await ada.expect("error", code="frame-too-large")
        assert await ada.closed()
        await bob.expect("left", nick="ada", reason="error")

    asyncio.run(run_with_server(body, ChatConfig(max_frame=100)))


def test_four_gib_length_header() -> None:
    async def body(server: ChatServer, port: int) -> None:
        ada, bob = await registered(port, "ada", "bob")
        ada.send_bytes(b"\xff\xff\xff\xff" + b"A" * 64)
        err = await ada.expect("error", code="frame-too-large")
        assert "4294967295" in err["detail"]
        assert await ada.closed()
        await bob.expect("left", nick="ada", reason="error")
        bob.send(type="say", text="unaffected")
        await bob.expect("msg", text="unaffected")

    server = asyncio.run(run_with_server(body))
    assert server.stats["frame-too-large"] == 1


def test_frame_sent_one_byte_at_a_time() -> None:
    async def body(server: ChatServer, port: int) -> None:
        (bob,) = await registered(port, "bob")
        ada = await Peer.open(port)
        hello = json.dumps({"type": "hello", "nick": "ada"}).encode()
        say = json.dumps({"type": "say", "text": "slowly"}).encode()
        stream = struct.pack(">I", len(hello)) + hello + struct.pack(">I", len(say)) + say
        for i in range(len(stream)):
            ada.send_bytes(stream[i : i + 1])
            await ada.drain()
            await asyncio.sleep(0.001)  # separate segments, not one coalesced write
        await ada.expect("welcome")
        await ada.expect("msg", text="slowly")
        await bob.expect("joined", nick="ada")
        await bob.expect("msg", text="slowly")

    asyncio.run(run_with_server(body))


def test_many_frames_in_one_write() -> None:
    async def body(server: ChatServer, port: int) -> None:
        ada, bob = await registered(port, "ada", "bob")
        blob = b"".join(
            struct.pack(">I", len(p)) + p
            for p in (json.dumps({"type": "say", "text": f"n{i}"}).encode() for i in range(50))
        )
        ada.send_bytes(blob)
        seen = await bob.until(lambda m: m.get("text") == "n49")
        assert [m["text"] for m in seen] == [f"n{i}" for i in range(50)]

    asyncio.run(run_with_server(body))


@pytest.mark.parametrize("rst", [False, True])
def test_client_killed_mid_frame(rst: bool) -> None:
    async def body(server: ChatServer, port: int) -> None:
        ada, bob = await registered(port, "ada", "bob")
        ada.send_bytes(struct.pack(">I", 100) + b'{"type": "sa')
        await ada.drain()
        await asyncio.sleep(0.05)
        sock = ada.writer.get_extra_info("socket")
        if rst:  # an abrupt reset instead of an orderly FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ada.writer.transport.abort() if rst else ada.writer.close()
        await bob.expect("left", nick="ada", reason="disconnected")
        bob.send(type="who")
        assert (await bob.expect("users"))["users"] == ["bob"]

    server = asyncio.run(run_with_server(body))
    if not rst:
        assert server.stats["truncated"] == 1


def test_unregistered_idle_connection_is_closed() -> None:
    async def body(server: ChatServer, port: int) -> None:
        p = await Peer.open(port)
        seen = await p.until(lambda m: m["type"] == "error")
        assert seen[0]["type"] == "ping" and {m["type"] for m in seen[:-1]} == {"ping"}
        assert seen[-1]["code"] == "timeout"
        assert await p.closed()

    asyncio.run(run_with_server(body, ChatConfig(heartbeat=0.1, idle_timeout=0.3)))


def test_max_clients() -> None:
    async def body(server: ChatServer, port: int) -> None:
        await registered(port, "a", "b")
        extra = await Peer.open(port)
        await extra.expect("error", code="server-full")
        assert await extra.closed()

    asyncio.run(run_with_server(body, ChatConfig(max_clients=2)))


def test_stop_tells_everyone_bye() -> None:
    async def body() -> None:
        server = ChatServer(ChatConfig())
        await server.start("127.0.0.1", 0)
        port = server.addresses[0][1]
        ada, bob = await registered(port, "ada", "bob")
        lurker = await Peer.open(port)  # connected, never registered
        await server.stop()
        for p in (ada, bob, lurker):
            await p.expect("bye")
            assert await p.closed()
        with pytest.raises(OSError):
            await Peer.open(port)

    asyncio.run(body())


def test_a_client_that_never_reads_is_dropped_as_too_slow() -> None:
    async def body(server: ChatServer, port: int) -> None:
        talker, obs = await registered(port, "talker", "obs")
        # The slow client: a tiny receive buffer, registers, then never reads.
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(slow, ("127.0.0.1", port))
        hello = json.dumps({"type": "hello", "nick": "slow"}).encode()
        await loop.sock_sendall(slow, struct.pack(">I", len(hello)) + hello)
        await talker.expect("joined", nick="slow")
        await obs.expect("joined", nick="slow")

        received: dict[str, list[int]] = {"talker": [], "obs": []}
        slow_left = asyncio.Event()

        async def read(p: Peer, name: str) -> None:
            while (m := await p.recv()) is not None:
                if m["type"] == "msg":
                    received[name].append(m["id"])
                elif m["type"] == "left" and m["nick"] == "slow":
                    assert m["reason"] == "too-slow"
                    slow_left.set()
                elif m["type"] == "ping":
                    p.send(type="pong")

        readers = [
            asyncio.create_task(read(talker, "talker")),
            asyncio.create_task(read(obs, "obs")),
        ]
        text = "y" * 4000
        sent = 0
        for _ in range(5000):  # bounded: at most 20 MB, far beyond any socket buffer
            for _ in range(20):
                talker.send(type="say", text=text)
            sent += 20
            await talker.drain()
            await asyncio.sleep(0.002)
            if slow_left.is_set():
                break
        assert slow_left.is_set(), "the slow client was never dropped"
        talker.send(type="say", text="after")
        sent += 1
        async with asyncio.timeout(20):
            while len(received["obs"]) < sent or len(received["talker"]) < sent:
                await asyncio.sleep(0.01)
        # Nothing lost or reordered for the clients that read.
        assert received["obs"] == received["talker"] == list(range(1, sent + 1))
        for r in readers:
            r.cancel()
        slow.close()

    server = asyncio.run(run_with_server(body, ChatConfig(rate=0, max_queue=64 * 1024)))
    assert server.stats["too-slow"] == 1
