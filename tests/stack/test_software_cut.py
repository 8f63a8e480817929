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
