"""The parts on their own: ISNs (RFC 6528), RTO (RFC 6298), buffers, NewReno, seq arithmetic."""

from __future__ import annotations

import dataclasses
import random
import tracemalloc
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synack.adapters.tcp import READ_CHUNK, WHOLE_PIECE
from synack.errors import LocalProtocolError
from synack.tcp import events as ev
from synack.tcp.buffers import ReceiveBuffer, SendBuffer
from synack.tcp.congestion import AckAction, NewReno, initial_window
from synack.tcp.isn import IsnGenerator
from synack.tcp.rto import RttEstimator
from synack.tcp.seq import SEQ_MOD, in_window, seq_diff, seq_ge, seq_gt, seq_le, seq_lt
from synack.tcp.states import State
from tests.tcp.harness import Duo, drain

L = (IPv4Address("10.213.0.1"), 40000)
R = (IPv4Address("10.213.0.2"), 80)


def test_isn_is_clock_plus_keyed_hash() -> None:
    gen = IsnGenerator(b"k" * 16)
    a = gen(L, R, 0.0)
    # M ticks every 4 microseconds (RFC 6528 §3; MUST-8).
    assert gen(L, R, 1.0) == (a + 250_000) % SEQ_MOD
    assert gen(L, R, 0.000004) == (a + 1) % SEQ_MOD
    # F() depends on the 4-tuple and on the secret (MUST-9).
    assert gen((L[0], 40001), R, 0.0) != a
    assert IsnGenerator(b"j" * 16)(L, R, 0.0) != a
    assert IsnGenerator(b"k" * 16)(L, R, 0.0) == a  # reproducible from the secret
    with pytest.raises(LocalProtocolError):
        IsnGenerator(b"short")


def test_rto_follows_rfc6298() -> None:
    est = RttEstimator(initial=1.0, min_rto=0.2, max_rto=60.0)
    assert est.rto == 1.0  # §2.1
    est.sample(0.1)  # §2.2: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4*RTTVAR
    assert (est.srtt, est.rttvar) == (0.1, 0.05)
    assert est.rto == pytest.approx(0.3)
    est.sample(0.3)  # §2.3: RTTVAR first, with the old SRTT
    assert est.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.2)
    assert est.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.3)
    est.backoff()
    est.backoff()
    assert est.rto == pytest.approx(4 * (est.srtt + 4 * est.rttvar))
    for _ in range(20):
        est.backoff()
    assert est.rto == 60.0  # §2.5 maximum
    est.sample(0.001)
    assert est.backoffs == 0 and est.rto < 60.0  # a new sample ends the backoff
    for _ in range(40):
        est.sample(0.001)
    assert est.rto == 0.2  # §2.4: never below the minimum


def test_send_buffer_is_bounded() -> None:
    buf = SendBuffer(10)
    assert buf.append(b"0123456789abc") == 10 and buf.space == 0
    assert buf.peek(2, 3) == b"234"
    buf.drop(4)
    assert len(buf) == 6 and buf.peek(0, 2) == b"45" and buf.append(b"xyz") == 3


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("append"),
                st.sampled_from(["bytes", "bytearray", "memoryview"]),
                st.integers(0, 3000),
            ),
            st.tuples(st.just("peek"), st.integers(0, 9000), st.integers(0, 3000)),
            st.tuples(st.just("drop"), st.integers(0, 4000), st.just(0)),
        ),
        max_size=60,
    )
)
def test_send_buffer_pieces_match_one_flat_buffer(ops: list[tuple[str, object, int]]) -> None:
    # The buffer keeps pieces (bytes as given, small ones in a shared tail):
    # every answer must be the one a single flat bytearray gives.
    buf, model, made = SendBuffer(8000), bytearray(), 0
    for op, a, b in ops:
        if op == "append":
            raw = bytes((made + i) % 251 for i in range(b))
            made += b
            data = {"bytes": raw, "bytearray": bytearray(raw), "memoryview": memoryview(raw)}
            n = buf.append(data[str(a)])
            fits = min(b, 8000 - len(model))
            assert n == fits
            model += raw[:fits]
            if isinstance(data[str(a)], bytearray):
                data[str(a)][:] = b"x" * b  # the caller reuses its buffer: no aliasing
        elif op == "peek":
            got = buf.peek(int(str(a)), b)
            assert type(got) is bytes and got == bytes(model[int(str(a)) : int(str(a)) + b])
        else:
            buf.drop(int(str(a)))
            del model[: int(str(a))]
        assert len(buf) == len(model) and buf.space == 8000 - len(model)
    assert buf.peek(0, 8000) == bytes(model)
    buf.clear()
    assert len(buf) == 0 and buf.peek(0, 10) == b""


def test_send_buffer_keeps_a_bytes_write_without_copying_it() -> None:
    buf, block = SendBuffer(1 << 20), bytes(200_000)
    buf.append(b"HTTP/1.1 200 OK\r\n\r\n")
    buf.append(block)
    buf.drop(19)
    assert buf.peek(0, len(block)) is block  # a segment's payload is the piece itself


def test_send_buffer_keeps_a_small_reply_into_an_empty_buffer() -> None:
    # A keep-alive reply: a small bytes write into an empty buffer is kept as
    # it is and is its segment's payload; small writes after it share a tail.
    buf, reply = SendBuffer(1 << 16), b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert buf.append(reply) == len(reply) and len(buf) == buf.length == len(reply)
    assert buf.peek(0, len(reply)) is reply
    tail = bytearray(b"more")
    assert buf.append(tail) == 4 and buf.append(memoryview(b"-and-more")[:4]) == 4
    tail[:] = b"xxxx"  # the caller reuses its buffer: the queued copy stays
    assert buf.peek(0, len(reply) + 8) == reply + b"more-and"
    buf.drop(len(reply) + 2)
    assert buf.peek(0, 10) == b"re-and" and len(buf) == 6
    buf.drop(6)
    assert len(buf) == 0 and buf.append(reply) == len(reply)
    assert buf.peek(0, len(reply)) is reply


def test_reassembly_overlaps_and_sack_blocks() -> None:
    rb = ReceiveBuffer(100)
    assert rb.insert(10, b"KLMNO") == 0  # offsets 10..15
    assert rb.insert(20, b"UV") == 0
    assert rb.insert(12, b"MNOPQR") == 0  # overlaps the first, extends it to 18
    assert rb.sack_blocks(4) == [(10, 18), (20, 22)]  # most recent first
    assert rb.insert(18, b"ST") == 0  # joins both blocks
    assert rb.sack_blocks(4) == [(10, 22)] and rb.ooo_bytes == 12
    assert rb.insert(0, b"ABCDEFGHIJ") == 22
    assert rb.read(100) == b"ABCDEFGHIJKLMNOPQRSTUV" and not rb.has_gaps


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_reassembly_any_order_any_overlap(data: st.DataObject) -> None:
    stream = bytes(range(200))
    rb = ReceiveBuffer(1000)
    delivered = bytearray()
    pieces = data.draw(st.lists(st.tuples(st.integers(0, 199), st.integers(1, 40)), max_size=40))
    pieces.append((0, 200))
    for start, length in pieces:
        base = len(delivered)
        end = min(start + length, 200)
        if end <= base:
            continue
        start = max(start, base)
        rb.insert(start - base, stream[start:end])
        delivered += rb.read(1000)
    assert bytes(delivered) == stream


def test_newreno_bookkeeping() -> None:
    assert [initial_window(m) for m in (536, 1460, 4000)] == [2144, 4380, 8000]
    cc = NewReno(1000, iss=0)
    assert cc.cwnd == 4000
    cc.on_new_ack(1001, 1000, 3000)
    assert cc.cwnd == 5000  # slow start
    assert [cc.on_dupack(1001, 10000, 11001) for _ in range(3)][-1] is AckAction.RETRANSMIT
    assert (cc.ssthresh, cc.cwnd, cc.in_recovery) == (5000, 8000, True)
    cc.on_dupack(1001, 10000, 11001)
    assert cc.cwnd == 9000  # inflation
    assert cc.on_new_ack(3001, 2000, 8000) is AckAction.RETRANSMIT  # partial ACK
    assert cc.cwnd == 9000 - 2000 + 1000
    assert cc.on_new_ack(11001, 8000, 0) is AckAction.NONE  # full ACK
    assert not cc.in_recovery and cc.cwnd == 2000
    cc.on_timeout(6000, 11001, first=True)
    assert (cc.cwnd, cc.ssthresh) == (1000, 3000)


def test_seq_comparisons_across_the_wrap() -> None:
    top = SEQ_MOD - 5
    assert seq_lt(top, 3) and seq_gt(3, top) and seq_le(top, top) and seq_ge(3, 3)
    assert seq_diff(3, top) == 8 and seq_diff(top, 3) == -8
    assert not seq_lt(3, top)


@given(st.integers(-40, 40), st.integers(0, 20), st.integers(0, 20))
def test_table_6_acceptability_octet_by_octet(start: int, seg_len: int, wnd: int) -> None:
    """RFC 9293 §3.10.7.4 Table 6, from its definition: an empty segment is
    acceptable at RCV.NXT with a zero window, else when it falls in the window;
    a segment with octets, when one of them falls in a non-zero window."""
    if seg_len == 0:
        want = start == 0 if wnd == 0 else start in range(wnd)
    else:
        want = any(start + i in range(wnd) for i in range(seg_len))
    assert in_window(start, seg_len, wnd) is want


def test_r1_warning_and_user_timeout() -> None:
    from tests.tcp.harness import PLAIN

    cfg = dataclasses.replace(PLAIN, r1_retries=2, r2_retries=50, user_timeout=20.0)
    d = Duo(cfg, cfg)
    d.open()
    drain(d.a)
    d.a.send(b"x", d.now)
    d.out_a()
    while d.a.state is State.ESTABLISHED:
        d.fire_next(d.a)
        d.out_a()
    got = drain(d.a)
    assert ev.DeliveryProblem(2) in got
    assert ev.TimedOut("retransmit") in got
    # Retransmissions at 1, 3, 7, 15, then the user timeout (20 s after the
    # first retransmission at t=1) fires with the expiry at t=31.
    assert d.now == 31.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 300),
            st.integers(0, 700),
            st.sampled_from([bytes, bytearray, memoryview]),
        ),
        max_size=30,
    )
)
def test_receive_buffer_reads_any_size_across_its_segments(
    ops: list[tuple[int, int, type]],
) -> None:
    # In-order data is kept as the segments' own payloads: reads of any
    # size (inside one, across several) give the stream back in order.
    stream = bytes(range(256)) * 400
    rb = ReceiveBuffer(1 << 17)
    put = 0
    got = bytearray()
    for n, want, kind in ops:
        chunk = stream[put : put + n]
        assert rb.insert(0, kind(chunk)) == len(chunk)
        put += len(chunk)
        before = rb.readable
        out = rb.read(want)
        assert type(out) is bytes and len(out) == min(want, before)
        assert rb.readable == before - len(out) and rb.free == (1 << 17) - rb.readable
        got += out
    got += rb.read(1 << 20)
    assert bytes(got) == stream[:put] and rb.readable == 0


def test_receive_buffer_memory_follows_the_octets_not_the_segments() -> None:
    # Hostile: a peer filling our window with one-octet segments must not
    # make us hold a Python object per octet (40-odd octets of overhead each).
    rb = ReceiveBuffer(1 << 18)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(200_000):
            rb.insert(0, bytes([i & 0xFF]))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert rb.readable == 200_000
    assert held < 400_000, held
    assert rb.read(1 << 20) == bytes(i & 0xFF for i in range(200_000))


def test_receive_buffer_head_is_the_first_piece_and_a_read_of_it_takes_it_whole() -> None:
    rb = ReceiveBuffer(1 << 21)
    run, more = bytes(range(256)) * 1200, b"x" * 100_000  # a coalesced run, then another
    assert rb.head == 0
    rb.insert(0, run)
    rb.insert(0, more)
    assert rb.head == len(run) and rb.readable == len(run) + len(more)
    assert rb.read(rb.head) is run  # handed over as it is: no copy
    assert rb.head == len(more)
    rb.insert(0, b"ab")  # small payloads share a bytearray tail: a piece of its own
    rb.insert(0, b"cd")
    assert rb.read(rb.head) is more
    assert rb.head == 4 and rb.read(rb.head) == b"abcd" and rb.head == 0


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_reading_whole_pieces_gives_the_bytes_reading_in_chunks_gives(data: st.DataObject) -> None:
    """adapters/tcp.py reads a piece of at least WHOLE_PIECE octets whole and
    anything else in READ_CHUNK steps: the same stream as READ_CHUNK steps alone."""
    sizes = data.draw(
        st.lists(st.sampled_from([1, 500, 1448, 30_000, 65_160, 300_000]), max_size=12)
    )
    stream = random.Random(data.draw(st.integers(0, 1000))).randbytes(sum(sizes))
    chunked, whole = ReceiveBuffer(1 << 22), ReceiveBuffer(1 << 22)
    got_chunked, got_whole, pos = bytearray(), bytearray(), 0
    for n in sizes:
        for rb in (chunked, whole):
            rb.insert(0, stream[pos : pos + n])
        pos += n
        if data.draw(st.booleans()):  # the reader keeps up, or lets pieces pile up
            while chunked.readable:
                got_chunked += chunked.read(READ_CHUNK)
            while whole.readable:
                head = whole.head
                got_whole += whole.read(head if head >= WHOLE_PIECE else READ_CHUNK)
    while chunked.readable:
        got_chunked += chunked.read(READ_CHUNK)
    while whole.readable:
        head = whole.head
        got_whole += whole.read(head if head >= WHOLE_PIECE else READ_CHUNK)
    assert bytes(got_whole) == bytes(got_chunked) == stream


def test_equal_rtt_samples_at_once_are_the_samples_one_by_one() -> None:
    # A run of ACKs with one TSecr (ACK filtering) gives its N equal
    # samples in one call: SRTT, RTTVAR and RTO as N calls leave them, bit
    # for bit (RFC 6298 §2.2-2.5), from the first measurement on too.
    rng = random.Random(6298)
    for _ in range(300):
        one = RttEstimator(initial=1.0, min_rto=0.2, max_rto=60.0)
        many = RttEstimator(initial=1.0, min_rto=0.2, max_rto=60.0)
        one.backoff()
        many.backoff()
        for _ in range(rng.randrange(1, 12)):
            r = rng.choice([0.0, -0.001, 0.0004, 0.002, 0.05, 0.3, 2.0, rng.random()])
            n = rng.randrange(1, 25)
            for _ in range(n):
                one.sample(r)
            many.sample(r, n)
            state = (one.srtt, one.rttvar, one.rto, one.backoffs)
            assert (many.srtt, many.rttvar, many.rto, many.backoffs) == state


def test_send_buffer_keeps_part_of_immutable_bytes_as_a_view() -> None:
    # A file block the buffer takes only part of (adapters/native.py
    # _send_block): the part and, later, the rest's view are kept uncopied;
    # a view of a bytearray is copied (its owner may write into it again).
    block = bytes(range(256)) * 40
    buf = SendBuffer(4000)
    assert buf.append(block) == 4000
    buf.drop(4000)
    rest = memoryview(block)[4000:]
    assert buf.append(rest) == 4000
    kept = buf._pieces[-1]
    assert type(kept) is memoryview and kept.obj is block
    assert buf.peek(0, 4000) == block[4000:8000]
    mutable = bytearray(b"a" * 3000)
    buf.drop(4000)
    assert buf.append(memoryview(mutable)) == 3000
    mutable[:] = b"b" * 3000
    assert buf.peek(0, 3000) == b"a" * 3000
