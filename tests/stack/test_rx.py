"""The one-pass frame input (stack/rx.py) does what the per-layer paths do
(Ipv4.receive_tcp_frame, TcpDemux.receive_at, wire.tcp.parse_at, and the
slow path behind them): the same counters, frames out, events, state and
bytes delivered, for good frames and hostile ones, through every entry
(receive_frame, a batch of one, a batch offered to coalescing, a frame whose
checksum the link vouches for)."""

from __future__ import annotations

import dataclasses
import random
import struct
from ipaddress import IPv4Address

from hypothesis import example, given, settings
from hypothesis import strategies as st

from synack.links.lan import Lan
from synack.links.tap import KernelChecked
from synack.stack.host import Host, TcpStream
from synack.stack.rx import FrameInput
from synack.tcp.states import State
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.checksum import internet_checksum
from synack.wire.errors import MalformedPacket
from tests.stack.netfix import drained, mac, two_hosts

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")
MODES = ("rx", "per-layer", "slow")
ENTRIES = ("frame", "batch", "pair", "vouched")


class _Declining:
    """Stands in for the host's FrameInput: declines every frame, so the
    frames take the per-layer fast path (or the slow one) as before it."""

    def take(self, data: bytes, now: float, verify: bool) -> bool:
        return False


class _Counting:
    """The host's FrameInput, each answer noted with its ``verify``."""

    def __init__(self, rx: FrameInput) -> None:
        self.rx = rx
        self.taken: list[tuple[bool, bool]] = []

    def take(self, data: bytes, now: float, verify: bool) -> bool:
        ok = self.rx.take(data, now, verify)
        self.taken.append((ok, verify))
        return ok


def _hosts(mode: str) -> tuple[Lan, Host, Host]:
    """Two hosts, B taking TCP frames the ``mode`` way: "rx" the one pass,
    "per-layer" with the one pass declining everything, "slow" with the IP
    fast path off as well."""
    lan, a, b = two_hosts()
    if mode != "rx":
        b._rx = _Declining()  # type: ignore[assignment]
    if mode == "slow":
        b.ipv4.set_fast_path(False)
    return lan, a, b


def _established(mode: str) -> tuple[Host, TcpStream, bytes, bytes]:
    """Host B with a connection from A in ``mode``, and the frames of A's
    next two data segments (taken from A, not delivered)."""
    lan, a, b = _hosts(mode)
    listener = b.tcp_listen(80)
    client = a.tcp_connect((B, 80), lan.now)
    lan.run()
    stream = listener.accept()
    assert stream is not None and stream.conn.state is State.ESTABLISHED
    client.send(b"x" * 300, lan.now)
    (first,) = a.frames_to_send()
    # The segment after it (Nagle holds A's own while the first is unacknowledged).
    pkt = wip.parse(weth.parse(first).payload)
    seg = wtcp.parse(pkt.payload, A, B)
    nxt = dataclasses.replace(seg, seq=seg.seq + 300, payload=b"y" * 200)
    raw = wip.build(wip.Ipv4Packet(A, B, wip.PROTO_TCP, wtcp.build(nxt, A, B), ident=pkt.ident + 1))
    second = weth.build(weth.EthernetFrame(mac(2), mac(1), weth.ETHERTYPE_IPV4, raw))
    return b, stream, first, second


def _deliver(b: Host, entry: str, frame: bytes, second: bytes) -> None:
    if entry == "frame":
        b.receive_frame(frame, 2.0)
    elif entry == "batch":
        b.receive_frames([frame], 2.0)
    elif entry == "pair":  # two frames of one flow: offered to coalescing first
        b.receive_frames([frame, second], 2.0)
    else:
        b.receive_frames([KernelChecked(frame)], 2.0, vouched=KernelChecked)


def _outcome(h: Host, stream: TcpStream) -> tuple[object, ...]:
    return (
        *drained(h),
        stream.conn.state,
        stream.conn.rcv_nxt,
        stream.receive(1 << 16, 2.0),
    )


def _fates(entry: str, mutate: object) -> list[tuple[object, ...]]:
    outcomes = []
    for mode in MODES:
        b, stream, good, second = _established(mode)
        frame = mutate(good)  # type: ignore[operator]
        _deliver(b, entry, frame, second)
        outcomes.append(_outcome(b, stream))
    return outcomes


def _ip_sum(data: bytearray) -> None:
    data[24:26] = b"\0\0"
    data[24:26] = internet_checksum(data[14:34]).to_bytes(2, "big")


def _tcp_sum(data: bytearray) -> None:
    """Re-sum the TCP checksum of an option-less IPv4 frame's whole segment."""
    total = int.from_bytes(data[16:18])
    seg = bytes(data[34 : 14 + total])
    pseudo = bytes(data[26:34]) + struct.pack("!BBH", 0, 6, len(seg))
    seg = seg[:16] + b"\0\0" + seg[18:]
    data[50:52] = internet_checksum(pseudo + seg).to_bytes(2, "big")


def mutated(good: bytes, edits: list[tuple[int, int]], cut: int, pad: int, fix: int) -> bytes:
    """A hostile frame from a good one: octets overwritten, then (``fix``) its
    TCP sum (2, where the IP length allows) and IP sum (1 or more) made right
    again, cut short by ``cut`` octets and padded with ``pad`` zeros."""
    data = bytearray(good)
    for pos, value in edits:
        data[pos] = value
    if fix >= 2 and len(data) >= 54 and 40 <= int.from_bytes(data[16:18]) <= len(data) - 14:
        _tcp_sum(data)
    if fix >= 1:
        _ip_sum(data)
    return bytes(data[: max(14, len(data) - cut)]) + bytes(pad)


@settings(max_examples=150, deadline=None)
# Each check of the one pass, alone, both checksums right where it can be:
# wrong MAC, EtherType, IP options, a fragment, another protocol, our
# address wrong, a bad header checksum, a martian source, a truncated TCP
# header, data offsets 4 and 15, a bad TCP checksum, port 0, a pure SYN,
# an option with a bad length, an RST, padding after the packet.
@example(edits=[(0, 3)], cut=0, pad=0, fix=0, entry="batch")
@example(edits=[(12, 0x86)], cut=0, pad=0, fix=0, entry="batch")
@example(edits=[(14, 0x46)], cut=0, pad=0, fix=1, entry="batch")
@example(edits=[(20, 0x20)], cut=0, pad=0, fix=1, entry="batch")
@example(edits=[(21, 1)], cut=0, pad=0, fix=1, entry="frame")
@example(edits=[(23, 17)], cut=0, pad=0, fix=1, entry="batch")
@example(edits=[(33, 7)], cut=0, pad=0, fix=1, entry="batch")
@example(edits=[(25, 0)], cut=0, pad=0, fix=0, entry="batch")
@example(edits=[(26, 127)], cut=0, pad=0, fix=2, entry="batch")
@example(edits=[(16, 0), (17, 30)], cut=0, pad=0, fix=1, entry="batch")
@example(edits=[(46, 0x40)], cut=0, pad=0, fix=2, entry="batch")
@example(edits=[(16, 0), (17, 44)], cut=0, pad=0, fix=2, entry="batch")
@example(edits=[(16, 0), (17, 40)], cut=0, pad=0, fix=2, entry="frame")
@example(edits=[(16, 0), (17, 51)], cut=0, pad=0, fix=2, entry="batch")
@example(edits=[(16, 0), (17, 39)], cut=0, pad=0, fix=1, entry="batch")
@example(edits=[(36, 0), (37, 0)], cut=0, pad=0, fix=2, entry="batch")
@example(edits=[(46, 0xF0)], cut=0, pad=0, fix=2, entry="pair")
@example(edits=[(51, 0)], cut=0, pad=0, fix=0, entry="batch")
@example(edits=[(51, 0)], cut=0, pad=0, fix=0, entry="vouched")
@example(edits=[(34, 0), (35, 0)], cut=0, pad=0, fix=2, entry="batch")
@example(edits=[(47, 0x02)], cut=0, pad=0, fix=2, entry="batch")
@example(edits=[(56, 8), (57, 9)], cut=0, pad=0, fix=2, entry="frame")
@example(edits=[(47, 0x14)], cut=0, pad=0, fix=2, entry="vouched")
@example(edits=[], cut=0, pad=7, fix=0, entry="batch")
@example(edits=[], cut=100, pad=0, fix=0, entry="batch")
@given(
    # Edits land in the Ethernet, IPv4 and TCP headers and options (0-80).
    edits=st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=3),
    cut=st.one_of(st.just(0), st.integers(0, 8), st.integers(0, 400)),
    pad=st.integers(0, 12),
    # 0: no checksum re-summed; 1: the IPv4 header's; 2: both, so an edited
    # field is judged on its own.
    fix=st.integers(0, 2),
    entry=st.sampled_from(ENTRIES),
)
def test_hostile_frames_meet_the_same_fate_on_every_path(
    edits: list[tuple[int, int]], cut: int, pad: int, fix: int, entry: str
) -> None:
    def mutate(good: bytes) -> bytes:
        return mutated(good, edits, cut, pad, fix)

    rx, per_layer, slow = _fates(entry, mutate)
    assert rx == per_layer
    if entry != "pair":  # (with the fast path off nothing is coalesced: gro.py)
        assert rx == slow


def test_good_frames_take_the_one_pass_through_every_entry() -> None:
    for entry in ENTRIES:
        b, stream, good, second = _established("rx")
        b.ipv4.set_fast_path(True)
        counting = _Counting(b._rx)
        b._rx = counting  # type: ignore[assignment]
        taken = counting.taken
        _deliver(b, entry, good, second)
        want = b"x" * 300 + (b"y" * 200 if entry == "pair" else b"")
        assert stream.receive(1 << 16, 2.0) == want, entry
        if entry == "pair":
            assert not taken  # coalesced into one segment (stack/gro.py)
            assert b.counters["tcp-coalesced"] == 1
        else:
            assert taken == [(True, entry != "vouched")], entry


def test_a_segment_to_no_connection_goes_on_to_the_demux() -> None:
    # Taken in one pass, then what receive_at does with a segment of no
    # connection: a reset for a closed port, counted the same on every path.
    outcomes = []
    for mode in MODES:
        b, stream, good, _ = _established(mode)
        data = bytearray(good)
        data[36:38] = (81).to_bytes(2, "big")  # another port
        _tcp_sum(data)
        b.receive_frames([bytes(data)], 2.0)
        outcomes.append(_outcome(b, stream))
        assert outcomes[-1][0]["tcp-closed-port"] == 1
    assert outcomes[0] == outcomes[1] == outcomes[2]


@settings(max_examples=200, deadline=None)
@given(
    options=st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4]),
    payload=st.binary(max_size=64),
    flags=st.integers(0, 255),
)
@example(options=b"\x01\x01\x08\x0a\0\0\0\1\0\0\0\2", payload=b"x", flags=0x18)
@example(options=b"\x01\x01\x08\x0a\0\0\0\1\0\0\0", payload=b"", flags=0x10)
def test_segment_at_gives_what_parse_at_gives(options: bytes, payload: bytes, flags: int) -> None:
    hlen = 20 + len(options)
    head = struct.pack("!HHIIBBHHH", 1234, 80, 7, 9, (hlen // 4) << 4, flags, 500, 0, 3)
    data = b"\xaa" * 34 + head + options + payload
    end = len(data)
    try:
        want: object = wtcp.parse_at(data, 34, end, 1, 2, verify_checksum=False)
    except MalformedPacket as exc:
        want = (exc.reason, str(exc))
    try:
        got: object = wtcp.segment_at(data, 34, end, hlen, 1234, 80, 7, 9, flags, 500, 3)
    except MalformedPacket as exc:
        got = (exc.reason, str(exc))
    assert got == want


def test_random_frames_of_many_connections_agree_batch_by_batch() -> None:
    # Several connections' segments, some corrupted, in batches of 1-4.
    rng = random.Random(7)
    outcomes = []
    for mode in MODES:
        lan, a, b = _hosts(mode)
        listener = b.tcp_listen(80)
        clients = [a.tcp_connect((B, 80), lan.now) for _ in range(4)]
        lan.run()
        streams = [listener.accept() for _ in clients]
        frames: list[bytes] = []
        r = random.Random(3)
        for i in range(40):
            clients[r.randrange(4)].send(bytes([i]) * r.randrange(1, 600), lan.now)
            frames += a.frames_to_send()
        for i in range(len(frames)):
            if r.random() < 0.2:
                f = bytearray(frames[i])
                f[r.randrange(len(f))] ^= 1 << r.randrange(8)
                frames[i] = bytes(f)
        rng.seed(11)
        got = []
        while frames:
            n = rng.randint(1, 4)
            b.receive_frames(frames[:n], 2.0)
            frames = frames[n:]
            got.append(_outcome(b, streams[0]))  # type: ignore[arg-type]
        got.append([s.receive(1 << 20, 2.0) for s in streams])  # type: ignore[union-attr]
        outcomes.append(got)
    assert outcomes[0] == outcomes[1]
    # The slow path coalesces nothing (gro.py asks the fast path's checks):
    # the same bytes delivered, the same counters but that one.
    assert outcomes[0][-1] == outcomes[2][-1]
    for got in (outcomes[0], outcomes[2]):
        for outcome in got[:-1]:
            del outcome[0]["tcp-coalesced"]  # type: ignore[index]
    assert [o[0] for o in outcomes[0][:-1]] == [o[0] for o in outcomes[2][:-1]]


class _Recorder:
    """Stands in for a connection: keeps the segments handed to it."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.got: list[wtcp.TcpSegment] = []

    def receive_segment(self, seg: wtcp.TcpSegment, now: float) -> None:
        self.got.append(seg)


@settings(max_examples=100, deadline=None)
@given(
    tsval=st.integers(0, (1 << 32) - 1),
    payload=st.binary(max_size=300),
    flags=st.sampled_from([0x10, 0x18, 0x11, 0x19, 0x14, 0x30]),
)
def test_the_segment_handed_on_is_the_one_parse_at_gives(
    tsval: int, payload: bytes, flags: int
) -> None:
    b, stream, good, _ = _established("rx")
    recorder = _Recorder(stream.conn.state)
    stream.conn = recorder  # type: ignore[assignment]
    data = bytearray(good[:66]) + payload
    data[16:18] = (len(data) - 14).to_bytes(2, "big")
    data[47] = flags
    data[58:62] = tsval.to_bytes(4, "big")
    _tcp_sum(data)
    _ip_sum(data)
    frame = bytes(data)
    b.receive_frames([frame], 2.0)
    want = wtcp.parse_at(frame, 34, len(frame), int(A), int(B))
    assert recorder.got == [want]
    assert recorder.got[0].options is want.options  # shared, as parse_at shares them
