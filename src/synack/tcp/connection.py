"""A sans-IO RFC 9293 TCP connection: its user calls, timeouts and state machine.

Segments and ``now`` go in; events, segments and the next deadline come out.
Nothing here reads a clock, draws a random number or touches a socket.

API (stable; the host stack builds on it)::

    conn = TcpConnection(local, remote, config=TcpConfig(), iss=isn(local, remote, now))
    conn.connect(now, fastopen=None)            # active OPEN: CLOSED -> SYN-SENT
    conn = TcpConnection.accept_syn(syn, local, remote, config, iss, now)  # passive OPEN, per SYN
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
    conn.icmp_error(kind, seq, now) -> bool     # an ICMP error quoting our segment
    conn.state, conn.send_space, conn.readable_bytes, conn.stats, conn.transitions

Events (synack.tcp.events, in order): StateChanged for every transition (with the
segment, call or timer that took it; while ``conn.report_states`` is truthy), Connected, DataAvailable (per segment that made bytes
readable), EndOfStream (peer FIN, after the bytes before it), SendSpaceAvailable (after a send()
was cut short), UrgentData (the peer's urgent pointer moved ahead of what was read; see
``urgent_pending``), DeliveryProblem (R1 reached), ConnectionReset, ConnectionRefused,
TimedOut("connect" | "retransmit" | "keepalive"), and Closed last.

Deliberate choices: a CLOSE before the handshake completes is queued until
ESTABLISHED when data is queued (RFC 9293 §3.10.4 allows it in SYN-RECEIVED);
a duplicate SYN in SYN-RECEIVED is answered with the SYN,ACK again; segments
that are only an ACK carry SEQ = SND.MAX (BSD does the same) so that a
go-back-N rewind of SND.NXT never makes them look old; text on a SYN
without ACK (simultaneous open) waits for ESTABLISHED. Loss recovery is RFC 6675 with SACK agreed
(losses found by RACK-TLP, RFC 8985, :mod:`synack.tcp.rack`, unless the
config asks for RFC 6675's DupThresh), NewReno (RFC 6582) otherwise
(:mod:`synack.tcp.recovery`).

The adapter loop: feed segments / user calls, drain ``next_event()``, flush
``segments_to_send(now)``, re-arm the timer from ``get_timer()``. Output is produced only by
``segments_to_send``, so ACKs for a burst of received segments are aggregated (RFC 9293
§3.10.7.4 MUST-58/59).

Segments that reach no connection: :func:`reply_when_closed` (§3.10.7.1) and
:func:`reply_when_listening` (§3.10.7.2). A passive child whose SYN-RECEIVED is reset goes back
to LISTEN and reports :class:`~synack.tcp.events.Closed`: the listener itself stays with the
host, so the child is simply forgotten.

The TCB (:mod:`synack.tcp.tcb`), the output (:mod:`synack.tcp.sender`), the shared receive
machinery (:mod:`synack.tcp.receiver`, header prediction among it) and SEGMENT ARRIVES
(:mod:`synack.tcp.arrival`, §3.10.7 state by state) are the layers this class extends. Peer misbehaviour never raises: bad segments are dropped and counted in
``stats.dropped`` by reason. Caller misuse raises LocalProtocolError.

Layer: tcp. Imports synack.errors, synack.wire and the rest of synack.tcp.
"""

from __future__ import annotations

from synack.errors import LocalProtocolError
from synack.tcp import events as ev
from synack.tcp.arrival import RESET_STATES, SegmentArrival
from synack.tcp.config import TcpConfig
from synack.tcp.fastopen import FastOpen
from synack.tcp.segments import (
    F_ACK,
    F_RST,
    F_SYN,
    reply_when_closed,
    reply_when_listening,
)
from synack.tcp.seq import seq_diff
from synack.tcp.states import (
    CLOSE,
    CLOSE_WAIT,
    CLOSED,
    ESTABLISHED,
    FIN_WAIT_1,
    LAST_ACK,
    LISTEN,
    PASSIVE_OPEN,
    RCV_SYN,
    SYN_RECEIVED,
    SYN_SENT,
    Cause,
    State,
)
from synack.tcp.stats import TcpStats
from synack.tcp.tcb import SYN_STATES, Address
from synack.tcp.timers import Timer
from synack.wire.tcp import TcpSegment

__all__ = [
    "TcpConnection",
    "TcpStats",
    "reply_when_closed",
    "reply_when_listening",
]


class TcpConnection(SegmentArrival):
    """One TCP connection's state machine (RFC 9293 §3.3.2, §3.10) over its TCB."""

    __slots__ = ()

    # ------------------------------------------------------------------
    # Opening (§3.10.1)

    def connect(self, now: float, fastopen: FastOpen | None = None) -> None:
        """Active OPEN (RFC 9293 §3.10.1): send SYN, enter SYN-SENT (with ``fastopen``,
        RFC 7413: data queued before the SYN leaves rides on it when there is a cookie)."""
        if self.state is not State.CLOSED or self._opened:
            raise LocalProtocolError(f"connect() needs a fresh CLOSED connection, not {self.state}")
        self._opened = True
        self._tfo = fastopen
        self.snd_nxt = self.snd_max = self.iss
        self._set_state(State.SYN_SENT, Cause.ACTIVE_OPEN, now)
        self._syn_needed = True
        self._timers.connect = now + self.config.connect_timeout

    @classmethod
    def accept_syn(
        cls,
        syn: TcpSegment,
        local: Address,
        remote: Address,
        config: TcpConfig,
        iss: int,
        now: float,
        listened: float | None = None,
        fastopen: FastOpen | None = None,
        report_states: object = True,
    ) -> TcpConnection:
        """Passive OPEN for one received SYN: CLOSED -> LISTEN (at ``listened``, when the
        listener's OPEN was made, else ``now``) -> SYN-RECEIVED.

        The host's listener calls this for a segment with SYN and neither ACK
        nor RST (RFC 9293 §3.10.7.2 "third, check for a SYN"); other
        segments to a listener get :func:`reply_when_listening`. ``fastopen``:
        the host's verdict on the SYN's Fast Open cookie (RFC 7413 §4.2.2).
        ``report_states``: the new connection's :attr:`report_states`.
        """
        if (int(syn.flags) & (F_SYN | F_ACK | F_RST)) != F_SYN:
            raise LocalProtocolError("accept_syn() needs a SYN without ACK or RST")
        if syn.dst_port != local[1] or syn.src_port != remote[1]:
            raise LocalProtocolError("the SYN's ports do not match local/remote")
        conn = cls(local, remote, config=config, iss=iss)
        conn.report_states = report_states
        conn._opened = True
        conn._passive = True
        conn._set_state(LISTEN, PASSIVE_OPEN, now if listened is None else listened)
        conn.stats_counters.segments_in += 1
        conn._seg_in = syn
        conn._take_syn(syn, now)
        conn._set_state(SYN_RECEIVED, RCV_SYN, now)
        conn._fastopen_accept(syn, fastopen, now)
        conn._seg_in = None
        conn._syn_needed = True
        conn._timers.connect = now + config.connect_timeout
        return conn

    # ------------------------------------------------------------------
    # Application side (§3.10.2 - §3.10.5)

    def shutdown_write(self, now: float) -> None:
        """CLOSE in the RFC 9293 §3.10.4 sense: FIN after all queued data; keep reading."""
        st = self.state
        if self._fin_queued or self._close_deferred:
            return
        if st is SYN_SENT or st is SYN_RECEIVED:
            if len(self._sndbuf) == 0 and st is SYN_SENT:
                # §3.10.4 SYN-SENT: delete the TCB.
                self._enter_closed(Cause.CLOSE, now)
                return
            # §3.10.4 SYN-RECEIVED: queue the CLOSE until ESTABLISHED (we
            # do the same in SYN-SENT when data is queued, so that
            # connect + send + close delivers the data, as BSD sockets do).
            self._close_deferred = True
            return
        if st is ESTABLISHED:
            self._fin_queued = True
            self._set_state(FIN_WAIT_1, CLOSE, now)
        elif st is CLOSE_WAIT:
            self._fin_queued = True
            self._set_state(LAST_ACK, CLOSE, now)
        elif st in (CLOSED, LISTEN):
            raise LocalProtocolError(f"shutdown_write() on a connection in {st}")
        # FIN-WAIT-*, CLOSING, LAST-ACK, TIME-WAIT: already closing (§3.10.4
        # "error: connection closing"); harmless to repeat.

    def close(self, now: float) -> None:
        """Full close: shutdown_write() and stop reading.

        Unread received data at close, or data arriving afterwards, is
        answered with RST (RFC 9293 §3.6 SHLD-3).
        """
        st = self.state
        if st is CLOSED or st is LISTEN:
            return
        if self._rcvbuf.readable and st in RESET_STATES:
            self._app_closed = True
            self._send_reset(now)
            self._enter_closed(Cause.ABORT, now)
            return
        self._app_closed = True
        self.shutdown_write(now)

    def abort(self, now: float) -> None:
        """ABORT (RFC 9293 §3.10.5): RST in synchronized states, then CLOSED."""
        st = self.state
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

    # ------------------------------------------------------------------
    # Timeouts (§3.10.8)

    def handle_timer(self, now: float) -> None:
        """Handle every deadline that is due at ``now`` (RFC 9293 §3.10.8)."""
        for timer in self._timers.expired(now):
            st = self.state
            if timer is Timer.CONNECT:
                if st is State.SYN_SENT or st is State.SYN_RECEIVED:
                    self._give_up("connect", now)
                    return
            elif timer is Timer.CLOSE:
                if st is State.TIME_WAIT:
                    self._enter_closed(Cause.TIME_WAIT_EXPIRED, now)  # MUST-13: 2*MSL over
                    return
                if st is State.FIN_WAIT_2:
                    self._enter_closed(Cause.TIMEOUT, now)
                    return
            elif timer is Timer.REXMIT:
                self._on_rexmit_timeout(now)
                if self.state is State.CLOSED:
                    return
            elif timer is Timer.LOSS:
                self._on_loss_timer(now)
            elif timer is Timer.PERSIST:
                if self._on_persist_timeout(now):
                    self._give_up("retransmit", now)
            elif timer is Timer.DELACK:
                self._ack_now = True
            elif self._on_keepalive_timeout(now):
                self._give_up("keepalive", now)

    def _on_rexmit_timeout(self, now: float) -> None:
        """RFC 9293 §3.8.3 R1/R2 and RFC 6298 §5.5-5.6 (the rest is in recovery)."""
        cfg = self.config
        rec = self._recovery
        retries = rec.timed_out(now)
        if self.state in SYN_STATES:
            if retries > cfg.syn_retries:
                self._give_up("connect", now)
                return
            if retries == cfg.r1_retries:
                # MUST-22: SYNs are retransmitted "in the general way ...
                # for data retransmissions, including notification of the
                # application layer": the R1 warning (SHLD-9) for SYNs too.
                self._events.append(ev.DeliveryProblem(retries))
            rec.on_syn_timeout()
            self._syn_needed = True
            self._syn_resent = True
            return
        if retries > cfg.r2_retries or rec.past_user_timeout(cfg.user_timeout, now):
            # RFC 9293 §3.8.3 (c): R2 reached, close the connection.
            self._give_up("retransmit", now)
            return
        if retries == cfg.r1_retries:
            # R1 reached: tell the user (SHLD-9); there is no IP layer here
            # to pass "negative advice" to, the host may act on the event.
            self._events.append(ev.DeliveryProblem(retries))
        rec.on_rto(seq_diff(self.snd_max, self.snd_una), self.snd_max)
        # Go-back-N: what followed SND.UNA is resent as the window reopens,
        # which slow start paces.
        self.snd_nxt = self.snd_una

    def _give_up(self, reason: str, now: float) -> None:
        if self.state in (
            State.SYN_RECEIVED,
            State.ESTABLISHED,
            State.FIN_WAIT_1,
            State.CLOSE_WAIT,
            State.CLOSING,
            State.LAST_ACK,
        ):
            # Tell the peer, in case it is still there (as BSD stacks do).
            self._send_reset(now)
        self._events.append(ev.TimedOut(reason, self._soft_error))
        self._enter_closed(Cause.TIMEOUT, now)
