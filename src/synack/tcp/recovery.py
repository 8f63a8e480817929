"""Loss recovery: RTT timing, retransmission timeouts, duplicate ACKs and SACK recovery.

:class:`LossRecovery` owns what a TCP sender keeps to find and repair
losses, the way a QUIC stack keeps its recovery apart from its connection:

* the RTT estimator (:mod:`synack.tcp.rto`, RFC 6298) and the segment being
  timed when there are no timestamps (Karn's algorithm, MUST-18);
* the congestion controller (:mod:`synack.tcp.congestion`, RFC 5681 with
  RFC 6582 NewReno, or :mod:`synack.tcp.cubic`), told what every ACK and
  timeout did, and HyStart++ (:mod:`synack.tcp.hystart`, RFC 9406) while
  the first slow start lasts;
* the count of consecutive timeouts behind R1/R2 (RFC 9293 §3.8.3);
* with SACK agreed, the scoreboard (:mod:`synack.tcp.sack`) and RFC 6675's
  HighRxt, RescueRxt, pipe and NextSeg; and RACK-TLP (:mod:`synack.tcp.rack`,
  RFC 8985), which by default decides what is lost in place of DupThresh
  (:meth:`LossRecovery.rack_step`) and whose records give pipe.

The connection keeps the sequence variables and passes them in; it also
sends what recovery asks for (``rexmit_one``: resend SND.UNA's segment; the
(rule, offset, octets) of :meth:`LossRecovery.next_seg`). Beyond RFC 6675:
the rescue retransmission (NextSeg rule 4) is skipped when its octet was
resent already, and a peer that agreed to SACK but sends duplicate ACKs
without blocks still triggers fast retransmit (RFC 5681 §2 duplicates).

Layer: tcp. Imports synack.tcp (config, congestion, cubic, hystart, rack, rto, sack, seq,
stats).
"""

from __future__ import annotations

from synack.tcp.config import TcpConfig
from synack.tcp.congestion import INITIAL_SSTHRESH, AckAction, NewReno
from synack.tcp.cubic import Cubic
from synack.tcp.hystart import HyStart
from synack.tcp.rack import Rack
from synack.tcp.rto import RttEstimator
from synack.tcp.sack import Ranges, SackScoreboard, ascending, lost_edge, unsacked
from synack.tcp.seq import seq_add, seq_diff, seq_dist, seq_ge, seq_gt
from synack.tcp.stats import TcpStats

__all__ = ["LossRecovery"]

_RETRANSMIT = AckAction.RETRANSMIT


class LossRecovery:
    """One connection's loss detection and repair state (see the module docstring)."""

    __slots__ = (
        "board",
        "cc",
        "first_rexmit_time",
        "high_rxt",
        "hystart",
        "prior",
        "prr_delivered",
        "prr_out0",
        "prr_sacked",
        "rack",
        "rack_on",
        "recover_fs",
        "rescue_rxt",
        "retries",
        "rexmit_one",
        "rtt",
        "rtt_seq",
        "rtt_time",
        "sack_first",
        "stats",
        "undo_retrans",
    )

    def __init__(self, config: TcpConfig, iss: int, mss: int, stats: TcpStats) -> None:
        self.rtt = RttEstimator(
            initial=config.initial_rto, min_rto=config.min_rto, max_rto=config.max_rto
        )
        self.cc: NewReno = (
            Cubic(mss, iss, iw=config.initial_window, rtt=self.rtt)
            if config.congestion_control == "cubic"
            else NewReno(mss, iss, iw=config.initial_window)
        )
        self.board = SackScoreboard()
        # HyStart++ (RFC 9406) for the first slow start; None once it is over.
        self.hystart: HyStart | None = HyStart(iss) if config.hystart else None
        self.rack = Rack()
        self.rack_on = False  # RACK-TLP detects losses (SACK agreed, config "rack")
        self.stats = stats
        self.rtt_seq: int | None = None  # timed segment's end (no timestamps: Karn)
        self.rtt_time = 0.0
        self.retries = 0  # consecutive timeouts of the same segment (R1/R2)
        self.first_rexmit_time: float | None = None
        self.rexmit_one = False  # fast retransmit / partial ACK: resend SND.UNA's segment
        # RFC 6675 §2 HighRxt (kept one past the highest octet retransmitted
        # in this recovery) and RescueRxt (None: undefined).
        self.high_rxt = iss
        self.rescue_rxt: int | None = None
        self.sack_first = False  # RFC 6675 §5 step 4.3 still to do
        # PRR (RFC 6937): octets delivered since recovery began, bytes_out
        # then, RecoverFS, and the SACKed octets at the last ACK.
        self.prr_delivered = 0
        self.prr_out0 = 0
        self.recover_fs = 1
        self.prr_sacked = 0
        # Undo (RFC 3708 / Linux): (cwnd, ssthresh) before the reduction,
        # and the retransmissions since that no D-SACK has shown spurious.
        self.prior: tuple[int, int] | None = None
        self.undo_retrans = 0

    # -- RTT timing (Karn) ----------------------------------------------

    def time_segment(self, end: int, now: float) -> None:
        """New data ending at ``end`` was sent: time it unless one is timed (RFC 6298 §3)."""
        if self.rtt_seq is None:
            self.rtt_seq = end
            self.rtt_time = now

    def time_syn(self, end: int, now: float) -> None:
        """Our SYN (ending at ``end``) was sent: time it unless it is a retransmission."""
        if self.rtt_seq is None and self.retries == 0:
            self.rtt_seq = end
            self.rtt_time = now

    def resending(self) -> None:
        """Something is resent: Karn's algorithm (MUST-18) takes no sample from it."""
        self.rtt_seq = None

    # -- ACKs ------------------------------------------------------------

    def on_syn_acked(self, ack: int, ts_rtt: float | None, now: float) -> None:
        """Our SYN is acknowledged: its RTT sample (unless it was resent), no more retries."""
        if ts_rtt is not None:
            self.rtt.sample(ts_rtt)
        elif self.rtt_seq is not None and self.retries == 0 and seq_ge(ack, self.rtt_seq):
            self.rtt.sample(now - self.rtt_time)
        self.rtt_seq = None
        self.retries = 0
        self.first_rexmit_time = None

    def on_new_ack(
        self, ack: int, acked: int, flight_after: int, ts_rtt: float | None, now: float
    ) -> None:
        """SND.UNA moved to ``ack`` by ``acked`` octets; ``flight_after`` remain in flight."""
        board = self.board
        if board.ranges:
            board.trim(ack)
        # RTT sample: timestamps (RFC 7323 §4) or the timed segment (Karn).
        sample = ts_rtt
        if ts_rtt is not None:
            # cc.acks: a run of ACKs with one TSecr (stack/gro.py), a sample each.
            self.rtt.sample(ts_rtt, self.cc.acks)
        elif self.rtt_seq is not None and seq_ge(ack, self.rtt_seq):
            sample = now - self.rtt_time
            self.rtt.sample(sample)
            self.rtt_seq = None
        cc = self.cc
        was_recovering = cc.in_recovery or self.retries
        self.retries = 0
        self.first_rexmit_time = None
        hs = self.hystart
        # HyStart++ only while its round is open or ends (seq_ge inline:
        # this runs per ACK).
        if hs is not None and (hs.open or (ack - hs.window_end) & 0xFFFFFFFF < 0x80000000):
            self._hystart_ack(hs, cc, ack, (ack + flight_after) & 0xFFFFFFFF, sample)
        if cc.on_new_ack(ack, acked, flight_after, now) is _RETRANSMIT:
            self.rexmit_one = True
        if was_recovering and not cc.in_recovery and self.rack_on:
            # A fast recovery ended (or the first new ACK after a timeout):
            # RFC 8985 §6.2 step 4 counts it towards reo_wnd's reset.
            self.rack.recovery_ended()

    def _hystart_ack(
        self, hs: HyStart, cc: NewReno, ack: int, snd_max: int, sample: float | None
    ) -> None:
        """RFC 9406 §4.2 on an ACK of new data during the first slow start."""
        if cc.in_recovery or cc.ssthresh < INITIAL_SSTHRESH:
            # A loss (or timeout) ended the first slow start: standard slow
            # start from now on (§4.3).
            self.hystart = None
            cc.ss_divisor = 1
            return
        # A run of ACKs (stack/gro.py, cc.acks of them, each with this
        # sample): their RFC 9406 steps in turn (receiver.arm_ack_run
        # checked they keep slow start's divisor).
        acks = cc.acks
        divisor = (
            hs.on_ack(ack, snd_max, sample)
            if acks == 1
            else hs.on_ack_run(ack, snd_max, sample, acks)
        )
        if divisor == 0:
            # CSS_ROUNDS rounds of Conservative Slow Start: on to congestion
            # avoidance (ssthresh = cwnd).
            self.hystart = None
            cc.ss_divisor = 1
            cc.ssthresh = cc.cwnd
            self.stats.hystart_exits += 1
        else:
            cc.ss_divisor = divisor

    def on_dupack(self, ack: int, flight: int, snd_max: int) -> None:
        """RFC 5681 §2 duplicate ACK without SACK: fast retransmit on the third (§3.2)."""
        self.stats.dupacks_in += 1
        if self.cc.on_dupack(ack, flight, snd_max) is _RETRANSMIT:
            self.rexmit_one = True
            self.stats.fast_retransmits += 1
            self.rtt_seq = None

    def on_sack_dupack(
        self,
        ack: int,
        new_sacked: int,
        had_sacks: bool,
        same_window: bool,
        una: int,
        snd_max: int,
        mss: int,
    ) -> None:
        """A duplicate ACK with SACK negotiated (RFC 6675 §2 and §5, steps 1-4)."""
        # RFC 6675 §2, and RFC 5681 §2's alternative for SACK senders: a
        # duplicate ACK carries previously unknown SACK information (the
        # window may have changed). A peer that agreed to SACK but sends no
        # blocks is judged by RFC 5681 §2's own rule (same window).
        if not (new_sacked > 0 or (not had_sacks and same_window)):
            return
        self.stats.dupacks_in += 1
        cc = self.cc
        if cc.in_recovery:
            return  # §5 (B): the scoreboard is updated; output recomputes pipe
        if self.rack_on:
            # RACK decides what is lost (rack_step), not the count; the count
            # still paces limited transmit (RFC 3042) until it does.
            if cc.dupacks < 2:
                cc.dupacks += 1
            return
        cc.dupacks += 1
        # Steps (1) and (2): DupThresh duplicates, or IsLost(HighACK + 1).
        if cc.dupacks < 3 and lost_edge(self.board.relative(una), mss) == 0:
            return  # step (3): limited transmit, done by the connection's output
        if not cc.may_enter_recovery(ack):
            return
        # Step (4): fast retransmit, enter loss recovery.
        cc.enter_sack_recovery(seq_diff(snd_max, una), snd_max)
        self.high_rxt = una  # §5 (4.3) moves it past the resent segment
        self.rescue_rxt = None
        self.sack_first = True
        self.stats.fast_retransmits += 1

    def mark_undo(self, retransmissions: int) -> None:
        """A reduction begins: remember what to go back to if it proves spurious."""
        cc = self.cc
        self.prior = (cc.cwnd, cc.ssthresh)
        self.undo_retrans = retransmissions

    def on_dsack(self, octets: int, mss: int, una: int, snd_nxt: int) -> None:
        """A D-SACK (RFC 2883) reported a duplicate: undo when every resend was one.

        RFC 3708 §3 detects a spurious retransmission from D-SACKs; like
        Linux, once every retransmission of a reduction has been reported
        as a duplicate, cwnd and ssthresh go back to what they were, and
        RACK learns that the path reorders (RFC 8985 §6.2 steps 3 and 4).
        """
        self.stats.dsacks_in += 1
        self.rack.on_dsack(una, snd_nxt)
        if self.prior is None:
            return
        self.undo_retrans -= max(1, -(-octets // mss))
        if self.undo_retrans > 0:
            return
        cwnd, ssthresh = self.prior
        self.prior = None
        cc = self.cc
        cc.cwnd = max(cc.cwnd, cwnd)
        cc.ssthresh = max(cc.ssthresh, ssthresh)
        cc.in_recovery = cc.sack_recovery = False
        self.stats.undos += 1

    def prr_ack(self, acked: int, pipe: int, bytes_out: int, mss: int) -> None:
        """RFC 6937 §3 on an ACK in recovery: cwnd = pipe + sndcnt.

        DeliveredData is what the cumulative ACK and the SACKs newly cover;
        above ssthresh the reduction is proportional (sndcnt paces out
        ssthresh/RecoverFS per octet delivered), below it the slow-start
        reduction bound (PRR-SSRB) lets pipe grow back to ssthresh.
        """
        sacked = 0
        for lo, hi in self.board.ranges:
            sacked += seq_diff(hi, lo)
        delivered = acked + sacked - self.prr_sacked
        self.prr_sacked = sacked
        if delivered < 0:
            delivered = 0
        self.prr_delivered += delivered
        prr_out = bytes_out - self.prr_out0
        cc = self.cc
        ssthresh = cc.ssthresh
        if pipe > ssthresh:
            sndcnt = -(-self.prr_delivered * ssthresh // self.recover_fs) - prr_out
        else:
            sndcnt = min(ssthresh - pipe, max(self.prr_delivered - prr_out, delivered) + mss)
        cc.cwnd = pipe + (sndcnt if sndcnt > 0 else 0)

    def rack_step(
        self,
        una: int,
        snd_max: int,
        srtt: float | None,
        now: float,
        bytes_out: int = 0,
        blocks: tuple[tuple[int, int], ...] = (),
    ) -> bool:
        """RFC 8985 §6.2 on an ACK (or the reordering timer): True when recovery begins.

        ``blocks`` are the ACK's own SACK blocks: the records they cover are
        delivered (step 1), whatever the bounded scoreboard keeps. Detects
        losses from the records; the first one found outside a recovery
        starts one (RFC 6675 §5 step 4's reduction, the resend is the
        output's).
        """
        rack = self.rack
        cc = self.cc
        board = self.board
        if not board.ranges and not rack.lost and rack.deadline is None:
            # Only cumulative ACKs: every record left was sent after what
            # they delivered (a hole cannot be skipped), so nothing can be
            # lost by RACK; skip the walk over the records (the common ACK
            # that merely changed the window).
            return False
        if blocks:
            rack.on_sacks(ascending(blocks, una, snd_max), now)
        newly = rack.detect_loss(now, rack.reo_wnd(cc.in_recovery, srtt))
        if newly:
            self.stats.rack_lost += 1
        if rack.lost > 0 and not cc.in_recovery and cc.may_enter_recovery(una):
            self.mark_undo(0)
            flight = seq_diff(snd_max, una)
            cc.enter_sack_recovery(flight, snd_max)
            # PRR (RFC 6937 §3): on entering recovery.
            self.prr_delivered = 0
            self.prr_out0 = bytes_out
            self.recover_fs = flight if flight > 0 else 1
            sacked = 0
            for lo, hi in board.ranges:
                sacked += seq_diff(hi, lo)
            self.prr_sacked = sacked
            self.high_rxt = una
            self.rescue_rxt = None
            self.sack_first = True  # one resend regardless of pipe, as §5 (4.3)
            self.stats.fast_retransmits += 1
            rack.probe_end = None
            rack.pto_at = None  # no loss probe during recovery (RFC 8985 §7.2)
            return True
        return False

    # -- timeouts --------------------------------------------------------

    def timed_out(self, now: float) -> int:
        """The retransmission timer expired: count it; returns the consecutive timeouts."""
        self.stats.timeouts += 1
        self.retries += 1
        if self.first_rexmit_time is None:
            self.first_rexmit_time = now
        return self.retries

    def past_user_timeout(self, user_timeout: float | None, now: float) -> bool:
        """RFC 9293 §3.8.3: the USER TIMEOUT ran out since the first retransmission."""
        first = self.first_rexmit_time
        return user_timeout is not None and first is not None and now - first >= user_timeout

    def on_syn_timeout(self) -> None:
        """A SYN (or SYN,ACK) is to be resent: back off, and no RTT sample from it."""
        self.rtt.backoff()
        self.rtt_seq = None

    def on_rto(self, flight: int, snd_max: int) -> None:
        """RFC 6298 §5.5-5.6 and RFC 5681 §3.1 for a data timeout (the caller goes back N)."""
        self.cc.on_timeout(flight, snd_max, first=self.retries == 1)
        self.hystart = None  # after a timeout, standard slow start (RFC 9406 §4.3)
        self.rtt.backoff()
        self.rtt_seq = None  # Karn (MUST-18): no sample from a resent segment
        # RFC 2018 §8: after a timeout forget what was SACKed (the receiver
        # may have reneged); fresh SACKs arriving from now on count again.
        self.board.clear()
        self.rack.on_rto()
        self.prior = None  # no undo across a timeout
        self.rexmit_one = False

    # -- RFC 6675 output -------------------------------------------------

    def first_hole(self, una: int, snd_max: int, mss: int) -> int:
        """§5 (4.3): the octets of the first segment presumed dropped, once per recovery.

        0 when that segment was resent already (or no SACK recovery began).
        """
        if not self.sack_first:
            return 0
        self.sack_first = False
        ranges = self.board.ranges
        nxt = seq_dist(ranges[0][0], una) if ranges else seq_diff(snd_max, una)
        return min(mss, nxt) if nxt > 0 else mss

    def pipe(self, una: int, snd_max: int, mss: int) -> tuple[Ranges, int, int]:
        """RFC 6675 §4 SetPipe(): (scoreboard offsets, lost edge, octets presumed in flight).

        Every unSACKed octet in [HighACK, HighData) counts once if it is not
        lost (a) and once more if it was retransmitted (b, below HighRxt).
        """
        rel = self.board.relative(una)
        edge = lost_edge(rel, mss)
        flight = seq_diff(snd_max, una)
        high_rxt = seq_diff(self.high_rxt, una)
        if high_rxt < 0:
            high_rxt = 0
        return rel, edge, unsacked(rel, edge, flight) + unsacked(rel, 0, high_rxt)

    def next_seg(
        self,
        rel: Ranges,
        edge: int,
        una: int,
        new_data_ok: bool,
        flight: int,
        buffered: int,
        snd_wnd: int,
        mss: int,
    ) -> tuple[int, int, int] | None:
        """RFC 6675 §4 NextSeg(): (rule, offset, octets) of what to send, or None.

        ``new_data_ok``: SND.NXT is at SND.MAX (no go-back-N in progress).
        """
        start = seq_diff(self.high_rxt, una)
        if start < 0:
            start = 0
        # The first unSACKed octet at or beyond HighRxt, and where the next
        # SACKed range begins after it (a segment stops there).
        s2 = start
        nxt = flight
        for lo, hi in rel:
            if hi <= s2:
                continue
            if lo <= s2:
                s2 = hi
                continue
            nxt = lo
            break
        highest_sacked = rel[-1][1] if rel else 0
        n = min(mss, nxt - s2)
        if s2 < buffered:
            n = min(n, buffered - s2)
        # Rule (1): the first unSACKed octet beyond HighRxt that IsLost().
        if s2 < edge and n > 0:
            return 1, s2, n
        # Rule (2): new data, as far as the peer's window allows.
        if new_data_ok:
            unsent = buffered - flight
            room = snd_wnd - flight
            m = min(unsent, room, mss)
            if m > 0 and m in (mss, unsent):  # no short segment mid-stream (SWS)
                return 2, flight, m
        # Rule (3): an unSACKed octet beyond HighRxt below the highest SACKed
        # octet, lost or not.
        if s2 < highest_sacked and n > 0:
            return 3, s2, n
        # Rule (4): one rescue retransmission per recovery, of the highest
        # unSACKed octet, when HighACK is beyond RescueRxt. We add one
        # condition: that octet was not retransmitted already (beyond
        # HighRxt), so the rescue is never a second copy of a resent segment.
        if self.rescue_rxt is None or seq_gt(una, self.rescue_rxt):
            top = flight
            for lo, hi in reversed(rel):
                if hi == top:
                    top = lo
                else:
                    break
            if top > start:
                # The hole ending at ``top`` starts after the range below it.
                hole = 0
                for _lo, hi in rel:
                    if hi < top:
                        hole = hi
                first = max(top - mss, hole)
                return 4, first, top - first
        return None

    def resent(self, rule: int, una: int, off: int, sent: int) -> None:
        """(C.4): what a NextSeg retransmission of ``sent`` octets at ``off`` moves."""
        if rule == 4:
            self.rescue_rxt = self.cc.recover  # a rescue does not move HighRxt
        else:
            self.high_rxt = seq_add(una, off + sent)
