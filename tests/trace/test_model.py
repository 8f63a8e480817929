from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from synack.tcp.states import TRANSITIONS, Cause, State
from synack.trace.builder import TraceBuilder
from synack.trace.model import LinkType, TraceEvent, checksums_ok, decode
from synack.wire.tcp import TcpFlags, TcpOptions
from tests.trace.frames import (
    AK,
    CONVERSATION,
    FA,
    ISN_A,
    ISN_B,
    PA,
    RA,
    SA,
    A,
    B,
    R,
    S,
    tcp_frame,
    udp_frame,
)

SS = State


def build(frames: list[tuple[float, bytes]], lost: frozenset[int] = frozenset()):  # type: ignore[no-untyped-def]
    b = TraceBuilder(names={str(A): "A", str(B): "B"})
    for i, (t, f) in enumerate(frames):
        b.add_frame(t, f, lost=i in lost, lost_where="A-B" if i in lost else None)
    return b.build()


def changes(trace) -> list[tuple[str, State | None, State]]:  # type: ignore[no-untyped-def]
    return [(c.lane, c.old, c.new) for c in trace.state_changes]


def test_handshake_data_and_close_states_inferred_from_wire_packets() -> None:
    trace = build(CONVERSATION)
    a, b = str(A), str(B)
    assert changes(trace) == [
        (a, SS.CLOSED, SS.SYN_SENT),
        (b, SS.LISTEN, SS.SYN_RECEIVED),
        (a, SS.SYN_SENT, SS.ESTABLISHED),
        (b, SS.SYN_RECEIVED, SS.ESTABLISHED),
        (a, SS.ESTABLISHED, SS.FIN_WAIT_1),
        (b, SS.ESTABLISHED, SS.CLOSE_WAIT),
        (a, SS.FIN_WAIT_1, SS.FIN_WAIT_2),
        (b, SS.CLOSE_WAIT, SS.LAST_ACK),
        (a, SS.FIN_WAIT_2, SS.TIME_WAIT),
        (b, SS.LAST_ACK, SS.CLOSED),
    ]
    assert all(c.inferred for c in trace.state_changes)
    (conn,) = trace.connections
    assert (conn.client, conn.server) == ((A, 40000), (B, 8898))
    assert (conn.client_isn, conn.server_isn) == (ISN_A, ISN_B)
    assert conn.initial == (SS.CLOSED, SS.LISTEN)
    assert conn.final == (SS.TIME_WAIT, SS.CLOSED)
    assert [lane.name for lane in trace.lanes] == ["A", "B"]


def test_each_segment_carries_relative_numbers_and_states_around_it() -> None:
    events = build(CONVERSATION).events
    assert [e.protocol for e in events] == ["ARP", "ARP"] + ["TCP"] * 10
    syn, synack, ack = (e.tcp for e in events[2:5])
    assert syn is not None and synack is not None and ack is not None
    assert (syn.rel_seq, syn.rel_ack, syn.seq) == (0, None, ISN_A)
    assert (synack.rel_seq, synack.rel_ack, synack.ack) == (0, 1, ISN_A + 1)
    assert (ack.rel_seq, ack.rel_ack) == (1, 1)
    assert syn.options.mss == 1460
    assert syn.before == (SS.CLOSED, SS.LISTEN) and syn.after == (SS.SYN_SENT, SS.SYN_RECEIVED)
    assert synack.before == (SS.SYN_RECEIVED, SS.SYN_SENT)
    assert synack.after == (SS.SYN_RECEIVED, SS.ESTABLISHED)
    world = events[6].tcp
    assert world is not None and not world.from_client
    assert (world.rel_seq, world.rel_ack, world.length) == (1, 6, 6)
    assert world.flags == PA
    last = events[-1].tcp
    assert last is not None and last.before == (SS.TIME_WAIT, SS.LAST_ACK)
    assert last.after == (SS.TIME_WAIT, SS.CLOSED)
    assert events[0].src == str(A) and events[0].dst == str(B)
    assert "who-has 172.16.10.2" in events[0].summary


def test_lost_segment_changes_nothing_at_the_receiver_and_its_resend_is_a_retransmission() -> None:
    frames = [*CONVERSATION[2:5]]
    frames.append((0.1, tcp_frame(A, B, 40000, 8898, PA, ISN_A + 1, ISN_B + 1, b"hello")))  # lost
    frames.append((0.3, tcp_frame(A, B, 40000, 8898, PA, ISN_A + 1, ISN_B + 1, b"hello")))
    frames.append((0.31, tcp_frame(B, A, 8898, 40000, AK, ISN_B + 1, ISN_A + 6)))
    # A FIN that dies on the link leaves B ESTABLISHED; its retransmission moves B.
    frames.append((0.4, tcp_frame(A, B, 40000, 8898, FA, ISN_A + 6, ISN_B + 1)))  # lost
    frames.append((0.6, tcp_frame(A, B, 40000, 8898, FA, ISN_A + 6, ISN_B + 1)))
    trace = build(frames, lost=frozenset({3, 6}))
    events = trace.events
    assert [e.lost for e in events] == [False, False, False, True, False, False, True, False]
    assert events[3].lost_where == "A-B"
    marks = [e.tcp.retransmission for e in events if e.tcp is not None]
    assert marks == [False, False, False, False, True, False, False, True]
    lost_fin, resent_fin = events[6].tcp, events[7].tcp
    assert lost_fin is not None and resent_fin is not None
    assert lost_fin.after == (SS.FIN_WAIT_1, SS.ESTABLISHED)
    assert resent_fin.after == (SS.FIN_WAIT_1, SS.CLOSE_WAIT)
    assert changes(trace)[-2:] == [
        (str(A), SS.ESTABLISHED, SS.FIN_WAIT_1),
        (str(B), SS.ESTABLISHED, SS.CLOSE_WAIT),
    ]


def test_syn_to_a_closed_port_is_refused_and_the_port_never_listened() -> None:
    trace = build(
        [
            (0.0, tcp_frame(A, B, 40001, 9, S, 77)),
            (0.1, tcp_frame(B, A, 9, 40001, RA, 0, 78)),
        ]
    )
    (conn,) = trace.connections
    assert conn.initial == (SS.CLOSED, SS.CLOSED)
    assert changes(trace) == [(str(A), SS.CLOSED, SS.SYN_SENT), (str(A), SS.SYN_SENT, SS.CLOSED)]
    assert trace.state_changes[-1].cause is Cause.RCV_RST


def test_rst_that_does_not_ack_the_syn_is_ignored_in_syn_sent() -> None:
    trace = build(
        [
            (0.0, tcp_frame(A, B, 40001, 9, S, 77)),
            (0.1, tcp_frame(B, A, 9, 40001, RA, 0, 12345)),
        ]
    )
    assert trace.connections[0].final == (SS.SYN_SENT, SS.CLOSED)


def test_simultaneous_close_goes_through_closing() -> None:
    frames = [*CONVERSATION[2:5]]
    frames += [
        (0.1, tcp_frame(A, B, 40000, 8898, FA, ISN_A + 1, ISN_B + 1)),
        (0.1, tcp_frame(B, A, 8898, 40000, FA, ISN_B + 1, ISN_A + 1)),
        (0.2, tcp_frame(A, B, 40000, 8898, AK, ISN_A + 2, ISN_B + 2)),
        (0.2, tcp_frame(B, A, 8898, 40000, AK, ISN_B + 2, ISN_A + 2)),
    ]
    trace = build(frames)
    for end in (A, B):
        assert [(c.old, c.new) for c in trace.state_changes if c.lane == str(end)][-3:] == [
            (SS.ESTABLISHED, SS.FIN_WAIT_1),
            (SS.FIN_WAIT_1, SS.CLOSING),
            (SS.CLOSING, SS.TIME_WAIT),
        ]
    first_fin = trace.events[3].tcp
    assert first_fin is not None and first_fin.after == (SS.FIN_WAIT_1, SS.ESTABLISHED)
    assert trace.connections[0].final == (SS.TIME_WAIT, SS.TIME_WAIT)


def test_fin_with_ack_of_our_fin_passes_fin_wait_2_as_the_rfc_orders_it() -> None:
    frames = [*CONVERSATION[2:5]]
    frames += [
        (0.1, tcp_frame(A, B, 40000, 8898, FA, ISN_A + 1, ISN_B + 1)),
        (0.2, tcp_frame(B, A, 8898, 40000, FA, ISN_B + 1, ISN_A + 2)),
        (0.3, tcp_frame(A, B, 40000, 8898, AK, ISN_A + 2, ISN_B + 2)),
    ]
    trace = build(frames)
    a_changes = [(c.old, c.new, c.cause) for c in trace.state_changes if c.lane == str(A)]
    assert a_changes[-2:] == [
        (SS.FIN_WAIT_1, SS.FIN_WAIT_2, Cause.RCV_ACK_OF_FIN),
        (SS.FIN_WAIT_2, SS.TIME_WAIT, Cause.RCV_FIN),
    ]
    b_changes = [(c.old, c.new) for c in trace.state_changes if c.lane == str(B)]
    assert b_changes[-3:] == [
        (SS.ESTABLISHED, SS.CLOSE_WAIT),
        (SS.CLOSE_WAIT, SS.LAST_ACK),
        (SS.LAST_ACK, SS.CLOSED),
    ]


def test_duplicate_acks_are_marked() -> None:
    frames = [*CONVERSATION[2:5]]
    frames.append((0.1, tcp_frame(A, B, 40000, 8898, PA, ISN_A + 1, ISN_B + 1, b"x" * 10)))
    frames.append((0.1, tcp_frame(A, B, 40000, 8898, PA, ISN_A + 11, ISN_B + 1, b"y" * 10)))
    for _ in range(3):
        frames.append((0.2, tcp_frame(B, A, 8898, 40000, AK, ISN_B + 1, ISN_A + 11)))
    events = build(frames).events
    assert [e.tcp.dup_ack for e in events if e.tcp is not None][-3:] == [False, True, True]


def test_sequence_numbers_relative_across_the_wrap() -> None:
    isn = 2**32 - 2
    frames = [
        (0.0, tcp_frame(A, B, 1, 2, S, isn)),
        (0.0, tcp_frame(B, A, 2, 1, SA, 10, isn + 1)),
        (0.0, tcp_frame(A, B, 1, 2, PA, isn + 1, 11, b"abcd")),
        (0.0, tcp_frame(B, A, 2, 1, AK, 11, isn + 5)),
        (0.0, tcp_frame(A, B, 1, 2, PA, isn + 1, 11, b"abcd")),
    ]
    events = build(frames).events
    assert [(e.tcp.rel_seq, e.tcp.rel_ack) for e in events if e.tcp] == [
        (0, None),
        (0, 1),
        (1, 1),
        (1, 5),
        (1, 1),
    ]
    assert events[-1].tcp is not None and events[-1].tcp.retransmission
    assert events[2].tcp is not None and not events[2].tcp.retransmission


def test_capture_starting_mid_stream_assumes_established() -> None:
    trace = build(
        [
            (0.0, tcp_frame(A, B, 40000, 8898, PA, 7777, 9999, b"late")),
            (0.1, tcp_frame(B, A, 8898, 40000, AK, 9999, 7781)),
        ]
    )
    (conn,) = trace.connections
    assert conn.initial == (SS.ESTABLISHED, SS.ESTABLISHED)
    events = trace.events
    assert [(e.tcp.rel_seq, e.tcp.rel_ack) for e in events if e.tcp] == [(0, 0), (0, 4)]


def test_recorded_state_changes_win_over_inference_and_bracket_their_segment() -> None:
    b = TraceBuilder()
    a_end, b_end = (A, 40000), (B, 8898)
    b.add_state_change(0.0, b_end, a_end, SS.CLOSED, SS.LISTEN, Cause.PASSIVE_OPEN)
    b.add_state_change(0.0, a_end, b_end, SS.CLOSED, SS.SYN_SENT, Cause.ACTIVE_OPEN)
    b.add_frame(0.0, CONVERSATION[2][1])
    b.add_state_change(0.01, b_end, a_end, SS.LISTEN, SS.SYN_RECEIVED, Cause.RCV_SYN)
    b.add_frame(0.01, CONVERSATION[3][1])
    b.add_state_change(0.02, a_end, b_end, SS.SYN_SENT, SS.ESTABLISHED, Cause.RCV_SYN_ACK)
    b.add_note(0.02, "handshake done")
    trace = b.build()
    assert not trace.connections[0].inferred
    assert all(not c.inferred for c in trace.state_changes)
    syn, synack = (e.tcp for e in trace.events)
    assert syn is not None and synack is not None
    assert syn.before == (SS.CLOSED, SS.LISTEN) and syn.after == (SS.SYN_SENT, SS.SYN_RECEIVED)
    assert synack.before == (SS.SYN_RECEIVED, SS.SYN_SENT)
    assert synack.after == (SS.SYN_RECEIVED, SS.ESTABLISHED)
    assert (SS.LISTEN, Cause.RCV_SYN, SS.SYN_RECEIVED) in trace.visited()
    kinds = [type(it).__name__ for it in trace.items]
    assert kinds == [
        "StateChange",
        "StateChange",
        "TraceEvent",
        "StateChange",
        "TraceEvent",
        "StateChange",
        "Note",
    ]


def test_udp_raw_ip_and_garbage_frames_never_raise() -> None:
    b = TraceBuilder()
    dgram = udp_frame(A, B, 5000, 9000, b"%H:%M")
    b.add_frame(0.0, dgram)
    b.add_frame(0.1, dgram[14:], linktype=LinkType.RAW)
    b.add_frame(0.2, b"\x01\x02\x03")
    b.add_frame(0.3, dgram[:30])  # truncated IPv4
    events = b.build().events
    assert [e.protocol for e in events] == ["UDP", "UDP", "malformed", "malformed"]
    assert events[2].error is not None and events[3].error is not None
    assert (
        isinstance(events[0], TraceEvent)
        and "172.16.10.1.5000 > 172.16.10.2.9000" in events[0].summary
    )


def test_bad_checksum_is_still_decoded_and_reported() -> None:
    good = tcp_frame(A, B, 1, 2, S, 5)
    bad = bytearray(good)
    bad[14 + 20 + 16] ^= 0xFF  # the TCP checksum field
    d = decode(bytes(bad))
    assert d.tcp is not None and d.tcp.flags == S and d.tcp.seq == 5
    assert checksums_ok(good) and not checksums_ok(bytes(bad))


# Any sequence of segments between two ends, in any order, lost or not: the
# builder never raises and every inferred change is a row of the table.
_flags = st.sampled_from([S, SA, AK, PA, FA, RA, R, S | FA, TcpFlags.FIN, TcpFlags(0)])
_segment = st.tuples(
    st.booleans(),  # from A?
    _flags,
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=8),
    st.booleans(),  # lost?
)


@settings(max_examples=300)
@given(st.lists(_segment, max_size=25), st.lists(st.binary(max_size=80), max_size=3))
def test_random_segments_and_garbage_never_break_the_builder(
    segments: list[tuple[bool, TcpFlags, int, int, bytes, bool]], garbage: list[bytes]
) -> None:
    b = TraceBuilder()
    for i, (from_a, flags, seq, ack, payload, lost) in enumerate(segments):
        src, dst, sport, dport = (A, B, 40000, 8898) if from_a else (B, A, 8898, 40000)
        b.add_frame(
            i * 0.01, tcp_frame(src, dst, sport, dport, flags, seq, ack, payload), lost=lost
        )
    for junk in garbage:
        b.add_frame(1.0, junk)
    trace = b.build()
    assert len(trace.events) == len(segments) + len(garbage)
    rows = set(TRANSITIONS)
    for change in trace.state_changes:
        assert change.old is not None and change.cause is not None
        assert (change.old, change.cause, change.new) in rows
    for event in trace.events[: len(segments)]:
        assert event.tcp is not None
        assert 0 <= event.tcp.rel_seq < 2**32


def test_window_is_scaled_only_when_both_syns_agreed() -> None:
    ws = TcpOptions(mss=1460, wscale=7)

    def windows(b_scales: bool) -> list[tuple[int, int]]:
        frames = [
            (0.0, tcp_frame(A, B, 1, 2, S, 100, window=65535, options=ws)),
            (
                0.0,
                tcp_frame(B, A, 2, 1, SA, 500, 101, window=65535, options=ws if b_scales else None),
            ),
            (0.0, tcp_frame(A, B, 1, 2, AK, 101, 501, window=100)),
        ]
        return [(e.tcp.window, e.tcp.window_scaled) for e in build(frames).events if e.tcp]

    assert windows(True) == [(65535, 65535), (65535, 65535), (100, 12800)]
    assert windows(False) == [(65535, 65535), (65535, 65535), (100, 100)]
