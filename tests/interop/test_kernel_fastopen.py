"""TCP Fast Open (RFC 7413) between synack and the Linux kernel, over TAP in a namespace.

Both directions, each with two connections: the first asks for a cookie, the
second carries its request on the SYN. Fast Open is switched on only inside
the test's own namespace (``net.ipv4.tcp_fastopen`` is per namespace). That
the data really rode on the SYN is checked twice, independently: in synack's
own frame trace (a SYN with payload, from the kernel or to it) and in the
kernel's counters (``TcpExt: TCPFastOpenPassive`` / ``TCPFastOpenActive`` in
the namespace's /proc/net/netstat).
"""

from __future__ import annotations

import random
import subprocess
import sys
from ipaddress import IPv4Interface

import pytest

from synack.adapters.sockets import Runtime
from synack.links.tap import TapLink
from synack.stack.events import FrameTrace
from synack.stack.host import Host, HostConfig
from synack.wire.decode import decode
from synack.wire.tcp import TcpFlags
from tests.interop.nsnet import NsNet, nsnet
from tests.support import requires_root_tun, serve_upper

pytestmark = [requires_root_tun, pytest.mark.root]

MAC = b"\x02\x53\x59\x4e\x00\x07"
REQUESTS = [b"hello fast open 1", b"hello fast open 2"]

NETSTAT = """
def tfo_counters():
    lines = [l.split() for l in open("/proc/net/netstat") if l.startswith("TcpExt:")]
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:]) if "FastOpen" in k}
"""

KERNEL_CLIENT = (
    NETSTAT
    + """
import socket, sys
ip, port = sys.argv[1], int(sys.argv[2])
for i, req in enumerate([b"hello fast open 1", b"hello fast open 2"]):
    s = socket.socket()   # blocking: with a timeout the kernel's sendto says EINPROGRESS
    s.sendto(req, socket.MSG_FASTOPEN, (ip, port))   # connect + data (on the SYN with a cookie)
    s.settimeout(10)
    got = b""
    while chunk := s.recv(4096):
        got += chunk
    s.close()
    print(got.decode())
print(tfo_counters())
"""
)

KERNEL_SERVER = (
    NETSTAT
    + """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)   # a Fast Open queue: server on
s.bind(("0.0.0.0", 8101))
s.listen()
print("ready", flush=True)
for _ in range(2):
    c, _ = s.accept()
    c.settimeout(10)
    req = c.recv(4096)
    c.sendall(req.upper())
    c.close()
print(tfo_counters(), flush=True)
"""
)


def _host(net: NsNet, frames: list[bytes]) -> Host:
    host = Host(
        HostConfig(
            mac=MAC,
            interface=IPv4Interface(net.synack_cidr),
            mtu=net.mtu,
            name="synack",
            tcp_fastopen=3,
        ),
        rng=random.Random(15),
    )

    def observe(rec: object) -> None:
        if isinstance(rec, FrameTrace):
            frames.append(rec.frame)

    host.observers.append(observe)
    return host


def _syns_with_data(frames: list[bytes]) -> list[bytes]:
    out = []
    for frame in frames:
        seg = decode(frame).tcp
        syn = seg is not None and seg.flags & (TcpFlags.SYN | TcpFlags.ACK) == TcpFlags.SYN
        if syn and seg is not None and seg.payload:
            out.append(seg.payload)
    return out


def _sysctl(net: NsNet, value: int) -> None:
    done = net.run("sysctl", "-qw", f"net.ipv4.tcp_fastopen={value}")
    if done.returncode != 0:
        pytest.skip(f"net.ipv4.tcp_fastopen is not settable in a namespace: {done.stderr}")


def test_kernel_fast_open_client_to_synack_server() -> None:
    frames: list[bytes] = []
    with nsnet() as net:
        _sysctl(net, 1)  # the kernel's client side only
        rt = Runtime()
        try:
            host = _host(net, frames)
            socket = rt.add_host(host, TapLink(net.tap))
            srv = socket.socket()
            srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
            srv.bind(("0.0.0.0", 8100))
            srv.listen()
            seen: list[bytes] = []
            t = serve_upper(srv, 2, seen)
            out = net.run(sys.executable, "-c", KERNEL_CLIENT, net.synack_ip, "8100", timeout=60)
            t.join(10)
            assert out.returncode == 0, out.stderr
            lines = out.stdout.splitlines()
            assert lines[:2] == [r.upper().decode() for r in REQUESTS]
            assert seen == REQUESTS
            kernel = eval(lines[2])  # the kernel's own TcpExt counters
            counters = dict(host.counters)
            srv.close()
        finally:
            rt.close()
    # The first open asked for a cookie; the second carried its data on the SYN.
    assert counters["tcp-fastopen-request"] == 1
    assert counters["tcp-fastopen-accepted"] == 1
    assert _syns_with_data(frames) == [REQUESTS[1]]
    assert kernel.get("TCPFastOpenActive", 0) == 1
    assert kernel.get("TCPFastOpenActiveFail", 0) == 0


def test_synack_fast_open_client_to_kernel_server() -> None:
    frames: list[bytes] = []
    with nsnet() as net:
        _sysctl(net, 2)  # the kernel's server side only
        server = subprocess.Popen(
            net.exec_args(sys.executable, "-c", KERNEL_SERVER),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        rt = Runtime()
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            host = _host(net, frames)
            socket = rt.add_host(host, TapLink(net.tap))
            replies = []
            for req in REQUESTS:
                s = socket.socket()
                s.settimeout(10)
                assert s.sendto(req, socket.MSG_FASTOPEN, (net.kernel_ip, 8101)) == len(req)
                got = b""
                while chunk := s.recv(4096):
                    got += chunk
                s.close()
                replies.append(got)
            assert replies == [r.upper() for r in REQUESTS]
            kernel = eval(server.stdout.readline())
            counters = dict(host.counters)
        finally:
            rt.close()
            server.kill()
            server.wait()
    assert counters["tcp-fastopen-active"] == 2
    assert counters["tcp-fastopen-active-acked"] == 1
    assert _syns_with_data(frames) == [REQUESTS[1]]
    # The kernel took the second request from the SYN (a valid cookie, data accepted).
    assert kernel.get("TCPFastOpenPassive", 0) == 1
    assert kernel.get("TCPFastOpenCookieReqd", 0) == 1
