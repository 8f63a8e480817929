"""synack's TCP against the Linux kernel's, over TAP in a namespace."""

from __future__ import annotations

import asyncio
import hashlib
import random
import sys
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv4Interface

import pytest

from synack.adapters.driver import HostDriver
from synack.links.tap import TapLink
from synack.stack.host import Host, HostConfig
from synack.tcp.states import State
from tests.interop.nsnet import NsNet, nsnet
from tests.support import requires_root_tun

pytestmark = [requires_root_tun, pytest.mark.root]

MAC = b"\x02\x53\x59\x4e\x00\x02"


def run(
    main: Callable[[NsNet, HostDriver], Awaitable[None]],
    *,
    mtu: int = 1500,
    offload: bool = False,
    big_tcp: bool = True,
) -> None:
    async def wrapper() -> None:
        with nsnet(mtu, offload=offload, big_tcp=big_tcp) as net:
            host = Host(
                HostConfig(
                    mac=MAC, interface=IPv4Interface(net.synack_cidr), mtu=net.mtu, name="synack"
                ),
                rng=random.Random(7),
            )
            d = HostDriver(host, TapLink(net.tap))
            d.start()
            try:
                await asyncio.wait_for(main(net, d), 90)
            finally:
                d.close()

    asyncio.run(wrapper())


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


KERNEL_ECHO_CLIENT = """
import hashlib, random, socket, sys, threading
ip, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
payload = random.Random(9).randbytes(size)
s = socket.create_connection((ip, port), timeout=20)
def send():
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)     # half-close: the echo must still come back
t = threading.Thread(target=send); t.start()
got = bytearray()
while chunk := s.recv(1 << 20):
    got += chunk
t.join()
s.close()
print(len(got), hashlib.sha256(got).hexdigest() == hashlib.sha256(payload).hexdigest())
"""


def test_kernel_client_1mib_echo_with_half_close() -> None:
    async def main(net: NsNet, d: HostDriver) -> None:
        await d.start_server(echo, "0.0.0.0", 7)
        out = await net.py(KERNEL_ECHO_CLIENT, net.synack_ip, "7", str(1 << 20))
        assert out.split() == [str(1 << 20), "True"]

    run(main)


def test_kernel_client_1mib_echo_mtu_65535() -> None:
    async def main(net: NsNet, d: HostDriver) -> None:
        await d.start_server(echo, "0.0.0.0", 7)
        out = await net.py(KERNEL_ECHO_CLIENT, net.synack_ip, "7", str(1 << 20))
        assert out.split() == [str(1 << 20), "True"]
        assert d.host.tcp_config.mss == 65521 - 40
        assert net.tap.vouched is None  # no offloads: every checksum is checked

    run(main, mtu=65535)


def test_kernel_client_1mib_echo_with_offloads() -> None:
    """IFF_VNET_HDR + TSO: the kernel hands synack 64 KiB segments over an
    MTU-1500 link, with partial checksums that the TAP link completes."""

    async def main(net: NsNet, d: HostDriver) -> None:
        await d.start_server(echo, "0.0.0.0", 7)
        out = await net.py(KERNEL_ECHO_CLIENT, net.synack_ip, "7", str(1 << 20))
        assert out.split() == [str(1 << 20), "True"]
        # The kernel's partial checksums fail a check: none was made, the
        # frames read as plain bytes being the vouched ones.
        assert d.host.counters["tcp-bad-checksum"] == 0 and net.tap.vouched is bytes
        assert net.tap.frames_in < (1 << 20) // 1448  # fewer reads than MTU-sized segments
        # ... and synack's echo went back as TSO super-segments.
        assert d.host.counters["tcp-tso-out"] > 0
        assert net.tap.frames_out < (1 << 20) // 1448

    run(main, offload=True)


KERNEL_DOWNLOAD = """
import hashlib, socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
got = bytearray()
while chunk := s.recv(1 << 20):
    got += chunk
print(len(got), hashlib.sha256(got).hexdigest())
"""


@pytest.mark.parametrize("offload", [False, True], ids=["software-cut", "tso"])
@pytest.mark.parametrize("advmss", [None, 1000], ids=["mss-1460", "mss-1000"])
def test_kernel_client_downloads_what_synack_sends_as_super_segments(
    offload: bool, advmss: int | None
) -> None:
    """synack's TCP hands over up to 64,000 octets as one segment: cut into
    MSS-sized frames in software on a plain TAP (the kernel checks every
    checksum), or given whole to the kernel (TSO) with offloads; the cut
    follows the MSS the kernel announced (a route's advmss)."""
    size = 4 << 20
    payload = random.Random(4).randbytes(size)

    async def send_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()
        writer.close()

    async def main(net: NsNet, d: HostDriver) -> None:
        if advmss is not None:
            subnet = str(IPv4Interface(net.synack_cidr).network)
            dev = net.tap.name
            ok = net.run("ip", "route", "change", subnet, "dev", dev, "advmss", str(advmss))
            assert ok.returncode == 0, ok.stderr
        await d.start_server(send_all, "0.0.0.0", 9)
        out = await net.py(KERNEL_DOWNLOAD, net.synack_ip, "9")
        assert out.split() == [str(size), hashlib.sha256(payload).hexdigest()]
        large = d.host.tcp.output.large_out
        assert large > 10  # most of the data left TCP as super-segments
        mss = 1448 if advmss is None else advmss - 12  # less the timestamp option
        if offload:
            assert net.tap.frames_out < size // mss // 4
        else:
            # One frame per MSS-sized piece: as many as the cut gives, no more.
            assert size // mss <= net.tap.frames_out < size // mss * 1.1

    run(main, offload=offload)


KERNEL_REFUSED = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 9), timeout=5)
    print("connected?!")
except ConnectionRefusedError:
    print("refused")
"""


def test_rst_for_closed_port() -> None:
    async def main(net: NsNet, d: HostDriver) -> None:
        assert (await net.py(KERNEL_REFUSED, net.synack_ip)).strip() == "refused"
        assert d.host.counters["tcp-closed-port"] == 1

    run(main)


KERNEL_SHORT = """
import socket, sys
ip, n = sys.argv[1], int(sys.argv[2])
ok = 0
for i in range(n):
    with socket.create_connection((ip, 13), timeout=5) as s:
        data = b""
        while chunk := s.recv(100):
            data += chunk
        ok += data == b"synack daytime\\r\\n"
print(ok)
"""


def test_300_short_connections() -> None:
    async def main(net: NsNet, d: HostDriver) -> None:
        async def daytime(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"synack daytime\r\n")
            writer.close()

        await d.start_server(daytime, "0.0.0.0", 13)
        assert (await net.py(KERNEL_SHORT, net.synack_ip, "300")).strip() == "300"
        # The server closed first, so it holds the TIME-WAITs; nothing else is left.
        states = {s.conn.state for s in d.host.connections.values()}
        assert states <= {State.TIME_WAIT}

    run(main)


KERNEL_SERVER = """
import socket, sys
mode = sys.argv[1]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 8000)); srv.listen(); srv.settimeout(20)
print("ready", flush=True)
c, _ = srv.accept()
data = b""
while not data.endswith(b"\\n"):
    data += c.recv(100)
c.sendall(data.upper())
if mode == "kernel-closes-first":
    c.close()
else:
    rest = c.recv(100)          # synack closes first: we see its FIN (b"")
    assert rest == b"", rest
    c.close()
print("done", flush=True)
"""


@pytest.mark.parametrize("mode", ["kernel-closes-first", "synack-closes-first"])
def test_synack_client_to_kernel_server_both_close_orders(mode: str) -> None:
    async def main(net: NsNet, d: HostDriver) -> None:
        proc = await asyncio.create_subprocess_exec(
            *net.exec_args(sys.executable, "-c", KERNEL_SERVER, mode),
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"
        reader, writer = await d.open_connection(net.kernel_ip, 8000)
        stream = writer.get_extra_info("synack_stream")
        writer.write(b"hello kernel\n")
        assert await reader.readline() == b"HELLO KERNEL\n"
        if mode == "kernel-closes-first":
            assert await reader.read() == b""  # the kernel's FIN
            assert stream.conn.state is State.CLOSE_WAIT
            writer.close()
            for _ in range(200):
                if stream.gone:
                    break
                await asyncio.sleep(0.01)
            # CLOSE-WAIT -> LAST-ACK -> CLOSED
            assert [t.new for t in stream.conn.transitions][-2:] == [State.LAST_ACK, State.CLOSED]
        else:
            writer.close()
            for _ in range(200):
                if stream.conn.state is State.TIME_WAIT:
                    break
                await asyncio.sleep(0.01)
            assert stream.conn.state is State.TIME_WAIT
        assert (await proc.stdout.readline()).strip() == b"done"
        assert await proc.wait() == 0
        assert stream.key[2] == IPv4Address(net.kernel_ip)

    run(main)


KERNEL_UPPER = """
import socket
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 8002)); srv.listen(); srv.settimeout(20)
print("ready", flush=True)
c, _ = srv.accept()
while data := c.recv(65536):
    c.sendall(data.upper())
c.close()
"""


def test_blocking_socket_api_client_to_kernel_server() -> None:
    import subprocess

    from synack.adapters.sockets import Runtime

    with nsnet() as net:
        server = subprocess.Popen(
            net.exec_args(sys.executable, "-c", KERNEL_UPPER), stdout=subprocess.PIPE, text=True
        )
        rt = Runtime()
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            host = Host(
                HostConfig(
                    mac=MAC, interface=IPv4Interface(net.synack_cidr), mtu=net.mtu, name="synack"
                ),
                rng=random.Random(3),
            )
            socket = rt.add_host(host, TapLink(net.tap))
            with socket.create_connection((net.kernel_ip, 8002), timeout=10) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(b"abc" * 50_000)
                s.shutdown(socket.SHUT_WR)
                got = bytearray()
                while chunk := s.recv(65536):
                    got += chunk
                assert bytes(got) == b"ABC" * 50_000
        finally:
            rt.close()
            server.kill()
            server.wait()
