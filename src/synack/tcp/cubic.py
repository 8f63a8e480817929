"""CUBIC congestion control (RFC 9438), a choice next to NewReno (``TcpConfig.congestion_control``).

:class:`Cubic` keeps NewReno's machinery (slow start, fast retransmit and
recovery, RFC 6675 / RACK recovery, the timeout rules: :class:`~synack.tcp.
congestion.NewReno`) and changes what RFC 9438 changes:

* the multiplicative decrease: ssthresh = cwnd * beta_cubic (0.7, §4.6),
  remembering W_max (with fast convergence, §4.7) and K, the time the cubic
  function takes to climb back to it: K = cbrt(W_max * (1 - beta) / C)
  (§4.2, C = 0.4, windows in segments, time in seconds);
* congestion avoidance (§4.2-4.4): from the first ACK after a reduction
  (the epoch) the target is W_cubic(t + RTT) = C * (t + RTT - K)^3 + W_max,
  t the time since the epoch; cwnd moves towards it by (target - cwnd) /
  cwnd segments per segment acknowledged, the target capped at 1.5 * cwnd
  (§4.4); below the Reno-friendly estimate W_est (§4.3, grown by
  alpha_cubic = 3 * (1 - beta) / (1 + beta) segments per window) cwnd
  follows W_est instead.

Slow start's exit is HyStart++ (:mod:`synack.tcp.hystart`, RFC 9406, for
either controller). Not implemented: the spurious congestion event undo of
§4.9 beyond what :mod:`synack.tcp.recovery` does.

Layer: tcp. Imports synack.tcp (congestion, rto).
"""

from __future__ import annotations

from synack.tcp.congestion import INITIAL_SSTHRESH, AckAction, NewReno
from synack.tcp.rto import RttEstimator

__all__ = ["ALPHA_CUBIC", "BETA_CUBIC", "C_CUBIC", "Cubic", "w_cubic"]

BETA_CUBIC = 0.7
C_CUBIC = 0.4
ALPHA_CUBIC = 3 * (1 - BETA_CUBIC) / (1 + BETA_CUBIC)


def w_cubic(t: float, k: float, w_max: float) -> float:
    """RFC 9438 §4.2 equation (1): the window (segments) ``t`` seconds into the epoch."""
    return C_CUBIC * (t - k) ** 3 + w_max


class Cubic(NewReno):
    """NewReno's recovery with RFC 9438's window growth and reduction."""

    __slots__ = ("_cwnd_epoch", "_epoch", "_k", "_rtt", "_w_est", "_w_max")

    def __init__(
        self,
        mss: int,
        iss: int,
        initial_ssthresh: int = INITIAL_SSTHRESH,
        iw: str = "rfc3390",
        *,
        rtt: RttEstimator | None = None,
    ) -> None:
        super().__init__(mss, iss, initial_ssthresh, iw)
        self._rtt = rtt
        self._w_max = 0.0  # segments, at the last congestion event
        self._k = 0.0
        self._epoch: float | None = None  # start of congestion avoidance since then
        self._cwnd_epoch = 0.0  # cwnd (segments) when the epoch began
        self._w_est = 0.0  # the Reno-friendly estimate (segments)

    @property
    def w_max(self) -> float:
        return self._w_max

    @property
    def k(self) -> float:
        return self._k

    def loss_ssthresh(self, flight: int) -> int:
        """RFC 9438 §4.6-4.7: W_max (fast convergence), K, and ssthresh = cwnd * beta."""
        mss = self.mss
        cwnd_seg = self.cwnd / mss
        if cwnd_seg < self._w_max:
            # §4.7 fast convergence: another flow is taking bandwidth.
            self._w_max = cwnd_seg * (1 + BETA_CUBIC) / 2
        else:
            self._w_max = cwnd_seg
        self._epoch = None
        return max(int(self.cwnd * BETA_CUBIC), 2 * mss)

    def on_new_ack(self, ack: int, acked: int, flight_after: int, now: float = 0.0) -> AckAction:
        if self.in_recovery or self.cwnd < self.ssthresh:
            return NewReno.on_new_ack(self, ack, acked, flight_after, now)
        self.dupacks = 0
        mss = self.mss
        cwnd_seg = self.cwnd / mss
        if self._epoch is None:
            # §4.2: the epoch starts with congestion avoidance; K from the
            # window it starts at (cwnd = ssthresh after a reduction).
            self._epoch = now
            self._cwnd_epoch = cwnd_seg
            self._w_est = cwnd_seg
            if self._w_max > cwnd_seg:
                self._k = ((self._w_max - cwnd_seg) / C_CUBIC) ** (1 / 3)
            else:
                self._k = 0.0
                self._w_max = cwnd_seg
        srtt = self._rtt.srtt if self._rtt is not None else None
        rtt = srtt if srtt is not None else 0.0
        t = now - self._epoch
        target = w_cubic(t + rtt, self._k, self._w_max)
        # §4.3 the Reno-friendly region: W_est grows alpha_cubic per window.
        segs = acked / mss
        self._w_est += ALPHA_CUBIC * segs / cwnd_seg
        if w_cubic(t, self._k, self._w_max) < self._w_est:
            new = self._w_est
        else:
            # §4.4 concave / §4.5 convex: (target - cwnd) / cwnd per segment.
            if target > 1.5 * cwnd_seg:
                target = 1.5 * cwnd_seg
            new = cwnd_seg + max(target - cwnd_seg, 0.0) * segs / cwnd_seg
        if new > cwnd_seg:
            self.cwnd = int(new * mss)
        return AckAction.NONE

    def on_timeout(self, flight: int, snd_max: int, *, first: bool) -> None:
        """§4.8: a timeout ends the epoch (ssthresh via loss_ssthresh, cwnd 1 segment)."""
        super().on_timeout(flight, snd_max, first=first)
        self._epoch = None
