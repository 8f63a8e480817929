"""The header helpers the stack's fast paths use (wire owns every layout)."""

from __future__ import annotations

from ipaddress import IPv4Address

from synack.wire import icmp as wicmp
from synack.wire import ipv4 as wip
from synack.wire import udp as wudp
from synack.wire.checksum import finish, fold, ones_sum

SRC, DST = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")


def test_fold_carries_end_around() -> None:
    assert fold(0x1234) == 0x1234
    assert fold(0x1FFFF) == 0x0001  # 0xFFFF plus a carry of 1 wraps round
    assert fold(0xFFFF_FFFF) == 0xFFFF
    assert fold(0x3_0002) == 0x0005


def test_udp_offload_header_completes_to_the_real_datagram() -> None:
    payload = b"hello offload"
    head = wudp.build_header_offload(1234, 53, len(payload), SRC, DST)
    off = wudp.CHECKSUM_AT
    # What the link does (virtio NEEDS_CSUM): sum header (with the partial) and payload.
    csum = finish(ones_sum(head) + ones_sum(payload))
    done = head[:off] + csum.to_bytes(2, "big") + head[off + 2 :] + payload
    assert done == wudp.build(wudp.UdpDatagram(1234, 53, payload), SRC, DST)
    assert wudp.parse(done, SRC, DST).payload == payload


def test_eth_ipv4_header_layout_matches_the_ipv4_builder() -> None:
    pkt = wip.Ipv4Packet(SRC, DST, wip.PROTO_UDP, bytes(8), ttl=64, ident=7, dont_fragment=True)
    raw = wip.build(pkt)
    ttl_proto = 64 << 8 | wip.PROTO_UDP
    csum = int.from_bytes(raw[10:12], "big")
    head = wip.ETH_IPV4_HEADER.pack(
        b"\x02" * 6,
        b"\x04" * 6 + b"\x08\x00",
        0x45,
        0,
        28,
        7,
        wip.FLAG_DF,
        ttl_proto,
        csum,
        int(SRC),
        int(DST),
    )
    assert len(head) == wip.ETH_IPV4_HEADER_LEN == 34
    assert head[14:] == raw[:20]


def test_parse_quote_reads_addresses_protocol_and_ports() -> None:
    inner = wudp.build(wudp.UdpDatagram(4000, 53, b"q"), SRC, DST)
    quoted = wip.build(wip.Ipv4Packet(SRC, DST, wip.PROTO_UDP, inner))[:28]
    q = wicmp.parse_quote(quoted)
    assert q == wicmp.Quote(SRC, DST, wip.PROTO_UDP, 4000, 53)
    assert wicmp.parse_quote(quoted[:27]) is None  # header + 8 octets, or nothing
    assert wicmp.parse_quote(b"\x60" + quoted[1:]) is None  # not IPv4
