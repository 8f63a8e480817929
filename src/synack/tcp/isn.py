"""Initial sequence numbers per RFC 6528 §3.

    ISN = M + F(localip, localport, remoteip, remoteport, secretkey)

M is a clock ticking every 4 microseconds (RFC 9293 §3.4.1 MUST-8), F a keyed
hash of the connection's 4-tuple that an outsider cannot compute (MUST-9,
SHLD-1). The secret is injected so that a test or a simulation reproduces a
run bit for bit (house style item 3); a real host draws it once from
``secrets.token_bytes``.

Layer: tcp. Imports synack.errors and synack.tcp.seq.
"""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address

from synack.errors import LocalProtocolError
from synack.tcp.seq import seq_add

#: RFC 6528 §3: "M is the 4 microsecond timer".
TICKS_PER_SECOND = 250_000


class IsnGenerator:
    """Compute RFC 6528 ISNs from a secret key; ``now`` is seconds on any clock."""

    __slots__ = ("_key",)

    def __init__(self, secret: bytes) -> None:
        if not 16 <= len(secret) <= 64:
            # blake2s takes keys up to 32 bytes; we hash longer ones down.
            raise LocalProtocolError("the ISN secret must be 16 to 64 bytes")
        self._key = secret if len(secret) <= 32 else hashlib.sha256(secret).digest()

    def __call__(
        self,
        local: tuple[IPv4Address, int],
        remote: tuple[IPv4Address, int],
        now: float,
    ) -> int:
        tuple_bytes = (
            local[0].packed
            + local[1].to_bytes(2, "big")
            + remote[0].packed
            + remote[1].to_bytes(2, "big")
        )
        f = int.from_bytes(hashlib.blake2s(tuple_bytes, key=self._key, digest_size=4).digest())
        m = int(now * TICKS_PER_SECOND)
        return seq_add(m, f)
