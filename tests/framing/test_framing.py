from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synack.core.framing import (
    FrameDecoder,
    FrameTooLarge,
    TruncatedFrame,
    encode,
    encode_many,
)
from synack.errors import LocalProtocolError, RemoteProtocolError


def _hdr(n: int) -> bytes:
    # Independent of the codec: the wire format is a big-endian uint32 length.
    return struct.pack(">I", n)


def _decode_all(chunks: list[bytes], max_frame: int = 1 << 20) -> list[bytes]:
    dec = FrameDecoder(max_frame=max_frame)
    out: list[bytes] = []
    for c in chunks:
        if c:  # b"" is the end-of-stream signal, not an empty read
            dec.receive_data(c)
            out.extend(dec)
    dec.receive_data(b"")
    out.extend(dec)
    return out


def test_encode_is_length_then_payload() -> None:
    assert encode(b"hello") == b"\x00\x00\x00\x05hello"
    assert encode(b"") == b"\x00\x00\x00\x00"
    assert encode(memoryview(b"ab")) == b"\x00\x00\x00\x02ab"
    assert encode_many([b"a", b"", b"bc"]) == b"\x00\x00\x00\x01a\x00\x00\x00\x00\x00\x00\x00\x02bc"


def test_several_frames_in_one_read() -> None:
    dec = FrameDecoder()
    dec.receive_data(_hdr(3) + b"abc" + _hdr(0) + _hdr(2) + b"de" + _hdr(5) + b"fg")
    assert dec.frames() == [b"abc", b"", b"de"]
    assert dec.frames() == []
    assert dec.pending == 4 + 2
    dec.receive_data(b"hij")
    assert dec.next_event() == b"fghij"
    assert dec.next_event() is None


def test_one_byte_at_a_time() -> None:
    stream = _hdr(5) + b"hello" + _hdr(1) + b"x"
    assert _decode_all([bytes([b]) for b in stream]) == [b"hello", b"x"]


def test_header_split_across_reads() -> None:
    stream = _hdr(300) + bytes(range(256)) + bytes(44)
    assert _decode_all([stream[:2], stream[2:3], stream[3:10], stream[10:]]) == [stream[4:]]


def test_max_frame_checked_on_the_header_before_any_body_byte() -> None:
    dec = FrameDecoder(max_frame=10)
    dec.receive_data(_hdr(5) + b"12345" + _hdr(11))
    assert dec.next_event() == b"12345"  # frames before the error are delivered
    with pytest.raises(FrameTooLarge) as exc:
        dec.next_event()
    assert exc.value.length == 11 and exc.value.max_frame == 10
    assert isinstance(exc.value, RemoteProtocolError)
    assert dec.pending == 0  # nothing of the oversized body is held
    dec.receive_data(b"x" * 100)  # ignored: the stream is broken
    with pytest.raises(FrameTooLarge):
        dec.frames()


def test_four_gib_length_header_is_refused_without_buffering() -> None:
    dec = FrameDecoder()
    dec.receive_data(b"\xff\xff")
    assert dec.next_event() is None
    dec.receive_data(b"\xff\xff" + b"A" * 1000)
    with pytest.raises(FrameTooLarge) as exc:
        dec.next_event()
    assert exc.value.length == 0xFFFFFFFF
    assert dec.pending == 0


def test_max_frame_is_inclusive() -> None:
    assert _decode_all([_hdr(10) + b"x" * 10], max_frame=10) == [b"x" * 10]


@pytest.mark.parametrize(
    ("tail", "received", "expected"),
    [(b"\x00\x00", 2, None), (_hdr(10) + b"abc", 3, 10), (_hdr(1), 0, 1)],
)
def test_truncated_frame_at_eof(tail: bytes, received: int, expected: int | None) -> None:
    dec = FrameDecoder()
    dec.receive_data(_hdr(1) + b"z" + tail)
    dec.receive_data(b"")
    assert dec.next_event() == b"z"
    with pytest.raises(TruncatedFrame) as exc:
        dec.next_event()
    assert (exc.value.received, exc.value.expected) == (received, expected)
    assert isinstance(exc.value, RemoteProtocolError)


def test_clean_eof_is_not_an_error() -> None:
    dec = FrameDecoder()
    dec.receive_data(_hdr(1) + b"z")
    dec.receive_data(b"")
    assert list(dec) == [b"z"]
    assert dec.eof and dec.error is None


def test_data_after_eof_is_a_local_error() -> None:
    dec = FrameDecoder()
    dec.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        dec.receive_data(b"x")


def test_bad_max_frame_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        FrameDecoder(max_frame=-1)


def _feed_buffered(dec: FrameDecoder, data: bytes, read_size: int) -> list[bytes]:
    """Drive the decoder the way asyncio drives a BufferedProtocol."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        buf = dec.get_buffer(-1)
        n = min(len(buf), read_size, len(data) - pos)
        buf[:n] = data[pos : pos + n]
        dec.buffer_updated(n)
        pos += n
        out.extend(dec.frames())
    return out


@pytest.mark.parametrize("read_size", [1, 7, 4096, 1 << 20])
def test_buffered_protocol_path(read_size: int) -> None:
    payloads = [b"", b"a" * 100, bytes(range(256)) * 300, b"b" * 40_000, b"c"]
    dec = FrameDecoder(max_frame=1 << 20)
    assert _feed_buffered(dec, encode_many(payloads), read_size) == payloads


def _read(dec: FrameDecoder, data: bytes) -> int:
    """One read of ``data`` (which must fit); returns the size of the buffer it was given."""
    buf = dec.get_buffer(-1)
    assert len(data) <= len(buf)
    buf[: len(data)] = data
    dec.buffer_updated(len(data))
    dec.frames()
    return len(buf)


def test_read_buffer_grows_on_full_reads_and_shrinks_only_after_many_small_ones() -> None:
    dec = FrameDecoder()
    frame = encode(b"x" * 96)  # 100 bytes
    start = len(dec.get_buffer(-1))
    burst = frame * (start // len(frame)) + frame[: start % len(frame)]
    _read(dec, burst)  # filled the buffer: the next read gets twice the room
    rest = frame[start % len(frame) :]
    assert _read(dec, rest) == 2 * start
    # A burst that starts with one small frame (the first write of a burst goes
    # out alone) keeps its room: the small read does not halve it.
    for _ in range(20):
        assert _read(dec, frame) == 2 * start
        assert _read(dec, frame * (start // len(frame))) == 2 * start
    # A connection that only trickles gives the room back, after a few reads.
    sizes = [_read(dec, frame) for _ in range(20)]
    assert sizes[0] == 2 * start and sizes[-1] == start


payload_lists = st.lists(st.binary(max_size=300), max_size=20)


@given(payload_lists, st.data())
def test_any_split_gives_the_same_frames(payloads: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(_hdr(len(p)) + p for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert _decode_all(chunks) == payloads


@given(payload_lists, st.integers(1, 70_000))
def test_round_trip_buffered(payloads: list[bytes], read_size: int) -> None:
    assert _feed_buffered(FrameDecoder(), encode_many(payloads), read_size) == payloads


@given(st.lists(st.binary(max_size=64), max_size=10), st.integers(0, 40))
def test_fuzz_only_protocol_errors_escape(chunks: list[bytes], max_frame: int) -> None:
    dec = FrameDecoder(max_frame=max_frame)
    try:
        for c in filter(None, chunks):
            dec.receive_data(c)
            for frame in dec:
                assert len(frame) <= max_frame
        dec.receive_data(b"")
        list(dec)
    except RemoteProtocolError:
        pass
    assert dec.pending <= 4 + max_frame
