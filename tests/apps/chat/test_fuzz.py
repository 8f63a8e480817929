"""Nothing a client sends can crash the server or disturb other clients."""

from __future__ import annotations

import asyncio
import json
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from synack.apps.chat import ChatConfig, ChatServer

from .helpers import Peer, registered, run_with_server

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
