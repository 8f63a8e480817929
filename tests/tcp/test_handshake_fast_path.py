"""The handshake's last ACK in SYN-RECEIVED: the fast path equals the full one.

A passive child's third handshake segment (a bare ACK of our SYN,ACK) goes
through :meth:`TcpReceiver._handshake_ack` on one copy of the connection and
through the full RFC 9293 §3.10.7.4 steps on another; every variable of both
(TCB, timers, loss recovery, buffers, counters, transitions), their events,
what they send next and their timers must be identical. ACKs the fast path
must leave to the full one (unacceptable, PAWS, with data, with the handshake
closed early) are checked to go the full way.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest

from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection
from synack.tcp.pair import TcpPair
from synack.tcp.states import State
from synack.wire.tcp import TcpSegment
from tests.tcp.test_closing_fast_path import _full_path, _snapshot

CONFIGS = [
    TcpConfig(),
    TcpConfig(sack=False),
    TcpConfig(timestamps=False),
    TcpConfig(congestion_control="cubic", keepalive=True),
]
IDS = ["default", "no-sack", "no-timestamps", "cubic-keepalive"]


def _half_open(config: TcpConfig, *, close_early: bool = False) -> tuple[TcpPair, TcpSegment]:
    """The server in SYN-RECEIVED and the client's handshake ACK, not yet delivered."""
    p = TcpPair(config, config)
    p.a.connect(p.now)
    p.to_b(p.out_a())
    p.advance(0.004)
    synack = p.out_b()
    assert p.b.state is State.SYN_RECEIVED
    if close_early:
        p.b.close(p.now)  # CLOSE in SYN-RECEIVED: FIN-WAIT-1 once established
    p.to_a(synack)
    p.advance(0.007)
    (ack,) = p.out_a()
    assert not ack.payload and ack.ack == (p.b.iss + 1) % 2**32
    return p, ack


def _both(
    conn: TcpConnection, seg: TcpSegment, now: float, monkeypatch: pytest.MonkeyPatch
) -> TcpConnection:
    """Deliver ``seg`` to ``conn`` by the fast path (the full one refused) and
    to a copy of ``conn`` by the full path; both must come out the same."""
    full = copy.deepcopy(conn)
    with monkeypatch.context() as m:

        def not_taken(*_: object) -> None:
            raise AssertionError("the full path took the handshake ACK")

        m.setattr(TcpConnection, "_segment_arrives_other", not_taken)
        conn.receive_segment(seg, now)
    _full_path(full, seg, now)
    assert _snapshot(conn) == _snapshot(full)
    assert conn.transitions == full.transitions
    assert [conn.next_event() for _ in range(4)] == [full.next_event() for _ in range(4)]
    assert conn.segments_to_send(now) == full.segments_to_send(now)
    assert conn.get_timer() == full.get_timer()
    return full


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_handshake_ack_equals_the_full_path(
    config: TcpConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    p, ack = _half_open(config)
    _both(p.b, ack, p.now, monkeypatch)
    assert p.b.state is State.ESTABLISHED
    assert p.b.stats.srtt is not None  # the SYN,ACK's RTT was sampled


@pytest.mark.parametrize("config", CONFIGS[:2], ids=IDS[:2])
def test_handshake_ack_after_an_early_close_equals_the_full_path(
    config: TcpConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    p, ack = _half_open(config, close_early=True)
    _both(p.b, ack, p.now, monkeypatch)
    assert p.b.state is State.FIN_WAIT_1  # the deferred CLOSE went on


def _taken_by_full_path(conn: TcpConnection, seg: TcpSegment, now: float) -> bool:
    return not conn._handshake_ack(seg, now)


@pytest.mark.parametrize(
    "change",
    [
        {"ack": "past-snd-max"},  # unacceptable: the full path answers with RST
        {"payload": b"GET / HTTP/1.0\r\n\r\n"},  # data rides on it
        {"seq": "old"},  # not at RCV.NXT
        {"timestamps": "old"},  # PAWS rejects it
        {"timestamps": None},  # TS agreed, none on the segment
    ],
    ids=["bad-ack", "data", "old-seq", "paws", "no-ts"],
)
def test_other_acks_go_the_full_way(change: dict[str, object]) -> None:
    p, ack = _half_open(TcpConfig())
    b = p.b
    fields: dict[str, object] = {}
    if change.get("ack") == "past-snd-max":
        fields["ack"] = (b.snd_max + 10) % 2**32
    if "payload" in change:
        fields["payload"] = change["payload"]
    if change.get("seq") == "old":
        fields["seq"] = (ack.seq - 1) % 2**32
    if "timestamps" in change:
        ts = ack.options.timestamps
        assert ts is not None
        new = None if change["timestamps"] is None else ((ts[0] - 1000) % 2**32, ts[1])
        fields["options"] = dataclasses.replace(ack.options, timestamps=new)
    seg = dataclasses.replace(ack, **fields)  # type: ignore[arg-type]
    before = _snapshot(b)
    assert _taken_by_full_path(b, seg, p.now)
    assert _snapshot(b) == before  # refused without touching anything


def _fin_to_server(state: State, config: TcpConfig) -> tuple[TcpPair, TcpSegment]:
    """The server (b) in ``state`` with data exchanged, and the client's FIN
    (with ACK, no data) in sequence, not yet delivered. FIN_WAIT_1: the FIN
    acknowledges ours; CLOSING: it crosses ours; FIN_WAIT_2: ours was
    acknowledged first; ESTABLISHED: the client closes first."""
    p = TcpPair(config, config)
    p.open()
    p.a.send(b"GET / HTTP/1.0\r\n\r\n", p.now)
    p.exchange()
    p.b.receive(1 << 20)
    p.advance(0.002)
    p.b.send(b"HTTP/1.1 200 OK\r\n\r\nhello", p.now)
    if state is State.ESTABLISHED:
        p.exchange()
        p.a.receive(1 << 20)
        p.advance(0.004)
        p.exchange()
        p.a.close(p.now)
    elif state is State.CLOSING:
        p.to_a(p.out_b())
        p.a.receive(1 << 20)
        p.a.close(p.now)
        p.b.close(p.now)
        p.out_b()  # our FIN crosses theirs (lost for this test)
    else:
        p.b.close(p.now)
        p.to_a(p.out_b())
        p.a.receive(1 << 20)
        if state is State.FIN_WAIT_2:
            p.to_b(p.out_a())  # the client's ACK of our FIN alone
        p.advance(0.004)
        p.a.close(p.now)
    fins = [s for s in p.out_a() if int(s.flags) & 1]
    assert p.b.state is state and len(fins) == 1 and not fins[0].payload
    return p, fins[0]


@pytest.mark.parametrize(
    "state", [State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSING]
)
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_fin_equals_the_full_path(
    state: State, config: TcpConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    p, fin = _fin_to_server(State.FIN_WAIT_1 if state is State.CLOSING else state, config)
    if state is State.CLOSING:
        # Our FIN is unacknowledged by the peer's (simultaneous close): rewind its ACK.
        fin = dataclasses.replace(fin, ack=p.b.snd_una)
    _both(p.b, fin, p.now, monkeypatch)
    after = {
        State.ESTABLISHED: State.CLOSE_WAIT,
        State.FIN_WAIT_1: State.TIME_WAIT,
        State.FIN_WAIT_2: State.TIME_WAIT,
        State.CLOSING: State.CLOSING,
    }
    assert p.b.state is after[state]
