"""An in-process Ethernet hub for asyncio drivers (no root, no devices).

Layer: links. Imports synack.links.base.
"""

from __future__ import annotations

import asyncio

from synack.links.base import FrameSink


class MemoryHub:
    """An in-process Ethernet hub for drivers on one loop: every frame goes
    to every other port (hosts filter by MAC), delivered by ``call_soon``.
    The real-time counterpart of :class:`synack.links.lan.Lan`, for adapter
    tests that need no root."""

    def __init__(self) -> None:
        self._ports: list[_HubPort] = []

    def port(self) -> _HubPort:
        p = _HubPort(self)
        self._ports.append(p)
        return p

    def _carry(self, sender: _HubPort, frame: bytes) -> None:
        for p in self._ports:
            if p is not sender and p.sink is not None and p.loop is not None:
                p.pending.append(frame)
                if not p.scheduled:
                    p.scheduled = True
                    p.loop.call_soon(p.deliver)


class _HubPort:
    def __init__(self, hub: MemoryHub) -> None:
        self.hub = hub
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sink: FrameSink | None = None
        self.pending: list[bytes] = []
        self.scheduled = False

    def start(self, loop: asyncio.AbstractEventLoop, sink: FrameSink) -> None:
        self.loop = loop
        self.sink = sink

    def deliver(self) -> None:
        self.scheduled = False
        frames, self.pending = self.pending, []
        if self.sink is not None:
            self.sink(frames)

    def send(self, frame: bytes) -> None:
        self.hub._carry(self, frame)

    def close(self) -> None:
        self.sink = None
        if self in self.hub._ports:
            self.hub._ports.remove(self)
