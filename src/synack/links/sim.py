"""A deterministic simulated network: a virtual clock, an event queue, links.

Generic on purpose: a :class:`Link` carries any item (TCP segments today,
whole Ethernet frames when the host stack sits on it) to a callable
``deliver(item, now)``. All randomness (loss, duplication, reordering,
corruption, jitter) comes from one seeded ``random.Random`` held by the
:class:`Simulator`, so a seed reproduces a run bit for bit (house style 3).

:class:`TcpSimPair` wires two :class:`~synack.tcp.connection.TcpConnection`
objects together over two links and drives their timers by the virtual clock.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Generic, TypeVar

from synack.errors import LocalProtocolError
from synack.tcp import events as tcp_events
from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection, reply_when_listening
from synack.tcp.states import State
from synack.wire import tcp as wire_tcp
from synack.wire.errors import MalformedPacket
from synack.wire.tcp import TcpFlags, TcpSegment

T = TypeVar("T")

_APP_SEND_STATES = frozenset(
    {State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT}
)

__all__ = ["Link", "LinkParams", "LinkStats", "SimApp", "Simulator", "TcpSimPair", "TimerHandle"]


_NO_ARG = object()


class TimerHandle:
    """A scheduled callback; ``cancel()`` makes it a no-op."""

    __slots__ = ("arg", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., None], arg: object = _NO_ARG) -> None:
        self.when = when
        self.callback = callback
        self.arg = arg
        self.cancelled = False

    def run(self) -> None:
        if self.arg is _NO_ARG:
            self.callback()
        else:
            self.callback(self.arg)

    def cancel(self) -> None:
        self.cancelled = True


# A queue entry: (when, order, callback, arg, handle or None). ``order`` is
# unique, so comparisons never look past it; ties in time run in the order
# they were scheduled. Items in flight on a link have no handle (they cannot
# be cancelled), which spares an object per item.
_Entry = tuple[float, int, Callable[..., None], object, "TimerHandle | None"]


class Simulator:
    """Discrete-event simulation: callbacks run in time order on a virtual clock."""

    def __init__(self, seed: int = 0) -> None:
        self.now = 0.0
        self.random = random.Random(seed)
        self._queue: list[_Entry] = []
        self._order = itertools.count()
        self.events_run = 0

    def schedule(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` at absolute virtual time ``when`` (not before now)."""
        return self.schedule_call(when, callback)

    def schedule_call(
        self, when: float, callback: Callable[..., None], arg: object = _NO_ARG
    ) -> TimerHandle:
        """Like :meth:`schedule`, calling ``callback(arg)`` (no closure per item)."""
        if when < self.now:
            when = self.now
        handle = TimerHandle(when, callback, arg)
        heapq.heappush(self._queue, (when, next(self._order), callback, arg, handle))
        return handle

    def post(self, when: float, callback: Callable[[T], None], arg: T) -> None:
        """Like :meth:`schedule_call` without a handle: cannot be cancelled, costs less."""
        if when < self.now:
            when = self.now
        heapq.heappush(self._queue, (when, next(self._order), callback, arg, None))

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        if delay < 0:
            raise LocalProtocolError("delay must be >= 0")
        return self.schedule(self.now + delay, callback)

    @property
    def pending(self) -> int:
        return sum(1 for e in self._queue if e[4] is None or not e[4].cancelled)

    def next_time(self) -> float | None:
        queue = self._queue
        while queue:
            h = queue[0][4]
            if h is None or not h.cancelled:
                return queue[0][0]
            heapq.heappop(queue)
        return None

    def step(self) -> bool:
        """Run the earliest callback; False when nothing is scheduled."""
        queue = self._queue
        while queue:
            when, _, callback, arg, handle = heapq.heappop(queue)
            if handle is not None and handle.cancelled:
                continue
            self.now = when
            self.events_run += 1
            if arg is _NO_ARG:
                callback()
            else:
                callback(arg)
            return True
        return False

    def run(
        self,
        until: float | None = None,
        *,
        max_events: int | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> int:
        """Run callbacks until the queue is empty, time ``until`` is reached,
        ``max_events`` ran, or ``stop()`` is true. Returns how many ran."""
        n = 0
        queue = self._queue
        heappop = heapq.heappop
        no_arg = _NO_ARG
        limit = until if until is not None else math.inf
        most = max_events if max_events is not None else math.inf
        while queue:
            if n >= most:
                break
            if stop is not None and stop():
                break
            if queue[0][0] > limit:
                break
            when, _, callback, arg, handle = heappop(queue)
            if handle is not None and handle.cancelled:
                continue
            self.now = when
            self.events_run += 1
            n += 1
            if arg is no_arg:
                callback()
            else:
                callback(arg)
        if (
            until is not None
            and (not queue or queue[0][0] > until)
            and self.now < until
            and (stop is None or not stop())
        ):
            self.now = until
        return n


def _flip_a_byte(item: object, rng: random.Random) -> object | None:
    if isinstance(item, bytes | bytearray) and len(item) > 0:
        data = bytearray(item)
        i = rng.randrange(len(data))
        data[i] ^= rng.randrange(1, 256)
        return bytes(data)
    return None


def _size_of(item: object) -> int:
    if isinstance(item, bytes | bytearray | memoryview):
        return len(item)
    if isinstance(item, TcpSegment):
        return 40 + len(item.payload)
    return 0


@dataclass(slots=True)
class LinkStats:
    sent: int = 0
    delivered: int = 0
    lost: int = 0  # random loss
    queue_drops: int = 0  # tail drops at the queue limit
    hook_drops: int = 0  # dropped by drop_if
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0


@dataclass(slots=True)
class LinkParams:
    """Everything that shapes one direction of a link (all optional)."""

    delay: float = 0.01
    jitter: float = 0.0
    bandwidth: float | None = None  # bytes per second; None: infinite
    queue_limit: int | None = None  # items waiting for the wire; None: unbounded
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float | None = None  # extra delay of a reordered item (default: 2*delay)
    corrupt: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise LocalProtocolError(f"{name} must be a probability, got {p}")
        if self.delay < 0 or self.jitter < 0:
            raise LocalProtocolError("delay and jitter must be >= 0")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise LocalProtocolError("bandwidth must be positive")
        if self.queue_limit is not None and self.queue_limit < 1:
            raise LocalProtocolError("queue_limit must be >= 1")


class Link(Generic[T]):
    """One direction of a wire: a queue, a serialiser at ``bandwidth``, a delay.

    Jitter is uniform in [0, jitter) per item and may itself reorder items.
    ``drop_if(item)`` is consulted for every item sent; returning True drops
    that item (for "lose the third ACK" scenarios). ``corrupter(item, rng)``
    returns a damaged copy (default: flip one byte of a bytes item) or None
    when the item cannot be corrupted.
    """

    def __init__(
        self,
        sim: Simulator,
        deliver: Callable[[T, float], None],
        params: LinkParams | None = None,
        *,
        drop_if: Callable[[T], bool] | None = None,
        size: Callable[[T], int] = _size_of,
        corrupter: Callable[[T, random.Random], T | None] = _flip_a_byte,  # type: ignore[assignment]
        name: str = "link",
    ) -> None:
        self.sim = sim
        self.deliver = deliver
        self.params = params if params is not None else LinkParams()
        self.drop_if = drop_if
        self.size = size
        self.corrupter = corrupter
        self.name = name
        # Each link draws from its own stream, seeded from the simulator's,
        # so adding a link elsewhere does not change this one's losses.
        self.rng = random.Random(sim.random.getrandbits(64))
        self.stats = LinkStats()
        self._busy_until = 0.0
        self._departures: deque[float] = deque()

    def send(self, item: T) -> None:
        p = self.params
        sim = self.sim
        st = self.stats
        st.sent += 1
        if (
            self.drop_if is None
            and p.bandwidth is None
            and not (p.loss or p.jitter or p.reorder or p.corrupt or p.duplicate)
        ):
            # A plain wire (the common case of benchmarks): only the delay;
            # no draw would have been made below either.
            sim.post(sim.now + p.delay, self._arrive, item)
            return
        rng = self.rng
        now = sim.now
        if self.drop_if is not None and self.drop_if(item):
            st.hook_drops += 1
            return
        if p.loss and rng.random() < p.loss:
            st.lost += 1
            return
        start = now
        if p.bandwidth is not None:
            deps = self._departures
            while deps and deps[0] <= now:
                deps.popleft()
            if p.queue_limit is not None and len(deps) >= p.queue_limit:
                st.queue_drops += 1
                return
            start = max(now, self._busy_until)
            self._busy_until = start + self.size(item) / p.bandwidth
            deps.append(self._busy_until)
            start = self._busy_until
        arrival = start + p.delay
        if p.jitter:
            arrival += rng.random() * p.jitter
        if p.reorder and rng.random() < p.reorder:
            st.reordered += 1
            arrival += p.reorder_delay if p.reorder_delay is not None else 2 * p.delay
        if p.corrupt and rng.random() < p.corrupt:
            damaged = self.corrupter(item, rng)
            if damaged is not None:
                st.corrupted += 1
                item = damaged
        self._schedule(item, arrival)
        if p.duplicate and rng.random() < p.duplicate:
            st.duplicated += 1
            self._schedule(item, arrival + rng.random() * max(p.delay, 1e-4))

    def _schedule(self, item: T, at: float) -> None:
        self.sim.post(at, self._arrive, item)

    def _arrive(self, item: T) -> None:
        self.stats.delivered += 1
        self.deliver(item, self.sim.now)


@dataclass(slots=True)
class SimApp:
    """A scripted application at one end of a :class:`TcpSimPair`.

    It writes ``outgoing`` as send space allows, reads everything that
    arrives into ``received``, and (when ``close_after_sending``) closes its
    writing side once everything was accepted by the connection. With
    ``read=False`` it never reads (to fill the peer's window).
    """

    outgoing: bytes = b""
    close_after_sending: bool = True
    read: bool = True
    full_close: bool = False  # close() rather than shutdown_write()
    chunk: int = 1 << 20  # largest single send() (1: byte at a time)
    #: A slow reader: at most ``read_max`` bytes per wake-up, waking again
    #: ``read_interval`` later while bytes remain.
    read_max: int = 1 << 30
    read_interval: float = 0.05
    _reread: bool = False
    #: Close only once the peer's FIN arrived and everything was sent (a
    #: server that answers and then hangs up), instead of as soon as sent.
    close_on_eof: bool = False
    eof: bool = False
    sent: int = 0
    received: bytearray = field(default_factory=bytearray)
    closed_write: bool = False
    events: list[tcp_events.Event] = field(default_factory=list)


class TcpSimPair:
    """Two TCP connections over two simulated links, a client and a server.

    The server side is a minimal listener: a SYN to the server address
    creates the server connection with :meth:`TcpConnection.accept_syn`;
    other segments there get :func:`reply_when_listening`. Segments are
    serialised with :mod:`synack.wire.tcp` (checksums included) when
    ``serialize`` is true, which corruption requires; otherwise the
    segment objects travel as they are.
    """

    CLIENT = (IPv4Address("10.213.0.1"), 40000)
    SERVER = (IPv4Address("10.213.0.2"), 7)

    def __init__(
        self,
        sim: Simulator,
        *,
        client_config: TcpConfig | None = None,
        server_config: TcpConfig | None = None,
        client_iss: int = 1000,
        server_iss: int = 5000,
        to_server: LinkParams | None = None,
        to_client: LinkParams | None = None,
        serialize: bool | None = None,
        client_app: SimApp | None = None,
        server_app: SimApp | None = None,
        drop_to_server: Callable[[TcpSegment], bool] | None = None,
        drop_to_client: Callable[[TcpSegment], bool] | None = None,
    ) -> None:
        self.sim = sim
        self.to_server_params = to_server or LinkParams()
        self.to_client_params = to_client or LinkParams()
        if serialize is None:
            serialize = bool(self.to_server_params.corrupt or self.to_client_params.corrupt)
        self.serialize = serialize
        self.client_config = client_config or TcpConfig()
        self.server_config = server_config or TcpConfig()
        self.server_iss = server_iss
        self.client = TcpConnection(
            self.CLIENT, self.SERVER, config=self.client_config, iss=client_iss
        )
        self.server: TcpConnection | None = None
        self.client_app = client_app or SimApp(close_after_sending=False)
        self.server_app = server_app or SimApp(close_after_sending=False)
        self.listener_replies = 0
        self.decode_errors = 0
        self.trace: list[tuple[float, str, TcpSegment]] = []
        self.record_trace = False
        self.link_to_server: Link[object] = Link(
            sim,
            self._at_server,
            self.to_server_params,
            drop_if=self._wrap_hook(drop_to_server, self.CLIENT, self.SERVER),
            name="c->s",
        )
        self.link_to_client: Link[object] = Link(
            sim,
            self._at_client,
            self.to_client_params,
            drop_if=self._wrap_hook(drop_to_client, self.SERVER, self.CLIENT),
            name="s->c",
        )
        self._timers: dict[int, TimerHandle] = {}

    # -- plumbing ------------------------------------------------------

    def _wrap_hook(
        self,
        hook: Callable[[TcpSegment], bool] | None,
        src: tuple[IPv4Address, int],
        dst: tuple[IPv4Address, int],
    ) -> Callable[[object], bool] | None:
        if hook is None:
            return None

        def check(item: object) -> bool:
            seg = self._decode(item, src, dst)
            return seg is not None and hook(seg)

        return check

    def _encode(
        self, seg: TcpSegment, src: tuple[IPv4Address, int], dst: tuple[IPv4Address, int]
    ) -> object:
        if self.serialize:
            return wire_tcp.build(seg, src[0], dst[0])
        return seg

    def _decode(
        self, item: object, src: tuple[IPv4Address, int], dst: tuple[IPv4Address, int]
    ) -> TcpSegment | None:
        if isinstance(item, TcpSegment):
            return item
        if isinstance(item, bytes | bytearray):
            try:
                return wire_tcp.parse(bytes(item), src[0], dst[0])
            except MalformedPacket:
                self.decode_errors += 1
                return None
        return None

    def _at_server(self, item: object, now: float) -> None:
        seg = item if type(item) is TcpSegment else self._decode(item, self.CLIENT, self.SERVER)
        if seg is None:
            return
        if self.record_trace:
            self.trace.append((now, "c->s", seg))
        server = self.server
        if server is None or server.state is State.LISTEN:
            if (seg.flags & (TcpFlags.SYN | TcpFlags.ACK | TcpFlags.RST)) == TcpFlags.SYN:
                self.server = TcpConnection.accept_syn(
                    seg, self.SERVER, self.CLIENT, self.server_config, self.server_iss, now
                )
                self._pump(self.server, self.server_app, now)
            else:
                reply = reply_when_listening(seg)
                if reply is not None:
                    self.listener_replies += 1
                    self.link_to_client.send(self._encode(reply, self.SERVER, self.CLIENT))
            return
        server.receive_segment(seg, now)
        self._pump(server, self.server_app, now)

    def _at_client(self, item: object, now: float) -> None:
        seg = item if type(item) is TcpSegment else self._decode(item, self.SERVER, self.CLIENT)
        if seg is None:
            return
        if self.record_trace:
            self.trace.append((now, "s->c", seg))
        self.client.receive_segment(seg, now)
        self._pump(self.client, self.client_app, now)

    def _pump(self, conn: TcpConnection, app: SimApp, now: float) -> None:
        """Let the app act, drain events, flush segments, re-arm the timer.

        One pass suffices: events first (an EndOfStream may let the app
        close), then read, write and maybe close, then the events those
        calls produced.
        """
        self._drain(conn, app)
        if app.read and conn.readable_bytes and not (app.full_close and app.closed_write):
            app.received += conn.receive(app.read_max)
            if conn.readable_bytes and not app._reread:
                app._reread = True
                self.sim.schedule_call(now + app.read_interval, self._reread, conn)
        state = conn.state
        sent = app.sent
        outgoing = app.outgoing
        if sent < len(outgoing) and state in _APP_SEND_STATES:
            # Write chunk by chunk while there is room (chunk 1: byte at a
            # time), from a view: the send buffer makes the only copy.
            view = memoryview(outgoing)
            while sent < len(outgoing):
                take = min(app.chunk, conn.send_space)
                if not take:
                    break
                sent += conn.send(view[sent : sent + take], now)
            app.sent = sent
        if (
            app.close_after_sending
            and not app.closed_write
            and (app.eof or not app.close_on_eof)
            and sent == len(app.outgoing)
            and (state is State.ESTABLISHED or state is State.CLOSE_WAIT)
        ):
            app.closed_write = True
            if app.full_close:
                conn.close(now)
            else:
                conn.shutdown_write(now)
            self._drain(conn, app)
        self.flush(conn, now)

    def _reread(self, conn: TcpConnection) -> None:
        app = self.client_app if conn is self.client else self.server_app
        app._reread = False
        self._pump(conn, app, self.sim.now)

    @staticmethod
    def _drain(conn: TcpConnection, app: SimApp) -> None:
        next_event = conn.next_event
        data_available = tcp_events.DataAvailable
        while (event := next_event()) is not None:
            if type(event) is data_available:
                continue  # the app reads on every pump; not worth keeping
            app.events.append(event)
            if type(event) is tcp_events.EndOfStream:
                app.eof = True

    def flush(self, conn: TcpConnection, now: float | None = None) -> None:
        """Send what ``conn`` has to send and schedule its next deadline."""
        now = self.sim.now if now is None else now
        segs = conn.segments_to_send(now)
        if segs:
            if conn is self.client:
                link, src, dst = self.link_to_server, self.CLIENT, self.SERVER
            else:
                link, src, dst = self.link_to_client, self.SERVER, self.CLIENT
            if self.serialize:
                for seg in segs:
                    link.send(wire_tcp.build(seg, src[0], dst[0]))
            else:
                for seg in segs:
                    link.send(seg)
        self._arm(conn)

    def _arm(self, conn: TcpConnection) -> None:
        """Make sure a wake-up is scheduled no later than ``conn``'s deadline.

        A deadline that moved later (the retransmission timer restarts on
        every ACK) keeps the earlier wake-up, which then re-arms itself:
        one heap entry per real expiry instead of one per segment.
        """
        deadline = conn.get_timer()
        if deadline is None:
            return
        key = id(conn)
        old = self._timers.get(key)
        if old is not None:
            if old.when <= deadline:
                return
            old.cancel()
        self._timers[key] = self.sim.schedule_call(deadline, self._wake, conn)

    def _wake(self, conn: TcpConnection) -> None:
        self._timers.pop(id(conn), None)
        now = self.sim.now
        deadline = conn.get_timer()
        if deadline is None:
            return
        if deadline > now:
            self._arm(conn)
            return
        conn.handle_timer(now)
        self._pump(conn, self.client_app if conn is self.client else self.server_app, now)

    # -- driving -------------------------------------------------------

    def start(self) -> None:
        """Active open from the client now."""
        self.client.connect(self.sim.now)
        self._pump(self.client, self.client_app, self.sim.now)

    def pump(self) -> None:
        """Let both apps act now (after a test changed them) and flush."""
        self._pump(self.client, self.client_app, self.sim.now)
        if self.server is not None:
            self._pump(self.server, self.server_app, self.sim.now)

    def both_closed(self) -> bool:
        return (
            self.client.state is State.CLOSED
            and self.server is not None
            and self.server.state is State.CLOSED
        )

    def run(self, until: float | None = None, *, max_events: int | None = None) -> None:
        self.sim.run(until, max_events=max_events)
