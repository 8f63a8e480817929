"""SYN cookies: answering a SYN flood without keeping state (RFC 4987 §3.6).

When a listener's half-open queue is full, a SYN is answered statelessly: our
ISN is a keyed hash of the 4-tuple, the client's ISN and a 64-second counter,
with the client's MSS (rounded down to one of eight values) in its low three
bits. The handshake's ACK proves the client saw that ISN, and the connection
is rebuilt from it. Window scaling, SACK and timestamps are not offered then
(the cost of keeping no state, as in Linux without timestamps).

Layer: stack. Imports synack.wire, synack.tcp and synack.stack.config.
"""

from __future__ import annotations

import hashlib

from synack.stack.config import ConnKey
from synack.tcp.config import TcpConfig
from synack.tcp.seq import SEQ_MASK, seq_add
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment

# The MSS values a cookie can carry (its low three bits index them).
COOKIE_MSS = (536, 1220, 1440, 1460, 4312, 8960, 16344, 65495)
COOKIE_PERIOD = 64.0  # seconds per counter step; a cookie is good for one or two


class SynCookies:
    """Makes and checks the cookies of one host (keyed by its secret)."""

    __slots__ = ("_secret",)

    def __init__(self, isn_secret: bytes) -> None:
        self._secret = hashlib.blake2s(b"syn-cookie" + isn_secret).digest()

    def _cookie(self, key: ConnKey, client_isn: int, counter: int) -> int:
        material = b"".join(
            (
                key[0].packed,
                key[1].to_bytes(2, "big"),
                key[2].packed,
                key[3].to_bytes(2, "big"),
                client_isn.to_bytes(4, "big"),
                (counter % (1 << 64)).to_bytes(8, "big"),
            )
        )
        digest = hashlib.blake2s(material, key=self._secret, digest_size=4).digest()
        return int.from_bytes(digest, "big") & ~7 & SEQ_MASK

    def syn_ack(self, key: ConnKey, syn: TcpSegment, config: TcpConfig, now: float) -> TcpSegment:
        """The SYN-ACK answering ``syn`` (to ``key``'s local end), its ISN the cookie."""
        mss = syn.options.mss or 536
        index = max(i for i, m in enumerate(COOKIE_MSS) if m <= max(mss, 536))
        iss = self._cookie(key, syn.seq, int(now // COOKIE_PERIOD)) | index
        return TcpSegment(
            syn.dst_port,
            syn.src_port,
            iss,
            seq_add(syn.seq, 1),
            TcpFlags.SYN | TcpFlags.ACK,
            min(65535, config.receive_buffer),
            options=TcpOptions(mss=config.mss),
        )

    def check_ack(self, key: ConnKey, ack: TcpSegment, now: float) -> tuple[int, TcpSegment] | None:
        """If ``ack`` completes a cookie handshake: our ISN and the client's SYN
        as rebuilt from it (its ISN, window and the MSS the cookie kept).
        None for an ACK that carries no valid cookie."""
        iss = seq_add(ack.ack, -1)
        client_isn = seq_add(ack.seq, -1)
        counter = int(now // COOKIE_PERIOD)
        if (iss & ~7) not in (
            self._cookie(key, client_isn, counter),
            self._cookie(key, client_isn, counter - 1),
        ):
            return None
        syn = TcpSegment(
            ack.src_port,
            ack.dst_port,
            client_isn,
            0,
            TcpFlags.SYN,
            ack.window,
            options=TcpOptions(mss=COOKIE_MSS[iss & 7]),
        )
        return iss, syn
