"""RFC 9293 Appendix B requirements that had no test of their own.

Each test names its label(s); docs/rfc9293-conformance.md maps every label
to the code and to the test that exercises it. Manual clock, exact outcomes.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synack.errors import LocalProtocolError
from synack.tcp import events as ev
from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection
from synack.tcp.states import Cause, State
from synack.wire.tcp import TcpFlags as F
from synack.wire.tcp import TcpSegment
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

#: PLAIN with a larger MSS than the peer will (not) announce.
PLAIN_1460 = dataclasses.replace(PLAIN, mss=1460)
#: PLAIN with a receive buffer of two segments, for a zero window.
PLAIN_2000 = dataclasses.replace(PLAIN, receive_buffer=2000)


def test_must_61_psh_on_the_last_segment_of_a_write() -> None:
    """MUST-61: SEND has no PUSH flag, so the last segment of a write carries PSH."""
    d = Duo()
    d.open()
    assert d.a.send(b"x" * 2500, d.now) == 2500
    assert [brief(s) for s in d.out_a()] == [
        (101, 301, "A", 1000),
        (1101, 301, "A", 1000),
        (2101, 301, "AP", 500),
    ]


def test_must_34_shld_15_shrunk_window_sends_no_new_data() -> None:
    """MUST-34 / SHLD-15: the peer shrinks its window below what is in flight.

    The sender copes (no error, no negative window) and sends no new data
    past SND.UNA + SND.WND until the window opens again.
    """
    d = Duo()
    d.open()
    d.a.send(b"a" * 3000, d.now)
    assert [brief(s) for s in d.out_a()] == [
        (101, 301, "A", 1000),
        (1101, 301, "A", 1000),
        (2101, 301, "AP", 1000),
    ]
    # B (forged) acknowledges the first segment and offers only 1000 octets:
    # the right edge moves from 8101 back to 2101, below SND.NXT (3101).
    d.to_a([seg_b_to_a(301, 1101, "A", window=1000)])
    assert d.a.snd_una == 1101 and d.a.snd_wnd == 1000
    assert d.a.send(b"b" * 1000, d.now) == 1000
    assert d.out_a() == []
    assert d.a.state is State.ESTABLISHED
    # Everything acknowledged and the window open again: the new data goes.
    d.to_a([seg_b_to_a(301, 3101, "A", window=8000)])
    assert [brief(s) for s in d.out_a()] == [(3101, 301, "AP", 1000)]


def test_must_66_rst_is_processed_with_a_zero_window() -> None:
    """MUST-66: a RST is processed even while our receive window is zero."""
    d = Duo(PLAIN, PLAIN_2000)
    d.open()
    d.a.send(b"z" * 2000, d.now)
    d.to_b(d.out_a())
    (ack,) = d.out_b()
    assert brief(ack) == (301, 2101, "A", 0) and ack.window == 0
    drain(d.b)
    # Table 6 with RCV.WND = 0: only SEG.SEQ = RCV.NXT is acceptable; a RST
    # one past it is dropped without a reply.
    d.to_b([seg_a_to_b(2102, 0, "R")])
    assert d.b.state is State.ESTABLISHED and d.out_b() == []
    assert d.b.stats.dropped["rst-out-of-window"] == 1
    # The RST at RCV.NXT resets the connection although the window is closed.
    d.to_b([seg_a_to_b(2101, 0, "R")])
    assert d.b.state is State.CLOSED
    assert d.b.transitions[-1].cause is Cause.RCV_RST
    assert kinds(drain(d.b)) == ["ConnectionReset", "Closed"]


def test_must_15_send_mss_defaults_to_536_without_the_option() -> None:
    """MUST-15: a peer that sends no MSS option gets segments of at most 536 octets."""
    a = TcpConnection(A_ADDR, B_ADDR, config=PLAIN_1460, iss=100)
    a.connect(0.0)
    (syn,) = a.segments_to_send(0.0)
    assert syn.options.mss == 1460
    a.receive_segment(seg_b_to_a(300, 101, "SA", window=8000), 0.0)
    assert a.state is State.ESTABLISHED
    assert a.effective_mss == 536
    a.send(b"m" * 1200, 0.0)
    # The handshake's ACK rides on the first data segment.
    assert [brief(s) for s in a.segments_to_send(0.0)] == [
        (101, 301, "A", 536),
        (637, 301, "A", 536),
        (1173, 301, "AP", 128),
    ]
    # The passive side too: a SYN without the option means 536.
    b = TcpConnection.accept_syn(seg_a_to_b(100, 0, "S"), B_ADDR, A_ADDR, PLAIN_1460, 300, 0.0)
    assert b.effective_mss == 536


def test_must_65_mss_option_only_on_syn_segments() -> None:
    """MUST-65: the MSS option appears on SYN and SYN,ACK only."""
    cfg = TcpConfig(mss=1460, delayed_ack=False, nodelay=True)
    d = Duo(cfg, cfg)
    syn, synack, ack = d.open()
    assert syn[0].options.mss == 1460 and synack[0].options.mss == 1460
    d.a.send(b"q" * 3000, d.now)
    d.b.send(b"r" * 10, d.now)
    later = list(ack)
    for _ in range(3):
        sa, sb = d.out_a(), d.out_b()
        later += sa + sb
        d.to_b(sa)
        d.to_a(sb)
    d.a.shutdown_write(d.now)
    d.b.shutdown_write(d.now)
    later += d.out_a() + d.out_b()
    assert sum(len(s.payload) for s in later) == 3010
    assert any(s.flags & s.flags.FIN for s in later)
    assert [s.options.mss for s in later] == [None] * len(later)


def test_shld_2_rst_carrying_data_is_accepted() -> None:
    """SHLD-2: a RST that carries data is acceptable (and its data is not delivered)."""
    d = Duo()
    d.open()
    drain(d.a)
    d.to_a([seg_b_to_a(301, 101, "R", payload=b"diagnostic text")])
    assert d.a.state is State.CLOSED
    assert d.a.transitions[-1].cause is Cause.RCV_RST
    assert kinds(drain(d.a)) == ["ConnectionReset", "Closed"]
    assert d.a.readable_bytes == 0 and d.out_a() == []


def test_must_58_59_one_ack_for_a_burst_of_segments() -> None:
    """MUST-58 / MUST-59: segments received together are acknowledged once, after all of them."""
    d = Duo()
    d.open()
    d.a.send(b"k" * 3000, d.now)
    burst = d.out_a()
    assert len(burst) == 3
    d.to_b(burst)
    assert [brief(s) for s in d.out_b()] == [(301, 3101, "A", 0)]
    assert d.b.readable_bytes == 3000


def test_shld_10_11_default_r1_and_r2() -> None:
    """SHLD-10 (R1 >= 3 retransmissions) and SHLD-11 (R2 >= 100 s) with the defaults.

    Loss detection is RFC 6675's here, so that only the retransmission timer
    acts; with RACK-TLP (the default) a loss probe comes first:
    test_rack.py::test_default_timeouts_after_one_loss_probe.
    """
    cfg = TcpConfig(loss_detection="rfc6675")
    assert cfg.r1_retries >= 3
    d = Duo(cfg, cfg)
    d.open()
    drain(d.a)
    d.a.send(b"lost", d.now)
    assert len(d.out_a()) == 1
    timeouts: list[float] = []
    warned_at: list[float] = []
    while d.a.state is not State.CLOSED:
        timeouts.append(d.fire_next(d.a))
        d.out_a()  # every retransmission is lost
        for e in drain(d.a):
            if isinstance(e, ev.DeliveryProblem):
                warned_at.append(d.now)
    # RTO 1 s doubling to the 60 s cap: 1, 3, 7, 15, 31, 63, then every 60 s.
    assert timeouts[:7] == [1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 123.0]
    assert warned_at == [7.0]  # R1: the third retransmission
    assert len(timeouts) == cfg.r2_retries + 1
    assert timeouts[-1] == 63.0 + 60.0 * (cfg.r2_retries - 5) >= 100.0


def test_must_23_default_syn_retries_last_three_minutes() -> None:
    """MUST-23: with the defaults a SYN is retransmitted for at least 3 minutes."""
    a = TcpConnection(A_ADDR, B_ADDR, config=TcpConfig(), iss=100)
    a.connect(0.0)
    sent: list[float] = []
    now = 0.0
    reason = None
    while a.state is not State.CLOSED:
        if a.segments_to_send(now):
            sent.append(now)
        deadline = a.get_timer()
        assert deadline is not None
        now = deadline
        a.handle_timer(now)
        for e in drain(a):
            if isinstance(e, ev.TimedOut):
                reason = e.reason
    # RTO 1 s doubling, capped at max_rto 60 s; the connect deadline ends it.
    assert sent == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 123.0]
    assert reason == "connect" and now == 180.0


def test_must_25_28_keepalive_defaults() -> None:
    """MUST-25: keep-alives are off by default; MUST-28: the idle default is >= 2 hours."""
    cfg = TcpConfig()
    assert cfg.keepalive is False and cfg.keepalive_idle >= 7200.0
    d = Duo(cfg, cfg)
    d.open()
    d.exchange()
    assert d.a.get_timer() is None and d.b.get_timer() is None
    on = TcpConfig(keepalive=True)
    d = Duo(on, cfg)
    d.open()
    d.exchange()
    assert d.a.get_timer() == 7200.0
    d.advance(7200.0)
    assert [brief(s) for s in d.out_a()] == [(d.a.snd_nxt - 1, d.a.rcv_nxt, "A", 0)]


def test_must_16_sack_option_never_pushes_a_segment_past_the_mss() -> None:
    """MUST-16: Eff.snd.MSS counts the TCP options of the segment.

    While A holds out-of-order data it owes SACK blocks; a full-sized data
    segment has no room for them (payload + options <= MSS), so they go on
    a pure ACK of their own instead of being piggybacked.
    """
    cfg = dataclasses.replace(PLAIN, sack=True)
    d = Duo(cfg, cfg)
    d.open()
    d.b.send(b"b" * 3000, d.now)
    first, *rest = d.out_b()
    assert brief(first) == (301, 101, "A", 1000)
    d.a.send(b"a" * 2000, d.now)
    d.to_a(rest)  # the first segment is lost: A has a gap
    out = d.out_a()
    assert [brief(s) for s in out] == [
        (101, 301, "A", 1000),
        (1101, 301, "AP", 1000),
        (2101, 301, "A", 0),
    ]
    for s in out:
        opt_len = len(s.options.sack_blocks) * 8 + 4 if s.options.sack_blocks else 0
        assert len(s.payload) + opt_len <= d.a.effective_mss
    assert [s.options.sack_blocks for s in out] == [(), (), ((1301, 3301),)]


def test_must_26_no_keepalive_probe_while_data_is_outstanding() -> None:
    """MUST-26: a keep-alive goes only when no sent data is unacknowledged."""
    on = dataclasses.replace(PLAIN, keepalive=True)
    d = Duo(on, PLAIN)
    d.open()
    assert d.a.get_timer() == 7200.0
    d.now = 7199.5
    d.a.send(b"late", d.now)
    data = d.out_a()
    assert [brief(s) for s in data] == [(101, 301, "AP", 4)]
    d.advance(7200.0)  # the idle timer is due, but 4 octets are in flight
    assert d.out_a() == [] and d.a.stats.keepalive_probes == 0
    assert d.a.get_timer() == 7200.5  # only the retransmission timer is next
    d.to_b(data)
    d.to_a(d.out_b())
    assert d.a.snd_una == 105
    assert d.a.get_timer() == 7200.0 + 7200.0  # idle again: a probe after keepalive_idle


def _urg(seq: int, ack: int, up: int, payload: bytes) -> TcpSegment:
    return TcpSegment(
        B_ADDR[1], A_ADDR[1], seq, ack, F.ACK | F.PSH | F.URG, 8000, payload, urgent=up
    )


def test_must_32_33_62_urgent_data_is_signalled_once_and_counted() -> None:
    """MUST-62: SEG.UP is the first non-urgent octet; MUST-32: the user is told
    asynchronously, once per run; MUST-33: it can ask how much is unread;
    MUST-31: the run may be longer than one segment."""
    d = Duo()
    d.open()
    drain(d.a)
    d.to_a([_urg(301, 101, 3, b"abcdef")])  # urgent: 301..303 ("abc")
    assert d.a.urgent_pending == 3
    assert drain(d.a) == [ev.UrgentData(3), ev.DataAvailable(6)]
    # The run goes on in the next segment (pointer 309): no second signal.
    d.to_a([_urg(307, 101, 2, b"gh")])
    assert d.a.urgent_pending == 8
    assert drain(d.a) == [ev.DataAvailable(8)]
    # The pointer may run ahead of the data (MUST-31): 4 octets still to come.
    d.to_a([_urg(309, 101, 4, b"")])
    assert d.a.urgent_pending == 12 and drain(d.a) == []
    assert d.a.receive(5) == b"abcde" and d.a.urgent_pending == 7
    d.to_a([seg_b_to_a(309, 101, "AP", payload=b"ijkl")])
    assert d.a.receive() == b"fghijkl" and d.a.urgent_pending == 0
    # Urgent mode over: a new run is signalled again.
    d.to_a([_urg(313, 101, 1, b"m")])
    assert drain(d.a) == [ev.DataAvailable(7), ev.UrgentData(1), ev.DataAvailable(1)]
    # The octets were delivered in line throughout; a plain segment with a
    # stray urgent field but no URG bit changes nothing.
    d.to_a([TcpSegment(B_ADDR[1], A_ADDR[1], 314, 101, F.ACK, 8000, b"n", urgent=9)])
    assert d.a.receive() == b"mn" and d.a.urgent_pending == 0


def test_must_66_urgent_pointer_is_processed_with_a_zero_window() -> None:
    """MUST-66 (URG): an in-sequence segment still reports urgent data at RCV.WND = 0."""
    d = Duo(PLAIN_2000, PLAIN)
    d.open()
    d.b.send(b"z" * 2000, d.now)
    d.to_a(d.out_b())
    (ack,) = d.out_a()
    assert brief(ack) == (101, 2301, "A", 0) and ack.window == 0
    drain(d.a)
    d.to_a([_urg(2301, 101, 1, b"!")])  # a zero-window probe carrying URG
    # To reach the end of the urgent data the reader has 2001 octets to
    # take: the 2000 buffered, then the urgent one (not yet accepted).
    assert d.a.urgent_pending == 2001
    assert drain(d.a) == [ev.UrgentData(2001)]
    assert d.a.readable_bytes == 2000  # the probe's octet itself is not taken
    assert [brief(s) for s in d.out_a()] == [(101, 2301, "A", 0)]


def test_must_30_31_62_urgent_send_marks_segments_until_acknowledged() -> None:
    """MUST-30 (sending), MUST-62 (pointer = first non-urgent octet), MUST-31 (any length)."""
    d = Duo()
    a = d.a
    a.connect(d.now)
    with pytest.raises(LocalProtocolError):
        a.send(b"too early", d.now, urgent=True)
    d.to_b(d.out_a())
    d.to_a(d.out_b())
    d.to_b(d.out_a())
    drain(d.b)
    assert a.send(b"normal", d.now) == 6
    assert a.send(b"URG!", d.now, urgent=True) == 4
    (seg,) = d.out_a()
    assert brief(seg) == (101, 301, "AP", 10)
    assert seg.flags & F.URG and seg.urgent == 10  # 101 + 10: the octet after "URG!"
    d.to_b([seg])
    assert drain(d.b) == [ev.UrgentData(10), ev.DataAvailable(10)]
    assert d.b.urgent_pending == 10
    # Urgent data longer than a segment: every segment points at its end.
    assert a.send(b"u" * 2500, d.now, urgent=True) == 2500
    segs = d.out_a()
    assert [(brief(s), bool(s.flags & F.URG), s.urgent) for s in segs] == [
        ((111, 301, "A", 1000), True, 2500),
        ((1111, 301, "A", 1000), True, 1500),
        ((2111, 301, "AP", 500), True, 500),
    ]
    d.to_b(segs)
    d.to_a(d.out_b())
    assert a.snd_una == 2611
    # All acknowledged: ordinary data goes without URG again.
    a.send(b"plain", d.now)
    (last,) = d.out_a()
    assert brief(last) == (2611, 301, "AP", 5)
    assert not last.flags & F.URG and last.urgent == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-3000, 9000),  # SEG.SEQ relative to RCV.NXT
            st.integers(0, 65535),  # SEG.UP
            st.binary(max_size=1200),
            st.booleans(),  # URG set
            st.integers(0, 3000),  # octets read afterwards
        ),
        max_size=25,
    ),
    st.lists(st.tuples(st.binary(min_size=1, max_size=3000), st.booleans()), max_size=6),
)
def test_urgent_data_fuzz_never_raises_and_stream_stays_exact(
    segs: list[tuple[int, int, bytes, bool, int]], writes: list[tuple[bytes, bool]]
) -> None:
    """MUST-30..33/62 code under random pointers: nothing a peer sends raises,
    ``urgent_pending`` stays within reach, and urgent writes arrive in line."""
    d = Duo()
    d.open()
    a = d.a
    for rel, up, payload, urg, take in segs:
        fl = F.ACK | F.URG if urg else F.ACK
        seq = (a.rcv_nxt + rel) % (1 << 32)
        a.receive_segment(
            TcpSegment(B_ADDR[1], A_ADDR[1], seq, 101, fl, 8000, payload, urgent=up), d.now
        )
        for s in a.segments_to_send(d.now):
            assert not s.flags & F.URG
        drain(a)
        assert 0 <= a.urgent_pending <= a.readable_bytes + 65535 + 8000
        a.receive(take)
    # The other direction: urgent and plain writes reach the peer byte-exact.
    d2 = Duo()
    d2.open()
    sent = b""
    got = b""
    for data, urgent in writes:
        n = d2.a.send(data, d2.now, urgent=urgent)
        sent += data[:n]
        for _ in range(50):
            sa, sb = d2.out_a(), d2.out_b()
            if not sa and not sb:
                break
            for s in sa:
                assert 0 <= s.urgent <= 65535
            d2.to_b(sa)
            d2.to_a(sb)
            got += d2.b.receive()
    d2.exchange()
    got += d2.b.receive()
    assert got == sent
    assert d2.b.urgent_pending == 0


def test_must_22_syn_retransmissions_warn_the_application_at_r1() -> None:
    """MUST-22: SYN retransmission follows the data rules, the R1 notification included."""
    a = TcpConnection(A_ADDR, B_ADDR, config=TcpConfig(), iss=100)
    a.connect(0.0)
    a.segments_to_send(0.0)
    warned: list[tuple[float, int]] = []
    now = 0.0
    while a.state is State.SYN_SENT:
        deadline = a.get_timer()
        assert deadline is not None
        now = deadline
        a.handle_timer(now)
        a.segments_to_send(now)
        warned += [(now, e.retransmissions) for e in drain(a) if isinstance(e, ev.DeliveryProblem)]
    # R1 = 3: the third SYN timeout (1 + 2 + 4 s) warns, once; R2 ends it at 180 s.
    assert warned == [(7.0, 3)]
    assert now == 180.0


def test_shld_17_no_timeout_for_data_past_a_window_that_shrank_to_zero() -> None:
    """SHLD-17 (and MUST-37): data beyond a window that shrank to zero is not a
    reason to give up while the peer keeps answering."""
    d = Duo()
    d.open()
    d.a.send(b"s" * 3000, d.now)
    d.out_a()  # all three segments lost
    # The peer shrinks its window to zero: 3000 octets are now past the edge.
    d.to_a([seg_b_to_a(301, 101, "A", window=0)])
    assert d.a.snd_wnd == 0
    kinds_seen: list[tuple[float, tuple[int, int, str, int]]] = []
    for _ in range(3 * PLAIN.r2_retries):
        t = d.fire_next(d.a)
        for s in d.out_a():
            kinds_seen.append((t, brief(s)))
        # The peer answers every segment (or nothing was sent): window still 0.
        d.to_a([seg_b_to_a(301, 101, "A", window=0)])
        assert d.a.state is State.ESTABLISHED
    # Nothing but one-octet probes of the first unacknowledged octet.
    assert {b for _, b in kinds_seen} == {(101, 301, "A", 1)}
    assert d.a.stats.window_probes == len(kinds_seen) >= PLAIN.r2_retries
