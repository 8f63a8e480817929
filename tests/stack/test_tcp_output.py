"""TcpOutput's one-pack framing of a segment (``TcpOutput._head``) puts on the
link exactly the frame the general ways make (``wire.tcp.build`` then
``Ipv4.send``, or ``_send_split`` for a link that takes split frames, with or
without checksum offload): same octets, same split, same counters, for every
option shape and size a connection sends."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address

import pytest

from synack.errors import LocalProtocolError
from synack.stack.host import Host, SplitFrame
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment
from tests.stack.test_offload import complete, resolved_pair

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")
F = TcpFlags

OPTIONS = [
    TcpOptions(),
    TcpOptions(timestamps=(123456789, 4000000000)),
    TcpOptions(timestamps=(0, 0)),
    TcpOptions(timestamps=(1, 2), sack_blocks=((10, 20), (30, 40), (50, 60))),
    TcpOptions(sack_blocks=((10, 20),)),
    TcpOptions(mss=1460, wscale=7, sack_permitted=True, timestamps=(5, 0)),
    TcpOptions(mss=1460, sack_permitted=True),
    TcpOptions(timestamps=(7, 8), fastopen=b"12345678"),
    TcpOptions(timestamps=(7, 8), unknown=((77, b"ab"),)),
]
SIZES = [0, 1, 2, 99, 100, 1000, 1448, 1460, 1461, 3000]


def _segments() -> list[TcpSegment]:
    out = []
    for i, opts in enumerate(OPTIONS):
        for j, n in enumerate(SIZES):
            flags = [F.ACK, F.ACK | F.PSH, F.ACK | F.FIN, F.ACK | F.URG, F.RST][(i + j) % 5]
            out.append(
                TcpSegment(
                    40000 + i,
                    80,
                    (0xFFFFFF00 + 97 * j) & 0xFFFFFFFF,
                    (12345 * i) & 0xFFFFFFFF,
                    flags,
                    (j * 4099) & 0xFFFF,
                    bytes((k * 7 + j) & 0xFF for k in range(n)),
                    opts,
                    5 if flags & F.URG else 0,
                )
            )
    return out


def _frames(host: Host, fast: bool, segs: list[TcpSegment]) -> tuple[list[object], Counter[str]]:
    output = host.tcp.output
    output.fast = fast
    host.ipv4.ident = 1000
    before = Counter(host.counters)
    for seg in segs:
        output.send(A, B, seg, host.tcp.now)
    frames: list[object] = []
    for f in host.drain_frames():
        if isinstance(f, SplitFrame):
            frames.append(("split", f.head, f.payload, f.csum_start, f.csum_offset, f.mss))
        else:
            frames.append(("whole", f))
    return frames, Counter(host.counters) - before


@pytest.mark.parametrize("link", ["plain", "split", "tso"])
def test_one_pack_frames_equal_the_general_paths(link: str) -> None:
    lan, a, _b = resolved_pair()
    a.tcp.now = lan.now
    a.enable_offload(split=link != "plain", tso=link == "tso")
    segs = _segments()
    fast, fast_counts = _frames(a, True, segs)
    slow, slow_counts = _frames(a, False, segs)
    assert len(fast) == len(slow) >= len(segs)  # (over the MTU: fragments, or TSO)
    assert fast == slow
    assert fast_counts == slow_counts
    taken = [f for f in fast if f[0] == "split" and f[3]]  # type: ignore[index]
    if link == "tso":
        # Completed as the kernel does, each is a valid segment.
        assert len(taken) == len(fast)
        for _, head, payload, start, offset, mss in taken:  # type: ignore[misc]
            ip = wip.parse(
                weth.parse(complete(SplitFrame(head, payload, start, offset, mss))).payload
            )
            assert wtcp.parse(ip.payload, ip.src, ip.dst).dst_port == 80
    else:
        assert not taken


def test_one_pack_refuses_what_the_general_path_refuses() -> None:
    lan, a, _b = resolved_pair()
    a.tcp.now = lan.now
    bad = TcpSegment(40000, 80, 1 << 32, 0, F.ACK, 0, b"x", TcpOptions(timestamps=(1, 2)))
    for fast in (True, False):
        a.tcp.output.fast = fast
        with pytest.raises(LocalProtocolError):
            a.tcp.output.send(A, B, bad, lan.now)
