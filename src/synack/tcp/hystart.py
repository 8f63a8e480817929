"""HyStart++ (RFC 9406): leave the first slow start before it overflows the bottleneck queue.

Slow start doubles cwnd every round trip until a loss; on a path with a
drop-tail queue that loss is a burst (measured on the bridge, 10 Mbit/s,
50 ms, a 50-frame queue: cwnd reached 136 segments where 93 fill the path
and the queue, and 124 segments were dropped in one round trip). HyStart++
watches the RTT instead: once a round's minimum RTT rises by RttThresh over
the previous round's (the queue is building), slow start gives way to
Conservative Slow Start (CSS: a quarter of the growth) for CSS_ROUNDS rounds,
then to congestion avoidance (ssthresh = cwnd). An RTT that falls back below
the baseline during CSS was a false alarm: slow start resumes (§4.2).

As §4.3 recommends, it runs only in the first slow start (while ssthresh
still has its initial "arbitrarily high" value): after a loss or a timeout
the ordinary slow start of RFC 5681 applies. The limit L on the growth per
ACK is the one slow start already has here (one SMSS per ACK, RFC 5681
§3.1); CSS divides it by CSS_GROWTH_DIVISOR (the congestion controller's
``ss_divisor``). Samples come from timestamps (one per ACK) or Karn's timed
segment; without N_RTT_SAMPLE samples in a round nothing is decided.

Layer: tcp. Imports nothing (the standard library only).
"""

from __future__ import annotations

__all__ = [
    "CSS_GROWTH_DIVISOR",
    "CSS_ROUNDS",
    "MAX_RTT_THRESH",
    "MIN_RTT_DIVISOR",
    "MIN_RTT_THRESH",
    "N_RTT_SAMPLE",
    "HyStart",
]

# RFC 9406 §4.3, the recommended constants.
MIN_RTT_THRESH = 0.004
MAX_RTT_THRESH = 0.016
MIN_RTT_DIVISOR = 8
N_RTT_SAMPLE = 8
CSS_GROWTH_DIVISOR = 4
CSS_ROUNDS = 5

_INF = float("inf")


class HyStart:
    """One connection's HyStart++ state (RFC 9406 §4.2)."""

    __slots__ = (
        "css_baseline",
        "css_rounds",
        "current_min",
        "done",
        "in_css",
        "last_min",
        "open",
        "samples",
        "window_end",
    )

    def __init__(self, snd_nxt: int) -> None:
        self.window_end = snd_nxt  # the round ends when this is acknowledged
        self.last_min = _INF  # lastRoundMinRTT
        self.current_min = _INF  # currentRoundMinRTT
        self.samples = 0  # rttSampleCount
        self.in_css = False
        self.css_baseline = _INF  # cssBaselineMinRtt
        self.css_rounds = 0
        # CSS ended slow start (on_ack returned 0). A loss or timeout is not
        # recorded here: LossRecovery drops this object instead.
        self.done = False
        # This round may still decide something. Out of CSS, once N_RTT_SAMPLE
        # samples were compared nothing can change until the round ends
        # (its minimum only falls): the caller skips on_ack until then.
        self.open = True

    def on_ack(self, ack: int, snd_max: int, rtt: float | None) -> int:
        """An ACK of new data in the first slow start: the growth divisor (1, or 4 in CSS).

        Returns 0 when CSS has run its CSS_ROUNDS rounds: the caller sets
        ssthresh = cwnd and slow start is over (§4.2).
        """
        end = self.window_end
        if ack == end or (end - ack) & 0xFFFFFFFF >= 0x80000000:  # seq_ge, inline: per ACK
            # A round ends: the next one starts with the data sent since.
            if self.in_css:
                self.css_rounds += 1
                if self.css_rounds >= CSS_ROUNDS:
                    self.done = True
                    return 0
            self.window_end = snd_max
            self.last_min = self.current_min
            self.current_min = _INF
            self.samples = 0
            self.open = True
        if rtt is not None:
            if rtt < self.current_min:
                self.current_min = rtt
            self.samples += 1
        if self.samples >= N_RTT_SAMPLE:
            if not self.in_css:
                last = self.last_min
                if last != _INF and self.current_min != _INF:
                    thresh = last / MIN_RTT_DIVISOR
                    if thresh > MAX_RTT_THRESH:
                        thresh = MAX_RTT_THRESH
                    elif thresh < MIN_RTT_THRESH:
                        thresh = MIN_RTT_THRESH
                    if self.current_min >= last + thresh:
                        # The queue is building: Conservative Slow Start.
                        self.in_css = True
                        self.css_baseline = self.current_min
                        self.css_rounds = 0
                if not self.in_css:
                    self.open = False  # decided for this round
            elif self.current_min < self.css_baseline:
                # The RTT increase was spurious: back to slow start.
                self.in_css = False
                self.css_baseline = _INF
        return CSS_GROWTH_DIVISOR if self.in_css else 1

    def run_stays_in_slow_start(self, rtt: float | None, n: int) -> bool:
        """Whether ``n`` ACKs of new data inside this open round (none
        reaching its end), each with the RTT sample ``rtt`` (one TSecr, one
        arrival time: the same sample), leave the growth divisor at 1 on
        every one of them: out of CSS, and the §4.2 comparison made once
        N_RTT_SAMPLE samples are in (the round's minimum is then
        min(currentRoundMinRTT, rtt) for all) does not enter CSS. Then
        :meth:`on_ack_run` is exactly their :meth:`on_ack` in turn
        (ACK filtering, stack/gro.py)."""
        if self.in_css:
            return False
        last = self.last_min
        if rtt is None or self.samples + n < N_RTT_SAMPLE or last == _INF:
            return True
        current = rtt if rtt < self.current_min else self.current_min
        thresh = last / MIN_RTT_DIVISOR
        if thresh > MAX_RTT_THRESH:
            thresh = MAX_RTT_THRESH
        elif thresh < MIN_RTT_THRESH:
            thresh = MIN_RTT_THRESH
        return not current >= last + thresh

    def on_ack_run(self, ack: int, snd_max: int, rtt: float | None, n: int) -> int:
        """:meth:`on_ack` for each of ``n`` ACKs that
        :meth:`run_stays_in_slow_start` allowed, the last being ``ack``: as
        the caller does ACK by ACK, none once the round is decided
        (``open`` false)."""
        divisor = self.on_ack(ack, snd_max, rtt)
        for _ in range(n - 1):
            if not self.open:
                break
            divisor = self.on_ack(ack, snd_max, rtt)
        return divisor
