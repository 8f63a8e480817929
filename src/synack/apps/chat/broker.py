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

Layer: apps. Imports msgspec and the standard library.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

__all__ = [
    "Broker",
    "ClusterEvent",
    "EmbeddedBroker",
    "NodeJoined",
    "NodeLeft",
    "NodeSaid",
    "decode_event",
    "encode_event",
]


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


class Broker(Protocol):
    """An engine carrying the events between nodes (see the module docstring)."""

    @property
    def clustered(self) -> bool:
        """False: this node is the whole chat (the room decides alone)."""
        ...

    @property
    def node(self) -> str: ...


class EmbeddedBroker:
    """The in-process default: one node, no cluster; the room's own registry is the truth."""

    clustered = False

    def __init__(self, node: str = "local") -> None:
        self._node = node

    @property
    def node(self) -> str:
        return self._node
