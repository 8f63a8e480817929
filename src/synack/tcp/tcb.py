"""The transmission control block (TCB) of a TCP connection (RFC 9293 §3.3.1).

:class:`Tcb` holds one connection's variables: the send and receive sequence
variables (SND.UNA, SND.NXT, SND.WND, SND.WL1/WL2, ISS, RCV.NXT, RCV.WND as
the advertised edge RCV.ADV, IRS), the buffers, what the handshake agreed,
the output requests, and its parts behind their own interfaces: the
deadlines (:class:`~synack.tcp.timers.Timers`), RFC 7323
(:class:`~synack.tcp.timestamps.Timestamps`) and loss recovery
(:class:`~synack.tcp.recovery.LossRecovery`: RTT, congestion control, the
SACK scoreboard). It offers the read-only views of the public API.

The connection is built in layers on it, each in its own module:
:class:`~synack.tcp.builder.TcpBuilder` (segment building),
:class:`~synack.tcp.sender.TcpSender` (output: data scheduling),
:class:`~synack.tcp.receiver.TcpReceiver` (what arriving segments share: header
prediction, the handshake options, ACK policy),
:class:`~synack.tcp.arrival.SegmentArrival` (the RFC 9293 §3.10.7 steps) and
:class:`~synack.tcp.connection.TcpConnection` (user calls and timeouts). They
share the TCB's attributes directly (slots, one object): this is the hot path,
and an indirection per variable would cost on every segment.

Layer: tcp. Imports synack.errors, synack.wire and the rest of synack.tcp (below builder).
"""

from __future__ import annotations

from collections import deque
from ipaddress import IPv4Address

from synack.errors import LocalProtocolError
from synack.tcp import events as ev
from synack.tcp.buffers import ReceiveBuffer, SendBuffer
from synack.tcp.config import TcpConfig
from synack.tcp.congestion import NewReno
from synack.tcp.fastopen import FastOpen
from synack.tcp.rack import Rack
from synack.tcp.recovery import LossRecovery
from synack.tcp.rto import RttEstimator
from synack.tcp.sack import SackScoreboard
from synack.tcp.seq import SEQ_MASK, seq_add, seq_diff
from synack.tcp.states import (
    CLOSE_WAIT,
    CLOSED,
    ESTABLISHED,
    Cause,
    State,
    Transition,
)
from synack.tcp.stats import TcpStats
from synack.tcp.timers import Timers
from synack.tcp.timestamps import Timestamps
from synack.wire.tcp import TcpSegment

__all__ = [
    "DEFAULT_MSS",
    "OOW_ACK_INTERVAL",
    "SEND_STATES",
    "SYN_STATES",
    "TEXT_STATES",
    "Address",
    "Tcb",
]

#: RFC 9293 §3.7.1 (MUST-15): the send MSS when the peer announces none.
DEFAULT_MSS = 536
#: Replies to unacceptable segments without data: at most one per this long.
OOW_ACK_INTERVAL = 0.5

Address = tuple[IPv4Address, int]

# States in which we may send data / FIN (after the handshake).
SEND_STATES = frozenset(
    {State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK}
)
# The handshake's states: the SYN timeout rules (R2 for a SYN) and hard ICMP errors apply.
SYN_STATES = frozenset({State.SYN_SENT, State.SYN_RECEIVED})
# States that accept segment text (RFC 9293 §3.10.7.4 "seventh, process the segment text").
TEXT_STATES = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})


class Tcb:
    """The TCB of one connection: its variables, parts and read-only views."""

    __slots__ = (
        "_ack_now",
        "_app_closed",
        "_board",
        "_cc",
        "_challenge_count",
        "_challenge_window",
        "_close_deferred",
        "_coalesced",
        "_delack_segments",
        "_dsack",
        "_events",
        "_fin_acked",
        "_fin_queued",
        "_fin_received",
        "_fin_seq",
        "_gso",
        "_keepalive_probes",
        "_last_oow_ack",
        "_lport",
        "_max_snd_wnd",
        "_nagle_end",
        "_opened",
        "_out",
        "_passive",
        "_persist_backoff",
        "_probes_unanswered",
        "_rack",
        "_rcv_adv",
        "_rcv_fin_seq",
        "_rcv_up",
        "_rcv_wscale",
        "_rcv_wscale_offer",
        "_rcvbuf",
        "_recovery",
        "_rport",
        "_rtt",
        "_sack_ok",
        "_sack_trimmed",
        "_seg_in",
        "_send_blocked",
        "_snd_mss",
        "_snd_up",
        "_snd_wscale",
        "_sndbuf",
        "_soft_error",
        "_syn_needed",
        "_syn_resent",
        "_syn_text",
        "_syn_window",
        "_tfo",
        "_timers",
        "_transitions",
        "_ts",
        "_wscale_agreed",
        "config",
        "events",
        "irs",
        "iss",
        "local",
        "rcv_nxt",
        "remote",
        "report_states",
        "send_lowat",
        "snd_max",
        "snd_nxt",
        "snd_una",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
        "state",
        "stats_counters",
    )

    def __init__(self, local: Address, remote: Address, *, config: TcpConfig, iss: int) -> None:
        if not (0 < local[1] < 65536 and 0 < remote[1] < 65536):
            raise LocalProtocolError("ports must be 1..65535")
        if not 0 <= iss <= SEQ_MASK:
            raise LocalProtocolError("iss must be a 32-bit sequence number")
        self.local = local
        self.remote = remote
        self.config = config
        self._lport = local[1]
        self._rport = remote[1]
        # The state: read-only to all but _set_state (receiver.py), the one
        # place a transition is checked against the table and recorded. A
        # plain attribute, not a property: the host reads it at every touch.
        self.state = CLOSED
        # (time, old, new, cause) of each change, made Transition records
        # only when read: a short connection changes state six times.
        self._transitions: list[tuple[float, State, State, Cause]] = []
        # StateChanged events are made while this is truthy: a host passes
        # its observers' list (empty: nobody would read them, and a short
        # connection changes state six times).
        self.report_states: object = True
        self._events: deque[ev.Event] = deque()
        # The same queue, public: a host's loop drains it in next_event's
        # order without a call per event (stack/tcp_demux.py's touch).
        self.events = self._events
        self._out: list[TcpSegment] = []  # control segments queued (RST, SYN-ACK resend ...)
        self._passive = False
        self._opened = False
        self._seg_in: TcpSegment | None = None  # being received: what a state change is due to
        # How many segments of the peer the one being received stands for: 1,
        # or more when the host coalesced a run of them (stack/gro.py).
        self._coalesced = 1
        self.stats_counters = TcpStats()

        # Send sequence variables (RFC 9293 §3.3.1). SND.MAX is the highest
        # sequence number sent so far, kept apart from SND.NXT because a
        # timeout rewinds SND.NXT (go-back-N) and window probes step past it.
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = iss
        self._max_snd_wnd = 0
        self._snd_wscale = 0  # shift applied to the peer's window field
        self._snd_mss = DEFAULT_MSS  # effective send MSS (payload octets)
        # The largest payload a new-data segment may carry because the layer
        # below cuts it into MSS-sized ones (segments_to_send's ``gso``); 0: one MSS.
        self._gso = 0
        self._sndbuf = SendBuffer(config.send_buffer)
        self._snd_up: int | None = None  # SND.UP while urgent data is unacknowledged
        self._fin_queued = False  # user CLOSE/shutdown: FIN follows the queued data
        self._fin_seq: int | None = None  # sequence number our FIN occupies, once sent
        self._fin_acked = False
        self._close_deferred = False  # CLOSE issued in SYN-SENT/SYN-RECEIVED with data
        self._app_closed = False  # close() (not shutdown_write): no more reading
        self._send_blocked = False  # a send() was cut short: report SendSpaceAvailable
        self.send_lowat = 1  # ... once this much is free (TcpSender.set_send_lowat)
        self._nagle_end = iss  # end of the last short segment sent (Nagle/Minshall)
        self._syn_resent = False
        self._probes_unanswered = 0  # zero-window probes since the peer last spoke
        self._last_oow_ack = -OOW_ACK_INTERVAL
        self._soft_error: str | None = None  # the last ICMP soft error (RFC 9293 SHLD-25)

        # Receive sequence variables. RCV.ADV is the right edge we last
        # advertised (RCV.NXT + RCV.WND), which never moves left (SHLD-14).
        self.irs = 0
        self.rcv_nxt = 0
        self._rcv_adv = 0
        self._rcv_wscale_offer = config._wscale_offer  # (rcv_wscale without the call)
        self._rcv_wscale = 0  # our shift once both sides agreed
        self._wscale_agreed = False
        self._syn_window = 0  # the (unscaled) window our SYN carried
        self._rcvbuf = ReceiveBuffer(config.receive_buffer)
        self._rcv_fin_seq: int | None = None  # a FIN seen beyond a gap
        self._rcv_up: int | None = None  # RCV.UP: first non-urgent octet (MUST-62)
        self._fin_received = False
        self._syn_text: tuple[bytes, bool] | None = None  # text (and FIN) on a SYN, queued
        self._tfo: FastOpen | None = None  # RFC 7413 Fast Open, when this open uses it

        # Options agreed on the handshake.
        self._sack_ok = False
        self._ts = Timestamps(iss)  # RFC 7323 §5.4: the ISS doubles as the TSval offset

        # Output requests.
        self._ack_now = False  # send an ACK at the next flush
        self._syn_needed = False  # (re)send our SYN or SYN-ACK
        self._delack_segments = 0  # full-sized segments received and not yet acknowledged
        self._sack_trimmed = False  # a data segment had no room for all SACK blocks (MUST-16)
        self._dsack: tuple[int, int] | None = None  # RFC 2883: a duplicate to report once

        # Loss recovery; its estimator, controller and scoreboard are used
        # on every ACK, hence the shortcuts.
        self._recovery = LossRecovery(config, iss, DEFAULT_MSS, self.stats_counters)
        self._rtt: RttEstimator = self._recovery.rtt
        self._cc: NewReno = self._recovery.cc
        self._board: SackScoreboard = self._recovery.board
        self._rack: Rack | None = None  # RACK-TLP once SACK is agreed (receiver._take_syn)
        self._persist_backoff = 0
        self._keepalive_probes = 0
        self._challenge_window = -1.0
        self._challenge_count = 0

        self._timers = Timers()

    # ------------------------------------------------------------------
    # Read-only views

    def _seg_ref(self) -> ev.SegmentRef | None:
        """The segment being received, as a state change names its trigger."""
        seg = self._seg_in
        if seg is None:
            return None
        return ev.SegmentRef(seg.seq, seg.ack, int(seg.flags), len(seg.payload))

    @property
    def transitions(self) -> list[Transition]:
        return [Transition(*t) for t in self._transitions]

    @property
    def send_space(self) -> int:
        return self._sndbuf.space

    def sends_alone(self, n: int) -> bool:
        """A SEND of ``n`` octets now would leave at once as one segment of its
        own: ESTABLISHED or CLOSE-WAIT, nothing queued (so nothing unsent and
        nothing in flight: RFC 9293 §3.8.6.2.1 rule (2), "SND.NXT = SND.UNA and
        PUSHed and D <= U", holds with or without Nagle), and ``n`` fits one
        segment, the send buffer and the usable window. The asyncio transport holds such a
        write one loop pass (synack.adapters.driver.HostDriver.hold) so that a
        close or more writes of the next pass join it (SHLD-27: the largest
        possible segment)."""
        st = self.state
        return (
            self._sndbuf.length == 0
            and 0 < n <= self._snd_mss
            and n <= self._sndbuf.capacity
            and n <= self.snd_wnd
            and n <= self._cc.cwnd
            and (st is ESTABLISHED or st is CLOSE_WAIT)
        )

    @property
    def unsent(self) -> int:
        """Octets queued and not yet sent (from SND.NXT to the end of the send
        buffer; 0 once our FIN is out after them)."""
        d = seq_diff(self.snd_nxt, self.snd_una)
        n = self._sndbuf.length - d
        return n if n > 0 else 0

    @property
    def ack_due(self) -> bool:
        """An ACK waits for the next flush (after a receive(): its window update)."""
        return self._ack_now

    @property
    def readable_bytes(self) -> int:
        return self._rcvbuf.readable

    @property
    def readable_head(self) -> int:
        """Octets of the first piece held for the reader (ReceiveBuffer.head)."""
        return self._rcvbuf.head

    @property
    def urgent_pending(self) -> int:
        """Octets to read before the end of the urgent data (RCV.UP), 0 if none (MUST-33).

        Counted from the read point, buffered ordinary octets included, as
        RFC 1122 §4.2.2.4 asks ("how much urgent data remains to be read").
        """
        up = self._rcv_up
        if up is None:
            return 0
        nxt = seq_add(self.rcv_nxt, -1) if self._fin_received else self.rcv_nxt
        d = seq_diff(up, seq_add(nxt, -self._rcvbuf.readable))
        return d if d > 0 else 0

    @property
    def soft_error(self) -> str | None:
        """The last ICMP soft error reported for this connection (SHLD-25), if any."""
        return self._soft_error

    @property
    def passive(self) -> bool:
        return self._passive

    def time_wait_view(self) -> tuple[int, int, int, int, bool, int, int, float, bool]:
        """What a TIME-WAIT record needs once the host drops the connection
        (synack.stack.timewait): SND.NXT, RCV.NXT, the receive window as
        advertised (RCV.ADV - RCV.NXT, octets), our window shift, whether
        timestamps were agreed, the TSval offset, TS.Recent, its time and
        whether it is valid (RFC 7323 §4.3, §5.5)."""
        ts = self._ts
        wnd = seq_diff(self._rcv_adv, self.rcv_nxt)
        return (
            self.snd_nxt,
            self.rcv_nxt,
            wnd if wnd > 0 else 0,
            self._rcv_wscale,
            ts.ok,
            ts.offset,
            ts.recent,
            ts.recent_time,
            ts.recent_valid,
        )

    @property
    def effective_mss(self) -> int:
        return self._snd_mss

    @property
    def stats(self) -> TcpStats:
        s = self.stats_counters.copy()
        s.srtt = self._rtt.srtt
        s.rttvar = self._rtt.rttvar
        s.rto = self._rtt.rto
        s.cwnd = self._cc.cwnd
        s.ssthresh = self._cc.ssthresh
        s.snd_wnd = self.snd_wnd
        return s

    @property
    def _sacked(self) -> list[tuple[int, int]]:
        """The SACK scoreboard's ranges (tests look at it)."""
        return self._board.ranges

    def next_event(self) -> ev.Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest pending deadline (absolute), or None. Pure."""
        return self._timers.next_deadline()

    def _drop(self, reason: str) -> None:
        d = self.stats_counters.dropped
        d[reason] = d.get(reason, 0) + 1

    # The receive window every outgoing segment advertises (the sender's
    # segments and the receiver's ACK policy both ask).

    def _advertise(self) -> int:
        """The window field for an outgoing segment; moves RCV.ADV right only (SHLD-14)."""
        rcv_nxt = self.rcv_nxt
        adv = self._rcv_adv
        # seq_diff(RCV.ADV, RCV.NXT), inline (per segment sent).
        current = ((adv - rcv_nxt + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        if current < 0:
            current = 0
        rcvbuf = self._rcvbuf
        free = rcvbuf.capacity - rcvbuf.readable  # rcvbuf.free, inline (per segment)
        shift = self._rcv_wscale
        # Receiver SWS avoidance (§3.8.6.2.2 MUST-39): keep the right edge
        # fixed until the window can open by min(Fr * RCV.BUFF, Eff.snd.MSS).
        half = rcvbuf.capacity >> 1
        mss = self._snd_mss
        if free - current >= (half if half < mss else mss):
            wnd = free
        else:
            wnd = current
        field = wnd >> shift
        if field > 65535:
            field = 65535
        # Rounding down by the scale may show the peer a slightly smaller
        # window than RCV.ADV (RFC 7323 §2.4 accepts this); we keep
        # accepting up to RCV.ADV, so our edge never moves left.
        new_edge = (rcv_nxt + (field << shift)) & 0xFFFFFFFF  # seq_add, inline (per segment)
        # seq_gt(new_edge, RCV.ADV), inline.
        if new_edge != adv and (adv - new_edge) & 0xFFFFFFFF >= 0x80000000:
            self._rcv_adv = new_edge
        return field

    def _window_update_worthwhile(self) -> bool:
        """Whether a read opened the window enough for an ACK of its own.

        The right edge may move by min(RCV.BUFF/2, MSS) (§3.8.6.2.2) and the next ACK
        carries that; an update of its own reopens a (nearly) closed window, one that
        at least doubles from no more than half the buffer (BSD, Linux), not while the
        peer holds half our SYN's unscaled window (RFC 7323 §2.2: a larger buffer always
        "opens" it; the reply carries it). A steady reader does not double the ACKs."""
        # max(seq_diff(RCV.ADV, RCV.NXT), 0), inline: once per read.
        current = ((self._rcv_adv - self.rcv_nxt + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        if current < 0:
            current = 0
        rcvbuf = self._rcvbuf
        free = rcvbuf.capacity - rcvbuf.readable  # rcvbuf.free, inline (per segment)
        half = rcvbuf.capacity >> 1
        if free - current < (half if half < self._snd_mss else self._snd_mss):
            return False
        syn = self._syn_window
        if current >= syn >> 1 and self._rcv_adv == (self.irs + 1 + syn) & 0xFFFFFFFF:
            return False
        if current > self._rcvbuf.capacity >> 1 or free < 2 * current:
            return False
        # An update the window field cannot show (it is at 65535 already
        # without scaling) would be a pure ACK with the same ACK number and
        # window: a duplicate ACK to the peer (RFC 5681 §2), not an update
        # (RFC 9293 §3.8.6.2.2). The next ACK carries the wider window.
        shift = self._rcv_wscale
        return min(free >> shift, 65535) > min(current >> shift, 65535)

    def _ts_rtt(self, ts: tuple[int, int] | None, now: float) -> float | None:
        """The RTT sample an echoed TSecr gives (RFC 7323 §4.1), if any."""
        if self._ts.ok and ts is not None and ts[1] != 0:
            return self._ts.rtt(ts[1], now)
        return None
