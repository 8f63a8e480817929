"""BIG TCP super-segments (IPv4 packets over 65,535 octets, total length 0)
on a link that offers them (``Host.enable_offload(tso_max=...)``), and only
there: framed alike by both framing ways, every other packet with RFC 791's
total length, refused on a link that did not ask, and a bulk transfer with a
lost super-segment resent right (the receiver gets each frame cut as the
kernel's GSO would cut it)."""

from __future__ import annotations

import random
import struct

import pytest

from synack.errors import LocalProtocolError
from synack.links.tap import big_tso_max
from synack.stack.host import TSO_MAX_PAYLOAD, SplitFrame
from synack.stack.offload import BIG_TSO_MAX_TOTAL, total_length_field, tso_max_payload
from synack.tcp.states import State
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.checksum import finish, ones_sum
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment
from tests.stack.netfix import two_hosts
from tests.stack.test_fast_paths import B
from tests.stack.test_offload import complete, resolved_pair
from tests.stack.test_tcp_output import A

MSS = 1448
TS = TcpOptions(timestamps=(1, 2))


def _frame(big: bool, fast: bool, size: int) -> SplitFrame:
    lan, a, _b = resolved_pair()
    a.enable_offload(split=True, tso=True, tso_max=BIG_TSO_MAX_TOTAL if big else 0)
    a.tcp.output.fast = fast
    payload = bytes(i * 7 & 0xFF for i in range(size))
    seg = TcpSegment(40000, 80, 5, 6, TcpFlags.ACK | TcpFlags.PSH, 100, payload, TS)
    a.tcp.output.send_large(A, B, seg, MSS, lan.now)
    (frame,) = a.drain_frames()
    assert isinstance(frame, SplitFrame)
    return frame


def test_the_bounds() -> None:
    assert tso_max_payload(BIG_TSO_MAX_TOTAL) // MSS == 180
    assert tso_max_payload(0xFFFF) == TSO_MAX_PAYLOAD
    assert total_length_field(0xFFFF) == 0xFFFF and total_length_field(0x10000) == 0
    assert big_tso_max("6.2.16") == 0 and big_tso_max("5.15.0-91-generic") == 0
    assert big_tso_max("6.3.0") == BIG_TSO_MAX_TOTAL == big_tso_max("6.18.44-fc-v1252")
    assert big_tso_max("weird") == 0


@pytest.mark.parametrize("size", [100_000, tso_max_payload(BIG_TSO_MAX_TOTAL)])
def test_a_big_super_segment_has_total_length_zero_on_both_framing_ways(size: int) -> None:
    fast, slow = _frame(True, True, size), _frame(True, False, size)
    assert bytes(fast) == bytes(slow)
    raw = complete(fast)
    ip = raw[weth.HEADER_LEN : weth.HEADER_LEN + 20]
    assert int.from_bytes(ip[2:4]) == 0  # BIG TCP: the length is the frame's
    assert finish(ones_sum(ip)) == 0  # the header checksum holds, over the 0
    assert len(raw) - weth.HEADER_LEN == 20 + 32 + size
    assert raw[-size:] == bytes(i * 7 & 0xFF for i in range(size))


def test_a_normal_super_segment_on_a_big_link_keeps_its_length() -> None:
    size = 0xFFFF - 20 - 32  # a 65,535-octet packet with NOP NOP TS
    for fast in (True, False):
        raw = complete(_frame(True, fast, size))
        assert int.from_bytes(raw[16:18]) == 0xFFFF == len(raw) - weth.HEADER_LEN
        ip = wip.parse(raw[weth.HEADER_LEN :])
        assert wtcp.parse(ip.payload, ip.src, ip.dst).payload == raw[-size:]


@pytest.mark.parametrize("fast", [True, False])
def test_a_link_that_did_not_ask_refuses_one(fast: bool) -> None:
    with pytest.raises(LocalProtocolError, match=r"exceeds.*65535"):
        _frame(False, fast, 100_000)


def test_tso_max_needs_tso() -> None:
    _lan, a, _b = resolved_pair()
    with pytest.raises(ValueError, match="tso_max"):
        a.enable_offload(split=True, tso=False, tso_max=BIG_TSO_MAX_TOTAL)
    with pytest.raises(ValueError, match="tso_max"):
        a.enable_offload(split=True, tso=True, tso_max=1000)
    a.enable_offload(split=True, tso=True, tso_max=BIG_TSO_MAX_TOTAL)
    assert a.tcp.output.gso == tso_max_payload(BIG_TSO_MAX_TOTAL)
    a.enable_offload(split=True, tso=True)  # back to the default: 65,535
    assert a.tcp.output.gso == TSO_MAX_PAYLOAD and a.tcp.output.ip_max == 0xFFFF


def gso_cut(frame: SplitFrame) -> list[bytes]:
    """What the kernel does with a TSO frame (tcp_gso_segment): ``mss``-octet
    pieces, each with its own total length, identification, sequence number
    and both checksums; PSH and FIN on the last piece only. A frame no larger
    than one piece goes as it is, completed."""
    raw = complete(frame)
    thl = (raw[46] >> 4) * 4
    head_len = 34 + thl
    payload = raw[head_len:]
    mss = frame.mss or MSS
    if len(payload) <= mss:
        return [raw]
    ident = int.from_bytes(raw[18:20])
    seq = int.from_bytes(raw[38:42])
    pieces = []
    for n, off in enumerate(range(0, len(payload), mss)):
        piece = payload[off : off + mss]
        last = off + mss >= len(payload)
        ip = bytearray(raw[14:34])
        ip[2:4] = (20 + thl + len(piece)).to_bytes(2)
        ip[4:6] = ((ident + n) & 0xFFFF).to_bytes(2)
        ip[10:12] = b"\0\0"
        ip[10:12] = finish(ones_sum(ip)).to_bytes(2)
        th = bytearray(raw[34:head_len])
        th[4:8] = ((seq + off) & 0xFFFFFFFF).to_bytes(4)
        if not last:
            th[13] &= ~(int(TcpFlags.PSH) | int(TcpFlags.FIN)) & 0xFF
        th[16:18] = b"\0\0"
        pseudo = ip[12:20] + struct.pack("!HH", 6, thl + len(piece))
        th[16:18] = finish(ones_sum(bytes(pseudo + th) + piece)).to_bytes(2)
        pieces.append(raw[:14] + bytes(ip) + bytes(th) + piece)
    return pieces


def _download(big: bool, lose: set[int]) -> tuple[int, int, int]:
    """B sends 4 MB to A over a TSO link (BIG TCP or not), the frames cut as
    the kernel would; B's frames whose index is in ``lose`` are lost. Returns
    the largest payload of one of B's frames, how many carried total length
    0, and B's retransmissions."""
    lan, a, b = two_hosts()
    b.enable_offload(split=True, tso=True, tso_max=BIG_TSO_MAX_TOTAL if big else 0)
    listener = b.tcp_listen(80)
    client = a.tcp_connect((B, 80), lan.now)
    lan.run()
    server = listener.accept()
    assert server is not None and server.conn.state is State.ESTABLISHED
    size = 4_000_000
    data = random.Random(11).randbytes(size)
    sent, got = 0, bytearray()
    largest = zeros = index = 0
    now = 1.0
    for _ in range(5_000):
        if sent < size:
            sent += server.send(memoryview(data)[sent : sent + 1_000_000], now)
        out = False
        for f in b.drain_frames():
            out = True
            index += 1
            if isinstance(f, SplitFrame):
                largest = max(largest, len(f.payload))
                zeros += f.head[16:18] == b"\0\0"
                pieces = gso_cut(f) if f.csum_start else [bytes(f)]
            else:
                pieces = [bytes(f)]
            if index in lose:
                continue
            for p in pieces:
                a.receive_frame(p, now)
        got += client.receive(1 << 22, now)
        now += 0.001
        acks = a.frames_to_send()
        b.receive_frames(acks, now)
        if len(got) == size:
            break
        if not out and not acks:
            now = max(now, min(t for t in (b.get_timer(), a.get_timer(), now + 0.2) if t))
            for h in (a, b):
                h.handle_timer(now)
    assert bytes(got) == data
    return largest, zeros, server.conn.stats_counters.retransmissions


def test_a_bulk_send_on_a_big_link_sends_big_super_segments() -> None:
    largest, zeros, resent = _download(True, set())
    assert 65_455 < largest <= tso_max_payload(BIG_TSO_MAX_TOTAL) and largest % MSS == 0
    assert zeros > 0 and resent == 0


def test_a_link_without_the_setting_never_sees_total_length_zero() -> None:
    largest, zeros, _ = _download(False, set())
    assert largest == 45 * MSS and zeros == 0


@pytest.mark.parametrize("lose", [{12}, {12, 13}, {15, 30, 31}])
def test_a_lost_big_super_segment_is_resent_right(lose: set[int]) -> None:
    largest, zeros, resent = _download(True, lose)  # the data arrives whole (asserted there)
    assert largest > 65_455 and zeros > 0 and resent > 0
