"""``synack stack`` user mistakes: one clear line, exit status 2 (no root needed)."""

from __future__ import annotations

import subprocess
import sys

SYNACK = [sys.executable, "-m", "synack"]


def test_stack_usage_errors() -> None:
    for argv in (
        ["stack", "serve", "--tap", "x", "--ip", "10.213.0.0/24"],
        ["stack", "serve", "--tap", "x", "--ip", "nonsense"],
        ["stack", "nc", "--tap", "x", "--ip", "10.213.0.2/24", "example.com", "80"],
        ["stack", "serve", "--tap", "x", "--ip", "10.213.0.2/24", "--services", "bogus:1"],
        ["stack", "serve", "--tap", "x" * 20, "--ip", "10.213.0.2/24"],
    ):
        r = subprocess.run([*SYNACK, *argv], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (argv, r.stderr)
        assert r.stderr.count("\n") == 1 and "error" in r.stderr
