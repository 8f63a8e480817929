"""Two TCP connections wired to each other: by hand, or over simulated lossy links.

:class:`TcpPair` is the one pair: a client connection that opens actively
and a server side that is a minimal listener, creating the server
connection with :meth:`TcpConnection.accept_syn` from a SYN (again when the
previous child went back to LISTEN) and answering anything else with
:func:`reply_when_listening`. Driven by hand with its own clock (``now``),
a test moves every segment itself (``out_a``/``to_b``, ``exchange``,
``advance``), so it can lose, reorder, duplicate or forge any of them and
assert exact sequence numbers, flags and states; :class:`Mirror` shows the
same pair from the server's side. :class:`TcpSimPair` is the same core driven
by a :class:`~synack.core.sim.Simulator`: two :class:`~synack.core.sim.Link`
objects (loss, delay, reordering, corruption) carry the segments, the
simulator's clock fires the timers and a scripted :class:`SimApp` at each
end writes, reads and closes.

Layer: tcp. Imports synack.core, synack.wire and the rest of synack.tcp.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from synack.core.sim import Link, LinkParams, Simulator, TimerHandle
from synack.tcp import events as tcp_events
from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection, reply_when_listening
from synack.tcp.fastopen import FastOpenCookies
from synack.tcp.segments import F_ACK, F_RST, F_SYN
from synack.tcp.states import State
from synack.wire import tcp as wire_tcp
from synack.wire.errors import MalformedPacket
from synack.wire.tcp import TcpSegment

__all__ = ["Mirror", "SimApp", "TcpPair", "TcpSimPair"]

Address = tuple[IPv4Address, int]

_APP_SEND_STATES = frozenset(
    {State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT}
)


class TcpPair:
    """A client (``a``, the active opener) and a server (``b``, made from the client's SYN)."""

    CLIENT: Address = (IPv4Address("10.213.0.1"), 40000)
    SERVER: Address = (IPv4Address("10.213.0.2"), 7)

    def __init__(
        self,
        client_config: TcpConfig | None = None,
        server_config: TcpConfig | None = None,
        *,
        client_iss: int = 1000,
        server_iss: int = 5000,
        client_addr: Address | None = None,
        server_addr: Address | None = None,
        server_fastopen: FastOpenCookies | None = None,
    ) -> None:
        self.now = 0.0  # the hand-driven clock (the simulated driver has its own)
        self.client_addr = client_addr or self.CLIENT
        self.server_addr = server_addr or self.SERVER
        self.client_config = client_config or TcpConfig()
        self.server_config = server_config or TcpConfig()
        self.server_iss = server_iss
        # A server doing Fast Open (RFC 7413) checks each SYN's cookie with it.
        self.server_fastopen = server_fastopen
        self.client = TcpConnection(
            self.client_addr, self.server_addr, config=self.client_config, iss=client_iss
        )
        self.server: TcpConnection | None = None
        self.listener_replies = 0
        self._listener_out: list[TcpSegment] = []

    @property
    def a(self) -> TcpConnection:
        return self.client

    @property
    def b(self) -> TcpConnection:
        assert self.server is not None, "B does not exist yet (no SYN delivered)"
        return self.server

    # -- the core: delivery, the server's listener ------------------------

    def at_server(self, seg: TcpSegment, now: float) -> TcpConnection | None:
        """Deliver ``seg`` on the server side; returns the connection that took it, if any.

        While there is no server connection (or it went back to LISTEN) the
        listener acts (RFC 9293 §3.10.7.2): a SYN makes the connection, the
        rest gets :func:`reply_when_listening`, queued for the client.
        """
        server = self.server
        if server is None or server.state is State.LISTEN:
            if (int(seg.flags) & (F_SYN | F_ACK | F_RST)) == F_SYN:
                tfo = self.server_fastopen
                fo = None if tfo is None else tfo.answer(self.client_addr[0], seg, now)[0]
                server = self.server = TcpConnection.accept_syn(
                    seg,
                    self.server_addr,
                    self.client_addr,
                    self.server_config,
                    self.server_iss,
                    now,
                    fastopen=fo,
                )
                return server
            reply = reply_when_listening(seg)
            if reply is not None:
                self.listener_replies += 1
                self._listener_out.append(reply)
            return None
        server.receive_segment(seg, now)
        return server

    def take_listener_replies(self) -> list[TcpSegment]:
        out = self._listener_out
        self._listener_out = []
        return out

    # -- driving by hand ------------------------------------------------

    def out_a(self) -> list[TcpSegment]:
        return self.client.segments_to_send(self.now)

    def out_b(self) -> list[TcpSegment]:
        out = self.take_listener_replies()
        if self.server is not None:
            out += self.server.segments_to_send(self.now)
        return out

    def to_b(self, segs: list[TcpSegment]) -> None:
        for s in segs:
            self.at_server(s, self.now)

    def to_a(self, segs: list[TcpSegment]) -> None:
        for s in segs:
            self.client.receive_segment(s, self.now)

    def open(self) -> tuple[list[TcpSegment], list[TcpSegment], list[TcpSegment]]:
        """The three-way handshake, by hand; returns the three flights."""
        self.client.connect(self.now)
        syn = self.out_a()
        self.to_b(syn)
        synack = self.out_b()
        self.to_a(synack)
        ack = self.out_a()
        self.to_b(ack)
        assert self.a.state is State.ESTABLISHED and self.b.state is State.ESTABLISHED
        return syn, synack, ack

    def exchange(self, rounds: int = 100) -> int:
        """Shuttle segments both ways until both are quiet; returns segments moved."""
        moved = 0
        for _ in range(rounds):
            sa = self.out_a()
            sb = self.out_b()
            if not sa and not sb:
                return moved
            moved += len(sa) + len(sb)
            self.to_b(sa)
            self.to_a(sb)
        raise AssertionError("no quiescence")

    def advance(self, t: float) -> None:
        """Move the clock to ``t`` and fire every timer due by then."""
        assert t >= self.now
        self.now = t
        for c in (self.client, self.server):
            if c is not None:
                deadline = c.get_timer()
                if deadline is not None and deadline <= t:
                    c.handle_timer(t)

    def fire_next(self, conn: TcpConnection) -> float:
        """Advance to ``conn``'s next deadline and handle it; returns that time."""
        deadline = conn.get_timer()
        assert deadline is not None
        self.now = max(self.now, deadline)
        conn.handle_timer(self.now)
        return deadline

    def both_closed(self) -> bool:
        return (
            self.client.state is State.CLOSED
            and self.server is not None
            and self.server.state is State.CLOSED
        )


class Mirror:
    """The same hand-driven pair seen from the other side: ``a`` is the passive opener.

    Lets a scenario written for the client run unchanged for the server.
    """

    def __init__(self, pair: TcpPair) -> None:
        self.duo = pair

    @property
    def a(self) -> TcpConnection:
        return self.duo.b

    @property
    def b(self) -> TcpConnection:
        return self.duo.a

    @property
    def now(self) -> float:
        return self.duo.now

    @now.setter
    def now(self, value: float) -> None:
        self.duo.now = value

    def out_a(self) -> list[TcpSegment]:
        return self.duo.out_b()

    def out_b(self) -> list[TcpSegment]:
        return self.duo.out_a()

    def to_a(self, segs: list[TcpSegment]) -> None:
        self.duo.to_b(segs)

    def to_b(self, segs: list[TcpSegment]) -> None:
        self.duo.to_a(segs)

    def exchange(self, rounds: int = 100) -> int:
        return self.duo.exchange(rounds)

    def advance(self, t: float) -> None:
        self.duo.advance(t)

    def fire_next(self, conn: TcpConnection) -> float:
        return self.duo.fire_next(conn)


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


class TcpSimPair(TcpPair):
    """The pair driven by a simulator, over two simulated links (see the module docstring).

    Segments are serialised with :mod:`synack.wire.tcp` (checksums
    included) when ``serialize`` is true, which corruption requires;
    otherwise the segment objects travel as they are.
    """

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
        super().__init__(client_config, server_config, client_iss=client_iss, server_iss=server_iss)
        self.sim = sim
        self.to_server_params = to_server or LinkParams()
        self.to_client_params = to_client or LinkParams()
        if serialize is None:
            serialize = bool(self.to_server_params.corrupt or self.to_client_params.corrupt)
        self.serialize = serialize
        self.client_app = client_app or SimApp(close_after_sending=False)
        self.server_app = server_app or SimApp(close_after_sending=False)
        self.decode_errors = 0
        self.trace: list[tuple[float, str, TcpSegment]] = []
        self.record_trace = False
        self.link_to_server: Link[object] = Link(
            sim,
            self._at_server,
            self.to_server_params,
            drop_if=self._wrap_hook(drop_to_server, self.client_addr, self.server_addr),
            name="c->s",
        )
        self.link_to_client: Link[object] = Link(
            sim,
            self._at_client,
            self.to_client_params,
            drop_if=self._wrap_hook(drop_to_client, self.server_addr, self.client_addr),
            name="s->c",
        )
        self._timers: dict[int, TimerHandle] = {}

    # -- plumbing ------------------------------------------------------

    def _wrap_hook(
        self, hook: Callable[[TcpSegment], bool] | None, src: Address, dst: Address
    ) -> Callable[[object], bool] | None:
        if hook is None:
            return None

        def check(item: object) -> bool:
            seg = self._decode(item, src, dst)
            return seg is not None and hook(seg)

        return check

    def _decode(self, item: object, src: Address, dst: Address) -> TcpSegment | None:
        if isinstance(item, TcpSegment):
            return item
        if isinstance(item, bytes | bytearray):
            try:
                return wire_tcp.parse(bytes(item), src[0], dst[0])
            except MalformedPacket:
                self.decode_errors += 1
                return None
        return None

    def _send(self, segs: list[TcpSegment], to_server: bool) -> None:
        if to_server:
            link, src, dst = self.link_to_server, self.client_addr, self.server_addr
        else:
            link, src, dst = self.link_to_client, self.server_addr, self.client_addr
        if self.serialize:
            for seg in segs:
                link.send(wire_tcp.build(seg, src[0], dst[0]))
        else:
            for seg in segs:
                link.send(seg)

    def _arriving(
        self, item: object, now: float, src: Address, dst: Address, label: str
    ) -> TcpSegment | None:
        """What a link delivers, as a segment (None when it does not decode); traced."""
        seg = item if type(item) is TcpSegment else self._decode(item, src, dst)
        if seg is not None and self.record_trace:
            self.trace.append((now, label, seg))
        return seg

    def _at_server(self, item: object, now: float) -> None:
        if type(item) is TcpSegment and not self.record_trace:
            seg: TcpSegment | None = item  # the common case, without a call
        else:
            seg = self._arriving(item, now, self.client_addr, self.server_addr, "c->s")
        if seg is None:
            return
        conn = self.at_server(seg, now)
        if self._listener_out:
            self._send(self.take_listener_replies(), to_server=False)
        if conn is not None:
            self._pump(conn, self.server_app, now)

    def _at_client(self, item: object, now: float) -> None:
        if type(item) is TcpSegment and not self.record_trace:
            seg: TcpSegment | None = item  # the common case, without a call
        else:
            seg = self._arriving(item, now, self.server_addr, self.client_addr, "s->c")
        if seg is None:
            return
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
            self._send(segs, to_server=conn is self.client)
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

    def run(self, until: float | None = None, *, max_events: int | None = None) -> None:
        self.sim.run(until, max_events=max_events)
