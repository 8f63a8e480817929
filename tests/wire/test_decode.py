"""The one frame decoder, and the pieces of layout and arithmetic the wire modules share."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synack.wire import arp, ethernet, icmp, ipv4, options, tcp, udp, virtio
from synack.wire.checksum import finish, fold, internet_checksum, ones_sum
from synack.wire.decode import checksums_ok, decode, parse_quoted_ipv4
from synack.wire.errors import MalformedPacket
from synack.wire.pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW

A = IPv4Address("10.7.0.1")
B = IPv4Address("10.7.0.2")
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def eth(payload: bytes, ethertype: int = ethernet.ETHERTYPE_IPV4) -> bytes:
    return ethernet.build(ethernet.EthernetFrame(MAC_B, MAC_A, ethertype, payload))


def ip(proto: int, payload: bytes, **kw: object) -> bytes:
    return ipv4.build(ipv4.Ipv4Packet(A, B, proto, payload, **kw))  # type: ignore[arg-type]


SEG = tcp.TcpSegment(40000, 80, 1000, 2000, tcp.TcpFlags.ACK, 512, b"hello")
TCP_FRAME = eth(ip(ipv4.PROTO_TCP, tcp.build(SEG, A, B)))


def test_every_layer_and_where_it_starts() -> None:
    d = decode(TCP_FRAME)
    assert d.ethernet is not None and d.ethernet.src == MAC_A
    assert d.ipv4 is not None and (d.ipv4.src, d.ipv4.dst) == (A, B)
    assert d.tcp == SEG and d.udp is None and d.icmp is None and d.arp is None
    assert (d.ip_at, d.transport_at) == (14, 34)
    assert d.fault is None and d.error is None and d.bad_checksums == ()
    raw = decode(TCP_FRAME[14:], LINKTYPE_RAW)
    assert raw.ethernet is None and raw.tcp == SEG and (raw.ip_at, raw.transport_at) == (0, 20)


def test_arp_udp_icmp_and_other_ethertypes() -> None:
    request = arp.ArpPacket(arp.OP_REQUEST, MAC_A, A, bytes(6), B)
    assert decode(eth(arp.build(request), ethernet.ETHERTYPE_ARP)).arp == request
    dgram = udp.UdpDatagram(5000, 53, b"q")
    assert decode(eth(ip(ipv4.PROTO_UDP, udp.build(dgram, A, B)))).udp == dgram
    echo = icmp.echo(icmp.TYPE_ECHO_REQUEST, 7, 1, b"ping")
    assert decode(eth(ip(ipv4.PROTO_ICMP, icmp.build(echo)))).icmp == echo
    other = decode(eth(b"\x60" + bytes(40), 0x86DD))
    assert other.ethernet is not None and other.ipv4 is None and other.fault is None
    gre = decode(eth(ip(47, b"tunnel")))
    assert gre.ipv4 is not None and gre.transport_at is None and gre.fault is None


@pytest.mark.parametrize(
    ("frame", "layer", "reason", "kept"),
    [
        (TCP_FRAME[:10], "ethernet", "truncated", ()),
        (
            eth(b"\x00\x01\x08\x00\x06\x04\x00\x01", ethernet.ETHERTYPE_ARP),
            "arp",
            "truncated",
            ("ethernet",),
        ),
        (TCP_FRAME[:30], "ipv4", "truncated", ("ethernet",)),
        (TCP_FRAME[:14] + b"\x65" + TCP_FRAME[15:], "ipv4", "bad-version", ("ethernet",)),
        (
            eth(ip(ipv4.PROTO_TCP, tcp.build(SEG, A, B)[:12])),
            "tcp",
            "truncated",
            ("ethernet", "ipv4"),
        ),
        (
            eth(ip(ipv4.PROTO_UDP, b"\x00\x01\x00\x02\x00\x04\x00\x00")),
            "udp",
            "bad-length",
            ("ethernet", "ipv4"),
        ),
    ],
)
def test_a_malformed_layer_stops_decoding_and_says_which_and_why(
    frame: bytes, layer: str, reason: str, kept: tuple[str, ...]
) -> None:
    d = decode(frame)
    assert d.fault is not None and (d.fault.layer, d.fault.reason) == (layer, reason)
    assert d.error == f"{layer}: {reason}"
    present = tuple(name for name in ("ethernet", "ipv4") if getattr(d, name) is not None)
    assert present == kept
    assert d.tcp is None and d.udp is None and d.arp is None


def test_unknown_link_type_is_a_fault_not_an_exception() -> None:
    d = decode(b"abc", 147)
    assert d.fault is not None and (d.fault.layer, d.fault.reason) == ("pcap", "unsupported")


def test_bad_checksums_are_listed_and_decoding_goes_on() -> None:
    bad = bytearray(TCP_FRAME)
    bad[34 + tcp.CHECKSUM_AT] ^= 0xFF
    bad[14 + ipv4.CHECKSUM_AT] ^= 0xFF
    assert decode(bytes(bad)).bad_checksums == ()  # not verified unless asked
    d = decode(bytes(bad), verify=True)
    assert d.tcp == SEG and d.fault is None
    assert [(e.layer, e.reason) for e in d.bad_checksums] == [
        ("ipv4", "bad-checksum"),
        ("tcp", "bad-checksum"),
    ]
    assert checksums_ok(TCP_FRAME) and not checksums_ok(bytes(bad))


def test_first_fragment_transport_is_decoded_unless_asked_not_to() -> None:
    payload = tcp.build(tcp.TcpSegment(1, 2, 3, 4, tcp.TcpFlags.ACK, 5, bytes(60)), A, B)
    first = eth(ip(ipv4.PROTO_TCP, payload[:40], more_fragments=True))
    d = decode(first, verify=True)
    assert d.tcp is not None and d.tcp.src_port == 1 and d.bad_checksums == ()  # not checkable
    assert decode(first, first_fragment=False).tcp is None
    later = decode(eth(ip(ipv4.PROTO_TCP, payload[40:], frag_offset=5)))
    assert later.ipv4 is not None and later.tcp is None and later.transport_at is None


def test_quoted_header_parses_though_cut_short() -> None:
    original = ip(ipv4.PROTO_UDP, udp.build(udp.UdpDatagram(5000, 9, bytes(100)), A, B))
    quoted = parse_quoted_ipv4(original[:28])
    assert (quoted.dst, quoted.proto, len(quoted.payload)) == (B, ipv4.PROTO_UDP, 8)
    with pytest.raises(MalformedPacket):
        parse_quoted_ipv4(original[:12])


@given(st.binary(max_size=200), st.sampled_from([LINKTYPE_ETHERNET, LINKTYPE_RAW]))
def test_decode_never_raises(data: bytes, linktype: int) -> None:
    d = decode(data, linktype, verify=True)
    assert d.fault is None or d.fault.reason in MalformedPacket.REASONS


def test_fold_is_the_end_around_carry() -> None:
    rng = random.Random(5)
    for total in [0, 1, 0xFFFF, 0x10000, 0x1FFFE, *(rng.getrandbits(40) for _ in range(500))]:
        carry = total
        while carry >> 16:
            carry = (carry & 0xFFFF) + (carry >> 16)
        assert fold(total) == carry
        assert finish(total) == 0xFFFF - carry
    data = bytes(rng.getrandbits(8) for _ in range(101))
    assert internet_checksum(data) == 0xFFFF - fold(ones_sum(data))


def test_options_walk() -> None:
    opts = b"\x01\x02\x04\x05\xb4\x01\x03\x03\x07\x00\xff"
    assert list(options.walk(opts, "tcp")) == [(2, 1, 4), (3, 6, 3)]  # stops at EOL
    for bad in (b"\x02", b"\x02\x01", b"\x01\x02\x09\x00"):
        with pytest.raises(MalformedPacket) as exc:
            list(options.walk(bad, "ipv4"))
        assert (exc.value.layer, exc.value.reason) == ("ipv4", "bad-option")


def test_layout_offsets_match_the_parsers() -> None:
    seg = tcp.build(SEG, A, B)
    at = tcp.SEQ_AT
    assert int.from_bytes(seg[at : at + 4], "big") == SEG.seq
    at = tcp.WINDOW_AT
    assert int.from_bytes(seg[at : at + 2], "big") == SEG.window
    packet = ip(ipv4.PROTO_TCP, seg, ttl=33)
    assert packet[ipv4.TTL_AT] == 33 and packet[ipv4.PROTO_AT] == ipv4.PROTO_TCP
    assert IPv4Address(packet[ipv4.DST_AT : ipv4.DST_AT + 4]) == B
    at = ethernet.ETHERTYPE_AT
    assert int.from_bytes(TCP_FRAME[at : at + 2], "big") == ethernet.ETHERTYPE_IPV4


def test_virtio_headers() -> None:
    assert bytes(virtio.HEADER_LEN) == virtio.NO_OFFLOAD
    assert not virtio.checksum_vouched(virtio.NO_OFFLOAD)
    partial = virtio.needs_csum(34, tcp.CHECKSUM_AT)
    assert len(partial) == virtio.HEADER_LEN and virtio.checksum_vouched(partial)
    tso = virtio.tso_tcpv4(34, 32, 1500)
    # flags, GSO TCPv4, headers end at 66, 1500 - 20 - 32 octets per segment, csum at 34+16
    assert tso == bytes([1, 1]) + (66).to_bytes(2, "little") + (1448).to_bytes(2, "little") + (
        34
    ).to_bytes(2, "little") + (16).to_bytes(2, "little")
