from __future__ import annotations

import subprocess
import sys

import pytest

from synack.cli import main


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "synack" in capsys.readouterr().out


def test_unknown_command_is_one_line_and_status_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "synack", "no-such-command"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "no-such-command" in proc.stderr
