from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import dpkt

from synack.links.capture import Capture
from tests.stack.netfix import two_hosts


def test_host_capture_reads_back_with_dpkt(tmp_path: Path) -> None:
    lan, a, _ = two_hosts()
    path = tmp_path / "a.pcap"
    with Capture(path, time_offset=1_700_000_000.0) as cap:
        a.observers.append(cap)
        a.ping(IPv4Address("10.213.0.2"), 1, 1, b"pcap!", lan.now)
        lan.run()
    with path.open("rb") as f:
        records = list(dpkt.pcap.Reader(f))
    assert len(records) == 4  # ARP request/reply, echo request/reply
    kinds = []
    for ts, raw in records:
        assert ts >= 1_700_000_000
        eth = dpkt.ethernet.Ethernet(raw)
        kinds.append(type(eth.data).__name__)
    assert kinds == ["ARP", "ARP", "IP", "IP"]
    icmp = dpkt.ethernet.Ethernet(records[3][1]).data.data
    assert icmp.type == 0 and icmp.data.data == b"pcap!"


def test_lan_tap_captures_every_wire(tmp_path: Path) -> None:
    lan, a, b = two_hosts()
    path = tmp_path / "lan.pcap"
    cap = Capture(path)
    lan.taps.append(cap.tap)
    ep = b.udp_open(9)
    a.udp_open().sendto(b"x", (IPv4Address("10.213.0.2"), 9), lan.now)
    lan.run()
    cap.close()
    assert ep.recvfrom() is not None
    with path.open("rb") as f:
        n = len(list(dpkt.pcap.Reader(f)))
    # ARP request, ARP reply and the datagram, each on two wires
    # (host -> switch, switch -> host).
    assert n == cap.frames == 6
