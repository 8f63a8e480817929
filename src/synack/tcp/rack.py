"""RACK-TLP (RFC 8985): time-based loss detection and tail loss probes for SACK connections.

:class:`Rack` keeps one record per segment sent and not yet cumulatively
acknowledged ([start, end, time sent, flags], in sequence order; a
retransmission updates its record's time; a super-segment's pieces share one
packed record, see :meth:`Rack.sent_run`). From the records it answers what
RFC 8985 asks:

* RACK (§6): the most recently sent segment known delivered (by a
  cumulative ACK or a SACK) sets RACK.xmit_ts and RACK.rtt; every segment
  sent before it that is still unSACKed and older than RACK.rtt + reo_wnd is
  lost. A retransmission that is lost again is found the same way, one RTT
  after it was sent, without waiting for the retransmission timer. Segments
  not yet old enough arm the reordering timer (``deadline``).
* TLP (§7): after new data is sent or acknowledged, outside recovery, a
  probe timeout PTO = 2*SRTT (+ the worst-case delayed ACK when one segment
  is in flight, capped by the RTO) sends one segment (new data, or the last
  one again) so that a lost tail is repaired by SACK recovery, not an RTO.

The connection's output resends what :meth:`Rack.next_lost` returns and
reports each send (:meth:`sent`, :meth:`resent`); :mod:`synack.tcp.recovery`
runs the detector and counts ``pipe`` from the records (lost octets are out
of the network, retransmitted ones in it).

Reordering window (§6.2 step 4): 0 during recovery, or once three segments
are SACKed, until reordering was seen (a segment delivered below the highest
one SACKed, or a D-SACK), otherwise RACK.reo_wnd_mult * RACK.min_RTT/4
capped at SRTT; reo_wnd_mult grows by one for each round trip with a D-SACK
and returns to 1 after 16 recoveries without one. TLP's loss detection (§7.4) is one conservative rule: an ACK
covering a retransmitted probe halves cwnd, and a D-SACK of the probe (the
original arrived too) undoes it (:meth:`LossRecovery.on_dsack
<synack.tcp.recovery.LossRecovery.on_dsack>`).

Layer: tcp. Imports synack.tcp.seq.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from synack.tcp.seq import seq_diff, seq_gt, seq_le, seq_lt

__all__ = ["LOST", "PTO_MIN", "REO_WND_PERSIST", "RETRANS", "SACKED", "WC_DEL_ACK", "Rack"]

SACKED = 1
LOST = 2
RETRANS = 4
_CLOCK_G = 0.001  # the clock granularity RTTs are compared with (1 ms)
#: A floor for the probe timeout: on a sub-millisecond path 2*SRTT would
#: probe after every pause in the ACK clock (Linux keeps 10 ms as well).
PTO_MIN = 0.01
#: RFC 8985 §7.2 WCDelAckT: the worst-case delayed-ACK timer (200 ms).
WC_DEL_ACK = 0.2
#: RFC 8985 §6.2 step 4: recoveries without a D-SACK round before reo_wnd
#: falls back to min_RTT/4.
REO_WND_PERSIST = 16

# A record: [start, end, time sent, flags, send order] (a list: cheaper than an object per segment).
Record = list[Any]


class Rack:
    """RACK-TLP state of one connection (see the module docstring)."""

    __slots__ = (
        "deadline",
        "dsack_round",
        "end_seq",
        "fack",
        "last",
        "lost",
        "min_rtt",
        "order",
        "packed",
        "packs",
        "pend",
        "pend_now",
        "probe_end",
        "probe_rexmit",
        "pto_at",
        "records",
        "reo_wnd_mult",
        "reo_wnd_persist",
        "reordering_seen",
        "rtt",
        "sacked_segs",
        "xmit_order",
        "xmit_ts",
    )

    def __init__(self) -> None:
        self.records: deque[Record] = deque()
        self.xmit_ts = -1.0  # RACK.xmit_ts (-1: nothing delivered yet)
        self.end_seq = 0  # RACK.end_seq
        # RACK_sent_after() breaks ties of equal times by sequence number;
        # a count of sends orders them exactly (a retransmission of a low
        # segment is sent after the originals above it, even within one
        # clock tick).
        self.order = 0
        # Packed records held (sent_run); ``packs``: the sender packs the
        # pieces of a super-segment (off: one record each, as the tests compare).
        self.packed = 0
        self.packs = True
        # The last record a cumulative ACK delivered, and when: folded into
        # RACK.xmit_ts/rtt only when detection runs (the pure-ACK path
        # stays cheap).
        self.pend: Record | None = None
        self.pend_now = 0.0
        self.xmit_order = -1
        self.rtt = 0.0  # RACK.rtt
        self.min_rtt: float | None = None
        self.fack = 0  # the highest end sequence number SACKed (RACK.fack)
        self.reordering_seen = False
        # §6.2 step 4: the reordering window grows by min_RTT/4 for each
        # round trip in which D-SACKs showed a spurious retransmission, and
        # falls back after REO_WND_PERSIST recoveries without one.
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = REO_WND_PERSIST
        self.dsack_round: int | None = None  # SND.NXT when the last D-SACK round began
        self.sacked_segs = 0  # records SACKed and not yet cumulatively acknowledged
        self.lost = 0  # octets marked lost and not resent since
        self.deadline: float | None = None  # the reordering timer (§6.3)
        self.probe_end: int | None = None  # a loss probe in flight ends here (§7.3)
        self.probe_rexmit = False  # ... and was a retransmission
        self.pto_at: float | None = None  # the probe timeout (§7.2)
        # When new data was last sent or acknowledged: the PTO counts from
        # there (§7.2). The timer is lazy: it is armed once and, when it
        # fires early because of later ACKs, re-armed from ``last``.
        self.last = 0.0

    # -- what was sent ----------------------------------------------------------

    def sent(self, start: int, end: int, now: float) -> None:
        """New data [start, end) left at ``now``."""
        self.order += 1
        self.records.append([start, end, now, 0, self.order])
        self.last = now

    def sent_run(self, start: int, end: int, now: float, mss: int, count: int) -> None:
        """New data [start, end) left at ``now`` as one super-segment of
        ``count`` pieces of ``mss`` octets (the last up to ``end``, its FIN
        too): one packed record standing for the ``count`` records :meth:`sent`
        would make, in turn, for the pieces sent one by one. A packed record
        is ``[start, end, time, 0, order of its first piece, mss, count]``;
        only :meth:`on_cumulative_ack` (the hot path) and :meth:`pipe` take it
        as it is, everything else unpacks first (:meth:`unpack`), so the
        detector sees exactly the records of the pieces (RFC 8985 §6.2: a
        lost piece is marked and resent MSS-sized)."""
        order = self.order + 1
        self.order += count
        self.records.append([start, end, now, 0, order, mss, count])
        self.packed += 1
        self.last = now

    def unpack(self) -> None:
        """Every packed record (:meth:`sent_run`) as the records of its pieces."""
        if not self.packed:
            return
        self.packed = 0
        records: deque[Record] = deque()
        add = records.append
        for rec in self.records:
            if len(rec) == 5:
                add(rec)
                continue
            start, end, ts, flags, order, mss, count = rec
            for _ in range(count - 1):
                piece_end = (start + mss) & 0xFFFFFFFF
                add([start, piece_end, ts, flags, order])
                start = piece_end
                order += 1
            add([start, end, ts, flags, order])
        self.records = records

    def resent(self, start: int, end: int, now: float) -> None:
        """[start, end) was sent again at ``now``: its records are in flight again."""
        self.unpack()
        for rec in self.records:
            if seq_le(end, rec[0]):
                break
            if seq_gt(rec[1], start):
                flags: int = rec[3]
                if flags & LOST:
                    self.lost -= seq_diff(rec[1], rec[0])
                self.order += 1
                rec[2] = now
                rec[3] = (flags & ~LOST) | RETRANS
                rec[4] = self.order

    # -- what was delivered -----------------------------------------------------

    def _delivered(self, rec: Record, now: float) -> None:
        """RFC 8985 §6.2 step 2, RACK_update(), for one delivered record."""
        ts = rec[2]
        rtt = now - ts
        if rec[3] & RETRANS and self.min_rtt is not None and rtt + _CLOCK_G < self.min_rtt:
            # Faster than any RTT seen: the ACK is likely for the original
            # (ambiguous), not a sample (RFC 8985 §6.2 step 2). Within the
            # clock granularity it counts.
            return
        if self.min_rtt is None or rtt < self.min_rtt:
            self.min_rtt = rtt
        if rec[4] > self.xmit_order:
            self.xmit_order = rec[4]
            self.xmit_ts = ts
            self.end_seq = rec[1]
            self.rtt = rtt

    def on_cumulative_ack(self, ack: int, now: float) -> None:
        """Records below the cumulative ACK ``ack`` are done (the hot path: pure ACKs).

        Only the last record that was not SACKed before updates RACK.xmit_ts
        (records are in sequence order and sent in that order unless
        retransmitted; a retransmitted one is looked at on its own).
        """
        self.last = now
        records = self.records
        last = None
        while records:
            rec = records[0]
            if (ack - rec[1]) & 0xFFFFFFFF >= 0x80000000:
                # seq_lt(ack, end): inline, this runs per ACK
                if len(rec) != 5:
                    # A packed record (sent_run, flags 0): its pieces below
                    # the ACK are done, as their own records would be.
                    last = self._ack_into_run(rec, ack) or last
                break
            records.popleft()
            if len(rec) != 5:
                self.packed -= 1
                # Delivered whole: its last piece is the one that counts.
                count = rec[6]
                last = [
                    (rec[0] + (count - 1) * rec[5]) & 0xFFFFFFFF,
                    rec[1],
                    rec[2],
                    0,
                    rec[4] + count - 1,
                ]
                continue
            flags: int = rec[3]
            if flags:
                if flags & LOST:
                    self.lost -= seq_diff(rec[1], rec[0])
                if flags & SACKED:
                    self.sacked_segs -= 1
                    continue
                if flags & RETRANS:
                    self._delivered(rec, now)
                    continue
            last = rec
        if last is not None:
            pend = self.pend
            if pend is not None and pend[4] > last[4]:
                return
            self.pend = last
            self.pend_now = now

    def _ack_into_run(self, rec: Record, ack: int) -> Record | None:
        """``ack`` falls inside the packed record ``rec``: the pieces it
        covers whole leave the record; the record of the last of them is
        returned (None when none is covered)."""
        start = rec[0]
        d = (ack - start) & 0xFFFFFFFF
        if d >= 0x80000000:
            return None  # below the record
        mss = rec[5]
        count = rec[6]
        k = d // mss
        if k >= count:
            k = count - 1  # the last piece ends at the record's end (its FIN too)
        if k == 0:
            return None
        new_start = (start + k * mss) & 0xFFFFFFFF
        order = rec[4]
        done = [(new_start - mss) & 0xFFFFFFFF, new_start, rec[2], 0, order + k - 1]
        rec[0] = new_start
        rec[4] = order + k
        count -= k
        if count == 1:
            del rec[5:]  # one piece left: a plain record
            self.packed -= 1
        else:
            rec[6] = count
        return done

    def _fold(self) -> None:
        pend = self.pend
        if pend is not None:
            self.pend = None
            self._delivered(pend, self.pend_now)

    def on_sacks(self, ranges: list[tuple[int, int]], now: float) -> None:
        """The scoreboard ``ranges`` (absolute, ascending) may cover more records."""
        self.unpack()
        self._fold()
        if not ranges:
            return
        i = 0
        n = len(ranges)
        for rec in self.records:
            flags: int = rec[3]
            if flags & SACKED:
                continue
            start = rec[0]
            end = rec[1]
            while i < n and seq_le(ranges[i][1], start):
                i += 1
            if i == n:
                break
            lo, hi = ranges[i]
            if seq_le(lo, start) and seq_le(end, hi):
                if flags & LOST:
                    self.lost -= seq_diff(end, start)
                rec[3] = (flags & ~LOST) | SACKED
                self.sacked_segs += 1
                if seq_lt(end, self.fack):
                    self.reordering_seen = True  # §6.2 step 3
                else:
                    self.fack = end
                self._delivered(rec, now)

    def on_dsack(self, una: int, snd_nxt: int) -> None:
        """A D-SACK arrived: the path reorders (§6.2 step 3); widen reo_wnd once per round (step 4)."""
        self.reordering_seen = True
        round_end = self.dsack_round
        if round_end is not None and seq_le(round_end, una):
            self.dsack_round = round_end = None
        if round_end is None:
            self.dsack_round = snd_nxt
            self.reo_wnd_mult += 1
            self.reo_wnd_persist = REO_WND_PERSIST

    def recovery_ended(self) -> None:
        """A fast or RTO recovery ended: after 16 without a D-SACK round, reo_wnd shrinks back."""
        self.reo_wnd_persist -= 1
        if self.reo_wnd_persist <= 0:
            self.reo_wnd_mult = 1

    def reo_wnd(self, in_recovery: bool, srtt: float | None) -> float:
        """RFC 8985 §6.2 step 4, RACK_update_reo_wnd() (the D-SACK part is on_dsack)."""
        self._fold()
        if not self.reordering_seen and (in_recovery or self.sacked_segs >= 3):
            return 0.0  # DupThresh (3) segments SACKed: no reason to wait
        if self.min_rtt is None:
            return 0.0
        wnd = self.reo_wnd_mult * self.min_rtt / 4
        return wnd if srtt is None or wnd < srtt else srtt

    def detect_loss(self, now: float, reo_wnd: float) -> int:
        """RFC 8985 §6.2 step 5, RACK_detect_loss(): octets newly marked lost.

        Arms (or clears) ``deadline`` for the segments not yet old enough.
        """
        self.unpack()
        self._fold()
        if self.xmit_ts < 0:
            return 0
        newly = 0
        latest: float | None = None
        xmit_order = self.xmit_order
        limit = self.rtt + reo_wnd
        for rec in self.records:
            flags: int = rec[3]
            if flags & (SACKED | LOST):
                continue
            # RACK_sent_after(RACK.xmit_ts, RACK.end_seq, seg): only segments
            # sent before the most recently delivered one.
            if rec[4] >= xmit_order:
                continue
            # Compared as absolute times, not as "remaining = due - now": a
            # remainder of a few ulps gave a deadline equal to ``now`` in
            # floating point, a timer that fired again at once, for ever.
            due = rec[2] + limit
            if due <= now:
                rec[3] = flags | LOST
                n = seq_diff(rec[1], rec[0])
                newly += n
            elif latest is None or due > latest:
                latest = due
        self.lost += newly
        self.deadline = latest  # strictly after now, or None
        return newly

    def next_lost(self, mss: int) -> tuple[int, int] | None:
        """The first record marked lost: (start, octets at most ``mss``), or None."""
        self.unpack()
        if self.lost <= 0:
            return None
        for rec in self.records:
            if rec[3] & LOST:
                start = rec[0]
                n = seq_diff(rec[1], start)
                return start, n if n < mss else mss
        return None

    def pipe(self) -> int:
        """Octets in flight: sent, neither SACKed nor marked lost (RFC 6675 pipe, RACK's way)."""
        total = 0
        for rec in self.records:
            if not rec[3] & (SACKED | LOST):
                total += seq_diff(rec[1], rec[0])
        return total

    def on_rto(self) -> None:
        """A retransmission timeout: the scoreboard is forgotten; go-back-N resends."""
        self.unpack()
        for rec in self.records:
            rec[3] = 0
        self.lost = 0
        self.sacked_segs = 0
        self.pend = None
        self.deadline = None
        self.probe_end = None
        self.pto_at = None
        self.fack = 0

    def pto(self, srtt: float, flight: int, mss: int, rto: float) -> float:
        """RFC 8985 §7.2: the probe timeout (at least PTO_MIN, as Linux keeps it)."""
        pto = 2 * srtt
        if flight <= mss:
            pto += WC_DEL_ACK
        if pto < PTO_MIN:
            pto = PTO_MIN
        return pto if pto < rto else rto
