"""TapDevice.write_frames: a list of frames (split and whole) written in one loop
reaches the kernel as each would alone; refusals are counted, not raised."""

from __future__ import annotations

import asyncio
import struct
import subprocess

import pytest

from synack.stack.offload import SplitFrame
from synack.wire.checksum import internet_checksum
from tests.interop.nsnet import NsNet, nsnet
from tests.support import requires_root_tun

pytestmark = [requires_root_tun, pytest.mark.root]

MAC = b"\x02\x53\x59\x4e\x00\x02"

KERNEL_UDP = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9999)); s.settimeout(5)
print("ready", flush=True)
got = sorted(s.recv(2048) for _ in range(int(sys.argv[2])))
print(b"|".join(got).decode())
"""


def _udp_frame(net: NsNet, body: bytes) -> tuple[bytes, bytes]:
    """(headers, payload) of a UDP datagram from synack's address to the kernel's port 9999."""
    out = subprocess.run(
        net.exec_args("cat", f"/sys/class/net/{net.tap.name}/address"),
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    kernel_mac = bytes.fromhex(out.strip().replace(":", ""))
    src = bytes(int(x) for x in net.synack_ip.split("."))
    dst = bytes(int(x) for x in net.kernel_ip.split("."))
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(body), 1, 0x4000, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    udp = struct.pack("!HHHH", 40000, 9999, 8 + len(body), 0)  # no UDP checksum (RFC 768)
    return kernel_mac + MAC + b"\x08\x00" + ip + udp, body


def test_write_frames_sends_split_and_whole_frames_and_counts_refusals() -> None:
    async def run(net: NsNet) -> str:
        proc = await asyncio.create_subprocess_exec(
            *net.exec_args("python3", "-c", KERNEL_UDP, net.kernel_ip, "3"),
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 10)).strip() == b"ready"
        heads = [_udp_frame(net, b) for b in (b"one", b"two", b"three")]
        frames: list[bytes | SplitFrame] = [
            SplitFrame(heads[0][0], heads[0][1], 0, 0),
            heads[1][0] + heads[1][1],
            SplitFrame(heads[2][0], heads[2][1], 0, 0),
        ]
        net.tap.write_frames(frames)
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
        return out.decode().strip()

    with nsnet() as net:
        assert asyncio.run(run(net)) == "one|three|two"
        assert net.tap.frames_out == 3 and net.tap.write_errors == 0
        with pytest.raises(ValueError, match="offload"):
            net.tap.write_frames([SplitFrame(b"x" * 54, b"", 34, 6)])
        head, body = _udp_frame(net, b"down")
        net.run("ip", "link", "set", net.tap.name, "down")
        net.tap.write_frames([head + body, SplitFrame(head, body, 0, 0)])
        assert net.tap.write_errors == 2 and net.tap.frames_out == 3  # refused, counted
