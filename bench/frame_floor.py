"""The floor under a plain (no offload) bulk transfer: what one 1,448-octet frame
costs a Python program before any TCP is done, against the kernel's budget.

Without offloads a TAP device takes and gives one Ethernet frame per system
call, and every TCP segment's checksum is computed in user space (RFC 9293
§3.1: the sender MUST generate it, MUST-2, and the receiver MUST check it,
MUST-3; RFC 1071), so a bulk transfer on synack's stack costs at least, per 1,448
octets of payload: one ``os.write`` (download) or ``os.read`` (upload) on the
TAP, plus one internet checksum of the payload. This bench measures those two
floors alone, in the same run as the kernel's anchor (the aiohttp download and
upload of bench/stack_apps.py over veth), and prints the per-frame budget the
issue's 0.5x goal leaves: ``1448 / (0.5 * kernel MB/s)`` microseconds for
everything synack does per frame. The floor's ceiling (``1448 / floor``) is a
rate no pure-Python stack on this link can pass; its ratio to the kernel is
printed as synack's bound.

- write: a ready-made frame addressed to another host on the link, written
  with ``os.write`` in a tight loop (the kernel drops it at once as not ours,
  so this is the system call and the copy, nothing more);
- read: frames the namespace's kernel queued on the TAP (UDP datagrams to a
  neighbour with a static ARP entry, 1,000 at a time), drained with
  ``os.read`` in a tight loop;
- checksum: ``synack.wire.checksum.ones_sum`` of 1,448 octets (one
  ``int.from_bytes`` and a modulo: the fastest pure-Python way found, see
  bench/wire_bench.py).

    sudo .venv/bin/python bench/frame_floor.py [--rounds 3] [--mb 100]

Needs root, /dev/net/tun, iproute2, curl and aiohttp (the anchor).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

from _common import Figure
from stack_apps import measure, served_files, server, sh, tapns, veth

PAYLOAD = 1448  # one MSS at MTU 1,500: the frames of both bulk rows

FLOOR = """
import json, os, select, socket, subprocess, sys, time
from synack.links.tap import TapDevice
from synack.wire.checksum import ones_sum
ns, dev_name, net, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
dev = TapDevice(dev_name)
fd = dev.fd
head = bytes.fromhex("02aabbccddee" "020000000001" "0800")
frame = head + bytes(40) + os.urandom(1448)
payload = os.urandom(1448)
out = {}
w = os.write
t = time.perf_counter()
for _ in range(n):
    w(fd, frame)
out["write"] = (time.perf_counter() - t) / n
t = time.perf_counter()
for _ in range(n):
    ones_sum(payload)
out["checksum"] = (time.perf_counter() - t) / n
# The kernel's frames towards us: datagrams of 1,420 octets (a 1,462-octet
# frame) to a neighbour it need not ask ARP for.
subprocess.run(["ip", "neigh", "replace", f"{net}.9", "lladdr", "02:00:00:00:00:09",
                "dev", dev_name, "nud", "permanent"], check=True)
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
data = os.urandom(1420)
r = os.read
took = got = 0
# Bounded: at most four times the batches n needs, and a clear stop when the
# kernel queued nothing (no frame would ever come).
for _ in range(4 * (n // 1000 + 1)):
    if got >= n:
        break
    for _ in range(1000):
        tx.sendto(data, (f"{net}.9", 9))
    t = time.perf_counter()
    try:
        while True:
            r(fd, 2048)
            got += 1
    except BlockingIOError:
        pass
    took += time.perf_counter() - t
if not got:
    sys.exit("the kernel queued no frame on the TAP")
out["read"] = took / got
print(json.dumps(out))
"""


def floors(n: int) -> dict[str, float]:
    """Seconds per frame for a TAP write, a TAP read and a payload checksum."""
    here = os.path.dirname(os.path.abspath(__file__))
    env_path = os.path.join(here, "..", "src")
    with tapns() as (ns, dev, net):
        out = sh(
            "ip", "netns", "exec", ns, "env", f"PYTHONPATH={env_path}", sys.executable,
            "-c", FLOOR, ns, dev, net, str(n),
        )  # fmt: skip
    return {k: float(v) for k, v in json.loads(out).items()}


def kernel_rates(mb: int) -> dict[str, float]:
    """The kernel's download and upload MB/s (bench/stack_apps.py's rows)."""
    with served_files(mb) as (root, path):
        rows = ("download_MBps", "upload_MBps")
        with veth() as (cli, srv, ip), server(srv, [sys.executable, "app.py"], root) as pid:
            r = measure(cli, ip, 0, mb, path, pid, rows=rows)
    return {k: r[k] for k in rows}


def collect(rounds: int, mb: int, n: int) -> list[dict[str, float]]:
    return [{**kernel_rates(mb), **floors(n)} for _ in range(rounds)]


def bound(r: dict[str, float], key: str) -> float:
    """The ceiling (MB/s) the floor sets for the row: payload over (system call + checksum)."""
    call = r["write"] if key == "download_MBps" else r["read"]
    return PAYLOAD / (call + r["checksum"]) / 1e6


def figures(quick: bool) -> list[Figure]:
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        raise SystemExit("needs root and /dev/net/tun")
    rounds, mb, n = (3, 100, 100_000) if quick else (5, 100, 200_000)
    runs = collect(rounds, mb, n)
    out = []
    for key, what in (("download_MBps", "write"), ("upload_MBps", "read")):
        us = statistics.median((r[what] + r["checksum"]) * 1e6 for r in runs)
        budget = statistics.median(PAYLOAD / (0.5 * r[key]) for r in runs)
        out.append(
            Figure(
                bench="frame_floor",
                name=f"ceiling of a plain (no offload) {key.split('_')[0]} in pure Python: "
                f"one TAP {what} + one checksum per 1,448 octets",
                value=statistics.median(bound(r, key) for r in runs),
                unit="MB/s",
                anchor="the kernel's aiohttp " + key.split("_")[0] + " over veth",
                anchor_value=statistics.median(r[key] for r in runs),
                ratios=[bound(r, key) / r[key] for r in runs],
                goal=0.5,
                command=f".venv/bin/python bench/frame_floor.py --rounds {rounds} --mb {mb}",
                note=f"floor {us:.2f} us per frame; the 0.5x goal leaves {budget:.2f} us "
                "for everything",
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--frames", type=int, default=200_000, help="frames per floor measurement")
    args = ap.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        ap.error("needs root and /dev/net/tun")
    runs = collect(args.rounds, args.mb, args.frames)

    def med(f: object) -> str:
        values = [f(r) for r in runs]  # type: ignore[operator]
        m = statistics.median(values)
        return f"{m:.2f} ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else f"{m:.2f}"

    print(f"{args.rounds} round(s); medians (min-max)")
    print(f"TAP write, us per frame        {med(lambda r: r['write'] * 1e6)}")
    print(f"TAP read, us per frame         {med(lambda r: r['read'] * 1e6)}")
    print(f"checksum of 1,448 octets, us   {med(lambda r: r['checksum'] * 1e6)}")
    for key, what in (("download_MBps", "write"), ("upload_MBps", "read")):
        print(f"\n{key}: kernel {med(lambda r, k=key: r[k])} MB/s")
        print(f"  0.5x leaves, us per frame    {med(lambda r, k=key: PAYLOAD / (0.5 * r[k]))}")
        print(f"  floor ({what} + checksum), us  "
              f"{med(lambda r, w=what: (r[w] + r['checksum']) * 1e6)}")  # fmt: skip
        print(f"  floor's ceiling, MB/s        {med(lambda r, k=key: bound(r, k))}")
        print(f"  ceiling / kernel             {med(lambda r, k=key: bound(r, k) / r[k])}")


if __name__ == "__main__":
    main()
