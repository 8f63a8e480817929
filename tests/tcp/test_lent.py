"""Lent octets (a file's pages a zero-copy sendfile lends the send buffer,
tcp/buffers.py): the send buffer and the stack never read them but through
their lender's copy, and a transfer of lent octets puts on the link exactly
the frames the same transfer of bytes does (over a TSO link, where they are
never copied at all, and over a software cut with losses, where they are).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

import synack
from synack.stack.events import FrameTrace
from synack.stack.host import SplitFrame
from synack.stack.offload import coalesce
from synack.tcp.buffers import Lender, Lent, SendBuffer, owned
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment
from tests.stack.netfix import acks_back, offload_pair, two_hosts
from tests.stack.test_fast_paths import B
from tests.stack.test_offload import complete


class MemLender(Lender):
    """A lender over bytes that counts how its octets were had."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads = 0  # user-space copies (read)
        self.views = 0  # kernel views (only the test's "kernel" asks)

    def read(self, start: int, n: int) -> bytes:
        self.reads += 1
        return self.data[start : start + n]

    def kernel_views(self, start: int, n: int) -> tuple[memoryview]:
        self.views += 1
        return (memoryview(self.data)[start : start + n],)

    def refused(self, exc: OSError) -> None:
        raise AssertionError("nothing refuses here")


def kernel_bytes(payload: object) -> bytes:
    """What the kernel's copy of a frame's payload gives (never a read)."""
    if type(payload) is Lent:
        return b"".join(payload.kernel_views())
    return bytes(payload)  # type: ignore[call-overload]


def test_send_buffer_keeps_lent_pieces_unread_and_joins_a_lenders_next_block() -> None:
    data = random.Random(1).randbytes(10_000)
    lender = MemLender(data)
    buf = SendBuffer(1 << 20)
    assert buf.append(b"HTTP/1.1 200 OK\r\n\r\n") == 19
    assert buf.append(Lent(lender, 0, 4000)) == 4000
    assert buf.append(Lent(lender, 4000, 6000)) == 6000  # the next block: one piece
    assert len(buf._pieces) == 2 and buf.lends
    assert lender.reads == 0
    # Inside the lent piece: a Lent for the stack to carry on (no read)...
    v = buf.view(19 + 100, 5000)
    assert type(v) is Lent and (v.start, v.size) == (100, 5000) and lender.reads == 0
    # ...a peek of it: the lender's copy; a view straddling the bytes before
    # it: one Lent of both (never read), whose copy is the octets joined.
    whole = b"HTTP/1.1 200 OK\r\n\r\n" + data
    assert buf.peek(19 + 10, 1448) == whole[29 : 29 + 1448] and lender.reads == 1
    both = buf.view(5, 3000)
    assert type(both) is Lent and kernel_bytes(both) == whole[5:3005] and lender.reads == 1
    assert bytes(both[7:2000]) == whole[12:2005] and lender.reads == 2
    buf.drop(19 + 9_000)
    assert buf.view(0, 1000).start == 9_000  # type: ignore[attr-defined]
    buf.drop(1000)
    assert not buf._pieces and len(buf) == 0


def test_a_lent_piece_is_taken_in_part_when_the_buffer_is_nearly_full() -> None:
    lender = MemLender(bytes(range(256)) * 40)
    buf = SendBuffer(3000)
    assert buf.append(b"x" * 1000) == 1000
    assert buf.append(Lent(lender, 7, 5000)) == 2000
    assert buf.peek(1000, 2000) == lender.data[7:2007]
    assert owned(b"ab") == b"ab" and owned(Lent(lender, 1, 2)) == lender.data[1:3]  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        memoryview(Lent(lender, 0, 1))  # type: ignore[call-overload]  # no buffer: never read by accident


def _download(
    size: int, lend: bool, tso: bool, lose: int = 0, lenders: int = 1
) -> tuple[list[tuple[object, ...]], list[tuple[int, ...]], int, tuple[int, int]]:
    """B sends ``size`` octets to A (as Lent blocks of one lender or as the
    same bytes), over a TSO link or a software cut, every ``lose``-th data
    frame lost; returns the frames (payloads as the kernel copies them), the
    TCB's course, and the lender's reads."""
    _lan, a, b, client, server = offload_pair(tso)
    data = random.Random(9).randbytes(size)
    pool = [MemLender(data) for _ in range(lenders)]  # in turn: pieces never joined
    sizes = random.Random(3)
    sent, got = 0, bytearray()
    frames: list[tuple[object, ...]] = []
    tcbs: list[tuple[int, ...]] = []
    now, count, split_data, lent_split = 1.0, 0, 0, 0
    for _ in range(5_000):
        if sent < size:
            n = min(sizes.randrange(50_000, 400_000), size - sent)
            lender = pool[count % lenders]
            block = Lent(lender, sent, n) if lend else memoryview(data)[sent : sent + n]
            sent += server.send(block, now)
        for f in b.drain_frames():
            if isinstance(f, SplitFrame):
                if f.payload:
                    split_data += 1
                    lent_split += type(f.payload) is Lent
                wire = f.head + kernel_bytes(f.payload)
                frames.append((f.head, wire, f.csum_start, f.csum_offset, f.mss))
                wire = complete(SplitFrame(f.head, wire[len(f.head) :], f.csum_start,
                                           f.csum_offset, f.mss)) if f.csum_start else wire  # fmt: skip
            else:
                wire = bytes(f)
                frames.append((wire,))
            count += 1
            if lose and len(wire) > 200 and count % lose == 0:
                continue
            a.receive_frame(wire, now)
        got += client.receive(1 << 22, now)
        now = acks_back(a, b, now)
        c = server.conn
        tcbs.append((c.snd_una, c.snd_nxt, c.snd_wnd, c._cc.cwnd))
        if len(got) == size:
            break
    assert bytes(got) == data
    return frames, tcbs, sum(m.reads for m in pool), (split_data, lent_split)


@pytest.mark.parametrize(
    ("tso", "lose", "lenders"),
    [(True, 0, 1), (True, 0, 3), (True, 7, 2), (False, 0, 1), (False, 11, 2)],
)
def test_lent_octets_make_the_frames_bytes_make(tso: bool, lose: int, lenders: int) -> None:
    # (Several lenders in turn: segments straddle pieces, lent on as one.)
    size = 2_000_003
    frames, tcbs, reads, (split_data, lent_split) = _download(size, True, tso, lose, lenders)
    same = _download(size, False, tso, lose)
    assert frames == same[0]
    assert tcbs == same[1]
    if tso:
        # Every payload of a split frame reached "the kernel" as a Lent, never
        # read in user space (retransmissions and short segments included);
        # only a segment the slow path framed whole (the route cache expired
        # while the test's clock jumped: resolved again) was the lender's copy.
        assert lent_split == split_data > 40
        whole = sum(1 for f in frames if len(f) == 1 and len(f[0]) > 100)  # type: ignore[arg-type]
        assert whole < len(frames) // 8
        if not lose:
            assert reads == whole
    else:
        assert lent_split == 0 and reads > 0  # cut and summed in software: copies


def _segment(seq: int, payload: bytes, flags: TcpFlags = TcpFlags.ACK) -> TcpSegment:
    return TcpSegment(40000, 80, seq, 1, flags, 500, payload, TcpOptions(timestamps=(1, 2)))


def test_coalescing_lent_segments_lends_the_run_on_unread() -> None:
    data = random.Random(5).randbytes(5000)
    lender = MemLender(data)
    as_lent = [
        _segment(100, Lent(lender, 0, 1448)),  # type: ignore[arg-type]
        _segment(1548, Lent(lender, 1448, 2000)),  # type: ignore[arg-type]
        _segment(3548, data[3448:4000], TcpFlags.ACK | TcpFlags.PSH),
    ]
    as_bytes = [_segment(100, data[:1448]), _segment(1548, data[1448:3448]), as_lent[2]]
    for run in (as_lent, as_lent[:2]):
        (one,) = coalesce(run)
        (same,) = coalesce(as_bytes[: len(run)])
        assert type(one.payload) is Lent and kernel_bytes(one.payload) == same.payload
        assert dataclasses.replace(one, payload=same.payload) == same
    assert lender.reads == 0
    (one,) = coalesce(as_lent[:2])
    assert one.payload.lender is lender  # type: ignore[attr-defined]  # (one lender's: one piece)


@pytest.mark.parametrize("tso", [True, False])
def test_traces_of_lent_frames_hold_the_octets(tso: bool) -> None:
    def traced(payload: object) -> list[bytes]:
        lan, a, _b = two_hosts()
        a.ping(B, 1, 1, b"", lan.now)
        lan.run()
        a.ping(B, 1, 2, b"", lan.now)
        a.frames_to_send()
        a.enable_offload(split=True, tso=tso)
        seen: list[bytes] = []
        a.observers.append(
            lambda rec: seen.append(rec.frame) if isinstance(rec, FrameTrace) else None
        )
        seg = _segment(7, payload)  # type: ignore[arg-type]
        if len(payload) > 1448:  # type: ignore[arg-type]
            a.tcp.output.send_large(a.ip, B, seg, 1448, lan.now)
        else:
            a.tcp.output.send(a.ip, B, seg, lan.now)
        sent = [f.head + kernel_bytes(f.payload) if isinstance(f, SplitFrame) else f
                for f in a.drain_frames()]  # fmt: skip
        assert seen == sent
        return seen

    data = random.Random(6).randbytes(9000)
    for n in (1, 1448, 9000):
        lender = MemLender(data)
        assert traced(Lent(lender, 0, n)) == traced(data[:n])
        assert lender.reads == 1  # the trace's copy, once


def test_only_the_tap_write_reaches_lent_memory() -> None:
    # The design's guarantee, kept by where the code is: the mapped memory
    # of a lent piece is reached through kernel_views only, and that only
    # from the TAP's write system calls (tcp/buffers.py's Lent forwards to
    # its lender, adapters/native.py defines the mapping's); anything else
    # that needs the octets takes bytes(), the lender's copy.
    src = Path(synack.__file__).parent
    callers = {
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if ".kernel_views(" in path.read_text()
    }
    assert callers == {"links/tap.py", "tcp/buffers.py"}
    native = (src / "adapters" / "native.py").read_text()
    assert native.count("memoryview(self.mapped)") == 1  # in _Window.kernel_views
