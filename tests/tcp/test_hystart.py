"""HyStart++ (RFC 9406): the first slow start ends when the RTT rises, not at a burst of losses.

The rules on exact inputs (rounds of RTT samples), then the outcome on a
simulated bottleneck with a drop-tail queue.
"""

from __future__ import annotations

import copy
import random

from synack.core.sim import LinkParams, Simulator
from synack.tcp.config import TcpConfig
from synack.tcp.hystart import CSS_GROWTH_DIVISOR, CSS_ROUNDS, N_RTT_SAMPLE, HyStart
from synack.tcp.pair import SimApp, TcpSimPair


def round_of(hs: HyStart, start: int, rtt: float, n: int = N_RTT_SAMPLE) -> list[int]:
    """One round: ACKs of 100 octets each from ``start``; the next round ends 100*n later."""
    out = []
    for i in range(n):
        ack = start + 100 * (i + 1)
        out.append(hs.on_ack(ack, start + 100 * n + 100 * n, rtt))
    return out


def test_a_round_whose_minimum_rtt_rose_by_the_threshold_enters_css() -> None:
    hs = HyStart(0)
    # Round 1 (the first ACK starts it): min RTT 50 ms.
    assert round_of(hs, 0, 0.050) == [1] * N_RTT_SAMPLE
    # Round 2: 56 ms < 50 + max(4, min(50/8, 16)) = 56.25 ms: still slow start.
    assert round_of(hs, 1600, 0.056) == [1] * N_RTT_SAMPLE
    # Round 3: 56 + 7 = 63 ms >= 56 + 7 ms: Conservative Slow Start from the
    # N_RTT_SAMPLE-th sample on (the growth is divided by 4).
    got = round_of(hs, 3200, 0.063)
    assert got == [1] * (N_RTT_SAMPLE - 1) + [CSS_GROWTH_DIVISOR]
    assert hs.in_css and hs.css_baseline == 0.063


def test_css_falls_back_to_slow_start_when_the_rtt_drops_below_its_baseline() -> None:
    hs = HyStart(0)
    round_of(hs, 0, 0.050)
    round_of(hs, 1600, 0.060)
    assert hs.in_css
    # The next round's minimum (52 ms) is under the baseline (60 ms): spurious.
    got = round_of(hs, 3200, 0.052)
    assert got[-1] == 1 and not hs.in_css


def test_css_rounds_end_slow_start() -> None:
    hs = HyStart(0)
    round_of(hs, 0, 0.050)
    round_of(hs, 1600, 0.060)
    assert hs.in_css
    results = [round_of(hs, 3200 * (r + 1), 0.061) for r in range(CSS_ROUNDS)]
    # The end of the CSS_ROUNDS-th round in CSS returns 0: ssthresh = cwnd.
    assert results[-1][0] == 0 and hs.done
    assert all(r == [CSS_GROWTH_DIVISOR] * N_RTT_SAMPLE for r in results[:-1])


def test_too_few_samples_decide_nothing() -> None:
    hs = HyStart(0)
    round_of(hs, 0, 0.050, n=N_RTT_SAMPLE - 1)
    assert round_of(hs, 1400, 0.200, n=N_RTT_SAMPLE - 1) == [1] * (N_RTT_SAMPLE - 1)
    assert not hs.in_css


def transfer(hystart: bool) -> TcpSimPair:
    """600 KB over 2 Mbit/s, 40 ms RTT, a 40-segment drop-tail queue (BDP 10 segments)."""
    cfg = TcpConfig(mss=1000, send_buffer=200_000, receive_buffer=200_000, hystart=hystart)
    sim = Simulator(1)
    pair = TcpSimPair(
        sim,
        client_config=cfg,
        server_config=cfg,
        to_server=LinkParams(delay=0.02, bandwidth=250_000, queue_limit=40),
        to_client=LinkParams(delay=0.02),
        client_app=SimApp(outgoing=bytes(600_000)),
    )
    pair.start()
    sim.run(until=60, max_events=400_000)
    assert bytes(pair.server_app.received) == bytes(600_000)
    return pair


def test_hystart_leaves_slow_start_before_the_queue_overflows_in_a_burst() -> None:
    on, off = transfer(True), transfer(False)
    drops_on = on.link_to_server.stats.queue_drops
    drops_off = off.link_to_server.stats.queue_drops
    # Standard slow start doubles into the queue and loses a burst; with
    # HyStart++ the queue's RTT rise ends the doubling first (CSS grows a
    # quarter as fast), and far fewer segments are dropped.
    assert drops_on * 3 <= drops_off, (drops_on, drops_off)
    assert on.client.stats.retransmissions < off.client.stats.retransmissions


def _state(hs: HyStart) -> tuple[object, ...]:
    return tuple(getattr(hs, k) for k in HyStart.__slots__)


def test_a_run_of_acks_with_one_sample_is_its_acks_one_by_one() -> None:
    # ACK filtering (stack/gro.py) hands a round's run of ACKs sharing one
    # TSecr as one: on_ack_run must leave what on_ack per ACK leaves (as the
    # caller calls it: only while the round is open), whenever
    # run_stays_in_slow_start says the divisor stays 1 on every ACK; and
    # that must be so (else the run is refused and goes ACK by ACK).
    rng = random.Random(9406)
    allowed = refused = 0
    for _ in range(3000):
        hs = HyStart(0)
        base = rng.choice([0.001, 0.010, 0.050])
        for r in range(rng.randrange(0, 3)):
            round_of(hs, 10_000 * r, base * (1 + rng.random() / 4))
        start = 10_000 * 3
        hs.on_ack(start, start + 5_000, base)  # a new round starts
        for _ in range(rng.randrange(0, N_RTT_SAMPLE - 1)):
            hs.on_ack(start + 1, start + 5_000, base * (1 + rng.random()))
        if not hs.open:
            continue
        rtt = rng.choice([None, base, base * 1.1, base + 0.005, base * 3, base / 2])
        n = rng.randrange(2, 20)
        one = copy.copy(hs)
        divisors = []
        for _ in range(n):
            if one.open:
                divisors.append(one.on_ack(start + 100, start + 5_000, rtt))
        if not hs.run_stays_in_slow_start(rtt, n):
            refused += 1
            assert hs.in_css or CSS_GROWTH_DIVISOR in divisors
            continue
        allowed += 1
        assert set(divisors) == {1}
        assert hs.on_ack_run(start + 100, start + 5_000, rtt, n) == 1
        assert _state(hs) == _state(one)
    assert allowed > 500 and refused > 10
