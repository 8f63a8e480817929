"""Attacks on the chat server (issue 14 items 6 and 8), kept as tests.

Each test names the attack, its size, and the guarantee it checks.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from synack.apps.chat.core import ChatConfig, ChatRoom
from synack.apps.chat.messages import (
    Joined,
    Msg,
    check_nick,
    encode_message,
    nick_key,
    normalize_nick,
)
from synack.cli.chat import describe, json_line
from tests.apps.chat.helpers import Peer, Room, registered, run_with_server


def test_unregistered_connections_answering_pings_are_closed_at_the_hello_deadline() -> None:
    # Attack: 500 connections that never say hello but answer every ping
    # used to hold every slot of --max-clients 500 for ever.
    r = Room(ChatConfig(max_clients=500, heartbeat=2.0, hello_timeout=10.0))
    for i in range(500):
        assert r.connect(f"u{i}")
    assert not r.connect("late")  # full
    for _ in range(8):  # answer pings for 16 s
        r.advance(2.0)
        for i in range(500):
            if r.room.state(f"u{i}").value == "connected":
                r.send(f"u{i}", type="pong")
    # Guarantee: all closed with error{timeout} by 10 s; the room has room again.
    assert len(r.room) == 0
    assert r.room.stats["hello-timeout"] == 500
    assert r.connect("ada") and r.hello("ada")["type"] == "welcome"


def test_one_host_cannot_take_every_slot() -> None:
    room: ChatRoom[int] = ChatRoom(ChatConfig(max_clients=100, max_per_host=10))
    # Attack: 50 connections from one host.
    accepted = [room.connect(i, 0.0, f"10.0.0.9:{40000 + i}") for i in range(50)]
    assert accepted.count(True) == 10 and room.stats["host-full"] == 40
    refusals = room.disconnects()
    assert len(refusals) == 40 and all(d.reason == "server-full" for d in refusals)
    # Guarantee: other hosts still get in; a slot freed is reusable.
    assert room.connect(100, 0.0, "10.0.0.7:5000")
    room.connection_lost(0)
    assert room.connect(101, 0.0, "10.0.0.9:41000")
    assert not room.connect(102, 0.0, "10.0.0.9:41001")


def test_a_ping_flood_gets_a_bounded_number_of_pongs() -> None:
    # Attack: 10,000 pings in one turn from one registered client.
    r = Room()
    r.connect("ada")
    r.hello("ada")
    r.connect("bob")
    r.hello("bob")
    r.take("ada")
    r.raw("ada", *[b'{"type":"ping"}'] * 10_000)
    got = r.take("ada")
    pongs = [m for m in got if m["type"] == "pong"]
    # Guarantee: at most the ping burst (20) is answered; past 100 refused
    # in a row the flooder is told why and closed; the rest is not even read.
    cfg = ChatConfig()
    assert len(pongs) == cfg.ping_burst
    assert got[-1] == {"type": "error", "code": "rate-limited", "detail": got[-1]["detail"]}
    assert r.room.stats["ping-rate-limited"] == cfg.ping_flood + 1
    assert r.room.stats["ping-flood"] == 1
    assert next(m for m in r.take("bob") if m["type"] == "left")["nick"] == "ada"
    # Everyone else is served as before.
    r.connect("cleo")
    r.hello("cleo")
    r.send("bob", type="say", text="still here")
    assert [m["text"] for m in r.take("cleo") if m["type"] == "msg"] == ["still here"]


def test_a_heartbeat_pinging_client_is_never_refused() -> None:
    r = Room()
    r.connect("ada")
    r.hello("ada")
    r.take("ada")
    for _ in range(200):  # one ping a second for 200 s
        r.advance(1.0)
        r.send("ada", type="ping")
    assert sum(m["type"] == "pong" for m in r.take("ada")) == 200
    assert r.room.stats["ping-rate-limited"] == 0


LOOK_ALIKES = [
    "\u0430da",  # Cyrillic a
    "\uff41\uff44\uff41",  # full-width
    "\U0001d41a\U0001d41d\U0001d41a",  # math bold
    "Ada",
    "ADA",
    "ad\u0430",
    "\u03b1da",  # Greek alpha
]


@pytest.mark.parametrize("nick", LOOK_ALIKES)
def test_look_alike_nicks_are_refused_while_the_original_is_online(nick: str) -> None:
    r = Room()
    r.connect("real")
    r.hello("real", "ada")
    r.connect("fake")
    r.send("fake", type="hello", nick=nick)
    [reply] = r.take("fake")
    assert reply["type"] == "error" and reply["code"] == "nick-taken", reply
    # Once the original has left, the name is free (normalised when it is NFKC-different).
    r.lost("real")
    r.send("fake", type="hello", nick=nick)
    welcome = next(m for m in r.take("fake") if m["type"] == "welcome")
    assert welcome["nick"] == normalize_nick(nick) and nick_key(welcome["nick"]) == "ada"


@pytest.mark.parametrize("nick", ["\u3164", "\u3164ada", "a\u115fda", "\uffa0", "ada\u200b"])
def test_invisible_nicks_are_refused(nick: str) -> None:
    assert check_nick(normalize_nick(nick)) is not None
    r = Room()
    r.connect("x")
    r.send("x", type="hello", nick=nick)
    [reply] = r.take("x")
    assert reply["code"] == "bad-nick", reply


def test_distinct_nicks_stay_distinct() -> None:
    # The skeleton must not merge what people tell apart.
    keys = {nick_key(n) for n in ["ada", "adb", "ada_", "ada-", "ad", "bob", "b0b2", "\u0431ob"]}
    assert len(keys) == 8


def test_a_stalled_header_is_released_at_the_idle_timeout_over_tcp() -> None:
    # Attack: a connection sends a 4-byte header announcing 64 KiB, then nothing.
    async def body(server: object, port: int) -> None:
        p = await Peer.open(port)
        p.send_bytes((65536).to_bytes(4, "big"))
        await p.drain()
        # Guarantee: closed with error{timeout} (no hello within 0.3 s).
        reply = await p.recv(5.0)
        assert reply is not None and reply["code"] == "timeout"
        assert await p.closed(5.0)
        await asyncio.sleep(0.05)
        assert len(server.room) == 0  # type: ignore[attr-defined]

    asyncio.run(run_with_server(body, ChatConfig(hello_timeout=0.3)))


def test_hello_with_a_look_alike_over_tcp() -> None:
    async def body(server: object, port: int) -> None:
        await registered(port, "ada")
        fake = await Peer.open(port)
        fake.send(type="hello", nick="\u0430da")
        err = await fake.expect("error")
        assert err["code"] == "nick-taken" and "looks like 'ada'" in err["detail"]

    asyncio.run(run_with_server(body))


def test_chat_join_prints_hostile_text_on_one_escaped_line() -> None:
    # Attack: a message whose text holds a newline and a forged line, ESC
    # sequences and a bidi override (it used to print a fake `#41 admin:` line).
    text = "hi\n[12:00:00] #41 admin: reboot now\x1b[2J\u202e\x85"
    m = Msg(id=40, from_="eve\x1b[31m", text=text, ts=0.0, to=None)
    line = describe(m)
    assert line is not None and "\n" not in line
    assert not any(c in line for c in "\x1b\u202e\x85")
    assert line.endswith("hi\\x0a[12:00:00] #41 admin: reboot now\\x1b[2J\\u202e\\x85")
    joined = describe(Joined(nick="a\u2028b"))
    assert joined == "* a\\u2028b joined"
    # --json: one valid JSON line carrying the exact text.
    raw = encode_message(m)
    out = json_line(raw)
    assert "\n" not in out and not any(c in out for c in "\u202e\x85")
    assert json.loads(out)["text"] == text
