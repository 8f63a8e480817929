"""Software segmentation (TcpOutput._cut): each frame is a valid IPv4/TCP frame
(header and TCP checksums hold, RFC 1071) carrying its piece, for MSS values
whose checksum folds differ (tcp_output._folds), the last piece shorter."""

from __future__ import annotations

import random

import pytest

from synack.wire.checksum import internet_checksum
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment
from tests.stack.netfix import two_hosts
from tests.stack.test_fast_paths import A, B


@pytest.mark.parametrize("mss", [2, 8, 100, 255, 536, 1000, 1447, 1448])
def test_every_cut_frame_checks_and_carries_its_piece(mss: int) -> None:
    lan, a, b = two_hosts()
    listener = b.tcp_listen(80)
    a.tcp_connect((B, 80), lan.now)
    lan.run()
    assert listener.accept() is not None
    b.frames_to_send()
    rng = random.Random(mss)
    payload = rng.randbytes(mss * 7 + mss // 3 + 1)
    seg = TcpSegment(80, 40000, 7, 9, TcpFlags.ACK | TcpFlags.PSH, 500, payload,
                     TcpOptions(timestamps=(1, 2)))  # fmt: skip
    b.tcp.output.send_large(B, A, seg, mss, lan.now)
    frames = b.frames_to_send()
    assert len(frames) == -(-len(payload) // mss)
    got = b""
    for i, f in enumerate(frames):
        ip, tcp = f[14:34], f[34:]
        assert internet_checksum(ip) == 0
        pseudo = ip[12:20] + b"\0\x06" + len(tcp).to_bytes(2, "big")
        assert internet_checksum(pseudo + tcp) == 0
        assert int.from_bytes(tcp[4:8]) == 7 + i * mss  # SEG.SEQ of the piece
        assert tcp[13] == (0x18 if i == len(frames) - 1 else 0x10)  # PSH on the last only
        got += tcp[(tcp[12] >> 4) * 4 :]
    assert got == payload


@pytest.mark.parametrize("observed", [False, True])
def test_cut_frames_leave_as_the_per_piece_path_sends_them(observed: bool) -> None:
    # The cut hands its frames to the host at once (Host._emit_frames): the
    # same frames, in order, the same counters and, with an observer (a
    # trace), the same records as each piece sent through send() gives.
    results = []
    for fast in (True, False):
        lan, a, b = two_hosts()
        listener = b.tcp_listen(80)
        a.tcp_connect((B, 80), lan.now)
        lan.run()
        assert listener.accept() is not None
        b.frames_to_send()
        seen: list[object] = []
        if observed:
            b.observers.append(seen.append)
        b.tcp.output.fast = fast
        before = dict(b.counters)
        payload = random.Random(5).randbytes(1448 * 44 + 200)
        seg = TcpSegment(80, 40000, 7, 9, TcpFlags.ACK | TcpFlags.PSH, 500, payload,
                         TcpOptions(timestamps=(1, 2)))  # fmt: skip
        b.tcp.output.send_large(B, A, seg, 1448, lan.now)
        frames = b.frames_to_send()
        counted = {k: v - before.get(k, 0) for k, v in b.counters.items() if v != before.get(k)}
        results.append((frames, counted, seen))
    assert len(results[0][0]) == 45
    assert results[0] == results[1]
    assert results[0][1]["frames-out"] == 45
    assert len(results[0][2]) == (45 if observed else 0)
