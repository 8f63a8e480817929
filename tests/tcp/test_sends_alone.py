"""``Tcb.sends_alone`` and ``Tcb.unsent``: what the asyncio transport's one-pass
cork asks of the connection (synack.adapters.tcp.TcpTransport.write).

``sends_alone(n)`` must be true only when a SEND of ``n`` octets now would
leave at once as one segment of its own (RFC 9293 §3.8.6.2.1 rule (2): nothing
unacknowledged, all of it pushed and within the usable window), Nagle on or
off: checked against what ``segments_to_send`` then does, over random
exchanges. ``unsent`` counts the octets queued and not yet sent.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from synack.tcp.states import State
from tests.tcp.harness import PLAIN, Duo

NAGLE = dataclasses.replace(PLAIN, nodelay=False)


@pytest.mark.parametrize("cfg", [PLAIN, NAGLE], ids=["nodelay", "nagle"])
@pytest.mark.parametrize("seed", range(12))
def test_sends_alone_means_one_segment_of_exactly_that_write_at_once(
    cfg: object, seed: int
) -> None:
    rng = random.Random(seed)
    duo = Duo(cfg, cfg)  # type: ignore[arg-type]
    duo.open()
    a, b = duo.a, duo.b
    mss = a.effective_mss
    alone = 0
    for _ in range(60):
        n = rng.choice([1, 10, mss - 1, mss, mss + 1, 3 * mss])
        predicted = a.sends_alone(n)
        if predicted:
            assert a.unsent == 0
            a.send(b"x" * n, duo.now)
            assert a.unsent == n
            segs = duo.out_a()
            assert [len(s.payload) for s in segs] == [n]
            assert a.unsent == 0
            alone += 1
            duo.to_b(segs)
        else:
            a.send(b"y" * n, duo.now)
        # Sometimes the peer's ACKs come back before the next write, sometimes not.
        if rng.random() < 0.5:
            duo.exchange()
        b.receive(1 << 20)
    duo.exchange()
    assert alone > 0
    assert a.unsent == 0


def test_what_sends_alone_refuses() -> None:
    duo = Duo()
    duo.open()
    a, b = duo.a, duo.b
    mss = a.effective_mss
    assert a.sends_alone(1) and a.sends_alone(mss)
    assert not a.sends_alone(0)
    assert not a.sends_alone(mss + 1)  # more than one segment
    a.send(b"z" * 10, duo.now)
    assert not a.sends_alone(1)  # queued, not yet sent
    segs = duo.out_a()
    assert not a.sends_alone(1)  # in flight
    duo.to_b(segs)
    duo.exchange()
    assert a.sends_alone(1)
    # The peer's window closes: a write would not leave whole at once.
    wnd, a.snd_wnd = a.snd_wnd, 5
    assert a.sends_alone(5) and not a.sends_alone(6)
    a.snd_wnd = wnd
    # CLOSE-WAIT still sends; after our own close nothing does.
    assert b.receive(100) == b"z" * 10
    b.close(duo.now)
    duo.exchange()
    assert a.state is State.CLOSE_WAIT
    assert a.sends_alone(1)
    a.close(duo.now)
    assert not a.sends_alone(1)
    duo.exchange()
    assert a.unsent == 0
