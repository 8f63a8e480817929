"""Ephemeral port selection for a host's UDP and TCP (RFC 6056, RFC 6335).

Layer: stack. Imports synack.stack.config.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from synack.stack.config import EPHEMERAL_HIGH, EPHEMERAL_LOW, Address, AddressInUseError

_SPAN = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1


class EphemeralPorts:
    """Picks free ports in the dynamic range (RFC 6335 §6) with the host's ``rng``."""

    __slots__ = ("_next", "rng")

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._next: dict[Address, int] = {}  # per destination: where to look next

    def pick(self, used: Callable[[int], bool]) -> int:
        """A free port (``used`` says which are not), from a random start."""
        start = self.rng.randrange(_SPAN)
        for i in range(_SPAN):
            port = EPHEMERAL_LOW + (start + i) % _SPAN
            if not used(port):
                return port
        raise AddressInUseError("no free ephemeral port")

    def pick_for(self, remote: Address, used: Callable[[int], bool]) -> int:
        """RFC 6056 §3.3.3-style: a random starting point per destination,
        then consecutive ports, so a destination sees a port again only after
        the whole range (its TIME-WAIT entries have long expired by then)."""
        nxt = self._next.get(remote)
        if nxt is None:
            if len(self._next) >= 4096:
                self._next.clear()
            nxt = self.rng.randrange(_SPAN)
        for i in range(_SPAN):
            port = EPHEMERAL_LOW + (nxt + i) % _SPAN
            if not used(port):
                self._next[remote] = (nxt + i + 1) % _SPAN
                return port
        raise AddressInUseError("no free ephemeral port")
