"""The compatibility matrix of ``synack run``: real programs nobody here wrote, unchanged,
run with their networking on synack's stack against the kernel in a namespace, bytes
checked by sha256.

Each row starts ``synack run --tap DEV --ip NET.2/24 -- PROGRAM`` inside a fresh
namespace whose persistent TAP device has the kernel's NET.1; the kernel side is
curl, ab, urllib, aiohttp or websockets. The small scripts below are the stdlib's
and the libraries' documented usage, not synack code: none imports synack.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.test_cli_stack import in_ns, namespace_with_tap
from tests.stack.test_lesson_programs import TCP_CLIENT, TCP_SERVER
from tests.support import requires_root_tun

pytestmark = [requires_root_tun, pytest.mark.root]

SYNACK = [sys.executable, "-m", "synack"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
BIG = 8 * 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def synack_run(
    ns: str, dev: str, net: str, *program: str, cwd: Path, ready: str
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``synack run`` PROGRAM in the namespace, once its output shows ``ready``: the
    process and the lines so far."""
    proc = subprocess.Popen(
        in_ns(ns, *SYNACK, "run", "--tap", dev, "--ip", f"{net}.2/24", "--", *program),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env=ENV,
        # SIGINT as a terminal gives it: a suite started in the background by a
        # shell without job control inherits SIGINT ignored, and Python keeps an
        # ignored SIGINT ignored (as synack run should), so the SIGINT rows
        # would test nothing but that.
        preexec_fn=_default_sigint,
    )
    try:
        assert proc.stdout is not None
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if ready in line:
                break
        else:
            raise AssertionError(f"never ready: {''.join(seen)}")
        assert ready in "".join(seen), "".join(seen) + (proc.stdout.read() or "")
        yield proc, seen
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def kernel(ns: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(in_ns(ns, *argv), capture_output=True, timeout=timeout)


def kernel_py(ns: str, code: str, *args: str) -> str:
    out = kernel(ns, sys.executable, "-c", textwrap.dedent(code), *args)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    return out.stdout.decode()


@pytest.fixture
def www(tmp_path: Path) -> tuple[Path, str]:
    data = hashlib.shake_256(b"synack run").digest(BIG)
    (tmp_path / "big.bin").write_bytes(data)
    return tmp_path, sha(data)


@contextlib.contextmanager
def kernel_http_server(ns: str, net: str, root: Path) -> Iterator[None]:
    """The kernel's http.server on {net}.1:8080 in ``ns``, serving ``root``; ready
    when it says so (its "Serving HTTP" line), not after a guessed delay."""
    server = subprocess.Popen(
        in_ns(ns, sys.executable, "-u", "-m", "http.server", "-b", f"{net}.1", "8080"),
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("Serving HTTP"), "http.server did not start"
        yield
    finally:
        server.terminate()
        server.wait(10)


def fetch_from_a_kernel_server(root: Path, digest: str, script: str) -> None:
    """``synack run script URL`` fetches big.bin from a kernel HTTP server and
    prints ``fetched <sha256>``, which must be the file's."""
    with (
        namespace_with_tap() as (ns, dev, net),
        kernel_http_server(ns, net, root),
        synack_run(
            ns, dev, net, script, f"http://{net}.1:8080/big.bin", cwd=root, ready="fetched"
        ) as (proc, lines),
    ):
        assert f"fetched {digest}\n" in lines
        assert proc.wait(30) == 0


def test_http_server_with_curl_and_urllib(www: tuple[Path, str]) -> None:
    root, digest = www
    with (
        namespace_with_tap() as (ns, dev, net),
        synack_run(ns, dev, net, "-m", "http.server", "8000", cwd=root, ready="Serving"),
    ):
        got = kernel(ns, "curl", "-sS", "--max-time", "60", f"http://{net}.2:8000/big.bin")
        assert got.returncode == 0, got.stderr
        assert sha(got.stdout) == digest
        listing = kernel_py(
            ns,
            """
            import sys, urllib.request
            print(urllib.request.urlopen(sys.argv[1], timeout=20).read().decode())
            """,
            f"http://{net}.2:8000/",
        )
        assert "big.bin" in listing


SOCKETSERVER_ECHO = """
import socketserver
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        while line := self.rfile.readline():
            self.wfile.write(line)
with socketserver.ThreadingTCPServer(("0.0.0.0", 7007), Echo) as server:
    print("serving", flush=True)
    server.serve_forever()
"""

ECHO_CLIENT = """
import hashlib, socket, sys, threading
data = b"".join(b"%d %s\\n" % (i, b"x" * (i % 3000)) for i in range(3000))
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20) as s:
    t = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
    t.start()
    got = b""
    while chunk := s.recv(65536):
        got += chunk
    t.join()
print(hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest(), len(got))
"""


def test_socketserver_echo(tmp_path: Path) -> None:
    (tmp_path / "echo.py").write_text(SOCKETSERVER_ECHO)
    with (
        namespace_with_tap() as (ns, dev, net),
        synack_run(ns, dev, net, "echo.py", cwd=tmp_path, ready="serving"),
    ):
        out = kernel_py(ns, ECHO_CLIENT, f"{net}.2", "7007")
        assert out.split()[0] == "True", out


ASYNCIO_ECHO = """
import asyncio
async def echo(r, w):
    while chunk := await r.read(65536):
        w.write(chunk)
        await w.drain()
    w.close()
async def main():
    server = await asyncio.start_server(echo, "0.0.0.0", 7008)
    print("serving", flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


def test_asyncio_streams_echo(tmp_path: Path) -> None:
    (tmp_path / "aecho.py").write_text(ASYNCIO_ECHO)
    with (
        namespace_with_tap() as (ns, dev, net),
        synack_run(ns, dev, net, "aecho.py", cwd=tmp_path, ready="serving"),
    ):
        out = kernel_py(ns, ECHO_CLIENT, f"{net}.2", "7008")
        assert out.split()[0] == "True", out


def test_urllib_client_against_a_kernel_server(www: tuple[Path, str]) -> None:
    root, digest = www
    (root / "fetch.py").write_text(
        "import hashlib, sys, urllib.request\n"
        "print('fetched', hashlib.sha256(urllib.request.urlopen(sys.argv[1], timeout=30)"
        ".read()).hexdigest(), flush=True)\n"
    )
    fetch_from_a_kernel_server(root, digest, "fetch.py")


def test_lesson_programs_unmodified_on_synack_loopback(tmp_path: Path) -> None:
    # The lesson's server and client, `import socket` untouched, in one process:
    # 127.0.0.1 is synack's own loopback there.
    (tmp_path / "server.py").write_text(TCP_SERVER)
    (tmp_path / "client.py").write_text(TCP_CLIENT)
    (tmp_path / "both.py").write_text(
        "import runpy, threading, time\n"
        "t = threading.Thread(target=runpy.run_path, args=('server.py',))\n"
        "t.start(); time.sleep(0.3)\n"
        "runpy.run_path('client.py'); t.join(10); print('lesson done', flush=True)\n"
    )
    with namespace_with_tap() as (ns, dev, net):
        proc = subprocess.run(
            in_ns(ns, *SYNACK, "run", "--tap", dev, "--ip", f"{net}.2/24", "--", "both.py"),
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
            env=ENV,
        )
    assert proc.returncode == 0, proc.stderr
    assert "received: hello server" in proc.stdout
    assert "received: hello client" in proc.stdout
    assert "lesson done" in proc.stdout


HOLD = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], 7009), timeout=10)
s.sendall(b"hello")
print(s.recv(100).decode(), flush=True)   # the server's greeting
t = time.monotonic()
data = s.recv(100)                        # the program is killed meanwhile
print("eof" if data == b"" else repr(data), round(time.monotonic() - t, 1))
try:
    socket.create_connection((sys.argv[1], 7009), timeout=5)
    print("connected after exit")
except ConnectionRefusedError:
    print("refused after exit")
except OSError as e:
    print("after exit:", e)
"""

GREETER = """
import socket
srv = socket.create_server(("0.0.0.0", 7009))
print("listening", flush=True)
conn, _ = srv.accept()
conn.recv(100)
conn.sendall(b"greetings")
import sys, time
if sys.argv[1:] == ["raise"]:
    time.sleep(0.5)
    raise RuntimeError("the program fails, its connection left open")
time.sleep(60)   # a signal comes first; the connection is left open
"""

# The same in asyncio: the signal or the exception comes while the program's
# loop drives the stack (synack.adapters.loopthread.HostingLoop).
AGREETER = """
import asyncio, sys
async def main():
    greeted = asyncio.Event()
    async def greet(r, w):
        await r.read(100)
        w.write(b"greetings")
        await w.drain()
        greeted.set()
        await asyncio.sleep(60)   # the connection is left open
    await asyncio.start_server(greet, "0.0.0.0", 7009)
    print("listening", flush=True)
    await greeted.wait()
    if sys.argv[1:] == ["raise"]:
        await asyncio.sleep(0.5)
        raise RuntimeError("the program fails, its connection left open")
    await asyncio.sleep(60)
asyncio.run(main())
"""


@pytest.mark.parametrize("program", [GREETER, AGREETER], ids=["blocking", "asyncio"])
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, "exception"])
def test_exit_closes_connections_with_fin(
    tmp_path: Path, how: signal.Signals | str, program: str
) -> None:
    (tmp_path / "greeter.py").write_text(program)
    with (
        namespace_with_tap() as (ns, dev, net),
        synack_run(
            ns,
            dev,
            net,
            "greeter.py",
            *(["raise"] if how == "exception" else []),
            cwd=tmp_path,
            ready="listening",
        ) as (proc, _),  # fmt: skip
    ):
        client = subprocess.Popen(
            in_ns(ns, sys.executable, "-c", HOLD, f"{net}.2"),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "greetings"
        if isinstance(how, signal.Signals):
            proc.send_signal(how)
        out = client.communicate(timeout=30)[0].split("\n")
        assert out[0].startswith("eof "), out
        assert float(out[0].split()[1]) < 3  # a FIN, not a timeout
        assert proc.wait(15) == {"exception": 1, signal.SIGINT: 130}.get(how, 143)
        # RST while the stack lingers (refused, or reset if the SYN beat the
        # listener's close): the client's SYN comes within the linger, never silence.
        assert out[1] in (
            "refused after exit",
            "after exit: [Errno 104] Connection reset by peer",
        ), out


ONE_AND_DONE = """
import socket
srv = socket.create_server(("0.0.0.0", 7010))
print("listening", flush=True)
conn, _ = srv.accept()
srv.close()          # the program closes its own listener, answers, and ends
conn.sendall(b"bye")
conn.close()
"""

KNOCK = """
import socket, sys, time
def knock(timeout):
    try:
        socket.create_connection((sys.argv[1], 7010), timeout=timeout).close()
        return "connected"
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return type(e).__name__
if sys.argv[2] == "first":
    with socket.create_connection((sys.argv[1], 7010), timeout=10) as s:
        data = b""
        while c := s.recv(100):
            data += c
    print(data.decode(), flush=True)
    time.sleep(0.5)  # the program has ended; its stack lingers
print(knock(3 if sys.argv[2] == "first" else 1.5), flush=True)
"""


def test_a_syn_during_the_exit_linger_is_answered_with_rst(tmp_path: Path) -> None:
    """A program that listened has ended (its listener and connection closed
    by itself): for the linger its stack answers a kernel SYN with RST, not
    silence; once the process is gone nothing answers for the address."""
    (tmp_path / "once.py").write_text(ONE_AND_DONE)
    with (
        namespace_with_tap() as (ns, dev, net),
        synack_run(ns, dev, net, "once.py", cwd=tmp_path, ready="listening") as (proc, _),
    ):
        out = kernel_py(ns, KNOCK, f"{net}.2", "first").split()
        assert out == ["bye", "refused"], out
        assert proc.wait(15) == 0
        # The process is gone and the persistent TAP has no reader: the
        # kernel's SYNs go nowhere (its connect times out).
        assert kernel_py(ns, KNOCK, f"{net}.2", "after").split() == ["TimeoutError"]


UNREAD = """
import select, socket, time
srv = socket.create_server(("0.0.0.0", 7011))
print("listening", flush=True)
conn, _ = srv.accept()
select.select([conn], [], [], 10)  # the client's bytes have arrived; never read
conn.close()
time.sleep(60)
"""

SEND_UNREAD = """
import socket, sys
s = socket.create_connection((sys.argv[1], 7011), timeout=10)
s.sendall(b"lost" * 100)
try:
    print("eof" if s.recv(100) == b"" else "data")
except ConnectionResetError:
    print("reset")
"""


def test_close_with_unread_data_resets_the_kernel_peer(tmp_path: Path) -> None:
    """RFC 9293 §3.6 SHLD-3: the program closes with the kernel's bytes unread;
    the kernel peer reads ECONNRESET (as from a Linux peer), not EOF."""
    (tmp_path / "unread.py").write_text(UNREAD)
    with (
        namespace_with_tap() as (ns, dev, net),
        synack_run(ns, dev, net, "unread.py", cwd=tmp_path, ready="listening"),
    ):
        assert kernel_py(ns, SEND_UNREAD, f"{net}.2").split() == ["reset"]


AIOHTTP_SERVER = """
import hashlib
from aiohttp import web
async def upload(request):
    h = hashlib.sha256()
    n = 0
    async for chunk in request.content.iter_chunked(65536):
        h.update(chunk)
        n += len(chunk)
    return web.Response(text=f"{n} {h.hexdigest()}")
async def hello(request):
    return web.Response(text="hello")
app = web.Application(client_max_size=64 * 1024 * 1024)
app.add_routes([web.post("/upload", upload), web.get("/hello", hello), web.static("/files", ".")])
web.run_app(app, host="0.0.0.0", port=8081, print=lambda s: print(s, flush=True))
"""


def test_aiohttp_server_with_curl_and_ab(www: tuple[Path, str]) -> None:
    pytest.importorskip("aiohttp", reason="aiohttp is in the [dev] extra")
    root, digest = www
    (root / "app.py").write_text(AIOHTTP_SERVER)
    with (
        namespace_with_tap() as (ns, dev, net),
        synack_run(ns, dev, net, "app.py", cwd=root, ready="Running on"),
    ):
        base = f"http://{net}.2:8081"
        got = kernel(ns, "curl", "-sS", "--max-time", "60", f"{base}/files/big.bin")
        assert got.returncode == 0, got.stderr
        assert sha(got.stdout) == digest  # FileResponse: sendfile on the descriptor
        up = kernel(
            ns,
            "curl",
            "-sS",
            "--max-time",
            "60",
            "--data-binary",
            f"@{root / 'big.bin'}",
            f"{base}/upload",
        )
        assert up.stdout.decode() == f"{BIG} {digest}", up.stderr
        if shutil.which("ab") is None:
            pytest.skip("ab (apache2-utils) is not installed")
        ab = kernel(ns, "ab", "-k", "-q", "-n", "500", "-c", "10", f"{base}/hello")
        text = ab.stdout.decode()
        assert ab.returncode == 0, ab.stderr
        assert "Complete requests:      500" in text and "Failed requests:        0" in text


AIOHTTP_CLIENT = """
import asyncio, hashlib, sys
import aiohttp
async def main():
    async with aiohttp.ClientSession() as session:
        async with session.get(sys.argv[1]) as r:
            body = await r.read()
    print("fetched", hashlib.sha256(body).hexdigest(), flush=True)
asyncio.run(main())
"""


def test_aiohttp_client_against_a_kernel_server(www: tuple[Path, str]) -> None:
    pytest.importorskip("aiohttp", reason="aiohttp is in the [dev] extra")
    root, digest = www
    (root / "client.py").write_text(AIOHTTP_CLIENT)
    fetch_from_a_kernel_server(root, digest, "client.py")


WS_SERVER = """
import asyncio, hashlib
from websockets.asyncio.server import serve
async def handler(ws):
    async for message in ws:
        await ws.send(hashlib.sha256(message).hexdigest() if isinstance(message, bytes) else message)
async def main():
    async with serve(handler, "0.0.0.0", 8765, max_size=2**24) as server:
        print("ws ready", flush=True)
        await server.serve_forever()
asyncio.run(main())
"""

WS_CLIENT = """
import asyncio, hashlib, sys
from websockets.asyncio.client import connect
async def main():
    async with connect(sys.argv[1], max_size=2**24) as ws:
        for i in range(200):
            await ws.send(f"ping {i}")
            assert await ws.recv() == f"ping {i}"
        blob = hashlib.shake_256(b"ws").digest(3_000_000)
        await ws.send(blob)
        assert await ws.recv() == hashlib.sha256(blob).hexdigest()
    print("ws ok", flush=True)
asyncio.run(main())
"""


def test_websockets_server_and_client(tmp_path: Path) -> None:
    pytest.importorskip("websockets", reason="websockets is in the [dev] extra")
    (tmp_path / "wss.py").write_text(WS_SERVER)
    (tmp_path / "wsc.py").write_text(WS_CLIENT)
    with namespace_with_tap() as (ns, dev, net):
        # synack serves, the kernel's client talks to it
        with synack_run(ns, dev, net, "wss.py", cwd=tmp_path, ready="ws ready"):
            out = kernel(ns, sys.executable, str(tmp_path / "wsc.py"), f"ws://{net}.2:8765")
            assert out.stdout.decode().strip() == "ws ok", out.stderr.decode()[-2000:]
        # the kernel serves, synack's client talks to it
        server = subprocess.Popen(
            in_ns(ns, sys.executable, str(tmp_path / "wss.py")),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ws ready"
            with synack_run(
                ns, dev, net, "wsc.py", f"ws://{net}.1:8765", cwd=tmp_path, ready="ws ok"
            ) as (proc, _):
                assert proc.wait(30) == 0
        finally:
            server.terminate()
            server.wait(10)


def test_plain_open_after_an_offload_run_resets_the_flags(www: tuple[Path, str]) -> None:
    # A run with --offload leaves checksum/TSO offload set on a persistent TAP;
    # the next plain open must clear it or every kernel segment fails its checksum.
    root, digest = www
    with namespace_with_tap() as (ns, dev, net):
        opened = kernel_py(
            ns,
            "import sys; from synack.links.tap import TapDevice\n"
            "TapDevice(sys.argv[1], offload=True).close(); print('offload was on')",
            dev,
        )
        assert opened.strip() == "offload was on"
        with synack_run(ns, dev, net, "-m", "http.server", "8000", cwd=root, ready="Serving"):
            got = kernel(ns, "curl", "-sS", "--max-time", "20", f"http://{net}.2:8000/big.bin")
            assert got.returncode == 0, got.stderr
            assert sha(got.stdout) == digest


def test_busy_device_names_its_holder_and_the_queue_is_long(tmp_path: Path) -> None:
    (tmp_path / "idle.py").write_text("import time\nprint('idle', flush=True)\ntime.sleep(30)\n")
    with (
        namespace_with_tap() as (ns, dev, net),
        synack_run(ns, dev, net, "idle.py", cwd=tmp_path, ready="idle") as (_proc, _),
    ):
        second = subprocess.run(
            in_ns(ns, *SYNACK, "run", "--tap", dev, "--ip", f"{net}.3/24", "--", "idle.py"),
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=30,
        )
        assert second.returncode == 2
        assert f"TAP device {dev!r} is busy" in second.stderr
        assert "synack" in second.stderr and "pid" in second.stderr, second.stderr
        assert second.stderr.count("\n") == 1
        # The first run made the kernel's queue towards it long enough for bursts.
        link = subprocess.run(
            ["ip", "-n", ns, "link", "show", dev], capture_output=True, text=True, timeout=10
        )
        assert "qlen 10000" in link.stdout, link.stdout


ONE_LINER = """
import asyncio, hashlib, sys
import synack.adapters.patch
synack.adapters.patch.install_tap(sys.argv[1], sys.argv[2])
async def main():
    r, w = await asyncio.open_connection(sys.argv[3], 8080)
    w.write(b"GET /big.bin HTTP/1.0\\r\\n\\r\\n")
    data = await r.read()
    w.close()
    return data.split(b"\\r\\n\\r\\n", 1)[1]
with asyncio.Runner(loop_factory=synack.adapters.patch.loop_factory) as runner:
    body = runner.run(main())
print("fetched", hashlib.sha256(body).hexdigest())
"""


def test_the_python_one_liner_and_loop_factory(www: tuple[Path, str]) -> None:
    root, digest = www
    with namespace_with_tap() as (ns, dev, net), kernel_http_server(ns, net, root):
        out = kernel(ns, sys.executable, "-c", ONE_LINER, dev, f"{net}.2/24", f"{net}.1")
        assert out.stdout.decode() == f"fetched {digest}\n", out.stderr.decode()[-2000:]
