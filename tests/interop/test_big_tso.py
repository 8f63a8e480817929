"""BIG TCP super-segments to the Linux kernel over a real TAP in a namespace:
a kernel client downloads 8 MiB sha256-exact while synack hands the TAP IPv4
TSO packets of up to 256 KiB (total length 0), also when some of them are
lost on the way out (resent right); with the link's bound at 65,535 none has
total length 0. Needs Linux 6.3+ (BIG TCP for IPv4): skipped elsewhere."""

from __future__ import annotations

import asyncio
import hashlib
import random

import pytest

from synack.adapters.driver import HostDriver
from synack.links.tap import big_tso_max
from synack.stack.host import SplitFrame
from synack.stack.offload import tso_max_payload
from tests.interop.nsnet import NsNet
from tests.interop.test_kernel_tcp import KERNEL_DOWNLOAD, run
from tests.support import requires_root_tun

pytestmark = [
    requires_root_tun,
    pytest.mark.root,
    pytest.mark.skipif(not big_tso_max(), reason="kernel older than 6.3: no BIG TCP for IPv4"),
]

SIZE = 8 << 20
PAYLOAD = random.Random(12).randbytes(SIZE)


async def _send_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(PAYLOAD)
    await writer.drain()
    writer.close()


def _watch(
    net: NsNet, lose: set[int]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[tuple[int, int]]]:
    """(payload length, IPv4 total length field) of each super-segment the
    link writes; (sequence number, payload length) of each TCP frame written
    after the first loss, and of each super-segment lost: the ones whose index
    is in ``lose`` are not written."""
    seen: list[tuple[int, int]] = []
    seqs: list[tuple[int, int]] = []
    lost: list[tuple[int, int]] = []
    device = net.tap
    write_frames = device.write_frames

    def watched(frames: list[bytes | SplitFrame]) -> None:
        kept: list[bytes | SplitFrame] = []
        for f in frames:
            head = f.head if isinstance(f, SplitFrame) else f
            size = len(f.payload) if isinstance(f, SplitFrame) else 0
            seq = int.from_bytes(head[38:42])
            if isinstance(f, SplitFrame) and f.csum_start and size > f.mss:
                seen.append((size, int.from_bytes(head[16:18])))
                if len(seen) in lose:
                    lost.append((seq, size))
                    continue
            if lost and head[23] == 6:  # TCP
                if not isinstance(f, SplitFrame):
                    size = len(f) - 34 - (f[46] >> 4) * 4
                seqs.append((seq, size))
            kept.append(f)
        write_frames(kept)

    device.write_frames = watched  # type: ignore[method-assign]
    return seen, seqs, lost


@pytest.mark.parametrize("lose", [set(), {20, 21, 40}], ids=["clean", "lossy"])
def test_kernel_client_downloads_big_super_segments_exactly(lose: set[int]) -> None:
    async def main(net: NsNet, d: HostDriver) -> None:
        assert net.tap.tso_max == big_tso_max()
        seen, seqs, lost = _watch(net, lose)
        await d.start_server(_send_all, "0.0.0.0", 9)
        out = await net.py(KERNEL_DOWNLOAD, net.synack_ip, "9")
        assert out.split() == [str(SIZE), hashlib.sha256(PAYLOAD).hexdigest()]
        big = [n for n, tot in seen if tot == 0]
        assert big and max(big) > 65_455 and max(big) <= tso_max_payload(net.tap.tso_max)
        # Every other super-segment keeps RFC 791's total length.
        assert all(tot == n + 52 for n, tot in seen if tot)
        assert d.host.counters["tcp-tso-out"] > 0
        assert len(lost) == len(lose)  # the lost ones were super-segments ...
        for seq, size in lost:  # ... and every octet of theirs went again
            for at in range(seq, seq + size, 1448):
                assert any((at - s) % (1 << 32) < n for s, n in seqs), (seq, size, at)

    run(main, offload=True)


def test_a_link_bounded_at_65535_never_writes_total_length_zero() -> None:
    async def main(net: NsNet, d: HostDriver) -> None:
        d.host.enable_offload(split=True, tso=True)  # the link's bound: 65,535
        seen, _, _ = _watch(net, set())
        await d.start_server(_send_all, "0.0.0.0", 9)
        out = await net.py(KERNEL_DOWNLOAD, net.synack_ip, "9")
        assert out.split() == [str(SIZE), hashlib.sha256(PAYLOAD).hexdigest()]
        assert seen and all(tot == n + 52 for n, tot in seen)
        assert max(n for n, _ in seen) == 45 * 1448

    run(main, offload=True)
