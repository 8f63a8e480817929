"""A chat room that is one node of a cluster (docs/protocol.md §2a), sans-IO.

``ChatNode`` is a ``ChatRoom`` plus what a cluster adds; until ``join_cluster`` it is exactly
a ``ChatRoom``. Once joined:

- a ``hello`` for a nick free here is a claim (``take_claims``) and the client waits, its
  later frames held, until ``claim_result`` (won: ``welcome``; taken: ``nick-taken``; cluster
  unreachable: ``cluster-unavailable``);
- what the other nodes must hear (this node's joins, leaves, broadcasts and direct messages to
  their users) goes to ``take_outbox`` as ``chat.broker`` events, in order;
- what they say comes in by ``remote_event``; ``set_remote`` and ``remote_node_gone`` bring the
  list of the other nodes' users up to date, announcing the differences;
- ``set_cluster_up`` tells every client once when the cluster is lost and when it is back;
  meanwhile what would have gone to the other nodes is counted (``cluster-undelivered``).

Message ids stay this node's own: remote broadcasts are numbered here as they arrive, so every
client still sees ids increase.

Layer: apps. Imports chat.core, chat.broker, chat.messages, synack.core.framing and
synack.errors.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

from synack.apps.chat.broker import ClusterEvent, NodeJoined, NodeLeft, NodeSaid
from synack.apps.chat.core import ChatConfig, ChatRoom, _Client, _frame, _listed_size
from synack.apps.chat.messages import Error, Joined, Left, Msg, encode_message, nick_key
from synack.core.framing import encode
from synack.errors import LocalProtocolError

__all__ = ["ChatNode"]

K = TypeVar("K", bound=Hashable)


class ChatNode(ChatRoom[K]):
    """A ``ChatRoom`` that can be one node of a cluster (see the module docstring)."""

    def __init__(self, config: ChatConfig | None = None) -> None:
        super().__init__(config)
        self.node = ""
        self.cluster_up = True
        self.outbox: list[ClusterEvent] = []  # for the other nodes, in order
        self.claims: list[tuple[K, str]] = []  # nicks to claim cluster-wide, for the caller

    def join_cluster(self, node: str) -> None:
        """Make this room one node of a cluster named ``node`` (before any client)."""
        if len(self):
            raise LocalProtocolError("join the cluster before clients connect")
        self.node = node
        self.clustered = True

    # -- the hooks the room calls --------------------------------------------

    def _tell_cluster(self, event: ClusterEvent) -> None:
        if self.cluster_up:
            self.outbox.append(event)
        elif isinstance(event, NodeSaid):
            # Delivered here, not to the other nodes: counted, never silently dropped.
            self.stats["cluster-undelivered"] += 1

    def _node_joined(self, nick: str) -> None:
        self._tell_cluster(NodeJoined(self.node, nick))

    def _node_left(self, nick: str, reason: str) -> None:
        self._tell_cluster(NodeLeft(self.node, nick, reason))

    def _node_said(self, nick: str, text: str, wall: float, to: str | None) -> None:
        self._tell_cluster(NodeSaid(self.node, nick, text, wall, to))

    def _claim(self, c: _Client[K], nick: str) -> None:
        if not self.cluster_up:
            self._error(c, "cluster-unavailable", "the cluster is unreachable: try again later")
            return
        c.claiming = nick
        self._claiming.add(nick)
        self.claims.append((c.key, nick))

    # -- for the engine --------------------------------------------------------

    def take_outbox(self) -> list[ClusterEvent]:
        out, self.outbox = self.outbox, []
        return out

    def take_claims(self) -> list[tuple[K, str]]:
        out, self.claims = self.claims, []
        return out

    def local_users(self) -> list[str]:
        return list(self._users)

    def claim_result(self, key: K, nick: str, ok: bool | None, now: float, wall: float) -> None:
        """The cluster's answer to a claim: True won, False taken, None cluster unreachable."""
        self._claiming.discard(nick)
        c = self._clients.get(key)
        if c is None or c.claiming != nick:
            if ok:  # the client went away meanwhile: free the nick again
                self._tell_cluster(NodeLeft(self.node, nick, "disconnected"))
            return
        c.claiming = None
        if ok is None:
            self._error(c, "cluster-unavailable", "the cluster is unreachable: try again later")
        elif not ok or self._keys.get(nick_key(nick)) is not None:
            # Taken, or a look-alike arrived from another node while the claim was out.
            if ok:  # won in Redis but someone here already has it: give it back
                self._tell_cluster(NodeLeft(self.node, nick, "disconnected"))
            self._error(c, "nick-taken", f"{nick!r} is already online")
        else:
            self._register(c, nick)
        held, c.held = c.held, []
        c.held_size = 0
        if held:
            self.receive(key, held, now, wall)

    def _remote_add(self, nick: str, node: str) -> None:
        if nick in self._users or nick in self.remote:
            return
        self.remote[nick] = node
        # Look-alikes are refused cluster-wide: a remote nick holds its key here too.
        self._keys.setdefault(nick_key(nick), nick)
        self._users_bytes += _listed_size(nick)
        self._broadcast(_frame(Joined(nick=nick)))

    def _remote_remove(self, nick: str, reason: str) -> None:
        del self.remote[nick]
        self._forget_key(nick)
        self._users_bytes -= _listed_size(nick)
        self._broadcast(_frame(Left(nick=nick, reason=reason)))

    def remote_event(self, ev: ClusterEvent, wall: float) -> None:
        """What another node said: joined/left/msg for this node's clients."""
        if ev.node == self.node:
            return
        self.stats["cluster-events"] += 1
        if isinstance(ev, NodeJoined):
            self._remote_add(ev.nick, ev.node)
        elif isinstance(ev, NodeLeft):
            if self.remote.get(ev.nick) == ev.node:
                self._remote_remove(ev.nick, ev.reason)
        elif ev.to is None:
            mid = self._next_id  # ids are this node's: every client sees them increase
            self._next_id += 1
            payload = encode_message(Msg(id=mid, from_=ev.nick, text=ev.text, ts=ev.ts))
            self._broadcast(encode(payload))
            if self.history is not None:
                self.history.add(payload)
        elif (peer := self._users.get(ev.to)) is not None:
            mid = self._next_id
            self._next_id += 1
            msg = Msg(id=mid, from_=ev.nick, text=ev.text, ts=ev.ts, to=ev.to)
            self._send_private(peer, _frame(msg))

    def preload_history(self, events: list[NodeSaid]) -> None:
        """Broadcasts from before this node started (the cluster's history), oldest first."""
        if self.history is None:
            return
        for ev in events:
            if ev.to is None:
                mid = self._next_id
                self._next_id += 1
                self.history.add(encode_message(Msg(id=mid, from_=ev.nick, text=ev.text, ts=ev.ts)))

    def remote_node_gone(self, node: str) -> None:
        """A node stopped refreshing its presence: its users left without a word."""
        for nick in [n for n, at in self.remote.items() if at == node]:
            self._remote_remove(nick, "disconnected")

    def set_remote(self, users: dict[str, str], *, forget: bool = True) -> None:
        """The cluster's users (nick -> node) as read from it: announce the differences
        (``forget=False``: only the newcomers; those missing are left to the presence check)."""
        for nick, node in list(self.remote.items()):
            if forget and users.get(nick) != node:
                self._remote_remove(nick, "disconnected")
        for nick, node in users.items():
            if node != self.node:
                self._remote_add(nick, node)

    def set_cluster_up(self, up: bool) -> None:
        """The cluster was lost (tell every client once) or is back (say so)."""
        if up == self.cluster_up:
            return
        self.cluster_up = up
        if up:
            code, detail = "cluster-restored", "the other nodes are reachable again"
        else:
            code, detail = "cluster-unavailable", "the other nodes are unreachable for now"
        self.stats[code] += 1
        frame = _frame(Error(code=code, detail=detail))
        for c in self._users.values():
            self._send_private(c, frame)
