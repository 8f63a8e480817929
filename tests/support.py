"""Helpers shared by tests: ``from tests.support import requires_root_tun``."""

from __future__ import annotations

import os
import shutil

import pytest


def have_root_and_tun() -> bool:
    return os.geteuid() == 0 and os.path.exists("/dev/net/tun") and shutil.which("ip") is not None


requires_root_tun = pytest.mark.skipif(
    not have_root_and_tun(), reason="needs root, /dev/net/tun and iproute2 (network namespaces)"
)
