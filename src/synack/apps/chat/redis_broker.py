"""The Redis engine: several ``synack chat serve`` on one Redis act as one chat.

What lives in Redis (all keys under ``synack:chat:``):

- ``events``: the one publish/subscribe channel. Each broadcast, direct message to another
  node, join and leave is ONE ``PUBLISH`` (not one per recipient); each node holds ONE
  subscription. A node publishes from one task, in order, so every receiver sees each
  sender's messages in the order sent (Redis delivers a connection's publishes in order).
- ``nick:<key>`` = node: the claim, keyed by the nick's look-alike key (``nick_key``: NFKC,
  case folded, the skeleton), so ``ada``, ``Ada`` and a Cyrillic ``аda`` are one claim.
  ``SET NX PX`` inside a small Lua script (atomic), so of two clients racing for one nick, or
  for two nicks that look alike, on two nodes exactly one wins.
- ``node:<name>``: the node is alive. It and its users' ``nick:`` keys carry a TTL of 0.6
  presence TTL, refreshed every 0.2 TTL by one script call. A node killed without a word
  stops refreshing; the survivors check the nodes they know every 0.2 TTL, so its users are
  announced ``left`` (``disconnected``) within 0.8 TTL and their nicks are free.
- ``users:<name>`` (a hash, key -> nick) and ``nodes`` (a set): to list the cluster at start
  and after a reconnect, and to find each user's claim key.
- ``history``: a capped stream (``XADD MAXLEN ~ N``) of broadcasts, read at start, when
  ``--history N`` is on.

Losing Redis: the room keeps serving its own clients (``set_cluster_up(False)`` tells them
once with ``error{cluster-unavailable}``); what its clients say is delivered on this node and
counted in ``cluster-undelivered`` for the others. The engine reconnects with a capped
exponential backoff, claims its users' nicks again, publishes their ``joined``, reads the
cluster's users and announces the differences, then says ``error{cluster-restored}``.

Layer: apps. Imports redis (redis.asyncio), chat.broker, chat.messages and chat.node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Hashable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from synack.apps.chat.broker import (
    ClusterEvent,
    ClusterUnavailable,
    NodeJoined,
    NodeLeft,
    NodeSaid,
    decode_envelope,
    decode_event,
    encode_envelope,
    encode_event,
)
from synack.apps.chat.messages import nick_key
from synack.apps.chat.node import ChatNode

__all__ = ["PREFIX", "ClusterUnavailable", "RedisBroker"]

log = logging.getLogger("synack.chat.cluster")

PREFIX = "synack:chat:"
CHANNEL = PREFIX + "events"
NODES = PREFIX + "nodes"
HISTORY = PREFIX + "history"
_FAILURES = (RedisError, OSError, TimeoutError)

# KEYS: nick key, the node's users hash. ARGV: node, ttl ms, look-alike key, nick.
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""
# KEYS: nick key, users hash. ARGV: node, look-alike key.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
"""
# KEYS: alive key, users hash, nodes set. ARGV: node, ttl ms, nick key prefix.
# Returns 0 when the node had been given up for dead (its alive key had expired).
_REFRESH = """
local was = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
for _, key in ipairs(redis.call('HKEYS', KEYS[2])) do
  redis.call('PEXPIRE', ARGV[3] .. key, ARGV[2])
end
return was
"""
# KEYS: alive key, users hash, nodes set. ARGV: node, nick key prefix.
_REAP = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for _, key in ipairs(redis.call('HKEYS', KEYS[2])) do
  if redis.call('GET', ARGV[2] .. key) == ARGV[1] then redis.call('DEL', ARGV[2] .. key) end
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
"""


def _nick_key(nick: str) -> str:
    """The claim's Redis key: one per look-alike key, not per spelling."""
    return f"{PREFIX}nick:{nick_key(nick)}"


def _alive_key(node: str) -> str:
    return f"{PREFIX}node:{node}"


def _users_key(node: str) -> str:
    return f"{PREFIX}users:{node}"


class RedisBroker:
    """One node's link to the cluster: ``await connect()``, ``attach``, ``await start()``."""

    clustered = True

    def __init__(
        self,
        url: str,
        node: str | None = None,
        *,
        presence_ttl: float = 10.0,
        history: int = 0,
        timeout: float = 2.0,
    ) -> None:
        if not presence_ttl > 0.1:
            raise ValueError("presence TTL must be more than 0.1 s")
        self.url = url
        self._node = node or f"{socket.gethostname()}-{os.getpid()}"
        self.ttl_ms = int(presence_ttl * 600)  # keys live 0.6 TTL...
        self.period = presence_ttl / 5  # ...refreshed and checked every 0.2 TTL
        self.history = history
        self.timeout = timeout
        self.room: ChatNode[Any] | None = None
        self._wake: Callable[[], None] = lambda: None
        self._r: aioredis.Redis | None = None
        self._up = False
        self._stopping = False
        self._queue: list[ClusterEvent] = []
        self._draining = False  # one publishing task at a time: the node's order is kept
        self._tasks: set[asyncio.Task[None]] = set()
        self._link: list[asyncio.Task[None]] = []  # the subscriber and the presence loop
        self._reconnecting: asyncio.Task[None] | None = None
        self.reconnects = 0
        self._grace_until = 0.0
        self._claims: list[tuple[Hashable, str]] = []
        self._claiming = False
        self._seq = 0  # this node's events, numbered on the channel
        self._last: dict[str, int] = {}  # the last number seen from each other node

    @property
    def node(self) -> str:
        return self._node

    # -- lifecycle -----------------------------------------------------------

    async def connect(self) -> None:
        """Reach Redis and make sure no live node has this name; ``ClusterUnavailable`` if not."""
        try:
            self._r = aioredis.from_url(
                self.url,
                decode_responses=True,
                socket_connect_timeout=self.timeout,
                socket_timeout=self.timeout,
            )
            await self._r.ping()
            taken = await self._r.exists(_alive_key(self.node))
        except (*_FAILURES, ValueError) as exc:
            if self._r is not None:
                await self._r.aclose()
            raise ClusterUnavailable(f"cannot reach Redis at {self.url}: {exc}") from None
        if taken:
            await self._r.aclose()
            raise ClusterUnavailable(f"node {self.node!r} is already running on {self.url}")
        r = self._r
        self._claim = r.register_script(_CLAIM)
        self._release = r.register_script(_RELEASE)
        self._refresh = r.register_script(_REFRESH)
        self._reap = r.register_script(_REAP)

    def attach(self, room: ChatNode[Any], wake: Callable[[], None]) -> None:
        """The room this node serves; ``wake`` is called after the engine fed the room."""
        if not isinstance(room, ChatNode):
            raise TypeError("the Redis engine needs a ChatNode")
        room.join_cluster(self.node)
        self.room = room
        self._wake = wake

    async def start(self) -> None:
        assert self._r is not None and self.room is not None
        try:
            await self._establish()
            if self.history:
                raw: list[Any] = list(await self._r.xrevrange(HISTORY, count=self.history) or [])
                said = [decode_event(str(f["e"])) for _, f in reversed(raw)]
                self.room.preload_history([e for e in said if isinstance(e, NodeSaid)])
        except _FAILURES as exc:
            raise ClusterUnavailable(f"cannot reach Redis at {self.url}: {exc}") from None

    async def stop(self) -> None:
        """Publish what is queued (the users' ``left``), leave the cluster, disconnect."""
        self._stopping = True
        if self._tasks:  # publishing and claims in flight end first (the users' `left`)
            await asyncio.wait(list(self._tasks), timeout=self.timeout)
        if self._up and self._queue:
            with contextlib.suppress(*_FAILURES):
                await asyncio.wait_for(self._publish(self._take()), self.timeout)
        for t in [*self._tasks, *self._link]:
            t.cancel()
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        tasks = [*self._tasks, *self._link]
        if tasks:  # bounded: a task stuck inside the client must not hold the stop forever
            _, stuck = await asyncio.wait(tasks, timeout=self.timeout)
            if stuck:
                log.warning("chat: %d cluster task(s) did not stop in time", len(stuck))
        if self._r is not None:
            if self._up:
                with contextlib.suppress(*_FAILURES):
                    await self._r.delete(_alive_key(self.node))
                    await self._reap(
                        keys=[_alive_key(self.node), _users_key(self.node), NODES],
                        args=[self.node, PREFIX + "nick:"],
                    )
            await self._r.aclose()

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    # -- from the server, once per input -------------------------------------

    def pump(self) -> None:
        """Take the room's claims and events (call after each input)."""
        room = self.room
        assert room is not None
        if room.claims:  # one task, one pipelined round trip for all claims waiting
            self._claims.extend(room.take_claims())
            if not self._claiming:
                self._claiming = True
                self._spawn(self._claim_all())
        if room.outbox:
            self._queue.extend(room.take_outbox())
            if not self._draining:
                self._draining = True
                self._spawn(self._drain())

    # -- the link ------------------------------------------------------------

    async def _establish(self) -> None:
        """Subscribe, register presence (this node's users too), read the cluster's users."""
        r, room = self._r, self.room
        assert r is not None and room is not None
        pubsub = r.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(CHANNEL)
        await self._refresh(
            keys=[_alive_key(self.node), _users_key(self.node), NODES],
            args=[self.node, self.ttl_ms, PREFIX + "nick:"],
        )
        mine = room.local_users()
        for nick in mine:
            won = await self._claim_nick(nick)
            if not won:  # taken elsewhere while we were cut off: both keep it, counted
                room.stats["cluster-conflict"] += 1
                log.warning("chat: %s was claimed by another node during the outage", nick)
        users = await self._users()
        if mine:
            async with r.pipeline(transaction=False) as pipe:
                for nick in mine:
                    self._seq += 1
                    pipe.publish(CHANNEL, encode_envelope(self._seq, NodeJoined(self.node, nick)))
                await pipe.execute()
        # After an outage the others may not be back yet: who is missing gets one presence
        # TTL to re-register before being announced `left` (no left/joined flapping).
        reconnect = not room.cluster_up
        if reconnect:
            self._grace_until = asyncio.get_running_loop().time() + self.period * 5
        room.set_remote(users, forget=not reconnect)
        room.set_cluster_up(True)
        self._up = True
        self._link = [
            asyncio.get_running_loop().create_task(self._subscriber(pubsub)),
            asyncio.get_running_loop().create_task(self._presence()),
        ]
        self._wake()

    async def _users(self) -> dict[str, str]:
        r = self._r
        assert r is not None
        users: dict[str, str] = {}
        for node in sorted(str(n) for n in await r.smembers(NODES)):
            if node == self.node:
                continue
            if not await r.exists(_alive_key(node)):
                await self._reap_node(node)
                continue
            for nick in sorted(str(n) for n in await r.hvals(_users_key(node))):
                users[nick] = node
        return users

    async def _reap_node(self, node: str) -> None:
        await self._reap(
            keys=[_alive_key(node), _users_key(node), NODES], args=[node, PREFIX + "nick:"]
        )

    def _lost(self, exc: BaseException) -> None:
        """Redis went away: serve locally, tell the clients once, reconnect with backoff."""
        if not self._up or self._stopping:
            return
        log.warning("chat: lost the cluster (%s); reconnecting", exc)
        self._up = False
        for t in self._link:
            if t is not asyncio.current_task():
                t.cancel()
        self._link = []
        assert self.room is not None
        self.room.set_cluster_up(False)
        self._wake()
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.05
        while not self._stopping:
            await asyncio.sleep(delay * (0.5 + random.random()))  # jitter: nodes spread out
            try:
                await asyncio.wait_for(self._establish(), self.timeout * 2)
            except _FAILURES:
                delay = min(delay * 2, 2.0)
                continue
            self.reconnects += 1
            log.warning("chat: the cluster is back")
            return

    async def _subscriber(self, pubsub: Any) -> None:
        room = self.room
        assert room is not None
        try:
            # listen(): a blocking read per message, no timer per call (cheaper per message
            # than get_message with a timeout); a lost connection raises, cancelling stops it.
            async for m in pubsub.listen():
                if m.get("type") != "message":
                    continue
                try:
                    seq, ev = decode_envelope(m["data"])
                except ValueError:  # not ours: counted, never fatal
                    room.stats["cluster-bad-event"] += 1
                    continue
                if ev.node != self.node:
                    last = self._last.get(ev.node)
                    if last is not None and seq > last + 1:  # published while we were away
                        room.stats["cluster-missed"] += seq - last - 1
                    self._last[ev.node] = seq  # a restarted node starts again from 1
                room.remote_event(ev, time.time())
                self._wake()
        except asyncio.CancelledError:
            raise
        except _FAILURES as exc:
            self._lost(exc)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), self.timeout)

    async def _presence(self) -> None:
        r, room = self._r, self.room
        assert r is not None and room is not None
        try:
            while True:
                await asyncio.sleep(self.period)
                was = await self._refresh(
                    keys=[_alive_key(self.node), _users_key(self.node), NODES],
                    args=[self.node, self.ttl_ms, PREFIX + "nick:"],
                )
                if not was:  # given up for dead by the others (a stall): register again
                    self._lost(ConnectionError("this node's presence had expired"))
                    return
                if asyncio.get_running_loop().time() < self._grace_until:
                    continue
                for node in sorted(set(room.remote.values())):
                    if not await r.exists(_alive_key(node)):
                        await self._reap_node(node)
                        room.remote_node_gone(node)
                        self._wake()
        except asyncio.CancelledError:
            raise
        except _FAILURES as exc:
            self._lost(exc)

    async def _claim_nick(self, nick: str, client: Any = None) -> Any:
        """The claim script (_CLAIM) for ``nick``, on ``client`` (a pipeline) or the connection."""
        return await self._claim(
            keys=[_nick_key(nick), _users_key(self.node)],
            args=[self.node, self.ttl_ms, nick_key(nick), nick],
            client=client,
        )

    async def _claim_all(self) -> None:
        try:
            while self._claims:
                claims, self._claims = self._claims, []
                await self._claim_batch(claims)
        finally:
            self._claiming = False

    async def _claim_batch(self, claims: list[tuple[Hashable, str]]) -> None:
        room, r = self.room, self._r
        assert room is not None and r is not None
        results: list[bool | None]
        try:
            async with r.pipeline(transaction=False) as pipe:
                for _, nick in claims:
                    await self._claim_nick(nick, pipe)
                won = await asyncio.wait_for(pipe.execute(), self.timeout)
            results = [bool(w) for w in won]
        except _FAILURES as exc:
            results = [None] * len(claims)
            self._lost(exc)
        loop = asyncio.get_running_loop()
        for (key, nick), ok in zip(claims, results, strict=True):
            room.claim_result(key, nick, ok, loop.time(), time.time())
        self._wake()

    def _take(self) -> list[ClusterEvent]:
        out, self._queue = self._queue, []
        return out

    async def _drain(self) -> None:
        try:
            while batch := self._take():
                if not self._up:
                    self._undelivered(batch)
                    continue
                try:
                    await self._publish(batch)
                except _FAILURES as exc:
                    self._undelivered(batch)
                    self._lost(exc)
        finally:
            self._draining = False

    def _undelivered(self, batch: list[ClusterEvent]) -> None:
        assert self.room is not None
        n = sum(isinstance(e, NodeSaid) for e in batch)
        self.room.stats["cluster-undelivered"] += n

    async def _publish(self, batch: list[ClusterEvent]) -> None:
        """One PUBLISH per event, pipelined (one round trip per batch, order kept)."""
        r = self._r
        assert r is not None
        async with r.pipeline(transaction=False) as pipe:
            first = self._seq
            for ev in batch:
                data = encode_event(ev)
                self._seq += 1
                pipe.publish(CHANNEL, encode_envelope(self._seq, ev))
                if isinstance(ev, NodeLeft):
                    await self._release(
                        keys=[_nick_key(ev.nick), _users_key(self.node)],
                        args=[self.node, nick_key(ev.nick)],
                        client=pipe,
                    )
                elif self.history and isinstance(ev, NodeSaid) and ev.to is None:
                    pipe.xadd(HISTORY, {"e": data}, maxlen=self.history, approximate=True)
            try:
                await pipe.execute()
            except BaseException:
                self._seq = first  # not published: counted as undelivered, not as a gap
                raise
        self.room.stats["cluster-published"] += len(batch)  # type: ignore[union-attr]
