"""Hypothesis strategies for every wire representation (shared by the wire tests)."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import strategies as st

from synack.errors import LocalProtocolError
from synack.wire import arp, ethernet, icmp, ipv4, tcp, udp

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
macs = st.binary(min_size=6, max_size=6)
addresses = st.builds(IPv4Address, u32)
payloads = st.binary(max_size=300)

UNKNOWN_KINDS = [k for k in range(2, 256) if k not in tcp.KNOWN_OPTIONS]


def _options_fit(options: tcp.TcpOptions) -> bool:
    try:
        tcp.build_options(options)
    except LocalProtocolError:
        return False
    return True


tcp_options = st.builds(
    tcp.TcpOptions,
    mss=st.none() | u16,
    wscale=st.none() | u8,
    sack_permitted=st.booleans(),
    sack_blocks=st.lists(st.tuples(u32, u32), max_size=3).map(tuple),
    timestamps=st.none() | st.tuples(u32, u32),
    unknown=st.lists(
        st.tuples(st.sampled_from(UNKNOWN_KINDS), st.binary(max_size=6)), max_size=2
    ).map(tuple),
).filter(_options_fit)

tcp_segments = st.builds(
    tcp.TcpSegment,
    src_port=u16,
    dst_port=u16,
    seq=u32,
    ack=u32,
    flags=u8.map(tcp.TcpFlags),
    window=u16,
    payload=payloads,
    options=st.just(tcp.NO_OPTIONS) | tcp_options,
    urgent=u16,
)

udp_datagrams = st.builds(udp.UdpDatagram, u16, u16, payloads)

icmp_messages = st.builds(icmp.IcmpMessage, u8, u8, u32, payloads)


def _ip_option_blocks() -> st.SearchStrategy[bytes]:
    """Valid raw IPv4 options: NOPs and TLVs, EOL-padded to a multiple of 4."""
    tlv = st.tuples(st.integers(2, 255), st.binary(max_size=6)).map(
        lambda kd: bytes((kd[0], 2 + len(kd[1]))) + kd[1]
    )
    one = st.just(b"\x01") | tlv

    def pad(raw: bytes) -> bytes:
        return raw + bytes(-len(raw) % 4)

    return (
        st.lists(one, max_size=4)
        .map(lambda parts: pad(b"".join(parts)))
        .filter(lambda o: len(o) <= 40)
    )


ip_options = _ip_option_blocks()

ipv4_packets = st.builds(
    ipv4.Ipv4Packet,
    src=addresses,
    dst=addresses,
    proto=u8,
    payload=payloads,
    ttl=u8,
    ident=u16,
    dscp=st.integers(0, 63),
    ecn=st.integers(0, 3),
    dont_fragment=st.booleans(),
    more_fragments=st.booleans(),
    frag_offset=st.integers(0, 0x1FFF),
    options=st.just(b"") | ip_options,
)

ethernet_frames = st.builds(
    ethernet.EthernetFrame, macs, macs, st.integers(0x0600, 0xFFFF), payloads
)

arp_packets = st.builds(
    arp.ArpPacket, st.sampled_from([1, 2]) | u16, macs, addresses, macs, addresses
)
