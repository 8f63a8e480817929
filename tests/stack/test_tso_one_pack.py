"""A TSO super-segment framed in one pack (``TcpOutput.send_large`` through
``_head`` with the IPv4 limit) is the frame ``_send_split`` builds with
wire/tcp's builder: same head octets, payload, checksum start and offset,
MSS for the link, counters and identification, for each option shape and
super-segment size, up to IPv4's largest packet."""

from __future__ import annotations

from collections import Counter

from synack.stack.host import SplitFrame
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.tcp import TcpFlags, TcpSegment
from tests.stack.test_offload import complete, resolved_pair
from tests.stack.test_tcp_output import OPTIONS, A, B

MSS = 1448
SIZES = [MSS + 1, 2 * MSS, 44 * MSS, 44 * MSS + 17, 45 * MSS, 65_535 - 20 - 60]


def _frames(fast: bool) -> tuple[list[tuple[object, ...]], Counter[str], int]:
    lan, a, _b = resolved_pair()
    a.enable_offload(split=True, tso=True)
    output = a.tcp.output
    output.fast = fast
    a.ipv4.ident = 65_530  # wraps
    before = Counter(a.counters)
    for i, opts in enumerate(OPTIONS):
        for j, n in enumerate(SIZES):
            flags = [TcpFlags.ACK, TcpFlags.ACK | TcpFlags.PSH, TcpFlags.ACK | TcpFlags.FIN][
                (i + j) % 3
            ]
            seg = TcpSegment(
                40000 + i, 80, (0xFFFF0000 + 977 * j) & 0xFFFFFFFF, 99 * i, flags,
                (j * 4099) & 0xFFFF, bytes((k * 7 + j) & 0xFF for k in range(n)), opts,
            )  # fmt: skip
            output.send_large(A, B, seg, MSS, lan.now)
    out = []
    for f in a.drain_frames():
        assert isinstance(f, SplitFrame)
        out.append((f.head, f.payload, f.csum_start, f.csum_offset, f.mss))
    return out, Counter(a.counters) - before, a.ipv4.ident


def test_tso_one_pack_equals_the_builder() -> None:
    fast = _frames(True)
    slow = _frames(False)
    assert fast == slow
    frames, counts, _ = fast
    # Each went whole to the link (over the MTU: TSO), and completes as a valid segment.
    over = [f for f in frames if 20 + len(f[0]) - 34 + len(f[1]) > 1500]  # type: ignore[arg-type]
    assert counts["tcp-tso-out"] == len(over) >= len(frames) - 2
    assert counts["tcp-out"] == len(frames) == len(OPTIONS) * len(SIZES)
    for head, payload, start, offset, mss in frames:  # type: ignore[misc]
        frame = complete(SplitFrame(head, payload, start, offset, mss))  # type: ignore[arg-type]
        ip = wip.parse(weth.parse(frame).payload)
        assert wtcp.parse(ip.payload, ip.src, ip.dst).payload == payload
