"""Two namespaces joined by ``synack link bridge`` (kernel <-> kernel through synack's link).

The bridge process creates TAP ``la<hex>`` and ``lb<hex>``; each is moved into
its own namespace (``synack-<hex>a`` / ``-b``), which gets ``10.213.N.1/24`` and
``10.213.N.2/24``. Namespaces and the process are always cleaned up; the
bridge's per-direction statistics are read when it stops.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class LinkPath:
    ns_a: str
    ns_b: str
    ip_a: str
    ip_b: str
    proc: subprocess.Popen[str]
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    tap_a: str = ""
    tap_b: str = ""

    def exec_args(self, ns: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def stop(self) -> dict[str, dict[str, Any]]:
        """Stop the bridge; its statistics per direction ("a->b", "b->a")."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            out, _ = self.proc.communicate(timeout=20)
            for line in out.splitlines():
                rec = json.loads(line)
                self.stats[rec["direction"]] = rec
        return self.stats


def _setup_ns(ns: str, dev: str, cidr: str, mtu: int) -> None:
    _ip("netns", "add", ns)
    _ip("link", "set", dev, "netns", ns)
    subprocess.run(
        ["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
        capture_output=True,
        timeout=10,
    )
    _ip("-n", ns, "link", "set", "lo", "up")
    _ip("-n", ns, "link", "set", dev, "mtu", str(mtu))
    _ip("-n", ns, "addr", "add", cidr, "dev", dev)
    _ip("-n", ns, "link", "set", dev, "up")


@contextmanager
def link_path(*bridge_args: str, mtu: int = 1500) -> Iterator[LinkPath]:
    tag = secrets.token_hex(4)
    ns_a, ns_b = f"synack-{tag}a", f"synack-{tag}b"
    subnet = 1 + secrets.randbelow(254)
    ip_a, ip_b = f"10.213.{subnet}.1", f"10.213.{subnet}.2"
    tap_a, tap_b = f"la{tag}", f"lb{tag}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "synack",
            "link",
            "bridge",
            "--tap-a",
            tap_a,
            "--tap-b",
            tap_b,
            "--mtu",
            str(mtu),
            "--duration",
            "600",
            *bridge_args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("bridging"), line + proc.stderr.read()
        _setup_ns(ns_a, tap_a, f"{ip_a}/24", mtu)
        _setup_ns(ns_b, tap_b, f"{ip_b}/24", mtu)
        path = LinkPath(ns_a, ns_b, ip_a, ip_b, proc, tap_a=tap_a, tap_b=tap_b)
        yield path
        path.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for ns in (ns_a, ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
            assert not os.path.exists(f"/run/netns/{ns}")
