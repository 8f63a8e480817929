"""The host's per-frame fast paths (stack/ipv4.py receive_tcp_frame, the
int-keyed demux and output of stack/tcp_demux.py) do exactly what the slow
paths do: the same frames out, the same counters, the same bytes delivered,
for good frames and for hostile ones."""

from __future__ import annotations

import random
from collections import Counter
from ipaddress import IPv4Address

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from synack.core.sim import LinkParams
from synack.links.lan import Lan
from synack.stack import events as ev
from synack.stack.host import Host, TcpStream
from synack.tcp.states import State
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.checksum import internet_checksum
from synack.wire.tcp import TcpFlags, TcpSegment
from tests.stack.netfix import drained, mac, make_host, two_hosts

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")


def _set_fast(host: Host, on: bool) -> None:
    host.ipv4.set_fast_path(on)
    host.tcp.output.fast = on


def _run_exchange(
    fast: bool, params: LinkParams, *, split: bool = False, gso: bool | None = None
) -> tuple[list[ev.FrameTrace], list[Counter[str]], bytes, bytes, int]:
    """A connection over a shaped LAN: 60 kB each way, both sides close; the
    last item: how many segments TCP handed over larger than an MSS."""
    lan = Lan(seed=5, params=params)
    sw, _ = lan.switch()
    a = make_host(1, "10.213.0.1/24")
    b = make_host(2, "10.213.0.2/24")
    frames: list[ev.FrameTrace] = []
    for h in (a, b):
        _set_fast(h, fast)
        h.enable_offload(split=split, gso=gso)
        h.observers.append(lambda r: frames.append(r) if isinstance(r, ev.FrameTrace) else None)
        lan.attach_host(h, sw)
    a.start(0.0)
    b.start(0.0)
    listener = b.tcp_listen(9)
    client = a.tcp_connect((B, 9), lan.now)
    assert lan.run_until(lambda: bool(listener.queue), timeout=30)
    server = listener.accept()
    assert server is not None
    up = random.Random(1).randbytes(60_000)
    down = random.Random(2).randbytes(60_000)
    got_up, got_down = bytearray(), bytearray()
    sent_up = sent_down = 0
    for _ in range(20_000):
        if sent_up < len(up):
            sent_up += client.send(up[sent_up : sent_up + 8192], lan.now)
        if sent_down < len(down):
            sent_down += server.send(down[sent_down : sent_down + 8192], lan.now)
        got_up += server.receive(1 << 20, lan.now)
        got_down += client.receive(1 << 20, lan.now)
        if len(got_up) == len(up) and len(got_down) == len(down):
            break
        lan.run(until=lan.now + 0.02)
    client.close(lan.now)
    server.close(lan.now)
    lan.run(until=lan.now + 130)  # past TIME-WAIT
    assert client.conn.state is State.CLOSED and server.conn.state is State.CLOSED
    large = a.tcp.output.large_out + b.tcp.output.large_out
    return frames, [Counter(a.counters), Counter(b.counters)], bytes(got_up), bytes(got_down), large


def test_fast_and_slow_paths_agree_over_a_clean_lan() -> None:
    fast = _run_exchange(True, LinkParams(delay=50e-6))
    slow = _run_exchange(False, LinkParams(delay=50e-6))
    assert fast[2] == random.Random(1).randbytes(60_000)
    assert fast[3] == random.Random(2).randbytes(60_000)
    assert fast[1] == slow[1]
    assert [(f.host, f.ts, f.direction, f.frame) for f in fast[0]] == [
        (f.host, f.ts, f.direction, f.frame) for f in slow[0]
    ]
    # The exchange did go through the fast path (and the slow one did not).
    assert fast[1][1]["tcp-in"] > 40


def test_split_frames_carry_the_same_octets() -> None:
    # A link taking split frames (a TAP without checksum offload): headers
    # and payload apart, the same frames once joined.
    split = _run_exchange(True, LinkParams(delay=50e-6), split=True)
    slow = _run_exchange(False, LinkParams(delay=50e-6))
    assert split[1] == slow[1]
    assert [f.frame for f in split[0]] == [f.frame for f in slow[0]]


@pytest.mark.parametrize("how", ["split", "joined", "pieces"])
@pytest.mark.parametrize("lossy", [False, True])
def test_segmentation_below_tcp_puts_the_same_frames_on_the_link(how: str, lossy: bool) -> None:
    # TCP hands over up to 64,000 octets as one segment and the output cuts
    # it (software GSO): every frame, its timing and every counter as when
    # TCP sends MSS-sized segments, including under loss, duplication,
    # reordering and corruption (RACK/SACK resend the lost pieces alone).
    params = (
        LinkParams(delay=1e-3, loss=0.02, duplicate=0.02, reorder=0.05, corrupt=0.05)
        if lossy
        else LinkParams(delay=50e-6)
    )
    # split: headers and payload apart (a TAP); joined: whole frames; pieces:
    # no framing fast path, each piece a segment of its own through send().
    cut = _run_exchange(how != "pieces", params, split=how == "split", gso=True)
    whole = _run_exchange(False, params, gso=False)
    assert cut[2] == random.Random(1).randbytes(60_000)
    assert cut[3] == random.Random(2).randbytes(60_000)
    assert cut[4] > 3 and whole[4] == 0  # super-segments were made and cut
    assert cut[1] == whole[1]
    assert [(f.host, f.ts, f.direction, f.frame) for f in cut[0]] == [
        (f.host, f.ts, f.direction, f.frame) for f in whole[0]
    ]


def test_fast_and_slow_paths_agree_over_a_hostile_lan() -> None:
    # Corrupted frames (bad checksums, wrong lengths, wrong addresses), lost,
    # duplicated and reordered ones: refused and counted the same way.
    params = LinkParams(delay=1e-3, loss=0.02, duplicate=0.02, reorder=0.05, corrupt=0.05)
    fast = _run_exchange(True, params)
    slow = _run_exchange(False, params)
    assert fast[2] == random.Random(1).randbytes(60_000)
    assert fast[1] == slow[1]
    assert [f.frame for f in fast[0]] == [f.frame for f in slow[0]]
    counted = fast[1][0] + fast[1][1]
    assert counted["tcp-bad-checksum"] + counted["ipv4-bad-checksum"] > 0


def _established(fast: bool) -> tuple[Host, TcpStream, bytes]:
    """Host B with a connection from A, and the frame of A's next data
    segment (taken from A, not delivered)."""
    lan, a, b = two_hosts()
    for h in (a, b):
        _set_fast(h, fast)
    listener = b.tcp_listen(80)
    client = a.tcp_connect((B, 80), lan.now)
    lan.run()
    stream = listener.accept()
    assert stream is not None and stream.conn.state is State.ESTABLISHED
    client.send(b"x" * 300, lan.now)
    (frame,) = a.frames_to_send()
    return b, stream, frame


def _frame(seg: TcpSegment, src: IPv4Address = A, dst: IPv4Address = B) -> bytes:
    raw = wip.build(wip.Ipv4Packet(src, dst, wip.PROTO_TCP, wtcp.build(seg, src, dst), ident=9))
    return weth.build(weth.EthernetFrame(mac(2), mac(1), weth.ETHERTYPE_IPV4, raw))


def _with_source(frame: bytes, src: IPv4Address) -> bytes:
    """``frame`` from another source address, both checksums still right."""
    pkt = wip.parse(weth.parse(frame).payload)
    seg = wtcp.parse(pkt.payload, pkt.src, pkt.dst)
    return _frame(seg, src=src)


def _outcome(h: Host, stream: TcpStream) -> tuple[object, ...]:
    return (
        *drained(h),
        stream.conn.state,
        stream.receive(1 << 16, 2.0),
    )


@settings(max_examples=250, deadline=None)
# The IPv4 boundaries the fast path tests itself (offsets in the frame: total
# length 16-17, source 26-29, destination 30-33), each with a right checksum.
@example(edits=[(16, 0), (17, 19)], cut=0, pad=0, fix_checksum=True)
@example(edits=[(16, 0), (17, 20)], cut=0, pad=0, fix_checksum=True)
@example(edits=[], cut=1, pad=0, fix_checksum=False)
@example(edits=[(26, 224)], cut=0, pad=0, fix_checksum=True)
@example(edits=[(26, 239)], cut=0, pad=0, fix_checksum=True)
@example(edits=[(26, 240)], cut=0, pad=0, fix_checksum=True)
@example(edits=[(26, 127)], cut=0, pad=0, fix_checksum=True)
@example(edits=[(33, 255)], cut=0, pad=0, fix_checksum=True)
@example(edits=[(33, 1)], cut=0, pad=0, fix_checksum=True)
@example(edits=[(0, 255), (5, 255)], cut=0, pad=0, fix_checksum=False)
@given(
    edits=st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=3),
    # A cut truncates the frame by that many octets (most frames keep them
    # all), padding adds Ethernet trailer octets.
    cut=st.one_of(st.just(0), st.integers(0, 8), st.integers(0, 400)),
    pad=st.integers(0, 12),
    # Re-sum the IPv4 header after the edits, so an edited field (length,
    # addresses, protocol, flags) is judged on its own, not by the checksum.
    fix_checksum=st.booleans(),
)
def test_mutated_frames_of_a_connection_meet_the_same_fate(
    edits: list[tuple[int, int]], cut: int, pad: int, fix_checksum: bool
) -> None:
    # Edits land in the Ethernet, IPv4 and TCP headers (offsets 0-80);
    # a cut truncates the frame, padding adds Ethernet trailer octets.
    outcomes = []
    for fast in (True, False):
        b, stream, good = _established(fast)
        data = bytearray(good)
        for pos, value in edits:
            data[pos] = value
        if fix_checksum:
            data[24:26] = b"\0\0"
            data[24:26] = internet_checksum(data[14:34]).to_bytes(2, "big")
        frame = bytes(data[: max(14, len(data) - cut)]) + bytes(pad)
        b.receive_frame(frame, 2.0)
        outcomes.append(_outcome(b, stream))
    assert outcomes[0] == outcomes[1]


def test_unmutated_segment_takes_the_fast_path_and_is_delivered() -> None:
    b, stream, frame = _established(True)
    tcp_in, ipv4_in = b.counters["tcp-in"], b.counters["ipv4-in"]
    b.receive_frame(frame, 2.0)
    assert stream.receive(1 << 16, 2.0) == b"x" * 300
    assert b.counters["tcp-in"] == tcp_in + 1 and b.counters["ipv4-in"] == ipv4_in + 1


def test_martian_and_broadcast_sources_are_refused_on_both_paths() -> None:
    for src, counter in (
        (IPv4Address("224.0.0.9"), "ipv4-bad-source"),
        (IPv4Address("10.213.0.255"), "ipv4-bad-source"),
        (IPv4Address("255.255.255.255"), "ipv4-bad-source"),
        (IPv4Address("127.0.0.1"), "ipv4-martian"),
        (IPv4Address("0.0.0.0"), "ipv4-martian"),
        (B, "ipv4-martian"),
    ):
        for fast in (True, False):
            b, stream, frame = _established(fast)
            b.receive_frame(_with_source(frame, src), 2.0)
            assert b.counters[counter] == 1, (src, fast)
            assert stream.receive(1 << 16, 2.0) == b""


def test_host_address_that_is_a_broadcast_one_takes_the_slow_path() -> None:
    # A /32: our address is the network's broadcast address too, so TCP to
    # it is a broadcast (dropped, counted); the fast path must not take it.
    h = make_host(2, "10.213.0.2/32")
    h.tcp_listen(80)
    syn = TcpSegment(5000, 80, 1000, 0, TcpFlags.SYN, 65535)
    h.receive_frame(_frame(syn), 1.0)
    assert h.counters["tcp-broadcast"] == 1 and h.counters["tcp-in"] == 0


def _check_index(h: Host) -> None:
    """The demux's int-keyed index holds exactly the streams of ``conns``, and
    no 4-tuple is in ``conns`` and ``time_wait`` at once (what lets the fast
    path skip the TIME-WAIT lookup)."""
    flows = h.tcp.flows
    assert len(flows) == len(h.tcp.conns)
    for (lip, lport, rip, rport), stream in h.tcp.conns.items():
        assert flows[(int(lip), lport, int(rip), rport)] is stream
    assert not set(h.tcp.conns) & set(h.tcp.time_wait)


def test_int_index_follows_connections_through_their_lives() -> None:
    lan, a, b = two_hosts()
    listener = b.tcp_listen(80)
    ports = []
    for i in range(12):
        client = a.tcp_connect((B, 80), lan.now)
        lan.run(until=lan.now + 0.01)
        server = listener.accept()
        assert server is not None
        ports.append(client.local[1])
        client.send(b"x" * 3000, lan.now)
        lan.run(until=lan.now + 0.01)
        assert server.receive(1 << 16, lan.now) == b"x" * 3000  # unread data: close sends RST
        if i % 3 == 0:
            client.abort(lan.now)  # RST
        elif i % 3 == 1:
            server.close(lan.now)  # B closes first: B holds TIME-WAIT
            lan.run(until=lan.now + 0.01)
            client.close(lan.now)
        else:
            client.close(lan.now)  # A closes first
            lan.run(until=lan.now + 0.01)
            server.close(lan.now)
        lan.run(until=lan.now + 0.05)
        for h in (a, b):
            _check_index(h)
    assert b.tcp.time_wait and a.tcp.time_wait
    # A new SYN on a 4-tuple B holds in TIME-WAIT reopens it (RFC 9293 §3.6.1).
    reopen = a.tcp_connect((B, 80), lan.now, local=(A, ports[1]))
    lan.run(until=lan.now + 0.05)
    assert b.counters["tcp-timewait-reopen"] == 1 and reopen.conn.state is State.ESTABLISHED
    for h in (a, b):
        _check_index(h)
    listener.close(lan.now)
    lan.run(until=lan.now + 200)  # every TIME-WAIT over
    for h in (a, b):
        _check_index(h)
