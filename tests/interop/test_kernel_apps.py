"""Applications on synack's stack with Linux-kernel clients; a SYN flood."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from synack.adapters.driver import HostDriver
from synack.apps.chat.server import ChatServer
from synack.apps.services import STREAM_HANDLERS
from tests.interop.nsnet import NsNet
from tests.interop.test_kernel_tcp import run
from tests.support import requires_root_tun

pytestmark = [requires_root_tun, pytest.mark.root]


def test_chat_server_on_synack_with_kernel_clients() -> None:
    async def main(net: NsNet, d: HostDriver) -> None:
        chat = ChatServer(create_server=d.create_server)
        await chat.start("0.0.0.0", 8898)

        async def join(nick: str, lines: list[str]) -> list[dict[str, object]]:
            proc = await asyncio.create_subprocess_exec(
                *net.exec_args(
                    sys.executable,
                    "-m",
                    "synack",
                    "chat",
                    "join",
                    "--nick",
                    nick,
                    "--host",
                    net.synack_ip,
                    "--port",
                    "8898",
                    "--json",
                ),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(
                proc.communicate("\n".join(lines).encode() + b"\n"), 30
            )
            assert proc.returncode == 0, err.decode()
            return [json.loads(line) for line in out.decode().splitlines() if line.strip()]

        alice, bob = await asyncio.gather(
            join("alice", ["hello from alice", "/who"]), join("bob", ["hello from bob"])
        )
        for nick, got in (("alice", alice), ("bob", bob)):
            types = [m["type"] for m in got]
            assert types[0] == "welcome" and types[-1] == "bye", got
            mine = [m for m in got if m["type"] == "msg" and m["from"] == nick]
            assert [m["text"] for m in mine] == [f"hello from {nick}"]
        assert any(m["type"] == "users" for m in alice)
        await chat.stop()

    run(main)


KERNEL_BULK = """
import socket, sys, time
ip = sys.argv[1]
# discard: 4 MiB in, the server reads it all and closes after our FIN.
with socket.create_connection((ip, 9), timeout=20) as s:
    s.sendall(b"d" * (4 << 20))
    s.shutdown(socket.SHUT_WR)
    assert s.recv(10) == b""
# chargen: read 1 MiB of the RFC 864 pattern, then close (reset is fine).
with socket.create_connection((ip, 19), timeout=20) as s:
    got = bytearray()
    while len(got) < (1 << 20):
        chunk = s.recv(65536)
        assert chunk
        got += chunk
    lines = bytes(got).split(b"\\r\\n")
    assert all(len(l) == 72 for l in lines[1:-1]), "chargen lines are 72 characters"
print("ok")
"""


def test_bulk_to_discard_and_from_chargen() -> None:
    async def main(net: NsNet, d: HostDriver) -> None:
        await d.start_server(STREAM_HANDLERS["discard"], "0.0.0.0", 9)
        await d.start_server(STREAM_HANDLERS["chargen"], "0.0.0.0", 19)
        assert (await net.py(KERNEL_BULK, net.synack_ip)).strip() == "ok"

    run(main)


SYN_FLOOD = """
import random, socket, struct, sys, time
dst, prefix, count, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
def csum(b):
    if len(b) % 2: b += b"\\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
rng = random.Random(1)
start = time.monotonic()
for i in range(count):
    src = f"{prefix}.{rng.randrange(100, 250)}"
    sport = rng.randrange(1024, 65535)
    tcp = struct.pack("!HHIIBBHHH", sport, 80, rng.randrange(1 << 32), 0, 5 << 4, 0x02, 65535, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xffff, 0, 64, 6, 0, socket.inet_aton(src), socket.inet_aton(dst))
    raw.sendto(ip + tcp, (dst, 0))
    # Paced: the flood lasts a few seconds, during which the real client connects.
    delay = start + (i + 1) / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
print("flooded", count)
"""

REAL_CLIENT = """
import socket, sys, time
time.sleep(0.5)  # well inside the flood
s = socket.create_connection((sys.argv[1], 80), timeout=10)
s.sendall(b"ping\\n")
print(s.recv(100).decode().strip())
s.close()
"""


def test_syn_flood_while_a_real_client_connects() -> None:
    async def main(net: NsNet, d: HostDriver) -> None:
        async def pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            writer.write(b"pong\n")
            writer.close()

        await d.start_server(pong, "0.0.0.0", 80)
        prefix = net.kernel_ip.rsplit(".", 1)[0]
        flood = asyncio.create_task(net.py(SYN_FLOOD, net.synack_ip, prefix, "6000", "2000"))
        client = await net.py(REAL_CLIENT, net.synack_ip)
        assert client.strip() == "pong"
        assert (await flood).strip() == "flooded 6000"
        # The half-open queue stayed bounded; past it, SYNs were answered with
        # SYN cookies (no state) within the flood budgets and the rest dropped
        # before any work (docs/protocol.md, the stack's defences): every SYN
        # is accounted for, and the kernel's ACK rebuilt the real connection.
        c = d.host.counters
        dropped = c["tcp-syn-flood-dropped"] + c["tcp-syn-flood-source-dropped"]
        assert c["tcp-passive-opens"] + c["tcp-syncookies-sent"] + dropped >= 6000
        assert c["tcp-syncookies-sent"] > 1000
        assert c["tcp-syncookies-ok"] == 1  # the real client came in by its cookie

    run(main)


def test_time_services_on_synack_with_kernel_clients() -> None:
    async def main(net: NsNet, d: HostDriver) -> None:
        from synack.apps.time.server import start_time_server

        ts = await start_time_server(
            "0.0.0.0", 9000, 8123, create_datagram_endpoint=d.create_datagram_endpoint
        )
        proc = await asyncio.create_subprocess_exec(
            *net.exec_args(
                sys.executable,
                "-m",
                "synack",
                "time",
                "query",
                "%Y",
                "--host",
                net.synack_ip,
                "--port",
                "9000",
            ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert out.decode().strip().isdigit() and len(out.decode().strip()) == 4
        sntp = await net.py(
            "import ntplib, sys; r = ntplib.NTPClient().request(sys.argv[1], port=8123, timeout=5);"
            " print(r.mode, abs(r.offset) < 5)",
            net.synack_ip,
        )
        assert sntp.split() == ["4", "True"]
        ts.close()

    run(main)
