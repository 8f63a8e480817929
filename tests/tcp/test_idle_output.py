"""``TcpSender.segments_to_send``'s early answer when nothing can go
(``_nothing_to_send``: the receiving side of a request/response exchange,
after a request that acknowledged the whole reply) does what the whole method
does: the same segments out, events and TCB afterwards, on the same input.
The random exchanges of tests/tcp/test_fast_data_ack.py (loss, duplication,
reordering, partial reads, timers, FINs) run with it on and off."""

from __future__ import annotations

from typing import Any

import pytest

from synack.tcp.config import TcpConfig
from synack.tcp.pair import TcpPair
from synack.tcp.sender import TcpSender
from tests.tcp.test_fast_data_ack import _scenario


def _run(seed: int, on: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, int, int]:
    monkeypatch.setattr(TcpSender, "idle_output", on)
    calls = [0, 0]
    real = TcpSender._nothing_to_send

    def counted(self: TcpSender) -> bool:
        idle = real(self)
        calls[0] += 1
        calls[1] += idle
        return idle

    monkeypatch.setattr(TcpSender, "_nothing_to_send", counted)
    log, _ = _scenario(seed, True, monkeypatch)
    return log, calls[0], calls[1]


@pytest.mark.parametrize("seed", range(24))
def test_nothing_to_send_equals_the_whole_method(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, asked, idle = _run(seed, True, monkeypatch)
    slow, not_asked, _ = _run(seed, False, monkeypatch)
    assert not_asked == 0
    assert 0 < idle < asked  # both answers came up in this scenario
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        assert a == b


def test_a_keep_alive_server_answers_nothing_at_once_after_a_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The case it is for: a request that acknowledges the whole reply
    leaves the server nothing to send (its ACK is delayed, MUST-40), and the
    early answer says so; the reply then goes the whole way, carrying the ACK."""
    monkeypatch.setattr(TcpSender, "idle_output", True)
    pair = TcpPair(TcpConfig(), TcpConfig())
    pair.open()
    a, b = pair.a, pair.b
    for i in range(3):
        a.send(b"GET / HTTP/1.1\r\n\r\n", pair.now)
        pair.to_b(pair.out_a())
        assert b._nothing_to_send()  # every octet sent is acknowledged, the ACK delayed
        assert pair.out_b() == [] and b.get_timer() is not None  # the delayed ACK's timer
        assert b.receive() == b"GET / HTTP/1.1\r\n\r\n"
        b.send(b"reply %d" % i, pair.now)
        assert not b._nothing_to_send()
        (reply,) = pair.out_b()
        assert reply.payload == b"reply %d" % i and reply.ack == b.rcv_nxt
        pair.to_a([reply])
        assert a.receive() == b"reply %d" % i
        pair.now += 0.001


def _after_a_request() -> tuple[TcpPair, Any]:
    pair = TcpPair(TcpConfig(), TcpConfig())
    pair.open()
    pair.a.send(b"GET / HTTP/1.1\r\n\r\n", pair.now)
    pair.to_b(pair.out_a())
    pair.b.send(b"reply", pair.now)
    pair.to_a(pair.out_b())
    pair.now += 0.01
    pair.a.send(b"GET / HTTP/1.1\r\n\r\n", pair.now)  # acknowledges the whole reply
    pair.to_b(pair.out_a())
    return pair, pair.b


@pytest.mark.parametrize(
    "change",
    [
        "none",
        "fin",  # shutdown_write with nothing unsent: the FIN must go
        "data",
        "ack",  # an ACK owed now (a window update)
        "persist",
        "rexmit_one",
        "sack_recovery",
        "fin_in_flight",  # SND.MAX past SND.UNA with the send buffer empty
    ],
)
def test_each_reason_to_send_takes_the_whole_method(
    change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same connection, copied, asked with the early answer on and off:
    # the same segments, the same TCB.
    import copy

    from tests.tcp.test_fast_data_ack import _snapshot

    pair, conn = _after_a_request()
    now = pair.now
    if change == "fin":
        conn.shutdown_write(now)
    elif change == "data":
        conn.send(b"more", now)
    elif change == "ack":
        conn._ack_now = True
    elif change == "persist":
        conn._timers.persist = now + 1.0
    elif change == "rexmit_one":
        conn._recovery.rexmit_one = True
    elif change == "sack_recovery":
        conn._cc.in_recovery = conn._cc.sack_recovery = True
    elif change == "fin_in_flight":
        conn.shutdown_write(now)
        (fin,) = conn.segments_to_send(now)
        assert fin.flags & 1 and conn.snd_max != conn.snd_una
    results = []
    for on in (True, False):
        monkeypatch.setattr(TcpSender, "idle_output", on)
        twin = copy.deepcopy(conn)
        results.append((twin.segments_to_send(now + 0.001), _snapshot(twin), twin.get_timer()))
    assert results[0] == results[1]
    assert conn._nothing_to_send() == (change == "none")
