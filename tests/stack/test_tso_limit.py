"""The largest TSO super-segment is the largest IPv4 packet: TSO_MAX_PAYLOAD
(65,535 less a 20-octet IPv4 header and a 60-octet TCP header) fits with
any TCP options, so a bulk sender's super-segments are 45 pieces of 1448
octets, as Linux's; one octet more is refused as a LocalProtocolError (no
struct.error) on both framing ways, nothing sent."""

from __future__ import annotations

from collections import Counter

import pytest

from synack.errors import LocalProtocolError
from synack.stack.host import TSO_MAX_PAYLOAD, SplitFrame
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment
from tests.stack.test_offload import complete, resolved_pair
from tests.stack.test_tcp_output import A, B
from tests.tcp.test_send_view import _tso_download

MSS = 1448
# Timestamps and three SACK blocks: 38 octets, padded to 40 (a 60-octet header).
LONGEST = TcpOptions(timestamps=(1, 2), sack_blocks=((10, 20), (30, 40), (50, 60)))


def test_the_limit_is_ipv4s() -> None:
    assert TSO_MAX_PAYLOAD == 0xFFFF - wip.MIN_HEADER_LEN - 60
    assert TSO_MAX_PAYLOAD // MSS == 45


@pytest.mark.parametrize("fast", [True, False])
def test_the_largest_super_segment_fills_ipv4s_largest_packet(fast: bool) -> None:
    lan, a, _b = resolved_pair()
    a.enable_offload(split=True, tso=True)
    a.tcp.output.fast = fast
    payload = bytes(i & 0xFF for i in range(TSO_MAX_PAYLOAD))
    seg = TcpSegment(40000, 80, 5, 6, TcpFlags.ACK, 100, payload, LONGEST)
    a.tcp.output.send_large(A, B, seg, MSS, lan.now)
    (frame,) = a.drain_frames()
    assert isinstance(frame, SplitFrame)
    raw = weth.parse(complete(frame)).payload
    assert len(raw) == int.from_bytes(raw[2:4]) == 0xFFFF  # the IPv4 total length
    ip = wip.parse(raw)
    tcp = wtcp.parse(ip.payload, ip.src, ip.dst)
    assert tcp.payload == payload and tcp.options == LONGEST


@pytest.mark.parametrize("fast", [True, False])
def test_one_octet_more_is_refused(fast: bool) -> None:
    lan, a, _b = resolved_pair()
    a.enable_offload(split=True, tso=True)
    a.tcp.output.fast = fast
    before, ident = Counter(a.counters), a.ipv4.ident
    seg = TcpSegment(40000, 80, 5, 6, TcpFlags.ACK, 100, b"x" * (TSO_MAX_PAYLOAD + 1), LONGEST)
    with pytest.raises(LocalProtocolError, match="exceeds IPv4"):
        a.tcp.output.send_large(A, B, seg, MSS, lan.now)
    assert a.drain_frames() == []
    assert Counter(a.counters) == before and a.ipv4.ident == ident


def test_a_bulk_send_goes_in_45_piece_super_segments() -> None:
    frames, _, _ = _tso_download(3_000_000)  # the data arrives whole (asserted there)
    sizes = []
    for f in frames:
        head = f[0]
        assert isinstance(head, bytes)
        payload = f[1] if len(f) > 1 else b""
        assert isinstance(payload, bytes)
        total = int.from_bytes(head[16:18])  # IPv4 total length
        assert total == len(head) - weth.HEADER_LEN + (len(payload) if len(f) > 1 else 0)
        assert total <= 0xFFFF
        sizes.append(len(payload))
    assert max(sizes) == 45 * MSS
    assert sizes.count(45 * MSS) >= 10
