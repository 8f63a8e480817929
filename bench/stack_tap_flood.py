"""A spoofed SYN flood and an ICMP echo flood against synack's stack over TAP.

synack (this process, asyncio) serves a chargen-like source and a discard
port on a TAP device whose other end is a namespace with the kernel. In the
namespace a flooder writes pre-built spoofed frames to the TAP (AF_PACKET,
random off-link sources, paced per millisecond) while a kernel client
measures: bulk synack->kernel (MB/s) and connect latency to a flooded
listener, for a client that never connected before ("fresh") and one that
did ("proven"). Each flood is run against synack with its issue-14 budgets
and, in the same run, with the budgets opened wide (the behaviour before);
the flood-free figures are the anchor. Needs root and /dev/net/tun.

    .venv/bin/python bench/stack_tap_flood.py [--seconds 3] [--syn-rate R] [--echo-rate R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
from ipaddress import IPv4Address, IPv4Interface

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.interop.nsnet import NsNet, nsnet

from stack_tap import discard_handler, source_handler  # bench/ is on sys.path
from synack.adapters.driver import HostDriver
from synack.links.tap import TapLink
from synack.stack.host import Host, HostConfig

SYNACK_MAC = b"\x02SYN\x00\x02"
WIDE = 1e9

FLOODER = r"""
import random, socket, struct, sys, time
dev, dst_mac, dst_ip, kind, rate, seconds = sys.argv[1:7]
rate, seconds = float(rate), float(seconds)
dst_mac, dst = bytes.fromhex(dst_mac), socket.inet_aton(dst_ip)
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xFFFF)
    return (~(s + (s >> 16))) & 0xFFFF
rng = random.Random(7); frames = []
for _ in range(4096):
    src = bytes([10, 213, rng.randrange(200, 256), rng.randrange(1, 255)])
    if kind == "syn":
        opts = b"\x02\x04\x05\xb4\x04\x02\x01\x03\x03\x07"  + b"\x00\x00"
        hdr = struct.pack("!HHIIBBHHH", rng.randrange(1024, 65536), 80, rng.randrange(1 << 32), 0,
                          (20 + len(opts)) // 4 << 4, 0x02, 65535, 0, 0) + opts
        l4 = hdr[:16] + struct.pack("!H", csum(src + dst + struct.pack("!BBH", 0, 6, len(hdr)) + hdr)) + hdr[18:]
        proto = 6
    else:
        body = struct.pack("!BBHHH", 8, 0, 0, 1, rng.randrange(65536)) + bytes(56)
        l4 = body[:2] + struct.pack("!H", csum(body)) + body[4:]
        proto = 1
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0, 64, proto, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    frames.append(dst_mac + b"\x02\x99\x99\x99\x99\x99\x08\x00" + ip + l4)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((dev, 0))
start = time.perf_counter(); sent = 0; told = 0.0
while (now := time.perf_counter() - start) < seconds:
    due = int(now * rate)
    while sent < due and time.perf_counter() - start < now + 0.05:
        s.send(frames[sent % 4096]); sent += 1
    if now - told > 0.5:
        print(sent / now, flush=True); told = now  # the rate achieved so far
    time.sleep(0.0005)
"""

CLIENT = r"""
import json, socket, sys, time
ip, seconds = sys.argv[1], float(sys.argv[2])
res = {}
def connect_ms(src_port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", 0)); s.settimeout(3.0); t = time.perf_counter()
    try:
        s.connect((ip, 9)); return (time.perf_counter() - t) * 1e3
    except OSError:
        return None
    finally:
        s.close()
s = socket.create_connection((ip, 19), timeout=30)
time.sleep(0.3)  # the flood is on
t0 = time.perf_counter(); n = 0
while time.perf_counter() - t0 < seconds:
    n += len(s.recv(1 << 20))
res["MBps"] = n / (time.perf_counter() - t0) / 1e6
s.close()
lat = [connect_ms(0) for _ in range(5)]
res["connect_ms"] = [round(x, 1) if x is not None else None for x in lat]
print(json.dumps(res))
"""


async def serve(net: NsNet, wide: bool) -> HostDriver:
    kernel = IPv4Address(net.kernel_ip)
    kw = (
        {
            "syn_flood_per_second": WIDE,
            "syn_flood_per_source": WIDE,
            "icmp_echo_per_second": WIDE,
            "icmp_echo_per_source": WIDE,
        }
        if wide
        else {}
    )
    cfg = HostConfig(
        mac=SYNACK_MAC,
        interface=IPv4Interface(net.synack_cidr),
        mtu=net.mtu,
        gateway=kernel,
        **kw,  # type: ignore[arg-type]
    )
    d = HostDriver(Host(cfg, rng=random.Random(1)), TapLink(net.tap))
    d.start()

    await d.start_server(source_handler, "0.0.0.0", 19)
    server = await d.start_server(discard_handler, "0.0.0.0", 9)
    del server
    # The discard port's half-open queue is small, so the flood fills it.
    d.host.tcp.listeners[9].syn_backlog = 64
    return d


async def one(kind: str | None, wide: bool, seconds: float, rate: float) -> dict[str, object]:
    with nsnet() as net:
        d = await serve(net, wide)
        flooder = None
        if kind is not None:
            flooder = await asyncio.create_subprocess_exec(
                *net.exec_args(
                    sys.executable,
                    "-c",
                    FLOODER.replace("80, rng", "9, rng"),
                    net.tap.name,
                    SYNACK_MAC.hex(),
                    net.synack_ip,
                    kind,
                    str(rate),
                    str(seconds + 12),
                ),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        out = json.loads(await net.py(CLIENT, net.synack_ip, str(seconds), timeout=120))
        if flooder is not None:
            if flooder.returncode is None:
                flooder.kill()
            progress, err = await flooder.communicate()
            if flooder.returncode not in (0, -9):
                raise SystemExit(f"flooder failed: {err.decode()[-1000:]}")
            out["flood_sent_per_s"] = round(float(progress.split()[-1]))
        out["counters"] = {
            k: v
            for k, v in d.host.counters.items()
            if "flood" in k or "syncookies" in k or "echo" in k
        }
        d.close()
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--syn-rate", type=float, default=48_000.0)
    parser.add_argument("--echo-rate", type=float, default=281_000.0)
    args = parser.parse_args()
    base = asyncio.run(one(None, False, args.seconds, 0))
    print(f"no flood: {base['MBps']:.1f} MB/s, connect ms {base['connect_ms']}")
    for kind, rate in (("syn", args.syn_rate), ("echo", args.echo_rate)):
        for wide in (False, True):
            r = asyncio.run(one(kind, wide, args.seconds, rate))
            label = "budgets wide (before)" if wide else "issue-14 budgets"
            kept = float(r["MBps"]) / float(base["MBps"])  # type: ignore[arg-type]
            print(
                f"{kind} flood {rate:.0f}/s (sent {r['flood_sent_per_s']}/s), {label}: "
                f"{r['MBps']:.1f} MB/s "
                f"({kept:.0%} of no-flood), connect ms {r['connect_ms']}, {r['counters']}"
            )


if __name__ == "__main__":
    main()
