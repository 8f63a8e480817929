"""Several chat servers as one chat on a real Redis (Debian's redis-server, started here on a
free loopback port): broadcasts and their order, direct messages and ``who`` across nodes,
the nick race, ``--history`` from Redis, a node killed with SIGKILL, Redis restarted mid-chat,
and what it costs in Redis commands (INFO commandstats)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from synack.apps.chat import ChatConfig, ChatServer
from synack.apps.chat.redis_broker import RedisBroker
from synack.core.framing import FrameDecoder

from .helpers import Peer, _opened
from .redisrun import RedisServer, free_port, needs_redis, redis_server

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


def test_look_alike_nicks_are_refused_across_nodes_and_in_a_race() -> None:
    """The look-alike rule (docs/protocol.md §2) holds for the whole cluster: a Cyrillic,
    full-width or upper-case twin of a nick online on another node is refused, and of two
    look-alikes racing on two nodes exactly one wins (the Redis claim is per look-alike key)."""

    async def body(url: str) -> None:
        async with nodes(url, 2) as ((_, p0), (_, p1)):
            ada = await Peer.open(p0)
            ada.send(type="hello", nick="ada")
            assert (await skip_to(ada, "welcome"))["nick"] == "ada"
            for twin in ("\u0430da", "ADA", "\uff41\uff44\uff41"):  # Cyrillic a, upper, full-width
                deadline = time.monotonic() + 5
                while True:  # until node 1 has heard of ada (it may get the claim race instead)
                    p = await Peer.open(p1)
                    p.send(type="hello", nick=twin)
                    m = await p.recv()
                    p.writer.close()
                    assert m is not None and m["type"] == "error", (twin, m)
                    assert m["code"] == "nick-taken", m
                    if "looks like" in m["detail"] or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)
                assert "'ada'" in m["detail"], m
            for i in range(10):
                a, b = await Peer.open(p0), await Peer.open(p1)
                a.send(type="hello", nick=f"race{i}")
                b.send(type="hello", nick=f"RACE{i}".replace("A", "\u0410"))  # Cyrillic A
                ra, rb = await a.recv(), await b.recv()
                assert ra is not None and rb is not None
                assert sorted([ra["type"], rb["type"]]) == ["error", "welcome"], (ra, rb)
                loser = ra if ra["type"] == "error" else rb
                assert loser["code"] == "nick-taken", loser
                a.writer.close()
                b.writer.close()

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


def _serve(*args: str) -> tuple[subprocess.Popen[bytes], int]:
    """``synack chat serve`` as a child process; returns it and its port (from its §5 line)."""
    p = subprocess.Popen(
        [*SYNACK, "chat", "serve", "--port", "0", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert p.stderr is not None
    line = p.stderr.readline().decode()
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    if m is None:
        p.kill()
        p.wait()
        raise AssertionError(f"no listening line: {line!r}")
    return p, int(m.group(1))


def test_a_node_killed_with_sigkill_is_announced_left_within_the_ttl() -> None:
    ttl = 1.0

    async def body(url: str) -> None:
        child, port = _serve("--redis", url, "--node", "doomed", "--presence-ttl", str(ttl))
        try:
            async with nodes(url, 1, ttl=ttl) as ((_, p0),):
                watcher = await Peer.open(p0)
                await watcher.hello("watcher")
                victim = await Peer.open(port)
                await victim.hello("victim")
                await watcher.expect("joined", nick="victim")
                os.kill(child.pid, signal.SIGKILL)
                child.wait(5)
                t0 = time.monotonic()
                left = await skip_to(watcher, "left", nick="victim")
                waited = time.monotonic() - t0
                assert left["reason"] == "disconnected"
                # The contract: within the presence TTL (0.6 TTL of key life + 0.2 TTL of
                # checking); twice the TTL leaves room for a busy CI machine.
                assert waited < 2 * ttl, waited
                again = await Peer.open(p0)
                await again.hello("victim")  # the nick is free
                watcher.send(type="who")
                users = await skip_to(watcher, "users")
                assert sorted(users["users"]) == ["victim", "watcher"]
        finally:
            if child.poll() is None:
                child.kill()
            child.wait(5)

    with redis_server() as r:
        asyncio.run(asyncio.wait_for(body(r.url), 30))


def test_redis_restart_mid_chat_keeps_local_traffic_counts_the_rest_and_recovers() -> None:
    ttl = 1.0

    async def body(r: RedisServer) -> None:
        async with nodes(r.url, 2, ttl=ttl) as ((s0, p0), (s1, p1)):
            ada, cy = await Peer.open(p0), await Peer.open(p0)
            bob = await Peer.open(p1)
            await ada.hello("ada")
            await cy.hello("cy")
            await bob.hello("bob")
            r.stop()
            for p in (ada, cy, bob):  # told once
                await skip_to(p, "error", code="cluster-unavailable")
            for i in range(3):
                ada.send(type="say", text=f"during {i}")
            for p in (ada, cy):  # nothing sent to one's own node is lost
                for i in range(3):
                    await skip_to(p, "msg", text=f"during {i}")
            assert s0.stats["cluster-undelivered"] == 3  # counted, not silently dropped
            # A newcomer cannot get a cluster-wide nick now: told so, may retry later.
            late = await Peer.open(p1)
            late.send(type="hello", nick="late")
            await skip_to(late, "error", code="cluster-unavailable")
            r.start()  # same port, empty: the nodes re-register
            seen: dict[str, list[dict[str, Any]]] = {}
            for name, p in (("ada", ada), ("cy", cy), ("bob", bob)):
                seen[name] = await p.until(
                    lambda m: m["type"] == "error" and m["code"] == "cluster-restored"
                )
            # Exactly once each, and no flapping of the others' presence.
            for got in seen.values():
                codes = [m.get("code") for m in got if m["type"] == "error"]
                assert codes == ["cluster-restored"], got
                assert not any(m["type"] == "left" for m in got), got
            # Until both nodes are back, a message may not reach the other one: wait for
            # bob's node to see ada's node registered again.
            for _ in range(200):
                if s1.room.remote.get("ada") == "n0" and "bob" in s0.room.remote:
                    break
                await asyncio.sleep(0.02)
            ada.send(type="say", text="after")
            m = await skip_to(bob, "msg", text="after")
            assert m["from"] == "ada"
            bob.send(type="say", text="hi ada", to="ada")
            await skip_to(ada, "msg", text="hi ada")
            late.send(type="hello", nick="late")
            await skip_to(late, "welcome", nick="late")
            await skip_to(ada, "joined", nick="late")

    with redis_server() as r:
        asyncio.run(asyncio.wait_for(body(r), 40))


def test_a_second_live_node_with_the_same_name_is_refused() -> None:
    async def body(r: RedisServer) -> None:
        async with nodes(r.url, 1):  # "n0" is alive
            p = await asyncio.create_subprocess_exec(
                *SYNACK,
                "chat",
                "serve",
                "--port",
                "0",
                "--redis",
                r.url,
                "--node",
                "n0",
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(p.communicate(), 30)
            assert p.returncode == 2
            lines = err.decode().splitlines()
            assert len(lines) == 1 and "already running" in lines[0], lines

    with redis_server() as r:
        asyncio.run(asyncio.wait_for(body(r), 40))
        bad = subprocess.run(
            [*SYNACK, "chat", "serve", "--port", "0", "--redis", r.url, "--node", "a b"],
            capture_output=True,
            timeout=30,
        )
        assert bad.returncode == 2 and b"bad node name" in bad.stderr


def test_redis_unreachable_at_start_is_one_line_and_exit_2() -> None:
    port = free_port()  # nothing listens there
    p = subprocess.run(
        [*SYNACK, "chat", "serve", "--port", "0", "--redis", f"redis://127.0.0.1:{port}"],
        capture_output=True,
        timeout=30,
    )
    assert p.returncode == 2
    lines = p.stderr.decode().splitlines()
    assert len(lines) == 1 and "cannot reach Redis" in lines[0], lines
    bad = subprocess.run(
        [*SYNACK, "chat", "serve", "--port", "0", "--redis", "localhost:6379"],
        capture_output=True,
        timeout=30,
    )
    assert bad.returncode == 2 and len(bad.stderr.decode().splitlines()) == 1
    nonode = subprocess.run(
        [*SYNACK, "chat", "serve", "--port", "0", "--node", "x"], capture_output=True, timeout=30
    )
    assert nonode.returncode == 2 and b"--redis" in nonode.stderr
    neg = subprocess.run(
        [*SYNACK, "chat", "serve", "--port", "0", "--history", "-1"],
        capture_output=True,
        timeout=30,
    )
    assert neg.returncode == 2 and len(neg.stderr.decode().splitlines()) == 1


def test_hostile_and_missing_events_on_the_channel_are_counted_and_harmless() -> None:
    async def body(r: RedisServer) -> None:
        async with nodes(r.url, 1) as ((s0, p0),):
            ada = await Peer.open(p0)
            await ada.hello("ada")
            ch = "synack:chat:events"
            for junk in ("not json", "[1]", '[1,["zz","n9"]]', '{"type":"msg"}', "\x00\xff"):
                r.command("PUBLISH", ch, junk)
            r.command("PUBLISH", ch, '[1,["j","n9","zed"]]')
            r.command("PUBLISH", ch, '[5,["s","n9","zed","five",1.0,null]]')  # 2, 3, 4 missed
            m = await skip_to(ada, "msg", text="five")
            assert m["from"] == "zed"
            assert s0.stats["cluster-bad-event"] == 5
            assert s0.stats["cluster-missed"] == 3
            ada.send(type="say", text="still here")
            await skip_to(ada, "msg", text="still here")

    with redis_server() as r:
        asyncio.run(asyncio.wait_for(body(r), 30))
