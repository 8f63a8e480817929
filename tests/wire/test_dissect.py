"""Layer-by-layer dissection: every field's bytes are where it says, damage stays local."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from synack.wire import arp, ethernet, icmp, ipv4, tcp, udp
from synack.wire.dissect import Dissection, dissect
from synack.wire.pcap import LINKTYPE_RAW
from tests.wire import strategies as s
from tests.wire.test_summary import MAC_A, MAC_B, A, B, eth_ip, tcp_frame

F = tcp.TcpFlags
SYN = tcp.TcpSegment(
    40000,
    80,
    123456,
    0,
    F.SYN,
    64240,
    options=tcp.TcpOptions(mss=1460, sack_permitted=True, timestamps=(7, 0), wscale=7),
)


def field_bytes(d: Dissection, layer: str, name: str) -> bytes:
    found = d.layer(layer)
    assert found is not None, [x.name for x in d]
    (f,) = [f for f in found.fields if f.name == name]
    return d.frame[f.byte_offset : f.byte_offset + f.byte_length]


def field_text(d: Dissection, layer: str, name: str) -> str:
    found = d.layer(layer)
    assert found is not None
    (f,) = [f for f in found.fields if f.name == name]
    return f.value_text


def check_ranges(d: Dissection) -> None:
    for layer in d:
        assert 0 <= layer.byte_offset <= len(d.frame)
        assert layer.byte_offset + layer.byte_length <= len(d.frame)
        for f in layer.fields:
            assert f.byte_length > 0
            assert layer.byte_offset <= f.byte_offset
            assert f.byte_offset + f.byte_length <= layer.byte_offset + layer.byte_length
    assert d.frame[d.payload_offset : d.payload_offset + len(d.payload)] == d.payload


def test_tcp_syn_frame() -> None:
    frame = tcp_frame(SYN)
    d = dissect(frame)
    check_ranges(d)
    assert [x.name for x in d] == ["Ethernet", "IPv4", "TCP"]
    assert [(x.byte_offset, x.byte_length) for x in d] == [(0, 14), (14, 20), (34, 40)]
    assert d.error is None and d.payload == b"" and d.payload_offset == len(frame)
    assert field_bytes(d, "Ethernet", "Source") == MAC_A
    assert field_bytes(d, "IPv4", "Destination") == B.packed
    assert field_bytes(d, "TCP", "Sequence number") == (123456).to_bytes(4, "big")
    assert field_text(d, "TCP", "Flags").startswith("0x02 [S]")
    assert field_text(d, "TCP", "MSS") == "1460 bytes"
    assert field_text(d, "TCP", "Timestamps") == "TSval 7, TSecr 0"
    assert field_text(d, "TCP", "Window scale") == "7 (multiply by 128)"
    assert field_text(d, "TCP", "Checksum").endswith("(correct)")
    assert field_text(d, "IPv4", "Header checksum").endswith("(correct)")
    assert field_bytes(d, "TCP", "MSS") == b"\x02\x04\x05\xb4"
    ihl = next(f for f in d[1].fields if f.name == "IHL")
    assert (ihl.byte_offset, ihl.bit_mask) == (14, 0x0F)
    assert d.summary.startswith("IP 10.213.0.1.40000 > 10.213.0.2.80: Flags [S], seq 123456")


def test_payload_and_padding() -> None:
    dg = udp.UdpDatagram(5000, 9, b"hi")
    frame = eth_ip(ipv4.PROTO_UDP, udp.build(dg, A, B)) + bytes(60 - 44)  # padded to 60
    d = dissect(frame)
    check_ranges(d)
    assert [x.name for x in d] == ["Ethernet", "IPv4", "UDP", "Ethernet padding"]
    assert d.payload == b"hi" and d.payload_offset == 42
    assert d[3].byte_offset == 44 and d[3].byte_length == 16


def test_arp_and_icmp_error_with_quote() -> None:
    who = arp.ArpPacket(arp.OP_REQUEST, MAC_A, A, bytes(6), B)
    d = dissect(
        ethernet.build(ethernet.EthernetFrame(ethernet.BROADCAST, MAC_A, 0x0806, arp.build(who)))
    )
    check_ranges(d)
    assert [x.name for x in d] == ["Ethernet", "ARP"]
    assert field_text(d, "ARP", "Opcode") == "1 (request)"
    assert field_text(d, "Ethernet", "Destination") == "ff:ff:ff:ff:ff:ff (broadcast)"
    assert field_bytes(d, "ARP", "Target IP") == B.packed

    quoted = ipv4.build(
        ipv4.Ipv4Packet(B, A, ipv4.PROTO_UDP, udp.build(udp.UdpDatagram(5000, 9, b"xyz"), B, A))
    )[:28]
    d = dissect(eth_ip(ipv4.PROTO_ICMP, icmp.build(icmp.IcmpMessage(3, 3, 0, quoted))))
    check_ranges(d)
    assert [x.name for x in d] == ["Ethernet", "IPv4", "ICMP", "IPv4 (quoted)", "UDP (quoted)"]
    assert d.error is None
    assert field_text(d, "UDP (quoted)", "Destination port") == "9"


def test_raw_ip_linktype() -> None:
    raw = ipv4.build(
        ipv4.Ipv4Packet(A, B, ipv4.PROTO_ICMP, icmp.build(icmp.echo(8, 3, 4, b"data")))
    )
    d = dissect(raw, LINKTYPE_RAW)
    assert [x.name for x in d] == ["IPv4", "ICMP"]
    assert field_text(d, "ICMP", "Sequence number") == "4"
    assert d.payload == b"data"


def test_bad_checksum_is_shown_and_dissection_goes_on() -> None:
    frame = bytearray(tcp_frame(tcp.TcpSegment(40000, 80, 1, 1, F.ACK | F.PSH, 10, b"payload")))
    frame[50] ^= 0xFF  # TCP checksum
    d = dissect(bytes(frame))
    assert [x.name for x in d] == ["Ethernet", "IPv4", "TCP"]
    assert d.error is not None and (d.error.layer, d.error.reason) == ("tcp", "bad-checksum")
    assert d[2].error is d.error
    (cks,) = [f for f in d[2].fields if f.name == "Checksum"]
    assert cks.problem == "bad-checksum" and "should be" in cks.value_text
    assert d.payload == b"payload"


def test_malformed_inner_layer_keeps_outer_layers() -> None:
    frame = bytearray(tcp_frame(SYN))
    frame[46] = 0xF0  # data offset 15 = 60 octets, past the segment's end
    d = dissect(bytes(frame))
    check_ranges(d)
    assert [x.name for x in d] == ["Ethernet", "IPv4", "TCP"]
    assert d[0].error is None and d[1].error is None
    assert d[2].error is not None and d[2].error.reason == "bad-data-offset"
    assert field_text(d, "TCP", "Destination port") == "80"


def test_truncated_ip_keeps_ethernet() -> None:
    d = dissect(tcp_frame(SYN)[:30])
    check_ranges(d)
    assert [x.name for x in d] == ["Ethernet", "IPv4"]
    assert d.error is not None and (d.error.layer, d.error.reason) == ("ipv4", "truncated")
    assert field_text(d, "IPv4", "TTL") == "64"
    assert "Destination" not in [f.name for f in d[1].fields]


def test_bad_tcp_option_is_marked() -> None:
    raw = bytearray(tcp.build(SYN, A, B))
    raw[21] = 9  # MSS option length 9 runs into the next options
    from synack.wire.checksum import finish, ones_sum

    raw[16:18] = b"\x00\x00"
    raw[16:18] = finish(int(A) + int(B) + 6 + len(raw) + ones_sum(raw)).to_bytes(2, "big")
    d = dissect(eth_ip(ipv4.PROTO_TCP, bytes(raw)))
    assert d.error is not None and d.error.reason == "bad-option"
    assert any(f.problem == "bad-option" for f in d[2].fields)


@settings(max_examples=200)
@given(s.tcp_segments)
def test_every_tcp_frame_dissects_cleanly(seg: tcp.TcpSegment) -> None:
    d = dissect(tcp_frame(seg))
    check_ranges(d)
    assert d.error is None
    assert d.payload == seg.payload
    assert field_bytes(d, "TCP", "Acknowledgment number") == seg.ack.to_bytes(4, "big")
    assert field_bytes(d, "TCP", "Window") == seg.window.to_bytes(2, "big")


@settings(max_examples=500)
@given(
    st.sampled_from(["tcp", "udp", "icmp", "arp", "ipopt"]),
    st.lists(st.tuples(st.integers(0, 90), s.u8), max_size=5),
    st.integers(0, 90),
)
def test_fuzz_dissect_never_raises(kind: str, edits: list[tuple[int, int]], cut: int) -> None:
    if kind == "tcp":
        frame = tcp_frame(SYN)
    elif kind == "udp":
        frame = eth_ip(ipv4.PROTO_UDP, udp.build(udp.UdpDatagram(1, 2, b"abc"), A, B))
    elif kind == "icmp":
        quoted = ipv4.build(ipv4.Ipv4Packet(B, A, 6, tcp.build(SYN, B, A)))[:28]
        frame = eth_ip(ipv4.PROTO_ICMP, icmp.build(icmp.IcmpMessage(11, 0, 0, quoted)))
    elif kind == "ipopt":
        frame = eth_ip(99, b"x" * 10, options=b"\x01\x07\x03\x00")
    else:
        frame = ethernet.build(
            ethernet.EthernetFrame(
                MAC_B, MAC_A, 0x0806, arp.build(arp.ArpPacket(2, MAC_A, A, MAC_B, B))
            )
        )
    data = bytearray(frame)
    for index, value in edits:
        if index < len(data):
            data[index] = value
    d = dissect(bytes(data[: max(0, len(data) - cut)]))
    check_ranges(d)
    assert isinstance(d.summary, str)


@settings(max_examples=300)
@given(st.binary(max_size=100), st.sampled_from([1, 101, 7]))
def test_fuzz_dissect_random_bytes(data: bytes, linktype: int) -> None:
    d = dissect(data, linktype)
    check_ranges(d)


def test_addresses_are_ipv4address() -> None:
    assert IPv4Address(field_bytes(dissect(tcp_frame(SYN)), "IPv4", "Source")) == A
