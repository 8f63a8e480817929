"""The retransmission timeout of RFC 6298 (RFC 9293 §3.8.1, MUST-18).

:class:`RttEstimator` belongs to :class:`~synack.tcp.recovery.LossRecovery`,
which decides what is a sample (Karn's algorithm) and when to back off.

Layer: tcp. Imports synack.errors.
"""

from __future__ import annotations

from synack.errors import LocalProtocolError

# RFC 6298 §2: alpha = 1/8, beta = 1/4, K = 4.
ALPHA = 0.125
BETA = 0.25
K = 4


class RttEstimator:
    """SRTT, RTTVAR and RTO with exponential backoff.

    ``granularity`` is G, the clock granularity of RFC 6298 §2.3 (seconds).
    Karn's algorithm (no samples from retransmitted segments) is the caller's
    business: it decides which measurements are samples.
    """

    __slots__ = (
        "_backoff",
        "granularity",
        "initial",
        "max_rto",
        "min_rto",
        "rto",
        "rttvar",
        "srtt",
    )

    def __init__(
        self,
        *,
        initial: float = 1.0,
        min_rto: float = 1.0,
        max_rto: float = 60.0,
        granularity: float = 0.001,
    ) -> None:
        if not 0 < min_rto <= max_rto or initial <= 0:
            raise LocalProtocolError("need 0 < min_rto <= max_rto and initial > 0")
        self.initial = initial
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.granularity = granularity
        self.srtt: float | None = None
        self.rttvar: float | None = None
        # RFC 6298 §2.1: until a measurement is made, RTO = 1 s (configurable),
        # within [min_rto, max_rto] (min/max without the calls: per connection).
        rto = initial if initial > min_rto else min_rto
        self.rto = rto if rto < max_rto else max_rto
        self._backoff = 0

    def sample(self, r: float, times: int = 1) -> None:
        """Take one RTT measurement R (seconds), or ``times`` equal ones in
        turn (a run of ACKs with one TSecr, stack/gro.py): RTTVAR and SRTT
        updated that many times, RTO set from the last (what each of the
        measurements one by one leaves)."""
        # max() and min() spelt out: this runs on every ACK with a sample.
        if r < 0.0:
            r = 0.0
        srtt = self.srtt
        rttvar = self.rttvar
        if srtt is None or rttvar is None:
            # RFC 6298 §2.2: the first measurement.
            srtt = r
            rttvar = r / 2
            times -= 1
        if times == 1:
            # One sample (nearly every ACK): the loop's step without the loop.
            rttvar = (1 - BETA) * rttvar + BETA * abs(srtt - r)
            srtt = (1 - ALPHA) * srtt + ALPHA * r
        else:
            for _ in range(times):
                # RFC 6298 §2.3: RTTVAR is updated before SRTT, with the old SRTT.
                rttvar = (1 - BETA) * rttvar + BETA * abs(srtt - r)
                srtt = (1 - ALPHA) * srtt + ALPHA * r
        self.srtt = srtt
        self.rttvar = rttvar
        kvar = K * rttvar
        rto = srtt + (kvar if kvar > self.granularity else self.granularity)
        # RFC 6298 §2.4 (minimum) and §2.5 (a maximum of at least 60 s).
        if rto < self.min_rto:
            rto = self.min_rto
        self.rto = self.max_rto if self.max_rto < rto else rto
        # RFC 6298 §5: a new sample collapses the backoff.
        self._backoff = 0

    def restart(self, rto: float) -> None:
        """Set RTO to ``rto`` (clamped) and forget the backoff (RFC 6298 §5.7)."""
        self.rto = min(max(rto, self.min_rto), self.max_rto)
        self._backoff = 0

    def backoff(self) -> None:
        """RFC 6298 §5.5: on expiry, RTO = RTO * 2, bounded by the maximum."""
        self._backoff += 1
        self.rto = min(self.rto * 2, self.max_rto)

    @property
    def backoffs(self) -> int:
        return self._backoff
