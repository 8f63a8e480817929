"""Header prediction takes a pure ACK of new data that also moves the
window (``TcpReceiver._fast_data_ack`` with no payload: the peer's reader
made room, as on most ACKs of a download) with the full path's outcome.
The random scenarios of tests/tcp/test_fast_data_ack.py run with the fast
path on and off on the same input; here they must include such ACKs."""

from __future__ import annotations

from typing import Any

import pytest

from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection
from synack.tcp.pair import TcpPair
from synack.tcp.receiver import TcpReceiver
from synack.wire.tcp import TcpSegment
from tests.tcp.test_fast_data_ack import _scenario


@pytest.mark.parametrize("seed", range(100, 112))
def test_pure_acks_that_move_the_window_equal_the_full_path(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pure = [0]
    real = TcpReceiver._fast_data_ack

    def counted(self: TcpReceiver, seg: TcpSegment, *args: Any) -> bool:
        ok = real(self, seg, *args)
        pure[0] += ok and not seg.payload
        return ok

    monkeypatch.setattr(TcpReceiver, "_fast_data_ack", counted)
    fast, _ = _scenario(seed, True, monkeypatch)
    taken = pure[0]
    slow, none = _scenario(seed, False, monkeypatch)
    assert none == 0
    assert fast == slow
    assert taken > 0  # (24-60 such ACKs in each of these scenarios)


def test_a_bulk_senders_window_moving_acks_skip_the_full_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = TcpConfig(receive_buffer=64 * 1024)
    pair = TcpPair(cfg, cfg)
    pair.open()
    a, b = pair.a, pair.b
    full = 0
    real = TcpConnection._segment_arrives_other

    def counted(self: TcpConnection, seg: TcpSegment, now: float) -> None:
        nonlocal full
        if self is a and seg.ack != a.snd_una:
            full += 1  # (a bare window update, acknowledging nothing new, goes the full way)
        real(self, seg, now)

    monkeypatch.setattr(TcpConnection, "_segment_arrives_other", counted)
    data, got = bytes(range(256)) * 4000, bytearray()
    sent = 0
    windows = set()
    for _ in range(2000):
        if sent < len(data):
            sent += a.send(data[sent : sent + 20000], pair.now)
        pair.to_b(pair.out_a())
        got += b.receive(5000)  # a slow reader: the window moves on each ACK
        acks = pair.out_b()
        windows.update(s.window for s in acks)
        pair.to_a(acks)
        pair.now += 0.001
        if len(got) == len(data):
            break
    assert bytes(got) == data
    assert len(windows) > 5
    assert full == 0  # every ACK of new data taken by header prediction
