"""The chat server (PROTOCOLS.md §2): many clients, one event loop, no client
able to crash it or slow the others down.

Shape: one ``ChatSession`` (an asyncio protocol, see ``connection.py``) per
connection, and one ``ChatServer`` holding the room. The server is given a
``create_server``-shaped callable (default ``loop.create_server``), so it runs
unchanged on the kernel's sockets or on any other transport provider.

Sending, the part that decides speed. Within one event-loop turn, every
broadcast is encoded once and appended to the turn's list; messages for one
client only (welcome, errors, direct messages, pongs) are noted with their
position in that list. At the end of the turn each client gets exactly one
``write``: the clients with nothing private all share the same joined bytes
object, the others get their private frames merged in at the right positions.
So every client sees messages in increasing ``id`` order and each sender's
messages in the order sent (§2 "Order").

Slow readers: when a transport asks us to pause (``pause_writing``), that
client's output goes to its own queue, bounded in bytes; overflowing it
disconnects the client with ``left{reason:"too-slow"}``. Nobody else waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass

from synack.apps.chat.connection import CreateServer, FramedProtocol
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
)
from synack.core.framing import DEFAULT_MAX_FRAME, FrameTooLarge, Payload, encode
from synack.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["DEFAULT_PORT", "ChatConfig", "ChatServer", "ChatSession"]

log = logging.getLogger("synack.chat")

DEFAULT_PORT = 8898
# Room for any single message but a user list: a 4,096-character text is at most 16 KiB
# of UTF-8 plus its envelope.
_MIN_SEND_FRAME = 20_000


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """Server settings; defaults per PROTOCOLS.md §2 and §5."""

    heartbeat: float = 30.0  # silence before the server sends `ping`
    idle_timeout: float = 90.0  # silence before `error{timeout}` and close
    max_frame: int = DEFAULT_MAX_FRAME
    rate: float = 50.0  # messages per second per client; 0 = no limit
    burst: int = 200  # token bucket size (§5: "a burst of at least 100")
    max_clients: int = 10_000  # connections at once, registered or not
    max_queue: int = 1 << 20  # bytes held for a client whose transport is paused
    # The largest frame the server sends: what every client accepts by default (§1). Only
    # `welcome` and `users` grow with the room; past this they list who fits and count the rest.
    max_send_frame: int = DEFAULT_MAX_FRAME

    def __post_init__(self) -> None:
        # Written as `not (a < x < b)` so that NaN, which compares false, is refused too.
        if not (0 < self.heartbeat < math.inf and 0 < self.idle_timeout < math.inf):
            raise LocalProtocolError("heartbeat and idle timeout must be positive and finite")
        if (
            not 0 <= self.rate < math.inf
            or self.burst < 1
            or self.max_clients < 1
            or self.max_queue < 1
        ):
            raise LocalProtocolError("rate >= 0, burst >= 1, max clients >= 1, max queue >= 1")
        if not 0 <= self.max_frame <= 0xFFFF_FFFF:
            raise LocalProtocolError("max frame must fit a 32-bit length")
        if not _MIN_SEND_FRAME <= self.max_send_frame <= 0xFFFF_FFFF:
            raise LocalProtocolError(f"max send frame must be {_MIN_SEND_FRAME} or more")


class SessionState(enum.Enum):
    CONNECTED = "connected"  # no hello yet
    REGISTERED = "registered"
    CLOSING = "closing"  # last words queued; closes after the next flush
    CLOSED = "closed"


# The one transition table (house style item 4).
_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.CONNECTED: frozenset(
        {SessionState.REGISTERED, SessionState.CLOSING, SessionState.CLOSED}
    ),
    SessionState.REGISTERED: frozenset({SessionState.CLOSING, SessionState.CLOSED}),
    SessionState.CLOSING: frozenset({SessionState.CLOSED}),
    SessionState.CLOSED: frozenset(),
}


def _frame(message: object) -> bytes:
    return encode(encode_message(message))


def _listed_size(nick: str) -> int:
    # Nicks are letters, digits, '_' and '-': nothing JSON escapes, so quotes + UTF-8 + comma.
    return len(nick.encode()) + 3


_BIG_COUNT = 0xFFFF_FFFF  # an envelope's `more` at its widest, for the size budget
_PONG = _frame(Pong())
_PING = _frame(Ping())
_BYE = _frame(Bye())


class ChatSession(FramedProtocol):
    """One client connection."""

    def __init__(self, server: ChatServer) -> None:
        super().__init__(server.config.max_frame)
        self.server = server
        self.state = SessionState.CONNECTED
        self.nick: str | None = None
        self.peer: str = "?"
        # This turn's broadcast range [bstart, bend) in server._turn.
        self.bstart = 0
        self.bend: int | None = None
        self.private: list[tuple[int, bytes]] = []
        self.queue: list[bytes] = []
        self.queued = 0
        now = self._loop.time()
        self.last_rx = now
        self.last_ping = now
        self.tokens = float(server.config.burst)
        self.tokens_at = now
        self.timer: asyncio.TimerHandle | None = None
        self.flushed = False  # already written to in the current flush

    def _set_state(self, new: SessionState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise LocalProtocolError(f"session {self.state.value} -> {new.value}")
        log.debug("chat: %s (%s) %s -> %s", self.peer, self.nick, self.state.value, new.value)
        self.state = new

    # -- transport events ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        self.server._connected(self)

    def frames_received(self, frames: list[Payload]) -> None:
        self.last_rx = self._loop.time()
        server = self.server
        for payload in frames:
            if self.state is not SessionState.CONNECTED and self.state is not (
                SessionState.REGISTERED
            ):
                return  # anything after bye (or an error) is ignored
            try:
                server._handle(self, payload)
            except Exception:  # a bug here must cost one client, never the server
                log.exception("chat: internal error handling a frame from %s", self.peer)
                server.stats["internal-error"] += 1
                server._drop(self, "error", abort=True)
                return

    def protocol_error(self, exc: RemoteProtocolError) -> None:
        server = self.server
        if isinstance(exc, FrameTooLarge):
            server.stats["frame-too-large"] += 1
            server._last_words(self, Error(code="frame-too-large", detail=str(exc)), "error")
        else:  # truncated at end of stream: the client vanished mid-frame
            server.stats["truncated"] += 1
            log.info("chat: %s %s", self.peer, exc)
            server._drop(self, "disconnected", abort=True)

    def closed_by_peer(self, exc: Exception | None) -> None:
        self.server._drop(self, "disconnected", abort=False)
        self.server._gone(self)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.queue and self.transport is not None and not self.closed:
            data = b"".join(self.queue)
            self.queue.clear()
            self.queued = 0
            self.transport.write(data)

    # -- output --------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            return
        if self.write_paused:
            self.queue.append(data)
            self.queued += len(data)
            if self.queued > self.server.config.max_queue:
                self.server._too_slow(self)
            return
        self.transport.write(data)

    # -- timers --------------------------------------------------------------

    def arm_timer(self) -> None:
        cfg = self.server.config
        deadline = min(
            max(self.last_rx, self.last_ping) + cfg.heartbeat, self.last_rx + cfg.idle_timeout
        )
        self.timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        if self.state is SessionState.CLOSED or self.state is SessionState.CLOSING:
            return
        server = self.server
        cfg = server.config
        now = self._loop.time()
        if now - self.last_rx >= cfg.idle_timeout:
            server.stats["timeout"] += 1
            server._last_words(
                self,
                Error(code="timeout", detail=f"nothing received for {cfg.idle_timeout:g} s"),
                "timeout",
            )
            return
        if now - max(self.last_rx, self.last_ping) >= cfg.heartbeat:
            self.last_ping = now
            server._send_private(self, _PING)
        self.arm_timer()

    def rate_ok(self) -> bool:
        cfg = self.server.config
        if cfg.rate <= 0:
            return True
        now = self._loop.time()
        self.tokens = min(float(cfg.burst), self.tokens + (now - self.tokens_at) * cfg.rate)
        self.tokens_at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class ChatServer:
    """The chat room. ``await start(host, port)``, ``await stop()``."""

    def __init__(
        self, config: ChatConfig | None = None, *, create_server: CreateServer | None = None
    ):
        self.config = config or ChatConfig()
        self._create_server = create_server
        self._server: object | None = None
        self.sessions: set[ChatSession] = set()  # not yet CLOSED
        self._live: set[ChatSession] = set()  # transport not yet lost
        self.users: dict[str, ChatSession] = {}
        self._users_bytes = 0  # sum over users of the nick's JSON string length plus a comma
        self.stats: Counter[str] = Counter()
        self._next_id = 1
        self._turn: list[bytes] = []
        self._dirty: list[ChatSession] = []
        self._flush_handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._all_closed: asyncio.Event | None = None

    # -- lifecycle -----------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self._loop = asyncio.get_running_loop()
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        create = self._create_server or self._loop.create_server
        self._server = await create(lambda: ChatSession(self), host, port)

    @property
    def sockets(self) -> list[object]:
        return list(getattr(self._server, "sockets", None) or [])

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every listening socket (the real port when started on 0)."""
        out: list[tuple[str, int]] = []
        for sock in self.sockets:
            name = sock.getsockname()  # type: ignore[attr-defined]
            out.append((str(name[0]), int(name[1])))
        return out

    async def stop(self, timeout: float = 2.0) -> None:
        """Stop accepting, tell every client ``bye``, and close them all."""
        if self._stopping:
            return
        self._stopping = True
        server = self._server
        if server is not None:
            server.close()  # type: ignore[attr-defined]
        for s in list(self.sessions):
            if s.state is SessionState.CONNECTED or s.state is SessionState.REGISTERED:
                self._last_words(s, Bye(), "bye")
        self._flush()
        if self._all_closed is not None and self._live:
            try:
                await asyncio.wait_for(self._all_closed.wait(), timeout)
            except TimeoutError:
                for s in list(self._live):
                    s.abort()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout)  # type: ignore[attr-defined]

    # -- connections ---------------------------------------------------------

    def _connected(self, s: ChatSession) -> None:
        self.stats["connections"] += 1
        if self._stopping or len(self.sessions) >= self.config.max_clients:
            # An extension of §2's codes: the connection is refused politely.
            self.stats["server-full"] += 1
            s._set_state(SessionState.CLOSED)
            if s.transport is not None:
                s.transport.write(_frame(Error(code="server-full", detail="too many clients")))
                s.transport.close()
            return
        self.sessions.add(s)
        self._live.add(s)
        if self._all_closed is not None:
            self._all_closed.clear()
        s.arm_timer()

    def _forget(self, s: ChatSession) -> None:
        if s.timer is not None:
            s.timer.cancel()
            s.timer = None
        self.sessions.discard(s)

    def _gone(self, s: ChatSession) -> None:
        self._live.discard(s)
        if not self._live and self._all_closed is not None:
            self._all_closed.set()

    def _unregister(self, s: ChatSession, reason: str) -> None:
        """Take a registered client out of the room and tell the others why."""
        if s.nick is not None and self.users.get(s.nick) is s:
            del self.users[s.nick]
            self._users_bytes -= _listed_size(s.nick)
            s.bend = len(self._turn)
            if not self._stopping:  # when the server stops, everyone hears bye instead
                self._broadcast(_frame(Left(nick=s.nick, reason=reason)))

    def _last_words(self, s: ChatSession, message: object, reason: str) -> None:
        """Send one final message, announce the departure, close after the flush."""
        if s.state is SessionState.CLOSING or s.state is SessionState.CLOSED:
            return
        self._send_private(s, _frame(message) if not isinstance(message, Bye) else _BYE)
        s._set_state(SessionState.CLOSING)
        self._unregister(s, reason)

    def _drop(self, s: ChatSession, reason: str, *, abort: bool) -> None:
        """The connection is gone (or must go now): no last words."""
        if s.state is not SessionState.CLOSED:
            if s.state is not SessionState.CLOSING:
                self._unregister(s, reason)
            s._set_state(SessionState.CLOSED)
        self._forget(s)
        if abort:
            s.abort()

    def _too_slow(self, s: ChatSession) -> None:
        self.stats["too-slow"] += 1
        log.info("chat: %s (%s) too slow, disconnected", s.nick, s.peer)
        s.queue.clear()
        s.queued = 0
        self._drop(s, "too-slow", abort=True)

    # -- messages ------------------------------------------------------------

    def _error(self, s: ChatSession, code: str, detail: str) -> None:
        self.stats[code] += 1
        self._send_private(s, _frame(Error(code=code, detail=detail)))

    def _handle(self, s: ChatSession, payload: Payload) -> None:
        self.stats["frames"] += 1
        try:
            m = decode_client(payload)
        except ValueError as exc:  # not JSON, not an object, unknown type, wrong types
            self._error(s, "bad-message", str(exc))
            return
        registered = s.state is SessionState.REGISTERED
        if isinstance(m, Say):
            if not registered:
                self._error(s, "not-registered", "say hello first")
            elif not s.rate_ok():
                self._error(s, "rate-limited", "message dropped: too many messages per second")
            elif (why := check_text(m.text)) is not None:
                self._error(s, "bad-text", why)
            elif m.to is None:
                self._say(s, m.text, None)
            elif m.to not in self.users:
                self._error(s, "no-such-user", f"{m.to!r} is not online")
            else:
                self._say(s, m.text, m.to)
        elif isinstance(m, Hello):
            if registered:
                self._error(s, "bad-message", "already registered")
            elif (why := check_nick(m.nick)) is not None:
                self._error(s, "bad-nick", why)
            elif m.nick in self.users:
                self._error(s, "nick-taken", f"{m.nick!r} is already online")
            else:
                self._register(s, m.nick)
        elif isinstance(m, Who):
            if not registered:
                self._error(s, "not-registered", "say hello first")
            elif not s.rate_ok():
                self._error(s, "rate-limited", "request dropped: too many messages per second")
            else:
                assert s.nick is not None
                users, more = self._user_list(s.nick, Users(users=[], more=_BIG_COUNT))
                self._send_private(s, _frame(Users(users=users, more=more)))
        elif isinstance(m, Ping):
            self._send_private(s, _PONG)
        elif isinstance(m, Bye):
            self._last_words(s, Bye(), "bye")
        # Pong: receiving it already counted as life.

    def _register(self, s: ChatSession, nick: str) -> None:
        self._broadcast(_frame(Joined(nick=nick)))  # to the others: s is not in yet
        s.nick = nick
        s._set_state(SessionState.REGISTERED)
        self.users[nick] = s
        self._users_bytes += _listed_size(nick)
        s.bstart = len(self._turn)
        users, more = self._user_list(nick, Welcome(nick=nick, users=[], more=_BIG_COUNT))
        self._send_private(s, _frame(Welcome(nick=nick, users=users, more=more)))
        self.stats["registered"] += 1

    def _user_list(self, me: str, envelope: object) -> tuple[list[str], int]:
        """Everyone online, or, when that would not fit ``max_send_frame``, ``me`` first and
        then as many as fit in registration order; returns (users, how many were left out)."""
        budget = self.config.max_send_frame - len(encode_message(envelope))
        if self._users_bytes <= budget:
            return list(self.users), 0
        out = [me]
        budget -= _listed_size(me)
        for nick in self.users:
            if nick == me:
                continue
            size = _listed_size(nick)
            if size > budget:
                break
            out.append(nick)
            budget -= size
        return out, len(self.users) - len(out)

    def _say(self, s: ChatSession, text: str, to: str | None) -> None:
        assert s.nick is not None
        mid = self._next_id
        self._next_id += 1
        frame = _frame(Msg(id=mid, from_=s.nick, text=text, ts=time.time(), to=to))
        self.stats["messages"] += 1
        if to is None:
            self._broadcast(frame)
        else:
            self._send_private(s, frame)
            if to != s.nick:
                self._send_private(self.users[to], frame)

    # -- the once-per-turn flush ---------------------------------------------

    def _schedule(self) -> None:
        if self._flush_handle is None:
            assert self._loop is not None
            self._flush_handle = self._loop.call_soon(self._flush)

    def _broadcast(self, frame: bytes) -> None:
        self._turn.append(frame)
        self._schedule()

    def _send_private(self, s: ChatSession, frame: bytes) -> None:
        if not s.private:
            self._dirty.append(s)
        s.private.append((len(self._turn), frame))
        self._schedule()

    def _flush(self) -> None:
        self._flush_handle = None
        turn = self._turn
        dirty = self._dirty
        self._turn = []
        self._dirty = []
        n = len(turn)
        for s in dirty:
            if s.state is not SessionState.CLOSED:
                out: list[bytes] = []
                if s.nick is not None and (
                    s.state is SessionState.REGISTERED or s.bend is not None
                ):
                    j, end = s.bstart, (s.bend if s.bend is not None else n)
                else:
                    j = end = n  # not in the room this turn: no broadcasts
                for pos, frame in s.private:
                    if pos > j:
                        out.extend(turn[j : min(pos, end)])
                        j = pos
                    out.append(frame)
                if j < end:
                    out.extend(turn[j:end])
                s._write(b"".join(out))
                if s.state is SessionState.CLOSING:
                    s._set_state(SessionState.CLOSED)
                    self._forget(s)
                    s.close()
            s.private.clear()
            s.bstart = 0
            s.bend = None
            s.flushed = True
        if n:
            blob = b"".join(turn)
            # A copy: a too-slow client is removed from the room while we write.
            for s in list(self.users.values()):
                if not s.flushed:
                    s._write(blob)
        for s in dirty:
            s.flushed = False

    def counts(self) -> dict[str, int]:
        return dict(self.stats)
