"""Congestion control: RFC 5681 slow start, congestion avoidance, fast
retransmit and fast recovery, with the NewReno modification of RFC 6582.

RFC 9293 §3.8.2 (MUST-19) requires RFC 5681. :class:`NewReno` belongs to
:class:`~synack.tcp.recovery.LossRecovery`, which tells it what every ACK and
timeout did. Limited transmit (RFC 3042) is applied by the output
(:mod:`synack.tcp.sender`) when it sizes what it sends from ``dupacks``.
When both ends negotiated SACK, loss recovery runs RFC 6675 (scoreboard,
pipe, NextSeg) and uses :meth:`NewReno.enter_sack_recovery`: cwnd is then
neither inflated by duplicates nor deflated by partial ACKs, the pipe
estimate does that job.

Layer: tcp. Imports synack.tcp.seq.
"""

from __future__ import annotations

import enum

from synack.tcp.seq import seq_ge

#: RFC 5681 §3.1: the initial ssthresh, "arbitrarily high".
INITIAL_SSTHRESH = 1 << 30


class AckAction(enum.Enum):
    NONE = 0
    #: Retransmit the first unacknowledged segment now (fast retransmit on
    #: the third duplicate ACK, or a NewReno partial ACK).
    RETRANSMIT = 1


# As module constants (every ACK of new data returns one): on CPython 3.11
# ``AckAction.X`` is read through the enum metaclass's slow attribute hook
# (synack.tcp.states says more).
_NONE = AckAction.NONE
_RETRANSMIT = AckAction.RETRANSMIT


def initial_window(smss: int, choice: str = "rfc3390") -> int:
    """The initial window: RFC 5681 §3.1 equation (1) (RFC 3390), or RFC 6928's 10 segments."""
    if choice == "rfc6928":
        # RFC 6928 §2: min(10*MSS, max(2*MSS, 14600)).
        return min(10 * smss, max(2 * smss, 14600))
    if smss > 2190:
        return 2 * smss
    if smss > 1095:
        return 3 * smss
    return 4 * smss


class NewReno:
    """cwnd/ssthresh bookkeeping; the connection tells it what ACKs did."""

    __slots__ = (
        "_ca_acc",
        "_iw_choice",
        "acks",
        "cwnd",
        "dupacks",
        "in_recovery",
        "mss",
        "recover",
        "sack_recovery",
        "ss_credit",
        "ss_divisor",
        "ssthresh",
    )

    def __init__(
        self, mss: int, iss: int, initial_ssthresh: int = INITIAL_SSTHRESH, iw: str = "rfc3390"
    ) -> None:
        self.mss = mss
        self._iw_choice = iw
        self.cwnd = initial_window(mss, iw)
        # RFC 5681 §3.1: ssthresh SHOULD be set arbitrarily high initially.
        self.ssthresh = initial_ssthresh
        self.dupacks = 0
        self.in_recovery = False
        self.sack_recovery = False  # the recovery in progress is RFC 6675's
        # RFC 6582 §3.2 step 1: "recover" starts at the ISS. We store
        # SND.MAX at the moment of the loss (one past "the highest sequence
        # number transmitted"), so "covers recover" reads seq >= recover.
        self.recover = iss
        self._ca_acc = 0
        # Slow start grows by SMSS / ss_divisor per ACK: 1, or 4 during
        # HyStart++'s Conservative Slow Start (RFC 9406 §4.2).
        self.ss_divisor = 1
        # How many ACKs the one being processed stands for (the host's ACK
        # filtering, stack/gro.py), and slow start's growth for them: "at
        # most SMSS per ACK" summed over the ACKs the peer sent (0: one ACK).
        self.acks = 1
        self.ss_credit = 0

    def set_mss(self, mss: int) -> None:
        """The effective MSS became known (after the handshake): restart IW."""
        self.mss = mss
        self.cwnd = initial_window(mss, self._iw_choice)

    def on_new_ack(self, ack: int, acked: int, flight_after: int, now: float = 0.0) -> AckAction:
        """SND.UNA advanced to ``ack`` by ``acked`` bytes; ``flight_after`` remains."""
        mss = self.mss
        self.dupacks = 0
        if self.in_recovery:
            if self.sack_recovery:
                # RFC 6675 §5 (A): an ACK at or beyond RecoveryPoint ends
                # recovery; cwnd stayed at ssthresh throughout (step 4.2),
                # and partial ACKs only update the scoreboard and pipe.
                if seq_ge(ack, self.recover):
                    self.in_recovery = self.sack_recovery = False
                    self.cwnd = self.ssthresh  # RFC 6937 §3: PRR ends at ssthresh
                return _NONE
            if seq_ge(ack, self.recover):
                # RFC 6582 §3.2 step 3, full ACK: deflate, option (2).
                self.cwnd = min(self.ssthresh, max(flight_after, mss) + mss)
                self.in_recovery = False
                return _NONE
            # Partial ACK: retransmit the next hole, deflate by the amount
            # acknowledged and add back one SMSS if that was at least SMSS.
            self.cwnd = max(self.cwnd - acked, 0)
            if acked >= mss:
                self.cwnd += mss
            self.cwnd = max(self.cwnd, mss)
            return _RETRANSMIT
        if self.cwnd < self.ssthresh:
            # RFC 5681 §3.1 equation (2): slow start, at most SMSS per ACK
            # (divided during HyStart++'s CSS).
            inc = self.ss_credit or (acked if acked < mss else mss)
            div = self.ss_divisor
            self.cwnd += inc if div == 1 else inc // div
        else:
            # Congestion avoidance (RFC 5681 §3.1, equation (3) in its
            # byte-counting form): one SMSS per cwnd of acknowledged bytes.
            self._ca_acc += acked
            if self._ca_acc >= self.cwnd:
                self._ca_acc -= self.cwnd
                self.cwnd += mss
        return _NONE

    def on_dupack(self, ack: int, flight: int, snd_max: int) -> AckAction:
        """A duplicate ACK in the sense of RFC 5681 §2 arrived."""
        mss = self.mss
        self.dupacks += 1
        if self.in_recovery:
            # RFC 5681 §3.2 step 4: inflate by one SMSS per further dupack.
            self.cwnd += mss
            return AckAction.NONE
        if self.dupacks == 3:
            # RFC 6582 §3.2 step 2: only when the ACK covers "recover", so
            # that one loss event (or the duplicates a go-back-N resend after
            # a timeout provokes) is not answered by a second reduction.
            if not seq_ge(ack, self.recover):
                return AckAction.NONE
            # RFC 5681 §3.2 equation (4) and step 3.
            self.ssthresh = self.loss_ssthresh(flight)
            self.ss_divisor = 1
            self.recover = snd_max
            self.cwnd = self.ssthresh + 3 * mss
            self.in_recovery = True
            return AckAction.RETRANSMIT
        return AckAction.NONE

    def loss_ssthresh(self, flight: int) -> int:
        """RFC 5681 §3.1 equation (4): ssthresh after a loss (CUBIC overrides it)."""
        return max(flight // 2, 2 * self.mss)

    def may_enter_recovery(self, ack: int) -> bool:
        """Whether a loss now starts a new recovery (RFC 6582 §3.2 step 2; RFC 6675 §5.1).

        Not while one is in progress, and not before the cumulative ACK
        covers "recover": after a timeout (or a recovery) the duplicates
        provoked by resent data are not a new loss event.
        """
        return not self.in_recovery and seq_ge(ack, self.recover)

    def enter_sack_recovery(self, flight: int, snd_max: int) -> None:
        """RFC 6675 §5 step 4: RecoveryPoint = HighData, ssthresh = cwnd = FlightSize / 2."""
        self.ssthresh = self.loss_ssthresh(flight)  # RFC 5681 §3.1 eq. (4)
        self.ss_divisor = 1
        self.cwnd = self.ssthresh
        self.recover = snd_max
        self.in_recovery = True
        self.sack_recovery = True

    def on_timeout(self, flight: int, snd_max: int, *, first: bool) -> None:
        """The retransmission timer expired (RFC 5681 §3.1 equation (4), loss window).

        ``first``: the segment had not been resent by the timer before; only
        then is ssthresh lowered (RFC 5681 §3.1, "MUST be set to no more than").
        """
        if first:
            self.ssthresh = self.loss_ssthresh(flight)
        self.cwnd = self.mss
        self.ss_divisor = 1
        self._ca_acc = 0
        self.dupacks = 0
        self.in_recovery = False
        self.sack_recovery = False
        # RFC 6582 §3.2 step 4: after a timeout, record the highest sequence
        # number transmitted in "recover".
        self.recover = snd_max
