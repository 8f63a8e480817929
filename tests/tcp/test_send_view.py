"""A super-segment's payload is a view of the send buffer
(``SendBuffer.view``), not a copy (``peek``). Run both ways on the same
transfer, over a TSO link and over a software cut with losses: the same
frames, octet for octet, and the same TCB."""

from __future__ import annotations

import random

import pytest

from synack.stack.host import SplitFrame
from synack.tcp.buffers import SendBuffer
from tests.stack.netfix import acks_back, offload_pair
from tests.stack.test_offload import complete
from tests.tcp.test_rack_packed import _lossy_download


def _tso_download(size: int) -> tuple[list[tuple[object, ...]], list[tuple[int, ...]], int]:
    """B sends ``size`` octets over a TSO link (split frames, checksums left
    to the link); each frame is completed as the kernel would and given to A."""
    _lan, a, b, client, server = offload_pair(True)
    data = random.Random(9).randbytes(size)
    sent, got = 0, bytearray()
    frames: list[tuple[object, ...]] = []
    tcbs: list[tuple[int, ...]] = []
    now, views = 1.0, 0
    for _ in range(2_000):
        if sent < size:
            sent += server.send(memoryview(data)[sent : sent + 300_000], now)
        for f in b.drain_frames():
            if isinstance(f, SplitFrame):
                views += type(f.payload) is memoryview
                frames.append((f.head, bytes(f.payload), f.csum_start, f.csum_offset, f.mss))
                a.receive_frame(complete(f), now)
            else:
                frames.append((bytes(f),))
                a.receive_frame(bytes(f), now)
        got += client.receive(1 << 22, now)
        now = acks_back(a, b, now)
        c = server.conn
        tcbs.append((c.snd_una, c.snd_nxt, c.snd_wnd, c._cc.cwnd))
        if len(got) == size:
            break
    assert bytes(got) == data
    return frames, tcbs, views


def test_tso_frames_are_the_same_from_a_view_or_a_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    on = _tso_download(3_000_000)
    with monkeypatch.context() as m:
        m.setattr(SendBuffer, "view", SendBuffer.peek)
        off = _tso_download(3_000_000)
    assert on[0] == off[0]
    assert on[1] == off[1]
    assert on[2] > 20 and off[2] == 0  # views went out, then none


def test_cut_frames_are_the_same_from_a_view_or_a_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    on = _lossy_download(True, 3)
    with monkeypatch.context() as m:
        m.setattr(SendBuffer, "view", SendBuffer.peek)
        off = _lossy_download(True, 3)
    assert on == off


def test_a_view_only_of_immutable_pieces() -> None:
    buf = SendBuffer(1 << 20)
    block = bytes(range(256)) * 1000
    buf.append(b"x" * 60)  # small, into an empty buffer: kept as it is
    buf.append(b"y" * 40)  # small, after it: the shared bytearray tail
    buf.append(block)
    assert type(buf.view(0, 50)) is memoryview  # inside immutable bytes: a view
    assert type(buf.view(60, 30)) is bytes  # inside the bytearray: copied
    assert buf.view(60, 30) == b"y" * 30
    v = buf.view(100 + 7, 5000)
    assert type(v) is memoryview and v.readonly and v == block[7:5007]
    assert type(buf.view(50, 5000)) is bytes  # across pieces: joined
    assert buf.view(50, 5000) == buf.peek(50, 5000)
