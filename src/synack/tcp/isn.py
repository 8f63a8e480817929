"""Initial sequence numbers per RFC 6528 §3.

    ISN = M + F(localip, localport, remoteip, remoteport, secretkey)

M is a clock ticking every 4 microseconds (RFC 9293 §3.4.1 MUST-8), F a keyed
hash of the connection's 4-tuple that an outsider cannot compute (MUST-9,
SHLD-1). The secret is injected so that a test or a simulation reproduces a
run bit for bit (house style item 3); a real host draws it once from
``secrets.token_bytes``.

Layer: tcp. Imports synack.errors, synack.wire._fast and synack.tcp.seq.
"""

from __future__ import annotations

import hashlib
import struct
from ipaddress import IPv4Address

from synack.errors import LocalProtocolError
from synack.tcp.seq import seq_add
from synack.wire._fast import address_int

#: RFC 6528 §3: "M is the 4 microsecond timer".
TICKS_PER_SECOND = 250_000
# The hashed 4-tuple: local address, port, remote address, port (network order).
_TUPLE = struct.Struct("!IHIH")


class IsnGenerator:
    """Compute RFC 6528 ISNs from a secret key; ``now`` is seconds on any clock."""

    __slots__ = ("_key", "_keyed")

    def __init__(self, secret: bytes) -> None:
        if not 16 <= len(secret) <= 64:
            # blake2s takes keys up to 32 bytes; we hash longer ones down.
            raise LocalProtocolError("the ISN secret must be 16 to 64 bytes")
        self._key = secret if len(secret) <= 32 else hashlib.sha256(secret).digest()
        # Keying blake2s costs more than hashing 12 octets: key it once and
        # copy the keyed state per ISN (the same digest as keying each time).
        self._keyed = hashlib.blake2s(key=self._key, digest_size=4)

    def __call__(
        self,
        local: tuple[IPv4Address, int],
        remote: tuple[IPv4Address, int],
        now: float,
    ) -> int:
        return self.for_ints(
            address_int(local[0]), local[1], address_int(remote[0]), remote[1], now
        )

    def for_ints(self, lip: int, lport: int, rip: int, rport: int, now: float) -> int:
        """The ISN of the 4-tuple with its addresses as ints (the host's SYN path)."""
        h = self._keyed.copy()
        h.update(_TUPLE.pack(lip, lport, rip, rport))
        f = int.from_bytes(h.digest())
        m = int(now * TICKS_PER_SECOND)
        return seq_add(m, f)
