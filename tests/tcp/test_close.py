"""Closing, resets, aborts and give-ups in every synchronized state (RFC 9293 §3.6, §3.10)."""

from __future__ import annotations

import dataclasses

import pytest

from synack.tcp import events as ev
from synack.tcp.config import TcpConfig
from synack.tcp.states import Cause, State
from synack.wire.tcp import TcpSegment
from tests.tcp.harness import PLAIN, Duo, Mirror, brief, drain, kinds, seg_to


def reach(
    target: State, cfg: TcpConfig = PLAIN, side: str = "active"
) -> tuple[Duo | Mirror, list[TcpSegment]]:
    """A view whose ``a`` is in ``target``: the active opener, or with
    side="passive" the passive one; returns segments held back (not delivered)."""
    duo = Duo(cfg, cfg)
    duo.open()
    d: Duo | Mirror = duo if side == "active" else Mirror(duo)
    held: list[TcpSegment] = []
    if target is State.ESTABLISHED:
        pass
    elif target is State.FIN_WAIT_1:
        d.a.shutdown_write(d.now)
        held = d.out_a()
    elif target is State.FIN_WAIT_2:
        d.a.shutdown_write(d.now)
        d.to_b(d.out_a())
        d.to_a(d.out_b())
    elif target is State.CLOSE_WAIT:
        d.b.shutdown_write(d.now)
        d.to_a(d.out_b())
        d.to_b(d.out_a())
    elif target is State.LAST_ACK:
        d.b.shutdown_write(d.now)
        d.to_a(d.out_b())
        d.to_b(d.out_a())
        d.a.shutdown_write(d.now)
        held = d.out_a()
    elif target is State.CLOSING:
        d.a.shutdown_write(d.now)
        d.b.shutdown_write(d.now)
        held = d.out_a()
        d.to_a(d.out_b())
        d.out_a()  # A's ACK of B's FIN, lost
    elif target is State.TIME_WAIT:
        d.a.shutdown_write(d.now)
        d.to_b(d.out_a())
        d.to_a(d.out_b())
        d.b.shutdown_write(d.now)
        d.to_a(d.out_b())
        held = d.out_a()  # A's last ACK
    assert d.a.state is target, d.a.state
    drain(d.a)
    return d, held


@pytest.mark.parametrize("first", ["a", "b"])
def test_four_way_close_exact(first: str) -> None:
    # RFC 9293 §3.6 Figure 12, run with either side closing first.
    d = Duo()
    d.open()
    drain(d.a)
    drain(d.b)
    closer, other = (d.a, d.b) if first == "a" else (d.b, d.a)
    to_other = d.to_b if first == "a" else d.to_a
    to_closer = d.to_a if first == "a" else d.to_b
    c_seq, o_seq = closer.snd_nxt, other.snd_nxt
    closer.shutdown_write(d.now)
    assert closer.state is State.FIN_WAIT_1
    fin = closer.segments_to_send(d.now)
    assert [brief(s) for s in fin] == [(c_seq, o_seq, "AF", 0)]
    to_other(fin)
    assert other.state is State.CLOSE_WAIT
    assert kinds(drain(other)) == ["EndOfStream"]
    ack = other.segments_to_send(d.now)
    assert [brief(s) for s in ack] == [(o_seq, c_seq + 1, "A", 0)]
    to_closer(ack)
    assert closer.state is State.FIN_WAIT_2
    d.now = 1.0
    other.shutdown_write(d.now)
    assert other.state is State.LAST_ACK
    fin2 = other.segments_to_send(d.now)
    assert [brief(s) for s in fin2] == [(o_seq, c_seq + 1, "AF", 0)]
    to_closer(fin2)
    assert closer.state is State.TIME_WAIT
    last = closer.segments_to_send(d.now)
    assert [brief(s) for s in last] == [(c_seq + 1, o_seq + 1, "A", 0)]
    to_other(last)
    assert other.state is State.CLOSED
    assert other.transitions[-1].cause is Cause.RCV_ACK_OF_FIN
    # MUST-13: TIME-WAIT lasts 2*MSL (MSL 30 s here).
    assert closer.get_timer() == 1.0 + 60.0
    d.advance(60.9)
    assert closer.state is State.TIME_WAIT
    d.advance(61.0)
    assert closer.state is State.CLOSED
    assert closer.transitions[-1].cause is Cause.TIME_WAIT_EXPIRED
    assert [t.new for t in closer.transitions][-4:] == [
        State.FIN_WAIT_1,
        State.FIN_WAIT_2,
        State.TIME_WAIT,
        State.CLOSED,
    ]
    assert [t.new for t in other.transitions][-3:] == [
        State.CLOSE_WAIT,
        State.LAST_ACK,
        State.CLOSED,
    ]


def test_simultaneous_close() -> None:
    # RFC 9293 §3.6 Figure 13.
    d = Duo()
    d.open()
    d.a.shutdown_write(d.now)
    d.b.shutdown_write(d.now)
    fa, fb = d.out_a(), d.out_b()
    assert [brief(s) for s in fa] == [(101, 301, "AF", 0)]
    assert [brief(s) for s in fb] == [(301, 101, "AF", 0)]
    d.to_b(fa)
    d.to_a(fb)
    assert d.a.state is State.CLOSING and d.b.state is State.CLOSING
    aa, ab = d.out_a(), d.out_b()
    assert [brief(s) for s in aa] == [(102, 302, "A", 0)]
    assert [brief(s) for s in ab] == [(302, 102, "A", 0)]
    d.to_b(aa)
    d.to_a(ab)
    assert d.a.state is State.TIME_WAIT and d.b.state is State.TIME_WAIT
    assert [t.cause for t in d.a.transitions][-3:] == [
        Cause.CLOSE,
        Cause.RCV_FIN,
        Cause.RCV_ACK_OF_FIN,
    ]
    d.advance(60.0)
    assert d.a.state is State.CLOSED and d.b.state is State.CLOSED


def test_lost_final_ack_is_reacked_from_time_wait() -> None:
    d, _ = reach(State.TIME_WAIT)
    d.out_a()  # A's ACK of B's FIN: lost
    assert d.a.get_timer() == 60.0
    # B (LAST-ACK) retransmits its FIN after the RTO.
    deadline = d.b.get_timer()
    assert deadline == 1.0
    d.advance(deadline)
    fin = d.out_b()
    assert [brief(s) for s in fin] == [(301, 102, "AF", 0)]
    d.to_a(fin)
    reack = d.out_a()
    assert [brief(s) for s in reack] == [(102, 302, "A", 0)]
    assert d.a.get_timer() == 1.0 + 60.0  # the 2MSL wait restarted
    d.to_b(reack)
    assert d.b.state is State.CLOSED


def test_half_close_with_data_flowing_the_other_way() -> None:
    d = Duo()
    d.open()
    d.a.send(b"request", d.now)
    d.a.shutdown_write(d.now)
    d.exchange()
    assert d.a.state is State.FIN_WAIT_2 and d.b.state is State.CLOSE_WAIT
    assert d.b.receive() == b"request"
    reply = bytes(range(256)) * 40  # 10240 bytes > B's window of 8000
    sent = 0
    got = bytearray()
    for _ in range(50):
        if sent < len(reply):
            sent += d.b.send(reply[sent:], d.now)
        d.exchange()
        got += d.a.receive()
        if sent == len(reply) and len(got) == len(reply):
            break
    assert bytes(got) == reply
    d.b.shutdown_write(d.now)
    d.exchange()
    assert d.a.state is State.TIME_WAIT and d.b.state is State.CLOSED
    assert "EndOfStream" in kinds(drain(d.a))


SYNC_STATES = [
    State.ESTABLISHED,
    State.FIN_WAIT_1,
    State.FIN_WAIT_2,
    State.CLOSE_WAIT,
    State.CLOSING,
    State.LAST_ACK,
    State.TIME_WAIT,
]


@pytest.mark.parametrize("side", ["active", "passive"])
@pytest.mark.parametrize("state", SYNC_STATES, ids=str)
def test_rst_in_each_state(state: State, side: str) -> None:
    d, _ = reach(state, side=side)
    rcv_nxt = d.a.rcv_nxt
    # Out of window: silently dropped (RFC 5961 §3.2 (1)).
    d.to_a([seg_to(d, rcv_nxt + 100000, 0, "R")])
    assert d.a.state is state and d.out_a() == []
    # In window, not exact: challenge ACK <SEQ=SND.NXT><ACK=RCV.NXT> (§3.2 (3)).
    d.to_a([seg_to(d, rcv_nxt + 5, 0, "R")])
    assert d.a.state is state
    assert [brief(s) for s in d.out_a()] == [(d.a.snd_nxt, rcv_nxt, "A", 0)]
    # Exactly RCV.NXT: reset (§3.2 (2)).
    d.to_a([seg_to(d, rcv_nxt, 0, "R")])
    assert d.a.state is State.CLOSED
    assert d.a.transitions[-1].old is state and d.a.transitions[-1].cause is Cause.RCV_RST
    got = kinds(drain(d.a))
    if state in (State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT):
        assert got == ["ConnectionReset", "Closed"]
    else:
        assert got == ["Closed"]
    assert d.out_a() == [] and d.a.get_timer() is None


@pytest.mark.parametrize("side", ["active", "passive"])
@pytest.mark.parametrize("state", SYNC_STATES, ids=str)
def test_abort_in_each_state(state: State, side: str) -> None:
    d, _ = reach(state, side=side)
    snd_nxt = d.a.snd_nxt
    d.a.abort(d.now)
    assert d.a.state is State.CLOSED and d.a.transitions[-1].cause is Cause.ABORT
    out = d.out_a()
    if state in (State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT):
        assert [brief(s) for s in out] == [(snd_nxt, 0, "R", 0)]  # §3.10.5
        d.to_b(out)
        if state is State.FIN_WAIT_1:
            # B never saw A's FIN, so the RST (SEQ = SND.NXT after the FIN)
            # is in window but not exact: B sends a challenge ACK (RFC 5961
            # §3.2), which the now CLOSED A answers with <SEQ=SEG.ACK><RST>.
            assert d.b.state is State.ESTABLISHED
            (challenge,) = d.out_b()
            d.to_a([challenge])
            d.to_b(d.out_a())
        assert d.b.state is State.CLOSED
        assert d.b.transitions[-1].cause is Cause.RCV_RST
    else:
        assert out == []
    # Anything arriving later is answered as by a closed port.
    d.out_a()
    d.to_a([seg_to(d, d.a.rcv_nxt, snd_nxt, "A", payload=b"late")])
    assert [brief(s) for s in d.out_a()] == [(snd_nxt, 0, "R", 0)]


FAST = dataclasses.replace(PLAIN, r1_retries=1, r2_retries=2)


@pytest.mark.parametrize("side", ["active", "passive"])
@pytest.mark.parametrize(
    "state",
    [State.ESTABLISHED, State.FIN_WAIT_1, State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK],
    ids=str,
)
def test_r2_gives_up_in_each_state(state: State, side: str) -> None:
    d, _ = reach(state, FAST, side)
    if state in (State.ESTABLISHED, State.CLOSE_WAIT):
        d.a.send(b"lost forever", d.now)
        d.out_a()
    start = d.now
    sends = []
    while d.a.state is state:
        d.fire_next(d.a)
        out = d.out_a()
        sends.append((d.now - start, [brief(s)[2] for s in out]))
    # Two retransmissions after 1 s and 2 s, then R2 after 4 s more; a RST goes out.
    assert [t for t, _ in sends] == [1.0, 3.0, 7.0]
    assert sends[-1][1] == ["R"]
    assert d.a.state is State.CLOSED and d.a.transitions[-1].cause is Cause.TIMEOUT
    assert ev.TimedOut("retransmit") in drain(d.a)


def test_fin_wait_2_times_out_after_close_only() -> None:
    d = Duo()
    d.open()
    d.a.close(d.now)
    d.to_b(d.out_a())
    d.to_a(d.out_b())
    assert d.a.state is State.FIN_WAIT_2
    assert d.a.get_timer() == PLAIN.fin_wait_2_timeout
    d.advance(PLAIN.fin_wait_2_timeout)
    assert d.a.state is State.CLOSED and d.a.transitions[-1].cause is Cause.TIMEOUT
    # After shutdown_write (half-close) FIN-WAIT-2 waits as long as the peer likes.
    d2, _ = reach(State.FIN_WAIT_2)
    assert d2.a.get_timer() is None


@pytest.mark.parametrize("state", [State.FIN_WAIT_1, State.FIN_WAIT_2], ids=str)
def test_data_after_close_is_answered_by_rst(state: State) -> None:
    # RFC 9293 §3.6 SHLD-3.
    d = Duo()
    d.open()
    d.a.close(d.now)
    fin = d.out_a()
    if state is State.FIN_WAIT_2:
        d.to_b(fin)
        d.to_a(d.out_b())
    assert d.a.state is state
    d.b.send(b"too late", d.now)
    d.to_a(d.out_b())
    assert d.a.state is State.CLOSED and d.a.transitions[-1].cause is Cause.DATA_AFTER_CLOSE
    out = d.out_a()
    assert brief(out[-1])[2] == "R"


def test_close_with_unread_data_resets() -> None:
    d = Duo()
    d.open()
    d.b.send(b"unread", d.now)
    d.to_a(d.out_b())
    d.a.close(d.now)
    assert d.a.state is State.CLOSED and d.a.transitions[-1].cause is Cause.ABORT
    assert [brief(s)[2] for s in d.out_a()] == ["R"]
