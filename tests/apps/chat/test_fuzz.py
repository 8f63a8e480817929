"""Nothing a client sends can crash the server or disturb other clients: on the wire, and
against the rules alone with any interleaving of inputs and time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from synack.apps.chat import ChatConfig, ChatServer
from synack.apps.chat.core import ClientState
from synack.apps.chat.messages import decode_server

from .helpers import Peer, Room, registered, run_with_server

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["hello", "say", "who", "ping", "pong", "x", 5])},
    optional={"nick": json_values | st.text(max_size=40), "text": json_values, "to": json_values},
)
payloads = st.one_of(
    messages.map(lambda m: json.dumps(m).encode()),
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=25)
@given(st.lists(payloads, min_size=1, max_size=30))
def test_fuzzed_payloads_get_answers_and_nobody_else_suffers(frames: list[bytes]) -> None:
    async def body(server: ChatServer, port: int) -> None:
        (bystander,) = await registered(port, "bystander")
        fuzz = await Peer.open(port)
        fuzz.send_bytes(b"".join(struct.pack(">I", len(f)) + f for f in frames))
        fuzz.send(type="ping")  # the marker: everything before it has been handled
        answers = await fuzz.until(lambda m: m["type"] == "pong")
        # Every answer is a well-formed server message (the peer checks "type").
        assert all(
            m["type"] in {"welcome", "error", "users", "pong", "msg", "joined", "left"}
            for m in answers
        )
        bystander.send(type="who")
        users = (await bystander.until(lambda m: m["type"] == "users"))[-1]["users"]
        assert "bystander" in users

    server = asyncio.run(run_with_server(body, ChatConfig(rate=0)))
    assert server.stats["internal-error"] == 0


# -- the rules alone, on a manual clock: thousands of sequences a second -------------------

KEYS = ["k0", "k1", "k2", "k3"]
ops = st.one_of(
    st.tuples(st.just("connect"), st.sampled_from(KEYS)),
    st.tuples(st.just("frames"), st.sampled_from(KEYS), st.lists(payloads, max_size=5)),
    st.tuples(st.just("hello"), st.sampled_from(KEYS), st.sampled_from(["ada", "bob", "x" * 33])),
    st.tuples(st.just("say"), st.sampled_from(KEYS), st.sampled_from([None, "ada", "bob"])),
    st.tuples(st.just("lost"), st.sampled_from(KEYS)),
    st.tuples(st.just("pause"), st.sampled_from(KEYS)),
    st.tuples(st.just("resume"), st.sampled_from(KEYS)),
    st.tuples(st.just("advance"), st.floats(0, 40)),
    st.tuples(st.just("turn"), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=40))
def test_fuzzed_room_keeps_its_invariants(script: list[tuple[Any, ...]]) -> None:
    r = Room(
        ChatConfig(heartbeat=10, idle_timeout=25, rate=5, burst=3, max_clients=3, max_queue=400)
    )
    batch: contextlib.ExitStack | None = None
    # A key names one connection, as the adapter's protocol objects do: a key
    # refused in this turn (server full) is not a new connection until the turn
    # ends and its disconnect has been taken.
    opened_this_turn: set[str] = set()
    for op, *args in script:
        if op == "turn":  # open or close a batch of inputs in one event-loop turn
            if batch is None and args[0]:
                batch = contextlib.ExitStack()
                batch.enter_context(r.turn())
            elif batch is not None:
                batch.close()
                batch = None
                opened_this_turn.clear()
            continue
        if op == "advance":
            if batch is None:
                r.advance(args[0])
            continue
        key = args[0]
        connected = r.room.state(key) is not ClientState.CLOSED
        if op == "connect":
            if not connected and key not in opened_this_turn:
                r.connect(key)
                if batch is not None:
                    opened_this_turn.add(key)
        elif op == "frames":
            r.raw(key, *args[1])
        elif op == "hello":
            r.send(key, type="hello", nick=args[1])
        elif op == "say":
            r.send(key, type="say", text="hi", to=args[1])
        elif op == "lost":
            r.lost(key)
        elif op == "pause":
            r.room.pause(key)
        elif op == "resume":
            data = r.room.resume(key)
            if data:
                r._deliver(key, data)
    if batch is not None:
        batch.close()
    # Whatever happened: every frame was a server message that fits a client's frame...
    assert all(n <= r.room.config.max_send_frame for n in r.frame_sizes)
    for got in r.inbox.values():
        for _, m in got:
            decode_server(json.dumps(m).encode())  # well formed
        ids = [m["id"] for _, m in got if m["type"] == "msg"]
        assert ids == sorted(set(ids))  # increasing, no duplicates
    # ...the room's view is consistent...
    nicks = r.room.nicks
    assert len(nicks) == len(set(nicks)) <= len(r.room) <= 3
    assert (r.room.get_timer() is None) == (len(r.room) == 0)
    # ...and silence ends every connection within the idle timeout.
    for key in KEYS:
        r.room.resume(key)
    r.advance(25)
    assert len(r.room) == 0 and r.room.nicks == [] and r.room.get_timer() is None
