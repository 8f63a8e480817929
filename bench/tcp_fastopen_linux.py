"""TCP Fast Open against Linux on a real 50 ms path: one request and its answer, new connection.

The path is ``synack link bridge`` between two namespaces (25 ms each way, no
loss, no rate limit), as bench/tcp_vs_linux.py builds it; synack's stack sits
on a TAP bridged with the B end inside namespace B. Fast Open is on in both
namespaces (``net.ipv4.tcp_fastopen=3``, the test's own namespaces only).
For each pair, a client opens a new connection, sends a 100-octet request,
reads the 100-octet answer and closes, ``--n`` times (the first Fast Open
gets the cookie and is not counted); printed: the median wall-clock time from
connect to the answer, with Fast Open and without, and their ratio:

    kernel->kernel   namespace A's client, namespace B's kernel server
    kernel->synack   namespace A's client, synack's server
    synack->kernel   synack's client, namespace A's kernel server

Needs root and /dev/net/tun.

    .venv/bin/python bench/tcp_fastopen_linux.py [--n 6] [--rtt-ms 50]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from ipaddress import IPv4Interface
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.interop.linkpath import LinkPath, link_path

from synack.adapters.sockets import Runtime
from synack.links.tap import TapLink
from synack.stack.host import Host, HostConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tcp_vs_linux import add_synack_tap, ns_exec

REQUEST = b"q" * 100
ANSWER = b"a" * 100

SERVER = r"""
import socket, sys
port, tfo = int(sys.argv[1]), sys.argv[2] == "tfo"
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if tfo:
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
s.bind(("0.0.0.0", port))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(10)
    req = b""
    while len(req) < 100 and (chunk := c.recv(4096)):
        req += chunk
    c.sendall(b"a" * 100)
    c.close()
"""

CLIENT = r"""
import json, socket, sys, time
ip, port, tfo, n = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "tfo", int(sys.argv[4])
times = []
for _ in range(n):
    s = socket.socket()
    t0 = time.perf_counter()
    if tfo:
        s.sendto(b"q" * 100, socket.MSG_FASTOPEN, (ip, port))
    else:
        s.connect((ip, port))
        s.sendall(b"q" * 100)
    s.settimeout(10)
    got = b""
    while len(got) < 100 and (chunk := s.recv(4096)):
        got += chunk
    times.append(time.perf_counter() - t0)
    assert got == b"a" * 100, got
    s.close()
    time.sleep(0.05)
print(json.dumps(times))
"""


def _kernel_server(ns: str, port: int, tfo: bool) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ns_exec(ns, sys.executable, "-c", SERVER, str(port), "tfo" if tfo else "plain"),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _kernel_client(ns: str, ip: str, port: int, tfo: bool, n: int) -> list[float]:
    out = subprocess.run(
        ns_exec(ns, sys.executable, "-c", CLIENT, ip, str(port), "tfo" if tfo else "plain", str(n)),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    times: list[float] = json.loads(out.stdout)
    return times


def _synack_server(socket: Any, port: int, tfo: bool) -> None:
    srv = socket.socket()
    if tfo:
        srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
    srv.bind(("0.0.0.0", port))
    srv.listen(16)

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.settimeout(10)
            req = b""
            while len(req) < len(REQUEST) and (chunk := c.recv(4096)):
                req += chunk
            c.sendall(ANSWER)
            c.close()

    threading.Thread(target=serve, daemon=True).start()


def _synack_client(socket: Any, ip: str, port: int, tfo: bool, n: int) -> list[float]:
    times = []
    for _ in range(n):
        s = socket.socket()
        t0 = time.perf_counter()
        if tfo:
            s.sendto(REQUEST, socket.MSG_FASTOPEN, (ip, port))
        else:
            s.connect((ip, port))
            s.sendall(REQUEST)
        s.settimeout(10)
        got = b""
        while len(got) < len(ANSWER) and (chunk := s.recv(4096)):
            got += chunk
        times.append(time.perf_counter() - t0)
        assert got == ANSWER
        s.close()
        time.sleep(0.05)
    return times


def run(path: LinkPath, n: int) -> dict[str, tuple[float, float]]:
    for ns in (path.ns_a, path.ns_b):
        subprocess.run(ns_exec(ns, "sysctl", "-qw", "net.ipv4.tcp_fastopen=3"), check=True)
    tap, synack_ip = add_synack_tap(path)
    host = Host(
        HostConfig(
            mac=b"\x02SYN\x00\x05",
            interface=IPv4Interface(f"{synack_ip}/24"),
            mtu=1500,
            tcp_fastopen=3,
        ),
        rng=random.Random(5),
    )
    rt = Runtime()
    procs = []
    try:
        socket = rt.add_host(host, TapLink(tap))
        procs += [_kernel_server(path.ns_b, 9100, True), _kernel_server(path.ns_b, 9101, False)]
        procs += [_kernel_server(path.ns_a, 9300, True), _kernel_server(path.ns_a, 9301, False)]
        _synack_server(socket, 9200, True)
        _synack_server(socket, 9201, False)
        res = {}
        for name, go in (
            (
                "kernel->kernel",
                lambda tfo: _kernel_client(path.ns_a, path.ip_b, 9100 if tfo else 9101, tfo, n),
            ),
            (
                "kernel->synack",
                lambda tfo: _kernel_client(path.ns_a, synack_ip, 9200 if tfo else 9201, tfo, n),
            ),
            (
                "synack->kernel",
                lambda tfo: _synack_client(socket, path.ip_a, 9300 if tfo else 9301, tfo, n),
            ),
        ):
            fast = go(True)[1:]  # the first Fast Open asks for the cookie
            plain = go(False)[1:]
            res[name] = (statistics.median(fast), statistics.median(plain))
        counters = {k: v for k, v in host.counters.items() if "fastopen" in k}
        print(f"synack's Fast Open counters: {counters}")
        return res
    finally:
        for p in procs:
            p.kill()
            p.wait()
        rt.close()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=6, help="requests per case (the first not counted)")
    ap.add_argument("--rtt-ms", type=float, default=50.0, help="round-trip time (default 50)")
    args = ap.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        sys.exit("needs root and /dev/net/tun")
    with link_path("--delay", f"{args.rtt_ms / 2:g}ms") as path:
        res = run(path, max(2, args.n))
    print(f"RTT {args.rtt_ms:g} ms; median of {max(2, args.n) - 1} requests, wall clock")
    print(f"{'':16} {'Fast Open':>10} {'ordinary':>10} {'ratio':>6}")
    for name, (fast, plain) in res.items():
        print(f"{name:16} {fast * 1000:8.1f}ms {plain * 1000:8.1f}ms {plain / fast:5.2f}x")


if __name__ == "__main__":
    main()
