"""A network namespace with a TAP device whose other end is a synack host.

Layout (docs/protocol.md §6): the test opens TAP ``sy<hex>`` in its own namespace,
then moves the device into a fresh namespace ``synack-<hex>`` (the open file
descriptor stays attached), where the kernel gets ``10.213.N.1/24``; the
synack host is ``10.213.N.2/24``. The namespace is always deleted.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Interface

from synack.links.tap import TapDevice


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class NsNet:
    ns: str
    tap: TapDevice
    kernel_ip: str
    synack_cidr: str
    mtu: int

    @property
    def synack_ip(self) -> str:
        return str(IPv4Interface(self.synack_cidr).ip)

    def exec_args(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def run(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.exec_args(*argv), capture_output=True, text=True, timeout=timeout
        )

    async def py(
        self, code: str, *args: str, timeout: float = 60, stdin: bytes | None = None
    ) -> str:
        """Run Python ``code`` inside the namespace (the kernel's side); its
        stdout, or AssertionError with stderr when it fails."""
        proc = await asyncio.create_subprocess_exec(
            *self.exec_args(sys.executable, "-c", code, *args),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            raise AssertionError(f"kernel side failed ({proc.returncode}): {err.decode()[-2000:]}")
        return out.decode()


@contextmanager
def nsnet(mtu: int = 1500, *, offload: bool = False, big_tcp: bool = True) -> Iterator[NsNet]:
    tag = secrets.token_hex(4)
    ns = f"synack-{tag}"
    subnet = 1 + secrets.randbelow(254)
    kernel_ip = f"10.213.{subnet}.1"
    _ip("netns", "add", ns)
    tap: TapDevice | None = None
    try:
        tap = TapDevice(f"sy{tag}", mtu=mtu, offload=offload, big_tcp=big_tcp)
        _ip("link", "set", tap.name, "netns", ns)
        # IPv6 off: keeps router solicitations and MLD out of the captures.
        subprocess.run(
            ["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
            capture_output=True,
            timeout=10,
        )
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "set", tap.name, "mtu", str(tap.mtu))
        _ip("-n", ns, "addr", "add", f"{kernel_ip}/24", "dev", tap.name)
        _ip("-n", ns, "link", "set", tap.name, "up")
        yield NsNet(ns, tap, kernel_ip, f"10.213.{subnet}.2/24", tap.mtu)
    finally:
        if tap is not None:
            tap.close()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        assert not os.path.exists(f"/run/netns/{ns}")
