"""Never-seen Linux clients connect to synack's stack during a spoofed SYN flood (issue 14).

The attack: 20,000 SYNs at 10,000 a second from random spoofed off-link
sources, written by a raw socket in the namespace, at a listener whose
half-open queue (16) the flood keeps full. The guarantee: each of 8 kernel
clients, each from an address synack has never heard from, connects on its
first SYN (its connect timeout, 0.9 s, is shorter than the kernel's 1 s SYN
retransmission, so a success is an answered first SYN) and exchanges a line;
every flood SYN is answered with a cookie or counted as dropped. Latency
figures belong to bench/stack_tap_flood.py.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
from ipaddress import IPv4Address, IPv4Interface

import pytest

from synack.adapters.driver import HostDriver
from synack.links.tap import TapLink
from synack.stack.host import Host, HostConfig
from tests.interop.nsnet import nsnet
from tests.support import requires_root_tun

pytestmark = [requires_root_tun, pytest.mark.root]

FLOOD = 20_000
RATE = 10_000
CLIENTS = 8

SPOOFED_FLOOD = """
import random, socket, struct, sys, time
dst, avoid, count, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
rng = random.Random(2)
nets = [n for n in range(256) if n != avoid]  # off-link: every /24 but the link's
start = time.monotonic()
for i in range(count):
    src = socket.inet_aton(f"10.213.{rng.choice(nets)}.{rng.randrange(1, 255)}")
    opts = b"\\x02\\x04\\x05\\xb4\\x04\\x02\\x08\\x0a" + struct.pack("!II", i, 0) + b"\\x01\\x03\\x03\\x07"
    tcp = struct.pack("!HHIIBBHHH", rng.randrange(1024, 65535), 80, rng.randrange(1 << 32), 0,
                      10 << 4, 0x02, 65535, 0, 0) + opts
    pseudo = src + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i & 0xffff, 0, 64, 6, 0, src,
                     socket.inet_aton(dst))
    raw.sendto(ip + tcp, (dst, 0))
    delay = start + (i + 1) / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
print("flooded", count)
"""

FRESH_CLIENTS = """
import json, socket, sys, time
dst, sources = sys.argv[1], sys.argv[2].split(",")
time.sleep(0.4)  # well inside the flood
ok = 0
for src in sources:
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(0.9)  # under the 1 s SYN retransmission: the first SYN must be answered
    try:
        s.connect((dst, 80))
        s.sendall(b"ping\\n")
        if s.recv(100) == b"pong\\n":
            ok += 1
    except OSError:
        pass
    finally:
        s.close()
    time.sleep(0.1)
print(json.dumps({"ok": ok}))
"""


def test_never_seen_kernel_clients_connect_during_a_spoofed_syn_flood() -> None:
    async def pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"pong\n")
        writer.close()

    async def main() -> None:
        with nsnet() as net:
            network = IPv4Interface(net.synack_cidr).network
            fresh = [str(network.network_address + 100 + i) for i in range(CLIENTS)]
            for addr in fresh:
                subprocess.run(
                    ["ip", "-n", net.ns, "addr", "add", f"{addr}/24", "dev", net.tap.name],
                    check=True,
                    capture_output=True,
                    timeout=10,
                )
            host = Host(
                HostConfig(
                    mac=b"\x02SYN\x00\x0e",
                    interface=IPv4Interface(net.synack_cidr),
                    mtu=net.mtu,
                    gateway=IPv4Address(net.kernel_ip),
                ),
                rng=random.Random(14),
            )
            d = HostDriver(host, TapLink(net.tap))
            d.start()
            try:
                await d.start_server(pong, "0.0.0.0", 80)
                host.tcp.listeners[80].syn_backlog = 16
                avoid = str(IPv4Address(net.kernel_ip).packed[2])
                flood = asyncio.create_task(
                    net.py(SPOOFED_FLOOD, net.synack_ip, avoid, str(FLOOD), str(RATE), timeout=60)
                )
                clients = json.loads(
                    await net.py(FRESH_CLIENTS, net.synack_ip, ",".join(fresh), timeout=60)
                )
                assert (await flood).strip() == f"flooded {FLOOD}"
                await asyncio.sleep(0.2)
            finally:
                d.close()
        assert clients == {"ok": CLIENTS}
        c = host.counters
        # The fresh clients came in by their cookies (the queue was full),
        # and every flood SYN is accounted for: it filled the queue, was
        # answered with a cookie, or was counted as dropped.
        assert c["tcp-syncookies-ok"] == CLIENTS
        dropped = c["tcp-syn-flood-dropped"] + c["tcp-syn-flood-source-dropped"]
        answered = c["tcp-passive-opens"] + c["tcp-syncookies-sent"] - CLIENTS
        assert answered + dropped == FLOOD
        assert c["tcp-syncookies-sent"] >= FLOOD * 0.9  # within the budgets: answered

    asyncio.run(main())
