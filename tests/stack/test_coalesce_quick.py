"""coalesce()'s first look (stack/offload.py): a flush with no two
neighbours that could join (contiguous and fitting one segment) is returned
as it is, without the joining pass. Random flushes, super-segments among
them, give exactly what the joining pass gives."""

from __future__ import annotations

import random

import pytest

from synack.stack.offload import TSO_MAX_PAYLOAD, _join_runs, coalesce
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment

_TS = TcpOptions(timestamps=(5, 6))


def _flush(rng: random.Random) -> list[TcpSegment]:
    seq = rng.choice([0, 0xFFFFFFFF - 70_000])  # some wrap
    out = []
    for _ in range(rng.randint(0, 6)):
        n = rng.choice([0, 1448, 44 * 1448, 63_712, rng.randint(1, 64_000)])
        flags = rng.choice([TcpFlags.ACK, TcpFlags.ACK | TcpFlags.PSH, TcpFlags.ACK])
        if n == 0 and rng.random() < 0.5:
            flags |= TcpFlags.FIN
        opts = _TS if rng.random() < 0.9 else TcpOptions(timestamps=(7, 7))
        out.append(TcpSegment(1, 2, seq, 77, flags, 500, rng.randbytes(n), opts))
        seq = (seq + n + rng.choice([0, 0, 0, 100])) & 0xFFFFFFFF
    return out


@pytest.mark.parametrize("seed", range(8))
def test_coalesce_gives_what_the_joining_pass_gives(seed: int) -> None:
    rng = random.Random(seed)
    quick = 0
    for _ in range(300):
        segs = _flush(rng)
        got = coalesce(segs)
        assert got == _join_runs(segs)
        quick += got is segs
    assert quick > 20  # the first look decided many flushes


def test_a_flush_of_super_segments_is_kept_as_it_is() -> None:
    segs = [
        TcpSegment(1, 2, i * 63_712, 77, TcpFlags.ACK, 500, bytes(63_712), _TS) for i in range(4)
    ]
    assert coalesce(segs) is segs
    assert TSO_MAX_PAYLOAD < 2 * 63_712
