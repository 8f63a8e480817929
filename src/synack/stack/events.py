"""What a host tells its adapters and observers. Frozen, slotted, validated.

Two streams leave a :class:`~synack.stack.host.Host`: its event queue
(:meth:`~synack.stack.host.Host.next_event`, one :data:`HostEvent` at a time,
for the adapters) and its observers (every :data:`TraceRecord`, for traces and
captures). :class:`HostUnreachable` is neither: it goes into a TCP stream's
own ``pending`` queue, next to the connection's events.

Layer: stack. Imports synack.wire._fast, synack.tcp and synack.stack.endpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Literal, TypeAlias

from synack.stack.endpoints import TcpListener, TcpStream, UdpEndpoint
from synack.tcp.events import Event as TcpEvent
from synack.tcp.events import StateChanged
from synack.wire._fast import fast_init


@dataclass(frozen=True, slots=True)
class FrameTrace:
    """Every frame in or out of a host (the trace observers' record)."""

    host: str
    ts: float
    direction: Literal["in", "out"]
    frame: bytes

    def __post_init__(self) -> None:
        if self.direction not in ("in", "out"):
            raise ValueError(f"direction must be 'in' or 'out', not {self.direction!r}")


@dataclass(frozen=True, slots=True)
class TcpStateTrace:
    """Every TCP state change of a host's connections: the connection's own event,
    unchanged (old, new, cause, and the segment, call or timer that took it), and
    whose connection it is."""

    host: str
    local: tuple[IPv4Address, int]
    remote: tuple[IPv4Address, int]
    change: StateChanged

    @property
    def ts(self) -> float:
        return self.change.time

    @property
    def old(self) -> str:
        return self.change.old.value

    @property
    def new(self) -> str:
        return self.change.new.value


@dataclass(frozen=True, slots=True)
class ArpRefused:
    """An ARP packet the spoofing defence refused (reason: unsolicited/conflict)."""

    ts: float
    ip: IPv4Address
    mac: bytes
    reason: str

    def __post_init__(self) -> None:
        if len(self.mac) != 6:
            raise ValueError("mac must be 6 bytes")


@dataclass(frozen=True, slots=True)
class NeighbourUnreachable:
    """ARP gave up on ``ip``; ``dropped`` packets waiting for it were lost."""

    ts: float
    ip: IPv4Address
    dropped: int


@dataclass(frozen=True, slots=True)
class EchoReply:
    """An ICMP echo reply arrived (the answer to :meth:`Host.ping`)."""

    ts: float
    src: IPv4Address
    ident: int
    sequence: int
    data: bytes


@dataclass(frozen=True, slots=True)
class DatagramReadable:
    """A UDP endpoint's receive queue went from empty to non-empty."""

    endpoint: UdpEndpoint


@dataclass(frozen=True, slots=True)
class DatagramError:
    """An ICMP error about a datagram an endpoint sent (e.g. port unreachable)."""

    endpoint: UdpEndpoint
    errno: int
    remote: tuple[IPv4Address, int]


@dataclass(frozen=True, slots=True)
class TcpActivity:
    """A TCP socket has something new for its owner: readable data, send space,
    an established/closed connection, or (for a listener) a connection to accept."""

    socket: TcpStream | TcpListener


fast_init(TcpActivity)  # several per connection: fill the slot directly


@dataclass(frozen=True, slots=True)
class HostUnreachable(TcpEvent):
    """Put in a connecting TCP stream's ``pending`` when ARP gave up on its
    next hop: the connect fails with EHOSTUNREACH, as on Linux, instead of
    retrying SYNs for minutes."""

    ip: IPv4Address


# Anything :meth:`Host.next_event` returns.
HostEvent: TypeAlias = (
    ArpRefused | NeighbourUnreachable | EchoReply | DatagramReadable | DatagramError | TcpActivity
)
# Anything a host's observers are called with.
TraceRecord: TypeAlias = FrameTrace | TcpStateTrace | ArpRefused
Observer: TypeAlias = Callable[[TraceRecord], None]
