"""``--history N``: the last N broadcast messages, replayed to a client after ``welcome``.

A replayed message is the ``msg`` frame the room broadcast, with one member added:
``"history": true`` (docs/protocol.md §2a). Clients that do not know the member
ignore it (§2: unknown members are ignored), so the frame stays a plain ``msg`` to them.
The frames are kept already marked: a join costs one join of bytes, not an encode per
message.

Layer: apps. Imports synack.core.framing and the standard library.
"""

from __future__ import annotations

from collections import deque

from synack.core.framing import encode

__all__ = ["History", "mark"]


def mark(payload: bytes) -> bytes:
    """The ``msg`` payload (a JSON object) with ``"history":true`` as its last member."""
    if not payload.endswith(b"}"):
        raise ValueError("a msg payload is a JSON object")
    return payload[:-1] + b',"history":true}'


class History:
    """The last ``size`` broadcasts, oldest first, as marked frames."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("history size must be 1 or more")
        self._frames: deque[bytes] = deque(maxlen=size)

    def add(self, payload: bytes) -> None:
        self._frames.append(encode(mark(payload)))

    def replay(self) -> bytes:
        """Every kept frame, oldest first, as one write."""
        return b"".join(self._frames)

    def __len__(self) -> int:
        return len(self._frames)
