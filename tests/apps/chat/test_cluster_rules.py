"""The room's side of a cluster, sans-IO on the manual clock: claims before ``welcome``,
events for and from the other nodes, users of other nodes in ``welcome``/``who`` (with
``more``), a node gone, and the outage notices and counting. No Redis here: the engine's
part is ``test_cluster.py``."""

from __future__ import annotations

import asyncio

from synack.apps.chat import ChatConfig, ChatServer
from synack.apps.chat.broker import (
    EmbeddedBroker,
    NodeJoined,
    NodeLeft,
    NodeSaid,
    decode_event,
    encode_event,
)
from synack.apps.chat.node import ChatNode

from .helpers import WALL, Room


def node(config: ChatConfig | None = None) -> Room:
    r = Room(config)
    room: ChatNode[str] = ChatNode(r.room.config)  # a node's room on the same manual clock
    room.join_cluster("n0")
    r.room = room
    return r


def claim_ok(r: Room, key: str, ok: bool | None = True) -> None:
    ((k, nick),) = r.room.take_claims()
    assert k == key
    r.room.claim_result(k, nick, ok, r.now, WALL + r.now)
    r._end()


def register(r: Room, nick: str) -> None:
    r.connect(nick)
    r.send(nick, type="hello", nick=nick)
    assert r.take(nick) == []  # no welcome before the cluster says the nick is ours
    claim_ok(r, nick)
    assert r.take(nick)[0]["type"] == "welcome"


def test_welcome_waits_for_the_claim_and_what_followed_hello_waits_too() -> None:
    r = node()
    r.connect("ada")
    r.raw("ada", b'{"type":"hello","nick":"ada"}', b'{"type":"say","text":"first"}')
    assert r.take("ada") == []
    assert r.room.take_outbox() == []
    claim_ok(r, "ada")
    got = r.take("ada")
    assert [m["type"] for m in got] == ["welcome", "msg"] and got[1]["text"] == "first"
    assert r.room.take_outbox() == [
        NodeJoined("n0", "ada"),
        NodeSaid("n0", "ada", "first", got[1]["ts"], None),
    ]


def test_a_lost_claim_is_nick_taken_and_an_unreachable_cluster_says_so() -> None:
    r = node()
    r.connect("a")
    r.send("a", type="hello", nick="ada")
    claim_ok(r, "a", False)
    assert [m.get("code") for m in r.take("a")] == ["nick-taken"]
    r.send("a", type="hello", nick="ada")
    claim_ok(r, "a", None)
    assert [m.get("code") for m in r.take("a")] == ["cluster-unavailable"]
    # Two local clients asking for one nick in one turn: the second is refused at once.
    r.connect("b")
    with r.turn():
        r.send("a", type="hello", nick="zed")
        r.send("b", type="hello", nick="zed")
    assert [m.get("code") for m in r.take("b")] == ["nick-taken"]
    claim_ok(r, "a")
    assert r.take("a")[0]["type"] == "welcome"


def test_a_client_gone_before_its_claim_gives_the_nick_back() -> None:
    r = node()
    r.connect("ada")
    r.send("ada", type="hello", nick="ada")
    r.lost("ada")
    claim_ok(r, "ada")
    assert r.room.take_outbox() == [NodeLeft("n0", "ada", "disconnected")]


def test_remote_users_join_talk_leave_and_are_listed() -> None:
    r = node()
    register(r, "ada")
    r.room.take_outbox()
    room = r.room
    room.remote_event(NodeJoined("n1", "bob"), WALL)
    room.remote_event(NodeSaid("n1", "bob", "hi", WALL, None), WALL)
    room.remote_event(NodeSaid("n1", "bob", "psst", WALL, "ada"), WALL)
    room.remote_event(NodeSaid("n1", "bob", "lost", WALL, "nobody"), WALL)  # ignored
    room.remote_event(NodeJoined("n2", "ada"), WALL)  # a nick held here: ignored
    room.remote_event(NodeSaid("n0", "ada", "echo", WALL, None), WALL)  # our own: ignored
    r._end()
    got = r.take("ada")
    assert [(m["type"], m.get("text")) for m in got] == [
        ("joined", None),
        ("msg", "hi"),
        ("msg", "psst"),
    ]
    assert got[1]["id"] < got[2]["id"] and got[2]["to"] == "ada"
    r.send("ada", type="who")
    assert r.take("ada") == [{"type": "users", "users": ["ada", "bob"]}]
    r.send("ada", type="say", text="to bob", to="bob")  # reaches the other node
    (ev,) = r.room.take_outbox()
    assert isinstance(ev, NodeSaid) and ev.to == "bob"
    assert decode_event(encode_event(ev)) == ev
    room.remote_event(NodeLeft("n2", "bob", "bye"), WALL)  # not bob's node: ignored
    room.remote_event(NodeLeft("n1", "bob", "bye"), WALL)
    r._end()
    assert r.take("ada")[-1] == {"type": "left", "nick": "bob", "reason": "bye"}


def test_who_counts_remote_users_in_more() -> None:
    r = node(ChatConfig(max_send_frame=20_000))
    register(r, "ada")
    for i in range(1000):
        r.room.remote_event(NodeJoined("n1", f"user-{i:04d}-" + "x" * 20), WALL)
    r._end()
    r.take("ada")
    r.send("ada", type="who")
    (u,) = r.take("ada")
    assert u["users"][0] == "ada" and u["more"] > 0
    assert len(u["users"]) + u["more"] == 1001


def test_a_node_gone_its_users_left_disconnected() -> None:
    r = node()
    register(r, "ada")
    r.room.set_remote({"bob": "n1", "cy": "n2"})
    r._end()
    assert [m["nick"] for m in r.take("ada")] == ["bob", "cy"]
    r.room.remote_node_gone("n1")
    r._end()
    assert r.take("ada") == [{"type": "left", "nick": "bob", "reason": "disconnected"}]


def test_outage_told_once_local_traffic_delivered_the_rest_counted() -> None:
    r = node()
    register(r, "ada")
    register(r, "cy")
    r.room.set_remote({"bob": "n1"})
    r._end()
    r.take("ada")
    r.take("cy")
    r.room.take_outbox()
    r.room.set_cluster_up(False)
    r.room.set_cluster_up(False)  # told once
    r._end()
    for k in ("ada", "cy"):
        assert [m.get("code") for m in r.take(k)] == ["cluster-unavailable"]
    r.send("ada", type="say", text="local")
    r.send("ada", type="say", text="far", to="bob")
    assert [m["text"] for m in r.take("cy")] == ["local"]
    assert [m["text"] for m in r.take("ada")] == ["local", "far"]
    assert r.room.stats["cluster-undelivered"] == 2
    assert r.room.take_outbox() == []
    r.connect("new")
    r.send("new", type="hello", nick="new")
    assert [m.get("code") for m in r.take("new")] == ["cluster-unavailable"]
    r.room.set_cluster_up(True)
    r._end()
    assert [m.get("code") for m in r.take("ada")] == ["cluster-restored"]


def test_what_waits_for_a_claim_is_bounded() -> None:
    r = node(ChatConfig(max_queue=10_000, rate=0))
    register(r, "ada")
    r.connect("eve")
    r.send("eve", type="hello", nick="eve")
    say = b'{"type":"say","text":"' + b"x" * 900 + b'"}'
    r.raw("eve", *[say] * 20)  # ~19 KB while the claim is out: over the bound
    refused = r.take("eve")
    assert refused and all(m.get("code") == "rate-limited" for m in refused)
    claim_ok(r, "eve")
    got = r.take("eve")
    kept = [m for m in got if m["type"] == "msg"]
    assert got[0]["type"] == "welcome" and 0 < len(kept) < 20
    assert len(kept) + len(refused) == 20  # each frame kept or refused, none lost silently
    assert r.room.stats["rate-limited"] == len(refused)


def test_the_embedded_engine_leaves_the_room_as_it_was() -> None:
    async def body() -> None:
        s = ChatServer(ChatConfig(), cluster=EmbeddedBroker())
        await s.start("127.0.0.1", 0)
        try:
            assert not s.room.clustered and not s.room.remote
            reader, writer = await asyncio.open_connection("127.0.0.1", s.addresses[0][1])
            writer.write(b'\x00\x00\x00\x1d{"type":"hello","nick":"ada"}')
            data = await asyncio.wait_for(reader.read(1000), 5)
            assert b'"welcome"' in data
            writer.close()
        finally:
            await s.stop()

    asyncio.run(body())
