"""The eleven connection states of RFC 9293 §3.3.2 and THE transition table.

Every state change of a :class:`~synack.tcp.connection.TcpConnection` goes
through one ``_set_state`` that checks the change against :data:`TRANSITIONS`
and records it; the trace and the state diagram are drawn from the records and
from this table (house style item 4). A change that is not a row here is a bug
in the connection, not something a peer can cause.

The states, and the causes a short connection's changes give, are also module
constants (``ESTABLISHED is State.ESTABLISHED``): the per-segment paths read
those, as CPython 3.11 reads ``State.X`` through the enum metaclass's slow
attribute hook.

Layer: tcp. Imports synack.wire._fast (a frozen dataclass's fast ``__init__``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from synack.wire._fast import fast_init


class State(enum.Enum):
    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"

    # Members are singletons compared by identity: hash them by identity too
    # (Enum's own __hash__ is Python code, and states are looked up in sets
    # on every segment).
    __hash__ = object.__hash__

    def __str__(self) -> str:
        return self.value


# The states as module constants, for the per-segment and per-connection
# paths: on CPython 3.11 ``State.X`` is read through the enum metaclass's
# attribute hook (EnumType defines __getattr__, so every class attribute read
# takes the slow slot: ~70 ns, ten times a global; 3.12 dropped the hook) and
# a short connection read some fifty of them. The same objects: ``is`` holds.
CLOSED = State.CLOSED
LISTEN = State.LISTEN
SYN_SENT = State.SYN_SENT
SYN_RECEIVED = State.SYN_RECEIVED
ESTABLISHED = State.ESTABLISHED
FIN_WAIT_1 = State.FIN_WAIT_1
FIN_WAIT_2 = State.FIN_WAIT_2
CLOSE_WAIT = State.CLOSE_WAIT
CLOSING = State.CLOSING
LAST_ACK = State.LAST_ACK
TIME_WAIT = State.TIME_WAIT


class Cause(enum.Enum):
    """Why a state changed: a user call, a received segment or a timer."""

    PASSIVE_OPEN = "passive OPEN"
    ACTIVE_OPEN = "active OPEN"
    RCV_SYN = "rcv SYN"
    RCV_SYN_ACK = "rcv SYN,ACK"
    RCV_ACK_OF_SYN = "rcv ACK of SYN"
    RCV_FIN = "rcv FIN"
    RCV_ACK_OF_FIN = "rcv ACK of FIN"
    RCV_RST = "rcv RST"
    CLOSE = "CLOSE"
    ABORT = "ABORT"
    TIMEOUT = "timeout"
    TIME_WAIT_EXPIRED = "2MSL timeout"
    # An unread receive buffer at CLOSE, or data arriving after CLOSE, is
    # answered by RST (RFC 9293 §3.6 SHLD-3, RFC 1122 §4.2.2.13).
    DATA_AFTER_CLOSE = "data after CLOSE"

    # As State's: every state change looks its (old, cause, new) row up.
    __hash__ = object.__hash__

    def __str__(self) -> str:
        return self.value


# The causes of a short connection's transitions, the same way (State's above).
PASSIVE_OPEN = Cause.PASSIVE_OPEN
RCV_SYN = Cause.RCV_SYN
RCV_ACK_OF_SYN = Cause.RCV_ACK_OF_SYN
CLOSE = Cause.CLOSE
RCV_ACK_OF_FIN = Cause.RCV_ACK_OF_FIN
RCV_FIN = Cause.RCV_FIN


S = State
C = Cause

# The one table: (from, cause, to). Rows follow the RFC 9293 §3.3.2 diagram
# (Figure 6) plus the edges the event processing of §3.10 adds (RST, abort,
# timeouts). The order is the order a diagram lists them in.
TRANSITIONS: tuple[tuple[State, Cause, State], ...] = (
    # Opening (§3.5)
    (S.CLOSED, C.PASSIVE_OPEN, S.LISTEN),
    (S.CLOSED, C.ACTIVE_OPEN, S.SYN_SENT),
    (S.LISTEN, C.RCV_SYN, S.SYN_RECEIVED),
    (S.SYN_SENT, C.RCV_SYN_ACK, S.ESTABLISHED),
    (S.SYN_SENT, C.RCV_SYN, S.SYN_RECEIVED),  # simultaneous open (Figure 7)
    (S.SYN_SENT, C.RCV_RST, S.CLOSED),  # "connection refused"
    (S.SYN_SENT, C.CLOSE, S.CLOSED),
    (S.SYN_SENT, C.ABORT, S.CLOSED),
    (S.SYN_SENT, C.TIMEOUT, S.CLOSED),  # SYN retries / connect timeout
    (S.SYN_RECEIVED, C.RCV_ACK_OF_SYN, S.ESTABLISHED),
    # §3.10.7.4: a RST (or a SYN) in SYN-RECEIVED of a passive open returns
    # the connection to LISTEN ("old duplicate SYN", Figure 8); of an active
    # (simultaneous) open, a RST means "connection refused".
    (S.SYN_RECEIVED, C.RCV_RST, S.LISTEN),
    (S.SYN_RECEIVED, C.RCV_SYN, S.LISTEN),
    (S.SYN_RECEIVED, C.RCV_RST, S.CLOSED),
    (S.SYN_RECEIVED, C.ABORT, S.CLOSED),
    (S.SYN_RECEIVED, C.TIMEOUT, S.CLOSED),
    # Data transfer and closing (§3.6)
    (S.ESTABLISHED, C.CLOSE, S.FIN_WAIT_1),
    (S.ESTABLISHED, C.RCV_FIN, S.CLOSE_WAIT),
    (S.ESTABLISHED, C.RCV_RST, S.CLOSED),
    (S.ESTABLISHED, C.ABORT, S.CLOSED),
    (S.ESTABLISHED, C.TIMEOUT, S.CLOSED),  # R2 or keepalive
    (S.FIN_WAIT_1, C.RCV_ACK_OF_FIN, S.FIN_WAIT_2),
    (S.FIN_WAIT_1, C.RCV_FIN, S.CLOSING),  # simultaneous close (Figure 13)
    (S.FIN_WAIT_1, C.RCV_RST, S.CLOSED),
    (S.FIN_WAIT_1, C.ABORT, S.CLOSED),
    (S.FIN_WAIT_1, C.TIMEOUT, S.CLOSED),
    (S.FIN_WAIT_1, C.DATA_AFTER_CLOSE, S.CLOSED),
    (S.FIN_WAIT_2, C.RCV_FIN, S.TIME_WAIT),
    (S.FIN_WAIT_2, C.RCV_RST, S.CLOSED),
    (S.FIN_WAIT_2, C.ABORT, S.CLOSED),
    (S.FIN_WAIT_2, C.DATA_AFTER_CLOSE, S.CLOSED),
    (S.FIN_WAIT_2, C.TIMEOUT, S.CLOSED),  # after close(): fin_wait_2_timeout
    (S.CLOSE_WAIT, C.CLOSE, S.LAST_ACK),
    (S.CLOSE_WAIT, C.RCV_RST, S.CLOSED),
    (S.CLOSE_WAIT, C.ABORT, S.CLOSED),
    (S.CLOSE_WAIT, C.TIMEOUT, S.CLOSED),
    (S.CLOSING, C.RCV_ACK_OF_FIN, S.TIME_WAIT),
    (S.CLOSING, C.RCV_RST, S.CLOSED),
    (S.CLOSING, C.ABORT, S.CLOSED),
    (S.CLOSING, C.TIMEOUT, S.CLOSED),
    (S.LAST_ACK, C.RCV_ACK_OF_FIN, S.CLOSED),
    (S.LAST_ACK, C.RCV_RST, S.CLOSED),
    (S.LAST_ACK, C.ABORT, S.CLOSED),
    (S.LAST_ACK, C.TIMEOUT, S.CLOSED),
    (S.TIME_WAIT, C.TIME_WAIT_EXPIRED, S.CLOSED),
    (S.TIME_WAIT, C.RCV_RST, S.CLOSED),
    (S.TIME_WAIT, C.ABORT, S.CLOSED),
)

#: The rows of :data:`TRANSITIONS` as a set (what :func:`is_transition` asks).
TRANSITION_ROWS: frozenset[tuple[State, Cause, State]] = frozenset(TRANSITIONS)


def is_transition(old: State, cause: Cause, new: State) -> bool:
    """Whether (old, cause, new) is a row of :data:`TRANSITIONS`."""
    return (old, cause, new) in TRANSITION_ROWS


#: States in which both sides have exchanged SYNs (RFC 9293 §3.3.2).
SYNCHRONIZED: frozenset[State] = frozenset(
    {
        S.ESTABLISHED,
        S.FIN_WAIT_1,
        S.FIN_WAIT_2,
        S.CLOSE_WAIT,
        S.CLOSING,
        S.LAST_ACK,
        S.TIME_WAIT,
    }
)


@dataclass(frozen=True, slots=True)
class Transition:
    """One recorded state change."""

    time: float
    old: State
    new: State
    cause: Cause


# Every connection records six or so of these: fill the slots directly.
fast_init(Transition)
