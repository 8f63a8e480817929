"""The classic services: RFC 862 echo, 863 discard, 864 chargen, 867 daytime."""

from __future__ import annotations

import asyncio
import random
import re
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from synack.apps.services import (
    CHARGEN_CYCLE,
    UdpClassic,
    chargen_line,
    open_tcp_service,
    open_udp_service,
)
from tests.apps.time.serverproc import ServerProc, running_server, synack_cmd

PRINTABLE = bytes(range(32, 127))
DAYTIME = re.compile(rb"^[A-Z][a-z]+day, [A-Z][a-z]+ \d\d, \d{4} \d\d:\d\d:\d\d-\S*\r\n$")


def test_chargen_lines_rotate_as_rfc_864_shows() -> None:
    assert chargen_line(0) == PRINTABLE[:72] + b"\r\n"
    assert chargen_line(1) == PRINTABLE[1:73] + b"\r\n"
    # Line 30 wraps around the end of the 95 printable characters.
    assert chargen_line(30) == PRINTABLE[30:] + PRINTABLE[:7] + b"\r\n"
    assert chargen_line(95) == chargen_line(0)
    assert len(CHARGEN_CYCLE) == 95 * 74


def test_udp_handlers() -> None:
    addr = ("10.0.0.1", 5000)
    assert UdpClassic("echo")(b"ping", addr) == b"ping"
    assert UdpClassic("discard")(b"ping", addr) is None
    assert DAYTIME.match(UdpClassic("daytime", clock=lambda: 1_763_900_000.0)(b"", addr) or b"")
    gen = UdpClassic("chargen", rng=random.Random(1))
    stream = b""
    for _ in range(50):
        out = gen(b"", addr)
        assert out is not None and 0 <= len(out) <= 512
        stream += out
    # Consecutive replies continue one rotating pattern.
    assert stream == (CHARGEN_CYCLE * (len(stream) // len(CHARGEN_CYCLE) + 1))[: len(stream)]


def test_udp_rate_limit_per_source() -> None:
    t = [0.0]
    echo = UdpClassic("echo", rate=10, burst=5, monotonic=lambda: t[0])
    answered = sum(echo(b"x", ("10.0.0.1", 1)) is not None for _ in range(20))
    assert answered == 5 and echo.rate_limited == 15
    assert echo(b"x", ("10.0.0.2", 1)) == b"x"
    assert echo(b"x", ("10.0.0.3", 0)) is None  # port 0 cannot be answered


@pytest.fixture(scope="module")
def served() -> Iterator[ServerProc]:
    with running_server(["serve", "--services", "echo:0,discard:0,chargen:0,daytime:0"], 8) as srv:
        yield srv


def tcp(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "closed early"
        buf += chunk
    return buf


def test_tcp_echo_large(served: ServerProc) -> None:
    data = random.Random(7).randbytes(1_000_000)
    with tcp(served.ports["echo/tcp"]) as s:
        # Write and read concurrently: echo applies back-pressure.
        import threading

        t = threading.Thread(target=s.sendall, args=(data,))
        t.start()
        got = recv_exact(s, len(data))
        t.join()
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1) == b""  # closes after our end of input
    assert got == data


def test_tcp_discard_and_daytime(served: ServerProc) -> None:
    with tcp(served.ports["discard/tcp"]) as s:
        s.sendall(b"x" * 100_000)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(10) == b""  # nothing ever comes back
    with tcp(served.ports["daytime/tcp"]) as s:
        out = b""
        while chunk := s.recv(1024):
            out += chunk
    assert DAYTIME.match(out), out


def test_tcp_chargen(served: ServerProc) -> None:
    with tcp(served.ports["chargen/tcp"]) as s:
        got = recv_exact(s, 3 * len(CHARGEN_CYCLE))
    assert got == CHARGEN_CYCLE * 3
    # The server survives the client's abrupt close and serves the next one.
    with tcp(served.ports["chargen/tcp"]) as s:
        assert recv_exact(s, 74) == chargen_line(0)


def test_udp_services(served: ServerProc) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"hello", ("127.0.0.1", served.ports["echo/udp"]))
        assert s.recv(2048) == b"hello"
        s.sendto(b"", ("127.0.0.1", served.ports["daytime/udp"]))
        assert DAYTIME.match(s.recv(2048))
        s.sendto(b"", ("127.0.0.1", served.ports["chargen/udp"]))
        out = s.recv(2048)
        assert len(out) <= 512 and set(out) <= set(PRINTABLE + b"\r\n")
        s.sendto(b"gone", ("127.0.0.1", served.ports["discard/udp"]))
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):
            s.recv(2048)


def test_injected_start_server_and_datagram_endpoint() -> None:
    """The code paths synack's own stack will use: nothing but the injected callables."""
    calls: list[str] = []

    async def start_server(cb: Any, host: str, port: int) -> asyncio.AbstractServer:
        calls.append("tcp")
        return await asyncio.start_server(cb, host, port)

    async def main() -> tuple[bytes, bytes]:
        loop = asyncio.get_running_loop()

        async def endpoint(*args: Any, **kwargs: Any) -> Any:
            calls.append("udp")
            return await loop.create_datagram_endpoint(*args, **kwargs)

        server = await open_tcp_service("echo", "127.0.0.1", 0, start_server=start_server)
        udp = await open_udp_service(
            "echo", UdpClassic("echo"), "127.0.0.1", 0, create_datagram_endpoint=endpoint
        )
        try:
            port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"stream")
            await writer.drain()
            echoed = await reader.readexactly(6)
            writer.close()

            fut: asyncio.Future[bytes] = loop.create_future()

            class Client(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: Any) -> None:
                    fut.set_result(data)

            transport, _ = await loop.create_datagram_endpoint(
                Client, remote_addr=("127.0.0.1", udp.sockname[1])
            )
            transport.sendto(b"datagram")
            got = await asyncio.wait_for(fut, 5)
            transport.close()
            return echoed, got
        finally:
            server.close()
            udp.close()

    assert asyncio.run(main()) == (b"stream", b"datagram")
    assert calls == ["tcp", "udp"]


def test_tcp_only_and_sigterm() -> None:
    with running_server(["serve", "--services", "echo:0", "--tcp"], 1) as srv:
        assert list(srv.ports) == ["echo/tcp"]
        assert srv.stop() == 0


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--services", "telnet:23"],
        ["serve", "--services", "echo:abc"],
        ["serve", "--services", "echo:0", "--tcp", "--udp"],
    ],
)
def test_user_mistakes_exit_2(args: list[str]) -> None:
    proc = subprocess.run(synack_cmd(*args), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr


def test_port_in_use_exit_2() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run(
            synack_cmd("serve", "--services", f"echo:{port}", "--tcp"),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 2 and "address already in use" in proc.stderr


def test_one_host_cannot_take_every_slot_and_idle_connections_are_closed() -> None:
    # One client opening connections and sitting on them must not lock the service: past
    # max_per_host its extra connections are closed at once, and an idle one is closed after
    # idle_timeout (so even the slots it holds come back).
    async def main() -> None:
        server = await open_tcp_service(
            "echo", "127.0.0.1", 0, max_connections=10, max_per_host=3, idle_timeout=0.3
        )
        try:
            port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
            conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
            # The fourth from this host is closed without a byte.
            assert await asyncio.wait_for(conns[3][0].read(), 5) == b""
            # The first three are served while they talk...
            for reader, writer in conns[:3]:
                writer.write(b"x")
                assert await asyncio.wait_for(reader.readexactly(1), 5) == b"x"
            # ...and closed once they fall silent.
            for reader, _ in conns[:3]:
                assert await asyncio.wait_for(reader.read(), 5) == b""
            # Their slots are free again.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"again")
            assert await asyncio.wait_for(reader.readexactly(5), 5) == b"again"
            for _, w in [*conns, (reader, writer)]:
                w.close()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_chargen_to_a_client_that_never_reads_is_closed_when_idle() -> None:
    async def main() -> None:
        server = await open_tcp_service("chargen", "127.0.0.1", 0, idle_timeout=0.3)
        try:
            port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
            sock = socket.socket()
            # A small receive window (set before connecting, so it is what the SYN offers).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            # Never read until the server has given up; then the stream ends (or is reset).
            await asyncio.sleep(1.0)
            closed = False
            for _ in range(10_000):  # bounded: drain what the buffers hold, then EOF
                try:
                    data = await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 5)
                except ConnectionResetError:
                    closed = True
                    break
                if not data:
                    closed = True
                    break
            sock.close()
            assert closed
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())
