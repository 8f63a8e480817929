"""Framing codec speed: encode + decode of 100-byte frames, frames per second.

synack's sans-IO codec (``encode_many`` + ``FrameDecoder`` fed 64 KiB reads, and
the ``get_buffer``/``buffer_updated`` path a BufferedProtocol uses) against the
plain struct-based loop most programs write (bytearray buffer, ``del buf[:n]``).

What the ratio means: frames per second of synack's encode + decode over the
plain loop's, in one process, best of 5 each, interleaved.

    .venv/bin/python bench/framing_bench.py
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Figure
from synack.core.framing import FrameDecoder, encode, encode_many

N = 500_000
SIZE = 100
READ = 65_536
_H = struct.Struct(">I")


def plain_encode(payloads: list[bytes]) -> bytes:
    out = bytearray()
    for p in payloads:
        out += struct.pack(">I", len(p))
        out += p
    return bytes(out)


def plain_decode(stream: bytes) -> int:
    buf = bytearray()
    count = 0
    for i in range(0, len(stream), READ):
        buf += stream[i : i + READ]
        while len(buf) >= 4:
            (n,) = struct.unpack(">I", buf[:4])
            if len(buf) < 4 + n:
                break
            frame = bytes(buf[4 : 4 + n])
            del buf[: 4 + n]
            count += frame is not None
    return count


def synack_decode(stream: bytes) -> int:
    dec = FrameDecoder()
    count = 0
    mv = memoryview(stream)
    for i in range(0, len(stream), READ):
        dec.receive_data(mv[i : i + READ])
        count += len(dec.frames())
    return count


def synack_decode_buffered(stream: bytes) -> int:
    dec = FrameDecoder()
    count = 0
    mv = memoryview(stream)
    pos = 0
    while pos < len(stream):
        buf = dec.get_buffer(-1)
        k = min(len(buf), READ, len(stream) - pos)
        buf[:k] = mv[pos : pos + k]  # what recv_into does in the kernel
        dec.buffer_updated(k)
        pos += k
        count += len(dec.frames())
    return count


def synack_encode_each(payloads: list[bytes]) -> bytes:
    return b"".join([encode(p) for p in payloads])


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def figures(quick: bool) -> list[Figure]:
    n = N // 5 if quick else N
    payloads = [bytes([i % 251]) * SIZE for i in range(n)]
    stream = encode_many(payloads)
    mine: list[float] = []
    plain: list[float] = []
    for _ in range(3 if quick else 5):  # interleaved rounds
        mine.append(
            best_of(lambda: encode_many(payloads), 3) + best_of(lambda: synack_decode(stream), 3)
        )
        plain.append(
            best_of(lambda: plain_encode(payloads), 3) + best_of(lambda: plain_decode(stream), 3)
        )
    return [
        Figure(
            bench="framing_bench",
            name=f"framing encode+decode, {SIZE}-byte frames, 64 KiB reads",
            value=n / min(mine),
            unit="frames/s",
            anchor="plain struct loop (bytearray, del buf[:n])",
            anchor_value=n / min(plain),
            ratios=[p / m for m, p in zip(mine, plain, strict=True)],
            command=".venv/bin/python bench/framing_bench.py",
            note="one process, best of each round",
        )
    ]


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None).parse_args()
    payloads = [bytes([i % 251]) * SIZE for i in range(N)]
    stream = encode_many(payloads)
    assert stream == plain_encode(payloads) == synack_encode_each(payloads)
    assert synack_decode(stream) == plain_decode(stream) == synack_decode_buffered(stream) == N

    rows = [
        ("encode: plain struct loop", best_of(lambda: plain_encode(payloads))),
        ("encode: synack encode() per frame", best_of(lambda: synack_encode_each(payloads))),
        ("encode: synack encode_many()", best_of(lambda: encode_many(payloads))),
        ("decode: plain struct loop", best_of(lambda: plain_decode(stream))),
        ("decode: synack receive_data()", best_of(lambda: synack_decode(stream))),
        (
            "decode: synack get_buffer()/buffer_updated()",
            best_of(lambda: synack_decode_buffered(stream)),
        ),
    ]
    t = dict(rows)
    rows.append(
        ("encode+decode: plain", t["encode: plain struct loop"] + t["decode: plain struct loop"])
    )
    rows.append(
        (
            "encode+decode: synack",
            t["encode: synack encode_many()"] + t["decode: synack receive_data()"],
        )
    )
    print(f"framing, {N:,} frames of {SIZE} bytes, {READ // 1024} KiB reads (best of 5)")
    for name, secs in rows:
        print(f"  {name:48s} {N / secs / 1e6:6.2f} M frames/s")
    ratio = rows[-2][1] / rows[-1][1]
    print(f"  synack / plain (encode+decode): {ratio:.2f}x")
    print(
        f"  decode only: {t['decode: plain struct loop'] / t['decode: synack receive_data()']:.2f}x, "
        f"encode only: {t['encode: plain struct loop'] / t['encode: synack encode_many()']:.2f}x"
    )


if __name__ == "__main__":
    main()
