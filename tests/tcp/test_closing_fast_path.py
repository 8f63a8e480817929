"""Header prediction for a pure ACK of data while our FIN is in flight.

A server's reply and its FIN often leave as two segments (the program writes,
then closes a turn later), and the peer acknowledges the reply alone. That ACK
takes the fast path in FIN-WAIT-1 / LAST-ACK as long as it does not cover the
FIN; here the same ACK goes through the fast path on one copy of the
connection and through the full RFC 9293 §3.10.7.4 steps on another, and every
variable of both copies (TCB, timers, loss recovery, RACK, buffers, counters),
their events and what they send next must be identical.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
from typing import Any

import pytest

from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection
from synack.tcp.pair import TcpPair
from synack.tcp.states import State
from synack.wire.tcp import TcpSegment


def _snapshot(obj: Any, seen: set[int] | None = None) -> Any:
    """Every variable reachable from ``obj`` inside synack, as plain values."""
    seen = set() if seen is None else seen
    if obj is None or isinstance(obj, (int, float, str, bytes, bool, enum.Enum)):
        return obj
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, (list, tuple)) or type(obj).__name__ == "deque":
        return [_snapshot(x, seen) for x in obj]
    if isinstance(obj, dict):
        return {k: _snapshot(v, seen) for k, v in obj.items()}
    if id(obj) in seen:
        return "<seen>"
    seen.add(id(obj))
    if not type(obj).__module__.startswith("synack"):
        return repr(obj)
    names: list[str] = []
    for klass in type(obj).__mro__:
        names += [n for n in getattr(klass, "__slots__", ()) if n != "__weakref__"]
    names += list(getattr(obj, "__dict__", {}))
    return {n: _snapshot(getattr(obj, n, "<unset>"), seen) for n in sorted(set(names))}


def _closing(reply: bytes, state: State, config: TcpConfig) -> tuple[TcpPair, TcpSegment]:
    """The server sent ``reply`` and then its FIN as a segment of its own (in
    FIN-WAIT-1, or LAST-ACK after the client's FIN); the client's pure ACK
    of the reply alone, not yet delivered, is returned."""
    p = TcpPair(dataclasses.replace(config, delayed_ack=False), config)
    p.open()
    if state is State.LAST_ACK:
        p.a.shutdown_write(p.now)
        p.exchange()
    p.b.send(reply, p.now)
    data = p.out_b()
    p.advance(0.002)
    p.b.shutdown_write(p.now)
    fin = p.out_b()
    assert [len(s.payload) for s in data] == [len(reply)] and fin and not fin[0].payload
    assert p.b.state is state
    p.to_a(data)
    p.a.receive(1 << 20)
    p.advance(0.003)
    acks = [s for s in p.out_a() if not s.payload]
    assert acks and acks[-1].ack == (p.b.iss + 1 + len(reply)) % 2**32
    # The window the server already holds (a kernel client's stays put; this
    # one's moved by a scaling step when it read): header prediction's case.
    return p, dataclasses.replace(acks[-1], window=p.b.snd_wnd >> p.b._snd_wscale)


def _full_path(conn: TcpConnection, seg: TcpSegment, now: float) -> None:
    """TcpConnection._segment_arrives without header prediction."""
    conn.stats_counters.segments_in += conn._coalesced
    conn._seg_in = seg
    try:
        conn._segment_arrives_other(seg, now)
    finally:
        conn._seg_in = None


@pytest.mark.parametrize("state", [State.FIN_WAIT_1, State.LAST_ACK])
@pytest.mark.parametrize(
    "config",
    [
        TcpConfig(),
        TcpConfig(sack=False),
        TcpConfig(timestamps=False),
        TcpConfig(congestion_control="cubic"),
    ],
    ids=["default", "no-sack", "no-timestamps", "cubic"],
)
def test_ack_of_data_before_our_fin_equals_the_full_path(
    state: State, config: TcpConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    p, ack = _closing(b"HTTP/1.1 200 OK\r\n\r\nhello" * 3, state, config)
    fast, full = p.b, copy.deepcopy(p.b)
    now = p.now
    with monkeypatch.context() as m:

        def not_taken(*_: object) -> None:
            raise AssertionError("the full path took the ACK")

        m.setattr(TcpConnection, "_segment_arrives_other", not_taken)
        fast.receive_segment(ack, now)
    _full_path(full, ack, now)
    assert fast.state is full.state is state
    assert _snapshot(fast) == _snapshot(full)
    assert [fast.next_event() for _ in range(4)] == [full.next_event() for _ in range(4)]
    assert fast.segments_to_send(now) == full.segments_to_send(now)
    assert fast.get_timer() == full.get_timer()
    # The FIN is still unacknowledged on both: its ACK takes the full path.
    assert fast._fin_seq is not None and not fast._fin_acked
