"""The conformance gaps of issue 15, each as a scenario on the manual clock with exact segments.

No redundant window update (RFC 5681 §2, RFC 9293 §3.8.6.2.2), RFC 2018 §4
SACK block order, TSopt on RST (RFC 7323 §3.2), text on a SYN queued until
ESTABLISHED (§3.10.7.3), the SYN challenge ACK irrespective of the sequence
number (§3.10.7.4, RFC 5961 §4.2), small MTUs, ICMP errors (§3.9.2.2,
RFC 5927) and the initial window choice (RFC 3390 / RFC 6928).
"""

from __future__ import annotations

import dataclasses

import pytest

from synack.errors import LocalProtocolError
from synack.tcp import events as ev
from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection
from synack.tcp.icmp import IcmpError, classify
from synack.tcp.states import State
from synack.wire.tcp import build_options
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

SACK = dataclasses.replace(PLAIN, sack=True)


# -- no redundant window update -------------------------------------------------


def test_read_sends_no_update_when_the_window_field_is_already_at_its_maximum() -> None:
    # A offers scaling, B does not: nothing is scaled and A's 200 000-octet
    # buffer shows as 65535 whatever A reads.
    cfg_a = dataclasses.replace(PLAIN, receive_buffer=200_000, window_scale=True, mss=1000)
    d = Duo(cfg_a, PLAIN)
    d.open()
    d.b.send(b"x" * 3000, d.now)
    data = d.out_b()
    assert [brief(s) for s in data] == [
        (301, 101, "A", 1000),
        (1301, 101, "A", 1000),
        (2301, 101, "AP", 1000),
    ]
    d.to_a(data)
    acks = d.out_a()
    assert [(brief(s), s.window) for s in acks] == [((101, 3301, "A", 0), 65535)]
    assert d.a.receive() == b"x" * 3000
    # The read frees 3000 octets, but the field cannot show more than 65535:
    # a pure ACK now would repeat (101, 3301, 65535), a duplicate ACK to B.
    assert d.out_a() == []


def test_read_still_sends_an_update_that_reopens_a_small_window() -> None:
    d = Duo()
    d.open()
    d.b.send(b"y" * 8000, d.now)
    d.exchange()
    assert d.a.readable_bytes == 8000
    assert d.a.receive() == b"y" * 8000
    assert [(brief(s), s.window) for s in d.out_a()] == [((101, 8301, "A", 0), 8000)]


def test_first_read_leaves_the_scaled_window_to_the_reply() -> None:
    # B (the server) has 256 KiB and scales: its SYN-ACK can show only
    # 65535 (RFC 7323 §2.2). Reading A's small request "opens" that to 256
    # KiB, but A still holds nearly all of the first window: no pure ACK of
    # its own; B's reply carries the ACK and the scaled window.
    big = dataclasses.replace(PLAIN, receive_buffer=256 * 1024, window_scale=True, delayed_ack=True)
    d = Duo(dataclasses.replace(PLAIN, window_scale=True), big)
    _, (synack,), _ = d.open()
    assert synack.window == 65535
    d.a.send(b"GET / HTTP/1.0\r\n\r\n", d.now)
    d.to_b(d.out_a())
    assert d.b.receive() == b"GET / HTTP/1.0\r\n\r\n"
    assert d.out_b() == []  # the ACK is delayed, and no window update
    d.b.send(b"HTTP/1.0 200 OK\r\n\r\n", d.now)
    (reply,) = d.out_b()
    assert brief(reply) == (301, 119, "AP", 19)
    d.to_a([reply])
    assert d.a.snd_wnd == 256 * 1024  # what A now may send


def test_first_read_still_updates_a_window_the_peer_has_mostly_used() -> None:
    # The same, but A's data took more than half of the SYN-ACK's window:
    # A may be held back, so the read's window update goes at once.
    big = dataclasses.replace(
        PLAIN, receive_buffer=256 * 1024, window_scale=True, delayed_ack=True, mss=40_000
    )
    d = Duo(dataclasses.replace(PLAIN, window_scale=True, mss=40_000), big)
    _, (synack,), _ = d.open()
    d.to_b([seg_a_to_b(101, 301, "AP", window=100, payload=b"q" * 40_000)])
    d.out_b()  # whatever the ACK policy says about the data itself
    assert d.b.receive() == b"q" * 40_000
    (update,) = d.out_b()
    assert brief(update) == (301, 40_101, "A", 0)
    assert synack.options.wscale is not None
    assert update.window << synack.options.wscale == 256 * 1024


# -- RFC 2018 §4 block order ------------------------------------------------------


def test_sack_blocks_newest_first_then_most_recently_reported() -> None:
    d = Duo(SACK, SACK)
    d.open()
    order = []
    for seq in (301, 501, 201, 401):  # A's octets 101..; 101-200 are never delivered
        d.to_b([seg_a_to_b(seq, 301, "A", payload=b"z" * 100)])
        (ack,) = d.out_b()
        order.append(ack.options.sack_blocks)
    assert order == [
        ((301, 401),),
        ((501, 601), (301, 401)),
        ((201, 401), (501, 601)),  # 201-300 joined 301-400: one block, the newest
        ((201, 601),),  # 401-500 joined them all
    ]


def test_sack_blocks_repeat_the_most_recent_reports_not_stream_order() -> None:
    d = Duo(SACK, SACK)
    d.open()
    for seq in (901, 301, 701, 501):
        d.to_b([seg_a_to_b(seq, 301, "A", payload=b"z" * 100)])
        (ack,) = d.out_b()
    # Stream order after the first would be 301, 701, 901.
    assert ack.options.sack_blocks == ((501, 601), (701, 801), (301, 401), (901, 1001))


# -- TSopt on RST -------------------------------------------------------------------


def test_rst_carries_timestamps_once_agreed() -> None:
    cfg = dataclasses.replace(PLAIN, timestamps=True)
    d = Duo(cfg, cfg)
    d.open()
    d.now = 2.5
    d.a.send(b"hello", d.now)
    d.to_b(d.out_a())
    d.out_b()
    d.b.abort(d.now)
    (rst,) = d.out_b()
    assert brief(rst) == (301, 0, "R", 0)
    ts = rst.options.timestamps
    assert ts is not None
    assert ts[0] == (d.b.iss + 2500) % (1 << 32)  # TSval: the millisecond clock
    assert ts[1] == d.b._ts.recent  # TSecr: TS.Recent


def test_rst_without_agreed_timestamps_has_no_option() -> None:
    d = Duo()
    d.open()
    d.b.abort(d.now)
    (rst,) = d.out_b()
    assert brief(rst) == (301, 0, "R", 0) and rst.options.timestamps is None


# -- text on a SYN (simultaneous open) --------------------------------------------


def _simultaneous() -> TcpConnection:
    a = TcpConnection(A_ADDR, B_ADDR, config=PLAIN, iss=100)
    a.connect(0.0)
    assert [brief(s) for s in a.segments_to_send(0.0)] == [(100, 0, "S", 0)]
    a.receive_segment(seg_b_to_a(300, 0, "S", payload=b"hello"), 0.1)
    assert a.state is State.SYN_RECEIVED
    # The SYN,ACK acknowledges the SYN only: the text waits (§3.10.7.3).
    assert [brief(s) for s in a.segments_to_send(0.1)] == [(100, 301, "SA", 0)]
    assert a.readable_bytes == 0
    return a


def test_text_on_a_syn_is_delivered_once_established() -> None:
    a = _simultaneous()
    a.receive_segment(seg_b_to_a(301, 101, "A"), 0.2)
    assert a.state is State.ESTABLISHED
    assert a.receive() == b"hello"
    assert [brief(s) for s in a.segments_to_send(0.2)] == [(101, 306, "A", 0)]


def test_text_on_a_syn_and_again_on_the_syn_ack_is_delivered_once() -> None:
    a = _simultaneous()
    a.receive_segment(seg_b_to_a(300, 101, "SA", payload=b"hello"), 0.2)
    assert a.state is State.ESTABLISHED
    assert a.receive() == b"hello"
    assert [brief(s) for s in a.segments_to_send(0.2)] == [(101, 306, "A", 0)]


def test_fin_on_a_syn_is_queued_with_its_text() -> None:
    a = _simultaneous_fin()
    a.receive_segment(seg_b_to_a(305, 101, "A"), 0.2)
    assert a.state is State.CLOSE_WAIT
    assert a.receive() == b"bye"
    assert "EndOfStream" in kinds(drain(a))


def _simultaneous_fin() -> TcpConnection:
    a = TcpConnection(A_ADDR, B_ADDR, config=PLAIN, iss=100)
    a.connect(0.0)
    a.segments_to_send(0.0)
    a.receive_segment(seg_b_to_a(300, 0, "SF", payload=b"bye"), 0.1)
    assert a.state is State.SYN_RECEIVED
    return a


# -- the SYN challenge ACK irrespective of the sequence number ---------------------


def test_syn_fin_straddling_rcv_nxt_gets_a_challenge_ack_not_a_close() -> None:
    d = Duo()
    d.open()
    # SEQ = RCV.NXT - 1: the SYN's octet is old, the FIN would be in sequence.
    d.to_b([seg_a_to_b(100, 301, "SF")])
    assert d.b.state is State.ESTABLISHED
    assert [brief(s) for s in d.out_b()] == [(301, 101, "A", 0)]
    assert d.b.stats.challenge_acks == 1


@pytest.mark.parametrize("seq", [101 + 9000, (100 - 5000) % (1 << 32)])
def test_syn_outside_the_window_gets_a_challenge_ack(seq: int) -> None:
    d = Duo()
    d.open()
    d.to_b([seg_a_to_b(seq, 301, "S")])
    assert d.b.state is State.ESTABLISHED
    assert [brief(s) for s in d.out_b()] == [(301, 101, "A", 0)]
    assert d.b.stats.challenge_acks == 1


# -- small MTUs -------------------------------------------------------------------


def test_mss_floor_is_ipv4s_smallest_mtu() -> None:
    assert TcpConfig(mss=28).mss == 28  # MTU 68 - 40
    with pytest.raises(LocalProtocolError, match=r"28\.\.65495"):
        TcpConfig(mss=27)


@pytest.mark.parametrize("mtu", [68, 70, 72])
def test_transfer_over_a_small_mtu(mtu: int) -> None:
    cfg = dataclasses.replace(PLAIN, mss=mtu - 40, timestamps=True, sack=True)
    d = Duo(cfg, cfg)
    d.open()
    assert d.a.effective_mss == mtu - 40 - 12
    data = bytes(range(256)) * 4
    d.a.send(data, d.now)
    got = bytearray()
    for _ in range(400):
        out = d.out_a()
        # MUST-16: payload and options within the MSS the peer announced.
        assert all(len(s.payload) + len(build_options(s.options)) <= mtu - 40 for s in out)
        d.to_b(out)
        d.to_a(d.out_b())
        got += d.b.receive()
        if len(got) == len(data):
            break
    assert bytes(got) == data


# -- ICMP errors ------------------------------------------------------------------


def test_classify_ipv4_icmp() -> None:
    assert classify(3, 3) is IcmpError.PORT_UNREACHABLE
    assert classify(3, 2) is IcmpError.PROTOCOL_UNREACHABLE
    assert classify(3, 1) is IcmpError.HOST_UNREACHABLE
    assert classify(3, 4) is IcmpError.FRAG_NEEDED
    assert classify(3, 13) is IcmpError.ADMIN_UNREACHABLE
    assert classify(4, 0) is IcmpError.SOURCE_QUENCH
    assert classify(11, 0) is IcmpError.TIME_EXCEEDED
    assert classify(12, 0) is IcmpError.PARAMETER_PROBLEM
    assert classify(0, 0) is None and classify(8, 0) is None


def _syn_sent() -> TcpConnection:
    a = TcpConnection(A_ADDR, B_ADDR, config=PLAIN, iss=100)
    a.connect(0.0)
    a.segments_to_send(0.0)
    drain(a)
    return a


@pytest.mark.parametrize("kind", [IcmpError.PORT_UNREACHABLE, IcmpError.PROTOCOL_UNREACHABLE])
def test_hard_error_aborts_an_active_open(kind: IcmpError) -> None:
    a = _syn_sent()
    assert a.icmp_error(kind, 100, 0.3)  # quotes our SYN
    assert a.state is State.CLOSED
    events = drain(a)
    assert kinds(events) == ["ConnectionRefused", "Closed"]
    assert events[0] == ev.ConnectionRefused(kind.value)
    assert a.segments_to_send(0.3) == [] and a.get_timer() is None


def test_hard_error_forgets_a_passive_child() -> None:
    d = Duo()
    d.a.connect(d.now)
    d.to_b(d.out_a())
    assert [brief(s) for s in d.out_b()] == [(300, 101, "SA", 0)]  # lost
    drain(d.b)
    assert d.b.icmp_error(IcmpError.PORT_UNREACHABLE, 300, d.now)
    assert d.b.state is State.CLOSED
    assert kinds(drain(d.b)) == ["Closed"]
    assert d.out_b() == []


def test_icmp_quoting_a_sequence_number_we_did_not_send_is_ignored() -> None:
    a = _syn_sent()
    assert not a.icmp_error(IcmpError.PORT_UNREACHABLE, 101, 0.3)  # SND.MAX is 101
    assert not a.icmp_error(IcmpError.PORT_UNREACHABLE, 99, 0.3)
    assert a.state is State.SYN_SENT
    assert a.stats.dropped == {"icmp-out-of-window": 2}


def test_source_quench_is_silently_discarded() -> None:
    a = _syn_sent()
    assert not a.icmp_error(IcmpError.SOURCE_QUENCH, 100, 0.3)  # MUST-55
    assert a.state is State.SYN_SENT and a.soft_error is None and drain(a) == []


def test_soft_error_never_aborts_and_is_reported_with_the_timeout() -> None:
    a = _syn_sent()
    assert a.icmp_error(IcmpError.HOST_UNREACHABLE, 100, 0.3)  # MUST-56
    assert a.state is State.SYN_SENT and drain(a) == []
    assert a.soft_error == "host-unreachable"  # SHLD-25
    now = 0.3
    while a.state is State.SYN_SENT:
        deadline = a.get_timer()
        assert deadline is not None
        now = deadline
        a.handle_timer(now)
        a.segments_to_send(now)
    timed_out = [e for e in drain(a) if isinstance(e, ev.TimedOut)]
    assert timed_out == [ev.TimedOut("connect", "host-unreachable")]


@pytest.mark.parametrize(
    "kind", [IcmpError.PORT_UNREACHABLE, IcmpError.FRAG_NEEDED, IcmpError.TIME_EXCEEDED]
)
def test_errors_in_a_synchronized_state_are_soft(kind: IcmpError) -> None:
    d = Duo()
    d.open()
    d.a.send(b"q" * 500, d.now)
    d.out_a()  # lost; the ICMP error quotes it
    drain(d.a)
    assert d.a.icmp_error(kind, 101, d.now)  # RFC 5927 §4.1
    assert d.a.state is State.ESTABLISHED and drain(d.a) == []
    assert d.a.soft_error == kind.value
    assert not d.a.icmp_error(kind, 601, d.now)  # beyond SND.MAX


# -- the initial window ------------------------------------------------------------


@pytest.mark.parametrize(("choice", "segments"), [("rfc3390", 3), ("rfc6928", 10)])
def test_initial_window_choice(choice: str, segments: int) -> None:
    cfg = TcpConfig(initial_window=choice, nodelay=True)
    d = Duo(cfg, cfg)
    d.open()
    assert d.a.effective_mss == 1448  # 1460 less the timestamp option
    d.a.send(b"w" * 100_000, d.now)
    first = d.out_a()
    assert [len(s.payload) for s in first] == [1448] * segments


def test_initial_window_choice_is_validated() -> None:
    with pytest.raises(LocalProtocolError, match="initial_window must be one of"):
        TcpConfig(initial_window="ten")
