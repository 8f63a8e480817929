"""SEGMENT ARRIVES (RFC 9293 §3.10.7): what a segment for this connection does,
state by state.

:class:`SegmentArrival` is the part of :class:`~synack.tcp.connection.TcpConnection`
that takes a segment: CLOSED (§3.10.7.1), SYN-SENT (§3.10.7.3) and the
synchronized states (§3.10.7.4: the sequence test, RST, SYN, ACK, URG, text and
FIN steps in order), after the shortcuts the receiver offers (header
prediction, a bare FIN in sequence, the handshake's last ACK). The user calls
and the timeouts stay in :mod:`synack.tcp.connection`, which extends this
class; the TCB, the output and the shared receive machinery are the layers
below (:mod:`synack.tcp.tcb`, :mod:`synack.tcp.sender`, :mod:`synack.tcp.receiver`).

Layer: tcp. Imports synack.errors, synack.wire and the rest of synack.tcp.
"""

from __future__ import annotations

from synack.tcp import events as ev
from synack.tcp.receiver import FAST_STATES, TcpReceiver
from synack.tcp.segments import (
    F_ACK,
    F_FIN,
    F_PSH,
    F_RST,
    F_SYN,
    F_URG,
    reply_when_closed,
)
from synack.tcp.seq import in_window, seq_add, seq_diff, seq_gt, seq_le, seq_lt
from synack.tcp.states import (
    CLOSE_WAIT,
    CLOSED,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LISTEN,
    RCV_FIN,
    SYN_RECEIVED,
    SYN_SENT,
    SYNCHRONIZED,
    Cause,
    State,
)
from synack.tcp.tcb import TEXT_STATES
from synack.wire.tcp import TcpSegment

__all__ = ["RESET_STATES", "SegmentArrival"]

# Where unread data makes a CLOSE send RST, and where an acceptable RST tells the
# user "connection reset" (§3.10.4, §3.10.7.4 second step).
RESET_STATES = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT})
# Where the peer's FIN in sequence may take _fin_arrives (TIME-WAIT's own rule comes first).
_FIN_STATES = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})


class SegmentArrival(TcpReceiver):
    """A connection's input: RFC 9293 §3.10.7, SEGMENT ARRIVES."""

    __slots__ = ()

    # ------------------------------------------------------------------
    # SEGMENT ARRIVES (§3.10.7)

    def _segment_arrives(self, seg: TcpSegment, now: float) -> None:
        """Process one segment addressed to this connection (RFC 9293 §3.10.7)."""
        self.stats_counters.segments_in += self._coalesced
        if seg.src_port != self._rport or seg.dst_port != self._lport:
            self._drop("wrong-ports")
            return
        st = self.state
        if st is CLOSED:
            self._segment_arrives_closed(seg)
        elif st is LISTEN:
            self._drop("listen")  # §3.10.7.2 is the host's listener (accept_syn)
        elif (st in FAST_STATES and (self._fast_path(seg, now) or self._fin_arrives(seg, now))) or (
            st is SYN_RECEIVED and self._handshake_ack(seg, now)
        ):
            return  # header prediction, a bare FIN, the handshake's last ACK
        elif st is SYN_SENT:
            self._segment_arrives_syn_sent(seg, now)
        else:
            self._segment_arrives_other(seg, now)

    def _fin_arrives(self, seg: TcpSegment, now: float) -> bool:
        """The peer's FIN alone (with ACK, maybe PSH) at RCV.NXT in ESTABLISHED
        or FIN-WAIT-*, its timestamps in order: the steps of §3.10.7.4 that
        apply to it (first acceptable, fifth _check_ack, TS.Recent, eighth
        _check_fin) without the others' tests, with the full path's outcome
        (tests/tcp/test_handshake_fast_path.py runs both). False: the full way.
        """
        st = self.state
        seq = seg.seq
        if (
            (int(seg.flags) & ~F_PSH) != F_ACK | F_FIN
            or seg.payload
            or seq != self.rcv_nxt
            or st not in _FIN_STATES
            # seq_diff(RCV.ADV, seq) <= 0, inline: no room, the first step says no.
            or (seq - self._rcv_adv) & 0xFFFFFFFF <= 0x80000000
        ):
            return False
        opts = seg.options
        ts = opts.timestamps
        tso = self._ts
        # _tsval_plain, inline: timestamps when agreed, in order (PAWS), else none.
        if (ts is None or not tso.in_order(ts[0], now)) if tso.ok else ts is not None:
            return False
        self._acceptable(now)
        # _check_ack's fifth step for a synchronized state (the ACK bit is set).
        if not self._process_ack(seg.ack, seq, seg.window, 1, ts, now, opts.sack_blocks) or (
            self.state is CLOSED
        ):
            return True
        if ts is not None:
            self._ts.update_recent(seq, ts[0], now)  # RFC 7323 §4.3
        self._check_fin(seq, 0, True, now)
        return True

    def _segment_arrives_closed(self, seg: TcpSegment) -> None:
        """RFC 9293 §3.10.7.1: all data discarded; anything but a RST answered with one."""
        reply = reply_when_closed(seg)
        self._drop("closed")
        if reply is not None:
            self.stats_counters.rsts_out += 1
            self._out.append(reply)

    def _segment_arrives_syn_sent(self, seg: TcpSegment, now: float) -> None:
        """RFC 9293 §3.10.7.3 SYN-SENT: ACK bit, RST bit, (security,) SYN bit, else drop.

        A SYN,ACK enters ESTABLISHED; a SYN alone is a simultaneous open
        (MUST-10) and enters SYN-RECEIVED.
        """
        flags = int(seg.flags)
        has_ack = bool(flags & F_ACK)
        # First, check the ACK bit: <SEQ=SEG.ACK><CTL=RST> for a bad one.
        if has_ack and (seq_le(seg.ack, self.iss) or seq_gt(seg.ack, self.snd_max)):
            if not flags & F_RST:
                self._reset_for(seg.ack, now)
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
        # Third, security: no IP security options here (§3.10.7.3 allows
        # ignoring them). Fourth, the SYN bit; fifth, without it, drop.
        if not flags & F_SYN:
            self._drop("no-syn")
            return
        self._take_syn(seg, now)
        if has_ack:
            self._recovery.on_syn_acked(seg.ack, self._ts_rtt(seg.options.timestamps, now), now)
            self.snd_una = seg.ack
            self.snd_wl2 = seg.ack
            self._timers.rexmit = None
            self._timers.connect = None
            self._set_state(State.ESTABLISHED, Cause.RCV_SYN_ACK, now)
            self._on_established(now)
            self._ack_now = True
            # Data or FIN in the SYN-ACK: "continue processing at the sixth
            # step" (segment text and FIN), beyond the SYN's octet.
            if seg.payload or flags & F_FIN:
                seq = seq_add(seg.seq, 1)
                if self._process_segment_text(seq, seg.payload, now):
                    self._check_fin(seq, len(seg.payload), bool(flags & F_FIN), now)
        else:
            # Simultaneous open (Figure 7): SYN-RECEIVED, send SYN,ACK. Text
            # (and FIN) on the SYN waits for ESTABLISHED (§3.10.7.3).
            self._queue_syn_text(seg.payload, bool(flags & F_FIN))
            self._set_state(State.SYN_RECEIVED, Cause.RCV_SYN, now)
            self._syn_needed = True
            self._timers.rexmit = None
            self._recovery.retries = 0

    def _segment_arrives_other(self, seg: TcpSegment, now: float) -> None:
        """RFC 9293 §3.10.7.4: SYN-RECEIVED and the synchronized states, step by step.

        Before the steps: a retransmitted FIN in TIME-WAIT, a duplicate SYN in
        SYN-RECEIVED, PAWS (RFC 7323 §5.3). Then first
        :meth:`_check_sequence_number`, second :meth:`_check_rst`, third
        security (nothing to check here), the trim to the window, fourth
        :meth:`_check_syn`, fifth :meth:`_check_ack`, TS.Recent (RFC 7323
        §4.3), sixth :meth:`_check_urg`, seventh :meth:`_process_segment_text`,
        eighth :meth:`_check_fin`. ACKs are only requested here and leave with
        the next flush, so a burst of segments is acknowledged once (MUST-58/59).
        """
        st = self.state
        flags = int(seg.flags)
        seq = seg.seq
        payload = seg.payload
        rcv_nxt = self.rcv_nxt
        # TIME-WAIT: the only thing expected is a retransmitted FIN; ACK it
        # and restart the 2MSL wait (§3.10.7.4 eighth step, TIME-WAIT).
        if (
            st is State.TIME_WAIT
            and flags & F_FIN
            and not flags & (F_RST | F_SYN)
            and seq_add(seq, len(payload) + 1) == rcv_nxt
        ):
            self._ack_now = True
            self._timers.close = now + 2 * self.config.msl
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
        if flags & F_SYN and not flags & F_RST and st is not State.SYN_RECEIVED:
            # §3.10.7.4 fourth step, RFC 5961 §4.2: a SYN in a synchronized
            # state gets a challenge ACK "irrespective of the sequence
            # number" (so one straddling RCV.NXT is not trimmed as old).
            self._challenge_ack(now)
            return
        ts = seg.options.timestamps
        tso = self._ts
        # PAWS (RFC 7323 §5.3 R1-R3), before the sequence check.
        if (
            tso.ok
            and ts is not None
            and not flags & F_RST
            and tso.recent_valid
            and tso.paws_rejects(ts[0], now)
        ):
            self._drop("paws")
            self._reply_to_unacceptable(now)
            return
        seg_len = len(payload) + (1 if flags & F_SYN else 0) + (1 if flags & F_FIN else 0)
        rcv_wnd = seq_diff(self._rcv_adv, rcv_nxt)
        if rcv_wnd < 0:
            rcv_wnd = 0
        start = seq_diff(seq, rcv_nxt)  # offset of the segment from RCV.NXT
        if not self._check_sequence_number(seg, seq, flags, start, seg_len, rcv_wnd, ts, now):
            return
        if flags & F_RST:
            self._check_rst(seq, now)
            return
        # Third, check security: there is no IP security option to compare.
        # Trim to the window (the first step's "idealized segment"): old
        # octets at the front (a SYN among them), octets beyond the right
        # edge (a FIN among them) at the back.
        fin = bool(flags & F_FIN)
        if start < 0:
            cut = -start
            if flags & F_SYN:
                flags &= ~F_SYN
                cut -= 1
            self._note_dsack(seq_add(rcv_nxt, -cut), min(cut, len(payload)))
            payload = payload[cut:]
            seq = rcv_nxt
            start = 0
        room = rcv_wnd - start
        if len(payload) > room:
            payload = payload[:room]
            fin = False
        if flags & F_SYN:
            self._check_syn(now)
            return
        if not self._check_ack(seg, seq, seg_len, ts, syn_dup, now):
            return
        if tso.ok and ts is not None:
            tso.update_recent(seq, ts[0], now)  # RFC 7323 §4.3
        if flags & F_URG and seg.urgent and self.state in TEXT_STATES:
            self._check_urg(seq_add(seg.seq, seg.urgent))
        if (payload or fin) and self._process_segment_text(seq, payload, now):
            self._check_fin(seq, len(payload), fin, now)

    def _check_sequence_number(
        self,
        seg: TcpSegment,
        seq: int,
        flags: int,
        start: int,
        seg_len: int,
        rcv_wnd: int,
        ts: tuple[int, int] | None,
        now: float,
    ) -> bool:
        """§3.10.7.4 first step: Table 6's acceptability test; False when the segment is done.

        An unacceptable segment is answered with an ACK unless it is a RST
        (rate-limited when it carries nothing, see _reply_to_unacceptable);
        with a zero window the ACK field and URG of an in-sequence segment
        are still processed ("special allowance", MUST-66).
        """
        if in_window(start, seg_len, rcv_wnd):
            self._acceptable(now)
            return True
        if flags & F_RST:
            self._drop("rst-out-of-window")  # RFC 5961 §3.2 check 1
            return False
        # RFC 9293 §3.8.6.1: even a zero window answers probes with an ACK.
        # A zero-window probe is not acceptable, so it lands here too.
        self._drop("out-of-window" if seg_len else "old-ack")
        if seg_len:
            self._ack_now = True
            if start < 0:
                self._note_dsack(seq, len(seg.payload))  # RFC 2883: a duplicate
        else:
            self._reply_to_unacceptable(now)
        if rcv_wnd == 0 and start == 0 and flags & F_ACK and self.state in SYNCHRONIZED:
            self._process_ack(seg.ack, seq, seg.window, seg_len, ts, now)
            if flags & F_URG and seg.urgent and self.state in TEXT_STATES:
                self._check_urg(seq_add(seg.seq, seg.urgent))
        return False

    def _check_rst(self, seq: int, now: float) -> None:
        """§3.10.7.4 second step, with RFC 5961 §3.2 (an in-window RST).

        SEG.SEQ = RCV.NXT resets the connection (MUST, check 2); anywhere
        else in the window it earns a challenge ACK (check 3). SYN-RECEIVED
        goes back to LISTEN when it came from there (passive OPEN) or
        reports "connection refused" (active), as MUST-11 asks; ESTABLISHED,
        FIN-WAIT-*, CLOSE-WAIT report "connection reset" (MUST-12); the rest
        just close.
        """
        if seq != self.rcv_nxt:
            self._challenge_ack(now)
            return
        st = self.state
        if st is State.SYN_RECEIVED:
            if self._passive:
                self._return_to_listen(Cause.RCV_RST, now)
            else:
                self._events.append(ev.ConnectionRefused())
                self._enter_closed(Cause.RCV_RST, now)
            return
        if st in RESET_STATES:
            self._events.append(ev.ConnectionReset())
        self._sndbuf.clear()
        self._enter_closed(Cause.RCV_RST, now)

    def _check_syn(self, now: float) -> None:
        """§3.10.7.4 fourth step (RFC 5961 §4.2): a SYN in the window.

        SYN-RECEIVED from a passive OPEN returns to LISTEN (MUST-11); in the
        synchronized states a challenge ACK answers it instead of a reset.
        """
        if self.state is State.SYN_RECEIVED and self._passive:
            self._return_to_listen(Cause.RCV_SYN, now)
        else:
            self._challenge_ack(now)

    def _check_ack(
        self,
        seg: TcpSegment,
        seq: int,
        seg_len: int,
        ts: tuple[int, int] | None,
        syn_dup: bool,
        now: float,
    ) -> bool:
        """§3.10.7.4 fifth step; False when the segment is done with.

        No ACK bit: drop. SYN-RECEIVED: an ACK of our SYN enters ESTABLISHED
        and takes SND.WND/WL1/WL2 from the segment; any other ACK gets
        <SEQ=SEG.ACK><CTL=RST>. Synchronized states: _process_ack.
        """
        if not int(seg.flags) & F_ACK:
            self._drop("no-ack")
            return False
        ack = seg.ack
        if self.state is not SYN_RECEIVED:
            if not self._process_ack(
                ack, seq, seg.window, seg_len, ts, now, seg.options.sack_blocks
            ):
                return False
            return self.state is not CLOSED
        if not (seq_lt(self.snd_una, ack) and seq_le(ack, self.snd_max)):
            self._reset_for(ack, now)
            self._drop("unacceptable-ack")
            return False
        self._syn_acked(seq, ack, seg.window, ts, now)
        if self._syn_text is not None:
            text, fin = self._syn_text
            self._syn_text = None
            start = seq_add(self.irs, 1)
            if self._process_segment_text(start, text, now):
                self._check_fin(start, len(text), fin, now)
        if syn_dup:
            self._ack_now = True
        return True

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
        """Fifth step for synchronized states; False when the segment is to be dropped.

        RFC 5961 §5.2: acceptable ACKs lie in [SND.UNA - MAX.SND.WND,
        SND.NXT]; one of unsent data is answered with an ACK, an older one
        with a challenge ACK. New data acknowledged and duplicates go to
        loss recovery; then the send window is updated.
        """
        snd_una = self.snd_una
        if (self.snd_max - ack) & 0xFFFFFFFF >= 0x80000000:  # seq_gt(ack, SND.MAX), inline
            self._drop("ack-of-unsent")
            self._ack_now = True
            return False
        if (ack - snd_una + self._max_snd_wnd) & 0xFFFFFFFF >= 0x80000000:  # seq_lt, seq_add
            self._drop("ack-too-old")
            self._challenge_ack(now)
            return False
        window = raw_window << self._snd_wscale
        acked = ((ack - snd_una + 0x80000000) & 0xFFFFFFFF) - 0x80000000  # seq_diff, inline
        rec = self._recovery
        # RFC 6675 §5: "Upon the receipt of any ACK containing SACK
        # information, the scoreboard MUST be updated via the Update ()
        # routine" (before the duplicate-ACK rules look at it).
        new_sacked = (
            self._board.update(sacks, snd_una, self.snd_max) if sacks and self._sack_ok else 0
        )
        if acked > 0:
            # New data acknowledged.
            sndbuf = self._sndbuf
            data_acked = acked
            fin_now_acked = False
            fin_seq = self._fin_seq
            if fin_seq is not None and (fin_seq - ack) & 0xFFFFFFFF >= 0x80000000:  # seq_gt
                data_acked -= 1
                fin_now_acked = not self._fin_acked
                self._fin_acked = True
            if data_acked > sndbuf.length:
                data_acked = sndbuf.length  # a window probe's octet, or defensive
            self._data_acked(ack, data_acked, acked, self._ts_rtt(ts, now), now)
            if fin_now_acked:
                self._on_fin_acked(now)
                if self.state is CLOSED:
                    return False
        elif self._sack_ok:
            if acked == 0 and seg_len == 0 and seq_diff(self.snd_max, snd_una) > 0:
                rec.on_sack_dupack(
                    ack,
                    new_sacked,
                    bool(sacks),
                    window == self.snd_wnd,
                    snd_una,
                    self.snd_max,
                    self._snd_mss,
                )
        elif (
            acked == 0
            and seg_len == 0
            and seq_diff(self.snd_nxt, snd_una) > 0
            and window == self.snd_wnd
        ):
            # RFC 5681 §2 duplicate ACK: no data, same ACK, same window,
            # data outstanding (a zero-window probe's octet does not count).
            rec.on_dupack(ack, seq_diff(self.snd_max, snd_una), self.snd_max)
        if self._rack is not None:  # RFC 8985 §6.2, RFC 6937, RFC 2883 (not on the fast path)
            self._rack_detect(acked if acked > 0 else 0, sacks, now)
        self._update_send_window(seq, ack, window)
        return True

    def _process_segment_text(self, seq: int, payload: bytes, now: float) -> bool:
        """§3.10.7.4 seventh step: deliver the text; False when the segment is done with.

        Only ESTABLISHED and FIN-WAIT-* take text (the other states have seen
        the peer's FIN); after close(), data is answered with RST (SHLD-3).
        Out-of-order octets are held for later (SHLD-31).
        """
        if not payload:
            return True
        if self.state not in TEXT_STATES:
            self._drop("text-after-fin")
            return False
        if self._app_closed:
            self._send_reset(now)
            self._enter_closed(Cause.DATA_AFTER_CLOSE, now)
            return False
        rcvbuf = self._rcvbuf
        offset = seq_diff(seq, self.rcv_nxt)
        if offset < 0:  # text queued from a SYN went first (§3.10.7.3)
            payload = payload[-offset:]
            offset = 0
            if not payload:
                return True
        gaps_before = rcvbuf.has_gaps
        advanced = rcvbuf.insert(offset, payload)
        if gaps_before and rcvbuf.duplicate is not None:
            self._note_held_duplicate(seq)  # RFC 2883 §4
        if advanced:
            self.rcv_nxt = seq_add(self.rcv_nxt, advanced)
            self.stats_counters.bytes_in += advanced
            self._events.append(ev.DataAvailable(rcvbuf.readable))
        if offset > 0 or gaps_before:
            # RFC 5681 §4.2: out-of-order segments, and those that fill
            # a gap, are acknowledged at once.
            self._ack_now = True
        else:
            self._delay_ack(now)
        return True

    def _check_fin(self, seq: int, text_len: int, fin: bool, now: float) -> None:
        """§3.10.7.4 eighth step: a FIN in sequence advances RCV.NXT and moves the state.

        A FIN beyond a gap is remembered until the gap fills.
        ESTABLISHED -> CLOSE-WAIT, FIN-WAIT-1 -> CLOSING (our FIN is not yet
        acknowledged, else the fifth step made it FIN-WAIT-2), FIN-WAIT-2 ->
        TIME-WAIT.
        """
        if fin:
            self._rcv_fin_seq = (seq + text_len) & 0xFFFFFFFF  # seq_add, inline
        rcv_nxt = self.rcv_nxt
        if self._rcv_fin_seq != rcv_nxt or self._fin_received:  # (None never equals RCV.NXT)
            if fin:
                self._ack_now = True
            return
        self._fin_received = True
        self.rcv_nxt = (rcv_nxt + 1) & 0xFFFFFFFF  # seq_add, inline
        self._ack_now = True
        self._events.append(ev.EndOfStream())
        st = self.state
        if st is ESTABLISHED:
            self._set_state(CLOSE_WAIT, RCV_FIN, now)
        elif st is FIN_WAIT_1:
            self._set_state(CLOSING, RCV_FIN, now)
        elif st is FIN_WAIT_2:
            self._enter_time_wait(RCV_FIN, now)
