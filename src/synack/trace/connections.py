"""Per-connection state reconstruction: what one segment implies for each end.

Each end of a TCP connection (a :class:`Side`) carries what the observer has
learned of it (ISN, highest sequence sent, its FIN, its window scale, its
state). When a source records no state changes for a connection (a capture of
two kernels talking), the states are inferred from the segments alone by
driving the one transition table of :mod:`synack.tcp.states` with the causes
each segment implies for its sender ("send SYN" is an active OPEN, "send FIN"
a CLOSE) and, unless the segment was lost, for its receiver (:func:`receive`:
rcv SYN, rcv ACK of SYN, rcv FIN, ...). The observer sees one point of the
path, so it takes a segment as received when it is seen; a pcap cannot show
TIME-WAIT ending.

Layer: trace. Imports synack.tcp, synack.wire and synack.trace.model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from synack.tcp.seq import SEQ_MOD, seq_lt
from synack.tcp.states import Cause, State
from synack.trace.model import Addr, StateChange
from synack.wire import tcp as wtcp

FIN_BIT, SYN_BIT, RST_BIT, ACK_BIT = (
    0x01,
    0x02,
    0x04,
    0x10,
)  # TcpFlags as plain ints for the hot path


@dataclass(slots=True)
class Side:
    addr: Addr
    state: State | None
    isn: int | None = None
    snd_max: int | None = None  # highest seq + SEG.LEN sent so far
    fin_seq: int | None = None  # sequence number of our FIN
    fin_received: bool = False
    passive: bool = False  # went through LISTEN
    last_ack: int | None = None
    last_window: int | None = None
    wscale: int | None = None  # the shift its SYN announced (RFC 7323 §2.2)
    fin_change: StateChange | None = None  # the inferred change its peer's FIN caused


@dataclass(slots=True)
class Conn:
    index: int
    client: Side
    server: Side
    inferred: bool
    initial: tuple[State | None, State | None] = (None, None)


def conn_key(a: Addr, b: Addr) -> tuple[Addr, Addr]:
    """The same key for both directions of a connection."""
    return (a, b) if (int(a[0]), a[1]) <= (int(b[0]), b[1]) else (b, a)


ChangeFn = Callable[["Side", Cause, list[StateChange], State | None], None]
"""Moves a side by a cause (when the table has that row), appending the change to a list."""


def receive(
    receiver: Side,
    seg: wtcp.TcpSegment,
    change: Callable[[Side, Cause, list[StateChange], State | None], None],
    into: list[StateChange],
) -> None:
    """The causes a segment's arrival implies for its receiver (RFC 9293 §3.10.7)."""
    flags = int(seg.flags)
    state = receiver.state
    if flags & RST_BIT:
        if state is State.SYN_SENT and not (
            flags & ACK_BIT and receiver.isn is not None and seg.ack == (receiver.isn + 1) % SEQ_MOD
        ):
            return  # §3.10.7.3: in SYN-SENT an RST that does not ACK our SYN is ignored
        if state not in (State.CLOSED, State.LISTEN):
            # §3.10.7.4: SYN-RECEIVED of a passive open goes back to LISTEN,
            # of an active (simultaneous) open to CLOSED.
            back = State.LISTEN if receiver.passive else State.CLOSED
            change(receiver, Cause.RCV_RST, into, back)
        return
    if flags & SYN_BIT:
        if flags & ACK_BIT:
            if state is State.SYN_SENT:
                change(receiver, Cause.RCV_SYN_ACK, into, None)
            elif state is State.SYN_RECEIVED and not receiver.passive:
                change(receiver, Cause.RCV_ACK_OF_SYN, into, None)  # simultaneous open
        elif state in (State.LISTEN, State.SYN_SENT):
            change(receiver, Cause.RCV_SYN, into, None)
        return
    if not flags & ACK_BIT:
        return
    # §3.10.7.4 processes the ACK field before the FIN bit: FIN-WAIT-1 that
    # gets FIN+ACK of its FIN passes through FIN-WAIT-2 to TIME-WAIT.
    if (
        receiver.state is State.SYN_RECEIVED
        and receiver.isn is not None
        and seq_lt(receiver.isn, seg.ack)
    ):
        change(receiver, Cause.RCV_ACK_OF_SYN, into, None)
    if (
        receiver.fin_seq is not None
        and seq_lt(receiver.fin_seq, seg.ack)
        and receiver.state in (State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK)
    ):
        change(receiver, Cause.RCV_ACK_OF_FIN, into, None)
    if flags & FIN_BIT and not receiver.fin_received:
        receiver.fin_received = True
        n = len(into)
        change(receiver, Cause.RCV_FIN, into, None)
        if len(into) > n:
            receiver.fin_change = into[-1]
