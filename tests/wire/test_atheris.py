"""A short, bounded atheris (libFuzzer) campaign over every parser, when atheris is installed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("fuzz_atheris.py")


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None, reason="atheris is not installed (optional fuzzer)"
)
def test_atheris_finds_no_crash(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            "-runs=30000",
            "-max_total_time=20",
            "-seed=4",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done" in result.stderr
