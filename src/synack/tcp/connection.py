"""A sans-IO RFC 9293 TCP connection.

Segments and ``now`` go in; events, segments and the next deadline come out.
Nothing here reads a clock, draws a random number or touches a socket.

API (stable; the host stack builds on it)::

    conn = TcpConnection(local, remote, config=TcpConfig(), iss=isn(local, remote, now))
    conn.connect(now)                           # active OPEN: CLOSED -> SYN-SENT
    # passive OPEN: the host's listener hands a received SYN to
    conn = TcpConnection.accept_syn(syn, local, remote, config, iss, now)
                                                # CLOSED -> LISTEN -> SYN-RECEIVED
    conn.receive_segment(seg, now)              # a segment for this 4-tuple arrived
    for seg in conn.segments_to_send(now): ...  # ports filled in; the caller adds IP
    while (ev := conn.next_event()) is not None: ...
    deadline = conn.get_timer()                 # absolute time or None; pure query
    conn.handle_timer(now)                      # call at (or after) the deadline

    conn.send(data, now) -> int                 # bytes accepted (bounded by send space)
    conn.receive(max_bytes) -> bytes            # b"" when nothing is readable
    conn.shutdown_write(now)                    # FIN after queued data (half-close)
    conn.close(now)                             # shutdown_write + no more reading
    conn.abort(now)                             # RST
    conn.state, conn.send_space, conn.readable_bytes, conn.stats, conn.transitions

Events (synack.tcp.events, in order): StateChanged for every transition,
Connected, DataAvailable (per segment that made bytes readable), EndOfStream
(peer FIN, after the bytes before it), SendSpaceAvailable (after a send() was
cut short), UrgentData (the peer's urgent pointer moved ahead of what was
read; see ``urgent_pending``), DeliveryProblem (R1 reached), ConnectionReset,
ConnectionRefused, TimedOut("connect" | "retransmit" | "keepalive"), and Closed last.

Deliberate choices: a CLOSE before the handshake completes is queued until
ESTABLISHED when data is queued (RFC 9293 §3.10.4 allows it in SYN-RECEIVED);
a duplicate SYN in SYN-RECEIVED is answered with the SYN,ACK again; segments
that are only an ACK carry SEQ = SND.MAX (BSD does the same) so that a
go-back-N rewind of SND.NXT never makes them look old; data in a SYN is not
queued (the peer resends it).

Loss recovery: with SACK agreed on the handshake, RFC 6675 (scoreboard,
IsLost, pipe, NextSeg); otherwise NewReno (RFC 6582). Beyond RFC 6675: the
rescue retransmission (NextSeg rule 4) is skipped when its octet was resent
already, and a peer that agreed to SACK but sends duplicate ACKs without
blocks still triggers fast retransmit (RFC 5681 §2 duplicates), after which
only the cumulative ACK and the RTO guide recovery.

The adapter loop (house style item 2): feed segments / user calls, drain
``next_event()``, flush ``segments_to_send(now)``, re-arm the timer from
``get_timer()``. Output is produced only by ``segments_to_send``, so ACKs for
a burst of received segments are aggregated (RFC 9293 §3.10.7.4 MUST-58/59).

Helpers for segments that reach no connection: :func:`reply_when_closed`
(RFC 9293 §3.10.7.1, the reset a CLOSED port sends) and
:func:`reply_when_listening` (§3.10.7.2, what a LISTEN socket sends to a
non-SYN). A passive child whose SYN-RECEIVED is reset goes back to LISTEN and
reports :class:`~synack.tcp.events.Closed`: the listener itself stays with the
host, so the child is simply forgotten.

Peer misbehaviour never raises: bad segments are dropped and counted in
``stats.dropped`` by reason. Caller misuse raises LocalProtocolError.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from synack.errors import LocalProtocolError
from synack.tcp import events as ev
from synack.tcp.buffers import ReceiveBuffer, SendBuffer
from synack.tcp.config import TcpConfig
from synack.tcp.congestion import AckAction, NewReno
from synack.tcp.rto import RttEstimator
from synack.tcp.seq import SEQ_MASK, seq_diff, seq_ge, seq_gt, seq_le, seq_lt
from synack.tcp.states import SYNCHRONIZED, Cause, State, Transition, is_transition
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment

__all__ = [
    "TcpConnection",
    "TcpStats",
    "reply_when_closed",
    "reply_when_listening",
]

_ACK = TcpFlags.ACK
_SYN = TcpFlags.SYN
_FIN = TcpFlags.FIN
_RST = TcpFlags.RST
_PSH = TcpFlags.PSH
_ACK_PSH = TcpFlags.ACK | TcpFlags.PSH
_ACK_FIN = TcpFlags.ACK | TcpFlags.FIN
_ACK_PSH_FIN = TcpFlags.ACK | TcpFlags.PSH | TcpFlags.FIN
_RST_ACK = TcpFlags.RST | TcpFlags.ACK
# The same bits as plain ints: enum.Flag arithmetic is slow on the hot path.
F_FIN, F_SYN, F_RST, F_PSH, F_ACK, F_URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_NO_OPTIONS = TcpOptions()

#: RFC 9293 §3.7.1 (MUST-15): the send MSS when the peer announces none.
DEFAULT_MSS = 536
#: RFC 7323 §5.5: TS.Recent is invalid after 24 days of idleness.
PAWS_IDLE = 24 * 24 * 3600.0
#: Replies to unacceptable segments without data: at most one per this long.
OOW_ACK_INTERVAL = 0.5
#: RFC 7323 §3.2: a TSopt costs 12 bytes of every segment (10 + 2 NOPs).
TS_OPTION_SPACE = 12

Address = tuple[IPv4Address, int]

# States in which we may send data / FIN (after the handshake).
_SEND_STATES = frozenset(
    {State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK}
)
# States that accept segment text (RFC 9293 §3.10.7.4 "sixth, process the segment text").
_TEXT_STATES = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})
# Header prediction (see _fast_path): pure ACKs while our FIN is unsent, in
# the states that can send; in-order data in the states that accept text.
_FAST_ACK_STATES = frozenset(
    {State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.LAST_ACK}
)
_FAST_STATES = _FAST_ACK_STATES | _TEXT_STATES
_RESET_STATES = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT})


@dataclass(slots=True)
class TcpStats:
    """Counters and estimates of one connection (a snapshot when read via ``stats``)."""

    segments_in: int = 0
    segments_out: int = 0
    bytes_in: int = 0  # payload octets accepted in order
    bytes_out: int = 0  # payload octets sent, retransmissions included
    retransmissions: int = 0  # segments resent (timeouts, fast retransmit, go-back-N)
    fast_retransmits: int = 0
    timeouts: int = 0  # retransmission timer expirations
    dupacks_in: int = 0
    challenge_acks: int = 0
    window_probes: int = 0
    keepalive_probes: int = 0
    rsts_out: int = 0
    srtt: float | None = None
    rttvar: float | None = None
    rto: float = 0.0
    cwnd: int = 0
    ssthresh: int = 0
    snd_wnd: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def copy(self) -> TcpStats:
        return TcpStats(
            self.segments_in,
            self.segments_out,
            self.bytes_in,
            self.bytes_out,
            self.retransmissions,
            self.fast_retransmits,
            self.timeouts,
            self.dupacks_in,
            self.challenge_acks,
            self.window_probes,
            self.keepalive_probes,
            self.rsts_out,
            self.srtt,
            self.rttvar,
            self.rto,
            self.cwnd,
            self.ssthresh,
            self.snd_wnd,
            dict(self.dropped),
        )


def reply_when_closed(seg: TcpSegment) -> TcpSegment | None:
    """The reset a CLOSED connection (no TCB) answers ``seg`` with (RFC 9293 §3.10.7.1).

    An incoming RST is never answered. Ports are swapped: the reply goes back.
    """
    if seg.flags & _RST:
        return None
    if seg.flags & _ACK:
        return TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, _RST, 0)
    return TcpSegment(
        seg.dst_port, seg.src_port, 0, (seg.seq + seg.seg_len) & SEQ_MASK, _RST | _ACK, 0
    )


def reply_when_listening(seg: TcpSegment) -> TcpSegment | None:
    """What a LISTEN socket answers a segment with, other than a SYN (RFC 9293 §3.10.7.2).

    A RST is ignored; any ACK is bad in LISTEN and gets <SEQ=SEG.ACK><CTL=RST>;
    a SYN (without ACK/RST) is for :meth:`TcpConnection.accept_syn`; anything
    else is dropped (None).
    """
    if seg.flags & _RST:
        return None
    if seg.flags & _ACK:
        return TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, _RST, 0)
    return None


class TcpConnection:
    """One TCP connection's TCB and state machine (RFC 9293 §3.3.1, §3.10)."""

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
        self._state = State.CLOSED
        self._transitions: list[Transition] = []
        self._events: deque[ev.Event] = deque()
        self._out: list[TcpSegment] = []  # control segments queued (RST, SYN-ACK resend ...)
        self._passive = False
        self._opened = False
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
        self._sndbuf = SendBuffer(config.send_buffer)
        self._snd_up: int | None = None  # SND.UP while urgent data is unacknowledged
        self._fin_queued = False  # user CLOSE/shutdown: FIN follows the queued data
        self._fin_seq: int | None = None  # sequence number our FIN occupies, once sent
        self._fin_acked = False
        self._close_deferred = False  # CLOSE issued in SYN-SENT/SYN-RECEIVED with data
        self._app_closed = False  # close() (not shutdown_write): no more reading
        self._send_blocked = False  # a send() was cut short: report SendSpaceAvailable
        self._nagle_end = iss  # end of the last short segment sent (Nagle/Minshall)
        # SACK scoreboard (RFC 6675 §3): merged [left, right) sequence ranges
        # the peer SACKed, ascending, all inside [SND.UNA, SND.MAX].
        self._sacked: list[tuple[int, int]] = []
        # RFC 6675 §2 HighRxt (kept one past the highest octet retransmitted
        # in this recovery) and RescueRxt (None: undefined).
        self._high_rxt = iss
        self._rescue_rxt: int | None = None
        self._sack_first = False  # RFC 6675 §5 step 4.3 still to do
        self._syn_resent = False
        self._probes_unanswered = 0  # zero-window probes since the peer last spoke
        self._last_oow_ack = -OOW_ACK_INTERVAL

        # Receive sequence variables. RCV.ADV is the right edge we last
        # advertised (RCV.NXT + RCV.WND), which never moves left (SHLD-14).
        self.irs = 0
        self.rcv_nxt = 0
        self._rcv_adv = 0
        self._rcv_wscale_offer = config.rcv_wscale
        self._rcv_wscale = 0  # our shift once both sides agreed
        self._wscale_agreed = False
        self._syn_window = 0  # the (unscaled) window our SYN carried
        self._rcvbuf = ReceiveBuffer(config.receive_buffer)
        self._rcv_fin_seq: int | None = None  # a FIN seen beyond a gap
        self._rcv_up: int | None = None  # RCV.UP: first non-urgent octet (MUST-62)
        self._fin_received = False

        # Options agreed on the handshake.
        self._ts_ok = False
        self._sack_ok = False
        self._ts_offset = iss  # RFC 7323 §5.4: a per-connection random offset
        self._ts_recent = 0
        self._ts_recent_time = 0.0
        self._ts_recent_valid = False
        self._last_ack_sent = 0
        self._ts_opts = TcpOptions(timestamps=(0, 0))

        # Output requests.
        self._ack_now = False  # send an ACK at the next flush
        self._syn_needed = False  # (re)send our SYN or SYN-ACK
        self._rexmit_one = False  # fast retransmit / partial ACK: resend SND.UNA's segment
        self._delack_segments = 0  # full-sized segments received and not yet acknowledged
        self._sack_trimmed = False  # a data segment had no room for all SACK blocks (MUST-16)
        self._last_seg_time = 0.0

        # Loss recovery.
        self._rtt = RttEstimator(
            initial=config.initial_rto, min_rto=config.min_rto, max_rto=config.max_rto
        )
        self._cc = NewReno(DEFAULT_MSS, iss)
        self._rtt_seq: int | None = None  # timed segment's end (no timestamps: Karn)
        self._rtt_time = 0.0
        self._retries = 0  # consecutive timeouts of the same segment (R1/R2)
        self._first_rexmit_time: float | None = None
        self._persist_backoff = 0
        self._keepalive_probes = 0
        self._challenge_window = -1.0
        self._challenge_count = 0

        # Timers: absolute deadlines or None.
        self._t_rexmit: float | None = None
        self._t_persist: float | None = None
        self._t_delack: float | None = None
        self._t_keepalive: float | None = None
        self._t_close: float | None = None  # TIME-WAIT 2MSL, FIN-WAIT-2 orphan timeout
        self._t_connect: float | None = None
        self._last_rcv = 0.0

    # ------------------------------------------------------------------
    # Opening

    def connect(self, now: float) -> None:
        """Active OPEN (RFC 9293 §3.10.1): send SYN, enter SYN-SENT."""
        if self._state is not State.CLOSED or self._opened:
            raise LocalProtocolError(
                f"connect() needs a fresh CLOSED connection, not {self._state}"
            )
        self._opened = True
        self.snd_nxt = self.snd_max = self.iss
        self._set_state(State.SYN_SENT, Cause.ACTIVE_OPEN, now)
        self._syn_needed = True
        self._t_connect = now + self.config.connect_timeout
        self._last_rcv = now

    @classmethod
    def accept_syn(
        cls,
        syn: TcpSegment,
        local: Address,
        remote: Address,
        config: TcpConfig,
        iss: int,
        now: float,
    ) -> TcpConnection:
        """Passive OPEN for one received SYN: CLOSED -> LISTEN -> SYN-RECEIVED.

        The host's listener calls this for a segment with SYN and neither ACK
        nor RST (RFC 9293 §3.10.7.2 "third, check for a SYN"); other
        segments to a listener get :func:`reply_when_listening`.
        """
        if (syn.flags & (_SYN | _ACK | _RST)) != _SYN:
            raise LocalProtocolError("accept_syn() needs a SYN without ACK or RST")
        if syn.dst_port != local[1] or syn.src_port != remote[1]:
            raise LocalProtocolError("the SYN's ports do not match local/remote")
        conn = cls(local, remote, config=config, iss=iss)
        conn._opened = True
        conn._passive = True
        conn._set_state(State.LISTEN, Cause.PASSIVE_OPEN, now)
        conn.stats_counters.segments_in += 1
        conn._last_rcv = now
        conn._take_syn(syn, now)
        conn._set_state(State.SYN_RECEIVED, Cause.RCV_SYN, now)
        conn._syn_needed = True
        conn._t_connect = now + config.connect_timeout
        return conn

    # ------------------------------------------------------------------
    # Public properties

    @property
    def state(self) -> State:
        return self._state

    @property
    def transitions(self) -> list[Transition]:
        return list(self._transitions)

    @property
    def send_space(self) -> int:
        return self._sndbuf.space

    @property
    def readable_bytes(self) -> int:
        return self._rcvbuf.readable

    @property
    def urgent_pending(self) -> int:
        """Octets to read before the end of the urgent data (RCV.UP), 0 if none (MUST-33).

        Counted from the read point, buffered ordinary octets included, as
        RFC 1122 §4.2.2.4 asks ("how much urgent data remains to be read").
        """
        up = self._rcv_up
        if up is None:
            return 0
        nxt = (self.rcv_nxt - 1) & SEQ_MASK if self._fin_received else self.rcv_nxt
        d = seq_diff(up, (nxt - self._rcvbuf.readable) & SEQ_MASK)
        return d if d > 0 else 0

    @property
    def passive(self) -> bool:
        return self._passive

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

    # ------------------------------------------------------------------
    # Application side

    def send(
        self, data: bytes | bytearray | memoryview, now: float, *, urgent: bool = False
    ) -> int:
        """Queue data (RFC 9293 §3.10.2 SEND); returns how many bytes fit the send buffer.

        ``urgent=True`` marks everything queued so far as urgent (SND.UP moves
        to the end of the queue): the segments sent until it is acknowledged
        carry URG and a pointer to the first non-urgent octet (MUST-30,
        MUST-62). It needs a synchronized connection.
        """
        st = self._state
        if st is State.CLOSED or st is State.LISTEN:
            raise LocalProtocolError(f"send() on a connection in {st}")
        if self._fin_queued or self._close_deferred:
            raise LocalProtocolError("send() after shutdown_write()/close(): connection closing")
        if st not in (State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT):
            raise LocalProtocolError(f"send() on a connection in {st}")
        if urgent and st not in (State.ESTABLISHED, State.CLOSE_WAIT):
            raise LocalProtocolError(f"urgent send() needs an established connection, not {st}")
        n = self._sndbuf.append(data)
        if n < len(data):
            self._send_blocked = True
        if urgent and n:
            # §3.10.2: SND.UP <- the octet after the urgent data (MUST-62); a
            # later urgent send extends the run (MUST-31).
            self._snd_up = (self.snd_una + len(self._sndbuf)) & SEQ_MASK
        return n

    def receive(self, max_bytes: int = 1 << 30) -> bytes:
        """Take up to ``max_bytes`` readable bytes (b"" when none).

        Reading frees receive space; when the window can open by enough to
        be worth it (receiver SWS avoidance, RFC 9293 §3.8.6.2.2 MUST-39),
        the next flush carries a window update.
        """
        if max_bytes < 0:
            raise LocalProtocolError("max_bytes must be >= 0")
        if self._app_closed:
            raise LocalProtocolError("receive() after close()")
        data = self._rcvbuf.read(max_bytes)
        if (
            data
            and self._state in _TEXT_STATES
            and not self._fin_received
            and self._window_update_worthwhile()
        ):
            self._ack_now = True
        return data

    def shutdown_write(self, now: float) -> None:
        """CLOSE in the RFC 9293 §3.10.4 sense: FIN after all queued data; keep reading."""
        st = self._state
        if self._fin_queued or self._close_deferred:
            return
        if st is State.SYN_SENT or st is State.SYN_RECEIVED:
            if len(self._sndbuf) == 0 and st is State.SYN_SENT:
                # §3.10.4 SYN-SENT: delete the TCB.
                self._enter_closed(Cause.CLOSE, now)
                return
            # §3.10.4 SYN-RECEIVED: queue the CLOSE until ESTABLISHED (we
            # do the same in SYN-SENT when data is queued, so that
            # connect + send + close delivers the data, as BSD sockets do).
            self._close_deferred = True
            return
        if st is State.ESTABLISHED:
            self._fin_queued = True
            self._set_state(State.FIN_WAIT_1, Cause.CLOSE, now)
        elif st is State.CLOSE_WAIT:
            self._fin_queued = True
            self._set_state(State.LAST_ACK, Cause.CLOSE, now)
        elif st in (State.CLOSED, State.LISTEN):
            raise LocalProtocolError(f"shutdown_write() on a connection in {st}")
        # FIN-WAIT-*, CLOSING, LAST-ACK, TIME-WAIT: already closing (§3.10.4
        # "error: connection closing"); harmless to repeat.

    def close(self, now: float) -> None:
        """Full close: shutdown_write() and stop reading.

        Unread received data at close, or data arriving afterwards, is
        answered with RST (RFC 9293 §3.6 SHLD-3).
        """
        st = self._state
        if st is State.CLOSED or st is State.LISTEN:
            return
        if self._rcvbuf.readable and st in _RESET_STATES:
            self._app_closed = True
            self._send_reset(now)
            self._enter_closed(Cause.ABORT, now)
            return
        self._app_closed = True
        self.shutdown_write(now)

    def abort(self, now: float) -> None:
        """ABORT (RFC 9293 §3.10.5): RST in synchronized states, then CLOSED."""
        st = self._state
        if st is State.CLOSED or st is State.LISTEN:
            return
        if st in (
            State.SYN_RECEIVED,
            State.ESTABLISHED,
            State.FIN_WAIT_1,
            State.FIN_WAIT_2,
            State.CLOSE_WAIT,
        ):
            self._send_reset(now)
        self._sndbuf.clear()
        self._enter_closed(Cause.ABORT, now)

    def next_event(self) -> ev.Event | None:
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------------
    # Timers

    def get_timer(self) -> float | None:
        """The earliest pending deadline (absolute), or None. Pure."""
        # Unrolled: the adapters ask after every flush.
        best = self._t_rexmit
        t = self._t_persist
        if t is not None and (best is None or t < best):
            best = t
        t = self._t_delack
        if t is not None and (best is None or t < best):
            best = t
        t = self._t_keepalive
        if t is not None and (best is None or t < best):
            best = t
        t = self._t_close
        if t is not None and (best is None or t < best):
            best = t
        t = self._t_connect
        if t is not None and (best is None or t < best):
            best = t
        return best

    def handle_timer(self, now: float) -> None:
        """Handle every deadline that is due at ``now``."""
        if self._t_connect is not None and now >= self._t_connect:
            self._t_connect = None
            if self._state in (State.SYN_SENT, State.SYN_RECEIVED):
                self._give_up("connect", now)
                return
        if self._t_close is not None and now >= self._t_close:
            self._t_close = None
            if self._state is State.TIME_WAIT:
                self._enter_closed(Cause.TIME_WAIT_EXPIRED, now)
                return
            if self._state is State.FIN_WAIT_2:
                self._enter_closed(Cause.TIMEOUT, now)
                return
        if self._t_rexmit is not None and now >= self._t_rexmit:
            self._t_rexmit = None
            self._on_rexmit_timeout(now)
            if self._state is State.CLOSED:
                return
        if self._t_persist is not None and now >= self._t_persist:
            self._t_persist = None
            self._on_persist_timeout(now)
        if self._t_delack is not None and now >= self._t_delack:
            self._t_delack = None
            self._ack_now = True
        if self._t_keepalive is not None and now >= self._t_keepalive:
            self._t_keepalive = None
            self._on_keepalive_timeout(now)

    def _on_rexmit_timeout(self, now: float) -> None:
        st = self._state
        cfg = self.config
        self.stats_counters.timeouts += 1
        self._retries += 1
        if self._first_rexmit_time is None:
            self._first_rexmit_time = now
        if st is State.SYN_SENT or st is State.SYN_RECEIVED:
            if self._retries > cfg.syn_retries:
                self._give_up("connect", now)
                return
            if self._retries == cfg.r1_retries:
                # MUST-22: SYNs are retransmitted "in the general way ...
                # for data retransmissions, including notification of the
                # application layer": the R1 warning (SHLD-9) for SYNs too.
                self._events.append(ev.DeliveryProblem(self._retries))
            self._rtt.backoff()
            self._syn_needed = True
            self._syn_resent = True
            self._rtt_seq = None
            return
        if self._retries > cfg.r2_retries or (
            cfg.user_timeout is not None and now - self._first_rexmit_time >= cfg.user_timeout
        ):
            # RFC 9293 §3.8.3 (c): R2 reached, close the connection.
            self._give_up("retransmit", now)
            return
        if self._retries == cfg.r1_retries:
            # R1 reached: tell the user (SHLD-9); there is no IP layer here
            # to pass "negative advice" to, the host may act on the event.
            self._events.append(ev.DeliveryProblem(self._retries))
        flight = seq_diff(self.snd_max, self.snd_una)
        self._cc.on_timeout(flight, self.snd_max, first=self._retries == 1)
        # RFC 6298 §5.5-5.6: back off, retransmit the earliest unacknowledged
        # segment. We rewind SND.NXT (go-back-N): what followed is resent as
        # the window reopens, which slow start paces.
        self._rtt.backoff()
        self._rtt_seq = None  # Karn (MUST-18): no sample from a resent segment
        # RFC 2018 §8: after a timeout forget what was SACKed (the receiver
        # may have reneged); fresh SACKs arriving from now on count again.
        self._sacked = []
        self.snd_nxt = self.snd_una
        self._rexmit_one = False

    def _on_persist_timeout(self, now: float) -> None:
        if self._state not in _SEND_STATES:
            return
        self._persist_backoff += 1
        if self.snd_wnd == 0:
            if self._probes_unanswered >= self.config.r2_retries:
                # MUST-37 keeps the connection open only while probes are
                # acknowledged; a peer that answers none of R2 probes is gone.
                self._give_up("retransmit", now)
                return
            self._probes_unanswered += 1
        off = seq_diff(self.snd_nxt, self.snd_una)
        unsent = len(self._sndbuf) - off
        if unsent <= 0:
            return
        if self.snd_wnd == 0:
            # RFC 9293 §3.8.6.1: probe a zero window with one octet of new
            # data (MUST-36). The octet is not counted in SND.NXT, so the
            # retransmission timer (and R2) stays out of it: the connection
            # lives as long as the probes are acknowledged (MUST-37).
            payload = self._sndbuf.peek(off, 1)
            end = (self.snd_nxt + 1) & SEQ_MASK
            if seq_gt(end, self.snd_max):
                self.snd_max = end
            self.stats_counters.window_probes += 1
            self._out.append(self._make(self.snd_nxt, _ACK, payload, now))
        else:
            # RFC 9293 §3.8.6.2.1 (4): the SWS override timeout fires; send
            # what the window allows even though it is small.
            usable = self.snd_wnd - off
            n = min(unsent, usable, self._snd_mss)
            if n > 0:
                self._emit_data(off, n, now, force_psh=True)
        self._arm_persist(now)

    def _on_keepalive_timeout(self, now: float) -> None:
        cfg = self.config
        if not cfg.keepalive or self._state not in (State.ESTABLISHED, State.CLOSE_WAIT):
            return
        if self._keepalive_probes >= cfg.keepalive_count:
            # RFC 1122 §4.2.3.6: only after `count` unanswered probes (MUST-29:
            # never a single one) is the peer declared dead.
            self._give_up("keepalive", now)
            return
        if self.snd_max != self.snd_una or len(self._sndbuf):
            # MUST-26: only when no sent data is outstanding; otherwise the
            # retransmission timer is watching the peer already.
            self._t_keepalive = now + cfg.keepalive_idle
            return
        # SEG.SEQ = SND.NXT-1, no data (RFC 9293 §3.8.4 SHLD-12): outside the
        # peer's window, so it must answer with an ACK.
        self._keepalive_probes += 1
        self.stats_counters.keepalive_probes += 1
        self._out.append(self._make((self.snd_max - 1) & SEQ_MASK, _ACK, b"", now))
        self._t_keepalive = now + cfg.keepalive_interval

    def _give_up(self, reason: str, now: float) -> None:
        st = self._state
        if st in (
            State.SYN_RECEIVED,
            State.ESTABLISHED,
            State.FIN_WAIT_1,
            State.CLOSE_WAIT,
            State.CLOSING,
            State.LAST_ACK,
        ):
            # Tell the peer, in case it is still there (as BSD stacks do).
            self._send_reset(now)
        self._events.append(ev.TimedOut(reason))
        self._enter_closed(Cause.TIMEOUT, now)

    # ------------------------------------------------------------------
    # Output

    def segments_to_send(self, now: float) -> list[TcpSegment]:
        """Everything the connection wants on the wire now, in order."""
        out = self._out
        self._out = []
        st = self._state
        if self._syn_needed:
            self._syn_needed = False
            if st is State.SYN_SENT or st is State.SYN_RECEIVED:
                out.append(self._make_syn(now, ack=st is State.SYN_RECEIVED))
                if self._t_rexmit is None:
                    self._t_rexmit = now + self._rtt.rto
                self._ack_now = False
        if st in _SEND_STATES:
            n_before = len(out)
            self._output_data(now, out)
            if len(out) > n_before and not self._sack_trimmed:
                # The ACK owed rides on the data, unless the data had no
                # room for its SACK blocks (MUST-16, see _make): then a
                # pure ACK carries them.
                self._ack_now = False
        self._sack_trimmed = False
        if self._ack_now:
            self._ack_now = False
            if st in SYNCHRONIZED or st is State.SYN_RECEIVED:
                # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, where the RFC's
                # SND.NXT is our SND.MAX: after a timeout rewinds SND.NXT
                # (go-back-N) an ACK with the rewound number would look old
                # to the peer, which would drop it unread and answer with an
                # ACK of its own, forever.
                out.append(self._make(self.snd_max, _ACK, b"", now))
        if out:
            self.stats_counters.segments_out += len(out)
        return out

    def _output_data(self, now: float, out: list[TcpSegment]) -> None:
        sndbuf = self._sndbuf
        cc = self._cc
        if cc.sack_recovery and cc.in_recovery:
            self._sack_recovery_output(now, out)
        elif (
            not self._rexmit_one
            and not self._fin_queued
            and len(sndbuf) == ((self.snd_nxt - self.snd_una) & SEQ_MASK)
            and self._t_persist is None
        ):
            return  # nothing unsent: the common case of the receiving side
        mss = self._snd_mss
        if self._rexmit_one:
            # Fast retransmit / NewReno partial ACK: resend SND.UNA's segment
            # regardless of cwnd (RFC 5681 §3.2 step 3, RFC 6582 §3.2 step 3).
            self._rexmit_one = False
            n = min(len(sndbuf), mss)
            if n > 0:
                fin = self._fin_seq is not None and self._fin_seq == (self.snd_una + n) & SEQ_MASK
                out.append(self._data_segment(self.snd_una, 0, n, now, fin=fin, psh=fin))
                self.stats_counters.retransmissions += 1
                self.stats_counters.bytes_out += n
                self._rtt_seq = None
            elif self._fin_seq is not None and not self._fin_acked:
                out.append(self._make(self._fin_seq, _ACK_FIN, b"", now))
                self.stats_counters.retransmissions += 1
        buffered = len(sndbuf)
        cwnd = cc.cwnd
        if cc.in_recovery and cc.sack_recovery:
            cwnd = 0  # RFC 6675 (C) sent what pipe allowed; only a FIN may follow
        if 0 < cc.dupacks < 3 and not cc.in_recovery and self.snd_nxt == self.snd_max:
            # Limited transmit (RFC 3042): the first two duplicate ACKs may
            # each release one new segment, up to cwnd + 2*SMSS outstanding.
            cwnd += cc.dupacks * mss
        while True:
            off = seq_diff(self.snd_nxt, self.snd_una)
            unsent = buffered - off
            if unsent <= 0:
                break
            window = self.snd_wnd if self.snd_wnd < cwnd else cwnd
            usable = window - off
            n = unsent if unsent < mss else mss
            if usable < n:
                n = usable
            if n <= 0:
                break
            resending = self._sacked and seq_lt(self.snd_nxt, self.snd_max)
            if resending:
                # Going back after a timeout: skip what the receiver SACKed
                # and stop each resent segment at the next SACKed block.
                skip_to, room = self._sack_skip(self.snd_nxt)
                if skip_to is not None:
                    self.snd_nxt = skip_to
                    continue
                if room is not None and room < n:
                    n = room
            elif n < mss:
                # RFC 9293 §3.8.6.2.1 sender SWS avoidance (MUST-38) with
                # Nagle (§3.7.4, RFC 896) unless nodelay: a short segment
                # only if it empties the queue and nothing is in flight (or
                # nodelay), or if it is at least half the largest window.
                pushed_all = n == unsent and (
                    off == 0
                    or self.config.nodelay
                    # Minshall's refinement of Nagle: hold a short segment
                    # only while an earlier short one is unacknowledged, so
                    # the tail of a bulk write does not wait for a delayed ACK.
                    or not seq_gt(self._nagle_end, self.snd_una)
                )
                half_window = off == 0 and n >= self._max_snd_wnd // 2
                if not (pushed_all or half_window):
                    break
            self._emit_data(off, n, now, force_psh=False, out=out)
        # The FIN goes once all data has been sent (§3.10.4), with the last
        # data segment when it fits (see _emit_data) or on its own.
        if (
            self._fin_queued
            and not self._fin_acked
            and seq_diff(self.snd_nxt, self.snd_una) == len(sndbuf)
            and (self._fin_seq is None or self.snd_nxt == self._fin_seq)
        ):
            fin_seq = self.snd_nxt
            out.append(self._make(fin_seq, _ACK_FIN, b"", now))
            if self._fin_seq is None:
                self._fin_seq = fin_seq
            else:
                self.stats_counters.retransmissions += 1
            self.snd_nxt = (fin_seq + 1) & SEQ_MASK
            if seq_gt(self.snd_nxt, self.snd_max):
                self.snd_max = self.snd_nxt
            if self._t_rexmit is None:
                self._t_rexmit = now + self._rtt.rto
        self._arm_persist(now)

    def _emit_data(
        self,
        off: int,
        n: int,
        now: float,
        *,
        force_psh: bool,
        out: list[TcpSegment] | None = None,
    ) -> None:
        seq = self.snd_nxt
        unsent_after = len(self._sndbuf) - off - n
        # The FIN rides on the last data segment when the user has closed.
        fin = (
            self._fin_queued
            and unsent_after == 0
            and (self._fin_seq is None or self._fin_seq == (seq + n) & SEQ_MASK)
        )
        # PSH on the last segment of what the user queued (MUST-61).
        psh = force_psh or unsent_after == 0
        seg = self._data_segment(seq, off, n, now, fin=fin, psh=psh)
        (self._out if out is None else out).append(seg)
        end = (seq + n) & SEQ_MASK
        retransmit = seq_lt(seq, self.snd_max)
        if retransmit:
            self.stats_counters.retransmissions += 1
        elif self._rtt_seq is None and not self._ts_ok:
            # Time this segment (one at a time, RFC 6298 §3; Karn: never a
            # retransmitted one).
            self._rtt_seq = end
            self._rtt_time = now
        self.stats_counters.bytes_out += n
        if n < self._snd_mss:
            self._nagle_end = end
        if fin:
            self._fin_seq = end
            end = (end + 1) & SEQ_MASK
        self.snd_nxt = end
        if seq_gt(end, self.snd_max):
            self.snd_max = end
        if self._t_rexmit is None:
            # RFC 6298 §5.1: start the timer when sending data if not running.
            self._t_rexmit = now + self._rtt.rto

    def _data_segment(
        self, seq: int, off: int, n: int, now: float, *, fin: bool, psh: bool
    ) -> TcpSegment:
        if fin:
            flags = _ACK_PSH_FIN if psh else _ACK_FIN
        else:
            flags = _ACK_PSH if psh else _ACK
        return self._make(seq, flags, self._sndbuf.peek(off, n), now)

    def _arm_persist(self, now: float) -> None:
        """Persist timer: a zero window, or the SWS override (§3.8.6.1, §3.8.6.2.1 (4))."""
        if self._t_persist is not None:
            if self.snd_wnd > 0 and seq_diff(self.snd_nxt, self.snd_una) > 0:
                self._t_persist = None  # data in flight: the ACK clock will move
            return
        if self._state not in _SEND_STATES:
            return
        off = seq_diff(self.snd_nxt, self.snd_una)
        unsent = len(self._sndbuf) - off
        if unsent <= 0 or off > 0 or self._t_rexmit is not None:
            return
        # SHLD-29/30: first probe after one RTO, then exponential backoff.
        interval = min(self._rtt.rto * (1 << min(self._persist_backoff, 16)), self.config.max_rto)
        self._t_persist = now + interval

    def _make(self, seq: int, flags: TcpFlags, payload: bytes, now: float) -> TcpSegment:
        """A segment carrying ACK (all ours do but RSTs), with window and options from the TCB."""
        ack = self.rcv_nxt
        self._last_ack_sent = ack
        self._delack_segments = 0
        self._t_delack = None
        window = self._advertise()
        opts = _NO_OPTIONS
        blocks: tuple[tuple[int, int], ...] = ()
        if self._sack_ok and self._rcvbuf.has_gaps:
            blocks = self._sack_blocks()
            if payload:
                # RFC 9293 §3.7.1 MUST-16: Eff.snd.MSS is less "TCPhdrsize",
                # the options included. _snd_mss already leaves room for a
                # timestamp option; the SACK option (4 + 8 per block) must fit
                # in what the payload leaves, else the segment would exceed
                # the peer's MSS. Blocks that do not fit go on a pure ACK
                # (see segments_to_send).
                room = self._snd_mss - len(payload)
                fit = (room - 4) >> 3 if room >= 12 else 0
                if fit < len(blocks):
                    blocks = blocks[:fit]
                    self._sack_trimmed = True
        if self._ts_ok:
            tsval = (int(now * 1000) + self._ts_offset) & SEQ_MASK
            if blocks:
                opts = TcpOptions(timestamps=(tsval, self._ts_recent), sack_blocks=blocks)
            else:
                # Many segments share one millisecond: reuse the options.
                cached = self._ts_opts
                if cached.timestamps != (tsval, self._ts_recent):
                    cached = self._ts_opts = TcpOptions(timestamps=(tsval, self._ts_recent))
                opts = cached
        elif blocks:
            opts = TcpOptions(sack_blocks=blocks)
        up = self._snd_up
        if up is not None:
            if seq_gt(up, self.snd_una):
                # §3.10.2: every segment sent while SND.UP is ahead carries URG
                # and SEG.UP = SND.UP - SEG.SEQ, the first non-urgent octet
                # (MUST-62), when that fits the 16-bit field.
                ptr = seq_diff(up, seq)
                if 0 < ptr <= 65535:
                    return TcpSegment(
                        self._lport,
                        self._rport,
                        seq,
                        ack,
                        flags | TcpFlags.URG,
                        window,
                        payload,
                        opts,
                        ptr,
                    )
            else:
                self._snd_up = None  # the urgent data is acknowledged
        return TcpSegment(self._lport, self._rport, seq, ack, flags, window, payload, opts)

    def _sack_blocks(self) -> tuple[tuple[int, int], ...]:
        base = self.rcv_nxt
        limit = 3 if self._ts_ok else 4  # RFC 2018 §3: what fits in 40 octets
        return tuple(
            ((base + s) & SEQ_MASK, (base + e) & SEQ_MASK)
            for s, e in self._rcvbuf.sack_blocks(limit)
        )

    def _make_syn(self, now: float, *, ack: bool) -> TcpSegment:
        cfg = self.config
        # RFC 7323 §2.2: the window in a SYN is never scaled.
        window = min(self._rcvbuf.free, 65535)
        self._syn_window = window
        if ack:
            self._rcv_adv = (self.rcv_nxt + window) & SEQ_MASK
            # Offer options only if the peer offered them (RFC 7323 §2.2,
            # §3.2; RFC 2018 §2).
            ts = (
                ((int(now * 1000) + self._ts_offset) & SEQ_MASK, self._ts_recent)
                if self._ts_ok
                else None
            )
            opts = TcpOptions(
                mss=cfg.mss,
                wscale=self._rcv_wscale if self._wscale_agreed else None,
                sack_permitted=self._sack_ok,
                timestamps=ts,
            )
            flags = _SYN | _ACK
            ackno = self.rcv_nxt
            self._last_ack_sent = ackno
        else:
            opts = TcpOptions(
                mss=cfg.mss,
                wscale=self._rcv_wscale_offer if cfg.window_scale else None,
                sack_permitted=cfg.sack,
                timestamps=((int(now * 1000) + self._ts_offset) & SEQ_MASK, 0)
                if cfg.timestamps
                else None,
            )
            flags = _SYN
            ackno = 0
        end = (self.iss + 1) & SEQ_MASK
        self.snd_nxt = end
        if seq_gt(end, self.snd_max) or self.snd_max == self.iss:
            self.snd_max = end
        if self._rtt_seq is None and self._retries == 0:
            self._rtt_seq = end
            self._rtt_time = now
        return TcpSegment(self._lport, self._rport, self.iss, ackno, flags, window, b"", opts)

    def _advertise(self) -> int:
        """The window field for an outgoing segment; moves RCV.ADV right only (SHLD-14)."""
        rcv_nxt = self.rcv_nxt
        current = seq_diff(self._rcv_adv, rcv_nxt)
        if current < 0:
            current = 0
        free = self._rcvbuf.free
        shift = self._rcv_wscale
        # Receiver SWS avoidance (§3.8.6.2.2 MUST-39): keep the right edge
        # fixed until the window can open by min(Fr * RCV.BUFF, Eff.snd.MSS).
        if free - current >= min(self._rcvbuf.capacity >> 1, self._snd_mss):
            wnd = free
        else:
            wnd = current
        field = wnd >> shift
        if field > 65535:
            field = 65535
        # Rounding down by the scale may show the peer a slightly smaller
        # window than RCV.ADV (RFC 7323 §2.4 accepts this); we keep
        # accepting up to RCV.ADV, so our edge never moves left.
        new_edge = (rcv_nxt + (field << shift)) & SEQ_MASK
        if seq_gt(new_edge, self._rcv_adv):
            self._rcv_adv = new_edge
        return field

    def _window_update_worthwhile(self) -> bool:
        """Whether a read opened the window enough for an ACK of its own.

        The right edge may move by min(RCV.BUFF/2, MSS) (§3.8.6.2.2), and the
        next ACK carries that anyway; a separate window update is sent when
        the offered window at least doubles from no more than half the
        buffer (reopening a closed or nearly closed window), as BSD and
        Linux do, so that a steady reader does not double the ACK count.
        """
        current = max(seq_diff(self._rcv_adv, self.rcv_nxt), 0)
        free = self._rcvbuf.free
        if free - current < min(self._rcvbuf.capacity >> 1, self._snd_mss):
            return False
        return current <= self._rcvbuf.capacity >> 1 and free >= 2 * current

    def _send_reset(self, now: float) -> None:
        # <SEQ=SND.NXT><CTL=RST> (RFC 9293 §3.10.5; SND.MAX, see segments_to_send).
        self.stats_counters.rsts_out += 1
        self._out.append(TcpSegment(self._lport, self._rport, self.snd_max, 0, _RST, 0))

    def _reply_to_unacceptable(self, now: float) -> None:
        """The ACK owed to an unacceptable segment without data (§3.10.7.4), rate-limited.

        Two ends that each find the other's ACKs unacceptable (a clock that
        went backwards for PAWS, a confused peer) would otherwise ACK each
        other forever; at most one such reply per OOW_ACK_INTERVAL, as Linux
        does. Keep-alive probes (one per interval) are still answered.
        """
        if now - self._last_oow_ack < OOW_ACK_INTERVAL:
            self._drop("oow-ack-limited")
            return
        self._last_oow_ack = now
        self._ack_now = True

    def _challenge_ack(self, now: float) -> None:
        """RFC 5961 §3.2, §4.2, §5.2: ACK (rate-limited, §7) instead of acting."""
        if now - self._challenge_window >= 1.0:
            self._challenge_window = now
            self._challenge_count = 0
        if self._challenge_count >= self.config.challenge_ack_limit:
            self._drop("challenge-ack-limited")
            return
        self._challenge_count += 1
        self.stats_counters.challenge_acks += 1
        self._ack_now = True

    # ------------------------------------------------------------------
    # Input

    def receive_segment(self, seg: TcpSegment, now: float) -> None:
        """Process one segment addressed to this connection (RFC 9293 §3.10.7)."""
        self.stats_counters.segments_in += 1
        if seg.src_port != self._rport or seg.dst_port != self._lport:
            self._drop("wrong-ports")
            return
        st = self._state
        if st is State.CLOSED:
            reply = reply_when_closed(seg)
            self._drop("closed")
            if reply is not None:
                self.stats_counters.rsts_out += 1
                self._out.append(reply)
            return
        if st is State.LISTEN:
            self._drop("listen")
            return
        if st in _FAST_STATES and self._fast_path(seg, now):
            return
        if st is State.SYN_SENT:
            self._receive_in_syn_sent(seg, now)
        else:
            self._receive_synchronizing(seg, now)

    def _fast_path(self, seg: TcpSegment, now: float) -> bool:
        """Header prediction (Van Jacobson; RFC 9293 §3.10.7.4 in its commonest case).

        A segment that is exactly the next expected one,
        carries only ACK (and maybe PSH), passes PAWS, leaves the window
        unchanged and is either a pure ACK of new data or in-order data
        acknowledging nothing new, is processed here with the same outcome
        as the full path; anything else returns False and takes the full path.
        """
        if (int(seg.flags) & ~F_PSH) != F_ACK or seg.seq != self.rcv_nxt:
            return False
        if (seg.window << self._snd_wscale) != self.snd_wnd or self._cc.in_recovery:
            return False
        if self._sacked:
            return False  # an ACK must trim the scoreboard: the full path does
        opts = seg.options
        if opts.sack_blocks:
            return False  # the scoreboard is the full path's business
        ts = opts.timestamps
        if self._ts_ok:
            if ts is None or not self._ts_recent_valid:
                return False
            d = (ts[0] - self._ts_recent) & SEQ_MASK
            if d >= 0x80000000 or now - self._ts_recent_time > PAWS_IDLE:
                return False  # PAWS has a say: full path
        elif ts is not None:
            return False
        payload = seg.payload
        ack = seg.ack
        snd_una = self.snd_una
        st = self._state
        if payload:
            if (
                st not in _TEXT_STATES
                or ack != snd_una
                or self._rcvbuf.has_gaps
                or self._app_closed
                or self._rcv_fin_seq is not None
                or len(payload) > ((self._rcv_adv - self.rcv_nxt) & SEQ_MASK)
            ):
                return False
        else:
            acked = (ack - snd_una) & SEQ_MASK
            if (
                st not in _FAST_ACK_STATES
                or acked == 0
                or acked > ((self.snd_max - snd_una) & SEQ_MASK)
                or self._fin_seq is not None
                or acked > len(self._sndbuf)
            ):
                return False
        # Accepted: the common bookkeeping of the full path.
        seq = seg.seq
        self._last_rcv = now
        self._keepalive_probes = 0
        self._probes_unanswered = 0
        if self._t_keepalive is not None:
            self._t_keepalive = now + self.config.keepalive_idle
        if ts is not None and seq_le(seq, self._last_ack_sent):
            self._ts_recent = ts[0]
            self._ts_recent_time = now
        self.snd_wl1 = seq
        self.snd_wl2 = ack
        if not payload:
            # A pure ACK of new data (fifth step).
            sndbuf = self._sndbuf
            sndbuf.drop(acked)
            self.snd_una = ack
            if seq_lt(self.snd_nxt, ack):
                self.snd_nxt = ack
            if ts is not None and ts[1] != 0:
                self._rtt.sample(((int(now * 1000) + self._ts_offset - ts[1]) & SEQ_MASK) / 1000.0)
            elif self._rtt_seq is not None and seq_ge(ack, self._rtt_seq):
                self._rtt.sample(now - self._rtt_time)
                self._rtt_seq = None
            self._retries = 0
            self._first_rexmit_time = None
            self._persist_backoff = 0
            self._cc.on_new_ack(ack, acked, (self.snd_max - ack) & SEQ_MASK)
            self._t_rexmit = None if ack == self.snd_max else now + self._rtt.rto
            if self._send_blocked and sndbuf.space > 0:
                self._send_blocked = False
                self._events.append(ev.SendSpaceAvailable(sndbuf.space))
            return True
        # In-order data (seventh step) with the delayed-ACK rule.
        n = len(payload)
        rcvbuf = self._rcvbuf
        rcvbuf.insert(0, payload)
        self.rcv_nxt = (seq + n) & SEQ_MASK
        self.stats_counters.bytes_in += n
        self._events.append(ev.DataAvailable(rcvbuf.readable))
        if not self.config.delayed_ack:
            self._ack_now = True
        else:
            self._delack_segments += 1
            if self._delack_segments >= 2:
                self._ack_now = True
            elif self._t_delack is None:
                self._t_delack = now + self.config.delayed_ack_timeout
        return True

    def _drop(self, reason: str) -> None:
        d = self.stats_counters.dropped
        d[reason] = d.get(reason, 0) + 1

    def _take_syn(self, syn: TcpSegment, now: float) -> None:
        """Record the peer's SYN: IRS, RCV.NXT and the options it offers."""
        cfg = self.config
        self.irs = syn.seq
        self.rcv_nxt = (syn.seq + 1) & SEQ_MASK
        opts = syn.options
        mss = opts.mss if opts.mss is not None and opts.mss > 0 else DEFAULT_MSS
        self._wscale_agreed = cfg.window_scale and opts.wscale is not None
        if self._wscale_agreed:
            # RFC 7323 §2.3: a shift over 14 is taken as 14.
            self._snd_wscale = min(opts.wscale or 0, 14)
            self._rcv_wscale = self._rcv_wscale_offer
        else:
            self._snd_wscale = 0
            self._rcv_wscale = 0
        self._sack_ok = cfg.sack and opts.sack_permitted
        self._ts_ok = cfg.timestamps and opts.timestamps is not None
        if self._ts_ok and opts.timestamps is not None:
            self._ts_recent = opts.timestamps[0]
            self._ts_recent_time = now
            self._ts_recent_valid = True
        # Eff.snd.MSS (RFC 9293 §3.7.1 MUST-16), less the timestamp option.
        eff = min(mss, cfg.mss)
        if self._ts_ok:
            eff -= TS_OPTION_SPACE
        self._snd_mss = max(eff, 1)
        self._cc.set_mss(self._snd_mss)
        # RFC 7323 §2.2: the SYN's window is never scaled.
        self.snd_wnd = syn.window
        self._max_snd_wnd = max(self._max_snd_wnd, syn.window)
        self.snd_wl1 = syn.seq
        self._last_rcv = now
        if self._state is State.SYN_SENT:
            # What our SYN offered is the window until we say otherwise.
            self._rcv_adv = (self.rcv_nxt + self._syn_window) & SEQ_MASK

    def _receive_in_syn_sent(self, seg: TcpSegment, now: float) -> None:
        """RFC 9293 §3.10.7.3."""
        flags = int(seg.flags)
        has_ack = bool(flags & F_ACK)
        # First, check the ACK bit.
        if has_ack and (seq_le(seg.ack, self.iss) or seq_gt(seg.ack, self.snd_max)):
            if not flags & F_RST:
                self.stats_counters.rsts_out += 1
                self._out.append(TcpSegment(self._lport, self._rport, seg.ack, 0, _RST, 0))
            self._drop("unacceptable-ack")
            return
        # Second, the RST bit: "connection refused" only if the ACK was
        # acceptable; otherwise drop it.
        if flags & F_RST:
            if has_ack:
                self._events.append(ev.ConnectionRefused())
                self._enter_closed(Cause.RCV_RST, now)
            else:
                self._drop("rst-without-ack")
            return
        # Fourth, the SYN bit.
        if not flags & F_SYN:
            self._drop("no-syn")
            return
        self._take_syn(seg, now)
        if has_ack:
            self._rtt_sample_syn(seg, now)
            self.snd_una = seg.ack
            self.snd_wl2 = seg.ack
            self._retries = 0
            self._first_rexmit_time = None
            self._t_rexmit = None
            self._t_connect = None
            self._set_state(State.ESTABLISHED, Cause.RCV_SYN_ACK, now)
            self._on_established(now)
            self._ack_now = True
            # Data or FIN in the SYN-ACK: "continue processing at the sixth
            # step" (segment text and FIN), beyond the SYN's octet.
            if seg.payload or flags & F_FIN:
                self._process_text_and_fin(
                    (seg.seq + 1) & SEQ_MASK,
                    seg.payload,
                    bool(flags & F_FIN),
                    bool(flags & F_PSH),
                    now,
                )
        else:
            # Simultaneous open (Figure 7): SYN-RECEIVED, send SYN,ACK.
            self._set_state(State.SYN_RECEIVED, Cause.RCV_SYN, now)
            self._syn_needed = True
            self._t_rexmit = None
            self._retries = 0

    def _rtt_sample_syn(self, seg: TcpSegment, now: float) -> None:
        ts = seg.options.timestamps
        if self._ts_ok and ts is not None and ts[1] != 0:
            self._rtt.sample(((int(now * 1000) + self._ts_offset - ts[1]) & SEQ_MASK) / 1000.0)
        elif self._rtt_seq is not None and self._retries == 0 and seq_ge(seg.ack, self._rtt_seq):
            self._rtt.sample(now - self._rtt_time)
        self._rtt_seq = None

    def _on_established(self, now: float) -> None:
        self._events.append(ev.Connected())
        if self._syn_resent and self._rtt.srtt is None:
            # RFC 6298 §5.7: the SYN (or SYN,ACK) timed out and no RTT was
            # measured: data transmission starts with an RTO of 3 s.
            self._rtt.restart(3.0)
        if self._close_deferred:
            self._close_deferred = False
            self._fin_queued = True
            self._set_state(State.FIN_WAIT_1, Cause.CLOSE, now)
        self._arm_keepalive(now)

    def _receive_synchronizing(self, seg: TcpSegment, now: float) -> None:
        """RFC 9293 §3.10.7.4: SYN-RECEIVED and the synchronized states."""
        st = self._state
        flags = int(seg.flags)
        seq = seg.seq
        payload = seg.payload
        rcv_nxt = self.rcv_nxt
        ts = seg.options.timestamps

        # TIME-WAIT: the only thing expected is a retransmitted FIN; ACK it
        # and restart the 2MSL wait (§3.10.7.4 eighth step, TIME-WAIT).
        if (
            st is State.TIME_WAIT
            and flags & F_FIN
            and not flags & (F_RST | F_SYN)
            and ((seq + len(payload) + 1) & SEQ_MASK) == rcv_nxt
        ):
            self._ack_now = True
            self._t_close = now + 2 * self.config.msl
            self._last_rcv = now
            return
        # SYN-RECEIVED: the peer's SYN again. A plain SYN means our SYN,ACK
        # was lost: send it again. A SYN,ACK (simultaneous open, Figure 7
        # line 6) has its SYN already counted: process the rest of it.
        syn_dup = False
        if st is State.SYN_RECEIVED and flags & F_SYN and seq == self.irs and not flags & F_RST:
            if not flags & F_ACK:
                self._syn_needed = True
                self._drop("duplicate-syn")
                return
            syn_dup = True
            seq = rcv_nxt
            flags &= ~F_SYN

        # PAWS (RFC 7323 §5.3 R1-R3), before the sequence check.
        if self._ts_ok and ts is not None and not flags & F_RST and self._ts_recent_valid:
            if now - self._ts_recent_time > PAWS_IDLE:
                self._ts_recent_valid = False
            elif seq_lt(ts[0], self._ts_recent):
                self._drop("paws")
                self._reply_to_unacceptable(now)
                return

        # First, check the sequence number (Table 6).
        seg_len = len(payload) + (1 if flags & F_SYN else 0) + (1 if flags & F_FIN else 0)
        rcv_wnd = seq_diff(self._rcv_adv, rcv_nxt)
        if rcv_wnd < 0:
            rcv_wnd = 0
        start = seq_diff(seq, rcv_nxt)  # offset of the segment from RCV.NXT
        if seg_len == 0:
            acceptable = start == 0 if rcv_wnd == 0 else 0 <= start < rcv_wnd
        elif rcv_wnd == 0:
            acceptable = False
        else:
            last = start + seg_len - 1
            acceptable = (
                0 <= start < rcv_wnd or 0 <= last < rcv_wnd or (start < 0 and last >= rcv_wnd)
            )
        if not acceptable:
            if flags & F_RST:
                self._drop("rst-out-of-window")
                return
            # RFC 9293 §3.8.6.1: even a zero window answers probes with an ACK.
            # A zero-window probe is not acceptable, so it lands here too.
            self._drop("out-of-window" if seg_len else "old-ack")
            if seg_len:
                self._ack_now = True
            else:
                self._reply_to_unacceptable(now)
            # "special allowance should be made to accept valid ACKs" (and
            # URGs, MUST-66) with a zero window: process the ACK field and
            # the urgent pointer of an in-sequence segment.
            if rcv_wnd == 0 and start == 0 and flags & F_ACK and st in SYNCHRONIZED:
                self._process_ack(seg.ack, seq, seg.window, seg_len, ts, now)
                if flags & F_URG and seg.urgent and self._state in _TEXT_STATES:
                    self._note_urgent((seg.seq + seg.urgent) & SEQ_MASK)
            return

        self._last_rcv = now
        self._keepalive_probes = 0
        self._probes_unanswered = 0
        if self._t_keepalive is not None:
            self._t_keepalive = now + self.config.keepalive_idle

        # Second, the RST bit (RFC 5961 §3.2 checks, as RFC 9293 lists).
        if flags & F_RST:
            if seq != rcv_nxt:
                self._challenge_ack(now)
                return
            self._on_reset(now)
            return

        # Trim to the window: old octets at the front (including a SYN),
        # octets beyond the right edge (including a FIN) at the back.
        fin = bool(flags & F_FIN)
        if start < 0:
            cut = -start
            if flags & F_SYN:
                flags &= ~F_SYN
                cut -= 1
            payload = payload[cut:]
            seq = rcv_nxt
            start = 0
        room = rcv_wnd - start
        if len(payload) > room:
            payload = payload[:room]
            fin = False

        # Fourth, the SYN bit (RFC 5961 §4.2 / RFC 9293 §3.10.7.4).
        if flags & F_SYN:
            if st is State.SYN_RECEIVED and self._passive:
                self._return_to_listen(Cause.RCV_SYN, now)
            else:
                self._challenge_ack(now)
            return

        # Fifth, the ACK field.
        if not flags & F_ACK:
            self._drop("no-ack")
            return
        if st is State.SYN_RECEIVED:
            ack = seg.ack
            if seq_lt(self.snd_una, ack) and seq_le(ack, self.snd_max):
                self._rtt_sample_syn(seg, now)
                self.snd_una = ack
                self.snd_nxt = ack if seq_gt(ack, self.snd_nxt) else self.snd_nxt
                self._retries = 0
                self._first_rexmit_time = None
                self._t_rexmit = None
                self._t_connect = None
                self._set_state(State.ESTABLISHED, Cause.RCV_ACK_OF_SYN, now)
                # SND.WND, SND.WL1, SND.WL2 from this segment.
                self.snd_wnd = seg.window << self._snd_wscale
                self._max_snd_wnd = max(self._max_snd_wnd, self.snd_wnd)
                self.snd_wl1 = seq
                self.snd_wl2 = ack
                self._on_established(now)
                if syn_dup:
                    self._ack_now = True
            else:
                self.stats_counters.rsts_out += 1
                self._out.append(TcpSegment(self._lport, self._rport, seg.ack, 0, _RST, 0))
                self._drop("unacceptable-ack")
                return
        else:
            if not self._process_ack(
                seg.ack, seq, seg.window, seg_len, ts, now, seg.options.sack_blocks
            ):
                return
            if self._state is State.CLOSED:
                return

        # RFC 7323 §4.3: TS.Recent from a segment that covers Last.ACK.sent.
        if (
            self._ts_ok
            and ts is not None
            and seq_le(seq, self._last_ack_sent)
            and (not self._ts_recent_valid or seq_ge(ts[0], self._ts_recent))
        ):
            self._ts_recent = ts[0]
            self._ts_recent_time = now
            self._ts_recent_valid = True

        # Sixth, the URG bit (receive side only: we never send urgent data).
        # The urgent octets stay in line; the user is told (UrgentData) and
        # can ask how many are unread (urgent_pending).
        if flags & F_URG and seg.urgent and self._state in _TEXT_STATES:
            self._note_urgent((seg.seq + seg.urgent) & SEQ_MASK)

        # Seventh and eighth: text and FIN.
        if payload or fin:
            self._process_text_and_fin(seq, payload, fin, bool(flags & F_PSH), now)

    def _note_urgent(self, up: int) -> None:
        """RCV.UP <- max(RCV.UP, SEG.SEQ + SEG.UP) and tell the user once (§3.10.7.4 sixth step).

        MUST-62: SEG.UP points at the first non-urgent octet. MUST-31: any
        length (the pointer may lie beyond the data received so far).
        MUST-32: UrgentData is reported when urgent data starts to be
        pending, not again for the same run while it is unread.
        """
        if self._fin_received:
            return
        was_pending = self.urgent_pending > 0
        old = self._rcv_up
        # A stale RCV.UP (already read) is replaced whatever its value, so
        # the comparison never spans the sequence space.
        if old is None or not was_pending or seq_gt(up, old):
            self._rcv_up = up
        if not was_pending:
            pending = self.urgent_pending
            if pending > 0:
                self._events.append(ev.UrgentData(pending))

    def _process_ack(
        self,
        ack: int,
        seq: int,
        raw_window: int,
        seg_len: int,
        ts: tuple[int, int] | None,
        now: float,
        sacks: tuple[tuple[int, int], ...] = (),
    ) -> bool:
        """Fifth step for synchronized states; False when the segment is to be dropped."""
        snd_una = self.snd_una
        # RFC 5961 §5.2: acceptable ACKs lie in [SND.UNA - MAX.SND.WND, SND.NXT].
        if seq_gt(ack, self.snd_max):
            # It acknowledges something not yet sent: send an ACK, drop it.
            self._drop("ack-of-unsent")
            self._ack_now = True
            return False
        if seq_lt(ack, (snd_una - self._max_snd_wnd) & SEQ_MASK):
            self._drop("ack-too-old")
            self._challenge_ack(now)
            return False
        window = raw_window << self._snd_wscale
        acked = seq_diff(ack, snd_una)
        cc = self._cc
        # RFC 6675 §5: "Upon the receipt of any ACK containing SACK
        # information, the scoreboard MUST be updated via the Update ()
        # routine" (before the duplicate-ACK rules look at it).
        new_sacked = self._note_sacks(sacks) if sacks and self._sack_ok else 0
        if acked > 0:
            # New data acknowledged.
            sndbuf = self._sndbuf
            data_acked = acked
            fin_now_acked = False
            if self._fin_seq is not None and seq_gt(ack, self._fin_seq):
                data_acked -= 1
                fin_now_acked = not self._fin_acked
                self._fin_acked = True
            if data_acked > len(sndbuf):
                data_acked = len(sndbuf)  # a window probe's octet, or defensive
            sndbuf.drop(data_acked)
            self.snd_una = ack
            if seq_lt(self.snd_nxt, ack):
                self.snd_nxt = ack
            if self._sacked:
                self._sacked = [
                    (ack if seq_lt(lo, ack) else lo, hi)
                    for lo, hi in self._sacked
                    if seq_gt(hi, ack)
                ]
            # RTT sample: timestamps (RFC 7323 §4) or the timed segment (Karn).
            if self._ts_ok and ts is not None and ts[1] != 0:
                self._rtt.sample(((int(now * 1000) + self._ts_offset - ts[1]) & SEQ_MASK) / 1000.0)
            elif self._rtt_seq is not None and seq_ge(ack, self._rtt_seq):
                self._rtt.sample(now - self._rtt_time)
                self._rtt_seq = None
            self._retries = 0
            self._first_rexmit_time = None
            self._persist_backoff = 0
            flight = seq_diff(self.snd_max, ack)
            if cc.on_new_ack(ack, acked, flight) is AckAction.RETRANSMIT:
                self._rexmit_one = True
            # RFC 6298 §5.2/5.3: stop the timer when all is acknowledged,
            # restart it otherwise.
            if ack == self.snd_max:
                self._t_rexmit = None
            else:
                self._t_rexmit = now + self._rtt.rto
            if self._send_blocked and sndbuf.space > 0:
                self._send_blocked = False
                self._events.append(ev.SendSpaceAvailable(sndbuf.space))
            if fin_now_acked:
                self._on_fin_acked(now)
                if self._state is State.CLOSED:
                    return False
        elif self._sack_ok:
            if acked == 0 and seg_len == 0 and seq_diff(self.snd_max, snd_una) > 0:
                self._sack_dupack(ack, new_sacked, bool(sacks), window == self.snd_wnd)
        elif (
            acked == 0
            and seg_len == 0
            and seq_diff(self.snd_nxt, snd_una) > 0
            and window == self.snd_wnd
        ):
            # RFC 5681 §2 duplicate ACK: no data, same ACK, same window,
            # data outstanding (a zero-window probe's octet does not count).
            self.stats_counters.dupacks_in += 1
            flight = seq_diff(self.snd_max, snd_una)
            if cc.on_dupack(ack, flight, self.snd_max) is AckAction.RETRANSMIT:
                self._rexmit_one = True
                self.stats_counters.fast_retransmits += 1
                self._rtt_seq = None
        # Window update (§3.10.7.4): from a newer segment, or the same with a
        # newer ACK.
        wl1 = self.snd_wl1
        if seq_lt(wl1, seq) or (wl1 == seq and seq_le(self.snd_wl2, ack)):
            if window != self.snd_wnd:
                old = self.snd_wnd
                self.snd_wnd = window
                if window > self._max_snd_wnd:
                    self._max_snd_wnd = window
                if old == 0 and window > 0:
                    self._t_persist = None
                    self._persist_backoff = 0
            self.snd_wl1 = seq
            self.snd_wl2 = ack
        return True

    def _note_sacks(self, blocks: tuple[tuple[int, int], ...]) -> int:
        """RFC 6675 §4 Update(): merge SACK blocks into the scoreboard.

        Returns how many octets were SACKed for the first time. Only blocks
        inside [SND.UNA, SND.MAX] count: D-SACKs (RFC 2883, below SND.UNA),
        blocks of unsent data and forged or stale ones are ignored, so a
        peer cannot make the scoreboard claim anything we did not send.
        """
        una = self.snd_una
        top = seq_diff(self.snd_max, una)
        rel = [((lo - una) & SEQ_MASK, (hi - una) & SEQ_MASK) for lo, hi in self._sacked]
        before = 0
        for lo, hi in rel:
            before += hi - lo
        added = False
        for left, right in blocks:
            lo = (left - una) & SEQ_MASK
            hi = (right - una) & SEQ_MASK
            if lo < hi <= top:
                rel.append((lo, hi))
                added = True
        if not added:
            return 0
        rel.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in rel:
            if merged and lo <= merged[-1][1]:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        # A bounded scoreboard: the lowest 32 ranges (those next to the
        # holes that matter first); a peer sends at most 4 blocks per ACK.
        del merged[32:]
        after = 0
        for lo, hi in merged:
            after += hi - lo
        self._sacked = [((una + lo) & SEQ_MASK, (una + hi) & SEQ_MASK) for lo, hi in merged]
        return after - before if after > before else 0

    # RFC 6675 loss recovery. Offsets below are relative to SND.UNA (HighACK).

    def _sack_rel(self) -> list[tuple[int, int]]:
        una = self.snd_una
        return [((lo - una) & SEQ_MASK, (hi - una) & SEQ_MASK) for lo, hi in self._sacked]

    def _lost_edge(self, rel: list[tuple[int, int]]) -> int:
        """The offset below which every unSACKed octet IsLost() (RFC 6675 §4).

        IsLost(S) holds when DupThresh (3) discontiguous SACKed ranges lie
        above S, or more than (DupThresh - 1) * SMSS SACKed octets do. Both
        only grow as S moves down, so one edge describes the whole answer:
        the left end of the range (counted from the top) at which either
        condition first holds; 0 when neither does (nothing is lost).
        """
        limit = 2 * self._snd_mss
        octets = 0
        for count, (lo, hi) in enumerate(reversed(rel), 1):
            octets += hi - lo
            if count >= 3 or octets > limit:
                return lo
        return 0

    @staticmethod
    def _unsacked(rel: list[tuple[int, int]], a: int, b: int) -> int:
        """Octets in [a, b) not covered by the scoreboard."""
        if b <= a:
            return 0
        n = b - a
        for lo, hi in rel:
            if hi <= a:
                continue
            if lo >= b:
                break
            n -= (hi if hi < b else b) - (lo if lo > a else a)
        return n

    def _pipe(self, rel: list[tuple[int, int]], lost_edge: int) -> int:
        """RFC 6675 §4 SetPipe(): octets presumed in the network.

        Every unSACKed octet in [HighACK, HighData) counts once if it is not
        lost (a) and once more if it was retransmitted (b, octets below
        HighRxt).
        """
        flight = seq_diff(self.snd_max, self.snd_una)
        high_rxt = seq_diff(self._high_rxt, self.snd_una)
        if high_rxt < 0:
            high_rxt = 0
        return self._unsacked(rel, lost_edge, flight) + self._unsacked(rel, 0, high_rxt)

    def _sack_dupack(self, ack: int, new_sacked: int, had_sacks: bool, same_window: bool) -> None:
        """A duplicate ACK with SACK negotiated (RFC 6675 §2 and §5, steps 1-4)."""
        # RFC 6675 §2, and RFC 5681 §2's alternative for SACK senders: a
        # duplicate ACK carries previously unknown SACK information (the
        # window may have changed). A peer that agreed to SACK but sends no
        # blocks is judged by RFC 5681 §2's own rule (same window).
        if not (new_sacked > 0 or (not had_sacks and same_window)):
            return
        self.stats_counters.dupacks_in += 1
        cc = self._cc
        if cc.in_recovery:
            return  # §5 (B): the scoreboard is updated; output recomputes pipe
        cc.dupacks += 1
        # Steps (1) and (2): DupThresh duplicates, or IsLost(HighACK + 1).
        if cc.dupacks < 3 and self._lost_edge(self._sack_rel()) == 0:
            return  # step (3): limited transmit, in _output_data
        if not cc.may_enter_recovery(ack):
            return
        # Step (4): fast retransmit, enter loss recovery.
        cc.enter_sack_recovery(seq_diff(self.snd_max, self.snd_una), self.snd_max)
        self._high_rxt = self.snd_una  # §5 (4.3) moves it past the resent segment
        self._rescue_rxt = None
        self._sack_first = True
        self.stats_counters.fast_retransmits += 1

    def _sack_next_seg(
        self, rel: list[tuple[int, int]], lost_edge: int
    ) -> tuple[int, int, int] | None:
        """RFC 6675 §4 NextSeg(): (rule, offset, octets) of what to send, or None."""
        sndbuf_len = len(self._sndbuf)
        flight = seq_diff(self.snd_max, self.snd_una)
        mss = self._snd_mss
        start = seq_diff(self._high_rxt, self.snd_una)
        if start < 0:
            start = 0
        # The first unSACKed octet at or beyond HighRxt, and where the next
        # SACKed range begins after it (a segment stops there).
        s2 = start
        nxt = flight
        for lo, hi in rel:
            if hi <= s2:
                continue
            if lo <= s2:
                s2 = hi
                continue
            nxt = lo
            break
        highest_sacked = rel[-1][1] if rel else 0
        n = min(mss, nxt - s2)
        if s2 < sndbuf_len:
            n = min(n, sndbuf_len - s2)
        # Rule (1): the first unSACKed octet beyond HighRxt that IsLost().
        if s2 < lost_edge and n > 0:
            return 1, s2, n
        # Rule (2): new data, as far as the peer's window allows.
        if self.snd_nxt == self.snd_max:
            unsent = sndbuf_len - flight
            room = self.snd_wnd - flight
            m = min(unsent, room, mss)
            if m > 0 and m in (mss, unsent):  # no short segment mid-stream (SWS)
                return 2, flight, m
        # Rule (3): an unSACKed octet beyond HighRxt below the highest SACKed
        # octet, lost or not.
        if s2 < highest_sacked and n > 0:
            return 3, s2, n
        # Rule (4): one rescue retransmission per recovery, of the highest
        # unSACKed octet, when HighACK is beyond RescueRxt. We add one
        # condition: that octet was not retransmitted already (beyond
        # HighRxt), so the rescue is never a second copy of a resent segment.
        if self._rescue_rxt is None or seq_gt(self.snd_una, self._rescue_rxt):
            top = flight
            for lo, hi in reversed(rel):
                if hi == top:
                    top = lo
                else:
                    break
            if top > start:
                # The hole ending at ``top`` starts after the range below it.
                hole = 0
                for _lo, hi in rel:
                    if hi < top:
                        hole = hi
                first = max(top - mss, hole)
                return 4, first, top - first
        return None

    def _sack_recovery_output(self, now: float, out: list[TcpSegment]) -> None:
        """RFC 6675 §5 step (4.3)-(4.5) and (C): send while cwnd - pipe >= 1 SMSS."""
        mss = self._snd_mss
        if self._sack_first:
            # (4.3) The first segment presumed dropped, regardless of pipe.
            self._sack_first = False
            rel = self._sack_rel()
            nxt = rel[0][0] if rel else seq_diff(self.snd_max, self.snd_una)
            n = min(mss, nxt) if nxt > 0 else mss
            sent = self._sack_resend(0, n, now, out)
            self._high_rxt = (self.snd_una + sent) & SEQ_MASK
        cwnd = self._cc.cwnd
        rel = self._sack_rel()
        lost_edge = self._lost_edge(rel)
        pipe = self._pipe(rel, lost_edge)  # (4.4), (B.2)
        # (C): bounded by cwnd; each round moves HighRxt, SND.NXT or RescueRxt.
        while cwnd - pipe >= mss:
            choice = self._sack_next_seg(rel, lost_edge)
            if choice is None:
                break
            rule, off, n = choice
            if rule == 2:
                self._emit_data(off, n, now, force_psh=False, out=out)
                sent = n
            else:
                sent = self._sack_resend(off, n, now, out)
                if sent == 0:
                    break
                if rule == 4:
                    # (C.4): a rescue retransmission does not move HighRxt.
                    self._rescue_rxt = self._cc.recover
                else:
                    self._high_rxt = (self.snd_una + off + sent) & SEQ_MASK
            pipe += sent  # (C.3)

    def _sack_resend(self, off: int, n: int, now: float, out: list[TcpSegment]) -> int:
        """Resend the octets at offset ``off`` (the FIN alone when only it is there)."""
        seq = (self.snd_una + off) & SEQ_MASK
        avail = len(self._sndbuf) - off
        if avail > 0:
            n = min(n, avail)
            end = (seq + n) & SEQ_MASK
            fin = self._fin_seq is not None and self._fin_seq == end
            out.append(self._data_segment(seq, off, n, now, fin=fin, psh=fin))
            self.stats_counters.bytes_out += n
            sent = n + (1 if fin else 0)
        elif self._fin_seq is not None and self._fin_seq == seq and not self._fin_acked:
            out.append(self._make(seq, _ACK_FIN, b"", now))
            sent = 1
        else:
            return 0
        self.stats_counters.retransmissions += 1
        self._rtt_seq = None  # Karn (MUST-18)
        if self._t_rexmit is None:
            self._t_rexmit = now + self._rtt.rto
        return sent

    def _sack_skip(self, seq: int) -> tuple[int | None, int | None]:
        """(end of the SACKed range holding ``seq``, or None; octets to the next one, or None)."""
        room: int | None = None
        for left, right in self._sacked:
            if seq_le(left, seq) and seq_lt(seq, right):
                return right, None
            if seq_gt(left, seq):
                d = (left - seq) & SEQ_MASK
                if room is None or d < room:
                    room = d
        return None, room

    def _on_fin_acked(self, now: float) -> None:
        st = self._state
        if st is State.FIN_WAIT_1:
            self._set_state(State.FIN_WAIT_2, Cause.RCV_ACK_OF_FIN, now)
            if self._app_closed:
                self._t_close = now + self.config.fin_wait_2_timeout
        elif st is State.CLOSING:
            self._enter_time_wait(Cause.RCV_ACK_OF_FIN, now)
        elif st is State.LAST_ACK:
            self._enter_closed(Cause.RCV_ACK_OF_FIN, now)
        self._t_rexmit = None

    def _process_text_and_fin(
        self, seq: int, payload: bytes, fin: bool, psh: bool, now: float
    ) -> None:
        st = self._state
        rcvbuf = self._rcvbuf
        if payload:
            if st not in _TEXT_STATES:
                # CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: the peer already
                # sent FIN; such text is ignored (§3.10.7.4 seventh step).
                self._drop("text-after-fin")
                return
            if self._app_closed:
                # SHLD-3: data after CLOSE is answered by RST.
                self._send_reset(now)
                self._enter_closed(Cause.DATA_AFTER_CLOSE, now)
                return
            offset = seq_diff(seq, self.rcv_nxt)
            gaps_before = rcvbuf.has_gaps
            advanced = rcvbuf.insert(offset, payload)
            if advanced:
                self.rcv_nxt = (self.rcv_nxt + advanced) & SEQ_MASK
                self.stats_counters.bytes_in += advanced
                self._events.append(ev.DataAvailable(rcvbuf.readable))
            if offset > 0 or gaps_before:
                # RFC 5681 §4.2: out-of-order segments, and those that fill
                # a gap, are acknowledged at once.
                self._ack_now = True
            elif not self.config.delayed_ack:
                self._ack_now = True
            else:
                # SHLD-19: an ACK for at least every second segment;
                # otherwise a delayed ACK under 0.5 s (MUST-40).
                self._delack_segments += 1
                if self._delack_segments >= 2:
                    self._ack_now = True
                elif self._t_delack is None:
                    self._t_delack = now + self.config.delayed_ack_timeout
        if fin:
            self._rcv_fin_seq = (seq + len(payload)) & SEQ_MASK
        if (
            self._rcv_fin_seq is not None
            and self._rcv_fin_seq == self.rcv_nxt
            and not self._fin_received
        ):
            self._on_fin(now)
        elif fin:
            self._ack_now = True

    def _on_fin(self, now: float) -> None:
        """Eighth step: the peer's FIN is in sequence."""
        self._fin_received = True
        self.rcv_nxt = (self.rcv_nxt + 1) & SEQ_MASK
        self._ack_now = True
        self._events.append(ev.EndOfStream())
        st = self._state
        if st is State.ESTABLISHED:
            self._set_state(State.CLOSE_WAIT, Cause.RCV_FIN, now)
        elif st is State.FIN_WAIT_1:
            self._set_state(State.CLOSING, Cause.RCV_FIN, now)
        elif st is State.FIN_WAIT_2:
            self._enter_time_wait(Cause.RCV_FIN, now)

    def _enter_time_wait(self, cause: Cause, now: float) -> None:
        self._set_state(State.TIME_WAIT, cause, now)
        self._t_rexmit = self._t_persist = self._t_keepalive = None
        # MUST-13: stay 2*MSL.
        self._t_close = now + 2 * self.config.msl

    def _on_reset(self, now: float) -> None:
        st = self._state
        if st is State.SYN_RECEIVED:
            if self._passive:
                self._return_to_listen(Cause.RCV_RST, now)
            else:
                self._events.append(ev.ConnectionRefused())
                self._enter_closed(Cause.RCV_RST, now)
            return
        if st in _RESET_STATES:
            self._events.append(ev.ConnectionReset())
        self._sndbuf.clear()
        self._enter_closed(Cause.RCV_RST, now)

    def _return_to_listen(self, cause: Cause, now: float) -> None:
        self._set_state(State.LISTEN, cause, now)
        self._clear_timers()
        self._sndbuf.clear()
        self._events.append(ev.Closed())

    def _enter_closed(self, cause: Cause, now: float) -> None:
        self._set_state(State.CLOSED, cause, now)
        self._clear_timers()
        self._ack_now = False
        self._syn_needed = False
        self._rexmit_one = False
        self._events.append(ev.Closed())

    def _clear_timers(self) -> None:
        self._t_rexmit = self._t_persist = self._t_delack = None
        self._t_keepalive = self._t_close = self._t_connect = None

    def _arm_keepalive(self, now: float) -> None:
        if self.config.keepalive:
            self._t_keepalive = now + self.config.keepalive_idle

    def _set_state(self, new: State, cause: Cause, now: float) -> None:
        old = self._state
        if not is_transition(old, cause, new):
            # A bug in this module, never something a peer can cause.
            raise AssertionError(f"no transition {old} --{cause}--> {new}")
        self._state = new
        self._transitions.append(Transition(now, old, new, cause))
        self._events.append(ev.StateChanged(old, new, cause, now))
