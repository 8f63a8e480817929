"""What every arriving segment shares: header prediction, the handshake options, ACK policy.

:class:`TcpReceiver` adds to :class:`~synack.tcp.sender.TcpSender` the
receive-side machinery that is not itself one of RFC 9293's §3.10.7 steps
(those are :class:`~synack.tcp.arrival.SegmentArrival`'s): header
prediction for in-order data and pure ACKs (the commonest case of §3.10.7.4,
with the full path's outcome), the urgent pointer (§3.10.7.4 sixth step's
bookkeeping), the state transitions (one table, :mod:`synack.tcp.states`),
the options a SYN brings (RFC 7323 window
scale and timestamps, RFC 2018 SACK-permitted, the MSS of §3.7.1), when an
ACK goes out (delayed ACKs §3.8.6.3, replies to unacceptable segments,
RFC 5961 challenge ACKs, both rate-limited), reading (RECEIVE, §3.10.3) and
ICMP errors about our segments (§3.9.2.2, :mod:`synack.tcp.icmp`).

Layer: tcp. Imports synack.errors, synack.wire and the rest of synack.tcp (below connection).
"""

from __future__ import annotations

from typing import ClassVar

from synack.errors import LocalProtocolError
from synack.tcp import events as ev
from synack.tcp.congestion import INITIAL_SSTHRESH, NewReno
from synack.tcp.fastopen import FastOpen
from synack.tcp.icmp import HARD_ERRORS, IcmpError
from synack.tcp.segments import F_ACK, F_PSH
from synack.tcp.sender import TcpSender
from synack.tcp.seq import SEQ_MASK, seq_add, seq_diff, seq_dist, seq_gt, seq_le, seq_lt
from synack.tcp.states import (
    CLOSING,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LAST_ACK,
    RCV_ACK_OF_FIN,
    RCV_ACK_OF_SYN,
    SYN_SENT,
    TIME_WAIT,
    TRANSITION_ROWS,
    Cause,
    State,
)
from synack.tcp.tcb import DEFAULT_MSS, OOW_ACK_INTERVAL, SYN_STATES, TEXT_STATES
from synack.tcp.timestamps import PAWS_IDLE, TS_OPTION_SPACE
from synack.wire.tcp import FASTOPEN_COOKIE_MAX, FASTOPEN_COOKIE_MIN, MAX_WSCALE, TcpSegment

__all__ = ["FAST_STATES", "TcpReceiver"]

# Header prediction (see _fast_path): pure ACKs of data (not of our FIN), in
# the states that can send; in-order data in the states that accept text.
_FAST_ACK_STATES = frozenset(
    {State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.LAST_ACK}
)
FAST_STATES = _FAST_ACK_STATES | TEXT_STATES


class TcpReceiver(TcpSender):
    """A TCB that sends and takes segments in (see the module docstring)."""

    __slots__ = ()
    #: Header prediction takes in-order data that acknowledges new data too
    #: (:meth:`_fast_data_ack`); off: the full path does (the tests compare).
    fast_data_ack: ClassVar[bool] = True

    def receive_segment(self, seg: TcpSegment, now: float) -> None:
        """Process one segment addressed to this connection (RFC 9293 §3.10.7).

        While it is processed, it is what any state change is due to (the
        trigger :class:`~synack.tcp.events.StateChanged` names).
        """
        self._seg_in = seg
        self._segment_arrives(seg, now)
        self._seg_in = None

    def receive_coalesced(self, seg: TcpSegment, segments: int, now: float) -> None:
        """Process ``seg``, the payloads of ``segments`` consecutive in-order
        data segments of the peer that the host merged (stack/gro.py), each of
        which :meth:`coalesce_room` allowed: counted as that many segments
        received, and that many for the delayed-ACK rule (SHLD-19), so an ACK
        is owed at once for two or more, as for the segments one by one.
        RFC 7323 §4.3: ``seg`` carries the first segment's TSval, the one
        TS.Recent would take (of a run, only the first can start at or before
        Last.ACK.sent; the host checks the others' TSvals do not go back).
        SND.WL1 becomes the run's first SEQ (§3.10.7.4 fifth step, for the
        segment it is); a later segment's SEQ lies beyond all of them, so the
        window-update rule decides the same."""
        self._coalesced = segments
        cc = self._cc
        cc.acks = segments  # a run of pure ACKs (arm_ack_run): its RTT samples
        try:
            self.receive_segment(seg, now)
        finally:
            self._coalesced = cc.acks = 1
            cc.ss_credit = 0

    def ack_run_end(self) -> int | None:
        """Whether pure ACKs may now go to TCP as a run (stack/gro.py, ACK
        filtering: the last one standing for all, :meth:`receive_coalesced`)
        with the outcome of each in turn, and the ACK number they must stay
        below (None: none may). Each must be an ACK of new data with nothing
        else to do (§3.10.7.4 fifth step), in a state header prediction takes
        them in, with no loss recovery or SACK scoreboard (where each ACK
        counts), no FIN of ours (whose ACK changes state), no RACK loss probe
        out, no HyStart++ round sampling in CSS or without timestamps (a
        round sampling otherwise: see :meth:`arm_ack_run`); and below
        SND.MAX + 1, or the end of HyStart++'s round (the ACK that ends it
        goes alone)."""
        hs = self._recovery.hystart
        rack = self._rack
        if (
            self.state not in _FAST_ACK_STATES
            or self._fin_seq is not None
            or self._board.ranges
            or self._cc.in_recovery
            or (rack is not None and rack.probe_end is not None)
            or (hs is not None and hs.open and (hs.in_css or not self._ts.ok))
        ):
            return None
        return hs.window_end if hs is not None else (self.snd_max + 1) & 0xFFFFFFFF

    def arm_ack_run(
        self, seq: int, acks: list[int], tsval: int | None, now: float, tsecr: int = 0
    ) -> bool:
        """Whether the run of pure ACKs of ``acks`` (below :meth:`ack_run_end`,
        each ahead of the one before, all with SEG.SEQ ``seq``, one TSecr and
        TSvals from ``tsval`` on that never go back: the host checks) is
        taken as its ACKs one by one would be; if so, the next
        :meth:`receive_coalesced` takes it. SEG.SEQ = RCV.NXT and PAWS
        passed (so each is acceptable), and the congestion window grows as
        much: in slow start (throughout) by min(acked, SMSS) per ACK, which
        the run's ACK is credited with; in NewReno's congestion avoidance by
        at most one SMSS (byte counting). While HyStart++'s round samples
        (RFC 9406 §4.2), each ACK's RTT sample is the one TSecr ``tsecr``
        gives at ``now``, the same for all: the run is taken when those
        samples leave slow start's growth as it is on every ACK
        (HyStart.run_stays_in_slow_start)."""
        una = self.snd_una
        last = acks[-1]
        run = (last - una) & 0xFFFFFFFF
        if seq != self.rcv_nxt or not 0 < (acks[0] - una) & 0xFFFFFFFF < run < 0x80000000:
            return False
        if not self._tsval_plain(tsval, now):
            return False
        tso = self._ts
        cc = self._cc
        if cc.cwnd >= cc.ssthresh:
            return type(cc) is NewReno and cc._ca_acc + run < 2 * cc.cwnd
        if cc.ss_divisor != 1:
            return False
        mss, credit, prev = cc.mss, 0, una
        for ack in acks:
            step = (ack - prev) & 0xFFFFFFFF
            credit += step if step < mss else mss
            prev = ack
        if cc.cwnd + credit >= cc.ssthresh:
            return False
        hs = self._recovery.hystart
        if hs is not None and hs.open:
            rtt = tso.rtt(tsecr, now) if tsecr != 0 else None
            if (
                cc.ssthresh < INITIAL_SSTHRESH  # (then the first ACK drops HyStart++)
                or not hs.run_stays_in_slow_start(rtt, len(acks))
            ):
                return False
        cc.ss_credit = credit
        return True

    def coalesce_room(self, seq: int, ack: int, window: int, tsval: int | None, now: float) -> int:
        """How many octets of in-order data from ``seq`` header prediction
        (:meth:`_fast_path`) takes now from segments with ACK or ACK|PSH, this
        ACK, window and TSval (None: no timestamp option) and no other option:
        the room left in the advertised window, or 0 when such a segment would
        take the full path (anything unusual: the host then gives the segments
        to TCP one by one, untouched)."""
        if (
            seq != self.rcv_nxt
            or ack != self.snd_una
            or self.state not in TEXT_STATES
            or (window << self._snd_wscale) != self.snd_wnd
            or self._cc.in_recovery
            or self._board.ranges
            or self._rcvbuf.has_gaps
            or self._app_closed
            or self._rcv_fin_seq is not None
        ):
            return 0
        if not self._tsval_plain(tsval, now):
            return 0
        return (self._rcv_adv - seq) & 0xFFFFFFFF  # seq_dist

    def _segment_arrives(self, seg: TcpSegment, now: float) -> None:
        raise NotImplementedError  # SEGMENT ARRIVES (synack.tcp.arrival) does this

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
            and self.state in TEXT_STATES
            and not self._fin_received
            and self._window_update_worthwhile()
        ):
            self._ack_now = True
        return data

    def _fast_path(self, seg: TcpSegment, now: float) -> bool:
        """Header prediction (Van Jacobson; RFC 9293 §3.10.7.4 in its commonest case).

        A segment that is exactly the next expected one, carries only ACK
        (and maybe PSH), passes PAWS, leaves the window unchanged and is
        either a pure ACK of new data or in-order data acknowledging nothing
        new, is processed here with the same outcome as the full path;
        anything else returns False and takes the full path.
        """
        if (int(seg.flags) & ~F_PSH) != F_ACK or seg.seq != self.rcv_nxt:
            return False
        window = seg.window << self._snd_wscale
        if self._cc.in_recovery or (
            # A window update goes the full way, but with an ACK of new data,
            # on in-order data or none (_fast_data_ack moves SND.WND as it would).
            window != self.snd_wnd and (seg.ack == self.snd_una or not self.fast_data_ack)
        ):
            return False
        if self._board.ranges:
            return False  # an ACK must trim the scoreboard: the full path does
        opts = seg.options
        if opts.sack_blocks:
            return False  # the scoreboard is the full path's business
        ts = opts.timestamps
        tso = self._ts
        if tso.ok:
            # tso.in_order(ts[0], now), inline (per segment): PAWS has
            # nothing to say, else the full path decides.
            if (
                ts is None
                or not tso.recent_valid
                or (ts[0] - tso.recent) & 0xFFFFFFFF >= 0x80000000
                or now - tso.recent_time > PAWS_IDLE
            ):
                return False
        elif ts is not None:
            return False
        payload = seg.payload
        ack = seg.ack
        snd_una = self.snd_una
        st = self.state
        if payload:
            if (
                st not in TEXT_STATES
                or self._rcvbuf.has_gaps
                or self._app_closed
                or self._rcv_fin_seq is not None
                or len(payload) > (self._rcv_adv - self.rcv_nxt) & 0xFFFFFFFF  # seq_dist
            ):
                return False
            if ack != snd_una:
                # In-order data that also acknowledges new data: a request
                # answering our last reply (keep-alive), one segment per turn.
                return self.fast_data_ack and self._fast_data_ack(seg, ts, window, now)
        else:
            acked = (ack - snd_una) & 0xFFFFFFFF  # seq_dist, inline on the hot path
            if (
                st not in _FAST_ACK_STATES
                or acked == 0
                or acked > (self.snd_max - snd_una) & 0xFFFFFFFF
                # Data only: the ACK of our FIN (one past the buffered data,
                # once sent) changes the state, the full path's business.
                or acked > self._sndbuf.length
            ):
                return False
            if window != self.snd_wnd:
                # A pure ACK of new data that also moves the window (the
                # peer's reader made room: most ACKs of a download).
                return self._fast_data_ack(seg, ts, window, now)
        # Accepted: the common bookkeeping of the full path.
        seq = seg.seq
        timers = self._timers
        self._keepalive_probes = 0
        self._probes_unanswered = 0
        if timers.keepalive is not None:
            timers.keepalive = now + self.config.keepalive_idle
        if ts is not None and seq_le(seq, tso.last_ack_sent):
            tso.recent = ts[0]  # RFC 7323 §4.3 (PAWS passed above)
            tso.recent_time = now
        self.snd_wl1 = seq
        self.snd_wl2 = ack
        if not payload:
            # A pure ACK of new data (fifth step).
            self._data_acked(
                ack,
                acked,
                acked,
                tso.rtt(ts[1], now) if ts is not None and ts[1] != 0 else None,
                now,
            )
            return True
        # In-order data (seventh step) with the delayed-ACK rule.
        n = len(payload)
        rcvbuf = self._rcvbuf
        rcvbuf.insert(0, payload)
        self.rcv_nxt = (seq + n) & 0xFFFFFFFF  # seq_add, inline (per segment)
        self.stats_counters.bytes_in += n
        self._events.append(ev.DataAvailable(rcvbuf.readable))
        self._delay_ack(now)
        return True

    def _fast_data_ack(
        self, seg: TcpSegment, ts: tuple[int, int] | None, window: int, now: float
    ) -> bool:
        """:meth:`_fast_path`'s in-order data (checked by it) that acknowledges
        new data too, or a pure ACK of new data with a new window, when the
        full path would do nothing else with it: the
        fifth step as a pure ACK's (SND.UNA moves, RTT sample) with the send
        window ``window`` (scaled) as _update_send_window sets it, then the seventh
        as in-order data's, in the full path's order (so its events too).
        RACK's step after an ACK (_rack_detect) is skipped only where it
        would change nothing: no losses marked, no reordering timer, the loss
        timer already at the probe's deadline. Anything else: False, the full
        path (tests/tcp/test_fast_data_ack.py runs both on the same segments)."""
        ack = seg.ack
        snd_una = self.snd_una
        acked = (ack - snd_una) & 0xFFFFFFFF  # seq_dist
        seq = seg.seq
        wl1 = self.snd_wl1
        rack = self._rack
        if (
            self.state not in _FAST_ACK_STATES
            or acked > (self.snd_max - snd_una) & 0xFFFFFFFF
            or self._fin_seq is not None
            or acked > self._sndbuf.length
            # _update_send_window's test (seq_lt(wl1, seq) or wl1 == seq and
            # seq_le(wl2, ack)), for WL1/WL2 set as it would set them.
            or not (
                (wl1 - seq) & 0xFFFFFFFF >= 0x80000000
                or (
                    wl1 == seq
                    and (ack == self.snd_wl2 or (self.snd_wl2 - ack) & 0xFFFFFFFF >= 0x80000000)
                )
            )
            or (
                rack is not None
                and (rack.lost or rack.deadline is not None or self._timers.loss != rack.pto_at)
            )
        ):
            return False
        tso = self._ts
        self._acceptable(now)
        self._data_acked(
            ack, acked, acked, tso.rtt(ts[1], now) if ts is not None and ts[1] != 0 else None, now
        )
        self._update_send_window(seq, ack, window)  # (its test holds: checked above)
        # seq_le(seq, Last.ACK.sent), inline.
        last = tso.last_ack_sent
        if ts is not None and (seq == last or (seq - last) & 0xFFFFFFFF >= 0x80000000):
            tso.recent = ts[0]  # RFC 7323 §4.3 (PAWS passed in _fast_path)
            tso.recent_time = now
        payload = seg.payload
        if not payload:
            return True  # a pure ACK: no seventh step
        n = len(payload)
        rcvbuf = self._rcvbuf
        rcvbuf.insert(0, payload)
        self.rcv_nxt = (seq + n) & 0xFFFFFFFF  # seq_add
        self.stats_counters.bytes_in += n
        self._events.append(ev.DataAvailable(rcvbuf.readable))
        self._delay_ack(now)
        return True

    def _delay_ack(self, now: float) -> None:
        """In-order data: SHLD-19, an ACK for at least every second segment; else MUST-40."""
        if not self.config.delayed_ack:
            self._ack_now = True
        else:
            self._delack_segments += self._coalesced
            if self._delack_segments >= 2:
                self._ack_now = True
            elif self._timers.delack is None:
                # A delayed ACK, under 0.5 s (MUST-40).
                self._timers.delack = now + self.config.delayed_ack_timeout

    def _take_syn(self, syn: TcpSegment, now: float) -> None:
        """Record the peer's SYN: IRS, RCV.NXT and the options it offers."""
        cfg = self.config
        self.irs = seq = syn.seq
        self.rcv_nxt = (seq + 1) & SEQ_MASK  # seq_add, inline (once per connection)
        opts = syn.options
        mss = opts.mss if opts.mss is not None and opts.mss > 0 else DEFAULT_MSS
        # A tiny MSS (even 0 or 1) is raised to the floor (TcpConfig.min_peer_mss).
        if mss < cfg.min_peer_mss:
            mss = cfg.min_peer_mss
        wscale = opts.wscale
        if cfg.window_scale and wscale is not None:
            self._wscale_agreed = True
            # RFC 7323 §2.3: a shift over 14 is taken as 14.
            self._snd_wscale = wscale if wscale < MAX_WSCALE else MAX_WSCALE
            self._rcv_wscale = self._rcv_wscale_offer
        else:
            self._wscale_agreed = False
            self._snd_wscale = 0
            self._rcv_wscale = 0
        self._sack_ok = cfg.sack and opts.sack_permitted
        rack_on = self._sack_ok and cfg.loss_detection == "rack"
        self._recovery.rack_on = rack_on
        self._rack = self._recovery.rack if rack_on else None
        self._ts.agree(cfg.timestamps, opts.timestamps, now)
        # Eff.snd.MSS (RFC 9293 §3.7.1 MUST-16), less the timestamp option.
        eff = mss if mss < cfg.mss else cfg.mss
        if self._ts.ok:
            eff -= TS_OPTION_SPACE
        self._snd_mss = eff if eff > 1 else 1
        self._cc.set_mss(self._snd_mss)
        # RFC 7323 §2.2: the SYN's window is never scaled.
        self.snd_wnd = window = syn.window
        if window > self._max_snd_wnd:
            self._max_snd_wnd = window
        self.snd_wl1 = seq
        if self.state is SYN_SENT:
            # What our SYN offered is the window until we say otherwise.
            self._rcv_adv = seq_add(self.rcv_nxt, self._syn_window)
            if self._tfo is not None and syn.flags & F_ACK:
                self._fastopen_synack(syn)

    # ------------------------------------------------------------------
    # TCP Fast Open (RFC 7413 §4.2; the cookies are synack.tcp.fastopen's)

    def _fastopen_accept(self, syn: TcpSegment, fo: FastOpen | None, now: float) -> None:
        """Server, SYN-RECEIVED: the host checked the SYN's cookie (``fo.accepted``):
        its data is the application's at once and our SYN-ACK acknowledges it."""
        self._tfo = fo
        if fo is None or not fo.accepted or not syn.payload:
            return  # no cookie or a bad one: the data is ignored, the client resends it
        data = syn.payload[: self._rcvbuf.free]
        n = self._rcvbuf.insert(0, data)
        self.rcv_nxt = seq_add(self.rcv_nxt, n)
        self.stats_counters.bytes_in += n
        self._events.append(ev.DataAvailable(self._rcvbuf.readable))

    def _fastopen_synack(self, seg: TcpSegment) -> None:
        """Client, SYN-SENT: the SYN-ACK to a Fast Open SYN (RFC 7413 §4.2.1).

        Data it acknowledges leaves the send buffer; the rest, if any, is sent
        again after the handshake as new data (the server ignored it).
        """
        fo = self._tfo
        assert fo is not None
        fo.synack_seen = True
        fo.peer_mss = seg.options.mss
        cookie = seg.options.fastopen
        if cookie and FASTOPEN_COOKIE_MIN <= len(cookie) <= FASTOPEN_COOKIE_MAX:
            fo.cookie_received = cookie
        acked = seq_diff(seg.ack, seq_add(self.iss, 1))
        if acked > 0:
            self._sndbuf.drop(acked)
        fo.data_acked = fo.syn_data > 0 and acked == fo.syn_data
        self.snd_nxt = self.snd_max = seg.ack

    def _on_established(self, now: float) -> None:
        """The handshake is complete (SYN-SENT or SYN-RECEIVED -> ESTABLISHED)."""
        self._events.append(ev.Connected())
        if self._syn_resent and self._rtt.srtt is None:
            # RFC 6298 §5.7: the SYN (or SYN,ACK) timed out and no RTT was
            # measured: data transmission starts with an RTO of 3 s.
            self._rtt.restart(3.0)
        if self._close_deferred:
            self._close_deferred = False
            self._fin_queued = True
            self._set_state(State.FIN_WAIT_1, Cause.CLOSE, now)
        if self.config.keepalive:
            self._timers.keepalive = now + self.config.keepalive_idle

    def _on_fin_acked(self, now: float) -> None:
        """Fifth step, FIN-WAIT-1 / CLOSING / LAST-ACK: our FIN is acknowledged."""
        st = self.state
        if st is FIN_WAIT_1:
            self._set_state(FIN_WAIT_2, RCV_ACK_OF_FIN, now)
            if self._app_closed:
                self._timers.close = now + self.config.fin_wait_2_timeout
        elif st is CLOSING:
            self._enter_time_wait(RCV_ACK_OF_FIN, now)
        elif st is LAST_ACK:
            self._enter_closed(RCV_ACK_OF_FIN, now)
        self._timers.rexmit = None

    def _syn_acked(
        self, seq: int, ack: int, raw_window: int, ts: tuple[int, int] | None, now: float
    ) -> None:
        """§3.10.7.4 fifth step in SYN-RECEIVED, an acceptable ACK (SND.UNA <
        SEG.ACK =< SND.NXT): ESTABLISHED, with SND.WND/WL1/WL2 from the segment."""
        self._recovery.on_syn_acked(ack, self._ts_rtt(ts, now), now)
        # (seq_add and seq_gt inline: once per connection.) SND.UNA: and data
        # sent since, if any (RFC 7413): below.
        self.snd_una = (self.iss + 1) & SEQ_MASK
        if ((self.snd_nxt - ack) & SEQ_MASK) >= 0x80000000:
            self.snd_nxt = ack
        timers = self._timers
        timers.rexmit = None
        timers.connect = None
        self._set_state(ESTABLISHED, RCV_ACK_OF_SYN, now)
        self.snd_wnd = window = raw_window << self._snd_wscale
        if window > self._max_snd_wnd:
            self._max_snd_wnd = window
        self.snd_wl1 = seq
        self.snd_wl2 = ack
        self._on_established(now)
        self._fastopen_acked(ack, now)

    def _handshake_ack(self, seg: TcpSegment, now: float) -> bool:
        """The handshake's last ACK in SYN-RECEIVED, in its commonest form.

        A bare ACK (maybe PSH) at RCV.NXT that acknowledges our SYN, passes
        PAWS and carries timestamps exactly when they were agreed, with no
        Fast Open or queued SYN text, takes the steps of §3.10.7.4 that apply
        to it with the same outcome as the full path (first step acceptable,
        fifth step :meth:`_syn_acked`, TS.Recent per RFC 7323 §4.3; nothing
        for the sixth to eighth); anything else returns False and goes the
        full way (tests/tcp/test_handshake_fast_path.py runs both).
        """
        if (
            (int(seg.flags) & ~F_PSH) != F_ACK
            or seg.payload
            or seg.seq != self.rcv_nxt
            or self._tfo is not None
            or self._syn_text is not None
            or self._rcv_fin_seq is not None
        ):
            return False
        ack = seg.ack
        # seq_lt(SND.UNA, ack) and seq_le(ack, SND.MAX), inline.
        if not (
            ((self.snd_una - ack) & SEQ_MASK) >= 0x80000000
            and (ack == self.snd_max or ((ack - self.snd_max) & SEQ_MASK) >= 0x80000000)
        ):
            return False  # the full path answers it with a RST
        ts = seg.options.timestamps
        tso = self._ts
        # _tsval_plain, inline: timestamps when agreed, in order (PAWS), else none.
        if (ts is None or not tso.in_order(ts[0], now)) if tso.ok else ts is not None:
            return False
        self._acceptable(now)  # first step: a zero-length segment at RCV.NXT
        seq = seg.seq
        self._syn_acked(seq, ack, seg.window, ts, now)
        if ts is not None:
            self._ts.update_recent(seq, ts[0], now)  # RFC 7323 §4.3
        return True

    def _tsval_plain(self, tsval: int | None, now: float) -> bool:
        """A segment's TSval (None: no timestamp option) leaves nothing for
        the full path to decide: present when agreed and PAWS (RFC 7323 §5.3)
        has nothing to say (as _fast_path tests it), absent when not agreed.
        The handshake ACK's and the FIN's fast paths test the same inline."""
        tso = self._ts
        if not tso.ok:
            return tsval is None
        return tsval is not None and tso.in_order(tsval, now)

    def _acceptable(self, now: float) -> None:
        """§3.10.7.4 first step, an acceptable segment: the peer is alive."""
        self._keepalive_probes = 0
        self._probes_unanswered = 0
        timers = self._timers
        if timers.keepalive is not None:
            timers.keepalive = now + self.config.keepalive_idle

    def _fastopen_acked(self, ack: int, now: float) -> None:
        """Server, SYN-RECEIVED -> ESTABLISHED (SND.UNA is past our SYN): the ACK
        may cover data sent before the handshake completed (RFC 7413 §4.2.2)."""
        n = seq_diff(ack, self.snd_una)
        if n > 0:
            self._data_acked(ack, n, n, None, now)
        elif self.snd_max != ack:
            self._timers.rexmit = now + self._rtt.rto

    def _note_dsack(self, seq: int, n: int, *, clip: bool = True) -> None:
        """RFC 2883: ``n`` duplicate octets at ``seq`` lead the next SACK option.

        ``clip``: the duplicate is old data (below RCV.NXT, §4 case 1); else
        it is out-of-order data held already (§4 case 2, above RCV.NXT).
        """
        if self._sack_ok and n > 0:
            end = seq_add(seq, n)
            if clip and seq_gt(end, self.rcv_nxt):
                end = self.rcv_nxt
            self._dsack = (seq, end)
            self._ack_now = True

    def _note_held_duplicate(self, seq: int) -> None:
        """The segment at ``seq`` repeated out-of-order data held already: D-SACK it.

        RFC 2883 §4 (with RFC 2018 §4's most recent block next): its first
        held run leads the next SACK option, the block holding it follows.
        """
        dup = self._rcvbuf.duplicate
        if dup is not None:
            self._note_dsack(seq_add(seq, dup[0]), dup[1], clip=False)

    def _queue_syn_text(self, text: bytes, fin: bool) -> None:
        """§3.10.7.3: text (and FIN) on a SYN waits for ESTABLISHED, trimmed to our window."""
        room = seq_dist(self._rcv_adv, self.rcv_nxt)
        if len(text) > room:
            text = text[:room]
            fin = False
        if text or fin:
            self._syn_text = (text, fin)

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

    def _check_urg(self, up: int) -> None:
        """§3.10.7.4 sixth step: RCV.UP <- max(RCV.UP, SEG.UP), and tell the user once.

        MUST-62: SEG.UP points at the first non-urgent octet. MUST-31: any
        length (the pointer may lie beyond the data received so far).
        MUST-32: UrgentData is reported when urgent data starts to be
        pending, not again for the same run while it is unread. The urgent
        octets stay in line; ``urgent_pending`` says how many are unread.
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

    # ------------------------------------------------------------------
    # Transitions

    def icmp_error(self, kind: IcmpError, seq: int, now: float) -> bool:
        """An ICMP error quoting our segment at ``seq`` arrived (RFC 9293 §3.9.2.2, MUST-54).

        Returns whether it was acted on. See :mod:`synack.tcp.icmp` for what
        each kind does: soft errors are kept (SHLD-25, MUST-56), hard ones
        abort a connection being opened (SHLD-26), Source Quench is ignored
        (MUST-55); ``seq`` must lie in [SND.UNA, SND.MAX) (RFC 5927 §4.1).
        """
        st = self.state
        if kind is IcmpError.SOURCE_QUENCH or st in (State.CLOSED, State.LISTEN):
            self._drop("icmp-ignored")
            return False
        if not (seq_le(self.snd_una, seq) and seq_lt(seq, self.snd_max)):
            self._drop("icmp-out-of-window")
            return False
        if kind not in HARD_ERRORS or st not in SYN_STATES:
            self._soft_error = kind.value  # RFC 5927 §4.1: soft once synchronized
            return True
        if not self._passive:  # a passive child is simply forgotten (Closed)
            self._events.append(ev.ConnectionRefused(kind.value))
        self._enter_closed(Cause.ABORT, now)
        return True

    def _enter_time_wait(self, cause: Cause, now: float) -> None:
        self._set_state(TIME_WAIT, cause, now)
        timers = self._timers
        # Nothing of ours is left to retransmit or probe (RACK's loss/TLP timer
        # included): the only deadline is the end of TIME-WAIT.
        timers.rexmit = timers.persist = timers.keepalive = timers.loss = None
        # MUST-13: stay 2*MSL.
        timers.close = now + 2 * self.config.msl

    def _return_to_listen(self, cause: Cause, now: float) -> None:
        self._set_state(State.LISTEN, cause, now)
        self._timers.stop_all()
        self._sndbuf.clear()
        self._events.append(ev.Closed())

    def _enter_closed(self, cause: Cause, now: float) -> None:
        self._set_state(State.CLOSED, cause, now)
        self._timers.stop_all()
        self._ack_now = False
        self._syn_needed = False
        self._recovery.rexmit_one = False
        self._events.append(ev.Closed())

    def _set_state(self, new: State, cause: Cause, now: float) -> None:
        old = self.state
        if (old, cause, new) not in TRANSITION_ROWS:  # is_transition, without the call
            # A bug in this module, never something a peer can cause.
            raise AssertionError(f"no transition {old} --{cause}--> {new}")
        self.state = new
        self._transitions.append((now, old, new, cause))
        if self.report_states:
            self._events.append(ev.StateChanged.caused_by(old, new, cause, now, self._seg_ref()))
