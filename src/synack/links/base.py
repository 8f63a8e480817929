"""What a real-time link is to the asyncio driver: a start, a send and a close.

Layer: links. Imports nothing of synack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

FrameSink = Callable[[list[bytes]], None]


class Link(Protocol):
    """How a driver's frames move: started once with the loop and a sink for
    arriving frames; ``send`` puts one frame on the wire."""

    def start(self, loop: asyncio.AbstractEventLoop, sink: FrameSink) -> None: ...
    def send(self, frame: bytes) -> None: ...
    def close(self) -> None: ...
