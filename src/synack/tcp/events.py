"""Events a :class:`~synack.tcp.connection.TcpConnection` reports to its user.

Frozen, slotted dataclasses that validate in their constructor (house style
item 5). ``next_event()`` returns them in the order they happened.

Layer: tcp. Imports synack.errors and synack.tcp.states.
"""

from __future__ import annotations

import enum
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


class Trigger(enum.Enum):
    """What made a state change happen: a segment that arrived, a user call, a timer."""

    RECEIVED = "received"
    CALL = "call"
    TIMER = "timer"


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """Which segment caused a change: enough to find its frame in a capture."""

    seq: int
    ack: int
    flags: int  # the TCP flag bits
    length: int  # payload octets

    def __post_init__(self) -> None:
        if not (0 <= self.seq < 2**32 and 0 <= self.ack < 2**32 and 0 <= self.flags < 256):
            raise LocalProtocolError("SegmentRef: seq/ack are 32-bit, flags 8-bit")
        if self.length < 0:
            raise LocalProtocolError("SegmentRef: length must be >= 0")


_TIMER_CAUSES = frozenset({Cause.TIMEOUT, Cause.TIME_WAIT_EXPIRED})


@dataclass(frozen=True, slots=True)
class StateChanged(Event):
    """One row of the transition table was taken (recorded in ``transitions`` too).

    ``trigger`` says what took it: a received segment (``segment`` names it),
    a user call (OPEN, CLOSE, ABORT; the cause says which) or a timer. A
    passive child's CLOSED -> LISTEN carries the time its listener listened:
    in the RFC's model the TCB was in LISTEN from that OPEN call on.
    """

    old: State
    new: State
    cause: Cause
    time: float
    trigger: Trigger = Trigger.CALL
    segment: SegmentRef | None = None

    def __post_init__(self) -> None:
        if self.old is self.new:
            raise LocalProtocolError("StateChanged needs two different states")
        if (self.segment is not None) != (self.trigger is Trigger.RECEIVED):
            raise LocalProtocolError("StateChanged: a segment exactly when one was received")
        if self.trigger is Trigger.TIMER and self.cause not in _TIMER_CAUSES:
            raise LocalProtocolError(f"StateChanged: a timer cannot cause {self.cause}")

    @classmethod
    def caused_by(
        cls,
        old: State,
        new: State,
        cause: Cause,
        time: float,
        segment: SegmentRef | None,
    ) -> StateChanged:
        """The change, triggered by ``segment`` when one is being processed, else by a
        timer (for the timeout causes) or a user call."""
        if segment is not None:
            return cls(old, new, cause, time, Trigger.RECEIVED, segment)
        trigger = Trigger.TIMER if cause in _TIMER_CAUSES else Trigger.CALL
        return cls(old, new, cause, time, trigger)


@dataclass(frozen=True, slots=True)
class Closed(Event):
    """The connection is finished (CLOSED, or a passive child returned to LISTEN).

    The owner may forget the connection once this is reported.
    """
