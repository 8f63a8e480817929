"""The asyncio transport's one-pass cork (TcpTransport.write, HostDriver.hold).

A lone short write (a reply into an empty send buffer) is held one loop pass
so that what the program does in the next pass joins its segment: aiohttp
writes its reply, then closes one pass later, and the reply and the FIN now
leave as one segment instead of two. Checked pass by pass on a manual loop
(the driver runs on it; the peer is a sans-IO host whose frames cross between
passes): the reply and FIN in one segment; a lone write with nothing after it
still leaves one pass later, never more; once a held write has gone out
alone its connection's writes are no longer held (keep-alive); a write made
inside a pump leaves with that pump; and, for random programs of writes, closes, half-closes and
aborts, the bytes and events both ends see are the same with the cork on and
off (only the framing differs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import random
from collections import deque
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import pytest

from synack.adapters.driver import HostDriver
from synack.adapters.tcp import TcpServer, TcpTransport
from synack.links.base import FrameSink
from synack.stack.host import Host, TcpStream
from synack.tcp import events as tev
from synack.wire import tcp as wtcp
from synack.wire.decode import decode
from tests.stack.netfix import make_host

SERVER = IPv4Address("10.213.0.2")
PORT = 80
FIN = wtcp.TcpFlags.FIN
RST = wtcp.TcpFlags.RST


class _Handle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualLoop:
    """What the driver and transports ask of an event loop, run pass by pass
    the way asyncio's ``_run_once`` runs: timers due join the ready queue, then
    the callbacks ready when the pass began run (those they queue wait for the
    next pass). The clock moves only when told."""

    def __init__(self) -> None:
        self.t = 100.0
        self.passes = 0
        self._ready: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._timers: list[tuple[float, int, _Handle, Callable[..., object]]] = []
        self._seq = 0

    def time(self) -> float:
        return self.t

    def call_soon(self, fn: Callable[..., object], *args: Any, context: Any = None) -> _Handle:
        self._ready.append((fn, args))
        return _Handle()

    def call_at(self, when: float, fn: Callable[..., object], *args: Any) -> _Handle:
        handle = _Handle()
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, handle, lambda: fn(*args)))
        return handle

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        raise AssertionError(f"callback failed: {context}")

    def busy(self) -> bool:
        return bool(self._ready)

    def next_timer(self) -> float | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def run_pass(self) -> None:
        self.passes += 1
        while self._timers and self._timers[0][0] <= self.t:
            _, _, handle, fn = heapq.heappop(self._timers)
            if not handle.cancelled:
                self._ready.append((fn, ()))
        for _ in range(len(self._ready)):
            fn, args = self._ready.popleft()
            fn(*args)


class Wire:
    """The server's link: what it sends, with the pass it was sent in."""

    def __init__(self, loop: ManualLoop) -> None:
        self.loop = loop
        self.sink: FrameSink | None = None
        self.sent: list[tuple[int, bytes]] = []
        self.unread = 0

    def start(self, loop: object, sink: FrameSink) -> None:
        self.sink = sink

    def send(self, frame: bytes) -> None:
        self.sent.append((self.loop.passes, frame))

    def close(self) -> None:
        self.sink = None


class Net:
    """A server host on a driver on the manual loop, and a sans-IO client
    host whose frames reach the server one pass after they were made."""

    def __init__(self, factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self.loop = ManualLoop()
        self.wire = Wire(self.loop)
        self.server = make_host(2, "10.213.0.2/24")
        self.driver = HostDriver(self.server, self.wire, loop=self.loop)  # type: ignore[arg-type]
        self.driver.start()
        self.client: Host = make_host(1, "10.213.0.1/24")
        # TCP_NODELAY, as asyncio's transports (and synack run's) have it.
        nodelay = dataclasses.replace(self.server.tcp_config, nodelay=True)
        listener = self.server.tcp_listen(PORT, SERVER, config=nodelay)
        self.listener = TcpServer(self.driver, listener, factory)
        self.stream: TcpStream = self.client.tcp_connect((SERVER, PORT), self.loop.t)
        self.got = bytearray()  # what the client read
        self.client_events: list[str] = []

    def step(self) -> None:
        """One pass of the server's loop, then the wire both ways."""
        loop = self.loop
        loop.run_pass()
        frames = [f for _, f in self.wire.sent[self.wire.unread :]]
        self.wire.unread = len(self.wire.sent)
        client = self.client
        if frames:
            client.receive_frames(frames, loop.t)
        t = client.get_timer()
        if t is not None and t <= loop.t:
            client.handle_timer(loop.t)
        s = self.stream
        if not s.gone and s.conn.readable_bytes:
            self.got += s.receive(1 << 20, loop.t)
        while s.pending:
            ev = s.pending.popleft()
            if isinstance(ev, tev.StateChanged | tev.SendSpaceAvailable):
                continue
            name = type(ev).__name__
            # (How many DataAvailable follow each other depends on how the
            # bytes were framed, which is the cork's point: one stands for a run.)
            if not (name == "DataAvailable" and self.client_events[-1:] == [name]):
                self.client_events.append(name)
            if isinstance(ev, tev.EndOfStream) and not s.gone:
                s.close(loop.t)  # (as ab does once the reply has ended)
        back = client.frames_to_send()
        if back and self.wire.sink is not None:
            loop.call_soon(self.wire.sink, back)

    def run(self, passes: int = 400, dt: float = 0.002) -> None:
        """``passes`` passes, the clock moving ``dt`` whenever the loop is idle."""
        for _ in range(passes):
            if not self.loop.busy():
                self.loop.t += dt
            self.step()

    def send(self, data: bytes) -> None:
        self.stream.send(data, self.loop.t)
        back = self.client.frames_to_send()
        if back and self.wire.sink is not None:
            self.loop.call_soon(self.wire.sink, back)

    def server_segments(self) -> list[tuple[int, int, int]]:
        """The server's TCP segments after its SYN-ACK: (pass, flags, payload length)."""
        out = []
        for n, frame in self.wire.sent:
            seg = decode(frame).tcp
            if seg is not None and not seg.flags & wtcp.TcpFlags.SYN:
                out.append((n, int(seg.flags), len(seg.payload)))
        return out


class Program(asyncio.Protocol):
    """A server program: ``plan`` is a list of steps, each a list of calls on
    the transport made in one callback. The first step runs in data_received
    of the first request (inside the driver's pump) when ``in_pump``, or one
    pass later (a task's step, as aiohttp's handler); each later step one
    pass after the one before (a task woken by the one before: aiohttp's
    close after its write)."""

    def __init__(self, loop: ManualLoop, plan: list[list[tuple[str, int]]], in_pump: bool) -> None:
        self.loop = loop
        self.plan = deque(plan)
        self.in_pump = in_pump
        self.log: list[object] = []
        self.written_in: list[int] = []  # the pass of each write
        self.written = bytearray()
        self.transport: TcpTransport | None = None
        self.rng = random.Random(7)
        self.started = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, TcpTransport)
        self.transport = transport
        self.log.append("made")

    def data_received(self, data: bytes) -> None:
        self.log.append(("data", bytes(data)))
        if not self.started:
            self.started = True
            if self.in_pump:
                self._step()
            else:
                self.loop.call_soon(self._step)

    def eof_received(self) -> bool | None:
        self.log.append("eof")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.log.append(("lost", type(exc).__name__ if exc else None))

    def _step(self) -> None:
        if not self.plan:
            return
        t = self.transport
        assert t is not None
        for op, n in self.plan.popleft():
            if op == "write":
                self.written_in.append(self.loop.passes)
                data = self.rng.randbytes(n)
                self.written += data
                t.write(data)
            elif op == "close":
                t.close()
            elif op == "write_eof":
                t.write_eof()
            elif op == "abort":
                t.abort()
        if self.plan:
            self.loop.call_soon(self._step)


def serve(
    plan: list[list[tuple[str, int]]], *, in_pump: bool = False, passes: int = 400
) -> tuple[Net, Program]:
    programs: list[Program] = []
    loop_box: list[ManualLoop] = []

    def factory() -> asyncio.BaseProtocol:
        p = Program(loop_box[0], plan, in_pump)
        programs.append(p)
        return p

    net = Net(factory)
    loop_box.append(net.loop)
    for _ in range(40):  # ARP and the handshake
        net.step()
        if "Connected" in net.client_events:
            break
    assert "Connected" in net.client_events
    net.send(b"GET / HTTP/1.0\r\n\r\n")
    net.run(passes)
    assert len(programs) == 1
    return net, programs[0]


@pytest.fixture(params=[True, False], ids=["cork", "no-cork"])
def cork(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(TcpTransport, "cork", request.param)
    return bool(request.param)


REPLY = [[("write", 157)], [("close", 0)]]  # aiohttp's shape: write, then close next pass


def test_reply_then_close_next_pass_is_one_segment_with_the_fin(cork: bool) -> None:
    net, prog = serve(REPLY)
    data = [s for s in net.server_segments() if s[2] or s[1] & FIN]
    (wrote,) = prog.written_in
    if cork:
        # One segment: the reply with the FIN, one pass after the pass that
        # would have sent the reply alone, the same pass the FIN went before.
        assert [(n - wrote, flags & FIN, size) for n, flags, size in data] == [(2, FIN, 157)]
    else:
        assert [(n - wrote, flags & FIN, size) for n, flags, size in data] == [
            (1, 0, 157),
            (2, FIN, 0),
        ]
    assert len(net.got) == 157
    assert net.client_events[-2:] == ["EndOfStream", "Closed"]
    assert prog.log[-1] == ("lost", None)


def test_the_peer_answers_reply_and_fin_with_one_segment_and_the_server_sends_one_less() -> None:
    """The frames per connection, as the TAP counts them: with the cork the
    server sends SYN-ACK, reply+FIN and the last ACK (3), without it 4."""
    counts = {}
    for on in (True, False):
        TcpTransport.cork = on
        try:
            net, _ = serve(REPLY)
        finally:
            TcpTransport.cork = True
        counts[on] = len(net.server_segments()) + 1  # + the SYN-ACK
    assert counts == {True: 3, False: 4}


def test_a_lone_write_with_nothing_after_it_leaves_one_pass_later_not_more(cork: bool) -> None:
    net, prog = serve([[("write", 100)]], passes=60)
    (wrote,) = prog.written_in
    data = [(n - wrote, size) for n, _, size in net.server_segments() if size]
    assert data == [(2 if cork else 1, 100)]
    assert len(net.got) == 100


class KeepAlive(asyncio.Protocol):
    """Answers each request one pass after it arrived (a task's step), and
    keeps the connection open; ``joined`` requests get their reply in two
    writes, the second one pass after the first."""

    def __init__(self, loop: ManualLoop, joined: set[int]) -> None:
        self.loop = loop
        self.joined = joined
        self.requests = 0
        self.written_in: list[int] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, TcpTransport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.requests += 1
        self.loop.call_soon(self._reply, self.requests in self.joined)

    def _reply(self, in_two: bool) -> None:
        self.written_in.append(self.loop.passes)
        self.transport.write(b"reply")
        if in_two:
            self.loop.call_soon(self.transport.write, b" and the rest")


@pytest.mark.parametrize(
    ("joined", "delays"),
    [
        # A reply nothing joins: held once; the connection's later replies
        # are not held (a keep-alive connection pays the extra pass once).
        (set(), [2, 1, 1, 1]),
        # While what follows joins the held write, holding goes on.
        ({1, 2}, [2, 2, 2, 1]),
    ],
)
def test_holding_stops_once_a_held_write_went_out_alone(
    cork: bool, joined: set[int], delays: list[int]
) -> None:
    programs: list[KeepAlive] = []
    loop_box: list[ManualLoop] = []

    def factory() -> asyncio.BaseProtocol:
        programs.append(KeepAlive(loop_box[0], joined))
        return programs[0]

    net = Net(factory)
    loop_box.append(net.loop)
    for _ in range(40):
        net.step()
    assert "Connected" in net.client_events
    for _ in range(4):
        net.send(b"GET / HTTP/1.1\r\n\r\n")
        net.run(60)
    (prog,) = programs
    sent = [n for n, _, size in net.server_segments() if size]
    firsts = []
    for w in prog.written_in:
        firsts.append(min(n for n in sent if n > w) - w)
    assert firsts == (delays if cork else [1, 1, 1, 1])
    replies = [b"reply and the rest" if i in joined else b"reply" for i in range(1, 5)]
    assert bytes(net.got) == b"".join(replies)


def test_a_write_inside_a_pump_leaves_with_that_pump_and_a_close_there_joins_it(
    cork: bool,
) -> None:
    net, prog = serve([[("write", 300), ("close", 0)]], in_pump=True)
    (wrote,) = prog.written_in
    data = [(n - wrote, flags & FIN, size) for n, flags, size in net.server_segments() if size]
    if cork:
        assert data == [(0, FIN, 300)]
    else:
        assert data == [(0, 0, 300)]  # and a bare FIN after it, in the same pump
    net2, _ = serve([[("write", 300)]], in_pump=True, passes=60)
    assert [n for n, _, size in net2.server_segments() if size] == [prog.written_in[0]]


@pytest.mark.parametrize(
    "plan",
    [
        [[("write", 5000)], [("write", 10)], [("write", 10)], [("close", 0)]],
        [[("write", 1461)], [("write", 300)], [("close", 0)]],
        [[("write", 100_000)], [("write", 20)], [("close", 0)]],
    ],
)
def test_large_writes_and_writes_with_data_in_flight_are_framed_as_without_the_cork(
    plan: list[list[tuple[str, int]]],
) -> None:
    """A write larger than a segment is not held, nor one made while data is
    in flight: every segment leaves in the same pass, the same size, as
    without the cork (bulk transfers are unchanged)."""
    framing = []
    for on in (True, False):
        TcpTransport.cork = on
        try:
            net, prog = serve(plan)
        finally:
            TcpTransport.cork = True
        assert bytes(net.got) == bytes(prog.written)
        framing.append(net.server_segments())
    assert framing[0] == framing[1]


def _random_plan(rng: random.Random) -> list[list[tuple[str, int]]]:
    plan: list[list[tuple[str, int]]] = []
    ended = False
    for _ in range(rng.randint(1, 6)):
        step: list[tuple[str, int]] = []
        for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
            r = rng.random()
            if r < 0.6:
                step.append(("write", rng.choice([1, 20, 157, 157, 700, 1448, 1449, 3000, 9000])))
            elif r < 0.75:
                step.append(("close", 0))
                ended = True
            elif r < 0.85:
                step.append(("write_eof", 0))
                ended = True
            else:
                step.append(("abort", 0))
                ended = True
            if ended:
                break
        plan.append(step)
        if ended:
            break
    return plan


# Programs the cork holds a write for, each ended another way.
FIXED: list[tuple[list[list[tuple[str, int]]], bool]] = [
    (REPLY, False),
    (REPLY, True),
    ([[("write", 100)], [("abort", 0)]], False),
    ([[("write", 100), ("abort", 0)]], False),
    ([[("write", 100), ("abort", 0)]], True),
    ([[("write", 100)], [("write_eof", 0)]], False),
    ([[("write", 100)], [("write", 100)], [("write", 100)], [("close", 0)]], False),
    ([[("write", 100)], [], [], [("write", 1460)], [("close", 0)]], True),
]


@pytest.mark.parametrize("seed", range(-len(FIXED), 40))
def test_bytes_and_events_are_the_same_with_the_cork_on_and_off(seed: int) -> None:
    """Random programs (writes of every size, in one callback or over several
    passes, in the pump or in a task, ended by a close, a half-close, an
    abort or nothing): the client reads the same bytes and sees the same
    events, and the server's protocol the same calls, cork on or off. After
    an abort the client reads a prefix of what was written either way (what
    was still unsent is dropped, and how much that is depends on framing)."""
    if seed < 0:
        plan, in_pump = FIXED[seed]
    else:
        rng = random.Random(seed)
        plan = _random_plan(rng)
        in_pump = rng.random() < 0.3
    aborted = any(op == "abort" for step in plan for op, _ in step)
    seen = []
    for on in (True, False):
        TcpTransport.cork = on
        try:
            net, prog = serve(plan, in_pump=in_pump)
        finally:
            TcpTransport.cork = True
        got, written = bytes(net.got), bytes(prog.written)
        assert written.startswith(got) if aborted else got == written
        seen.append(
            (
                None if aborted else got,
                net.client_events,
                prog.log,
                net.stream.conn.state,
                net.stream.gone,
            )
        )
    assert seen[0] == seen[1], plan
