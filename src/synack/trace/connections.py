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

from dataclasses import dataclass
from typing import Protocol

from synack.tcp.seq import seq_add, seq_lt
from synack.tcp.states import Cause, State
from synack.trace.model import Addr, StateChange
from synack.wire import tcp as wtcp
from synack.wire.tcp import MAX_WSCALE

# TcpFlags as plain ints: IntFlag operators are slow per segment.
FIN_BIT, SYN_BIT, RST_BIT, ACK_BIT = 0x01, 0x02, 0x04, 0x10


@dataclass(slots=True)
class Side:
    """One end of a connection as the observer has come to know it."""

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
    """A connection being reconstructed; ``inferred`` when no end recorded its states."""

    index: int
    client: Side
    server: Side
    inferred: bool
    initial: tuple[State | None, State | None] = (None, None)


def conn_key(a: Addr, b: Addr) -> tuple[Addr, Addr]:
    """The same key for both directions of a connection."""
    return (a, b) if (int(a[0]), a[1]) <= (int(b[0]), b[1]) else (b, a)


class ChangeFn(Protocol):
    """Moves a side by a cause (when the table has that row; to ``prefer`` when
    the row allows it), appending the change to ``into``."""

    def __call__(
        self,
        side: Side,
        cause: Cause,
        into: list[StateChange],
        prefer: State | None = None,
        /,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Marks:
    """What one segment shows about its sender's stream."""

    retransmission: bool  # it carries data already sent
    dup_ack: bool  # the same ACK and window again, nothing else
    window_scaled: int  # its window in octets
    first_fin: bool  # the sender's first FIN
    out_of_order: bool = False  # begins past the highest sequence its sender had sent


def observe(sender: Side, receiver: Side, seg: wtcp.TcpSegment) -> Marks:
    """Sequence bookkeeping for one segment, before the state machine moves."""
    bits = int(seg.flags)
    syn = bool(bits & SYN_BIT)
    ack = bool(bits & ACK_BIT)
    fin = bool(bits & FIN_BIT)
    rst = bool(bits & RST_BIT)
    if sender.isn is None:
        sender.isn = seg.seq  # its SYN, or (mid-stream) the first byte seen is relative 0
    if ack and receiver.isn is None:
        receiver.isn = seq_add(seg.ack, -(1 if syn else 0))
    seg_len = seg.seg_len
    end = seq_add(seg.seq, seg_len)
    retransmission = seg_len > 0 and sender.snd_max is not None and seq_lt(seg.seq, sender.snd_max)
    dup_ack = bool(
        ack
        and seg_len == 0
        and not (syn or fin or rst)
        and sender.last_ack == seg.ack
        and sender.last_window == seg.window
        and receiver.snd_max is not None
        and seq_lt(seg.ack, receiver.snd_max)
    )
    ahead = bool(seg_len and sender.snd_max is not None and seq_lt(sender.snd_max, seg.seq))
    if sender.snd_max is None or (seg_len and seq_lt(sender.snd_max, end)):
        sender.snd_max = end
    first_fin = fin and sender.fin_seq is None
    if first_fin:
        sender.fin_seq = seq_add(seg.seq, len(seg.payload) + (1 if syn else 0))
    if syn:
        sender.wscale = seg.options.wscale
    # RFC 7323 §2.2-2.3: scaling is in force only when both SYNs carried the
    # option, and never applies to the window of a SYN itself.
    scaling = not syn and sender.wscale is not None and receiver.wscale is not None
    window_scaled = seg.window << min(sender.wscale or 0, MAX_WSCALE) if scaling else seg.window
    if ack and not syn:
        sender.last_ack = seg.ack
        sender.last_window = seg.window
    return Marks(retransmission, dup_ack, window_scaled, first_fin, ahead)


def send(
    sender: Side, seg: wtcp.TcpSegment, first_fin: bool, change: ChangeFn, into: list[StateChange]
) -> None:
    """The causes sending a segment implies for its sender: a user call (OPEN,
    CLOSE, ABORT), or the arrival of a SYN-ACK that was not captured."""
    bits = int(seg.flags)
    ack = bits & ACK_BIT
    rst = bits & RST_BIT
    if rst:
        if sender.state not in (State.CLOSED, State.LISTEN):
            change(sender, Cause.ABORT, into)
    elif bits & SYN_BIT and not ack:
        if sender.state is State.CLOSED:
            change(sender, Cause.ACTIVE_OPEN, into)
    elif sender.state is State.SYN_SENT and ack:
        # An ACK from SYN-SENT: the SYN-ACK it answers was not captured.
        change(sender, Cause.RCV_SYN_ACK, into)
    if first_fin and not rst:
        change(sender, Cause.CLOSE, into)


def receive(
    receiver: Side,
    seg: wtcp.TcpSegment,
    change: ChangeFn,
    into: list[StateChange],
) -> None:
    """The causes a segment's arrival implies for its receiver (RFC 9293 §3.10.7)."""
    flags = int(seg.flags)
    state = receiver.state
    if flags & RST_BIT:
        if state is State.SYN_SENT and not (
            flags & ACK_BIT and receiver.isn is not None and seg.ack == seq_add(receiver.isn, 1)
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
