"""Helpers shared by tests: ``from tests.support import requires_root_tun``."""

from __future__ import annotations

import os
import shutil
import threading
from typing import Any

import pytest


def have_root_and_tun() -> bool:
    return os.geteuid() == 0 and os.path.exists("/dev/net/tun") and shutil.which("ip") is not None


requires_root_tun = pytest.mark.skipif(
    not have_root_and_tun(), reason="needs root, /dev/net/tun and iproute2 (network namespaces)"
)


def serve_upper(srv: Any, n: int, seen: list[bytes]) -> threading.Thread:
    """A thread that accepts ``n`` connections on ``srv``, one after another: each
    request (one recv) goes into ``seen`` and comes back upper-cased, then close."""

    def run() -> None:
        for _ in range(n):
            c, _ = srv.accept()
            c.settimeout(10)
            req = c.recv(4096)
            seen.append(req)
            c.sendall(req.upper())
            c.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t
