"""Header prediction's in-order data that acknowledges new data
(``TcpReceiver._fast_data_ack``: a keep-alive request answering our reply)
does exactly what the full RFC 9293 §3.10.7.4 path does: the same segments
out, the same events, the same TCB afterwards, on the same input. Each
scenario runs twice, with the fast path on and off, over a hand-driven pair
with random sizes, partial reads (windows that move), loss, duplication,
reordering and timers."""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import pytest

from synack.tcp import receiver as receiver_mod
from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection
from synack.tcp.pair import TcpPair
from synack.tcp.receiver import TcpReceiver
from synack.tcp.states import State
from synack.wire.tcp import TcpSegment


def _snapshot(obj: Any, depth: int = 0) -> Any:
    """Every variable of a connection and of its parts, as plain values."""
    if obj is None or isinstance(obj, int | float | str | bytes | bool | State):
        return obj
    if isinstance(obj, bytearray):
        return bytes(obj)
    if isinstance(obj, tuple | list | deque):
        return [_snapshot(x, depth + 1) for x in obj]
    if isinstance(obj, dict):
        return {k: _snapshot(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, TcpConfig | TcpSegment):
        return obj
    if depth > 4:
        return type(obj).__name__
    names: list[str] = []
    for cls in type(obj).__mro__:
        names += [n for n in getattr(cls, "__slots__", ()) if n != "__weakref__"]
    names += list(getattr(obj, "__dict__", {}))
    return (type(obj).__name__, {n: _snapshot(getattr(obj, n, None), depth + 1) for n in names})


def _scenario(seed: int, fast: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, int]:
    monkeypatch.setattr(TcpReceiver, "fast_data_ack", fast)
    taken = [0]
    real = TcpReceiver._fast_data_ack

    def counted(self: TcpReceiver, *args: Any) -> bool:
        ok = real(self, *args)
        taken[0] += ok
        return ok

    monkeypatch.setattr(TcpReceiver, "_fast_data_ack", counted)
    rng = random.Random(seed)
    small = rng.random() < 0.5
    cfg = TcpConfig(
        receive_buffer=rng.choice([4096, 8192, 65536]) if small else 256 * 1024,
        timestamps=rng.random() < 0.8,
        sack=rng.random() < 0.8,
        nodelay=rng.random() < 0.5,
        loss_detection=rng.choice(["rack", "rack", "rfc6675"]),
        congestion_control=rng.choice(["newreno", "cubic"]),
    )
    pair = TcpPair(cfg, cfg)
    pair.open()
    conns: list[TcpConnection] = [pair.a, pair.b]
    log: list[Any] = []
    held: list[tuple[int, TcpSegment]] = []  # reordered: delivered later
    for _step in range(400):
        # One side writes (a request, or the reply to one); both may read part.
        side = rng.randrange(2)
        conn = conns[side]
        if conn.state in (State.ESTABLISHED, State.CLOSE_WAIT) and rng.random() < 0.6:
            conn.send(rng.randbytes(rng.choice([1, 90, 300, 1460, 2000, 5000])), pair.now)
            if _step > 300 and rng.random() < 0.05:
                conn.shutdown_write(pair.now)  # its FIN: data in FIN-WAIT-1 acknowledges it
        for c in conns:
            if rng.random() < 0.7 and c.readable_bytes:
                log.append(("read", c is pair.a, c.receive(rng.choice([50, 500, 1 << 20]))))
        outs = [pair.out_a(), pair.out_b()]
        for who, segs in enumerate(outs):
            log.append(("out", who, segs))
            for seg in segs:
                fate = rng.random()
                if fate < 0.04:
                    continue  # lost
                if fate < 0.08:
                    held.append((who, seg))
                    continue
                (pair.to_b if who == 0 else pair.to_a)([seg])
                if fate < 0.11:
                    (pair.to_b if who == 0 else pair.to_a)([seg])  # duplicated
        if held and rng.random() < 0.3:
            who, seg = held.pop(rng.randrange(len(held)))
            (pair.to_b if who == 0 else pair.to_a)([seg])
        for c in conns:
            while (event := c.next_event()) is not None:
                log.append(("event", c is pair.a, event))
        if rng.random() < 0.3:
            pair.advance(pair.now + rng.choice([0.001, 0.05, 0.3, 1.5]))
    log.append(("end", [_snapshot(c) for c in conns]))
    return log, taken[0]


@pytest.mark.parametrize("seed", range(40))
def test_fast_data_ack_equals_the_full_path(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, taken = _scenario(seed, True, monkeypatch)
    slow, none = _scenario(seed, False, monkeypatch)
    assert none == 0
    assert taken > 0  # the fast path did run in this scenario
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        assert a == b


def test_a_keep_alive_request_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The case it is for: a request that acknowledges the previous reply,
    with the window moved by the read of that reply, is taken by header
    prediction (not the full path), and ends as the full path would."""
    monkeypatch.setattr(receiver_mod.TcpReceiver, "fast_data_ack", True)
    pair = TcpPair(TcpConfig(receive_buffer=8192), TcpConfig(receive_buffer=8192))
    pair.open()
    a, b = pair.a, pair.b
    full = 0
    real = TcpConnection._segment_arrives_other

    def counted(self: TcpConnection, seg: TcpSegment, now: float) -> None:
        nonlocal full
        full += 1
        real(self, seg, now)

    monkeypatch.setattr(TcpConnection, "_segment_arrives_other", counted)
    for i in range(5):
        a.send(b"GET / HTTP/1.1\r\n\r\n", pair.now)
        pair.to_b(pair.out_a())
        assert b.receive() == b"GET / HTTP/1.1\r\n\r\n"
        b.send(b"reply %d" % i, pair.now)
        pair.to_a(pair.out_b())
        assert a.receive() == b"reply %d" % i
        pair.now += 0.001
    assert full == 0
    assert b.snd_una == b.snd_max - len(b"reply 4")  # the last reply awaits its ACK
