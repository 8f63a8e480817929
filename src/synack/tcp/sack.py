"""Selective acknowledgment (RFC 2018): the sender's scoreboard and the receiver's blocks.

:class:`SackScoreboard` is the sender side of RFC 6675 §3: which octets in
[SND.UNA, SND.MAX) the peer reported as received, kept as merged ascending
[left, right) ranges. It answers the questions RFC 6675 §4 asks of it
(Update, IsLost through :func:`lost_edge`, the unSACKed octets that SetPipe
counts); loss recovery itself (:mod:`synack.tcp.recovery`) decides what to
do with the answers. :func:`blocks_to_send` is the receiver side: the SACK
blocks an outgoing ACK carries.

Offsets passed to :func:`lost_edge` and :func:`unsacked` are relative to
SND.UNA (RFC 6675's HighACK), as :meth:`SackScoreboard.relative` gives them.

Layer: tcp. Imports synack.tcp.seq.
"""

from __future__ import annotations

from synack.tcp.seq import seq_add, seq_diff, seq_dist, seq_gt, seq_le, seq_lt

__all__ = [
    "MAX_RANGES",
    "SackScoreboard",
    "ascending",
    "blocks_to_send",
    "lost_edge",
    "unsacked",
]

#: A bounded scoreboard: the lowest ranges (next to the holes that matter
#: first) are kept. A peer sends at most 4 blocks per ACK, but a burst of
#: drop-tail losses leaves a hole every other segment: 180 segments in
#: flight (a 256 KB send buffer) make 90 ranges. The bound used to be 32:
#: the blocks above the 32nd range were forgotten, RACK never saw them, and
#: segments the peer held were resent (one D-SACK each; 36 spurious resends
#: in a 2 MB transfer over a 50-frame drop-tail queue). RACK now takes
#: every ACK's own blocks (rack.on_sacks), so this bound only keeps a
#: hostile peer's per-ACK cost in check.
MAX_RANGES = 1024

Ranges = list[tuple[int, int]]


class SackScoreboard:
    """SACKed sequence ranges, ascending and merged, all inside [SND.UNA, SND.MAX]."""

    __slots__ = ("ranges",)

    def __init__(self) -> None:
        self.ranges: Ranges = []

    def update(self, blocks: tuple[tuple[int, int], ...], una: int, snd_max: int) -> int:
        """RFC 6675 §4 Update(): merge SACK blocks into the scoreboard.

        Returns how many octets were SACKed for the first time. Only blocks
        inside [SND.UNA, SND.MAX] count: D-SACKs (RFC 2883, below SND.UNA),
        blocks of unsent data and forged or stale ones are ignored, so a
        peer cannot make the scoreboard claim anything we did not send.
        """
        return _merge_blocks(self.ranges, blocks, una, snd_max)

    @staticmethod
    def _merge(ranges: Ranges, una: int, lo: int, hi: int) -> int:
        """Merge [una+lo, una+hi) into ``ranges`` in place; the octets it newly covers.

        One block touches the few ranges it overlaps: found by a binary
        search on offsets from SND.UNA (every range lies in [SND.UNA,
        SND.MAX], so offsets order them even across the 2**32 wrap).
        """
        # The first range whose right end reaches lo (it may touch the block).
        a, b = 0, len(ranges)
        while a < b:
            m = (a + b) >> 1
            if seq_dist(ranges[m][1], una) < lo:
                a = m + 1
            else:
                b = m
        first = a
        new_lo, new_hi = lo, hi
        covered = 0
        last = first
        n = len(ranges)
        while last < n:
            r_lo = seq_dist(ranges[last][0], una)
            if r_lo > hi:
                break
            r_hi = seq_dist(ranges[last][1], una)
            # The part of the block this range already covers.
            overlap = (r_hi if r_hi < hi else hi) - (r_lo if r_lo > lo else lo)
            if overlap > 0:
                covered += overlap
            if r_lo < new_lo:
                new_lo = r_lo
            if r_hi > new_hi:
                new_hi = r_hi
            last += 1
        ranges[first:last] = [(seq_add(una, new_lo), seq_add(una, new_hi))]
        if len(ranges) > MAX_RANGES:
            del ranges[MAX_RANGES:]
            if first >= MAX_RANGES:
                return 0  # beyond the bound: not kept
        return (hi - lo) - covered

    def trim(self, ack: int) -> None:
        """The cumulative ACK moved to ``ack``: forget what lies below it."""
        self.ranges = [
            (ack if seq_lt(lo, ack) else lo, hi) for lo, hi in self.ranges if seq_gt(hi, ack)
        ]

    def clear(self) -> None:
        """RFC 2018 §8: after a timeout, forget (the receiver may have reneged)."""
        self.ranges = []

    def relative(self, una: int) -> Ranges:
        """The ranges as offsets from ``una`` (SND.UNA)."""
        return [(seq_dist(lo, una), seq_dist(hi, una)) for lo, hi in self.ranges]

    def skip(self, seq: int) -> tuple[int | None, int | None]:
        """(end of the SACKed range holding ``seq``, or None; octets to the next one, or None)."""
        room: int | None = None
        for left, right in self.ranges:
            if seq_le(left, seq) and seq_lt(seq, right):
                return right, None
            if seq_gt(left, seq):
                d = seq_dist(left, seq)
                if room is None or d < room:
                    room = d
        return None, room


def _merge_blocks(
    ranges: Ranges, blocks: tuple[tuple[int, int], ...], una: int, snd_max: int
) -> int:
    """Merge the blocks inside [SND.UNA, SND.MAX] into ``ranges``; the octets newly covered."""
    top = seq_diff(snd_max, una)
    added = 0
    for left, right in blocks:
        lo = seq_dist(left, una)
        hi = seq_dist(right, una)
        if lo < hi <= top:
            added += SackScoreboard._merge(ranges, una, lo, hi)
    return added


def ascending(blocks: tuple[tuple[int, int], ...], una: int, snd_max: int) -> Ranges:
    """One ACK's SACK blocks inside [SND.UNA, SND.MAX], merged, ascending (absolute)."""
    out: Ranges = []
    _merge_blocks(out, blocks, una, snd_max)
    return out


def lost_edge(rel: Ranges, mss: int) -> int:
    """The offset below which every unSACKed octet IsLost() (RFC 6675 §4).

    IsLost(S) holds when DupThresh (3) discontiguous SACKed ranges lie
    above S, or more than (DupThresh - 1) * SMSS SACKed octets do. Both
    only grow as S moves down, so one edge describes the whole answer:
    the left end of the range (counted from the top) at which either
    condition first holds; 0 when neither does (nothing is lost).
    """
    limit = 2 * mss
    octets = 0
    for count, (lo, hi) in enumerate(reversed(rel), 1):
        octets += hi - lo
        if count >= 3 or octets > limit:
            return lo
    return 0


def unsacked(rel: Ranges, a: int, b: int) -> int:
    """Octets in [a, b) not covered by the scoreboard."""
    if b <= a:
        return 0
    n = b - a
    for lo, hi in rel:
        if hi <= a:
            continue
        if lo >= b:
            break
        n -= (hi if hi < b else b) - (lo if lo > a else a)
    return n


def blocks_to_send(rel_blocks: list[tuple[int, int]], rcv_nxt: int) -> tuple[tuple[int, int], ...]:
    """The receiver's SACK blocks (RFC 2018 §4) from offsets relative to RCV.NXT."""
    return tuple((seq_add(rcv_nxt, s), seq_add(rcv_nxt, e)) for s, e in rel_blocks)
