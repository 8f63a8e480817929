"""``synack stack serve`` and ``synack stack nc`` against the kernel in a namespace."""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dpkt
import pytest

from tests.support import requires_root_tun

pytestmark = [requires_root_tun, pytest.mark.root]

SYNACK = [sys.executable, "-m", "synack"]


@contextlib.contextmanager
def namespace_with_tap() -> Iterator[tuple[str, str, str]]:
    """A namespace holding a persistent TAP device (``ip tuntap add``) with
    the kernel's address; synack opens that device by name."""
    tag = secrets.token_hex(4)
    ns, dev, subnet = f"synack-{tag}", f"sy{tag}", 1 + secrets.randbelow(254)
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    try:
        ip = ["ip", "-n", ns]
        subprocess.run([*ip, "tuntap", "add", "dev", dev, "mode", "tap"], check=True, timeout=10)
        subprocess.run(
            ["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
            timeout=10,
        )
        subprocess.run(
            [*ip, "addr", "add", f"10.213.{subnet}.1/24", "dev", dev], check=True, timeout=10
        )
        subprocess.run([*ip, "link", "set", dev, "up"], check=True, timeout=10)
        yield ns, dev, f"10.213.{subnet}"
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=10)


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


KERNEL_CLIENT = """
import socket, sys
ip = sys.argv[1]
with socket.create_connection((ip, 7), timeout=10) as s:
    s.sendall(b"over synack\\n"); s.shutdown(socket.SHUT_WR)
    data = b""
    while c := s.recv(100): data += c
    print(data.decode().strip())
with socket.create_connection((ip, 13), timeout=10) as s:
    data = b""
    while c := s.recv(100): data += c
    print("daytime", len(data) > 5)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
u.sendto(b"udp echo", (ip, 7))
print(u.recvfrom(100)[0].decode())
"""


def test_stack_serve_classic_services_with_pcap(tmp_path: Path) -> None:
    pcap = tmp_path / "serve.pcap"
    with namespace_with_tap() as (ns, dev, net):
        proc = subprocess.Popen(
            in_ns(
                ns,
                *SYNACK,
                "stack",
                "serve",
                "--tap",
                dev,
                "--ip",
                f"{net}.2/24",
                "--services",
                "echo:7,daytime:13",
                "--pcap",
                str(pcap),
                "--offload",  # IFF_VNET_HDR on a persistent TAP made by `ip tuntap`
            ),
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None
            lines = [proc.stderr.readline().strip() for _ in range(4)]
            assert lines == [
                f"listening on {net}.2:7 (echo/tcp)",
                f"listening on {net}.2:7 (echo/udp)",
                f"listening on {net}.2:13 (daytime/tcp)",
                f"listening on {net}.2:13 (daytime/udp)",
            ]
            out = subprocess.run(
                in_ns(ns, sys.executable, "-c", KERNEL_CLIENT, f"{net}.2"),
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert out.stdout.split("\n")[:3] == ["over synack", "daytime True", "udp echo"], (
                out.stderr
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
    with pcap.open("rb") as f:
        frames = [dpkt.ethernet.Ethernet(raw) for _, raw in dpkt.pcap.Reader(f)]
    tcp = [
        e.data.data
        for e in frames
        if isinstance(e.data, dpkt.ip.IP) and isinstance(e.data.data, dpkt.tcp.TCP)
    ]
    assert any(t.flags & dpkt.tcp.TH_SYN for t in tcp) and any(
        t.flags & dpkt.tcp.TH_FIN for t in tcp
    )


KERNEL_SERVER = """
import socket
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 8001)); srv.listen(); srv.settimeout(20)
print("ready", flush=True)
c, _ = srv.accept()
data = b""
while chunk := c.recv(65536):
    data += chunk
c.sendall(b"got %d bytes\\n" % len(data))   # after synack's half-close
c.close()
"""


def test_stack_nc_to_kernel_server_half_close() -> None:
    with namespace_with_tap() as (ns, dev, net):
        server = subprocess.Popen(
            in_ns(ns, sys.executable, "-c", KERNEL_SERVER), stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            payload = b"x" * 200_000
            nc = subprocess.run(
                in_ns(
                    ns,
                    *SYNACK,
                    "stack",
                    "nc",
                    "--tap",
                    dev,
                    "--ip",
                    f"{net}.2/24",
                    f"{net}.1",
                    "8001",
                ),
                input=payload,
                capture_output=True,
                timeout=60,
            )
            assert nc.returncode == 0, nc.stderr
            assert nc.stdout == b"got 200000 bytes\n"
        finally:
            server.kill()
            server.wait()


HALF_CLOSING_SERVER = """
import socket
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 8002)); srv.listen(); srv.settimeout(20)
print("ready", flush=True)
c, _ = srv.accept()
c.settimeout(20)
c.sendall(b"hello, say something\\n")
c.shutdown(socket.SHUT_WR)           # the server half-closes first
data = b""
while chunk := c.recv(65536):
    data += chunk
print("received", len(data), flush=True)
c.close()
"""


def test_stack_nc_keeps_sending_after_the_peers_fin() -> None:
    with namespace_with_tap() as (ns, dev, net):
        server = subprocess.Popen(
            in_ns(ns, sys.executable, "-c", HALF_CLOSING_SERVER),
            stdout=subprocess.PIPE,
            text=True,
        )
        nc: subprocess.Popen[bytes] | None = None
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            nc = subprocess.Popen(
                in_ns(
                    ns,
                    *SYNACK,
                    "stack",
                    "nc",
                    "--tap",
                    dev,
                    "--ip",
                    f"{net}.2/24",
                    f"{net}.1",
                    "8002",
                ),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert nc.stdin is not None and nc.stdout is not None
            # The greeting and the server's FIN come first; stdin only afterwards.
            assert nc.stdout.readline() == b"hello, say something\n"
            time.sleep(0.5)  # (sequencing, not a measure) the FIN arrives before stdin
            nc.stdin.write(b"y" * 100_000)
            nc.stdin.close()
            assert nc.wait(30) == 0, nc.stderr.read() if nc.stderr else ""
            assert nc.stdout.read() == b""
            assert server.stdout.readline().strip() == "received 100000"
        finally:
            for p in (server, nc):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()
