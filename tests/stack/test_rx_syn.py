"""A pure SYN taken by the host's one-pass input (stack/rx.py, ``FrameInput.syns``)
meets the fate it meets the usual way (the SYN-flood path's raw test, the IP
fast path, the demux): on and off, the same counters, frames out, events,
connections and TIME-WAIT records, whatever the host holds for it (a
listener, one bound to our address, none, a flooded one, the connection
itself, a TIME-WAIT record of its 4-tuple) and whatever is wrong with the
frame, in every way the host takes a batch."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address

from hypothesis import example, given, settings
from hypothesis import strategies as st

from synack.links.tap import KernelChecked
from synack.stack.host import Host
from synack.tcp.states import State
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment
from tests.stack.netfix import mac, two_hosts
from tests.stack.test_rx import _Counting, mutated

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")
PORT = 40000  # the client's port of the SYN under test
SCENES = (
    "listener",
    "bound",
    "closed",
    "flooded",  # answered with a cookie by the SYN-flood path
    "flooded-no-cookies",  # the flood path declines: the oldest half-open is evicted
    "flooded-proven",  # from a source with a connection: the flood path declines
    "duplicate",
    "time-wait",
)
ENTRIES = ("batch", "pair", "vouched", "loop")


def _syn(port: int, seq: int, tsval: int) -> bytes:
    """A's SYN to B:80 from ``port`` with Linux's options, as a whole frame."""
    seg = TcpSegment(
        port,
        80,
        seq,
        0,
        TcpFlags.SYN,
        64240,
        options=TcpOptions(mss=1460, sack_permitted=True, timestamps=(tsval, 0), wscale=7),
    )
    raw = wip.build(wip.Ipv4Packet(A, B, wip.PROTO_TCP, wtcp.build(seg, A, B), ident=seq & 0xFFFF))
    return weth.build(weth.EthernetFrame(mac(2), mac(1), weth.ETHERTYPE_IPV4, raw))


def _scene(name: str, syns: bool) -> Host:
    """Host B as ``name`` says, its one pass taking SYNs or not."""
    lan, a, b = two_hosts(syn_cookies=name != "flooded-no-cookies")
    b._rx.syns = syns
    if name == "time-wait":
        # B closes first and keeps a TIME-WAIT record of A:PORT -> B:80.
        listener = b.tcp_listen(80)
        client = a.tcp_connect((B, 80), lan.now, local=(A, PORT))
        lan.run()
        server = listener.accept()
        assert server is not None
        server.close(lan.now)
        lan.run()
        client.close(lan.now)
        lan.run()
        assert b.tcp.time_wait.by_flow, "B should hold a TIME-WAIT record"
    elif name == "closed":
        b.tcp_listen(81)
    elif name == "bound":
        b.tcp_listen(80, B)
    elif name.startswith("flooded"):
        b.tcp_listen(80, syn_backlog=1)
        if name == "flooded-proven":
            a.tcp_connect((B, 80), lan.now, local=(A, PORT + 4))
            lan.run()  # a connection from A: its source is proven
        b.receive_frames([_syn(PORT + 1, 7, 5)], lan.now)  # one half-open: the queue is full
    else:
        b.tcp_listen(80)
        if name == "duplicate":
            b.receive_frames([_syn(PORT, 1000, 10)], lan.now)  # it is SYN-RECEIVED already
    b.frames_to_send()
    return b


def _deliver(b: Host, entry: str, frame: bytes) -> None:
    now = b.tcp.now + 0.01
    if entry == "batch":
        b.receive_frames([frame], now)
    elif entry == "pair":  # with another flow's SYN after it: the batch loop
        b.receive_frames([frame, _syn(PORT + 2, 99, 50)], now)
    elif entry == "vouched":
        b.receive_frames([KernelChecked(frame)], now, vouched=KernelChecked)
    else:  # behind another flow's SYN, coalescing off
        b.coalesce = False
        b.receive_frames([_syn(PORT + 3, 5, 50), frame], now)


def _outcome(b: Host) -> tuple[object, ...]:
    frames = b.frames_to_send()
    events = []
    while (e := b.next_event()) is not None:
        events.append(type(e).__name__)
    return (
        Counter(b.counters),
        frames,
        events,
        sorted((str(k), s.conn.state.name, s.conn.rcv_nxt) for k, s in b.connections.items()),
        sorted(str(k) for k in b.tcp.time_wait),
    )


def _fates(scene: str, entry: str, frame: bytes) -> tuple[tuple[object, ...], ...]:
    got = []
    for syns in (True, False):
        b = _scene(scene, syns)
        _deliver(b, entry, frame)
        got.append(_outcome(b))
    return tuple(got)


def test_a_syn_to_a_listener_takes_the_one_pass_and_opens_the_same_connection() -> None:
    frame = _syn(PORT, 1000, 1 << 30)
    for entry in ENTRIES:
        on, off = _fates("listener", entry, frame)
        assert on == off, entry
        assert on[0]["tcp-passive-opens"] >= 1
    # Taken by the one pass (it answers True), not declined to the usual way.
    b = _scene("listener", True)
    counting = _Counting(b._rx)
    b._rx = counting  # type: ignore[assignment]
    b.receive_frames([frame], 1.0)
    assert counting.taken == [(True, True)] and b.counters["tcp-passive-opens"] == 1
    (stream,) = b.connections.values()
    assert stream.conn.state is State.SYN_RECEIVED


def test_every_scene_meets_the_same_fate_on_and_off() -> None:
    # A SYN newer than anything the scenes hold (a TIME-WAIT record reopens on it).
    frame = _syn(PORT, 1 << 31, 1 << 30)
    for scene in SCENES:
        for entry in ENTRIES:
            on, off = _fates(scene, entry, frame)
            assert on == off, (scene, entry)
    # The scenes make what they say, so the comparisons above mean something.
    assert _fates("closed", "batch", frame)[0][0]["tcp-closed-port"] == 1
    flooded = _fates("flooded", "batch", frame)[0][0]
    assert flooded["tcp-syncookies-sent"] == 1 and flooded["tcp-in"] == 1  # (the filler's)
    assert _fates("flooded-no-cookies", "batch", frame)[0][0]["tcp-synq-evicted"] == 1
    # Declined by the flood path, the demux parses and counts it (then answers with a cookie).
    proven = _fates("flooded-proven", "batch", frame)[0][0]
    assert proven["tcp-in"] == 4 and proven["tcp-syncookies-sent"] == 1
    assert _fates("time-wait", "batch", frame)[0][0]["tcp-timewait-reopen"] == 1


def test_a_syn_to_a_time_wait_record_takes_the_one_pass_reopened_or_answered() -> None:
    # A client's port used again within 2 MSL (every SYN of a long run of new
    # connections from one client): a SYN newer than the record reopens the
    # 4-tuple, an older one (sequence number and timestamp behind it) is
    # answered from the record. Either way the one pass takes it (no second
    # look by the usual way) and its fate is the usual way's.
    tw = next(iter(_scene("time-wait", True).tcp.time_wait.by_flow.values()))
    newer = _syn(PORT, (tw.rcv_nxt + 1000) & 0xFFFFFFFF, (tw.ts_recent + 1000) & 0xFFFFFFFF)
    older = _syn(PORT, (tw.rcv_nxt - 1000) & 0xFFFFFFFF, (tw.ts_recent - 1000) & 0xFFFFFFFF)
    for frame, counter in ((newer, "tcp-timewait-reopen"), (older, "tcp-timewait-acks")):
        for entry in ENTRIES:
            on, off = _fates("time-wait", entry, frame)
            assert on == off, (counter, entry)
            assert on[0][counter] == 1, (counter, entry)
        b = _scene("time-wait", True)
        counting = _Counting(b._rx)
        b._rx = counting  # type: ignore[assignment]
        b.receive_frames([frame], b.tcp.now + 0.01)
        assert counting.taken == [(True, True)], counter
        assert b.counters[counter] == 1
    # Reopened: a new connection in SYN-RECEIVED and no record; answered: the record stays.
    b = _scene("time-wait", True)
    b.receive_frames([newer], b.tcp.now + 0.01)
    assert not b.tcp.time_wait.by_flow
    assert [s.conn.state for s in b.connections.values()] == [State.SYN_RECEIVED]
    b = _scene("time-wait", True)
    b.receive_frames([older], b.tcp.now + 0.01)
    assert b.tcp.time_wait.by_flow and not b.connections


@settings(max_examples=60, deadline=None)
# A bad IP header checksum, a bad TCP checksum, a bad option length, port 0,
# a truncated header, another destination port (closed), SYN+ACK, padding.
@example(edits=[(24, 0)], cut=0, pad=0, fix=0, scene="listener", entry="batch")
@example(edits=[(51, 0)], cut=0, pad=0, fix=1, scene="listener", entry="vouched")
@example(edits=[(55, 9)], cut=0, pad=0, fix=2, scene="bound", entry="pair")
@example(edits=[(34, 0), (35, 0)], cut=0, pad=0, fix=2, scene="listener", entry="loop")
@example(edits=[(37, 81)], cut=0, pad=0, fix=2, scene="closed", entry="batch")
@example(edits=[(47, 0x12)], cut=0, pad=0, fix=2, scene="listener", entry="batch")
@example(edits=[], cut=30, pad=0, fix=0, scene="flooded", entry="batch")
# To a flooded listener: another protocol, IPv4 options, a fragment (the raw tests).
@example(edits=[(23, 17)], cut=0, pad=0, fix=1, scene="flooded", entry="batch")
@example(edits=[(14, 0x46)], cut=0, pad=0, fix=1, scene="flooded", entry="pair")
@example(edits=[(20, 0x20)], cut=0, pad=0, fix=1, scene="flooded", entry="vouched")
@example(edits=[(21, 1)], cut=0, pad=0, fix=1, scene="flooded", entry="loop")
# A bad TCP checksum to a flooded listener: summed unless the link vouches for it.
@example(edits=[], cut=1, pad=1, fix=0, scene="flooded", entry="vouched")
@example(edits=[], cut=1, pad=1, fix=0, scene="flooded", entry="batch")
@example(edits=[], cut=0, pad=5, fix=0, scene="duplicate", entry="pair")
@given(
    edits=st.lists(st.tuples(st.integers(0, 73), st.integers(0, 255)), max_size=2),
    cut=st.one_of(st.just(0), st.integers(0, 40)),
    pad=st.integers(0, 8),
    fix=st.integers(0, 2),
    scene=st.sampled_from(SCENES),
    entry=st.sampled_from(ENTRIES),
)
def test_hostile_syns_meet_the_same_fate_on_and_off(
    edits: list[tuple[int, int]], cut: int, pad: int, fix: int, scene: str, entry: str
) -> None:
    frame = mutated(_syn(PORT, 1 << 31, 1 << 30), edits, cut, pad, fix)
    on, off = _fates(scene, entry, frame)
    assert on == off
