"""Events a :class:`~synack.tcp.connection.TcpConnection` reports to its user.

Frozen, slotted dataclasses that validate in their constructor (house style
item 5). ``next_event()`` returns them in the order they happened.

Layer: tcp. Imports synack.errors and synack.tcp.states.
"""

from __future__ import annotations

from dataclasses import dataclass

from synack.errors import LocalProtocolError
from synack.tcp.states import Cause, State


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every TCP event."""


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """The handshake completed: the connection is ESTABLISHED."""


@dataclass(frozen=True, slots=True)
class DataAvailable(Event):
    """New in-order bytes became readable; ``readable`` is the total now buffered."""

    readable: int

    def __post_init__(self) -> None:
        if self.readable <= 0:
            raise LocalProtocolError("DataAvailable needs readable > 0")


@dataclass(frozen=True, slots=True)
class EndOfStream(Event):
    """The peer sent FIN: after the buffered bytes, nothing more will arrive."""


@dataclass(frozen=True, slots=True)
class SendSpaceAvailable(Event):
    """A send() that was cut short may now be retried: ``space`` bytes are free."""

    space: int

    def __post_init__(self) -> None:
        if self.space <= 0:
            raise LocalProtocolError("SendSpaceAvailable needs space > 0")


@dataclass(frozen=True, slots=True)
class UrgentData(Event):
    """The peer sent urgent data (RFC 9293 §3.8.5; MUST-32): ``pending`` octets
    from the read point up to the urgent pointer, some maybe not yet arrived.

    Reported once per run of urgent data (not again while it is unread);
    the octets themselves are delivered in line by ``receive()``.
    """

    pending: int

    def __post_init__(self) -> None:
        if self.pending <= 0:
            raise LocalProtocolError("UrgentData needs pending > 0")


@dataclass(frozen=True, slots=True)
class ConnectionReset(Event):
    """The peer reset a synchronized connection (RFC 9293 §3.10.7.4)."""


@dataclass(frozen=True, slots=True)
class ConnectionRefused(Event):
    """The peer answered our SYN with RST (RFC 9293 §3.10.7.3), or an ICMP hard error did.

    ``icmp``: the ICMP error's kind (an IcmpError value), None for a RST.
    """

    icmp: str | None = None


@dataclass(frozen=True, slots=True)
class TimedOut(Event):
    """The connection was given up: ``reason`` is "connect", "retransmit" (R2) or "keepalive".

    ``soft_error``: the last ICMP soft error reported for it (RFC 9293 SHLD-25), if any.
    """

    reason: str
    soft_error: str | None = None

    def __post_init__(self) -> None:
        if self.reason not in ("connect", "retransmit", "keepalive"):
            raise LocalProtocolError(f"unknown timeout reason {self.reason!r}")


@dataclass(frozen=True, slots=True)
class DeliveryProblem(Event):
    """One segment has been retransmitted R1 times (RFC 9293 §3.8.3 (b), (e) SHLD-9).

    Advice only: the connection keeps trying until R2.
    """

    retransmissions: int

    def __post_init__(self) -> None:
        if self.retransmissions < 1:
            raise LocalProtocolError("DeliveryProblem needs retransmissions >= 1")


@dataclass(frozen=True, slots=True)
class StateChanged(Event):
    """One row of the transition table was taken (recorded in ``transitions`` too)."""

    old: State
    new: State
    cause: Cause
    time: float

    def __post_init__(self) -> None:
        if self.old is self.new:
            raise LocalProtocolError("StateChanged needs two different states")


@dataclass(frozen=True, slots=True)
class Closed(Event):
    """The connection is finished (CLOSED, or a passive child returned to LISTEN).

    The owner may forget the connection once this is reported.
    """
