"""Attacks on the frame decoder (issue 14 item 6), kept as tests."""

from __future__ import annotations

import tracemalloc

from synack.core.framing import FrameDecoder, encode


def test_a_header_announcing_64_kib_allocates_nothing_for_the_body() -> None:
    # Attack: a 4-byte header announcing 65,536 bytes, then silence.
    dec = FrameDecoder()
    dec.receive_data((65536).to_bytes(4, "big"))
    # Guarantee: only what arrived is held.
    assert dec.pending == 4 and dec.allocated == 0
    dec.receive_data(b"x" * 100)
    assert dec.pending == 104 and dec.allocated == 100


def test_buffered_reads_allocate_at_most_twice_what_arrived() -> None:
    payload = bytes(range(256)) * 256  # 65,536 bytes
    stream = encode(payload)
    dec = FrameDecoder()
    pos = 0
    worst = 0.0
    while pos < len(stream):
        buf = dec.get_buffer(-1)
        n = min(len(buf), 3000, len(stream) - pos)
        buf[:n] = stream[pos : pos + n]
        del buf
        dec.buffer_updated(n)
        pos += n
        if dec.pending > 4:
            worst = max(worst, dec.allocated / (dec.pending - 4))
    assert dec.frames() == [payload]
    assert 1.0 <= worst <= 2.0


def test_two_thousand_stalled_headers_cost_kilobytes_not_megabytes() -> None:
    # Attack size: 2,000 connections, each a 4-byte header announcing 64 KiB.
    header = (65536).to_bytes(4, "big")
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        decoders = []
        for _ in range(2000):
            dec = FrameDecoder()
            dec.receive_data(header)
            decoders.append(dec)
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    # Announced: 2,000 x 64 KiB = 131 MB. Guarantee: under 1 MB in all
    # (the decoders themselves, a few hundred bytes each).
    assert used < 1_000_000, used
    assert all(d.pending == 4 for d in decoders)
