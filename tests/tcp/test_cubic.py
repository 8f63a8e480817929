"""CUBIC (RFC 9438): the reduction and the window growth function, on the manual clock."""

from __future__ import annotations

import dataclasses

import pytest

from synack.errors import LocalProtocolError
from synack.tcp.config import TcpConfig
from synack.tcp.cubic import ALPHA_CUBIC, BETA_CUBIC, C_CUBIC, Cubic, w_cubic
from synack.tcp.rto import RttEstimator
from tests.tcp.harness import PLAIN, Duo

MSS = 1000
RTT = 0.1


def after_loss(cwnd_segments: int, *, w_max_before: float = 0.0) -> tuple[Cubic, RttEstimator]:
    rtt = RttEstimator()
    rtt.sample(RTT)
    cc = Cubic(MSS, 0, rtt=rtt)
    cc.cwnd = cwnd_segments * MSS
    cc._w_max = w_max_before
    cc.enter_sack_recovery(cwnd_segments * MSS, 10**6)  # RecoveryPoint 10**6
    cc.on_new_ack(10**6, MSS, 0, 0.0)  # recovery ends
    assert not cc.in_recovery
    return cc, rtt


def run_rounds(cc: Cubic, start: float, seconds: float) -> list[tuple[float, float]]:
    """One ACK per segment, a window per RTT spread evenly; (time, cwnd in segments) per round."""
    out = []
    now = start
    while now < start + seconds:
        n = cc.cwnd // MSS
        for i in range(n):
            cc.on_new_ack(0, MSS, cc.cwnd, now + RTT * i / n)
        now += RTT
        out.append((now, cc.cwnd / MSS))
    return out


def test_multiplicative_decrease_is_beta_cubic() -> None:
    cc, _ = after_loss(100)
    assert cc.ssthresh == cc.cwnd == 70 * MSS  # RFC 9438 §4.6: 0.7, not NewReno's 0.5
    assert cc.w_max == 100


def test_fast_convergence_lowers_w_max() -> None:
    cc, _ = after_loss(80, w_max_before=100)
    assert cc.w_max == pytest.approx(80 * (1 + BETA_CUBIC) / 2)  # §4.7


def test_window_follows_the_cubic_function_to_w_max_at_k() -> None:
    cc, _ = after_loss(100)
    rounds = run_rounds(cc, 10.0, 8.0)
    k = (100 * (1 - BETA_CUBIC) / C_CUBIC) ** (1 / 3)  # §4.2 equation (2)
    assert cc.k == pytest.approx(k) and k == pytest.approx(4.2172, abs=1e-4)
    # Each round ends near W_cubic(t + RTT) (the target one RTT ahead),
    # within two segments, all through the concave and convex regions.
    for t, w in rounds:
        expected = min(w_cubic(t - 10.0, k, 100), 1.5 * w)
        assert abs(w - expected) < 2.5, (t, w, expected)
    # Concave: fast growth first, a plateau at W_max around K, then convex.
    by_time = dict(rounds)
    first_second = by_time[min(by_time, key=lambda t: abs(t - 11.0))] - 70
    around_k = (
        by_time[min(by_time, key=lambda t: abs(t - 10.0 - k - 0.5))]
        - by_time[min(by_time, key=lambda t: abs(t - 10.0 - k + 0.5))]
    )
    late = (
        by_time[min(by_time, key=lambda t: abs(t - 17.5))]
        - by_time[min(by_time, key=lambda t: abs(t - 16.5))]
    )
    assert first_second > 3 * around_k and late > 3 * around_k
    assert abs(by_time[min(by_time, key=lambda t: abs(t - 10.0 - k))] - 100) < 2


def test_reno_friendly_region_for_a_small_window() -> None:
    # W_max 4 segments: W_cubic stays below W_est, which grows alpha_cubic
    # segments per window (§4.3).
    cc, _ = after_loss(4)
    assert cc.cwnd == 2800  # 0.7 * 4 segments (above the 2 * SMSS floor)
    rounds = run_rounds(cc, 0.0, 2.0)
    w = rounds[-1][1]
    # About alpha_cubic (0.53) segments per RTT over 20 RTTs from W_max.
    assert 4 + ALPHA_CUBIC * 10 < w < 4 + ALPHA_CUBIC * 30


def test_cubic_is_a_config_choice_and_transfers() -> None:
    cfg = dataclasses.replace(PLAIN, congestion_control="cubic", sack=True)
    d = Duo(cfg, cfg)
    d.open()
    assert isinstance(d.a._cc, Cubic)
    d.a.send(bytes(range(256)) * 40, d.now)
    got = bytearray()
    for _ in range(100):
        d.exchange()
        got += d.b.receive()
        if len(got) == 10240:
            break
    assert bytes(got) == bytes(range(256)) * 40
    with pytest.raises(LocalProtocolError, match="congestion_control"):
        TcpConfig(congestion_control="bbr")
