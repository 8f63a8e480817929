"""The same aiohttp server on the kernel (over veth) and under ``synack run`` (over TAP).

One run, same clients (ab, curl), same machine: the kernel's figures are the
anchor, synack's are printed next to them as ratios. Rows: keep-alive
requests/s (``ab -k``), a new connection per request (``ab``), a 50 MB download
and upload (curl), then with ``--offload``; last, 1,000 connections opened at
once against synack (time to all established, and the kernel's TX drop
counter on the TAP device from ``ip -s link``, which should stay 0).

    sudo .venv/bin/python bench/stack_apps.py [--requests 3000] [--mb 50]

Needs root, /dev/net/tun, iproute2, ab (apache2-utils), curl and aiohttp.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

SERVER = """
import hashlib
from aiohttp import web
async def upload(request):
    n = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        n += len(chunk)
    return web.Response(text=str(n))
async def hello(request):
    return web.Response(text="hello")
app = web.Application(client_max_size=1 << 30)
app.add_routes([web.post("/upload", upload), web.get("/hello", hello), web.static("/files", ".")])
web.run_app(app, host="0.0.0.0", port=8081, print=lambda s: print(s, flush=True), access_log=None)
"""

BURST = """
import selectors, socket, sys, time
ip, n = sys.argv[1], int(sys.argv[2])
sel = selectors.DefaultSelector()
t0 = time.perf_counter()
socks = []
for _ in range(n):
    s = socket.socket(); s.setblocking(False)
    s.connect_ex((ip, 8081)); sel.register(s, selectors.EVENT_WRITE); socks.append(s)
done, lat = 0, []
deadline = time.monotonic() + 30
while done < n and time.monotonic() < deadline:
    for key, _ in sel.select(1):
        sel.unregister(key.fileobj); done += 1; lat.append(time.perf_counter() - t0)
lat.sort()
print(done, round(lat[len(lat) // 2] * 1000, 1), round(lat[-1] * 1000, 1))
for s in socks: s.close()
"""


def sh(*argv: str, timeout: float = 120) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=timeout).stdout


@contextlib.contextmanager
def veth() -> Iterator[tuple[str, str, str]]:
    """(client namespace, server namespace, server ip) joined by a veth pair."""
    tag = secrets.token_hex(3)
    a, b, sub = f"synack-bc{tag}", f"synack-bs{tag}", 1 + secrets.randbelow(254)
    sh("ip", "netns", "add", a)
    sh("ip", "netns", "add", b)
    try:
        sh("ip", "-n", a, "link", "add", "va", "type", "veth", "peer", "vb", "netns", b)
        sh("ip", "-n", a, "addr", "add", f"10.213.{sub}.1/24", "dev", "va")
        sh("ip", "-n", b, "addr", "add", f"10.213.{sub}.2/24", "dev", "vb")
        for ns, dev in ((a, "va"), (b, "vb"), (a, "lo"), (b, "lo")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        yield a, b, f"10.213.{sub}.2"
    finally:
        sh("ip", "netns", "del", a)
        sh("ip", "netns", "del", b)


@contextlib.contextmanager
def tapns() -> Iterator[tuple[str, str, str]]:
    """(namespace, persistent TAP device in it with the kernel's NET.1, NET)."""
    tag = secrets.token_hex(3)
    ns, dev, sub = f"synack-bt{tag}", f"sybt{tag}", 1 + secrets.randbelow(254)
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "tuntap", "add", "dev", dev, "mode", "tap")
        sh("ip", "-n", ns, "addr", "add", f"10.213.{sub}.1/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns, dev, f"10.213.{sub}"
    finally:
        sh("ip", "netns", "del", ns)


@contextlib.contextmanager
def server(ns: str, argv: list[str], cwd: str) -> Iterator[None]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        while "Running on" not in (line := proc.stdout.readline()):
            if not line:
                raise SystemExit("server did not start")
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(ns: str, ip: str, requests: int, mb: int, path: str) -> dict[str, float]:
    base = f"http://{ip}:8081"
    ex = ["ip", "netns", "exec", ns]
    r: dict[str, float] = {}
    out = sh(*ex, "ab", "-k", "-q", "-n", str(requests), "-c", "20", f"{base}/hello")
    r["keepalive_rps"] = float(re.search(r"Requests per second:\s+([\d.]+)", out)[1])  # type: ignore[index]
    out = sh(*ex, "ab", "-q", "-n", str(requests // 3), "-c", "20", f"{base}/hello")
    r["newconn_rps"] = float(re.search(r"Requests per second:\s+([\d.]+)", out)[1])  # type: ignore[index]
    t0 = time.perf_counter()
    got = subprocess.run(
        [*ex, "curl", "-sS", "--max-time", "120", f"{base}/files/big.bin"],
        capture_output=True,
        timeout=150,
        check=True,
    ).stdout
    r["download_MBps"] = len(got) / (time.perf_counter() - t0) / 1e6
    assert len(got) == mb << 20
    t0 = time.perf_counter()
    up = sh(*ex, "curl", "-sS", "--max-time", "120", "--data-binary", f"@{path}", f"{base}/upload")
    r["upload_MBps"] = (mb << 20) / (time.perf_counter() - t0) / 1e6
    assert up == str(mb << 20), up
    return r


def tap_drops(ns: str, dev: str) -> int:
    out = sh("ip", "-n", ns, "-s", "link", "show", dev)
    lines = out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.strip().startswith("TX:"))
    return int(lines[i + 1].split()[3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--burst", type=int, default=1000)
    args = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as root:
        path = os.path.join(root, "big.bin")
        with open(path, "wb") as f:
            f.write(hashlib.shake_256(b"bench").digest(args.mb << 20))
        with open(os.path.join(root, "app.py"), "w") as f:
            f.write(SERVER)
        results: dict[str, dict[str, float]] = {}
        with veth() as (cli, srv, ip), server(srv, [sys.executable, "app.py"], root):
            results["kernel"] = measure(cli, ip, args.requests, args.mb, path)
        synack = [sys.executable, "-m", "synack", "run"]
        env_path = os.path.join(here, "..", "src")
        os.environ["PYTHONPATH"] = env_path
        burst = None
        for label, extra in (("synack", []), ("synack --offload", ["--offload"])):
            with tapns() as (ns, dev, net):
                argv = [*synack, "--tap", dev, "--ip", f"{net}.2/24", *extra, "--", "app.py"]
                with server(ns, argv, root):
                    results[label] = measure(ns, f"{net}.2", args.requests, args.mb, path)
                    if not extra:
                        before = tap_drops(ns, dev)
                        out = sh(
                            "ip", "netns", "exec", ns, sys.executable, "-c", BURST,
                            f"{net}.2", str(args.burst),
                        )  # fmt: skip
                        burst = (out.split(), tap_drops(ns, dev) - before)
    k = results["kernel"]
    print(f"{'':18} {'kernel':>10} {'synack':>10} {'ratio':>6} {'--offload':>10} {'ratio':>6}")
    for key in k:
        s, o = results["synack"][key], results["synack --offload"][key]
        print(f"{key:18} {k[key]:10.1f} {s:10.1f} {s / k[key]:6.2f} {o:10.1f} {o / k[key]:6.2f}")
    if burst is not None:
        (done, p50, worst), drops = burst
        print(
            f"{args.burst} connects at once to synack: {done} established, "
            f"p50 {p50} ms, last {worst} ms, TAP TX drops {drops}"
        )


if __name__ == "__main__":
    main()
