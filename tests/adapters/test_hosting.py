"""Where the stack runs: a program's asyncio loop drives the host while it
runs (synack.adapters.loopthread.HostingLoop), the stack's own thread before
and after, and other threads' blocking sockets go through whichever owns it.

"Parked": the stack thread is held in a callback of its own loop, so whatever
happens meanwhile on the host was done by another thread."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import socket
import socketserver
import threading
import time
import weakref
from typing import Any

import pytest

from synack.adapters.sockets import Runtime, SocketModule
from tests.adapters import IP


def park(rt: Runtime) -> threading.Event:
    """Hold the stack thread in a callback of its own loop until the event is set."""
    release = threading.Event()
    parked = threading.Event()

    def hold() -> None:
        parked.set()
        release.wait(30)

    rt.loop.call_soon_threadsafe(hold)
    assert parked.wait(10)
    return release


async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    while chunk := await r.read(65536):
        w.write(chunk)
        await w.drain()
    w.close()


def blocking_echo(port: int, data: bytes) -> bytes:
    with socket.create_connection((IP, port), timeout=10) as c:
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := c.recv(65536):
            got += chunk
    return got


def test_the_programs_loop_drives_the_host_while_the_stack_thread_is_parked(
    stack: tuple[Runtime, SocketModule],
) -> None:
    rt, module = stack
    seen: set[int] = set()
    module.host.observers.append(lambda rec: seen.add(threading.get_ident()))
    data = hashlib.shake_256(b"hosted").digest(300_000)

    async def main() -> bytes:
        assert rt.host_loop.owner() is asyncio.get_running_loop()
        release = park(rt)
        try:
            server = await asyncio.start_server(echo, IP, 0)
            port = server.sockets[0].getsockname()[1]
            r, w = await asyncio.open_connection(IP, port)
            w.write(data)
            w.write_eof()
            got = await asyncio.wait_for(r.read(), 20)
            w.close()
            server.close()
            return got
        finally:
            release.set()

    got = asyncio.run(main())  # the policy patch.install set: a HostingLoop
    assert got == data
    assert seen == {threading.get_ident()}  # every frame and state change: this thread's
    # Given back when the loop stopped: the stack thread drives the host again.
    assert rt.call(lambda: threading.current_thread().name) == "synack-stack"
    assert rt.host_loop.owner() is rt.loop


def test_blocking_sockets_of_worker_threads_go_through_the_programs_loop(
    stack: tuple[Runtime, SocketModule],
) -> None:
    rt, _ = stack
    data = hashlib.shake_256(b"worker").digest(200_000)

    async def main() -> list[bytes]:
        release = park(rt)  # only the program's loop can serve the workers' calls
        try:
            server = await asyncio.start_server(echo, IP, 0)
            port = server.sockets[0].getsockname()[1]
            loop = asyncio.get_running_loop()
            jobs = [loop.run_in_executor(None, blocking_echo, port, data) for _ in range(3)]
            got = await asyncio.wait_for(asyncio.gather(*jobs), 30)
            server.close()
            return got
        finally:
            release.set()

    assert asyncio.run(main()) == [data] * 3


def test_a_blocking_socket_inside_a_coroutine_lends_the_stack_and_takes_it_back(
    stack: tuple[Runtime, SocketModule],
) -> None:
    rt, _ = stack

    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            while chunk := self.request.recv(65536):
                self.request.sendall(chunk)

    with socketserver.ThreadingTCPServer((IP, 0), Echo) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]

        async def main() -> bytes:
            loop = asyncio.get_running_loop()
            # Blocking calls on the loop's own thread (bad style, yet common):
            # the loop cannot drive the stack meanwhile, the stack thread does.
            got = blocking_echo(port, b"x" * 100_000)
            assert rt.host_loop.owner() is loop  # taken back afterwards
            return got

        assert asyncio.run(main()) == b"x" * 100_000
        server.shutdown()


def test_a_second_loop_in_another_thread_works_through_the_owner(
    stack: tuple[Runtime, SocketModule],
) -> None:
    rt, _ = stack
    result: dict[str, Any] = {}

    def other(port: int, owner: asyncio.AbstractEventLoop) -> None:
        async def client() -> None:
            assert rt.host_loop.owner() is owner  # not taken by this loop
            r, w = await asyncio.open_connection(IP, port)
            w.write(b"from the second loop")
            w.write_eof()
            result["got"] = await asyncio.wait_for(r.read(), 10)
            w.close()
            result["ran on"] = rt.call(threading.get_ident)

        asyncio.run(client())

    async def main() -> None:
        server = await asyncio.start_server(echo, IP, 0)
        port = server.sockets[0].getsockname()[1]
        t = threading.Thread(target=other, args=(port, asyncio.get_running_loop()))
        t.start()
        await asyncio.get_running_loop().run_in_executor(None, t.join, 20)
        server.close()

    asyncio.run(main())
    assert result["got"] == b"from the second loop"
    assert result["ran on"] == threading.get_ident()  # the first loop's thread
    assert rt.call(lambda: threading.current_thread().name) == "synack-stack"


def test_a_failing_program_gives_the_host_back_and_blocking_sockets_work_after(
    stack: tuple[Runtime, SocketModule],
) -> None:
    rt, _ = stack

    async def main() -> None:
        srv = socket.create_server((IP, 0))
        srv.close()
        raise ValueError("the program failed")

    with pytest.raises(ValueError):
        asyncio.run(main())
    assert rt.call(lambda: threading.current_thread().name) == "synack-stack"
    # Plain blocking sockets on the main thread, driven by the stack thread again.
    with socket.create_server((IP, 0)) as srv:
        port = srv.getsockname()[1]
        with socket.create_connection((IP, port), timeout=5) as c:
            conn, _ = srv.accept()
            with conn:
                c.sendall(b"after")
                assert conn.recv(10) == b"after"


def test_a_loop_in_a_worker_thread_takes_the_host_and_a_nested_run_strands_nothing(
    stack: tuple[Runtime, SocketModule],
) -> None:
    rt, _ = stack
    seen: dict[str, Any] = {}

    async def worker() -> None:
        loop = asyncio.get_running_loop()
        seen["owner"] = rt.host_loop.owner() is loop
        coro = asyncio.sleep(0)
        with pytest.raises(RuntimeError):  # asyncio refuses a nested run...
            loop.run_until_complete(coro)
        coro.close()
        seen["still"] = rt.host_loop.owner() is loop  # ...which gave nothing away
        with socket.create_server((IP, 0)) as srv:
            srv.setblocking(False)
            port = srv.getsockname()[1]
            _, w = await asyncio.open_connection(IP, port)
            conn, _ = await loop.sock_accept(srv)
            w.write(b"hello")
            seen["got"] = await loop.sock_recv(conn, 10)
            w.close()
            conn.close()
        seen["thread"] = rt.call(threading.get_ident)

    t = threading.Thread(target=lambda: asyncio.run(worker()))
    t.start()
    t.join(20)
    assert seen["owner"] and seen["still"] and seen["got"] == b"hello"
    assert seen["thread"] == t.ident
    assert rt.call(lambda: threading.current_thread().name) == "synack-stack"


def test_timers_and_queued_callbacks_move_with_the_host(
    stack: tuple[Runtime, SocketModule],
) -> None:
    rt, _ = stack
    fired: list[tuple[str, int]] = []

    def arm() -> None:  # on the stack thread, before the program's loop runs
        hl = rt.host_loop
        hl.call_later(0.2, lambda: fired.append(("timer", threading.get_ident())))
        hl.call_later(0.2, lambda: fired.append(("cancelled", 0))).cancel()
        hl.call_later(0.9, lambda: fired.append(("after", threading.get_ident())))

    rt.call(arm)

    async def main() -> None:
        rt.post(lambda: fired.append(("post", threading.get_ident())))
        await asyncio.sleep(0.5)

    asyncio.run(main())
    me = threading.get_ident()
    assert fired == [("post", me), ("timer", me)]  # run by the loop that held the host
    time.sleep(0.6)  # the last one fires once the host is back on the stack thread
    assert fired[2:] == [("after", rt.call(threading.get_ident))]
    assert fired[2][1] != me


def test_a_hosting_loops_server_is_native_sends_files_and_waits_for_its_loop(
    stack: tuple[Runtime, SocketModule], tmp_path: Any
) -> None:
    body = hashlib.shake_256(b"file").digest(700_000)
    (tmp_path / "f").write_bytes(body)
    got: list[bytes] = []

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        got.append(await r.readexactly(5))
        with open(tmp_path / "f", "rb") as f:  # a static file: asyncio's fallback
            await asyncio.get_running_loop().sendfile(w.transport, f)
        got.append(await r.readexactly(5))  # sent while the loop was not running
        w.close()

    with asyncio.Runner() as runner:
        server = runner.run(asyncio.start_server(serve, IP, 0))
        assert type(server).__name__ == "NativeServer"  # no socketpair under it
        port = server.sockets[0].getsockname()[1]
        c = socket.create_connection((IP, port), timeout=10)  # between two runs
        c.sendall(b"first")

        def read_body() -> bytes:
            data = b""
            while len(data) < len(body):
                data += c.recv(65536)
            return data

        # The loop accepts and sends the file while a worker thread reads it.
        assert runner.run(asyncio.wait_for(asyncio.to_thread(read_body), 20)) == body
        c.sendall(b"again")  # the loop is not running: the stack thread takes it...
        time.sleep(0.2)
        assert got == [b"first"]  # ...and the program's protocol waits for its loop
        runner.run(asyncio.sleep(0.3))
        assert got == [b"first", b"again"]
        assert c.recv(10) == b""  # closed by the handler: FIN
        c.close()
        server.close()


def test_native_sendfile_reads_ahead_yet_sends_exactly_offset_and_count(
    stack: tuple[Runtime, SocketModule], tmp_path: Any
) -> None:
    # Blocks are read one ahead of the one draining: the count's end must
    # still cut the last block, and the file's position end at offset + count
    # (asyncio's contract) although a read ahead moved it meanwhile.
    body = hashlib.shake_256(b"ahead").digest(900_000)
    (tmp_path / "f").write_bytes(body)
    offset, count = 1_000, 600_001  # ends inside the third 256 KiB block
    where: list[int] = []

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with open(tmp_path / "f", "rb") as f:
            sent = await asyncio.get_running_loop().sendfile(w.transport, f, offset, count)
            where.extend((sent, f.tell()))
        w.close()

    with asyncio.Runner() as runner:
        server = runner.run(asyncio.start_server(serve, IP, 0))
        port = server.sockets[0].getsockname()[1]
        c = socket.create_connection((IP, port), timeout=10)

        def read_all() -> bytes:
            data = b""
            while chunk := c.recv(65536):
                data += chunk
            return data

        assert (
            runner.run(asyncio.wait_for(asyncio.to_thread(read_all), 20))
            == body[offset : offset + count]
        )
        assert where == [count, offset + count]
        c.close()
        server.close()


def test_a_loop_with_native_servers_waits_for_the_host_another_loop_holds(
    stack: tuple[Runtime, SocketModule],
) -> None:
    rt, _ = stack
    held = threading.Event()
    let_go = threading.Event()

    def other() -> None:
        async def hold() -> None:
            held.set()
            await asyncio.get_running_loop().run_in_executor(None, let_go.wait, 10)

        asyncio.run(hold())

    with asyncio.Runner() as runner:
        server = runner.run(asyncio.start_server(echo, IP, 0))
        port = server.sockets[0].getsockname()[1]
        t = threading.Thread(target=other)
        t.start()
        assert held.wait(10)  # the other thread's loop holds the host now
        threading.Timer(0.3, let_go.set).start()
        t0 = time.monotonic()

        async def ask() -> bytes:
            # Only once this loop holds the host again: its server's
            # transports touch the host directly.
            assert rt.host_loop.owner() is asyncio.get_running_loop()
            r, w = await asyncio.open_connection(IP, port)
            w.write(b"ping")
            w.write_eof()
            got = await r.read()
            w.close()
            return got

        assert runner.run(asyncio.wait_for(ask(), 10)) == b"ping"
        assert time.monotonic() - t0 >= 0.25  # it waited for the other loop to stop
        t.join(10)
        server.close()


@pytest.mark.parametrize("unread", [False, True])
def test_abort_on_a_native_transport_is_the_kernels_fin_or_rst(
    stack: tuple[Runtime, SocketModule], unread: bool
) -> None:
    nodelay: list[bool] = []

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        # TCP_NODELAY, as asyncio sets on its socket transports
        nodelay.append(w.transport.get_extra_info("synack_stream").conn.config.nodelay)
        await r.readexactly(5)
        w.write(b"bye")
        await w.drain()
        if unread:  # the client's second write arrives and stays in TCP, unread
            w.transport.pause_reading()
            await asyncio.sleep(0.2)
        w.transport.abort()

    with asyncio.Runner() as runner:
        server = runner.run(asyncio.start_server(serve, IP, 0))
        port = server.sockets[0].getsockname()[1]

        def client() -> bytes | str:
            with socket.create_connection((IP, port), timeout=10) as c:
                c.sendall(b"hello")
                got = c.recv(3)
                if unread:
                    c.sendall(b"more")
                try:
                    return got + c.recv(10)
                except ConnectionResetError:
                    return "reset"

        got = runner.run(asyncio.wait_for(asyncio.to_thread(client), 10))
        server.close()
    assert got == ("reset" if unread else b"bye")
    assert nodelay == [True]


def test_a_native_connection_over_is_freed_without_the_cycle_collector(
    stack: tuple[Runtime, SocketModule],
) -> None:
    """The server writes and closes first (TIME-WAIT is ours), the client
    closes too: the transport lets go of its stream at connection_lost, so the
    stream and its TCB are freed by reference counting; only the compact
    TIME-WAIT record stays (stack/timewait.py)."""
    _, module = stack
    streams: list[weakref.ref[Any]] = []

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        streams.append(weakref.ref(w.transport.get_extra_info("synack_stream")))
        await r.readexactly(5)
        w.write(b"bye")
        w.close()

    gc.disable()
    try:
        with asyncio.Runner() as runner:
            server = runner.run(asyncio.start_server(serve, IP, 0))
            port = server.sockets[0].getsockname()[1]

            def client() -> bytes:
                with socket.create_connection((IP, port), timeout=10) as c:
                    c.sendall(b"hello")
                    return c.recv(3) + c.recv(10)

            got = runner.run(asyncio.wait_for(asyncio.to_thread(client), 10))

            async def settle() -> None:
                deadline = time.monotonic() + 5
                while streams[0]() is not None and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)

            runner.run(settle())
            assert got == b"bye"
            assert streams[0]() is None  # freed without gc.collect()
            assert len(module.driver.host.tcp.time_wait) == 1
            server.close()
    finally:
        gc.enable()
