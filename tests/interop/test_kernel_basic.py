"""synack's host against the Linux kernel over TAP: ARP, ICMP, UDP."""

from __future__ import annotations

import asyncio
import random
from ipaddress import IPv4Interface

import pytest

from synack.adapters.driver import HostDriver
from synack.links.tap import TapLink
from synack.stack.host import Host, HostConfig
from tests.interop.nsnet import NsNet, nsnet
from tests.support import requires_root_tun

pytestmark = [requires_root_tun, pytest.mark.root]

MAC = b"\x02\x53\x59\x4e\x00\x02"


def driver(net: NsNet) -> HostDriver:
    host = Host(
        HostConfig(mac=MAC, interface=IPv4Interface(net.synack_cidr), mtu=net.mtu, name="synack"),
        rng=random.Random(1),
    )
    d = HostDriver(host, TapLink(net.tap))
    d.start()
    return d


KERNEL_PING = """
import socket, struct, sys, time
def csum(b):
    if len(b) % 2: b += b"\\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(2)
got = 0
for seq in range(3):
    body = struct.pack("!BBHHH", 8, 0, 0, 0x4242, seq) + b"kernel-ping" * 10
    body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    s.sendto(body, (sys.argv[1], 0))
    while True:
        pkt, _ = s.recvfrom(4096)
        ihl = (pkt[0] & 15) * 4
        t, c, _, ident, sq = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
        if t == 0 and ident == 0x4242 and sq == seq:
            assert pkt[ihl + 8:] == b"kernel-ping" * 10
            got += 1
            break
print(got)
"""


def test_ping_both_ways_and_kernel_learns_our_mac() -> None:
    async def main() -> None:
        with nsnet() as net:
            d = driver(net)
            try:
                rtt = await d.ping(net.kernel_ip, timeout=3)
                assert 0 <= rtt < 3
                out = await net.py(KERNEL_PING, net.synack_ip)
                assert out.strip() == "3"
                neigh = net.run("ip", "neigh", "show", net.synack_ip).stdout
                assert "02:53:59:4e:00:02" in neigh.lower()
                assert d.host.counters["icmp-echo-replies-out"] == 3
            finally:
                d.close()

    asyncio.run(main())


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


KERNEL_UDP = """
import socket, sys
ip = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
ok = 0
for n in (1, 100, 1472, 4000, 20000):
    payload = bytes(i % 251 for i in range(n))
    s.sendto(payload, (ip, 7))
    data, addr = s.recvfrom(65535)
    assert data == payload and addr == (ip, 7), (n, len(data), addr)
    ok += 1
# A closed port: the kernel reports synack's ICMP port unreachable.
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(3)
c.connect((ip, 9))
c.send(b"x")
try:
    c.recv(10)
    print("no error")
except ConnectionRefusedError:
    print(ok, "refused")
"""


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
def test_udp_echo_with_fragments_and_port_unreachable(offload: bool) -> None:
    async def main() -> None:
        with nsnet(offload=offload) as net:
            d = driver(net)
            try:
                await d.create_datagram_endpoint(Echo, local_addr=("0.0.0.0", 7))
                ip = net.synack_ip
                out = await net.py(KERNEL_UDP, ip)
                assert out.split() == ["5", "refused"]
                assert d.host.counters["reasm-ok"] >= 2  # 4000 and 20000 came in fragments
                assert d.host.counters["ipv4-fragmented"] >= 2  # and went back in fragments
            finally:
                d.close()

    asyncio.run(main())
