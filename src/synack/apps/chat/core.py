"""The chat server's rules (docs/protocol.md §2), sans-IO.

``ChatRoom`` decides everything the server decides: registration (nick rules,
nick taken, server full), broadcasts and direct messages, ``who`` with ``more``
so that no user list outgrows a client's frame, heartbeats and idle timeouts,
the per-client rate limit, the bound on a slow reader's queue, and the
``joined``/``left`` announcements. It never reads a clock and never touches a
socket: inputs are a client's payloads (or transport events) plus ``now``;
outputs are bytes to write per client (``flush``), clients to disconnect with
a reason (``disconnects``) and the next deadline (``get_timer``/``handle_timer``).

Clients are named by keys the caller chooses (any hashable: the asyncio
adapter uses its protocol objects, the tests use nicks or numbers), so an
output names its destination without a lookup.

Turns. Inputs only record what to send; ``flush`` ends a turn. Within a turn
every broadcast is encoded once and appended to the turn's list; messages for
one client only (welcome, errors, direct messages, pongs) are noted with
their position in that list. ``flush`` gives each client exactly one write:
the clients with nothing private all share one joined bytes object, the others
get their private frames merged in at the right positions. So every client
sees messages in increasing ``id`` order and each sender's messages in the
order sent (§2 "Order").

Slow readers: while a client's transport asks to pause (``pause``), that
client's output is kept here, bounded in bytes; overflowing the bound
disconnects the client with ``left{reason:"too-slow"}``. Nobody else waits.

Under attack (docs/protocol.md §2b): a connection that has not
registered within ``hello_timeout`` is told ``error{timeout}`` and closed
(pings it answers do not keep it); one host holds at most ``max_per_host``
connections (``server-full`` past that); a client's pings spend a bucket of their
own (an excess ping gets no pong, and is counted; over ``ping_flood`` refused
in a row, the connection is closed); nicks are registered
NFKC-normalised, and one that looks like a nick online (same ``nick_key``:
case folded, confusable letters mapped) is ``nick-taken``.

Timers: one heap entry per client, never later than that client's true
deadline (receiving only moves deadlines later, so entries are fixed up
lazily when they reach the top): ``get_timer`` is exact and cheap.

Cluster (docs/protocol.md §2a): ``chat.node.ChatNode`` makes the room one node of
a chat spread over several; here are only its hooks (the section at the end of the class), the
users of the other nodes (``remote``: listed by ``welcome``/``who``, reachable by ``say`` with
``to``) and what a client sends while its nick is being claimed (held, bounded). ``--history
N`` replays the last N broadcasts after ``welcome`` (``chat.history``), clustered or not.

Layer: apps. Imports synack.core (framing, ratelimit), synack.errors, chat.messages and
chat.history.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import math
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from synack.apps.chat.history import History
from synack.apps.chat.messages import (
    Bye,
    Error,
    Hello,
    Joined,
    Left,
    Msg,
    Ping,
    Pong,
    Say,
    Users,
    Welcome,
    Who,
    check_nick,
    check_text,
    decode_client,
    encode_message,
    nick_key,
    normalize_nick,
)
from synack.core.framing import DEFAULT_MAX_FRAME, Payload, encode
from synack.core.ratelimit import TokenBucket
from synack.errors import LocalProtocolError

__all__ = ["ChatConfig", "ChatRoom", "ClientState", "Disconnect"]

log = logging.getLogger("synack.chat")

K = TypeVar("K", bound=Hashable)

# Room for any single message but a user list: a 4,096-character text is at most 16 KiB
# of UTF-8 plus its envelope.
_MIN_SEND_FRAME = 20_000


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """Server settings; defaults per docs/protocol.md §2 and §5."""

    heartbeat: float = 30.0  # silence before the server sends `ping`
    idle_timeout: float = 90.0  # silence before `error{timeout}` and close
    max_frame: int = DEFAULT_MAX_FRAME
    rate: float = 50.0  # messages per second per client; 0 = no limit
    burst: int = 200  # token bucket size (§5: "a burst of at least 100")
    max_clients: int = 10_000  # connections at once, registered or not
    # Per host: high enough for one-host benchmarks (bench/chat_fanout.py runs 1,010),
    # low enough that one host cannot hold every slot of the default max_clients.
    max_per_host: int = 4_096
    hello_timeout: float = 10.0  # a connection must say hello within this
    # Pings have their own bucket per client (they do not spend message tokens):
    # a client's heartbeat needs one per `heartbeat` s; a flood is answered at this rate.
    ping_rate: float = 5.0
    ping_burst: int = 20
    # Refused pings in a row before the connection is closed: answering fewer pings does
    # not make a flood cheap (each is still read and decoded), so a flooder is let go.
    # A client that pings once per heartbeat is never refused at all.
    ping_flood: int = 100
    max_queue: int = 1 << 20  # bytes held for a client whose transport is paused
    # The largest frame the server sends: what every client accepts by default (§1). Only
    # `welcome` and `users` grow with the room; past this they list who fits and count the rest.
    max_send_frame: int = DEFAULT_MAX_FRAME
    history: int = 0  # broadcasts replayed after `welcome` (0: none)

    def __post_init__(self) -> None:
        # Written as `not (a < x < b)` so that NaN, which compares false, is refused too.
        if not (
            0 < self.heartbeat < math.inf
            and 0 < self.idle_timeout < math.inf
            and 0 < self.hello_timeout < math.inf
        ):
            raise LocalProtocolError(
                "heartbeat, idle timeout and hello timeout must be positive and finite"
            )
        if (
            not 0 <= self.rate < math.inf
            or self.burst < 1
            or self.max_clients < 1
            or self.max_per_host < 1
            or not 0 < self.ping_rate < math.inf
            or self.ping_burst < 1
            or self.max_queue < 1
        ):
            raise LocalProtocolError(
                "rate >= 0, burst >= 1, max clients >= 1, max per host >= 1, max queue >= 1, "
                "ping rate > 0, ping burst >= 1"
            )
        if not 0 <= self.max_frame <= 0xFFFF_FFFF:
            raise LocalProtocolError("max frame must fit a 32-bit length")
        if not _MIN_SEND_FRAME <= self.max_send_frame <= 0xFFFF_FFFF:
            raise LocalProtocolError(f"max send frame must be {_MIN_SEND_FRAME} or more")
        if not 0 <= self.history <= 100_000:
            raise LocalProtocolError("history must be 0 to 100000 messages")


class ClientState(enum.Enum):
    CONNECTED = "connected"  # no hello yet
    REGISTERED = "registered"
    CLOSING = "closing"  # last words queued; closes at the next flush
    CLOSED = "closed"


# The one transition table.
_TRANSITIONS: dict[ClientState, frozenset[ClientState]] = {
    ClientState.CONNECTED: frozenset(
        {ClientState.REGISTERED, ClientState.CLOSING, ClientState.CLOSED}
    ),
    ClientState.REGISTERED: frozenset({ClientState.CLOSING, ClientState.CLOSED}),
    ClientState.CLOSING: frozenset({ClientState.CLOSED}),
    ClientState.CLOSED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Disconnect(Generic[K]):
    """Write ``data`` (the client's last words, maybe empty), then close; or abort at once."""

    client: K
    reason: str  # a `left` reason (§2) or "server-full"
    abort: bool = False
    data: bytes = b""

    def __post_init__(self) -> None:
        if self.abort and self.data:
            raise LocalProtocolError("an abort sends nothing")


def _frame(message: object) -> bytes:
    return encode(encode_message(message))


def _listed_size(nick: str) -> int:
    # Nicks are letters, digits, '_' and '-': nothing JSON escapes, so quotes + UTF-8 + comma.
    return len(nick.encode()) + 3


_BIG_COUNT = 0xFFFF_FFFF  # an envelope's `more` at its widest, for the size budget
_PONG = _frame(Pong())
_PING = _frame(Ping())
_BYE = _frame(Bye())


class _Client(Generic[K]):
    """What the room knows of one connection."""

    __slots__ = (
        "bend",
        "bstart",
        "bucket",
        "claiming",
        "connected_at",
        "flushed",
        "held",
        "held_size",
        "host",
        "key",
        "last_ping",
        "last_rx",
        "nick",
        "paused",
        "peer",
        "pings",
        "pings_refused",
        "private",
        "queue",
        "queued",
        "reason",
        "state",
    )

    def __init__(self, key: K, peer: str, now: float, config: ChatConfig) -> None:
        self.key = key
        self.peer = peer
        # "host:port" ("[v6]:port" or "v6:port"): the host is what is capped.
        self.host = peer.rpartition(":")[0] or peer
        self.connected_at = now
        self.state = ClientState.CONNECTED
        self.nick: str | None = None
        self.reason = ""  # why it is CLOSING
        # This turn's broadcast range [bstart, bend) in the room's turn list.
        self.bstart = 0
        self.bend: int | None = None
        self.private: list[tuple[int, bytes]] = []
        self.flushed = False  # already given its write in the current flush
        self.paused = False
        self.queue: list[bytes] = []
        self.queued = 0
        self.last_rx = now
        self.last_ping = now
        # rate 0 means no limit (§5 `--rate 0`).
        self.bucket = TokenBucket(config.rate, config.burst, now) if config.rate > 0 else None
        self.pings = TokenBucket(config.ping_rate, config.ping_burst, now)
        self.pings_refused = 0  # in a row
        self.claiming: str | None = None  # cluster: the nick asked for, until the claim ends
        self.held: list[Payload] = []  # cluster: frames received while claiming
        self.held_size = 0

    def set_state(self, new: ClientState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise LocalProtocolError(f"client {self.state.value} -> {new.value}")
        log.debug("chat: %s (%s) %s -> %s", self.peer, self.nick, self.state.value, new.value)
        self.state = new

    def deadline(self, config: ChatConfig) -> float:
        # §2 Heartbeat: ping after `heartbeat` s of silence (and again `heartbeat` s after each
        # unanswered ping); give up after `idle_timeout` s of silence, or
        # `hello_timeout` s after connecting without registering.
        at = min(
            max(self.last_rx, self.last_ping) + config.heartbeat,
            self.last_rx + config.idle_timeout,
        )
        if self.state is ClientState.CONNECTED:
            at = min(at, self.connected_at + config.hello_timeout)
        return at


class ChatRoom(Generic[K]):
    """The room. Feed it client events with ``now``; take ``flush()`` and ``disconnects()``."""

    def __init__(self, config: ChatConfig | None = None) -> None:
        self.config = config or ChatConfig()
        self.stats: Counter[str] = Counter()
        self.stopping = False
        self._clients: dict[K, _Client[K]] = {}  # not yet CLOSED
        self._users: dict[str, _Client[K]] = {}  # registration order
        self._keys: dict[str, str] = {}  # nick_key -> nick online
        self._per_host: Counter[str] = Counter()  # open connections by host
        self._users_bytes = 0  # sum over users of the nick's JSON string length plus a comma
        self._next_id = 1
        self._turn: list[bytes] = []
        self._dirty: list[_Client[K]] = []
        self._disconnects: list[Disconnect[K]] = []
        self._timers: list[tuple[float, int, _Client[K]]] = []  # (at, seq, client)
        self._seq = 0
        self.history = History(self.config.history) if self.config.history else None
        # -- cluster (issue 13): set by chat.node.ChatNode; empty in a room alone
        self.clustered = False
        self.remote: dict[str, str] = {}  # nick -> node, users of the other nodes
        self._claiming: set[str] = set()  # nicks out for a cluster-wide claim

    # -- what the caller asks ------------------------------------------------

    @property
    def nicks(self) -> list[str]:
        """Everyone online, in registration order."""
        return list(self._users)

    def __len__(self) -> int:
        """Connections open (registered or not), the count ``max_clients`` limits."""
        return len(self._clients)

    def state(self, key: K) -> ClientState:
        c = self._clients.get(key)
        return ClientState.CLOSED if c is None else c.state

    @property
    def pending(self) -> bool:
        """Something is waiting for ``flush``."""
        return bool(self._turn or self._dirty)

    # -- connections ---------------------------------------------------------

    def connect(self, key: K, now: float, peer: str = "?") -> bool:
        """A new connection. False: refused (``server-full``; see ``disconnects``)."""
        if key in self._clients:
            raise LocalProtocolError(f"client {key!r} is already connected")
        self.stats["connections"] += 1
        c = _Client(key, peer, now, self.config)
        full = self.stopping or len(self._clients) >= self.config.max_clients
        if full or self._per_host[c.host] >= self.config.max_per_host:
            # An extension of §2's codes: the connection is refused politely.
            self.stats["server-full"] += 1
            if not full:
                self.stats["host-full"] += 1
            detail = "too many clients" if full else "too many connections from your host"
            data = _frame(Error(code="server-full", detail=detail))
            self._disconnects.append(Disconnect(key, "server-full", data=data))
            return False
        self._clients[key] = c
        self._per_host[c.host] += 1
        self._push_timer(c, c.deadline(self.config))
        return True

    def receive(self, key: K, payloads: list[Payload], now: float, wall: float) -> None:
        """Frames from one client, in order; ``wall`` (Unix seconds) stamps messages' ``ts``."""
        c = self._clients.get(key)
        if c is None:
            return
        c.last_rx = now  # §2: any received frame counts as life
        for payload in payloads:
            if c.state is not ClientState.CONNECTED and c.state is not ClientState.REGISTERED:
                return  # anything after bye (or an error) is ignored
            if c.claiming is not None:  # cluster: what follows hello waits for its claim
                self._hold(c, payload)
                continue
            try:
                self._handle(c, payload, now, wall)
            except Exception:  # a bug here must cost one client, never the server
                log.exception("chat: internal error handling a frame from %s", c.peer)
                self.stats["internal-error"] += 1
                self._drop(c, "error", abort=True)
                return

    def frame_too_large(self, key: K, detail: str) -> None:
        """The client announced a frame over ``max_frame`` (§1): tell it, then close."""
        self.stats["frame-too-large"] += 1
        c = self._clients.get(key)
        if c is not None:
            self._last_words(c, _frame(Error(code="frame-too-large", detail=detail)), "error")

    def truncated(self, key: K, detail: str) -> None:
        """The stream ended inside a frame: the client vanished mid-frame."""
        self.stats["truncated"] += 1
        c = self._clients.get(key)
        if c is not None:
            log.info("chat: %s %s", c.peer, detail)
            self._drop(c, "disconnected", abort=True)

    def connection_lost(self, key: K) -> None:
        c = self._clients.get(key)
        if c is not None:
            self._drop(c, "disconnected", abort=False)

    def pause(self, key: K) -> None:
        """The client's transport asks us to stop writing: keep its output here."""
        c = self._clients.get(key)
        if c is not None:
            c.paused = True

    def resume(self, key: K) -> bytes:
        """Writing may go on: returns what was kept meanwhile (write it before anything else)."""
        c = self._clients.get(key)
        if c is None:
            return b""
        c.paused = False
        data = b"".join(c.queue)
        c.queue.clear()
        c.queued = 0
        return data

    def stop(self) -> None:
        """Everyone gets ``bye`` and is closed; new connections are refused."""
        self.stopping = True
        for c in list(self._clients.values()):
            self._last_words(c, _BYE, "bye")

    # -- time ----------------------------------------------------------------

    def _push_timer(self, c: _Client[K], at: float) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (at, self._seq, c))

    def get_timer(self) -> float | None:
        """When ``handle_timer`` has something to do next (None: no client)."""
        timers = self._timers
        while timers:
            at, _, c = timers[0]
            if c.state is not ClientState.CONNECTED and c.state is not ClientState.REGISTERED:
                heapq.heappop(timers)  # closing: the next flush closes it
                continue
            true = c.deadline(self.config)
            if true <= at:
                return at
            self._seq += 1
            heapq.heapreplace(timers, (true, self._seq, c))
        return None

    def handle_timer(self, now: float) -> None:
        """Ping the silent, time out the idle (§2 Heartbeat)."""
        cfg = self.config
        due: list[_Client[K]] = []
        while (at := self.get_timer()) is not None and at <= now:
            due.append(heapq.heappop(self._timers)[2])
        for c in due:  # re-armed after the loop: a deadline never makes this spin
            if c.state is not ClientState.CONNECTED and c.state is not ClientState.REGISTERED:
                continue
            if c.state is ClientState.CONNECTED and now >= c.connected_at + cfg.hello_timeout:
                self.stats["timeout"] += 1
                self.stats["hello-timeout"] += 1
                detail = f"no hello within {cfg.hello_timeout:g} s"
                self._last_words(c, _frame(Error(code="timeout", detail=detail)), "timeout")
                continue
            if now >= c.last_rx + cfg.idle_timeout:
                self.stats["timeout"] += 1
                detail = f"nothing received for {cfg.idle_timeout:g} s"
                self._last_words(c, _frame(Error(code="timeout", detail=detail)), "timeout")
                continue
            c.last_ping = now
            self._send_private(c, _PING)
            self._push_timer(c, c.deadline(cfg))

    # -- leaving -------------------------------------------------------------

    def _unregister(self, c: _Client[K], reason: str) -> None:
        """Take a registered client out of the room and tell the others why."""
        if c.nick is not None and self._users.get(c.nick) is c:
            del self._users[c.nick]
            self._forget_key(c.nick)
            self._users_bytes -= _listed_size(c.nick)
            c.bend = len(self._turn)
            if self.clustered:  # the nick is released even when the node stops
                why = "disconnected" if self.stopping else reason  # not the user's bye
                self._node_left(c.nick, why)
            if not self.stopping:  # when the server stops, everyone hears bye instead
                self._broadcast(_frame(Left(nick=c.nick, reason=reason)))

    def _last_words(self, c: _Client[K], frame: bytes, reason: str) -> None:
        """Send one final frame, announce the departure, close after the flush."""
        if c.state is not ClientState.CONNECTED and c.state is not ClientState.REGISTERED:
            return
        self._send_private(c, frame)
        c.set_state(ClientState.CLOSING)
        c.reason = reason
        self._unregister(c, reason)

    def _drop(self, c: _Client[K], reason: str, *, abort: bool) -> None:
        """The connection is gone (or must go now): no last words."""
        if c.state is ClientState.CLOSED:
            return
        if c.state is not ClientState.CLOSING:
            self._unregister(c, reason)
        c.set_state(ClientState.CLOSED)
        self._forget(c)
        c.queue.clear()
        c.queued = 0
        if abort:
            self._disconnects.append(Disconnect(c.key, reason, abort=True))

    def _forget(self, c: _Client[K]) -> None:
        del self._clients[c.key]
        left = self._per_host[c.host] - 1
        if left > 0:
            self._per_host[c.host] = left
        else:
            del self._per_host[c.host]

    def _too_slow(self, c: _Client[K]) -> None:
        self.stats["too-slow"] += 1
        log.info("chat: %s (%s) too slow, disconnected", c.nick, c.peer)
        self._drop(c, "too-slow", abort=True)

    # -- messages ------------------------------------------------------------

    def _error(self, c: _Client[K], code: str, detail: str) -> None:
        self.stats[code] += 1
        self._send_private(c, _frame(Error(code=code, detail=detail)))

    def _handle(self, c: _Client[K], payload: Payload, now: float, wall: float) -> None:
        self.stats["frames"] += 1
        try:
            m = decode_client(payload)
        except ValueError as exc:  # not JSON, not an object, unknown type, wrong types
            self._error(c, "bad-message", str(exc))
            return
        registered = c.state is ClientState.REGISTERED
        if isinstance(m, Say):
            if not registered:
                self._error(c, "not-registered", "say hello first")
            elif c.bucket is not None and not c.bucket.allow(now):
                self._error(c, "rate-limited", "message dropped: too many messages per second")
            elif (why := check_text(m.text)) is not None:
                self._error(c, "bad-text", why)
            elif m.to is None:
                self._say(c, m.text, None, wall)
            elif m.to not in self._users and m.to not in self.remote:
                self._error(c, "no-such-user", f"{m.to!r} is not online")
            else:
                self._say(c, m.text, m.to, wall)
        elif isinstance(m, Hello):
            nick = normalize_nick(m.nick)
            if registered:
                self._error(c, "bad-message", "already registered")
            elif (why := check_nick(nick)) is not None:
                self._error(c, "bad-nick", why)
            elif nick in self._users or nick in self.remote or nick in self._claiming:
                self._error(c, "nick-taken", f"{nick!r} is already online")
            elif (online := self._keys.get(nick_key(nick))) is not None:
                self._error(c, "nick-taken", f"{nick!r} looks like {online!r}, who is online")
            elif self.clustered:
                self._claim(c, nick)
            else:
                self._register(c, nick)
        elif isinstance(m, Who):
            if not registered:
                self._error(c, "not-registered", "say hello first")
            elif c.bucket is not None and not c.bucket.allow(now):
                self._error(c, "rate-limited", "request dropped: too many messages per second")
            else:
                assert c.nick is not None
                users, more = self._user_list(c.nick, Users(users=[], more=_BIG_COUNT))
                self._send_private(c, _frame(Users(users=users, more=more)))
        elif isinstance(m, Ping):
            # Pings have a bucket of their own: a ping flood would otherwise
            # cost the server a frame each and delay everyone (issue 14). No
            # error reply for a refused ping: that would be a frame again.
            if not c.pings.allow(now):
                self.stats["ping-rate-limited"] += 1
                c.pings_refused += 1
                if c.pings_refused > self.config.ping_flood:
                    self.stats["ping-flood"] += 1
                    detail = "ping flood: too many pings per second"
                    self._last_words(c, _frame(Error(code="rate-limited", detail=detail)), "error")
            else:
                c.pings_refused = 0
                self._send_private(c, _PONG)
        elif isinstance(m, Bye):
            self._last_words(c, _BYE, "bye")
        # Pong: receiving it already counted as life.

    def _forget_key(self, nick: str) -> None:
        """``nick`` has gone: its look-alike key is free again, unless it stands for another
        nick (two nodes that each kept a nick through a cluster outage)."""
        key = nick_key(nick)
        if self._keys.get(key) == nick:
            del self._keys[key]

    def _register(self, c: _Client[K], nick: str) -> None:
        self._broadcast(_frame(Joined(nick=nick)))  # to the others: c is not in yet
        c.nick = nick
        c.set_state(ClientState.REGISTERED)
        self._users[nick] = c
        self._keys.setdefault(nick_key(nick), nick)
        self._users_bytes += _listed_size(nick)
        c.bstart = len(self._turn)
        users, more = self._user_list(nick, Welcome(nick=nick, users=[], more=_BIG_COUNT))
        self._send_private(c, _frame(Welcome(nick=nick, users=users, more=more)))
        if self.history is not None and len(self.history):
            self._send_private(c, self.history.replay())
        self.stats["registered"] += 1
        if self.clustered:
            self._node_joined(nick)

    def _user_list(self, me: str, envelope: object) -> tuple[list[str], int]:
        """Everyone online, or, when that would not fit ``max_send_frame``, ``me`` first and
        then as many as fit in registration order; returns (users, how many were left out)."""
        budget = self.config.max_send_frame - len(encode_message(envelope))
        if self._users_bytes <= budget:
            return [*self._users, *self.remote], 0
        out = [me]
        budget -= _listed_size(me)
        for nick in itertools.chain(self._users, self.remote):
            if nick == me:
                continue
            size = _listed_size(nick)
            if size > budget:
                break
            out.append(nick)
            budget -= size
        return out, len(self._users) + len(self.remote) - len(out)

    def _say(self, c: _Client[K], text: str, to: str | None, wall: float) -> None:
        assert c.nick is not None
        mid = self._next_id
        self._next_id += 1
        payload = encode_message(Msg(id=mid, from_=c.nick, text=text, ts=wall, to=to))
        frame = encode(payload)
        self.stats["messages"] += 1
        if to is None:
            self._broadcast(frame)
            if self.history is not None:
                self.history.add(payload)
        else:
            self._send_private(c, frame)
            if to != c.nick and (peer := self._users.get(to)) is not None:  # to yourself: once
                self._send_private(peer, frame)
        if self.clustered and (to is None or to in self.remote):
            self._node_said(c.nick, text, wall, to)

    # -- the once-per-turn flush ---------------------------------------------

    def _broadcast(self, frame: bytes) -> None:
        self._turn.append(frame)

    def _send_private(self, c: _Client[K], frame: bytes) -> None:
        if not c.private:
            self._dirty.append(c)
        c.private.append((len(self._turn), frame))

    def _emit(self, c: _Client[K], data: bytes, writes: list[tuple[K, bytes]]) -> None:
        if not c.paused:
            writes.append((c.key, data))
            return
        c.queue.append(data)
        c.queued += len(data)
        if c.queued > self.config.max_queue:
            self._too_slow(c)

    def flush(self) -> list[tuple[K, bytes]]:
        """End the turn: one write per client that has something (then see ``disconnects``)."""
        turn = self._turn
        dirty = self._dirty
        self._turn = []
        self._dirty = []
        n = len(turn)
        writes: list[tuple[K, bytes]] = []
        for c in dirty:
            if c.state is not ClientState.CLOSED:
                out: list[bytes] = []
                if c.nick is not None and (c.state is ClientState.REGISTERED or c.bend is not None):
                    j, end = c.bstart, (c.bend if c.bend is not None else n)
                else:
                    j = end = n  # not in the room this turn: no broadcasts
                for pos, frame in c.private:
                    if pos > j:
                        out.extend(turn[j : min(pos, end)])
                        j = pos
                    out.append(frame)
                if j < end:
                    out.extend(turn[j:end])
                if c.state is ClientState.CLOSING:
                    # Last words go out even to a paused reader: they are bounded, and the
                    # transport sends them before it closes.
                    out[:0] = c.queue
                    c.queue.clear()
                    c.set_state(ClientState.CLOSED)
                    self._forget(c)
                    self._disconnects.append(Disconnect(c.key, c.reason, data=b"".join(out)))
                else:
                    self._emit(c, b"".join(out), writes)
            c.private.clear()
            c.bstart = 0
            c.bend = None
            c.flushed = True
        if n:
            blob = b"".join(turn)
            # A copy: a too-slow client is removed from the room while we go.
            for c in list(self._users.values()):
                if not c.flushed:
                    if c.paused:
                        self._emit(c, blob, writes)
                    else:
                        writes.append((c.key, blob))
        for c in dirty:
            c.flushed = False
        return writes

    def disconnects(self) -> list[Disconnect[K]]:
        """Clients to close or abort, in order (taken: each is returned once)."""
        out, self._disconnects = self._disconnects, []
        return out

    # -- cluster hooks (issue 13): chat.node.ChatNode fills them in ---------

    def _claim(self, c: _Client[K], nick: str) -> None:
        raise LocalProtocolError("only a cluster node claims nicks")

    def _node_joined(self, nick: str) -> None:
        pass

    def _node_left(self, nick: str, reason: str) -> None:
        pass

    def _node_said(self, nick: str, text: str, wall: float, to: str | None) -> None:
        pass

    def _hold(self, c: _Client[K], payload: Payload) -> None:
        # Bounded like a slow reader's queue: a client cannot park unbounded input here
        # while its claim is out (refused with the rate limiter's code, and counted).
        size = len(payload) + 64  # a frame's own cost, so that tiny frames count too
        if c.held_size + size > self.config.max_queue:
            self._error(c, "rate-limited", "frame dropped: wait for welcome")
            return
        c.held_size += size
        c.held.append(payload)
