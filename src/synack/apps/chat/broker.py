"""What the chat's nodes tell each other, and the engine that carries it.

A node is one ``ChatRoom`` (one ``synack chat serve``). Nodes that share an engine form
one chat: the room puts what the others must hear in its ``outbox`` as the events below
(``NodeJoined``, ``NodeLeft``, ``NodeSaid``), and applies the others' events with
``remote_event``. A nick is claimed cluster-wide before ``welcome`` (``room.claims``, answered
by ``room.claim_result``).

Engines (``Broker``):

- ``EmbeddedBroker``, the default: the node is the whole chat. The room keeps every rule
  itself (nicks, ``who``, history), exactly as a single server always has; nothing is
  published and no nick needs a claim beyond the room's own registry.
- ``RedisBroker`` (``redis_broker.py``): one Redis shared by the nodes (publish/subscribe,
  atomic nick claims, presence with a TTL, a capped stream for history).

The events are msgspec structs: one compact JSON object per event on the wire between nodes.

Layer: apps. Imports msgspec, synack.errors and the standard library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from synack.errors import SynackError

__all__ = [
    "Broker",
    "ClusterEvent",
    "ClusterUnavailable",
    "EmbeddedBroker",
    "NodeJoined",
    "NodeLeft",
    "NodeSaid",
    "decode_envelope",
    "decode_event",
    "encode_envelope",
    "encode_event",
]


class ClusterUnavailable(SynackError):
    """The engine cannot reach its cluster (or refuses this node) when the server starts."""


class NodeJoined(msgspec.Struct, frozen=True, tag="j", array_like=True):
    node: str
    nick: str


class NodeLeft(msgspec.Struct, frozen=True, tag="l", array_like=True):
    node: str
    nick: str
    reason: str


class NodeSaid(msgspec.Struct, frozen=True, tag="s", array_like=True):
    node: str
    nick: str
    text: str
    ts: float
    to: str | None = None


ClusterEvent = NodeJoined | NodeLeft | NodeSaid

_decoder: msgspec.json.Decoder[ClusterEvent] = msgspec.json.Decoder(ClusterEvent)
encode_event = msgspec.json.Encoder().encode


def decode_event(data: bytes | str) -> ClusterEvent:
    """``ValueError`` (msgspec's included) for anything that is not an event."""
    return _decoder.decode(data)


# On the channel each event travels with its node's sequence number, so that a receiver
# counts what it missed (a gap) instead of missing it silently.
_envelope_decoder: msgspec.json.Decoder[tuple[int, ClusterEvent]] = msgspec.json.Decoder(
    tuple[int, ClusterEvent]
)


def encode_envelope(seq: int, event: ClusterEvent) -> bytes:
    return encode_event((seq, event))


def decode_envelope(data: bytes | str) -> tuple[int, ClusterEvent]:
    """(seq, event); ``ValueError`` for anything else."""
    return _envelope_decoder.decode(data)


class Broker(Protocol):
    """An engine carrying the events between nodes; what ``ChatServer(cluster=...)`` needs.

    ``room`` is the node's ``chat.core.ChatRoom`` (typed loosely here: the room imports this
    module for the events). ``attach`` makes it a node (``room.join_cluster``) or leaves it
    alone; ``pump`` takes the room's claims and outbox after each input; ``wake`` is called
    after the engine fed the room (remote events, claim results)."""

    def attach(self, room: Any, wake: Callable[[], None]) -> None: ...
    async def start(self) -> None: ...
    def pump(self) -> None: ...
    async def stop(self) -> None: ...


class EmbeddedBroker:
    """The in-process default: one node, no cluster; the room's own registry is the truth.
    ``ChatServer(cluster=EmbeddedBroker())`` is exactly ``ChatServer()``."""

    def attach(self, room: Any, wake: Callable[[], None]) -> None:
        pass  # the room stays un-clustered: it never claims and never fills its outbox

    async def start(self) -> None:
        pass

    def pump(self) -> None:
        pass

    async def stop(self) -> None:
        pass
