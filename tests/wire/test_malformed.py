"""Each documented reason is raised where it should be, and nothing else escapes a parser."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synack.wire import MalformedPacket, arp, ethernet, icmp, ipv4, tcp, udp
from tests.wire import strategies as s

SRC = IPv4Address("10.213.0.1")
DST = IPv4Address("10.213.0.2")

SYN = tcp.build(
    tcp.TcpSegment(
        40000, 80, 1, 0, tcp.TcpFlags.SYN, 65535, options=tcp.TcpOptions(mss=1460, wscale=7)
    ),
    SRC,
    DST,
)
IP_TCP = ipv4.build(ipv4.Ipv4Packet(SRC, DST, ipv4.PROTO_TCP, SYN))
UDP_RAW = udp.build(udp.UdpDatagram(5000, 9, b"hello"), SRC, DST)
ICMP_RAW = icmp.build(icmp.echo(icmp.TYPE_ECHO_REQUEST, 7, 1, b"ping"))
ARP_RAW = arp.build(arp.ArpPacket(arp.OP_REQUEST, b"\x02" * 6, SRC, bytes(6), DST))


def _tcp_with_options(opts: bytes) -> bytes:
    """A TCP header carrying ``opts`` verbatim (padded to 4), with a correct checksum."""
    opts += bytes(-len(opts) % 4)
    hdr = bytearray(SYN[:20])
    hdr[12] = (20 + len(opts)) << 2
    hdr[16:18] = b"\x00\x00"
    raw = bytes(hdr) + opts
    from synack.wire.checksum import finish, ones_sum

    csum = finish(int(SRC) + int(DST) + 6 + len(raw) + ones_sum(raw))
    return raw[:16] + csum.to_bytes(2, "big") + raw[18:]


def _ipv4_with_options(opts: bytes) -> bytes:
    """An IPv4 header carrying ``opts`` verbatim, with a correct header checksum."""
    from synack.wire.checksum import internet_checksum

    hdr = bytearray(IP_TCP[:20])
    hdr[0] = 0x40 | (20 + len(opts)) // 4
    hdr[2:4] = (20 + len(opts)).to_bytes(2, "big")
    hdr[10:12] = b"\x00\x00"
    raw = bytes(hdr) + opts
    return raw[:10] + internet_checksum(raw).to_bytes(2, "big") + raw[12:]


def _flip(raw: bytes, index: int) -> bytes:
    return raw[:index] + bytes((raw[index] ^ 0x01,)) + raw[index + 1 :]


CASES: list[tuple[str, Callable[[], object], str, str]] = [
    ("ethernet", lambda: ethernet.parse(b"\x00" * 13), "ethernet", "truncated"),
    (
        "ethernet-8023",
        lambda: ethernet.parse(bytes(12) + b"\x00\x40" + bytes(64)),
        "ethernet",
        "unsupported",
    ),
    ("arp-short", lambda: arp.parse(ARP_RAW[:27]), "arp", "truncated"),
    ("arp-tiny", lambda: arp.parse(ARP_RAW[:3]), "arp", "truncated"),
    ("arp-ipv6", lambda: arp.parse(ARP_RAW[:2] + b"\x86\xdd" + ARP_RAW[4:]), "arp", "unsupported"),
    ("arp-hlen", lambda: arp.parse(ARP_RAW[:4] + b"\x08" + ARP_RAW[5:]), "arp", "unsupported"),
    ("ipv4-short", lambda: ipv4.parse(IP_TCP[:19]), "ipv4", "truncated"),
    ("ipv4-total", lambda: ipv4.parse(IP_TCP[:-1]), "ipv4", "truncated"),
    ("ipv4-version", lambda: ipv4.parse(b"\x65" + IP_TCP[1:]), "ipv4", "bad-version"),
    ("ipv4-ihl", lambda: ipv4.parse(b"\x44" + IP_TCP[1:]), "ipv4", "bad-ihl"),
    (
        "ipv4-length",
        lambda: ipv4.parse(IP_TCP[:2] + b"\x00\x13" + IP_TCP[4:]),
        "ipv4",
        "bad-length",
    ),
    ("ipv4-checksum", lambda: ipv4.parse(_flip(IP_TCP, 8)), "ipv4", "bad-checksum"),
    (
        "ipv4-option",
        lambda: ipv4.parse(_ipv4_with_options(b"\x07\x09\x00\x00")),
        "ipv4",
        "bad-option",
    ),
    (
        "ipv4-option-no-len",
        lambda: ipv4.parse(_ipv4_with_options(b"\x01\x01\x01\x44")),
        "ipv4",
        "bad-option",
    ),
    ("icmp-short", lambda: icmp.parse(ICMP_RAW[:7]), "icmp", "truncated"),
    ("icmp-checksum", lambda: icmp.parse(_flip(ICMP_RAW, 9)), "icmp", "bad-checksum"),
    ("udp-short", lambda: udp.parse(UDP_RAW[:7], SRC, DST), "udp", "truncated"),
    (
        "udp-length-low",
        lambda: udp.parse(UDP_RAW[:4] + b"\x00\x07" + UDP_RAW[6:], SRC, DST),
        "udp",
        "bad-length",
    ),
    ("udp-length-high", lambda: udp.parse(UDP_RAW[:-1], SRC, DST), "udp", "truncated"),
    ("udp-checksum", lambda: udp.parse(_flip(UDP_RAW, 9), SRC, DST), "udp", "bad-checksum"),
    (
        "udp-pseudo",
        lambda: udp.parse(UDP_RAW, SRC, IPv4Address("10.213.0.3")),
        "udp",
        "bad-checksum",
    ),
    ("tcp-short", lambda: tcp.parse(SYN[:19], SRC, DST), "tcp", "truncated"),
    (
        "tcp-offset-low",
        lambda: tcp.parse(SYN[:12] + b"\x40" + SYN[13:], SRC, DST),
        "tcp",
        "bad-data-offset",
    ),
    (
        "tcp-offset-high",
        lambda: tcp.parse(SYN[:12] + b"\xf0" + SYN[13:], SRC, DST),
        "tcp",
        "bad-data-offset",
    ),
    ("tcp-checksum", lambda: tcp.parse(_flip(SYN, 5), SRC, DST), "tcp", "bad-checksum"),
    ("tcp-pseudo", lambda: tcp.parse(SYN, DST, SRC + 1), "tcp", "bad-checksum"),
    (
        "tcp-opt-zero-len",
        lambda: tcp.parse(_tcp_with_options(b"\x22\x00"), SRC, DST),
        "tcp",
        "bad-option",
    ),
    (
        "tcp-opt-past-end",
        lambda: tcp.parse(_tcp_with_options(b"\x01\x01\x22\x07"), SRC, DST),
        "tcp",
        "bad-option",
    ),
    (
        "tcp-opt-no-len",
        lambda: tcp.parse(_tcp_with_options(b"\x01\x01\x01\x22"), SRC, DST),
        "tcp",
        "bad-option",
    ),
    (
        "tcp-mss-len",
        lambda: tcp.parse(_tcp_with_options(b"\x02\x03\x05\x01"), SRC, DST),
        "tcp",
        "bad-option",
    ),
    (
        "tcp-sack-len",
        lambda: tcp.parse(_tcp_with_options(b"\x05\x06\x00\x00\x00\x01"), SRC, DST),
        "tcp",
        "bad-option",
    ),
]


@pytest.mark.parametrize(("name", "call", "layer", "reason"), CASES, ids=[c[0] for c in CASES])
def test_reason(name: str, call: Callable[[], object], layer: str, reason: str) -> None:
    with pytest.raises(MalformedPacket) as info:
        call()
    assert (info.value.layer, info.value.reason) == (layer, reason), info.value
    assert str(info.value).startswith(f"{layer}: {reason}")


def test_unknown_options_are_kept_and_skipped() -> None:
    # Kind 253 (RFC 4727 experimental); this test used 34 until synack learnt
    # Fast Open's option (RFC 7413), which is no longer unknown (below).
    seg = tcp.parse(_tcp_with_options(b"\x01\xfd\x04\xab\xcd\x02\x04\x05\xb4"), SRC, DST)
    assert seg.options.unknown == ((0xFD, b"\xab\xcd"),)
    assert seg.options.mss == 1460
    seg = tcp.parse(_tcp_with_options(b"\x01\x22\x04\xab\xcd\x02\x04\x05\xb4"), SRC, DST)
    assert seg.options.unknown == () and seg.options.fastopen == b"\xab\xcd"
    assert seg.options.mss == 1460


def test_eol_ends_the_option_list() -> None:
    seg = tcp.parse(_tcp_with_options(b"\x02\x04\x05\xb4\x00\x02\x04\x00\x01"), SRC, DST)
    assert seg.options == tcp.TcpOptions(mss=1460)


def test_checksum_verification_can_be_skipped() -> None:
    assert tcp.parse(_flip(SYN, 3), SRC, DST, verify_checksum=False).dst_port == 80 ^ 1
    assert ipv4.parse(_flip(IP_TCP, 8), verify_checksum=False).ttl == 65
    assert udp.parse(UDP_RAW[:6] + b"\x00\x00" + UDP_RAW[8:], SRC, DST).payload == b"hello"


# --- fuzzing: only MalformedPacket may escape ------------------------------------

PARSERS: dict[str, Callable[[bytes], object]] = {
    "ethernet": ethernet.parse,
    "arp": arp.parse,
    "ipv4": ipv4.parse,
    "icmp": icmp.parse,
    "udp": lambda b: udp.parse(b, SRC, DST),
    "tcp": lambda b: tcp.parse(b, SRC, DST),
    "tcp-options": tcp.parse_options,
}
VALID = {
    "ethernet": ethernet.build(ethernet.EthernetFrame(b"\xff" * 6, b"\x02" * 6, 0x0800, IP_TCP)),
    "arp": ARP_RAW,
    "ipv4": IP_TCP,
    "icmp": ICMP_RAW,
    "udp": UDP_RAW,
    "tcp": SYN,
    "tcp-options": SYN[20:],
}


def _only_malformed(name: str, data: bytes) -> None:
    try:
        PARSERS[name](data)
    except MalformedPacket as exc:
        assert exc.reason in MalformedPacket.REASONS, exc.reason
        assert exc.layer == name.split("-")[0]


@settings(max_examples=400)
@given(st.sampled_from(sorted(PARSERS)), st.binary(max_size=120))
def test_fuzz_random_bytes(name: str, data: bytes) -> None:
    _only_malformed(name, data)


@settings(max_examples=1500)
@given(
    st.sampled_from(sorted(PARSERS)),
    st.lists(st.tuples(st.integers(0, 200), s.u8), max_size=4),
    st.integers(0, 200),
)
def test_fuzz_mutated_valid_packets(name: str, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(VALID[name])
    for index, value in edits:
        if index < len(data):
            data[index] = value
    _only_malformed(name, bytes(data[: len(data) - cut % (len(data) + 1)]))


@settings(max_examples=300)
@given(s.tcp_segments, st.integers(0, 59), s.u8)
def test_fuzz_tcp_header_bytes(seg: tcp.TcpSegment, index: int, value: int) -> None:
    raw = bytearray(tcp.build(seg, SRC, DST))
    if index < len(raw):
        raw[index] = value
    try:
        tcp.parse(bytes(raw), SRC, DST, verify_checksum=False)
    except MalformedPacket as exc:
        assert exc.reason in {"bad-data-offset", "bad-option"}
