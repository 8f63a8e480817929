"""``synack demo --step`` at a terminal: Ctrl-D at a pause runs the rest, no traceback."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

pty = pytest.importorskip("pty", reason="needs a POSIX pseudo-terminal")


def test_ctrl_d_at_a_step_pause_runs_the_rest(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "synack", "demo", "--step", "--out", str(tmp_path)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    out = b""
    sent = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                out += data
                if b"[Enter]" in out and not sent:
                    os.write(master, b"\x04")  # Ctrl-D: end of input at the prompt
                    sent = True
            elif proc.poll() is not None:
                break
        status = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = out.decode(errors="replace")
    assert sent, text[-2000:]
    assert status == 0 and "Traceback" not in text, text[-2000:]
    assert text.count("[Enter]") == 1  # no more pauses after Ctrl-D
    assert (tmp_path / "demo.pcap").exists()
