"""TIME-WAIT as a compact record: what the host keeps of a connection for 2*MSL.

Once a connection reaches TIME-WAIT nothing is left to send or receive; the
quiet time only keeps old duplicates of this incarnation away from the next
one (RFC 9293 §3.4.2, MUST-13). Keeping the whole connection (buffers, timers,
loss recovery) for two minutes makes a busy server slow down as TIME-WAITs pile
up, so the host drops it and keeps a :class:`TimeWait`: the 4-tuple, SND.NXT,
RCV.NXT and the window we advertised, the timestamps state (RFC 7323) and the
deadline. :func:`answer` applies the RFC 9293 §3.10.7.4 rules for TIME-WAIT to
a segment, as the connection itself would have:

- a retransmitted FIN is acknowledged and the 2*MSL wait restarts;
- PAWS (RFC 7323 §5.3) and the acceptability test (Table 6) come first: an
  unacceptable segment is answered with an ACK (rate-limited when it carries
  nothing), an unacceptable RST is dropped;
- a RST exactly at RCV.NXT ends TIME-WAIT; elsewhere in the window it earns a
  challenge ACK (RFC 5961 §3.2), as does a SYN in the window (§4.2);
- a new SYN may reopen the 4-tuple (MAY-2) when it cannot be an old
  duplicate: a TSval above TS.Recent when timestamps were in use (RFC 6191
  §2), else a sequence number above RCV.NXT (RFC 1122 §4.2.2.13)
  (:func:`may_reopen`).

The record is a weak reference to the stream, so an owner that still holds
it sees it closed at the deadline, and a closed-and-forgotten stream is freed
at once. :class:`TimeWaitTable` holds a host's records by 4-tuple with the
addresses as ints (what an arriving segment is looked up by: hashing an
``IPv4Address`` is a Python-level call) and their deadline heap; it reads as a
mapping by :data:`~synack.stack.config.ConnKey` (``TcpDemux.time_wait``).
:class:`TimeWaitSide`, a base of ``TcpDemux``, is the host's side of it: a
connection that reaches TIME-WAIT leaves a record, a segment for a record is
answered from it, and the end of the wait is reported.

Layer: stack. Imports synack.wire, synack.tcp and synack.stack.config / endpoints / events.
"""

from __future__ import annotations

import heapq
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from enum import Enum
from ipaddress import IPv4Address

from synack.stack.config import ConnKey
from synack.stack.endpoints import TcpListener, TcpStream
from synack.stack.events import Observer, TcpStateTrace
from synack.tcp import events as tev
from synack.tcp.seq import in_window, seq_add, seq_diff, seq_gt, seq_lt
from synack.tcp.states import Cause, State
from synack.tcp.tcb import OOW_ACK_INTERVAL
from synack.tcp.timestamps import PAWS_IDLE
from synack.wire.ipv4 import address_from_int, address_int
from synack.wire.tcp import NO_OPTIONS, TcpFlags, TcpOptions, TcpSegment

_SYN, _ACK, _RST, _FIN = TcpFlags.SYN, TcpFlags.ACK, TcpFlags.RST, TcpFlags.FIN
_INT_SYN, _INT_SYN_ACK_RST = int(_SYN), int(_SYN | _ACK | _RST)
_NEVER = float("-inf")  # a record that has not replied yet


class Outcome(Enum):
    """What the host does with the record after a segment."""

    KEEP = "keep"
    CLOSE = "close"  # an acceptable RST at RCV.NXT: TIME-WAIT ends (§3.10.7.4 second step)


class TimeWait(weakref.ref[TcpStream]):
    """One connection in TIME-WAIT (see the module docstring): a weak
    reference to its stream (calling it gives the stream while something
    else holds it, else None) with the record's fields. One object, not a
    record and its reference: a busy server holds tens of thousands, and each
    object the cycle collector tracks that lives this long makes its full
    collections longer and more frequent. Compared and hashed by identity,
    as a plain object (a weak reference compares its referents)."""

    __slots__ = (
        "deadline",
        "flow",
        "last_reply",
        "linger",
        "rcv_nxt",
        "rcv_wnd",
        "seq",
        "snd_nxt",
        "ts_offset",
        "ts_ok",
        "ts_recent",
        "ts_recent_time",
        "ts_valid",
        "wscale",
    )

    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__

    def __new__(cls, stream: TcpStream, deadline: float, linger: float) -> TimeWait:
        return super().__new__(cls, stream)

    def __init__(self, stream: TcpStream, deadline: float, linger: float) -> None:
        # (ref's own __init__ only checks its arguments: __new__ made the reference.)
        conn = stream.conn
        (
            self.snd_nxt,
            self.rcv_nxt,
            self.rcv_wnd,
            self.wscale,
            self.ts_ok,
            self.ts_offset,
            self.ts_recent,
            self.ts_recent_time,
            self.ts_valid,
        ) = conn.time_wait_view()
        # The 4-tuple with its addresses as ints, not the key's IPv4Address
        # objects: a busy server holds tens of thousands of these records, and
        # every object in one that the cycle collector tracks makes its full
        # collections longer and more frequent (a record is one object, its
        # own weak reference; its heap entry holds ints, see TimeWaitTable).
        self.flow = stream.flow
        self.seq = 0  # its live entry in the table's heap
        self.deadline = deadline
        self.linger = linger  # 2*MSL of the connection's configuration
        self.last_reply = _NEVER

    @property
    def key(self) -> ConnKey:
        """The 4-tuple as the host's ConnKey (local address, port, remote address, port)."""
        f = self.flow
        return (address_from_int(f[0]), f[1], address_from_int(f[2]), f[3])

    def ack(self, now: float) -> TcpSegment:
        """The ACK this end sends from TIME-WAIT: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>."""
        options = NO_OPTIONS
        if self.ts_ok:
            options = TcpOptions(
                timestamps=(seq_add(self.ts_offset, int(now * 1000)), self.ts_recent)
            )
        window = min(self.rcv_wnd >> self.wscale, 0xFFFF)
        return TcpSegment(
            self.flow[1], self.flow[3], self.snd_nxt, self.rcv_nxt, _ACK, window, options=options
        )

    def _limited_ack(self, now: float) -> TcpSegment | None:
        # As the connection's reply to an unacceptable segment and its
        # challenge ACKs: at most one per OOW_ACK_INTERVAL, so two confused
        # ends cannot ACK each other forever (RFC 5961 §7).
        if now - self.last_reply < OOW_ACK_INTERVAL:
            return None
        self.last_reply = now
        return self.ack(now)


Flow = tuple[int, int, int, int]


def _flow(key: ConnKey) -> Flow:
    return (address_int(key[0]), key[1], address_int(key[2]), key[3])


class TimeWaitTable(Mapping[ConnKey, TimeWait]):
    """A host's TIME-WAIT records (see the module docstring): ``by_flow`` by
    4-tuple with int addresses, and their deadline heap of (deadline, number,
    4-tuple): ints only, so the cycle collector leaves the entries alone. Lazy
    deletion: an entry is live while the table's record for its 4-tuple still
    has its number; a wait a retransmitted FIN restarted is pushed again."""

    __slots__ = ("_heap", "_seq", "by_flow")

    def __init__(self) -> None:
        self.by_flow: dict[Flow, TimeWait] = {}
        self._heap: list[tuple[float, int, Flow]] = []
        self._seq = 0

    # The mapping by ConnKey (IPv4Address tuples): the API and the tests.
    def __getitem__(self, key: ConnKey) -> TimeWait:
        return self.by_flow[_flow(key)]

    def __contains__(self, key: object) -> bool:
        try:
            tw = self.by_flow.get(_flow(key))  # type: ignore[arg-type]
        except (TypeError, AttributeError, IndexError):
            return False  # not a 4-tuple of two addresses and two ports
        return tw is not None and tw.key == key

    def __iter__(self) -> Iterator[ConnKey]:
        return (tw.key for tw in list(self.by_flow.values()))

    def __len__(self) -> int:
        return len(self.by_flow)

    def add(self, tw: TimeWait) -> None:
        """Keep ``tw`` until its deadline (again, if it was kept before)."""
        self.by_flow[tw.flow] = tw
        self._seq += 1
        tw.seq = self._seq
        heapq.heappush(self._heap, (tw.deadline, self._seq, tw.flow))

    def remove(self, tw: TimeWait) -> None:
        if self.by_flow.get(tw.flow) is tw:
            del self.by_flow[tw.flow]

    def next_deadline(self) -> float | None:
        heap, live = self._heap, self.by_flow
        while heap:
            tw = live.get(heap[0][2])
            if tw is not None and tw.seq == heap[0][1]:
                return heap[0][0]
            heapq.heappop(heap)
        return None

    def expired(self, now: float) -> list[TimeWait]:
        """The records whose 2*MSL is over at ``now``, taken out of the table
        (a wait a retransmitted FIN restarted is kept, due later)."""
        heap, live = self._heap, self.by_flow
        over: list[TimeWait] = []
        while heap and heap[0][0] <= now:
            t, seq, flow = heapq.heappop(heap)
            tw = live.get(flow)
            if tw is None or tw.seq != seq:
                continue
            if tw.deadline > t:  # restarted by a retransmitted FIN
                self._seq += 1
                tw.seq = self._seq
                heapq.heappush(heap, (tw.deadline, self._seq, flow))
                continue
            del live[flow]
            over.append(tw)
        return over


def may_reopen(tw: TimeWait, syn: TcpSegment, now: float) -> bool:
    """A SYN (no ACK, no RST) that may start a new incarnation of the 4-tuple."""
    ts = syn.options.timestamps
    if tw.ts_ok and tw.ts_valid and ts is not None and now - tw.ts_recent_time <= PAWS_IDLE:
        return seq_gt(ts[0], tw.ts_recent)  # RFC 6191 §2
    return seq_gt(syn.seq, tw.rcv_nxt)  # RFC 1122 §4.2.2.13


def answer(tw: TimeWait, seg: TcpSegment, now: float) -> tuple[Outcome, TcpSegment | None]:
    """RFC 9293 §3.10.7.4 in TIME-WAIT for ``seg``: the outcome and the reply, if any."""
    flags = seg.flags
    seq = seg.seq
    payload_len = len(seg.payload)
    # A retransmitted FIN: our last ACK was lost. ACK it, restart 2*MSL.
    if flags & _FIN and not flags & (_RST | _SYN) and seq_add(seq, payload_len + 1) == tw.rcv_nxt:
        tw.deadline = now + tw.linger
        return Outcome.KEEP, tw.ack(now)
    ts = seg.options.timestamps
    # PAWS (RFC 7323 §5.3) before the sequence check; never for a RST.
    if (
        tw.ts_ok
        and tw.ts_valid
        and ts is not None
        and not flags & _RST
        and now - tw.ts_recent_time <= PAWS_IDLE
        and seq_lt(ts[0], tw.ts_recent)
    ):
        return Outcome.KEEP, tw._limited_ack(now)
    seg_len = seg.seg_len
    start = seq_diff(seq, tw.rcv_nxt)
    # First step: Table 6's acceptability test.
    if not in_window(start, seg_len, tw.rcv_wnd):
        if flags & _RST:
            return Outcome.KEEP, None  # RFC 5961 §3.2 check 1
        if seg_len:
            return Outcome.KEEP, tw.ack(now)
        return Outcome.KEEP, tw._limited_ack(now)
    if flags & _RST:
        if seq == tw.rcv_nxt:
            return Outcome.CLOSE, None  # second step: TIME-WAIT -> CLOSED
        return Outcome.KEEP, tw._limited_ack(now)  # RFC 5961 §3.2 challenge ACK
    if flags & _SYN:
        return Outcome.KEEP, tw._limited_ack(now)  # fourth step, RFC 5961 §4.2
    if flags & _FIN:
        # Eighth step: remain in TIME-WAIT, restart the 2*MSL wait.
        tw.deadline = now + tw.linger
        return Outcome.KEEP, tw.ack(now)
    if payload_len:
        # Seventh step: text after the peer's FIN cannot occur; tell it where we are.
        return Outcome.KEEP, tw._limited_ack(now)
    return Outcome.KEEP, None  # a duplicate ACK of our FIN: nothing to do


class TimeWaitSide:
    """The host TCP's side of TIME-WAIT (a base of ``TcpDemux``, whose
    attributes it uses): a connection that enters it leaves a record, a
    segment for a record is answered from it, and its end is reported."""

    __slots__ = ()
    flows: dict[Flow, TcpStream]
    time_wait: TimeWaitTable
    counters: Counter[str]
    observers: list[Observer]
    listeners: dict[int, TcpListener]
    name: str
    _output: Callable[[IPv4Address, IPv4Address, TcpSegment, float], None]

    def touch(self, stream: TcpStream, now: float) -> None:
        raise NotImplementedError

    def _forget(self, stream: TcpStream) -> None:
        raise NotImplementedError

    def _heap_forget(self, stream: TcpStream) -> None:
        raise NotImplementedError

    def _enter_time_wait(self, stream: TcpStream, now: float) -> None:
        """Keep a compact record of ``stream`` for 2*MSL instead of the
        connection itself (synack.stack.timewait)."""
        conn = stream.conn
        linger = 2 * conn.config.msl
        # The connection's only deadline in TIME-WAIT is its end (MUST-13),
        # armed when it entered, at most this batch of segments ago.
        deadline = conn.get_timer()
        if deadline is None or deadline < now:
            deadline = now + linger
        tw = TimeWait(stream, deadline, linger)
        del self.flows[stream.flow]  # (``conns`` reads this table)
        self.time_wait.add(tw)
        self.counters["tcp-timewait-records"] += 1
        self._heap_forget(stream)

    def _time_wait_over(self, tw: TimeWait, seg: TcpSegment | None, now: float) -> None:
        """TIME-WAIT ended (2*MSL, or a RST ``seg``): CLOSED, told to the stream's
        owner if it still holds the stream, else to the observers directly."""
        stream = tw()  # (the record is its weak reference)
        if stream is not None and not stream.gone and stream.conn.state is State.TIME_WAIT:
            # The connection itself makes the move, with its own events.
            if seg is None:
                stream.conn.handle_timer(now)
            else:
                stream.conn.receive_segment(seg, now)
            self.touch(stream, now)
            if stream.conn.state is State.TIME_WAIT:
                # Not over yet (a retransmitted FIN restarted the wait): keep
                # the record, due at the connection's own deadline.
                self._enter_time_wait_again(tw, stream, now)
            return
        # No connection object is left to make the move: the record reports the
        # same event the connection would have (the trace relies on its cause).
        if seg is None:
            change = tev.StateChanged(
                State.TIME_WAIT, State.CLOSED, Cause.TIME_WAIT_EXPIRED, now, tev.Trigger.TIMER
            )
        else:
            ref = tev.SegmentRef(seg.seq, seg.ack, int(seg.flags), len(seg.payload))
            change = tev.StateChanged(
                State.TIME_WAIT, State.CLOSED, Cause.RCV_RST, now, tev.Trigger.RECEIVED, ref
            )
        key = tw.key
        for obs in self.observers:
            obs(TcpStateTrace(self.name, key[:2], key[2:], change))

    def _enter_time_wait_again(self, tw: TimeWait, stream: TcpStream, now: float) -> None:
        """The record ended before its connection's own 2*MSL did: keep waiting
        (never leave a connection in TIME-WAIT with nothing to end it)."""
        deadline = stream.conn.get_timer()
        tw.deadline = deadline if deadline is not None and deadline > now else now + tw.linger
        self.time_wait.add(tw)

    def _time_wait_segment(self, tw: TimeWait, seg: TcpSegment, now: float) -> bool:
        """A segment for a 4-tuple in TIME-WAIT; False when it is a SYN that
        reopens it (the caller gives it to the listener)."""
        if (
            int(seg.flags) & _INT_SYN_ACK_RST == _INT_SYN
            and seg.dst_port in self.listeners
            and may_reopen(tw, seg, now)
        ):
            # RFC 9293 §3.6.1 (MAY-2) with RFC 6191: a new incarnation.
            self.counters["tcp-timewait-reopen"] += 1
            self.time_wait.remove(tw)
            stream = tw()
            if stream is not None:
                self._forget(stream)
            return False
        outcome, reply = answer(tw, seg, now)
        if reply is not None:
            self.counters["tcp-timewait-acks"] += 1
            key = tw.key
            self._output(key[0], key[2], reply, now)
        if outcome is Outcome.CLOSE:
            self.time_wait.remove(tw)
            self._time_wait_over(tw, seg, now)
        return True
