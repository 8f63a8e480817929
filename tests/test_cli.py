from __future__ import annotations

import argparse
import socket
import subprocess
import sys

import pytest

from synack.cli.main import main
from synack.cli.stack import _host
from synack.stack.config import LINK_TCP_BUFFER, LINK_TCP_RECEIVE_BUFFER
from synack.tcp.config import TcpConfig


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "synack" in capsys.readouterr().out


def test_unknown_command_is_one_line_and_status_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "synack", "no-such-command"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "no-such-command" in proc.stderr


def test_unresolvable_host_name_is_described_not_errno() -> None:
    # getaddrinfo's EAI_* codes printed raw ("[Errno -2] Name or service not known") tell a
    # user nothing; no lookup is made here (the error is constructed).
    from synack.cli.main import _describe_os_error

    text = _describe_os_error(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert text.startswith("cannot resolve host name")
    assert "Errno" not in text


def test_closed_stdout_pipe_is_quiet() -> None:
    # `synack net classify ... | head -1`: the reader closes the pipe early; no traceback and
    # no "Broken pipe" error line.
    addresses = [f"10.0.{i // 256}.{i % 256}" for i in range(3000)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "synack", "net", "classify", *addresses],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "Broken pipe" not in err, err
    assert proc.returncode in (0, 1)


@pytest.mark.parametrize("group", ["chat", "time", "net", "stack"])
def test_bare_group_is_one_line_and_status_2(group: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "synack", group], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "required" in proc.stderr


def test_a_host_on_a_real_link_gets_the_link_buffers_and_the_mtus_mss() -> None:
    # synack run / synack stack: the window must cover a TAP's bandwidth times
    # synack's turnaround (stack.config.LINK_TCP_BUFFER, LINK_TCP_RECEIVE_BUFFER),
    # not TcpConfig's 256 KiB.
    args = argparse.Namespace(ip="10.213.5.2/24", gateway=None, mtu=9000, mac=None)
    config = _host(args).tcp.config
    assert config.mss == 9000 - 40
    assert config.send_buffer == LINK_TCP_BUFFER
    assert config.receive_buffer == LINK_TCP_RECEIVE_BUFFER == 4 << 20
    assert TcpConfig().receive_buffer < LINK_TCP_BUFFER < LINK_TCP_RECEIVE_BUFFER
    assert config.rcv_wscale == 7  # 4 MiB in a 16-bit window field
