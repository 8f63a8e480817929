"""HostDriver on a link without offloads gives the host whole frames (up to
JOIN_UP_TO_MTU), where it gave split ones: cheaper to make and write, and the
same octets on the link. Checked two ways: what the driver asks of the host
for each kind of link, and a whole exchange (handshake, small and MSS-sized
segments, a bulk send cut below TCP, the closes) framed both ways, compared
frame by frame and counter by counter."""

from __future__ import annotations

import asyncio
from collections import Counter
from ipaddress import IPv4Address

import pytest

from synack.adapters.driver import JOIN_UP_TO_MTU, HostDriver
from synack.stack.host import SplitFrame
from tests.stack.netfix import make_host, two_hosts

B = IPv4Address("10.213.0.2")


class _TapShaped:
    """What HostDriver asks of a TAP link (links/tap.TapLink), without a device."""

    def __init__(self, tso: bool) -> None:
        self.tso = tso
        self.vouched = None

    def send(self, frame: bytes) -> None:
        raise AssertionError("not sent in this test")

    def send_frames(self, frames: list[bytes | SplitFrame]) -> None:
        raise AssertionError("not sent in this test")

    def send_split(self, frame: SplitFrame) -> None:
        raise AssertionError("not sent in this test")

    def start(self, loop: asyncio.AbstractEventLoop, sink: object) -> None:
        raise AssertionError("not started in this test")

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("mtu", "tso", "split"),
    [(1500, False, False), (JOIN_UP_TO_MTU, False, False), (JOIN_UP_TO_MTU + 1, False, True),
     (65535, False, True), (1500, True, True), (65535, True, True)],
)  # fmt: skip
def test_the_driver_asks_for_split_frames_only_for_offloads_or_large_mtus(
    mtu: int, tso: bool, split: bool
) -> None:
    host = make_host(1, "10.213.0.1/24", mtu=mtu)
    loop = asyncio.new_event_loop()
    try:
        HostDriver(host, _TapShaped(tso), loop=loop)  # type: ignore[arg-type]
    finally:
        loop.close()
    assert host.split is split
    assert host.tso is tso
    assert host.tcp.output.gso > 0  # super-segments either way (cut below TCP, or by the link)


def _exchange(split: bool) -> tuple[list[bytes], Counter[str], bytes]:
    """A connection from a (framing as a TAP's driver set it: ``split`` or
    whole frames, super-segments on) to b: small writes, an MSS-sized one, a
    bulk one cut below TCP, then both close. a's frames as sent, its
    counters, and what b read."""
    lan, a, b = two_hosts()
    a.enable_offload(split=split, tso=False, gso=True)
    sent: list[bytes] = []
    drained = a.drain_frames

    def recording() -> list[bytes | SplitFrame]:
        out = drained()
        sent.extend(f if type(f) is bytes else bytes(f) for f in out)
        kinds.update(type(f).__name__ for f in out)
        return out

    kinds: Counter[str] = Counter()
    a.drain_frames = recording  # type: ignore[method-assign]
    listener = b.tcp_listen(80)
    s = a.tcp_connect((B, 80), lan.now)
    lan.run()
    peer = listener.accept()
    assert peer is not None
    got = bytearray()
    writes = [
        b"x" * 100,
        bytes(range(256)) * 6,
        bytes(1448),
        bytes(i % 251 for i in range(200_000)),
    ]
    for data in writes:
        view = memoryview(data)
        while view:
            n = s.send(view, lan.now)
            view = view[n:]
            lan.run(until=lan.now + 0.05)
            got += peer.receive(1 << 20, lan.now)
    s.close(lan.now)
    lan.run(until=lan.now + 0.5)
    got += peer.receive(1 << 20, lan.now)
    peer.close(lan.now)
    lan.run(until=lan.now + 5)
    assert bytes(got) == b"".join(writes)
    # Each way made what it was asked for (the comparison below means something).
    if split:
        assert kinds["SplitFrame"] > 0
    else:
        assert kinds["SplitFrame"] == 0
    assert a.tcp.output.large_out > 0  # the bulk write went as super-segments, cut
    return sent, Counter(a.counters), bytes(got)


def test_whole_frames_are_the_split_frames_octet_for_octet() -> None:
    split_frames, split_counts, split_got = _exchange(True)
    whole_frames, whole_counts, whole_got = _exchange(False)
    assert len(whole_frames) > 140
    assert whole_frames == split_frames
    assert whole_counts == split_counts
    assert whole_got == split_got
