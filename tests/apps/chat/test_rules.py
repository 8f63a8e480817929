"""Every rule and error code of PROTOCOLS.md §2, checked on the wire."""

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


def test_welcome_lists_everyone_and_unknown_members_are_ignored() -> None:
    async def body(server: ChatServer, port: int) -> None:
        (ada,) = await registered(port, "ada")
        bob = await Peer.open(port)
        bob.send(type="hello", nick="bob", colour="blue", version=[1, 2])
        w = await bob.expect("welcome")
        assert w["users"] == ["ada", "bob"]
        await ada.expect("joined", nick="bob")

    asyncio.run(run_with_server(body))


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'"hello"',
        b"{}",
        b'{"type": "dance"}',
        b'{"type": 7}',
        b'{"type": "say", "text": 5}',
        b'{"type": "say"}',
        b'{"type": "say", "text": "x", "to": 3}',
        b'{"type": "hello", "nick": null}',
        b"",
    ],
)
def test_bad_message_keeps_the_connection(payload: bytes) -> None:
    async def body(server: ChatServer, port: int) -> None:
        (ada,) = await registered(port, "ada")
        ada.send_payload(payload)
        await ada.expect("error", code="bad-message")
        ada.send(type="say", text="still here")
        await ada.expect("msg", text="still here")

    asyncio.run(run_with_server(body))


def test_not_registered() -> None:
    async def body(server: ChatServer, port: int) -> None:
        p = await Peer.open(port)
        for t in ({"type": "say", "text": "x"}, {"type": "who"}):
            p.send(**t)
            await p.expect("error", code="not-registered")
        p.send(type="ping")  # allowed before hello
        await p.expect("pong")
        p.send(type="pong")
        await p.hello("late")

    asyncio.run(run_with_server(body))


@pytest.mark.parametrize("nick", ["", "x" * 33, "a b", "tab\t", "dot.ted", "émoji🙂"])
def test_bad_nick(nick: str) -> None:
    async def body(server: ChatServer, port: int) -> None:
        p = await Peer.open(port)
        p.send(type="hello", nick=nick)
        await p.expect("error", code="bad-nick")
        await p.hello("fine")  # the connection stays open

    asyncio.run(run_with_server(body))


@pytest.mark.parametrize("nick", ["a", "x" * 32, "Zoë", "李雷", "r2-d2_", "٣"])
def test_good_nick(nick: str) -> None:
    async def body(server: ChatServer, port: int) -> None:
        p = await Peer.open(port)
        await p.hello(nick)

    asyncio.run(run_with_server(body))


def test_nick_taken_and_free_again_after_leaving() -> None:
    async def body(server: ChatServer, port: int) -> None:
        (ada,) = await registered(port, "ada")
        other = await Peer.open(port)
        other.send(type="hello", nick="ada")
        await other.expect("error", code="nick-taken")
        other.send(type="hello", nick="ada2")
        await other.expect("welcome")
        await ada.expect("joined", nick="ada2")
        ada.send(type="hello", nick="ada3")  # a second hello is refused
        await ada.expect("error", code="bad-message")
        ada.send(type="bye")
        await ada.expect("bye")
        third = await Peer.open(port)
        await third.hello("ada")

    asyncio.run(run_with_server(body))


@pytest.mark.parametrize("text", ["", "x" * 4097])
def test_bad_text(text: str) -> None:
    async def body(server: ChatServer, port: int) -> None:
        ada, bob = await registered(port, "ada", "bob")
        ada.send(type="say", text=text)
        await ada.expect("error", code="bad-text")
        ada.send(type="say", text="x" * 4096)  # the limit itself is fine
        await ada.expect("msg")
        m = await bob.expect("msg")
        assert len(m["text"]) == 4096

    asyncio.run(run_with_server(body))


@pytest.mark.parametrize("member", ["nick", "text"])
def test_lone_surrogate_is_refused(member: str) -> None:
    async def body(server: ChatServer, port: int) -> None:
        (ada,) = await registered(port, "ada")
        msg = {"type": "hello" if member == "nick" else "say", member: "a\ud800b"}
        ada.send(**msg)  # json.dumps writes the escape \ud800: not valid Unicode text
        err = await ada.expect("error")
        assert err["code"] in ("bad-message", "bad-nick", "bad-text")
        ada.send(type="say", text="ok")
        await ada.expect("msg", text="ok")

    asyncio.run(run_with_server(body))


def test_no_such_user() -> None:
    async def body(server: ChatServer, port: int) -> None:
        (ada,) = await registered(port, "ada")
        ada.send(type="say", text="hello?", to="nobody")
        await ada.expect("error", code="no-such-user")

    asyncio.run(run_with_server(body))


def test_rate_limited_drops_only_the_excess() -> None:
    async def body(server: ChatServer, port: int) -> None:
        ada, bob = await registered(port, "ada", "bob")
        for i in range(5):
            ada.send(type="say", text=f"m{i}")
        got = await ada.until(lambda m: m["type"] == "error")
        assert got[-1]["code"] == "rate-limited"
        texts = [m["text"] for m in got if m["type"] == "msg"]
        assert texts == ["m0", "m1", "m2"]
        seen = await bob.until(lambda m: m.get("text") == "m2")
        assert [m["text"] for m in seen] == ["m0", "m1", "m2"]

    # A very slow refill: three messages of burst, then nothing within the test.
    server = asyncio.run(run_with_server(body, ChatConfig(rate=0.01, burst=3)))
    assert server.stats["rate-limited"] == 2


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


def test_heartbeat_and_idle_timeout() -> None:
    async def body(server: ChatServer, port: int) -> None:
        live, quiet, obs = await registered(port, "live", "quiet", "obs")

        async def answer_pings() -> None:
            while (m := await live.recv()) is not None and m["type"] != "bye":
                if m["type"] == "ping":
                    live.send(type="pong")

        answering = asyncio.create_task(answer_pings())

        # obs keeps talking, so only `quiet` goes silent.
        async def chatter() -> None:
            while True:
                obs.send(type="ping")
                await asyncio.sleep(0.05)

        talking = asyncio.create_task(chatter())
        # `quiet` never answers: heartbeat pings first, then the idle timeout.
        seen = await quiet.until(lambda m: m["type"] == "error")
        assert seen[0]["type"] == "ping"
        assert {m["type"] for m in seen[:-1]} == {"ping"}
        assert seen[-1]["code"] == "timeout" and seen[-1]["detail"]
        assert await quiet.closed()
        left = await obs.until(lambda m: m["type"] == "left")
        assert (left[-1]["nick"], left[-1]["reason"]) == ("quiet", "timeout")
        talking.cancel()
        obs.send(type="who")
        users = (await obs.until(lambda m: m["type"] == "users"))[-1]["users"]
        assert users == ["live", "obs"]  # answering pings kept `live` online
        answering.cancel()

    server = asyncio.run(run_with_server(body, ChatConfig(heartbeat=0.15, idle_timeout=0.6)))
    assert server.stats["timeout"] == 1


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


def test_direct_and_broadcast_interleaved_keep_both_orders() -> None:
    async def body(server: ChatServer, port: int) -> None:
        ada, bob, cleo = await registered(port, "ada", "bob", "cleo")
        plan = [(f"m{i}", "bob" if i % 3 == 0 else None) for i in range(60)]
        blob = b"".join(
            struct.pack(">I", len(p)) + p
            for p in (json.dumps({"type": "say", "text": t, "to": to}).encode() for t, to in plan)
        )
        ada.send_bytes(blob)  # one write: many frames, handled in one loop turn
        expect_bob = [t for t, _ in plan]
        expect_cleo = [t for t, to in plan if to is None]
        for p, want in ((ada, expect_bob), (bob, expect_bob), (cleo, expect_cleo)):
            got = await p.until(lambda m, last=want[-1]: m.get("text") == last)
            msgs = [m for m in got if m["type"] == "msg"]
            assert [m["text"] for m in msgs] == want  # the sender's order
            ids = [m["id"] for m in msgs]
            assert ids == sorted(ids)  # increasing id order
            assert all(m["to"] == ("bob" if int(m["text"][1:]) % 3 == 0 else None) for m in msgs)

    asyncio.run(run_with_server(body, ChatConfig(rate=0)))


def test_user_lists_never_exceed_the_clients_max_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nicks of 32 four-byte letters: 160 of them are a 21 KB list. A client accepts frames up to
    # its max_frame (§1, 65,536 by default), so a room bigger than a frame must not lock every
    # newcomer out: `welcome` and `users` list who fits (the newcomer first) and count the rest.
    limit = 20_000
    nicks = [chr(0x1D400 + i % 26) * 31 + chr(0x1D41A + i // 26) for i in range(160)]

    async def body(server: ChatServer, port: int) -> None:
        peers = []
        welcomes = []
        for nick in nicks:
            p = await Peer.open(port)
            welcomes.append(await p.hello(nick))
            peers.append(p)
        last = welcomes[-1]
        assert last["users"][0] == nicks[-1]
        assert len(last["users"]) + last["more"] == len(nicks)
        assert last["more"] > 0
        assert "more" not in welcomes[0]  # a list that fits is whole, as before
        peers[0].send(type="who")
        users = await peers[0].until(lambda m: m["type"] == "users")
        listed = users[-1]
        assert listed["users"][0] == nicks[0] and listed["more"] > 0
        assert len(set(listed["users"])) + listed["more"] == len(nicks)
        for p in peers:
            p.close()

    sizes: list[int] = []
    original = ChatServer._send_private

    def spy(self: ChatServer, s: object, frame: bytes) -> None:
        sizes.append(len(frame) - 4)
        original(self, s, frame)  # type: ignore[arg-type]

    monkeypatch.setattr(ChatServer, "_send_private", spy)
    asyncio.run(run_with_server(body, ChatConfig(max_send_frame=limit)))
    assert max(sizes) <= limit
