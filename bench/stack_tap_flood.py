"""A spoofed SYN flood and an ICMP echo flood against synack's stack over TAP.

synack (this process, asyncio) serves a chargen-like source and a discard
port on a TAP device whose other end is a namespace with the kernel. In the
namespace a flooder writes pre-built spoofed frames to the TAP (AF_PACKET,
random off-link sources, paced per millisecond) and a kernel client measures
what the issue-14 guarantees are about:

- kept share: bulk synack->kernel (MB/s) under the flood over the same
  without a flood (goal: >= 50% under a 48k/s SYN flood);
- connect latency to the flooded listener for never-seen clients (each
  connect from a new address of the kernel's, so synack has never heard of
  it): median and max of ``--connects`` (goal: within 100 ms; a SYN that
  goes unanswered waits for the kernel's 1 s retry);
- CPU per flood packet: synack's process CPU time over the flood frames it
  took in, measured for a second of flood alone (read, classify, answer or
  drop, write), and the share of the flood's frames it read.

Run the same file against another checkout's code to compare (the "before"):

    sudo .venv/bin/python bench/stack_tap_flood.py [--seconds 2] [--connects 20]
    sudo /work/wt/base/.venv/bin/python bench/stack_tap_flood.py --src /work/wt/base/src

Needs root and /dev/net/tun.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from ipaddress import IPv4Address, IPv4Interface

_HERE = os.path.dirname(os.path.abspath(__file__))
_SRC = os.path.join(_HERE, "..", "src")
if "--src" in sys.argv:  # the code to measure (another checkout's src/)
    _SRC = sys.argv[sys.argv.index("--src") + 1]
sys.path.insert(0, os.path.join(_HERE, ".."))
sys.path.insert(0, _SRC)

from tests.interop.nsnet import NsNet, nsnet  # noqa: E402

from synack.adapters.driver import HostDriver  # noqa: E402  (after choosing src/)
from synack.links.tap import TapLink  # noqa: E402
from synack.stack.host import Host, HostConfig  # noqa: E402

sys.path.insert(1, _HERE)
from stack_tap import discard_handler, source_handler  # noqa: E402

SYNACK_MAC = b"\x02SYN\x00\x02"

FLOODER = r"""
import random, socket, struct, sys, time
dev, dst_mac, dst_ip, kind, rate, seconds, avoid = sys.argv[1:8]
rate, seconds, avoid = float(rate), float(seconds), int(avoid)
dst_mac, dst = bytes.fromhex(dst_mac), socket.inet_aton(dst_ip)
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xFFFF)
    return (~(s + (s >> 16))) & 0xFFFF
rng = random.Random(7); frames = []
# Random off-link sources: every /24 of 10.213/16 but the one the link is on.
nets = [n for n in range(256) if n != avoid]
for _ in range(4096):
    src = bytes([10, 213, rng.choice(nets), rng.randrange(1, 255)])
    if kind == "syn":
        opts = b"\x02\x04\x05\xb4\x04\x02\x01\x03\x03\x07"  + b"\x00\x00"
        hdr = struct.pack("!HHIIBBHHH", rng.randrange(1024, 65536), 9, rng.randrange(1 << 32), 0,
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
ip, seconds, fresh = sys.argv[1], float(sys.argv[2]), sys.argv[3].split(",")
res = {}
s = socket.create_connection((ip, 19), timeout=30)
time.sleep(0.2)
t0 = time.perf_counter(); n = 0
while time.perf_counter() - t0 < seconds:
    n += len(s.recv(1 << 20))
res["MBps"] = n / (time.perf_counter() - t0) / 1e6
s.close()
lat = []
for src in fresh:  # each connect from an address synack never heard from
    c = socket.socket(); c.bind((src, 0)); c.settimeout(5.0); t = time.perf_counter()
    try:
        c.connect((ip, 9)); lat.append(round((time.perf_counter() - t) * 1e3, 2))
    except OSError:
        lat.append(None)
    finally:
        c.close()
    time.sleep(0.05)
res["connect_ms"] = lat
print(json.dumps(res))
"""


async def serve(net: NsNet) -> HostDriver:
    cfg = HostConfig(
        mac=SYNACK_MAC,
        interface=IPv4Interface(net.synack_cidr),
        mtu=net.mtu,
        gateway=IPv4Address(net.kernel_ip),
    )
    d = HostDriver(Host(cfg, rng=random.Random(1)), TapLink(net.tap))
    d.start()
    await d.start_server(source_handler, "0.0.0.0", 19)
    await d.start_server(discard_handler, "0.0.0.0", 9)
    # The discard port's half-open queue is small, so the flood fills it.
    d.host.tcp.listeners[9].syn_backlog = 64
    return d


def _fresh_addresses(net: NsNet, count: int) -> list[str]:
    """``count`` more addresses for the kernel, on the link, never used before."""
    base = IPv4Interface(net.synack_cidr).network
    out = []
    for i in range(count):
        addr = str(base.network_address + 100 + i)
        subprocess.run(
            ["ip", "-n", net.ns, "addr", "add", f"{addr}/{base.prefixlen}", "dev", net.tap.name],
            check=True,
            capture_output=True,
        )
        out.append(addr)
    return out


async def one(kind: str | None, seconds: float, rate: float, connects: int) -> dict[str, object]:
    with nsnet() as net:
        fresh = _fresh_addresses(net, connects)
        d = await serve(net)
        flooder = None
        out: dict[str, object] = {}
        if kind is not None:
            subnet = int(IPv4Address(net.kernel_ip).packed[2])
            flooder = await asyncio.create_subprocess_exec(
                *net.exec_args(
                    sys.executable,
                    "-c",
                    FLOODER,
                    net.tap.name,
                    SYNACK_MAC.hex(),
                    net.synack_ip,
                    kind,
                    str(rate),
                    str(seconds + connects * 0.2 + 15),
                    str(subnet),
                ),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            await asyncio.sleep(1.0)  # the flood is on
            # CPU per flood frame: one second of flood alone.
            frames0, cpu0, t0 = d.host.counters["frames-in"], time.process_time(), time.monotonic()
            await asyncio.sleep(1.0)
            frames = d.host.counters["frames-in"] - frames0
            out["us_per_flood_frame"] = (time.process_time() - cpu0) / max(1, frames) * 1e6
            out["flood_read_per_s"] = frames / (time.monotonic() - t0)
        res = await net.py(CLIENT, net.synack_ip, str(seconds), ",".join(fresh), timeout=300)
        out.update(json.loads(res))
        if flooder is not None:
            if flooder.returncode is None:
                flooder.kill()
            progress, err = await flooder.communicate()
            if flooder.returncode not in (0, -9):
                raise SystemExit(f"flooder failed: {err.decode()[-1000:]}")
            out["flood_sent_per_s"] = float(progress.split()[-1])
        out["counters"] = {
            k: v
            for k, v in d.host.counters.items()
            if "flood" in k or "syncookies" in k or "echo" in k
        }
        d.close()
        return out


def _latency(ms: list[float | None]) -> str:
    ok = [x for x in ms if x is not None]
    lost = len(ms) - len(ok)
    if not ok:
        return f"no connect succeeded ({lost} timed out)"
    return (
        f"connect median {statistics.median(ok):.1f} ms, max {max(ok):.1f} ms"
        f" ({sum(x <= 100 for x in ok)}/{len(ms)} within 100 ms"
        + (f", {lost} timed out" if lost else "")
        + ")"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="transfer time per run")
    parser.add_argument("--connects", type=int, default=20, help="fresh connects per run")
    parser.add_argument("--syn-rate", type=float, default=48_000.0)
    parser.add_argument("--echo-rate", type=float, default=281_000.0)
    parser.add_argument("--src", default=_SRC, help="the src/ whose synack is measured")
    parser.add_argument("--json", action="store_true", help="one JSON line of every figure")
    args = parser.parse_args()
    print(f"synack from {os.path.realpath(_SRC)}; load {os.getloadavg()[0]:.2f}", flush=True)
    base = asyncio.run(one(None, args.seconds, 0, args.connects))
    results: dict[str, object] = {"none": base}
    print(f"no flood: {base['MBps']:.1f} MB/s, {_latency(base['connect_ms'])}", flush=True)  # type: ignore[arg-type]
    for kind, rate in (("syn", args.syn_rate), ("echo", args.echo_rate)):
        r = asyncio.run(one(kind, args.seconds, rate, args.connects))
        results[kind] = r
        kept = float(r["MBps"]) / float(base["MBps"])  # type: ignore[arg-type]
        print(
            f"{kind} flood {rate:.0f}/s (sent {r['flood_sent_per_s']:.0f}/s, synack read "
            f"{r['flood_read_per_s']:.0f}/s, {r['us_per_flood_frame']:.2f} us CPU a frame): "
            f"{r['MBps']:.1f} MB/s ({kept:.0%} kept), "
            f"{_latency(r['connect_ms'])}; {r['counters']}",  # type: ignore[arg-type]
            flush=True,
        )
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
