"""TapDevice.write_frames writes a TSO super-segment itself (its virtio
header from a cache) instead of through write_split: the same octets, in
the same order, as write_split and write give frame by frame, and as the
virtio header made afresh for each frame; refusals counted alike. The
device's descriptor is a regular file here, so the octets can be read back
(the kernel's side of a TAP is tested in tests/interop)."""

from __future__ import annotations

import os
import random
from pathlib import Path

from synack.links.tap import TapDevice
from synack.stack.host import SplitFrame
from synack.wire import tcp as wtcp
from synack.wire import virtio
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment
from tests.stack.test_offload import resolved_pair
from tests.stack.test_tcp_output import A, B


def _device(fd: int, mtu: int) -> TapDevice:
    dev = object.__new__(TapDevice)  # no /dev/net/tun: the writes go to ``fd``
    dev.fd, dev.name, dev.mtu, dev.offload = fd, "file", mtu, True
    dev.frames_in = dev.frames_out = dev.write_errors = 0
    return dev


def _frames() -> list[bytes | SplitFrame]:
    """Super-segments (both option shapes, several MSS and sizes, the cut by
    MTU too), small split frames with and without a partial checksum, whole frames."""
    lan, a, _b = resolved_pair()
    a.enable_offload(split=True, tso=True)
    rng = random.Random(5)
    for i in range(40):
        opts = TcpOptions(timestamps=(i, 7)) if i % 3 else TcpOptions()
        mss = rng.choice([536, 1448, 1460, 9000])
        n = rng.choice([100, 1448, 3 * mss + 5, 45 * 1448, rng.randint(1, 60_000)])
        seg = TcpSegment(40000, 80, i * 99_991, 5, TcpFlags.ACK, 700, rng.randbytes(n), opts)
        if n > mss:
            a.tcp.output.send_large(A, B, seg, mss, lan.now)
        else:
            a.tcp.output.send(A, B, seg, lan.now)
    out: list[bytes | SplitFrame] = list(a.drain_frames())
    out.append(SplitFrame(out[0].head, b"z" * 70_000, 34, wtcp.CHECKSUM_AT, 0)  # type: ignore[union-attr]
               if isinstance(out[0], SplitFrame) else b"")  # fmt: skip
    out += [b"\x00" * 60, SplitFrame(b"h" * 54, b"p" * 9, 0, 0), SplitFrame(b"u" * 42, b"q", 34, 6)]
    return [f for f in out if f]


def _expected(f: bytes | SplitFrame, mtu: int) -> bytes:
    """The frame's octets as written, the virtio header made afresh."""
    if not isinstance(f, SplitFrame):
        return virtio.NO_OFFLOAD + f
    if not f.csum_start:
        return virtio.NO_OFFLOAD + f.head + bytes(f.payload)
    if len(f.head) + len(f.payload) > mtu + 14 and f.csum_offset == wtcp.CHECKSUM_AT:
        thl = (f.head[f.csum_start + 12] >> 4) * 4
        seg_mtu = f.csum_start - 14 + thl + f.mss if f.mss else mtu
        vnet = virtio.tso_tcpv4(f.csum_start, thl, min(seg_mtu, mtu))
    else:
        vnet = virtio.needs_csum(f.csum_start, f.csum_offset)
    return vnet + f.head + bytes(f.payload)


def test_write_frames_writes_what_write_split_does(tmp_path: Path) -> None:
    frames = _frames()
    assert sum(isinstance(f, SplitFrame) and len(f.payload) > 1500 for f in frames) >= 20
    for mtu in (1500, 9000, 1500):  # the cache keyed by MTU too
        paths = [tmp_path / f"{name}-{mtu}" for name in ("batch", "one")]
        fds = [os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) for p in paths]
        try:
            batch, one = _device(fds[0], mtu), _device(fds[1], mtu)
            batch.write_frames(frames)
            for f in frames:
                if isinstance(f, SplitFrame):
                    one.write_split(f.head, f.payload, f.csum_start, f.csum_offset, f.mss)
                else:
                    one.write(f)
        finally:
            for fd in fds:
                os.close(fd)
        got = paths[0].read_bytes()
        assert got == paths[1].read_bytes()
        assert got == b"".join(_expected(f, mtu) for f in frames)
        assert batch.frames_out == one.frames_out == len(frames)


def test_refused_super_segments_are_counted_as_write_split_counts_them() -> None:
    frames = [f for f in _frames() if isinstance(f, SplitFrame) and len(f.payload) > 1500][:3]
    counts = []
    for batch in (True, False):
        r, w = os.pipe()
        try:
            os.set_blocking(w, False)
            try:
                while True:  # a full queue: every write is refused (EAGAIN)
                    os.write(w, b"f" * 65536)
            except BlockingIOError:
                pass
            dev = _device(w, 1500)
            if batch:
                dev.write_frames(list(frames))
            else:
                for f in frames:
                    assert not dev.write_split(
                        f.head, f.payload, f.csum_start, f.csum_offset, f.mss
                    )
            counts.append((dev.write_errors, dev.frames_out))
        finally:
            os.close(r)
            os.close(w)
    assert counts == [(3, 0), (3, 0)]
