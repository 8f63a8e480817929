"""``synack stack`` user mistakes: one clear line, exit status 2 (no root needed)."""

from __future__ import annotations

import subprocess
import sys

SYNACK = [sys.executable, "-m", "synack"]


def test_stack_usage_errors() -> None:
    procs = []
    for argv in (
        ["stack", "serve", "--tap", "x", "--ip", "10.213.0.0/24"],
        ["stack", "nc", "--tap", "x", "--ip", "10.213.0.2/24", "example.com", "80"],
        ["stack", "serve", "--tap", "x" * 20, "--ip", "10.213.0.2/24"],
        ["run", "--tap", "x", "--ip", "10.213.0.2/24", "--no-big-tcp", "--", "-m", "json.tool"],
        ["stack", "serve", "--tap", "x", "--ip", "10.213.0.2/24", "--no-big-tcp"],
    ):
        procs.append(
            (
                argv,
                subprocess.Popen(
                    [*SYNACK, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                ),
            )
        )
    for argv, proc in procs:  # in parallel: each start-up imports the whole CLI
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 2, (argv, err)
        assert err.count("\n") == 1 and "error" in err
        if "--no-big-tcp" in argv:  # refused for itself, before any device is opened
            assert "--no-big-tcp needs --offload" in err
