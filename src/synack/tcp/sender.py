"""The output side of a TCP connection: data scheduling.

:class:`TcpSender` turns the TCB (:class:`~synack.tcp.tcb.Tcb`) into
segments: :meth:`TcpSender.segments_to_send` with its data scheduling
(sender SWS avoidance and Nagle, RFC 9293 §3.8.6.2.1 and §3.7.4; limited
transmit, RFC 3042; RFC 6675 recovery output as
:class:`~synack.tcp.recovery.LossRecovery` chooses it, or as RACK marks
losses, with RACK-TLP's timers and loss probe, RFC 8985; the FIN after the
data, §3.10.4) and the probes the timers send (zero-window probes §3.8.6.1,
keep-alives §3.8.4). It also queues the user's data (SEND, §3.10.2). The
segments themselves (ACK, window and options, SYNs, resets) are built by
:class:`~synack.tcp.builder.TcpBuilder`.

Layer: tcp. Imports synack.errors, synack.wire and the rest of synack.tcp (below receiver).
"""

from __future__ import annotations

from typing import ClassVar

from synack.errors import LocalProtocolError
from synack.tcp import events as ev
from synack.tcp.buffers import Lent
from synack.tcp.builder import TcpBuilder
from synack.tcp.rack import Rack
from synack.tcp.segments import (
    ACK,
    ACK_FIN,
    ACK_PSH,
    ACK_PSH_FIN,
)
from synack.tcp.seq import seq_add, seq_diff, seq_gt, seq_le, seq_lt
from synack.tcp.states import (
    CLOSE_WAIT,
    CLOSED,
    ESTABLISHED,
    LISTEN,
    SYN_RECEIVED,
    SYN_SENT,
    SYNCHRONIZED,
    State,
)
from synack.tcp.tcb import SEND_STATES
from synack.wire.tcp import TcpSegment

__all__ = ["TcpSender"]

# The states in which SEND queues data (RFC 9293 §3.10.2).
_SEND_OK = frozenset({State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT})


class TcpSender(TcpBuilder):
    """A TCB that sends (see the module docstring)."""

    __slots__ = ()

    #: On: :meth:`segments_to_send` answers "nothing" at once when nothing
    #: can go (:meth:`_nothing_to_send`); off: the whole method finds that
    #: out (the tests compare).
    idle_output: ClassVar[bool] = True
    #: On: :meth:`_output_data` returns at once when only our FIN, already
    #: sent after all the data, is outstanding; off: it walks its steps to
    #: find nothing to send (tests/tcp/test_close_fast_paths.py compares).
    fin_sent_idle: ClassVar[bool] = True

    def send(
        self, data: bytes | bytearray | memoryview | Lent, now: float, *, urgent: bool = False
    ) -> int:
        """Queue data (RFC 9293 §3.10.2 SEND); returns how many bytes fit the send buffer.

        ``urgent=True`` marks everything queued so far as urgent (SND.UP moves
        to the end of the queue): the segments sent until it is acknowledged
        carry URG and a pointer to the first non-urgent octet (MUST-30,
        MUST-62). It needs a synchronized connection.
        """
        st = self.state
        if st is CLOSED or st is LISTEN:
            raise LocalProtocolError(f"send() on a connection in {st}")
        if self._fin_queued or self._close_deferred:
            raise LocalProtocolError("send() after shutdown_write()/close(): connection closing")
        if st not in _SEND_OK:
            raise LocalProtocolError(f"send() on a connection in {st}")
        if urgent and st not in (ESTABLISHED, CLOSE_WAIT):
            raise LocalProtocolError(f"urgent send() needs an established connection, not {st}")
        n = self._sndbuf.append(data)
        if n < len(data):
            self._send_blocked = True
        if urgent and n:
            # §3.10.2: SND.UP <- the octet after the urgent data (MUST-62); a
            # later urgent send extends the run (MUST-31).
            self._snd_up = seq_add(self.snd_una, len(self._sndbuf))
        return n

    def set_send_lowat(self, n: int) -> None:
        """After a send() cut short, SendSpaceAvailable waits until ``n``
        octets of the send buffer are free (at most all of it; 1, the
        default: as soon as any is), as a socket's writer is woken by Linux
        only once a good part of its buffer is free (sk_stream_min_wspace):
        a bulk writer then refills the buffer in large writes, not a write
        and a wake-up per ACK."""
        self.send_lowat = max(1, min(n, self._sndbuf.capacity))

    # ------------------------------------------------------------------
    # Output

    def segments_to_send(self, now: float, *, gso: int = 0) -> list[TcpSegment]:
        """Everything the connection wants on the wire now, in order.

        ``gso``: the caller cuts new data into MSS-sized pieces itself (TSO,
        or Linux-style GSO below TCP), up to this many octets a segment: its
        pieces are exactly the segments sent without it (PSH/FIN: the last).
        """
        self._gso = gso
        if self.idle_output and self._nothing_to_send():
            self._sack_trimmed = False
            return []
        out = self._out
        self._out = []
        st = self.state
        if self._syn_needed:
            self._syn_needed = False
            if st is SYN_SENT or st is SYN_RECEIVED:
                out.append(self._make_syn(now, ack=st is SYN_RECEIVED))
                if self._timers.rexmit is None:
                    self._timers.rexmit = now + self._rtt.rto
                self._ack_now = False
        if st in SEND_STATES or (
            st is SYN_RECEIVED and self._tfo is not None and self._tfo.accepted
        ):  # RFC 7413 §4.2.2: a Fast Open server may send before the handshake completes
            n_before = len(out)
            if st is SYN_RECEIVED:
                self._output_before_established(now, out)
            else:
                self._output_data(now, out)
            if len(out) > n_before and not self._sack_trimmed:
                # The ACK owed rides on the data, unless the data had no
                # room for its SACK blocks (MUST-16, see _make): then a
                # pure ACK carries them.
                self._ack_now = False
        self._sack_trimmed = False
        rack = self._rack
        if rack is not None and self._timers.loss is None and self.snd_max != self.snd_una:
            self._arm_pto(rack, now)
        if self._ack_now:
            self._ack_now = False
            if st in SYNCHRONIZED or st is SYN_RECEIVED:
                # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, where the RFC's
                # SND.NXT is our SND.MAX: after a timeout rewinds SND.NXT
                # (go-back-N) an ACK with the rewound number would look old
                # to the peer, which would drop it unread and answer with an
                # ACK of its own, forever.
                out.append(self._make(self.snd_max, ACK, b"", now))
        if out:
            self.stats_counters.segments_out += len(out)
        return out

    def _nothing_to_send(self) -> bool:
        """Whether :meth:`segments_to_send` would send nothing and change
        nothing but its flags (the receiving side of a request/response
        exchange, after a request that acknowledged the whole reply): nothing
        queued, no SYN, ACK or FIN owed, everything sent acknowledged (so no
        loss probe to arm, RFC 8985 §7.2), the send buffer empty, no persist
        timer, retransmission or SACK recovery (_output_data's early return),
        and not SYN-RECEIVED (a Fast Open server's output counts from past
        its SYN there)."""
        cc = self._cc
        return (
            self._sndbuf.length == 0  # first: after a write (a reply) the answer is here
            and not self._out
            and not self._ack_now
            and not self._syn_needed
            and not self._fin_queued
            and self.snd_max == self.snd_una
            and self._timers.persist is None
            and not self._recovery.rexmit_one
            and not (cc.sack_recovery and cc.in_recovery)
            and self.state is not SYN_RECEIVED
        )

    def _output_data(self, now: float, out: list[TcpSegment]) -> None:
        sndbuf = self._sndbuf
        cc = self._cc
        rec = self._recovery
        buffered = sndbuf.length
        if cc.sack_recovery and cc.in_recovery:
            self._sack_recovery_output(now, out)
        elif not rec.rexmit_one and self._timers.persist is None:
            if not self._fin_queued:
                if buffered == (self.snd_nxt - self.snd_una) & 0xFFFFFFFF:  # seq_dist
                    return  # nothing unsent: the common case of the receiving side
            elif (
                self.fin_sent_idle
                and (fin_seq := self._fin_seq) is not None
                and self.snd_nxt == (fin_seq + 1) & 0xFFFFFFFF
                and buffered == (fin_seq - self.snd_una) & 0xFFFFFFFF  # seq_dist
            ):
                # Our FIN is out after all the data, SND.NXT past it (FIN-WAIT-1,
                # CLOSING, LAST-ACK waiting for its ACK): the loop below would
                # find nothing unsent, the FIN step nothing to send and
                # _arm_persist data in flight.
                return
        mss = self._snd_mss
        if rec.rexmit_one:
            # Fast retransmit / NewReno partial ACK: resend SND.UNA's segment
            # regardless of cwnd (RFC 5681 §3.2 step 3, RFC 6582 §3.2 step 3).
            rec.rexmit_one = False
            n = min(len(sndbuf), mss)
            if n > 0:
                fin = self._fin_seq is not None and self._fin_seq == seq_add(self.snd_una, n)
                out.append(self._data_segment(self.snd_una, 0, n, now, fin=fin, psh=fin))
                self.stats_counters.retransmissions += 1
                self.stats_counters.bytes_out += n
                rec.resending()
            elif self._fin_seq is not None and not self._fin_acked:
                out.append(self._make(self._fin_seq, ACK_FIN, b"", now))
                self.stats_counters.retransmissions += 1
        cwnd = cc.cwnd
        if cc.in_recovery and cc.sack_recovery:
            cwnd = 0  # RFC 6675 (C) sent what pipe allowed; only a FIN may follow
        if 0 < cc.dupacks < 3 and not cc.in_recovery and self.snd_nxt == self.snd_max:
            # Limited transmit (RFC 3042): the first two duplicate ACKs may
            # each release one new segment, up to cwnd + 2*SMSS outstanding.
            cwnd += cc.dupacks * mss
        board = self._board
        gso = self._gso
        if gso and buffered - ((self.snd_nxt - self.snd_una) & 0xFFFFFFFF) <= mss:
            # (seq_dist inline.) A super-segment needs more than an MSS
            # unsent: SND.NXT only moves on in the loop below, and with one
            # MSS or less the loop sends what it would without gso.
            gso = 0
        if gso:
            # Whole MSS pieces; none while URG or SACK blocks ride on data (fields differ).
            gso -= gso % mss
            if (
                gso <= mss
                or self._snd_up is not None
                or (self._sack_ok and (self._rcvbuf.has_gaps or self._dsack is not None))
            ):
                gso = 0
        while True:
            # seq_diff(SND.NXT, SND.UNA), inline: once per segment.
            off = ((self.snd_nxt - self.snd_una + 0x80000000) & 0xFFFFFFFF) - 0x80000000
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
            if board.ranges and seq_lt(self.snd_nxt, self.snd_max):
                # Going back after a timeout: skip what the receiver SACKed
                # and stop each resent segment at the next SACKed block.
                skip_to, room = board.skip(self.snd_nxt)
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
            elif gso and self.snd_nxt == self.snd_max:
                # One super-segment of new data (TSO/GSO): every full MSS the
                # window and the queue allow, as the loop would send one by
                # one; the remainder rides along only if the check above
                # would send it on its own (a queue-emptying tail, Nagle with
                # Minshall's refinement; off > 0 there, so never the
                # half-window case).
                m = unsent if unsent < usable else usable
                if m > gso:
                    m = gso
                tail = m % mss
                if tail and not (
                    m == unsent
                    and (self.config.nodelay or not seq_gt(self._nagle_end, self.snd_una))
                ):
                    m -= tail
                n = m
            self._emit_data(off, n, now, force_psh=False, out=out)
        # The FIN goes once all data has been sent (§3.10.4), with the last
        # data segment when it fits (see _emit_data) or on its own.
        if (
            self._fin_queued
            and not self._fin_acked
            # seq_diff(SND.NXT, SND.UNA) == len(sndbuf), inline.
            and ((self.snd_nxt - self.snd_una + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            == sndbuf.length
            and (self._fin_seq is None or self.snd_nxt == self._fin_seq)
        ):
            fin_seq = self.snd_nxt
            out.append(self._make(fin_seq, ACK_FIN, b"", now))
            end = (fin_seq + 1) & 0xFFFFFFFF  # seq_add, inline
            if self._rack is not None and fin_seq == self.snd_max:
                self._rack.sent(fin_seq, end, now)
            if self._fin_seq is None:
                self._fin_seq = fin_seq
            else:
                self.stats_counters.retransmissions += 1
            self.snd_nxt = end
            if (self.snd_max - end) & 0xFFFFFFFF >= 0x80000000:  # seq_gt(SND.NXT, SND.MAX)
                self.snd_max = end
            if self._timers.rexmit is None:
                self._timers.rexmit = now + self._rtt.rto
        timers = self._timers
        if timers.persist is not None or timers.rexmit is None:
            # (With the retransmission timer running and no persist timer,
            # _arm_persist has nothing to do: data is in flight.)
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
        snd_max = self.snd_max
        unsent_after = self._sndbuf.length - off - n
        # Sequence arithmetic inline (seq_add, seq_lt, seq_gt): once per segment.
        end = (seq + n) & 0xFFFFFFFF
        # The FIN rides on the last data segment when the user has closed.
        fin = (
            self._fin_queued
            and unsent_after == 0
            and (self._fin_seq is None or self._fin_seq == end)
        )
        # PSH on the last segment of what the user queued (MUST-61).
        psh = force_psh or unsent_after == 0
        # self._data_segment(seq, off, n, now, fin=fin, psh=psh), inline.
        if fin:
            flags = ACK_PSH_FIN if psh else ACK_FIN
        else:
            flags = ACK_PSH if psh else ACK
        mss = self._snd_mss
        # A super-segment (gso) carries a view of the send buffer, not a copy;
        # so does every segment of a buffer lent a file's pages (a Lent: see
        # tcp/buffers.py, the stack copies it only if it must read it).
        sndbuf = self._sndbuf
        payload = sndbuf.view(off, n) if n > mss or sndbuf.lends else sndbuf.peek(off, n)
        seg = self._make(seq, flags, payload, now)
        (self._out if out is None else out).append(seg)
        resend = seq != snd_max and (seq - snd_max) & 0xFFFFFFFF >= 0x80000000
        if resend:
            self.stats_counters.retransmissions += 1
        elif not self._ts.ok:
            # Without timestamps one segment at a time is timed (RFC 6298 §3;
            # Karn: never a retransmitted one); of a super-segment, its first piece.
            self._recovery.time_segment(end if n <= mss else (seq + mss) & 0xFFFFFFFF, now)
        self.stats_counters.bytes_out += n
        if n > mss:
            self.stats_counters.segments_out += (n - 1) // mss  # its pieces, as sent
        if n % mss:
            self._nagle_end = end
        if fin:
            self._fin_seq = end
            end = seq_add(end, 1)
        rack = self._rack
        if rack is not None:
            if resend:
                rack.resent(seq, end, now)
            elif n > mss and rack.packs:
                # A super-segment: one packed record standing for a record
                # per piece, as if sent one by one (rack.sent_run).
                rack.sent_run(seq, end, now, mss, (n + mss - 1) // mss)
            else:
                # rack.sent(seq, end, now), inline: once per data segment.
                records = rack.records
                order = rack.order
                start = seq
                if n > mss:
                    # A super-segment: one record per piece, as if sent one
                    # by one, so a lost piece is marked (RFC 8985 §6.2) and
                    # resent MSS-sized, not the whole.
                    last = (seq + n - (n % mss or mss)) & 0xFFFFFFFF
                    while start != last:
                        order += 1
                        piece_end = (start + mss) & 0xFFFFFFFF
                        records.append([start, piece_end, now, 0, order])
                        start = piece_end
                rack.order = order = order + 1
                records.append([start, end, now, 0, order])
                rack.last = now
        self.snd_nxt = end
        if (snd_max - end) & 0xFFFFFFFF >= 0x80000000:
            self.snd_max = end
        if self._timers.rexmit is None:
            # RFC 6298 §5.1: start the timer when sending data if not running.
            self._timers.rexmit = now + self._rtt.rto

    def _rack_recovery_output(self, rack: Rack, now: float, out: list[TcpSegment]) -> None:
        """RFC 6675 (C) with RACK's losses (RFC 8985 §6): lost records first, then new data.

        Pipe counts the records neither SACKed nor lost; the first resend of
        a recovery goes regardless of it (RFC 6675 §5 (4.3)).
        """
        mss = self._snd_mss
        rec = self._recovery
        cwnd = self._cc.cwnd
        pipe = rack.pipe()
        force = rec.sack_first
        rec.sack_first = False
        while force or cwnd - pipe >= mss:
            force = False
            una = self.snd_una
            lost = rack.next_lost(mss)
            if lost is not None:
                sent = self._resend(seq_diff(lost[0], una), lost[1], now, out)
                if sent == 0:
                    break
                pipe += sent
                continue
            flight = seq_diff(self.snd_max, una)
            unsent = len(self._sndbuf) - flight
            m = min(unsent, self.snd_wnd - flight, mss)
            if self.snd_nxt != self.snd_max or m <= 0 or m not in (mss, unsent):
                break
            self._emit_data(flight, m, now, force_psh=False, out=out)
            pipe += m

    def _probe_acked(self, rack: Rack, ack: int) -> None:
        """A cumulative ACK while a loss probe is out: answered when it covers it (§7.4)."""
        end = rack.probe_end
        if end is not None and seq_le(end, ack):
            rack.probe_end = None
            cc = self._cc
            if rack.probe_rexmit and not cc.in_recovery:
                # The original's fate is not known yet: take the probe as
                # the repair of a loss and reduce (RFC 8985 §7.4.2); a
                # D-SACK of the probe undoes it (recovery.on_dsack).
                self._recovery.mark_undo(1)
                cc.ssthresh = cc.cwnd = max(cc.cwnd // 2, 2 * self._snd_mss)
                cc.ss_divisor = 1

    def _rack_detect(self, acked: int, sacks: tuple[tuple[int, int], ...], now: float) -> None:
        """After an ACK on the full path: D-SACK (RFC 2883, 3708), RACK (RFC 8985 §6.2), PRR.

        A first block below SND.UNA, or inside the second, is a D-SACK: one
        of our retransmissions was not needed (undo, see recovery). In
        recovery, PRR (RFC 6937) sets cwnd = pipe + sndcnt for the output.
        """
        rack = self._rack
        if rack is None:
            return
        rec = self._recovery
        una = self.snd_una
        if sacks:
            left, right = sacks[0]
            if seq_lt(left, una) or (
                len(sacks) > 1 and seq_le(sacks[1][0], left) and seq_le(right, sacks[1][1])
            ):
                rec.on_dsack(seq_diff(right, left), self._snd_mss, una, self.snd_nxt)
        bytes_out = self.stats_counters.bytes_out
        rec.rack_step(una, self.snd_max, self._rtt.srtt, now, bytes_out, sacks)
        if self._cc.in_recovery:
            rec.prr_ack(acked, rack.pipe(), bytes_out, self._snd_mss)
        self._set_loss_timer()

    def _set_loss_timer(self) -> None:
        rack = self._rack
        assert rack is not None
        a = rack.deadline
        b = rack.pto_at
        self._timers.loss = a if b is None else b if a is None or b < a else a

    def _pto_deadline(self, rack: Rack) -> float | None:
        """RFC 8985 §7.2: when the loss probe is due (from the last send or ACK), if at all."""
        srtt = self._rtt.srtt
        # seq_diff(SND.MAX, SND.UNA), inline (after every send).
        flight = ((self.snd_max - self.snd_una + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        if (
            srtt is None
            or flight <= 0
            or rack.probe_end is not None
            or self._cc.in_recovery
            or self._recovery.retries  # after an RTO, until an ACK of new data
            or self.state not in SEND_STATES
            # A closed window belongs to the persist timer (§3.8.6.1): a probe
            # could send nothing, and a PTO left in the past would fire again
            # at once, for ever.
            or self._timers.persist is not None
        ):
            return None
        at = rack.last + rack.pto(srtt, flight, self._snd_mss, self._rtt.rto)
        rexmit = self._timers.rexmit
        # PTO = min(PTO, RTO) (§7.2): a probe due with the RTO goes instead
        # of it (the loss timer is handled first, and the probe rearms the
        # RTO), so a lost tail does not collapse cwnd to one segment.
        return at if rexmit is None or at < rexmit else rexmit

    def _arm_pto(self, rack: Rack, now: float) -> None:
        """Arm the loss probe (RFC 8985 §7.2) when no loss-detection timer runs."""
        rack.pto_at = b = self._pto_deadline(rack)
        # _set_loss_timer, inline (after every send): the earlier of the
        # reordering timer and the probe's.
        a = rack.deadline
        self._timers.loss = a if b is None else b if a is None or b < a else a

    def _on_loss_timer(self, now: float) -> None:
        """The RACK reordering timer or the TLP probe timeout fired (RFC 8985 §6.3, §7.3)."""
        rack = self._rack
        if rack is None or self.state not in SEND_STATES:
            return
        if rack.deadline is not None and now >= rack.deadline:
            rack.deadline = None
            self._recovery.rack_step(self.snd_una, self.snd_max, self._rtt.srtt, now)
        pto = rack.pto_at
        if pto is not None and now >= pto:
            # Lazy: ACKs since the timer was armed move the probe later.
            rack.pto_at = due = self._pto_deadline(rack)
            if due is not None and now >= due:
                rack.pto_at = None
                self._send_loss_probe(rack, now)
        self._set_loss_timer()

    def _send_loss_probe(self, rack: Rack, now: float) -> None:
        """RFC 8985 §7.3: one segment of new data if the window allows, else the last one again."""
        if self._cc.in_recovery or not rack.records:
            return
        rack.unpack()  # the last piece's record, not a super-segment's
        mss = self._snd_mss
        una = self.snd_una
        flight = seq_diff(self.snd_max, una)
        unsent = len(self._sndbuf) - flight
        room = self.snd_wnd - flight
        if unsent > 0 and room > 0 and self.snd_nxt == self.snd_max:
            self._emit_data(flight, min(unsent, room, mss), now, force_psh=True)
            rack.probe_rexmit = False
        else:
            last = rack.records[-1]
            start = last[0]
            n = seq_diff(last[1], start)
            if n > mss:
                start = seq_add(last[1], -mss)
                n = mss
            if self._resend(seq_diff(start, una), n, now, self._out) == 0:
                # Nothing could go: no second probe until an ACK (as if sent),
                # rather than a PTO re-armed in the past.
                rack.probe_end = self.snd_max
                return
            rack.probe_rexmit = True
        rack.probe_end = self.snd_max
        self.stats_counters.loss_probes += 1
        self._timers.rexmit = now + self._rtt.rto  # §7.3: the RTO is rearmed

    def _sack_recovery_output(self, now: float, out: list[TcpSegment]) -> None:
        """RFC 6675 §5 step (4.3)-(4.5) and (C): send while cwnd - pipe >= 1 SMSS."""
        rack = self._rack
        if rack is not None:
            self._rack_recovery_output(rack, now, out)
            return
        mss = self._snd_mss
        rec = self._recovery
        first = rec.first_hole(self.snd_una, self.snd_max, mss)
        if first:
            # (4.3) The first segment presumed dropped, regardless of pipe.
            rec.resent(1, self.snd_una, 0, self._resend(0, first, now, out))
        cwnd = self._cc.cwnd
        rel, lost_edge, pipe = rec.pipe(self.snd_una, self.snd_max, mss)  # (4.4), (B.2)
        # (C): bounded by cwnd; each round moves HighRxt, SND.NXT or RescueRxt.
        while cwnd - pipe >= mss:
            una = self.snd_una
            choice = rec.next_seg(
                rel,
                lost_edge,
                una,
                self.snd_nxt == self.snd_max,
                seq_diff(self.snd_max, una),
                len(self._sndbuf),
                self.snd_wnd,
                mss,
            )
            if choice is None:
                break
            rule, off, n = choice
            if rule == 2:
                self._emit_data(off, n, now, force_psh=False, out=out)
                sent = n
            else:
                sent = self._resend(off, n, now, out)
                if sent == 0:
                    break
                rec.resent(rule, una, off, sent)
            pipe += sent  # (C.3)

    def _resend(self, off: int, n: int, now: float, out: list[TcpSegment]) -> int:
        """Resend the octets at offset ``off`` (the FIN alone when only it is there)."""
        seq = seq_add(self.snd_una, off)
        avail = len(self._sndbuf) - off
        if avail > 0:
            n = min(n, avail)
            fin = self._fin_seq is not None and self._fin_seq == seq_add(seq, n)
            out.append(self._data_segment(seq, off, n, now, fin=fin, psh=fin))
            self.stats_counters.bytes_out += n
            sent = n + (1 if fin else 0)
        elif self._fin_seq is not None and self._fin_seq == seq and not self._fin_acked:
            out.append(self._make(seq, ACK_FIN, b"", now))
            sent = 1
        else:
            return 0
        self.stats_counters.retransmissions += 1
        self._recovery.resending()
        self._recovery.undo_retrans += 1
        if self._rack is not None:
            self._rack.resent(seq, seq_add(seq, sent), now)
        if self._timers.rexmit is None:
            self._timers.rexmit = now + self._rtt.rto
        return sent

    def _arm_persist(self, now: float) -> None:
        """Persist timer: a zero window, or the SWS override (§3.8.6.1, §3.8.6.2.1 (4))."""
        timers = self._timers
        if timers.persist is not None:
            if self.snd_wnd > 0 and seq_diff(self.snd_nxt, self.snd_una) > 0:
                timers.persist = None  # data in flight: the ACK clock will move
            return
        if self.state not in SEND_STATES:
            return
        off = seq_diff(self.snd_nxt, self.snd_una)
        unsent = len(self._sndbuf) - off
        if unsent <= 0 or off > 0 or timers.rexmit is not None:
            return
        # SHLD-29/30: first probe after one RTO, then exponential backoff.
        interval = min(self._rtt.rto * (1 << min(self._persist_backoff, 16)), self.config.max_rto)
        timers.persist = now + interval

    def _on_persist_timeout(self, now: float) -> bool:
        """The persist timer fired (§3.8.6.1, §3.8.6.2.1 (4)); True when the peer is gone."""
        if self.state not in SEND_STATES:
            return False
        self._persist_backoff += 1
        if self.snd_wnd == 0:
            if self._probes_unanswered >= self.config.r2_retries:
                # MUST-37 keeps the connection open only while probes are
                # acknowledged; a peer that answers none of R2 probes is gone.
                return True
            self._probes_unanswered += 1
        off = seq_diff(self.snd_nxt, self.snd_una)
        unsent = len(self._sndbuf) - off
        if unsent <= 0:
            return False
        if self.snd_wnd == 0:
            # RFC 9293 §3.8.6.1: probe a zero window with one octet of new
            # data (MUST-36). The octet is not counted in SND.NXT, so the
            # retransmission timer (and R2) stays out of it: the connection
            # lives as long as the probes are acknowledged (MUST-37).
            buf = self._sndbuf
            payload = buf.view(off, 1) if buf.lends else buf.peek(off, 1)  # (see _emit_data)
            end = seq_add(self.snd_nxt, 1)
            if seq_gt(end, self.snd_max):
                self.snd_max = end
            self.stats_counters.window_probes += 1
            self._out.append(self._make(self.snd_nxt, ACK, payload, now))
        else:
            # RFC 9293 §3.8.6.2.1 (4): the SWS override timeout fires; send
            # what the window allows even though it is small.
            usable = self.snd_wnd - off
            n = min(unsent, usable, self._snd_mss)
            if n > 0:
                self._emit_data(off, n, now, force_psh=True)
        self._arm_persist(now)
        return False

    def _on_keepalive_timeout(self, now: float) -> bool:
        """The keep-alive timer fired (§3.8.4); True when the peer is declared dead."""
        cfg = self.config
        if not cfg.keepalive or self.state not in (State.ESTABLISHED, State.CLOSE_WAIT):
            return False
        if self._keepalive_probes >= cfg.keepalive_count:
            # RFC 1122 §4.2.3.6: only after `count` unanswered probes (MUST-29:
            # never a single one) is the peer declared dead.
            return True
        if self.snd_max != self.snd_una or len(self._sndbuf):
            # MUST-26: only when no sent data is outstanding; otherwise the
            # retransmission timer is watching the peer already.
            self._timers.keepalive = now + cfg.keepalive_idle
            return False
        # SEG.SEQ = SND.NXT-1, no data (SHLD-12): outside the peer's window,
        # so it must answer with an ACK.
        self._keepalive_probes += 1
        self.stats_counters.keepalive_probes += 1
        self._out.append(self._make(seq_add(self.snd_max, -1), ACK, b"", now))
        self._timers.keepalive = now + cfg.keepalive_interval
        return False

    def _data_acked(
        self, ack: int, data_acked: int, acked: int, ts_rtt: float | None, now: float
    ) -> None:
        """SND.UNA moves to ``ack``: ``acked`` octets (``data_acked`` of them data) are done.

        §3.10.7.4 fifth step: the acknowledged octets leave the send buffer,
        loss recovery learns of the ACK (RTT sample, cwnd), and the
        retransmission timer stops when all is acknowledged and restarts
        otherwise (RFC 6298 §5.2/5.3).
        """
        sndbuf = self._sndbuf
        sndbuf.drop(data_acked)
        self.snd_una = ack
        rack = self._rack
        if rack is not None:
            rack.on_cumulative_ack(ack, now)
            if rack.probe_end is not None:
                self._probe_acked(rack, ack)
        # seq_lt and seq_dist inline: once per ACK.
        if (self.snd_nxt - ack) & 0xFFFFFFFF >= 0x80000000:
            self.snd_nxt = ack
        snd_max = self.snd_max
        self._recovery.on_new_ack(ack, acked, (snd_max - ack) & 0xFFFFFFFF, ts_rtt, now)
        self._persist_backoff = 0
        self._timers.rexmit = None if ack == snd_max else now + self._rtt.rto
        if self._send_blocked and sndbuf.space >= self.send_lowat:
            self._send_blocked = False
            self._events.append(ev.SendSpaceAvailable(sndbuf.space))

    def _update_send_window(self, seq: int, ack: int, window: int) -> None:
        """§3.10.7.4 fifth step, the send window: from a newer segment, or a newer ACK.

        SND.WL1/SND.WL2 say which segment last set SND.WND; a window that
        opens from zero stops the persist timer.
        """
        wl1 = self.snd_wl1
        # seq_lt(wl1, seq) or (wl1 == seq and seq_le(SND.WL2, ack)), inline: once per ACK.
        if (wl1 - seq) & 0xFFFFFFFF >= 0x80000000 or (
            wl1 == seq and (self.snd_wl2 == ack or (self.snd_wl2 - ack) & 0xFFFFFFFF >= 0x80000000)
        ):
            if window != self.snd_wnd:
                old = self.snd_wnd
                self.snd_wnd = window
                if window > self._max_snd_wnd:
                    self._max_snd_wnd = window
                if old == 0 and window > 0:
                    self._timers.persist = None
                    self._persist_backoff = 0
            self.snd_wl1 = seq
            self.snd_wl2 = ack

    def _output_before_established(self, now: float, out: list[TcpSegment]) -> None:
        """Data in SYN-RECEIVED (accepted Fast Open) as if our SYN were acknowledged (the
        buffer starts after it); SND.UNA stays at the ISS for the handshake's ACK check."""
        una = self.snd_una
        self.snd_una = seq_add(self.iss, 1)
        try:
            self._output_data(now, out)
        finally:
            self.snd_una = una
