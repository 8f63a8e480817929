"""parse(build(x)) == x for every format, and build(parse(b)) == b for canonical bytes."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synack.errors import LocalProtocolError
from synack.wire import arp, ethernet, icmp, ipv4, tcp, udp
from synack.wire.checksum import internet_checksum
from tests.wire import strategies as s

SRC = IPv4Address("10.213.0.1")
DST = IPv4Address("10.213.0.2")


@settings(max_examples=400)
@given(s.tcp_segments, s.addresses, s.addresses)
def test_tcp_roundtrip(seg: tcp.TcpSegment, src: IPv4Address, dst: IPv4Address) -> None:
    raw = tcp.build(seg, src, dst)
    assert tcp.parse(raw, src, dst) == seg
    assert tcp.parse(memoryview(raw), src, dst) == seg
    assert len(raw) % 4 == len(seg.payload) % 4


@settings(max_examples=300)
@given(
    s.tcp_options,
    # RFC 7413 §4.1.1: a cookie of 4-16 octets, or none at all (a cookie request).
    st.just(b"") | st.binary(min_size=4, max_size=16),
)
def test_a_fast_open_option_survives_every_option_shape(
    options: tcp.TcpOptions, cookie: bytes
) -> None:
    # With timestamps alone besides it, the builder's timestamps-only shortcut
    # used to leave the cookie out.
    with_cookie = dataclasses.replace(options, fastopen=cookie)
    try:
        raw, total = tcp.build_options_sum(with_cookie)
    except LocalProtocolError:
        return  # more than the 40 octets of option space
    assert tcp.parse_options(raw) == with_cookie
    padded = raw + bytes(len(raw) % 2)
    assert (
        total % 0xFFFF
        == sum(int.from_bytes(padded[i : i + 2], "big") for i in range(0, len(padded), 2)) % 0xFFFF
    )


@settings(max_examples=300)
@given(s.tcp_segments, s.addresses, s.addresses)
def test_tcp_offload_header_completed_as_a_nic_would_equals_build(
    seg: tcp.TcpSegment, src: IPv4Address, dst: IPv4Address
) -> None:
    # The partial checksum (pseudo-header only) plus what the NIC sums from the TCP header to
    # the end must give exactly the segment build() makes.
    header = tcp.build_header_offload(seg, src, dst)
    csum = internet_checksum(header + seg.payload)
    assert header[:16] + csum.to_bytes(2, "big") + header[18:] + seg.payload == tcp.build(
        seg, src, dst
    )


@settings(max_examples=300)
@given(s.udp_datagrams, s.addresses, s.addresses)
def test_udp_roundtrip(dgram: udp.UdpDatagram, src: IPv4Address, dst: IPv4Address) -> None:
    raw = udp.build(dgram, src, dst)
    assert raw[6:8] != b"\x00\x00"  # zero would mean "no checksum"
    assert udp.parse(raw, src, dst) == dgram
    assert udp.parse(udp.build(dgram, src, dst, checksum=False), src, dst) == dgram


@settings(max_examples=300)
@given(s.icmp_messages)
def test_icmp_roundtrip(msg: icmp.IcmpMessage) -> None:
    raw = icmp.build(msg)
    assert icmp.parse(raw) == msg
    assert icmp.build(icmp.parse(raw)) == raw


@settings(max_examples=300)
@given(s.ipv4_packets)
def test_ipv4_roundtrip(pkt: ipv4.Ipv4Packet) -> None:
    raw = ipv4.build(pkt)
    assert ipv4.parse(raw) == pkt
    # Ethernet padding after total_length is ignored.
    assert ipv4.parse(raw + bytes(7)) == pkt


@settings(max_examples=200)
@given(s.ethernet_frames)
def test_ethernet_roundtrip(frame: ethernet.EthernetFrame) -> None:
    assert ethernet.parse(ethernet.build(frame)) == frame


@settings(max_examples=200)
@given(s.arp_packets)
def test_arp_roundtrip(pkt: arp.ArpPacket) -> None:
    raw = arp.build(pkt)
    assert len(raw) == 28
    assert arp.parse(raw + bytes(18)) == pkt


def test_mac_text() -> None:
    mac = ethernet.parse_mac("02:00:5E:10:00:01")
    assert mac == b"\x02\x00\x5e\x10\x00\x01"
    assert ethernet.format_mac(mac) == "02:00:5e:10:00:01"
    assert ethernet.parse_mac("02-00-5e-10-00-01") == mac
    for bad in [
        "",
        "02:00:5e:10:00",
        "02:00:5e:10:00:01:02",
        "02:00-5e:10:00:01",
        "0g:00:5e:10:00:01",
        "2:0:5e:10:0:1",
    ]:
        with pytest.raises(ValueError):
            ethernet.parse_mac(bad)


def test_checksum_known_values() -> None:
    # RFC 1071 §3 worked example: the words 0001 f203 f4f5 f6f7 sum to ddf2 (checksum 220d).
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert internet_checksum(b"") == 0xFFFF
    assert internet_checksum(b"\x00\x00\x00") == 0xFFFF
    assert internet_checksum(b"\xff\xff") == 0x0000
    # Odd length: the last octet is padded with zero on the right.
    assert internet_checksum(b"\x01") == internet_checksum(b"\x01\x00") == 0xFEFF


def test_tcp_option_layout_matches_linux_syn() -> None:
    opts = tcp.TcpOptions(mss=1460, wscale=7, sack_permitted=True, timestamps=(1, 0))
    # MSS, SACK-permitted, timestamps, NOP, window scale: the 20 octets Linux sends.
    assert tcp.build_options(opts) == bytes.fromhex("020405b40402080a000000010000000001030307")


@pytest.mark.parametrize(
    "build",
    [
        lambda: tcp.build(tcp.TcpSegment(70000, 1, 0, 0, tcp.TcpFlags.SYN, 0), SRC, DST),
        lambda: tcp.build(
            tcp.TcpSegment(
                1, 1, 0, 0, tcp.TcpFlags.SYN, 0, options=tcp.TcpOptions(sack_blocks=((1, 2),) * 5)
            ),
            SRC,
            DST,
        ),
        lambda: tcp.build(
            tcp.TcpSegment(
                1, 1, 0, 0, tcp.TcpFlags.SYN, 0, options=tcp.TcpOptions(unknown=((2, b"xx"),))
            ),
            SRC,
            DST,
        ),
        lambda: ipv4.build(ipv4.Ipv4Packet(SRC, DST, 6, b"", options=b"\x01\x01\x01")),
        lambda: ipv4.build(ipv4.Ipv4Packet(SRC, DST, 6, b"", options=b"\x07\x09\x00\x00")),
        lambda: ipv4.build(ipv4.Ipv4Packet(SRC, DST, 6, bytes(65516))),
        lambda: ipv4.build(ipv4.Ipv4Packet(SRC, DST, 6, b"", ttl=256)),
        lambda: udp.build(udp.UdpDatagram(1, 2, bytes(65528)), SRC, DST),
        lambda: icmp.build(icmp.IcmpMessage(256, 0)),
        lambda: ethernet.build(ethernet.EthernetFrame(b"\x00" * 5, b"\x00" * 6, 0x800, b"")),
        lambda: ethernet.build(ethernet.EthernetFrame(b"\x00" * 6, b"\x00" * 6, 0x10000, b"")),
        lambda: arp.build(arp.ArpPacket(1, b"", SRC, b"\x00" * 6, DST)),
    ],
)
def test_builders_refuse_unrepresentable_values(build: object) -> None:
    with pytest.raises(LocalProtocolError):
        build()  # type: ignore[operator]


def test_slot_maker_builds_equal_instances() -> None:
    from dataclasses import dataclass

    from synack.wire._fast import address_int, slot_maker

    make = slot_maker(tcp.TcpSegment)
    args = (1, 2, 3, 4, tcp.TcpFlags.SYN, 5, b"x", tcp.NO_OPTIONS, 0)
    fast, slow = make(*args), tcp.TcpSegment(*args)
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)

    @dataclass(frozen=True, slots=True)
    class Checked:
        x: int

        def __post_init__(self) -> None:
            pass

    with pytest.raises(TypeError):
        slot_maker(Checked)
    assert address_int(IPv4Address("10.213.0.1")) == int(IPv4Address("10.213.0.1"))


def test_slot_maker_instances_are_the_class_s_own_frozen_ones() -> None:
    # Built as a plain twin then given the class: the result is an ordinary,
    # frozen instance (equal, hashed, replaced and copied as one), and a
    # class the twin cannot stand for (a subclass) is filled by descriptors.
    import copy
    import dataclasses
    import pickle
    from dataclasses import dataclass

    from synack.wire._fast import slot_maker

    make = slot_maker(tcp.TcpOptions)
    fast = make(None, None, False, (), (7, 9), (), None)
    assert type(fast) is tcp.TcpOptions and fast == tcp.TcpOptions(timestamps=(7, 9))
    assert hash(fast) == hash(tcp.TcpOptions(timestamps=(7, 9)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.mss = 1  # type: ignore[misc]
    assert dataclasses.replace(fast, mss=1400).mss == 1400
    assert copy.copy(fast) == fast and pickle.loads(pickle.dumps(fast)) == fast

    @dataclass(frozen=True, slots=True)
    class Base:
        a: int

    @dataclass(frozen=True, slots=True)
    class Derived(Base):
        b: int

    made = slot_maker(Derived)(1, 2)
    assert type(made) is Derived and made == Derived(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.a = 3  # type: ignore[misc]


def test_fast_init_keeps_the_generated_init_s_parameters_and_frozenness() -> None:
    import dataclasses
    import inspect
    from dataclasses import dataclass, field

    from synack.wire._fast import fast_init

    @dataclass(frozen=True, slots=True)
    class Plain:
        a: int
        b: bytes = b""
        c: tuple[int, ...] = ()

    generated_init = Plain.__init__
    generated = inspect.signature(generated_init)
    fast_init(Plain)
    assert Plain.__init__ is not generated_init
    ours = inspect.signature(Plain.__init__)
    assert [(p.name, p.default, p.kind) for p in ours.parameters.values()] == [
        (p.name, p.default, p.kind) for p in generated.parameters.values()
    ]
    assert Plain(1) == Plain(a=1, b=b"", c=())
    assert Plain(1, c=(2,)).c == (2,) and Plain(1, b"x").b == b"x"
    with pytest.raises(TypeError):
        Plain()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Plain(1, d=2)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Plain(1).a = 2  # type: ignore[misc]
    # The wire representations use it: built as the tests above build them.
    seg = tcp.TcpSegment(1, 2, 3, 4, tcp.TcpFlags.ACK, 5)
    assert (seg.payload, seg.options, seg.urgent) == (b"", tcp.NO_OPTIONS, 0)
    assert dataclasses.replace(seg, urgent=7).urgent == 7
    assert tcp.TcpOptions(timestamps=(1, 2)) == tcp.TcpOptions(None, None, False, (), (1, 2), ())

    @dataclass(frozen=True, slots=True)
    class Factory:
        x: list[int] = field(default_factory=list)

    @dataclass(frozen=True, slots=True)
    class Checked:
        x: int

        def __post_init__(self) -> None:
            pass

    for cls in (Factory, Checked):
        with pytest.raises(TypeError):
            fast_init(cls)
