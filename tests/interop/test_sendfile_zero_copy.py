"""``loop.sendfile`` under ``synack run``: with ``--offload`` a regular file
is lent to the send buffer as mapped pages (adapters/native.py, no copy in
user space), without it read with ``os.pread``. Either way the kernel in
the namespace gets the file's exact octets (sha256), whatever its size
(empty, one octet, a page less or more one, past one mapping window).

Hostile: the file truncated, or rewritten smaller, while it is being sent
with ``--offload``. A read of a mapped page past the file's new end in user
space would be SIGBUS and kill the process; the kernel's copy (the TAP
write) fails with EFAULT instead. The process must survive, the connection
end promptly (RST) with a clear error to the program, another download in
progress and a later one complete with the right octets, and a counter say
what happened.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.test_cli_stack import in_ns, namespace_with_tap
from tests.support import requires_root_tun

pytestmark = [requires_root_tun, pytest.mark.root]

PAGE = mmap.PAGESIZE
# The program under test: plain asyncio, nothing of synack's but the
# counter it reports (the transport's synack_host extra) when asked.
SERVER = textwrap.dedent(
    """
    import asyncio

    async def serve(r, w):
        name = (await r.readline()).decode().strip()
        if name == "STATS":
            host = w.transport.get_extra_info("synack_host")
            w.write(b"%d\\n" % host.counters["tcp-sendfile-shrank"])
            await w.drain()
            w.close()
            return
        try:
            with open(name, "rb") as f:
                sent = await asyncio.get_running_loop().sendfile(w.transport, f)
        except OSError as exc:
            print("ERROR", name, exc, flush=True)
            return
        print("SENT", name, sent, flush=True)
        w.close()

    async def main():
        server = await asyncio.start_server(serve, "0.0.0.0", 8090)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())
    """
)
# The kernel's side: each name's octets, as sha256 and length.
FETCH = textwrap.dedent(
    """
    import hashlib, socket, sys
    for name in sys.argv[2:]:
        with socket.create_connection((sys.argv[1], 8090), timeout=20) as s:
            s.sendall(name.encode() + b"\\n")
            h, n = hashlib.sha256(), 0
            while c := s.recv(1 << 16):
                h.update(c)
                n += len(c)
        print(name, n, h.hexdigest())
    """
)
# Hostile: "victim" stalls after its first MiB (a small receive buffer,
# not read); "other" is half read meanwhile. The test changes the file on
# the line STALLED, then says go: the victim's rest, the other's rest, a
# new download of "other", the counter.
HOSTILE = textwrap.dedent(
    """
    import hashlib, socket, sys
    ip = sys.argv[1]
    def connect(name, rcvbuf=None):
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(20)
        s.connect((ip, 8090))
        s.sendall(name + b"\\n")
        return s
    def read(s, data, limit=None):
        while limit is None or len(data) < limit:
            c = s.recv(1 << 16)
            if not c:
                return "EOF"
            data += c
        return "LIMIT"
    victim, other = bytearray(), bytearray()
    v = connect(b"victim", 1 << 16)
    read(v, victim, 1 << 20)
    o = connect(b"other")
    read(o, other, 1 << 21)
    print("STALLED", flush=True)
    sys.stdin.readline()
    try:
        end = read(v, victim)
    except ConnectionResetError:
        end = "RESET"
    print("victim", end, len(victim), hashlib.sha256(victim).hexdigest())
    print("other", read(o, other), len(other), hashlib.sha256(other).hexdigest())
    again = bytearray()
    print("again", read(connect(b"other"), again), len(again), hashlib.sha256(again).hexdigest())
    stats = bytearray()
    read(connect(b"STATS"), stats)
    print("shrank", stats.decode().strip())
    """
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def serving(
    ns: str, dev: str, net: str, cwd: Path, *, offload: bool, pcap: bool = False
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """SERVER under ``synack run`` (with ``--offload`` or not, ``--pcap``
    or not) in ``ns``, once ready: the process and what it printed (the
    rest read at the end)."""
    (cwd / "server.py").write_text(SERVER)
    opts = (["--offload"] if offload else []) + (["--pcap", "run.pcap"] if pcap else [])
    proc = subprocess.Popen(
        in_ns(ns, sys.executable, "-m", "synack", "run", "--tap", dev, "--ip", f"{net}.2/24",
              *opts, "--", "server.py"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if "ready" in line:
                break
        assert "ready" in "".join(seen), "".join(seen)
        yield proc, seen
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        seen.append(out or "")


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "plain"])
def test_sendfile_sends_every_size_exactly(tmp_path: Path, offload: bool) -> None:
    sizes = {
        "empty": 0,
        "one": 1,
        "page-1": PAGE - 1,
        "page+1": PAGE + 1,
        "odd": 3 * 1024 * 1024 + 7,
        "windows": 9 * 1024 * 1024 + 1,  # past one 8 MiB mapping window
    }
    want = {}
    for name, size in sizes.items():
        data = hashlib.shake_256(name.encode()).digest(size) if size else b""
        (tmp_path / name).write_bytes(data)
        want[name] = f"{name} {size} {sha(data)}"
    with (
        namespace_with_tap() as (ns, dev, net),
        serving(ns, dev, net, tmp_path, offload=offload) as (proc, seen),
    ):
        out = subprocess.run(
            in_ns(ns, sys.executable, "-c", FETCH, f"{net}.2", *sizes),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split("\n")[:-1] == list(want.values())
        assert proc.poll() is None
    for name, size in sizes.items():
        assert f"SENT {name} {size}\n" in seen[-1] or f"SENT {name} {size}\n" in seen


@pytest.mark.parametrize("change", ["truncate", "rewrite", "truncate+pcap"])
def test_a_file_shrunk_while_sent_resets_its_connection_only(tmp_path: Path, change: str) -> None:
    # (+pcap: the capture copies every frame's octets, the lent ones with
    # os.pread, never from the mapping: that path meets the truncation too.)
    victim = hashlib.shake_256(b"victim").digest(24 * 1024 * 1024)
    other = hashlib.shake_256(b"other").digest(4 * 1024 * 1024 + 3)
    (tmp_path / "victim").write_bytes(victim)
    (tmp_path / "other").write_bytes(other)
    with (
        namespace_with_tap() as (ns, dev, net),
        serving(ns, dev, net, tmp_path, offload=True, pcap="pcap" in change) as (proc, seen),
    ):
        client = subprocess.Popen(
            in_ns(ns, sys.executable, "-c", HOSTILE, f"{net}.2"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert client.stdout is not None and client.stdin is not None
        try:
            assert client.stdout.readline() == "STALLED\n"
            # The victim's sender is held mid-file: pages past what the
            # client has read are in the send buffer, mapped. Shrink the file
            # under them (below what was sent: 1 MiB).
            if change.startswith("truncate"):
                os.truncate(tmp_path / "victim", 512 * 1024)
            else:
                with open(tmp_path / "victim", "wb") as f:
                    f.write(b"new" * 100_000)
            client.stdin.write("go\n")
            client.stdin.flush()
            out, err = client.communicate(timeout=60)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
        assert client.returncode == 0, err[-2000:]
        lines = dict(line.split(" ", 1) for line in out.splitlines())
        end, got, digest = lines["victim"].split()
        assert end == "RESET" and (1 << 20) <= int(got) < len(victim)  # ended, not hung
        assert digest == sha(victim[: int(got)])  # all it got is the file's (no filler)
        assert lines["other"] == f"EOF {len(other)} {sha(other)}"  # kept going
        assert lines["again"] == f"EOF {len(other)} {sha(other)}"  # and still serves
        assert lines["shrank"] == "1"  # the counter says what happened
        assert proc.poll() is None  # the process survived
    printed = "".join(seen)
    assert "ERROR victim [Errno 5] sendfile: the file shrank while being sent" in printed
    assert printed.count("SENT other") == 2
    if "pcap" in change:
        assert (tmp_path / "run.pcap").stat().st_size > 2 * len(other)
