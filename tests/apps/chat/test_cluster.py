"""Several chat servers as one chat on a real Redis (Debian's redis-server, started here on a
free loopback port): broadcasts and their order, direct messages and ``who`` across nodes,
the nick race, ``--history`` from Redis, a node killed with SIGKILL, Redis restarted mid-chat,
and what it costs in Redis commands (INFO commandstats)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

from synack.apps.chat import ChatConfig, ChatServer
from synack.apps.chat.redis_broker import RedisBroker
from synack.core.framing import FrameDecoder

from .helpers import Peer, _opened
from .redisrun import RedisServer, needs_redis, redis_server

pytestmark = needs_redis
SYNACK = [sys.executable, "-m", "synack"]


@contextlib.asynccontextmanager
async def nodes(
    url: str, n: int, config: ChatConfig | None = None, ttl: float = 10.0, first: int = 0
) -> AsyncIterator[list[tuple[ChatServer, int]]]:
    """``n`` chat servers on one Redis, in this process; closes every peer opened meanwhile."""
    servers: list[tuple[ChatServer, int]] = []
    try:
        for i in range(first, first + n):
            broker = RedisBroker(
                url, f"n{i}", presence_ttl=ttl, history=(config or ChatConfig()).history
            )
            await broker.connect()
            s = ChatServer(config or ChatConfig(rate=0), cluster=broker)
            await s.start("127.0.0.1", 0)
            servers.append((s, s.addresses[0][1]))
        yield servers
    finally:
        for p in list(_opened):
            p.writer.close()
        _opened.clear()
        for s, _ in servers:
            await s.stop()


async def skip_to(p: Peer, type_: str, **members: Any) -> dict[str, Any]:
    """The next message of this type (and members), skipping others (joined, pings...)."""
    while True:
        m = await p.recv()
        assert m is not None, f"closed while waiting for {type_}"
        if m["type"] == type_ and all(m.get(k) == v for k, v in members.items()):
            return m


def test_two_nodes_broadcast_direct_who_and_nick_unique() -> None:
    async def body(url: str) -> None:
        async with nodes(url, 2) as ((_, p0), (_, p1)):
            ada = await Peer.open(p0)
            await ada.hello("ada")
            bob = await Peer.open(p1)
            w = await bob.hello("bob")
            assert w["users"] == ["bob", "ada"]
            await ada.expect("joined", nick="bob")
            # The nick is taken cluster-wide.
            dup = await Peer.open(p1)
            dup.send(type="hello", nick="ada")
            await dup.expect("error", code="nick-taken")
            ada.send(type="say", text="hi all")
            m = await bob.expect("msg", text="hi all")
            assert m["from"] == "ada" and m["to"] is None
            await ada.expect("msg", text="hi all")
            bob.send(type="say", text="psst", to="ada")
            m = await ada.expect("msg", text="psst")
            assert m["from"] == "bob" and m["to"] == "ada"
            await bob.expect("msg", text="psst")  # the sender's copy
            ada.send(type="who")
            u = await ada.expect("users")
            assert sorted(u["users"]) == ["ada", "bob"]
            bob.send(type="bye")
            await bob.expect("bye")
            await ada.expect("left", nick="bob", reason="bye")
            # bob's nick is free again, on the other node.
            again = await Peer.open(p0)
            await again.hello("bob")

    with redis_server() as r:
        asyncio.run(asyncio.wait_for(body(r.url), 60))


class Reader:
    """Reads a peer's stream in bulk (many clients, many frames: cheaper than per frame)."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.dec = FrameDecoder()
        self.got: list[dict[str, Any]] = []

    async def until(self, pred: Callable[[list[dict[str, Any]]], bool]) -> None:
        while not pred(self.got):
            data = await asyncio.wait_for(self.peer.reader.read(1 << 16), 20)
            assert data, "closed"
            self.dec.receive_data(data)
            self.got.extend(json.loads(bytes(p)) for p in self.dec)


def msgs(got: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in got if m["type"] == "msg"]


def test_three_nodes_300_clients_order_direct_and_redis_cost() -> None:
    n_clients, senders_per_node, per_sender = 300, 4, 8
    total = 3 * senders_per_node * per_sender

    async def body(r: RedisServer) -> None:
        async with nodes(r.url, 3) as servers:
            peers: list[Peer] = []
            for i in range(n_clients):
                peers.append(await Peer.open(servers[i % 3][1]))
            for i, p in enumerate(peers):
                p.send(type="hello", nick=f"u{i}")
            readers = [Reader(p) for p in peers]
            await asyncio.gather(*(rd.until(lambda g: bool(g)) for rd in readers))
            bad = [rd.got[:2] for rd in readers if rd.got[0]["type"] != "welcome"]
            assert not bad, bad[:3]
            # Every node sees the whole cluster.
            for _ in range(200):
                if all(
                    len(s.room.local_users()) + len(s.room.remote) == n_clients for s, _ in servers
                ):
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the nodes never saw all 300 users")
            assert r.commandstats().get("subscribe") == 3  # once per node, not per client
            r.command("CONFIG", "RESETSTAT")
            senders = [i for i in range(n_clients) if i // 3 < senders_per_node]
            assert len(senders) == 3 * senders_per_node
            for k in range(per_sender):
                for i in senders:
                    peers[i].send(type="say", text=f"u{i} {k}")
            await asyncio.gather(*(rd.until(lambda g: len(msgs(g)) >= total) for rd in readers))
            for rd in readers:
                got = msgs(rd.got)
                assert len(got) == total
                for i in senders:  # each sender's messages, in the order sent
                    mine = [m["text"] for m in got if m["from"] == f"u{i}"]
                    assert mine == [f"u{i} {k}" for k in range(per_sender)]
                ids = [m["id"] for m in got]
                assert ids == sorted(ids)  # a node's ids increase for each of its clients
            stats = r.commandstats()
            assert stats.get("publish") == total  # one publish per broadcast
            assert "subscribe" not in stats
            # A direct message from a client on node 0 to one on node 2, and `who` sees all.
            peers[0].send(type="say", text="just you", to="u2")
            await readers[2].until(lambda g: any(m.get("text") == "just you" for m in g))
            assert not any(m.get("text") == "just you" for m in readers[1].got)
            peers[1].send(type="who")
            await readers[1].until(lambda g: g[-1]["type"] == "users")
            users = readers[1].got[-1]["users"]
            assert sorted(users) == sorted(f"u{i}" for i in range(n_clients))

    with redis_server() as r:
        asyncio.run(asyncio.wait_for(body(r), 30))


def test_nick_race_across_nodes_has_exactly_one_winner() -> None:
    async def body(url: str) -> None:
        async with nodes(url, 2) as ((_, p0), (_, p1)):
            for i in range(20):
                a, b = await Peer.open(p0), await Peer.open(p1)
                a.send(type="hello", nick=f"race{i}")
                b.send(type="hello", nick=f"race{i}")
                ra, rb = await a.recv(), await b.recv()
                assert ra is not None and rb is not None
                kinds = sorted([ra["type"], rb.get("code", rb["type"])])
                assert kinds in (["error", "welcome"], ["nick-taken", "welcome"]), (ra, rb)
                loser = ra if ra["type"] == "error" else rb
                assert loser["code"] == "nick-taken"

    with redis_server() as r:
        asyncio.run(asyncio.wait_for(body(r.url), 60))


def test_history_comes_from_redis_for_a_node_started_later() -> None:
    async def body(url: str) -> None:
        cfg = ChatConfig(rate=0, history=3)
        async with nodes(url, 1, cfg) as ((_, p0),):
            ada = await Peer.open(p0)
            await ada.hello("ada")
            for i in range(5):
                ada.send(type="say", text=f"h{i}")
            for i in range(5):
                await ada.expect("msg", text=f"h{i}")
            async with nodes(url, 1, cfg, first=1) as ((_, p1),):
                bob = await Peer.open(p1)
                bob.send(type="hello", nick="bob")
                await bob.expect("welcome")
                got = [await bob.expect("msg") for _ in range(3)]
                assert [m["text"] for m in got] == ["h2", "h3", "h4"]
                assert all(m["history"] is True for m in got)

    with redis_server() as r:
        asyncio.run(asyncio.wait_for(body(r.url), 60))
