"""`synack link bridge` between two kernels: loss and delay as configured."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest

from tests.interop.linkpath import link_path

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/net/tun"), reason="needs root and /dev/net/tun"
)

ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 7000)); s.settimeout(30)
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(2048)
    if data == b"stop":
        break
    s.sendto(data, addr)
"""

PROBE = r"""
import json, socket, sys, time
ip, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
sent, rtts = {}, []
# ARP first (the bridge may lose it too): retry a hello until it is echoed.
s.settimeout(0.5)
for _ in range(40):
    s.sendto(b"hello", (ip, 7000))
    try:
        s.recvfrom(100); break
    except OSError:
        pass
s.setblocking(False)
def drain():
    while True:
        try:
            data, _ = s.recvfrom(100)
        except BlockingIOError:
            return
        if data != b"hello":
            rtts.append(time.perf_counter() - sent[int(data)])
for i in range(n):
    sent[i] = time.perf_counter()
    s.sendto(str(i).encode(), (ip, 7000))
    time.sleep(0.004)
    drain()
end = time.perf_counter() + 0.5
while time.perf_counter() < end:
    time.sleep(0.01); drain()
for _ in range(5):
    s.sendto(b"stop", (ip, 7000))
print(json.dumps({"rtts": rtts, "n": n}))
"""


def test_kernel_to_kernel_through_the_bridge_loss_and_delay() -> None:
    with link_path("--delay", "20ms", "--loss", "5%", "--seed", "3") as path:
        echo = subprocess.Popen(
            path.exec_args(path.ns_b, sys.executable, "-c", ECHO),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
            out = subprocess.run(
                path.exec_args(path.ns_a, sys.executable, "-c", PROBE, path.ip_b, "500"),
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
        finally:
            echo.kill()
            echo.wait()
        res = json.loads(out.stdout)
        stats = path.stop()
    rtts = res["rtts"]
    # Round trip: 2 x 20 ms, plus the loop's and the kernels' small delays.
    assert 0.040 <= statistics.median(rtts) <= 0.050
    assert min(rtts) >= 0.0395
    # Each way loses 5%: a probe comes back with (0.95)^2 = 90.25%.
    back = len(rtts) / res["n"]
    assert 0.85 <= back <= 0.95
    for direction in ("a->b", "b->a"):
        st = stats[direction]
        in_flight = st["sent"] - st["lost"] - st["delivered"]  # when the bridge stopped
        assert st["sent"] >= 400 and 0 <= in_flight <= 10  # b->a: the echoes
        assert 0.03 <= st["lost"] / st["sent"] <= 0.07
