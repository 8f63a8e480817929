"""The TCP timestamps option of RFC 7323: TSval, TS.Recent, PAWS and RTT samples.

:class:`Timestamps` holds one connection's side of the option: whether both
ends agreed to it on the handshake (§3.2), the per-connection offset of our
TSval clock (§5.4), TS.Recent and when it was taken (§4.3, §5.5), and
Last.ACK.sent (§4.3). The connection asks it whether a segment is rejected
by PAWS (§5.3), whether TS.Recent moves, what TSval to send and what RTT an
echoed TSecr measures (§4.1). TSvals count milliseconds.

Layer: tcp. Imports synack.wire and synack.tcp.seq.
"""

from __future__ import annotations

from synack.tcp.seq import seq_add, seq_lt
from synack.wire._fast import slot_maker
from synack.wire.tcp import TcpOptions

# TcpOptions filled positionally (mss, wscale, sack_permitted, sack_blocks,
# timestamps, unknown, fastopen): its keyword __init__ costs twice as much.
_make_options = slot_maker(TcpOptions)

__all__ = ["PAWS_IDLE", "TS_OPTION_SPACE", "Timestamps"]

#: RFC 7323 §5.5: TS.Recent is invalid after 24 days of idleness.
PAWS_IDLE = 24 * 24 * 3600.0
#: RFC 7323 §3.2: a TSopt costs 12 bytes of every segment (10 + 2 NOPs).
TS_OPTION_SPACE = 12


_UNSET = TcpOptions(timestamps=(0, 0))


class Timestamps:
    """RFC 7323 state of one connection."""

    __slots__ = ("_opts", "last_ack_sent", "offset", "ok", "recent", "recent_time", "recent_valid")

    def __init__(self, offset: int) -> None:
        self.ok = False  # both ends sent TSopt on the handshake (§3.2)
        self.offset = offset  # §5.4: a per-connection random offset
        self.recent = 0  # TS.Recent
        self.recent_time = 0.0
        self.recent_valid = False
        self.last_ack_sent = 0  # Last.ACK.sent (§4.3)
        self._opts = _UNSET  # options are immutable: one to start every connection

    def agree(self, wanted: bool, offered: tuple[int, int] | None, now: float) -> None:
        """The peer's SYN arrived: use the option if we want it and the SYN carried it (§3.2)."""
        self.ok = wanted and offered is not None
        if self.ok and offered is not None:
            self.recent = offered[0]
            self.recent_time = now
            self.recent_valid = True

    def tsval(self, now: float) -> int:
        """The TSval to send at ``now`` (milliseconds plus the offset, §5.4)."""
        return seq_add(self.offset, int(now * 1000))

    def option(self, now: float) -> TcpOptions:
        """The options of a segment that carries only TSopt (TSval, TSecr = TS.Recent)."""
        # seq_add(self.offset, ms), inline: once per segment sent.
        tsval = (self.offset + int(now * 1000)) & 0xFFFFFFFF
        cached = self._opts
        pair = cached.timestamps
        if pair is None or pair[0] != tsval or pair[1] != self.recent:
            # Many segments share one millisecond: reuse the options.
            cached = self._opts = _make_options(
                None, None, False, (), (tsval, self.recent), (), None
            )
        return cached

    def rtt(self, ecr: int, now: float) -> float:
        """RFC 7323 §4.1: the RTT a non-zero echoed TSecr measures, in seconds."""
        # seq_dist(seq_add(offset, ms), ecr), inline: once per ACK.
        return ((self.offset + int(now * 1000) - ecr) & 0xFFFFFFFF) / 1000.0

    def paws_rejects(self, tsval: int, now: float) -> bool:
        """RFC 7323 §5.3 R1-R3 for a non-RST segment while TS.Recent is valid.

        A TS.Recent idle for over 24 days is invalidated first (§5.5), and
        then rejects nothing.
        """
        if now - self.recent_time > PAWS_IDLE:
            self.recent_valid = False
            return False
        return seq_lt(tsval, self.recent)

    def in_order(self, tsval: int, now: float) -> bool:
        """PAWS has nothing to say about ``tsval`` (header prediction's test)."""
        return (
            self.recent_valid
            # not seq_lt(tsval, TS.Recent), inline (per segment on the fast paths).
            and (tsval - self.recent) & 0xFFFFFFFF < 0x80000000
            and now - self.recent_time <= PAWS_IDLE
        )

    def update_recent(self, seq: int, tsval: int, now: float) -> None:
        """RFC 7323 §4.3: TS.Recent from a segment that covers Last.ACK.sent."""
        # seq_le(seq, Last.ACK.sent) and (not valid or seq_ge(tsval, TS.Recent)), inline.
        last = self.last_ack_sent
        recent = self.recent
        if (seq == last or (seq - last) & 0xFFFFFFFF >= 0x80000000) and (
            not self.recent_valid or tsval == recent or (recent - tsval) & 0xFFFFFFFF >= 0x80000000
        ):
            self.recent = tsval
            self.recent_time = now
            self.recent_valid = True
