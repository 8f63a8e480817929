"""keep_freed_heap (links/tap.py): a TAP link's batches of 64 KiB frames reuse
freed memory instead of faulting fresh pages in each time (glibc only)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

# A TAP batch: 64 frames of 64 KiB, a run of them joined, all freed; 20 times.
CHURN = """
import os, resource, sys
from synack.links.tap import keep_freed_heap
kept = keep_freed_heap() if sys.argv[1] == "keep" else None
def batch():
    return [os.urandom(1) * 65536 for _ in range(64)]
batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    frames = batch()
    run = b"".join(frames[:4])
    del frames, run
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _churn(mode: str, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUN"))}
    out = subprocess.run(
        [sys.executable, "-c", CHURN, mode],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    return out[0], int(out[1])


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).mallopt  # noqa: B018
    except (OSError, AttributeError):
        return False
    return os.confstr("CS_GNU_LIBC_VERSION") is not None


@pytest.mark.skipif(not _glibc(), reason="mallopt is glibc's")
def test_batches_of_frames_reuse_the_heap_once_kept() -> None:
    kept, faults = _churn("keep")
    _, default_faults = _churn("default")
    assert kept == "True"
    # 20 batches of 4 MiB: glibc's default trims and faults each in again
    # (~1,000 pages a batch); kept, the first batch's pages serve them all.
    assert default_faults > 5_000
    assert faults < default_faults // 10


@pytest.mark.skipif(not _glibc(), reason="mallopt is glibc's")
def test_a_malloc_setting_in_the_environment_is_left_alone() -> None:
    kept, faults = _churn("keep", MALLOC_ARENA_MAX="2")
    assert kept == "False"
    assert faults > 5_000  # glibc's defaults still rule
    kept, _ = _churn("keep", GLIBC_TUNABLES="glibc.malloc.trim_threshold=1000000")
    assert kept == "False"
