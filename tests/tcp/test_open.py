"""Opening a connection (RFC 9293 §3.5): every opening row of the table."""

from __future__ import annotations

import pytest

from synack.errors import LocalProtocolError
from synack.tcp import events as ev
from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection, reply_when_closed, reply_when_listening
from synack.tcp.states import Cause, State
from synack.wire.tcp import TcpOptions
from tests.tcp.harness import (
    A_ADDR,
    B_ADDR,
    PLAIN,
    Duo,
    brief,
    drain,
    kinds,
    seg_a_to_b,
    seg_b_to_a,
)


def test_three_way_handshake_exact_numbers() -> None:
    # RFC 9293 §3.5 Figure 5, with ISS 100 (A) and 300 (B).
    d = Duo()
    syn, synack, ack = d.open()
    assert [brief(s) for s in syn] == [(100, 0, "S", 0)]
    assert syn[0].options.mss == 1000 and syn[0].window == 8000
    assert [brief(s) for s in synack] == [(300, 101, "SA", 0)]
    assert [brief(s) for s in ack] == [(101, 301, "A", 0)]
    assert (syn[0].src_port, syn[0].dst_port) == (A_ADDR[1], B_ADDR[1])
    assert [(t.old, t.new, t.cause) for t in d.a.transitions] == [
        (State.CLOSED, State.SYN_SENT, Cause.ACTIVE_OPEN),
        (State.SYN_SENT, State.ESTABLISHED, Cause.RCV_SYN_ACK),
    ]
    assert [(t.old, t.new, t.cause) for t in d.b.transitions] == [
        (State.CLOSED, State.LISTEN, Cause.PASSIVE_OPEN),
        (State.LISTEN, State.SYN_RECEIVED, Cause.RCV_SYN),
        (State.SYN_RECEIVED, State.ESTABLISHED, Cause.RCV_ACK_OF_SYN),
    ]
    assert kinds(drain(d.a)) == ["Connected"]
    assert kinds(drain(d.b)) == ["Connected"]
    assert d.a.snd_una == d.a.snd_nxt == 101 and d.a.rcv_nxt == 301
    assert d.b.snd_una == d.b.snd_nxt == 301 and d.b.rcv_nxt == 101
    assert d.a.get_timer() is None and d.b.get_timer() is None


def test_handshake_negotiates_options_both_ways() -> None:
    big = TcpConfig(mss=1460, receive_buffer=1 << 20, send_buffer=1 << 20)
    d = Duo(big, big)
    syn, synack, _ = d.open()
    o = syn[0].options
    assert o.mss == 1460 and o.sack_permitted and o.timestamps is not None
    assert o.wscale == 5  # 2**20 >> 5 fits 16 bits, >> 4 does not
    so = synack[0].options
    assert so.wscale == 5 and so.sack_permitted and so.timestamps is not None
    # The SYN-ACK echoes A's TSval (RFC 7323 §3.2).
    assert so.timestamps[1] == o.timestamps[0]
    # Eff.snd.MSS is the MSS less the 12 timestamp octets (RFC 9293 §3.7.1).
    assert d.a.effective_mss == d.b.effective_mss == 1448
    # A window field of an ESTABLISHED segment is scaled (RFC 7323 §2.3).
    d.a.send(b"x", d.now)
    (data,) = d.out_a()
    assert data.window == (1 << 20) >> 5
    d.to_b([data])
    assert d.b.snd_wnd == ((1 << 20) >> 5) << 5


def test_options_not_offered_are_not_used() -> None:
    d = Duo(TcpConfig(mss=1460), PLAIN)
    syn, synack, _ = d.open()
    assert syn[0].options.timestamps is not None
    so = synack[0].options
    assert so.timestamps is None and so.wscale is None and not so.sack_permitted
    assert d.a.effective_mss == 1000  # min(B's MSS 1000, A's 1460), no TS option
    d.a.send(b"y", d.now)
    (data,) = d.out_a()
    assert data.options == TcpOptions()


def test_simultaneous_open() -> None:
    # RFC 9293 §3.5 Figure 7: both send SYN, both go through SYN-RECEIVED.
    a = TcpConnection(A_ADDR, B_ADDR, config=PLAIN, iss=100)
    b = TcpConnection(B_ADDR, A_ADDR, config=PLAIN, iss=300)
    a.connect(0.0)
    b.connect(0.0)
    (syn_a,) = a.segments_to_send(0.0)
    (syn_b,) = b.segments_to_send(0.0)
    a.receive_segment(syn_b, 0.1)
    b.receive_segment(syn_a, 0.1)
    assert a.state is State.SYN_RECEIVED and b.state is State.SYN_RECEIVED
    (sa_a,) = a.segments_to_send(0.1)
    (sa_b,) = b.segments_to_send(0.1)
    assert brief(sa_a) == (100, 301, "SA", 0)
    assert brief(sa_b) == (300, 101, "SA", 0)
    a.receive_segment(sa_b, 0.2)
    b.receive_segment(sa_a, 0.2)
    assert a.state is State.ESTABLISHED and b.state is State.ESTABLISHED
    assert [t.cause for t in a.transitions] == [
        Cause.ACTIVE_OPEN,
        Cause.RCV_SYN,
        Cause.RCV_ACK_OF_SYN,
    ]
    # Each acknowledges the other's SYN,ACK once more; nothing else is pending.
    assert [brief(s) for s in a.segments_to_send(0.2)] == [(101, 301, "A", 0)]
    assert a.get_timer() is None


def test_lost_syn_is_retransmitted_with_backoff() -> None:
    d = Duo()
    d.a.connect(0.0)
    assert [brief(s) for s in d.out_a()] == [(100, 0, "S", 0)]
    assert d.a.get_timer() == 1.0  # RFC 6298 §2.1: initial RTO 1 s
    d.advance(1.0)
    assert [brief(s) for s in d.out_a()] == [(100, 0, "S", 0)]  # lost again
    assert d.a.get_timer() == 3.0  # backed off to 2 s (RFC 6298 §5.5)
    d.advance(3.0)
    syn = d.out_a()
    assert [brief(s) for s in syn] == [(100, 0, "S", 0)]
    d.to_b(syn)
    d.to_a(d.out_b())
    d.to_b(d.out_a())
    assert d.a.state is State.ESTABLISHED and d.b.state is State.ESTABLISHED
    assert d.a.stats.timeouts == 2
    # RFC 6298 §5.7: no RTT sample (Karn) after a SYN timeout: RTO 3 s for data.
    assert d.a.stats.srtt is None and d.a.stats.rto == 3.0


def test_connect_gives_up_after_syn_retries() -> None:
    d = Duo()  # syn_retries=3: SYN at 0, 1, 3, 7; give up at 15
    d.a.connect(0.0)
    times = []
    while d.a.state is State.SYN_SENT:
        if d.out_a():
            times.append(d.now)
        d.fire_next(d.a)
    assert times == [0.0, 1.0, 3.0, 7.0]
    assert d.now == 15.0
    assert d.a.state is State.CLOSED
    events = drain(d.a)
    assert ev.TimedOut("connect") in events and isinstance(events[-1], ev.Closed)
    assert d.a.transitions[-1].cause is Cause.TIMEOUT
    assert d.out_a() == []  # nothing to tell a peer that never answered


def test_connect_timeout_bounds_the_attempt() -> None:
    cfg = TcpConfig(mss=1000, syn_retries=50, connect_timeout=10.0, timestamps=False)
    d = Duo(cfg)
    d.a.connect(0.0)
    while d.a.state is State.SYN_SENT:
        d.out_a()
        d.fire_next(d.a)
    assert d.now == 10.0
    assert ev.TimedOut("connect") in drain(d.a)


def test_lost_syn_ack_is_retransmitted_by_both_means() -> None:
    d = Duo()
    d.a.connect(0.0)
    d.to_b(d.out_a())
    assert [brief(s) for s in d.out_b()] == [(300, 101, "SA", 0)]  # lost
    # A's SYN retransmission reaches B in SYN-RECEIVED: B resends SYN,ACK.
    d.advance(1.0)
    syn_again = d.out_a()
    d.to_b(syn_again)
    assert d.b.state is State.SYN_RECEIVED
    assert [brief(s) for s in d.out_b()] == [(300, 101, "SA", 0)]  # lost too
    assert d.b.stats.dropped == {"duplicate-syn": 1}
    # B's own timer resends it as well.
    d.advance(d.b.get_timer() or 0.0)
    synack = d.out_b()
    assert [brief(s) for s in synack] == [(300, 101, "SA", 0)]
    d.to_a(synack)
    d.to_b(d.out_a())
    assert d.a.state is State.ESTABLISHED and d.b.state is State.ESTABLISHED


def test_syn_received_times_out() -> None:
    d = Duo()
    d.a.connect(0.0)
    d.to_b(d.out_a())
    b = d.b
    while b.state is State.SYN_RECEIVED:
        d.out_b()
        d.fire_next(b)
    assert b.state is State.CLOSED
    assert b.transitions[-1] == b.transitions[-1].__class__(
        d.now, State.SYN_RECEIVED, State.CLOSED, Cause.TIMEOUT
    )
    # It tells the peer with a reset (<SEQ=SND.NXT><CTL=RST>).
    assert [brief(s) for s in d.out_b()] == [(301, 0, "R", 0)]
    assert ev.TimedOut("connect") in drain(b)


def test_connection_refused() -> None:
    # A SYN to a closed port: RST,ACK <SEQ=0><ACK=SEG.SEQ+SEG.LEN> (§3.10.7.1).
    d = Duo()
    d.a.connect(0.0)
    (syn,) = d.out_a()
    rst = reply_when_closed(syn)
    assert rst is not None and brief(rst) == (0, 101, "AR", 0)
    assert (rst.src_port, rst.dst_port) == (B_ADDR[1], A_ADDR[1])
    d.to_a([rst])
    assert d.a.state is State.CLOSED
    assert kinds(drain(d.a)) == ["ConnectionRefused", "Closed"]
    assert d.a.transitions[-1].cause is Cause.RCV_RST


def test_rst_without_ack_in_syn_sent_is_ignored() -> None:
    d = Duo()
    d.a.connect(0.0)
    d.out_a()
    d.to_a([seg_b_to_a(0, 0, "R")])
    assert d.a.state is State.SYN_SENT
    assert d.a.stats.dropped == {"rst-without-ack": 1}


def test_old_duplicate_syn() -> None:
    # RFC 9293 §3.5 Figure 8 (with B's listener creating a child per SYN).
    d = Duo()
    d.a.connect(0.0)
    (new_syn,) = d.out_a()  # SEQ=100, delayed in the network
    old_syn = seg_a_to_b(90, 0, "S")  # an old duplicate arrives first
    d.to_b([old_syn])
    child = d.b
    (synack,) = child.segments_to_send(d.now)
    assert brief(synack) == (300, 91, "SA", 0)
    # A in SYN-SENT: the ACK 91 is not 101 -> RST <SEQ=SEG.ACK>.
    d.to_a([synack])
    assert d.a.state is State.SYN_SENT
    (rst,) = d.out_a()
    assert brief(rst) == (91, 0, "R", 0)
    # B's child in SYN-RECEIVED of a passive open returns to LISTEN.
    child.receive_segment(rst, d.now)
    assert child.state is State.LISTEN
    assert child.transitions[-1].cause is Cause.RCV_RST
    assert kinds(drain(child)) == ["Closed"]
    # The real SYN now makes a fresh child and the handshake completes.
    d.server = None
    d.to_b([new_syn])
    (synack2,) = d.out_b()
    assert brief(synack2) == (300, 101, "SA", 0)
    d.to_a([synack2])
    d.to_b(d.out_a())
    assert d.a.state is State.ESTABLISHED and d.b.state is State.ESTABLISHED


def test_new_syn_in_syn_received_returns_to_listen() -> None:
    d = Duo()
    d.a.connect(0.0)
    d.to_b(d.out_a())
    d.out_b()
    # A SYN inside the window but not the one we know (§3.10.7.4 fourth step).
    d.to_b([seg_a_to_b(110, 0, "S")])
    assert d.b.state is State.LISTEN
    assert d.b.transitions[-1].cause is Cause.RCV_SYN


def test_rst_in_syn_received_of_simultaneous_open_is_refused() -> None:
    a = TcpConnection(A_ADDR, B_ADDR, config=PLAIN, iss=100)
    a.connect(0.0)
    a.segments_to_send(0.0)
    a.receive_segment(seg_b_to_a(300, 0, "S"), 0.1)
    assert a.state is State.SYN_RECEIVED
    a.receive_segment(seg_b_to_a(301, 0, "R"), 0.2)
    assert a.state is State.CLOSED
    assert a.transitions[-1] == a.transitions[-1].__class__(
        0.2, State.SYN_RECEIVED, State.CLOSED, Cause.RCV_RST
    )
    assert "ConnectionRefused" in kinds(drain(a))


def test_unacceptable_ack_in_syn_received_gets_reset() -> None:
    d = Duo()
    d.a.connect(0.0)
    d.to_b(d.out_a())
    d.out_b()
    d.to_b([seg_a_to_b(101, 999, "A")])
    assert d.b.state is State.SYN_RECEIVED
    assert [brief(s) for s in d.out_b()] == [(999, 0, "R", 0)]


def test_close_and_abort_in_syn_sent() -> None:
    d = Duo()
    d.a.connect(0.0)
    d.out_a()
    d.a.close(0.5)
    assert d.a.state is State.CLOSED and d.a.transitions[-1].cause is Cause.CLOSE
    assert d.out_a() == [] and d.a.get_timer() is None
    d2 = Duo()
    d2.a.connect(0.0)
    d2.out_a()
    d2.a.abort(0.5)
    assert d2.a.state is State.CLOSED and d2.a.transitions[-1].cause is Cause.ABORT
    assert d2.out_a() == []  # no RST from SYN-SENT (§3.10.5)


def test_abort_in_syn_received_sends_reset() -> None:
    d = Duo()
    d.a.connect(0.0)
    d.to_b(d.out_a())
    d.out_b()
    d.b.abort(0.1)
    assert d.b.state is State.CLOSED and d.b.transitions[-1].cause is Cause.ABORT
    assert [brief(s) for s in d.out_b()] == [(301, 0, "R", 0)]


def test_data_queued_before_established_and_close_deferred() -> None:
    d = Duo()
    d.a.connect(0.0)
    assert d.a.send(b"early", 0.0) == 5
    d.a.close(0.0)  # queued until ESTABLISHED, then FIN after the data
    assert d.a.state is State.SYN_SENT
    d.to_b(d.out_a())
    d.to_a(d.out_b())
    assert d.a.state is State.FIN_WAIT_1
    out = d.out_a()
    assert [brief(s) for s in out] == [(101, 301, "AFP", 5)]
    d.to_b(out)
    assert d.b.receive() == b"early" and d.b.state is State.CLOSE_WAIT


def test_listener_helpers() -> None:
    ack = seg_a_to_b(5, 77, "A")
    rst = reply_when_listening(ack)
    assert rst is not None and brief(rst) == (77, 0, "R", 0)
    assert reply_when_listening(seg_a_to_b(5, 0, "R")) is None
    assert reply_when_closed(seg_a_to_b(5, 0, "R")) is None
    data = seg_a_to_b(5, 0, "", payload=b"abc")
    r = reply_when_closed(data)
    assert r is not None and brief(r) == (0, 8, "AR", 0)


def test_caller_misuse_raises() -> None:
    d = Duo()
    with pytest.raises(LocalProtocolError):
        d.a.send(b"x", 0.0)  # not opened
    d.open()
    with pytest.raises(LocalProtocolError):
        d.a.connect(1.0)
    with pytest.raises(LocalProtocolError):
        TcpConnection.accept_syn(seg_a_to_b(1, 1, "SA"), B_ADDR, A_ADDR, PLAIN, 1, 0.0)
    d.a.shutdown_write(1.0)
    with pytest.raises(LocalProtocolError):
        d.a.send(b"x", 1.0)
    with pytest.raises(LocalProtocolError):
        TcpConfig(delayed_ack_timeout=0.5)  # MUST-40
    with pytest.raises(LocalProtocolError):
        TcpConnection(A_ADDR, B_ADDR, config=PLAIN, iss=1 << 32)


def test_state_changed_events_only_while_reported() -> None:
    # A host passes its observers' list: empty, no StateChanged is made (the
    # transitions are recorded all the same); non-empty, they are.
    watchers: list[object] = []
    d = Duo()
    d.a.report_states = watchers
    d.a.connect(d.now)
    d.to_b(d.out_a())
    passive = TcpConnection.accept_syn(
        seg_a_to_b(100, 0, "S"), B_ADDR, A_ADDR, PLAIN, 300, d.now, report_states=watchers
    )
    d.to_a(d.out_b())
    assert d.a.state is State.ESTABLISHED and passive.state is State.SYN_RECEIVED
    assert "StateChanged" not in kinds(drain(d.a)) + kinds(drain(passive))
    assert len(d.a.transitions) == 2 and len(passive.transitions) == 2
    watchers.append(object())
    d.a.close(d.now)
    (change,) = [e for e in drain(d.a) if isinstance(e, ev.StateChanged)]
    assert (change.old, change.new) == (State.ESTABLISHED, State.FIN_WAIT_1)
