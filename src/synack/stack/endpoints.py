"""The host's sockets as its adapters see them: UDP endpoints, TCP streams and listeners.

Each is a handle on state the host keeps; what it does goes back to the host
through the callables it was made with (the protocol module that owns it), so
this module needs nothing above it and the host's events can name these
classes exactly. ``owner`` is the adapter object using the socket: the host
never calls it, it only reports activity for sockets that have one.

Layer: stack. Imports synack.wire, synack.tcp and synack.stack.config.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, ValuesView

from synack.stack.config import Address, ConnKey
from synack.tcp import events as tev
from synack.tcp.buffers import Lent
from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection
from synack.wire.ipv4 import address_int


class UdpEndpoint:
    """One bound UDP port. Its receive queue is bounded: when full, arriving
    datagrams are dropped and counted, as UDP does (no back-pressure)."""

    __slots__ = (
        "_close",
        "_sendto",
        "closed",
        "dropped",
        "error",
        "limit",
        "local",
        "owner",
        "queue",
        "remote",
    )

    def __init__(
        self,
        local: Address,
        limit: int,
        sendto: Callable[[UdpEndpoint, bytes, Address, float], None],
        close: Callable[[UdpEndpoint], None],
    ) -> None:
        self.local = local
        self.remote: Address | None = None  # set by connect()
        self.queue: deque[tuple[bytes, Address]] = deque()
        self.limit = limit
        self.dropped = 0
        self.closed = False
        self.error: int | None = None  # pending errno from an ICMP error (connected only)
        self.owner: object = None  # the adapter object using it (opaque to the host)
        self._sendto = sendto
        self._close = close

    def recvfrom(self) -> tuple[bytes, Address] | None:
        return self.queue.popleft() if self.queue else None

    def sendto(self, data: bytes, addr: Address, now: float) -> None:
        self._sendto(self, data, addr, now)

    def close(self) -> None:
        self._close(self)


class TcpStream:
    """One TCP connection on a host. The sans-IO connection is ``conn``; the
    host keeps its events in ``pending`` for the owner (an adapter) and
    reports :class:`~synack.stack.events.TcpActivity` when there are new ones.
    Every call takes ``now``, like the connection itself."""

    __slots__ = (
        "__weakref__",
        "_touch",
        "conn",
        "deadline",
        "flow",
        "gone",
        "key",
        "listener",
        "owner",
        "pending",
        "soft_error",
        "timer_seq",
    )

    def __init__(
        self,
        key: ConnKey,
        conn: TcpConnection,
        listener: TcpListener | None,
        touch: Callable[[TcpStream, float], None],
        flow: tuple[int, int, int, int] | None = None,
    ) -> None:
        self.key = key
        # The key with its addresses as ints: what the host looks it up by
        # (``flow``, when the caller has it already: a SYN's).
        self.flow = (
            (address_int(key[0]), key[1], address_int(key[2]), key[3]) if flow is None else flow
        )
        self.conn = conn
        self.listener = listener  # the listener that made it (passive), until accepted
        self.pending: deque[tev.Event] = deque()
        self.deadline: float | None = None
        self.timer_seq = 0  # the host's timer heap entry for ``deadline``
        self.gone = False  # forgotten by the host (CLOSED)
        # The errno of the last ICMP soft error about it (RFC 9293 §3.9.2.2
        # SHLD-25: made available to the application, never fatal, MUST-56).
        self.soft_error: int | None = None
        self.owner: object = None  # the adapter object using it (opaque to the host)
        # The host's per-connection loop (events, segments, timer) after a call.
        self._touch = touch

    @property
    def local(self) -> Address:
        return (self.key[0], self.key[1])

    @property
    def remote(self) -> Address:
        return (self.key[2], self.key[3])

    def send(self, data: bytes | bytearray | memoryview | Lent, now: float) -> int:
        n = self.conn.send(data, now)
        self._touch(self, now)
        return n

    def receive(self, max_bytes: int, now: float) -> bytes:
        data = self.conn.receive(max_bytes)
        if data and self.conn.ack_due:
            # A read changes nothing else a touch would see (no event, no
            # timer): only a window update can be due (§3.8.6.2.2).
            self._touch(self, now)
        return data

    def shutdown_write(self, now: float) -> None:
        self.conn.shutdown_write(now)
        self._touch(self, now)

    def close(self, now: float) -> None:
        self.conn.close(now)
        self._touch(self, now)

    def abort(self, now: float) -> None:
        self.conn.abort(now)
        self._touch(self, now)

    def poll(self, now: float) -> None:
        """Flush what calls on ``conn`` made directly have queued."""
        self._touch(self, now)


class StreamsByKey(Mapping[ConnKey, TcpStream]):
    """The host's TCP streams by ConnKey (IPv4Address tuples), read from its
    table by flow (the same 4-tuples with int addresses): a new connection is
    filed once, by ints hashed in C, where a second dict by ConnKey hashed
    two ``IPv4Address`` objects in Python on every insertion and removal.
    Read-only; same order as the table (insertion)."""

    __slots__ = ("_flows",)

    def __init__(self, flows: dict[tuple[int, int, int, int], TcpStream]) -> None:
        self._flows = flows

    def __getitem__(self, key: ConnKey) -> TcpStream:
        try:
            flow = (address_int(key[0]), key[1], address_int(key[2]), key[3])
        except (TypeError, AttributeError, IndexError, ValueError):
            raise KeyError(key) from None  # not a 4-tuple of two addresses and two ports
        stream = self._flows.get(flow)
        if stream is None or stream.key != key:
            raise KeyError(key)
        return stream

    def __iter__(self) -> Iterator[ConnKey]:
        return iter([stream.key for stream in self._flows.values()])

    def __len__(self) -> int:
        return len(self._flows)

    def values(self) -> ValuesView[TcpStream]:
        return self._flows.values()


class TcpListener:
    """A listening port: a half-open queue (bounded, evicting its oldest:
    the SYN-flood defence) and an accept queue bounded by ``backlog``."""

    __slots__ = (
        "_close",
        "_flush",
        "backlog",
        "closed",
        "config",
        "fastopen_pending",
        "fastopen_qlen",
        "half_open",
        "local",
        "owner",
        "queue",
        "since",
        "syn_backlog",
    )

    def __init__(
        self,
        local: Address,
        backlog: int,
        syn_backlog: int,
        config: TcpConfig,
        *,
        flush: Callable[[], None],
        close: Callable[[TcpListener, float], None],
        since: float = 0.0,
    ) -> None:
        self.local = local
        self.since = since  # when it listened (passive OPEN): its children were in LISTEN since
        self.backlog = backlog
        self.syn_backlog = syn_backlog
        self.config = config
        # By the connection's flow (its 4-tuple with the addresses as ints,
        # TcpStream.flow: hashed in C, where a ConnKey's IPv4Addresses hash in
        # Python): insertion order = age.
        self.half_open: dict[tuple[int, int, int, int], TcpStream] = {}
        self.queue: deque[TcpStream] = deque()  # established, not yet accepted
        self.closed = False
        self.owner: object = None  # the adapter object using it (opaque to the host)
        # TCP Fast Open (RFC 7413, synack.stack.fastopen): off at 0; else at
        # most this many accepted Fast Opens pending (Linux's TCP_FASTOPEN qlen).
        self.fastopen_qlen = 0
        self.fastopen_pending = 0
        self._flush = flush  # processes segments fed but not yet handled
        self._close = close

    def accept(self) -> TcpStream | None:
        self._flush()  # a handshake may have just completed
        while self.queue:
            stream = self.queue.popleft()
            stream.listener = None
            if not stream.gone or stream.pending:
                return stream
        return None

    def close(self, now: float) -> None:
        self._close(self, now)
