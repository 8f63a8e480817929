"""tcpdump-style summaries, checked against tcpdump itself reading the same frames."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from synack.errors import LocalProtocolError
from synack.wire import arp, ethernet, icmp, ipv4, tcp, udp
from synack.wire.pcap import LINKTYPE_RAW, write_pcap
from synack.wire.summary import summarize, summarize_tcp, tcp_flags_text, tcp_options_text

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
F = tcp.TcpFlags


def eth_ip(
    proto: int, payload: bytes, src: IPv4Address = A, dst: IPv4Address = B, **ip: object
) -> bytes:
    packet = ipv4.Ipv4Packet(src, dst, proto, payload, **ip)  # type: ignore[arg-type]
    return ethernet.build(
        ethernet.EthernetFrame(MAC_B, MAC_A, ethernet.ETHERTYPE_IPV4, ipv4.build(packet))
    )


def tcp_frame(seg: tcp.TcpSegment) -> bytes:
    return eth_ip(ipv4.PROTO_TCP, tcp.build(seg, A, B))


def test_flags_letters() -> None:
    assert tcp_flags_text(F.SYN) == "S"
    assert tcp_flags_text(F.SYN | F.ACK) == "S."
    assert tcp_flags_text(F.FIN | F.ACK | F.PSH) == "FP."
    assert tcp_flags_text(F.ECE | F.CWR | F.SYN) == "SEW"
    assert tcp_flags_text(F(0)) == "none"


def test_segment_summary() -> None:
    opts = tcp.TcpOptions(mss=1460, sack_permitted=True, timestamps=(10, 0), wscale=7)
    seg = tcp.TcpSegment(40000, 80, 1000, 0, F.SYN, 64240, options=opts)
    assert summarize_tcp(seg) == (
        "Flags [S], seq 1000, win 64240, options [mss 1460,sackOK,TS val 10 ecr 0,wscale 7], length 0"
    )
    data = tcp.TcpSegment(40000, 80, 4294967295, 7, F.PSH | F.ACK, 502, b"hi")
    assert summarize_tcp(data) == "Flags [P.], seq 4294967295:1, ack 7, win 502, length 2"
    assert tcp_options_text(
        tcp.TcpOptions(sack_blocks=((1, 2), (5, 9)), unknown=((99, b"\x01"),))
    ) == ("sack 2 {1:2}{5:9},unknown-99 0x01")


def test_frame_summaries() -> None:
    assert summarize(tcp_frame(tcp.TcpSegment(40000, 80, 1, 2, F.ACK, 100))) == (
        "IP 10.213.0.1.40000 > 10.213.0.2.80: Flags [.], ack 2, win 100, length 0"
    )
    who_has = arp.ArpPacket(arp.OP_REQUEST, MAC_A, A, bytes(6), B)
    frame = ethernet.build(
        ethernet.EthernetFrame(
            ethernet.BROADCAST, MAC_A, ethernet.ETHERTYPE_ARP, arp.build(who_has)
        )
    )
    assert summarize(frame) == "ARP, Request who-has 10.213.0.2 tell 10.213.0.1, length 28"
    assert summarize(frame, link=True).startswith(
        "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: ARP, Request"
    )
    quoted = ipv4.build(
        ipv4.Ipv4Packet(B, A, ipv4.PROTO_UDP, udp.build(udp.UdpDatagram(5000, 9, b"x"), B, A))
    )[:28]
    unreach = eth_ip(ipv4.PROTO_ICMP, icmp.build(icmp.IcmpMessage(3, 3, 0, quoted)))
    assert (
        summarize(unreach)
        == "IP 10.213.0.1 > 10.213.0.2: ICMP 10.213.0.1 udp port 9 unreachable, length 36"
    )
    raw_ip = ipv4.build(
        ipv4.Ipv4Packet(A, B, ipv4.PROTO_ICMP, icmp.build(icmp.echo(8, 1, 2, b"abcd")))
    )
    assert (
        summarize(raw_ip, LINKTYPE_RAW)
        == "IP 10.213.0.1 > 10.213.0.2: ICMP echo request, id 1, seq 2, length 12"
    )


def test_damaged_frames_still_summarise() -> None:
    good = tcp_frame(tcp.TcpSegment(40000, 80, 1, 2, F.ACK, 100))
    bad_tcp = good[:-1] + bytes((good[-1] ^ 0xFF,))
    assert summarize(bad_tcp).endswith("win 100, length 0 [tcp bad-checksum]")
    bad_off = good[:46] + b"\x30" + good[47:]
    assert summarize(bad_off) == "IP 10.213.0.1.40000 > 10.213.0.2.80: [tcp bad-data-offset]"
    assert summarize(good[:20]) == "IP [ipv4 truncated]"
    assert summarize(b"\x00" * 5) == "[ethernet truncated]"
    bad_ip = good[:22] + bytes((good[22] ^ 1,)) + good[23:]
    assert summarize(bad_ip).endswith("[ipv4 bad-checksum]")


def _random_frames(rng: random.Random, count: int) -> list[bytes]:
    frames = []
    for i in range(count):
        kind = i % 5
        if kind <= 2:
            opts = tcp.TcpOptions(
                mss=rng.choice([None, rng.randrange(0x10000)]),
                wscale=rng.choice([None, rng.randrange(15)]),
                sack_permitted=rng.random() < 0.5,
                timestamps=rng.choice([None, (rng.randrange(1 << 32), rng.randrange(1 << 32))]),
                sack_blocks=tuple(
                    (rng.randrange(1 << 32), rng.randrange(1 << 32))
                    for _ in range(rng.randrange(2))
                ),
                unknown=tuple(
                    (k, rng.randbytes(rng.randrange(3)))
                    for k in rng.sample([99, 100, 200, 250], rng.randrange(2))
                ),
            )
            try:
                tcp.build_options(opts)
            except LocalProtocolError:  # more than the 40 option octets a header holds
                opts = tcp.NO_OPTIONS
            seg = tcp.TcpSegment(
                40000 + rng.randrange(100),
                40100 + rng.randrange(100),
                rng.randrange(1 << 32),
                rng.randrange(1 << 32),
                F(rng.randrange(256)),
                rng.randrange(1 << 16),
                rng.randbytes(rng.choice([0, 0, 1, 100])),
                opts,
                rng.randrange(1 << 16),
            )
            frames.append(tcp_frame(seg))
        elif kind == 3:
            dg = udp.UdpDatagram(
                40000 + rng.randrange(100),
                40100 + rng.randrange(100),
                rng.randbytes(rng.randrange(50)),
            )
            frames.append(eth_ip(ipv4.PROTO_UDP, udp.build(dg, A, B)))
        else:
            msg = icmp.echo(
                rng.choice([0, 8]),
                rng.randrange(1 << 16),
                rng.randrange(1 << 16),
                rng.randbytes(rng.randrange(40)),
            )
            frames.append(eth_ip(ipv4.PROTO_ICMP, icmp.build(msg)))
    return frames


def _special_frames() -> list[bytes]:
    """ARP, every ICMP error summary, and fragments."""
    quoted_udp = ipv4.build(
        ipv4.Ipv4Packet(B, A, ipv4.PROTO_UDP, udp.build(udp.UdpDatagram(40005, 40009, b"x"), B, A))
    )
    quoted_tcp = ipv4.build(
        ipv4.Ipv4Packet(
            B, A, ipv4.PROTO_TCP, tcp.build(tcp.TcpSegment(40005, 40009, 1, 0, F.SYN, 100), B, A)
        )
    )
    request = arp.ArpPacket(arp.OP_REQUEST, MAC_A, A, bytes(6), B)
    reply = arp.ArpPacket(arp.OP_REPLY, MAC_B, B, MAC_A, A)
    frames = [
        ethernet.build(
            ethernet.EthernetFrame(ethernet.BROADCAST, MAC_A, 0x0806, arp.build(request))
        ),
        ethernet.build(ethernet.EthernetFrame(MAC_A, MAC_B, 0x0806, arp.build(reply))),
    ]
    for type_, code, rest, quoted in [
        (3, 3, 0, quoted_udp),
        (3, 3, 0, quoted_tcp),
        (3, 0, 0, quoted_udp),
        (3, 1, 0, quoted_udp),
        (3, 2, 0, quoted_udp),
        (3, 4, 1400, quoted_udp),
        (11, 0, 0, quoted_udp),
        (11, 1, 0, quoted_udp),
    ]:
        frames.append(
            eth_ip(ipv4.PROTO_ICMP, icmp.build(icmp.IcmpMessage(type_, code, rest, quoted[:28])))
        )
    whole = udp.build(udp.UdpDatagram(40000, 40001, b"x" * 40), A, B)
    frames.append(eth_ip(ipv4.PROTO_UDP, whole[:32], ident=9, more_fragments=True))
    frames.append(eth_ip(ipv4.PROTO_UDP, whole[32:], ident=9, frag_offset=4))
    return frames


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_summaries_match_tcpdump(tmp_path: Path) -> None:
    frames = _random_frames(random.Random(4), 150) + _special_frames()
    path = tmp_path / "frames.pcap"
    write_pcap(path, [(1_700_000_000 + i, f) for i, f in enumerate(frames)])
    out = subprocess.run(
        ["tcpdump", "-nn", "-t", "-S", "-r", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert len(out) == len(frames)
    for frame, theirs in zip(frames, out, strict=True):
        # tcpdump shows the NOP/EOL padding; synack's representation drops it.
        theirs = re.sub(r"(nop,|,nop|,eol|eol,)", "", theirs)
        # synack adds the fragment fields tcpdump shows only with -v.
        ours = re.sub(r" \(frag [^)]*\)$", "", summarize(frame))
        assert theirs.startswith(ours), f"\n ours:    {ours}\n tcpdump: {theirs}"
