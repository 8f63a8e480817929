"""The UDP messenger's protocol (docs/protocol.md §4), sans-IO.

UDP promises nothing: a datagram may be lost, duplicated or reordered, and
nobody tells the sender. This core adds exactly what a chat needs on top:

- every ``msg`` carries an ``id`` that increases per sender, from a secret
  random start by secret random steps, so an off-path stranger cannot guess
  one and forge its ``ack``;
- the receiver answers every ``msg`` with an ``ack`` (duplicates included:
  the first ack may be the one that was lost) and shows each message once.
  A message's identity is (source address, id), never the claimed ``from``:
  a stranger naming itself ``bob`` shares nothing with the contact bob, so it
  can neither suppress bob's messages nor replay them. Contacts' histories
  are never evicted; strangers share a bounded table (evicting a stranger
  only lets that stranger's old message show again, which it could send anew
  anyway);
- an ``ack`` counts only from the address the ``msg`` went to, for an id that
  is still pending there.

What is not defended: someone who can forge a contact's source address (on
the path, or spoofing on the same network) can forge anything that contact
says; that needs authentication, which the protocol does not have.
- the sender retransmits an unacknowledged ``msg`` with a doubling timeout
  (0.5 s, 1 s, 2 s, ...) and after the last try reports it undelivered.

"Undelivered" means "no ack came back", not "not shown": the message may have
arrived and every ack been lost. That is the honest limit of acknowledgement
over a lossy channel (the two generals), and the reason reports say so.

Time is an argument: ``now`` in, datagrams + events + the next deadline out.

Layer: apps. Imports synack.errors.
"""

from __future__ import annotations

import heapq
import json
import math
import secrets
from collections import OrderedDict, deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from synack.errors import LocalProtocolError

Address = tuple[str, int]

MAX_DATAGRAM = 1200
INITIAL_TIMEOUT = 0.5
TRIES = 5
MAX_NAME = 64
# Per sender, how many recent ids are remembered for duplicate suppression;
# an id older than the window is taken as a (very late) duplicate.
DEDUP_WINDOW = 4096
MAX_SENDERS = 1024  # strangers remembered (contacts are always remembered)
# Ids: the wall-clock second times 2**29, plus a secret random 29-bit offset,
# then a secret random step in 1..ID_STEP per message. Increasing (docs/protocol.md
# §4) within a run and, from the clock, across restarts (a peer's duplicate
# window must not swallow a restarted sender's new ids) as long as a run sends
# fewer than 2**29 / (ID_STEP / 2) = 16,384 messages per second; secret, so an
# off-path stranger must guess among 2**29 ids to forge an ack of a first
# message, 2**16 for a later one it has not seen. Good to the year 2242.
ID_SECRET_BITS = 29
ID_STEP = 1 << 16


def secret_first_id(wall_seconds: float) -> int:
    """A first message id for a run started at ``wall_seconds`` (Unix time)."""
    return (max(0, int(wall_seconds)) << ID_SECRET_BITS) + secrets.randbelow(1 << ID_SECRET_BITS)


@dataclass(frozen=True, slots=True)
class MessageReceived:
    source: Address
    sender: str  # what the peer calls itself (the ``from`` member)
    id: int
    text: str  # as sent: may hold control characters or lone surrogates (escape to show)
    ts: float | None
    contact: bool = False  # the source address is one of the peer's contacts

    def __post_init__(self) -> None:
        if self.id < 0:
            raise ValueError("message id must be >= 0")


@dataclass(frozen=True, slots=True)
class Delivered:
    to: Address
    id: int


@dataclass(frozen=True, slots=True)
class Undelivered:
    to: Address
    id: int
    tries: int


Event = MessageReceived | Delivered | Undelivered


@dataclass(slots=True)
class Counters:
    sent: int = 0
    retransmitted: int = 0
    received: int = 0
    duplicates: int = 0
    acks_sent: int = 0
    oversized: int = 0
    malformed: int = 0
    stray_acks: int = 0  # unknown id, already acked, or from the wrong address
    strangers_forgotten: int = 0  # stranger histories evicted from the bounded table


@dataclass(slots=True)
class _Outgoing:
    to: Address
    payload: bytes
    deadline: float
    timeout: float
    sent: int = 1


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63


def encode_msg(msg_id: int, sender: str, text: str, ts: float) -> bytes:
    obj = {"type": "msg", "id": msg_id, "from": sender, "text": text, "ts": ts}
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def encode_ack(msg_id: int) -> bytes:
    return b'{"type":"ack","id":%d}' % msg_id


@dataclass(slots=True)
class _Seen:
    """Recently shown ids of one sender (bounded)."""

    ids: set[int] = field(default_factory=set)
    order: deque[int] = field(default_factory=deque)
    floor: int = -1  # ids <= floor have been forgotten: treated as seen

    def check_and_add(self, msg_id: int) -> bool:
        """True if new (show it), False if a duplicate."""
        if msg_id <= self.floor or msg_id in self.ids:
            return False
        self.ids.add(msg_id)
        self.order.append(msg_id)
        if len(self.order) > DEDUP_WINDOW:
            old = self.order.popleft()
            self.ids.discard(old)
            self.floor = max(self.floor, old)
        return True


class UdpChatPeer:
    """One messenger peer. Feed it datagrams and timer ticks; drain what it says."""

    def __init__(
        self,
        name: str,
        *,
        first_id: int | None = None,
        wall_start: float = 0.0,
        contacts: Collection[Address] = (),
        initial_timeout: float = INITIAL_TIMEOUT,
        tries: int = TRIES,
        max_datagram: int = MAX_DATAGRAM,
    ) -> None:
        if not 1 <= len(name) <= MAX_NAME:
            raise LocalProtocolError(f"name must be 1 to {MAX_NAME} characters")
        if not 0 < initial_timeout < math.inf or tries < 1:
            raise LocalProtocolError("initial_timeout must be > 0 and tries >= 1")
        # An explicit first_id (tests) counts up by one; the default is secret
        # (``wall_start`` is the Unix time the run started, from the adapter).
        self._random_ids = first_id is None
        if first_id is None:
            first_id = secret_first_id(wall_start)
        if not _is_int(first_id):
            raise LocalProtocolError("first_id must be a non-negative 63-bit integer")
        self.name = name
        self.initial_timeout = initial_timeout
        self.tries = tries
        self.max_datagram = max_datagram
        self.counters = Counters()
        self._next_id = first_id
        self._pending: dict[int, _Outgoing] = {}
        self._timers: list[tuple[float, int]] = []  # (deadline, id), lazily pruned
        self._out: list[tuple[bytes, Address]] = []
        self._events: deque[Event] = deque()
        self._contacts = frozenset(contacts)
        self._known: dict[Address, _Seen] = {a: _Seen() for a in self._contacts}
        self._strangers: OrderedDict[Address, _Seen] = OrderedDict()

    # -- sending ---------------------------------------------------------

    def send(self, to: Address, text: str, now: float, ts: float) -> int:
        """Queue a message; returns its id. LocalProtocolError if it cannot go out."""
        if not text:
            raise LocalProtocolError("empty message")
        msg_id = self._next_id
        payload = encode_msg(msg_id, self.name, text, ts)
        if len(payload) > self.max_datagram:
            raise LocalProtocolError(
                f"message too long: {len(payload)} bytes as a datagram, limit {self.max_datagram}"
            )
        self._next_id += 1 + (secrets.randbelow(ID_STEP) if self._random_ids else 0)
        out = _Outgoing(to, payload, now + self.initial_timeout, self.initial_timeout)
        self._pending[msg_id] = out
        heapq.heappush(self._timers, (out.deadline, msg_id))
        self._out.append((payload, to))
        self.counters.sent += 1
        return msg_id

    @property
    def pending(self) -> int:
        """Messages neither acknowledged nor reported undelivered yet."""
        return len(self._pending)

    # -- receiving -------------------------------------------------------

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        """Handle one datagram. A peer can never make this raise: bad input is counted."""
        if len(data) > self.max_datagram:
            self.counters.oversized += 1
            return
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            self.counters.malformed += 1
            return
        if not isinstance(obj, dict):
            self.counters.malformed += 1
            return
        kind = obj.get("type")
        if kind == "msg":
            self._on_msg(obj, source)
        elif kind == "ack":
            self._on_ack(obj, source)
        else:
            self.counters.malformed += 1

    def _on_msg(self, obj: dict[str, Any], source: Address) -> None:
        msg_id, sender, text, ts = obj.get("id"), obj.get("from"), obj.get("text"), obj.get("ts")
        if (
            not _is_int(msg_id)
            or not isinstance(sender, str)
            or not 1 <= len(sender) <= MAX_NAME
            or not isinstance(text, str)
            or not text
        ):
            self.counters.malformed += 1
            return
        if ts is not None and (
            isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts)
        ):
            ts = None
        assert isinstance(msg_id, int)
        # Ack every msg, duplicates included: the duplicate exists because
        # our previous ack (or the first copy) was lost.
        self._out.append((encode_ack(msg_id), source))
        self.counters.acks_sent += 1
        seen = self._known.get(source)
        if seen is None:
            seen = self._strangers.pop(source, None)
            if seen is None:
                seen = _Seen()
                if len(self._strangers) >= MAX_SENDERS:
                    self._strangers.popitem(last=False)
                    self.counters.strangers_forgotten += 1
            self._strangers[source] = seen
        if not seen.check_and_add(msg_id):
            self.counters.duplicates += 1
            return
        self.counters.received += 1
        self._events.append(
            MessageReceived(
                source,
                sender,
                msg_id,
                text,
                float(ts) if ts is not None else None,
                source in self._contacts,
            )
        )

    def _on_ack(self, obj: dict[str, Any], source: Address) -> None:
        msg_id = obj.get("id")
        if not _is_int(msg_id):
            self.counters.malformed += 1
            return
        assert isinstance(msg_id, int)
        out = self._pending.get(msg_id)
        # Only the peer we sent it to may acknowledge it.
        if out is None or out.to != source:
            self.counters.stray_acks += 1
            return
        del self._pending[msg_id]
        self._events.append(Delivered(out.to, msg_id))

    # -- time ------------------------------------------------------------

    def get_timer(self) -> float | None:
        timers = self._timers
        while timers:
            deadline, msg_id = timers[0]
            out = self._pending.get(msg_id)
            if out is not None and out.deadline == deadline:
                return deadline
            heapq.heappop(timers)  # acked or rescheduled since
        return None

    def handle_timer(self, now: float) -> None:
        while (deadline := self.get_timer()) is not None and deadline <= now:
            _, msg_id = heapq.heappop(self._timers)
            out = self._pending[msg_id]
            if out.sent >= self.tries:
                del self._pending[msg_id]
                self._events.append(Undelivered(out.to, msg_id, out.sent))
                continue
            out.sent += 1
            out.timeout *= 2
            out.deadline = now + out.timeout
            heapq.heappush(self._timers, (out.deadline, msg_id))
            self._out.append((out.payload, out.to))
            self.counters.retransmitted += 1

    # -- output ----------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None
