"""The time service against independent clients: ntplib, chrony, the CLI."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import ntplib
import pytest

from synack.apps.time.server import start_time_server
from tests.apps.time.serverproc import ServerProc, running_server, synack_cmd


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProc]:
    with running_server(
        ["time", "serve", "--port", "0", "--sntp-port", "0", "--rate", "20", "--burst", "40"], 2
    ) as srv:
        yield srv


def udp_ask(port: int, payload: bytes, source: str = "127.0.0.1", timeout: float = 2.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.sendto(payload, ("127.0.0.1", port))
        return s.recv(2048)


@pytest.mark.parametrize("version", [3, 4])
def test_ntplib_accepts_the_server(server: ServerProc, version: int) -> None:
    r = ntplib.NTPClient().request(
        "127.0.0.1", port=server.ports["sntp"], version=version, timeout=2
    )
    assert r.version == version
    assert r.mode == 4 and r.leap == 0 and r.stratum == 10
    assert abs(r.offset) < 0.05
    assert 0 <= r.delay < 0.5


def chronyd_offset(port: int, tmp: Path) -> float:
    chronyd = shutil.which("chronyd") or "/usr/sbin/chronyd"
    # -Q: measure once and print, never touch the system clock. The pidfile
    # goes to our tmp dir so parallel runs (and a system chronyd) never clash.
    proc = subprocess.run(
        [
            chronyd,
            "-Q",
            "-t",
            "10",
            f"server 127.0.0.1 port {port} iburst maxsamples 1",
            f"pidfile {tmp / 'chronyd.pid'}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    out = proc.stdout + proc.stderr
    m = re.search(r"System clock wrong by (-?[0-9.]+) seconds", out)
    assert proc.returncode == 0 and m, out
    return float(m.group(1))


@pytest.mark.skipif(
    shutil.which("chronyd") is None and not Path("/usr/sbin/chronyd").exists(),
    reason="chronyd (chrony) not installed; .ci/run installs it",
)
@pytest.mark.skipif(os.geteuid() != 0, reason="chronyd -Q needs root")
def test_chronyd_accepts_the_server(server: ServerProc, tmp_path: Path) -> None:
    assert abs(chronyd_offset(server.ports["sntp"], tmp_path)) < 0.05


def test_format_protocol_over_the_wire(server: ServerProc) -> None:
    port = server.ports["time"]
    before = int(time.time())
    out = int(udp_ask(port, b"%s", source="127.0.0.3"))
    assert before <= out <= time.time() + 1
    assert udp_ask(port, b"\xff", source="127.0.0.3").startswith(b"error: ")
    assert (
        udp_ask(port, b"x" * 300, source="127.0.0.3") == b"error: request too long (over 256 bytes)"
    )


def test_burst_is_partly_answered_and_others_still_served(server: ServerProc) -> None:
    port = server.ports["time"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.4", 0))
        for _ in range(200):
            s.sendto(b"%s", ("127.0.0.1", port))
        s.settimeout(1.0)
        got = 0
        try:
            while True:
                s.recv(2048)
                got += 1
        except TimeoutError:
            pass
    assert 40 <= got < 200  # the burst allowance, plus what refilled meanwhile
    # A different source is answered at once.
    assert udp_ask(port, b"%Y", source="127.0.0.5") == time.strftime("%Y").encode()


def test_sntp_malformed_is_ignored_and_server_keeps_serving(server: ServerProc) -> None:
    port = server.ports["sntp"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        for bad in (
            b"",
            b"\x23" * 47,
            b"\x24" + bytes(47),
            b"\x03" + bytes(47),
            b"\x2b" + bytes(47),
        ):
            s.sendto(bad, ("127.0.0.1", port))
        with pytest.raises(TimeoutError):
            s.recv(2048)
    r = ntplib.NTPClient().request("127.0.0.1", port=port, version=4, timeout=2)
    assert r.mode == 4


def test_query_cli(server: ServerProc) -> None:
    out = subprocess.run(
        synack_cmd("time", "query", "%Y", "--port", str(server.ports["time"])),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and out.stdout.strip() == time.strftime("%Y")
    out = subprocess.run(
        synack_cmd("time", "query", "--sntp", "--port", str(server.ports["sntp"])),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    m = re.match(r"offset ([-+][0-9.]+) s  delay ([0-9.]+) s  stratum 10", out.stdout)
    assert m, out.stdout
    assert abs(float(m.group(1))) < 0.05


def test_datagram_protocol_path_with_ntplib() -> None:
    """The injectable create_datagram_endpoint path (how synack's own stack runs it)."""

    async def main() -> tuple[float, bytes]:
        loop = asyncio.get_running_loop()
        srv = await start_time_server(
            "127.0.0.1", 0, 0, create_datagram_endpoint=loop.create_datagram_endpoint
        )
        try:
            sport = srv.sntp_endpoint.sockname[1]
            fport = srv.fmt_endpoint.sockname[1]
            r = await loop.run_in_executor(
                None, lambda: ntplib.NTPClient().request("127.0.0.1", port=sport, timeout=2)
            )
            text = await loop.run_in_executor(None, udp_ask, fport, b"%Y")
            assert srv.sntp.counters.answered == 1
            return r.offset, text
        finally:
            srv.close()

    offset, text = asyncio.run(main())
    assert abs(offset) < 0.05
    assert text == time.strftime("%Y").encode()


def test_sigterm_and_sigint_exit_0() -> None:
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        with running_server(["time", "serve", "--port", "0", "--sntp-port", "0"], 2) as srv:
            udp_ask(srv.ports["time"], b"\xff")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"\x1b" + bytes(10), ("127.0.0.1", srv.ports["sntp"]))
            udp_ask(srv.ports["time"], b"%Y")  # both earlier datagrams were handled
            assert srv.stop(sig) == 0
            assert srv.proc.stderr is not None
            summary = srv.proc.stderr.read()
            # What was refused is counted and reported at exit.
            assert "time: 1 answered, 1 error replies, 0 rate-limited" in summary
            assert "ignored (short 1," in summary


@pytest.mark.parametrize(
    "args",
    [
        ["time", "query", "--port", "70000"],
        ["time", "serve", "--port", "-1"],
        ["time", "serve", "--rate", "fast"],
        ["time", "query", "--sntp", "%Y"],
        ["time", "query", "--port", "0"],
    ],
)
def test_user_mistakes_exit_2_with_one_line(args: list[str]) -> None:
    proc = subprocess.run(synack_cmd(*args), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip() and proc.stderr.strip().count("\n") == 0, proc.stderr


def test_port_in_use_exit_2() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        proc = subprocess.run(
            synack_cmd("time", "serve", "--port", str(port), "--sntp-port", "0"),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 2
    assert "address already in use" in proc.stderr and proc.stderr.count("\n") == 1


def test_query_without_server_fails_cleanly() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        # A bound socket that never answers: the query gives up after its tries.
        proc = subprocess.run(
            synack_cmd("time", "query", "--port", str(port), "--timeout", "0.2", "--tries", "2"),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 1
    assert "no answer" in proc.stderr and sys.executable not in proc.stderr


def test_fuzzed_sntp_over_the_wire_never_stops_the_server(server: ServerProc) -> None:
    """Seeded garbage and near-valid packets at the real socket, then a real client."""
    import random

    rng = random.Random(99)
    port = server.ports["sntp"]
    answered = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        for i in range(600):
            size = rng.choice(
                [0, 1, 47, 48, 49, 64, 68, 120, 1024, 1025, 1400, rng.randrange(2000)]
            )
            data = bytearray(rng.randbytes(size))
            if data and i % 2:
                data[0] = (data[0] & 0xC0) | (rng.randrange(8) << 3) | rng.randrange(8)
            s.sendto(bytes(data), ("127.0.0.1", port))
            try:
                while True:
                    reply = s.recv(2048)
                    answered += 1
                    assert len(reply) == 48 and reply[0] & 7 == 4
            except BlockingIOError:
                pass
    assert server.proc.poll() is None
    # The flood may still fill the server's socket buffer, where the kernel
    # drops what does not fit (that is UDP): a client retries, so do we.
    for attempt in range(5):
        try:
            r = ntplib.NTPClient().request("127.0.0.1", port=port, version=4, timeout=1)
            break
        except ntplib.NTPException:
            if attempt == 4:
                raise
    assert r.mode == 4 and abs(r.offset) < 0.05
