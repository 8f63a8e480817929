"""The transmission control block of a TCP connection, and everything that sends.

:class:`TcpSender` holds the TCB (RFC 9293 §3.3.1: the send and receive
sequence variables, the buffers, the options agreed on the handshake) and
turns it into segments: :meth:`TcpSender.segments_to_send` with its data
scheduling (sender SWS avoidance and Nagle, §3.8.6.2.1 and §3.7.4; limited
transmit, RFC 3042; the FIN after the data, §3.10.4), the segment builders
(the ACK, window and options every segment carries: RCV.ADV, receiver SWS
avoidance §3.8.6.2.2, RFC 7323 timestamps, RFC 2018 SACK blocks, URG) and
the probes the timers send (zero-window probes §3.8.6.1, keep-alives
§3.8.4). The state machine and the segment-arrival steps are
:class:`synack.tcp.connection.TcpConnection`, built on this class.

Its parts live elsewhere behind their own interfaces: the deadlines in
:class:`~synack.tcp.timers.Timers`, RFC 7323 in
:class:`~synack.tcp.timestamps.Timestamps`, loss recovery (RTT, congestion
control, the SACK scoreboard) in :class:`~synack.tcp.recovery.LossRecovery`.

Layer: tcp. Imports synack.errors, synack.wire and the rest of synack.tcp (not connection).
"""

from __future__ import annotations

from collections import deque
from ipaddress import IPv4Address

from synack.errors import LocalProtocolError
from synack.tcp import events as ev
from synack.tcp.buffers import ReceiveBuffer, SendBuffer
from synack.tcp.config import TcpConfig
from synack.tcp.congestion import NewReno
from synack.tcp.recovery import LossRecovery
from synack.tcp.rto import RttEstimator
from synack.tcp.sack import SackScoreboard, blocks_to_send
from synack.tcp.segments import (
    ACK,
    ACK_FIN,
    ACK_PSH,
    ACK_PSH_FIN,
    NO_OPTIONS,
    SYN,
    SYN_ACK,
    URG,
    reset,
    sack_blocks_that_fit,
)
from synack.tcp.seq import SEQ_MASK, seq_add, seq_diff, seq_dist, seq_gt, seq_lt
from synack.tcp.states import SYNCHRONIZED, State, Transition
from synack.tcp.stats import TcpStats
from synack.tcp.timers import Timers
from synack.tcp.timestamps import Timestamps
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment

__all__ = ["DEFAULT_MSS", "SEND_STATES", "TEXT_STATES", "Address", "TcpSender"]

#: RFC 9293 §3.7.1 (MUST-15): the send MSS when the peer announces none.
DEFAULT_MSS = 536
#: Replies to unacceptable segments without data: at most one per this long.
OOW_ACK_INTERVAL = 0.5

Address = tuple[IPv4Address, int]

# States in which we may send data / FIN (after the handshake).
SEND_STATES = frozenset(
    {State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK}
)
# States that accept segment text (RFC 9293 §3.10.7.4 "sixth, process the segment text").
TEXT_STATES = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})


class TcpSender:
    """The TCB of one connection and its output (see the module docstring)."""

    __slots__ = (
        "_ack_now",
        "_app_closed",
        "_board",
        "_cc",
        "_challenge_count",
        "_challenge_window",
        "_close_deferred",
        "_delack_segments",
        "_events",
        "_fin_acked",
        "_fin_queued",
        "_fin_received",
        "_fin_seq",
        "_keepalive_probes",
        "_last_oow_ack",
        "_last_rcv",
        "_lport",
        "_max_snd_wnd",
        "_nagle_end",
        "_opened",
        "_out",
        "_passive",
        "_persist_backoff",
        "_probes_unanswered",
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
        "_send_blocked",
        "_snd_mss",
        "_snd_up",
        "_snd_wscale",
        "_sndbuf",
        "_state",
        "_syn_needed",
        "_syn_resent",
        "_syn_window",
        "_timers",
        "_transitions",
        "_ts",
        "_wscale_agreed",
        "config",
        "irs",
        "iss",
        "local",
        "rcv_nxt",
        "remote",
        "snd_max",
        "snd_nxt",
        "snd_una",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
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
        self._sack_ok = False
        self._ts = Timestamps(iss)  # RFC 7323 §5.4: the ISS doubles as the TSval offset

        # Output requests.
        self._ack_now = False  # send an ACK at the next flush
        self._syn_needed = False  # (re)send our SYN or SYN-ACK
        self._delack_segments = 0  # full-sized segments received and not yet acknowledged
        self._sack_trimmed = False  # a data segment had no room for all SACK blocks (MUST-16)

        # Loss recovery; its estimator, controller and scoreboard are used
        # on every ACK, hence the shortcuts.
        self._recovery = LossRecovery(config, iss, DEFAULT_MSS, self.stats_counters)
        self._rtt: RttEstimator = self._recovery.rtt
        self._cc: NewReno = self._recovery.cc
        self._board: SackScoreboard = self._recovery.board
        self._persist_backoff = 0
        self._keepalive_probes = 0
        self._challenge_window = -1.0
        self._challenge_count = 0

        self._timers = Timers()
        self._last_rcv = 0.0

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
                if self._timers.rexmit is None:
                    self._timers.rexmit = now + self._rtt.rto
                self._ack_now = False
        if st in SEND_STATES:
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
                out.append(self._make(self.snd_max, ACK, b"", now))
        if out:
            self.stats_counters.segments_out += len(out)
        return out

    def _output_data(self, now: float, out: list[TcpSegment]) -> None:
        sndbuf = self._sndbuf
        cc = self._cc
        rec = self._recovery
        if cc.sack_recovery and cc.in_recovery:
            self._sack_recovery_output(now, out)
        elif (
            not rec.rexmit_one
            and not self._fin_queued
            and len(sndbuf) == seq_dist(self.snd_nxt, self.snd_una)
            and self._timers.persist is None
        ):
            return  # nothing unsent: the common case of the receiving side
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
                rec.rtt_seq = None
            elif self._fin_seq is not None and not self._fin_acked:
                out.append(self._make(self._fin_seq, ACK_FIN, b"", now))
                self.stats_counters.retransmissions += 1
        buffered = len(sndbuf)
        cwnd = cc.cwnd
        if cc.in_recovery and cc.sack_recovery:
            cwnd = 0  # RFC 6675 (C) sent what pipe allowed; only a FIN may follow
        if 0 < cc.dupacks < 3 and not cc.in_recovery and self.snd_nxt == self.snd_max:
            # Limited transmit (RFC 3042): the first two duplicate ACKs may
            # each release one new segment, up to cwnd + 2*SMSS outstanding.
            cwnd += cc.dupacks * mss
        board = self._board
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
            out.append(self._make(fin_seq, ACK_FIN, b"", now))
            if self._fin_seq is None:
                self._fin_seq = fin_seq
            else:
                self.stats_counters.retransmissions += 1
            self.snd_nxt = seq_add(fin_seq, 1)
            if seq_gt(self.snd_nxt, self.snd_max):
                self.snd_max = self.snd_nxt
            if self._timers.rexmit is None:
                self._timers.rexmit = now + self._rtt.rto
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
        end = seq_add(seq, n)
        # The FIN rides on the last data segment when the user has closed.
        fin = (
            self._fin_queued
            and unsent_after == 0
            and (self._fin_seq is None or self._fin_seq == end)
        )
        # PSH on the last segment of what the user queued (MUST-61).
        psh = force_psh or unsent_after == 0
        seg = self._data_segment(seq, off, n, now, fin=fin, psh=psh)
        (self._out if out is None else out).append(seg)
        if seq_lt(seq, self.snd_max):
            self.stats_counters.retransmissions += 1
        elif not self._ts.ok:
            rec = self._recovery
            if rec.rtt_seq is None:
                # Time this segment (one at a time, RFC 6298 §3; Karn: never
                # a retransmitted one).
                rec.rtt_seq = end
                rec.rtt_time = now
        self.stats_counters.bytes_out += n
        if n < self._snd_mss:
            self._nagle_end = end
        if fin:
            self._fin_seq = end
            end = seq_add(end, 1)
        self.snd_nxt = end
        if seq_gt(end, self.snd_max):
            self.snd_max = end
        if self._timers.rexmit is None:
            # RFC 6298 §5.1: start the timer when sending data if not running.
            self._timers.rexmit = now + self._rtt.rto

    def _data_segment(
        self, seq: int, off: int, n: int, now: float, *, fin: bool, psh: bool
    ) -> TcpSegment:
        if fin:
            flags = ACK_PSH_FIN if psh else ACK_FIN
        else:
            flags = ACK_PSH if psh else ACK
        return self._make(seq, flags, self._sndbuf.peek(off, n), now)

    def _sack_recovery_output(self, now: float, out: list[TcpSegment]) -> None:
        """RFC 6675 §5 step (4.3)-(4.5) and (C): send while cwnd - pipe >= 1 SMSS."""
        mss = self._snd_mss
        rec = self._recovery
        if rec.sack_first:
            # (4.3) The first segment presumed dropped, regardless of pipe.
            rec.sack_first = False
            sent = self._resend(0, rec.first_hole(self.snd_una, self.snd_max, mss), now, out)
            rec.high_rxt = seq_add(self.snd_una, sent)
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
        self._recovery.rtt_seq = None  # Karn (MUST-18)
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
        if self._state not in SEND_STATES:
            return
        off = seq_diff(self.snd_nxt, self.snd_una)
        unsent = len(self._sndbuf) - off
        if unsent <= 0 or off > 0 or timers.rexmit is not None:
            return
        # SHLD-29/30: first probe after one RTO, then exponential backoff.
        interval = min(self._rtt.rto * (1 << min(self._persist_backoff, 16)), self.config.max_rto)
        timers.persist = now + interval

    def _probe_window(self, now: float) -> None:
        """The persist timer fired: probe a zero window or override SWS (§3.8.6.1, §3.8.6.2.1)."""
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

    def _send_keepalive(self, now: float) -> None:
        """SEG.SEQ = SND.NXT-1, no data (RFC 9293 §3.8.4 SHLD-12).

        Outside the peer's window, so it must answer with an ACK.
        """
        self._keepalive_probes += 1
        self.stats_counters.keepalive_probes += 1
        self._out.append(self._make(seq_add(self.snd_max, -1), ACK, b"", now))
        self._timers.keepalive = now + self.config.keepalive_interval

    def _send_reset(self) -> None:
        # <SEQ=SND.NXT><CTL=RST> (RFC 9293 §3.10.5; SND.MAX, see segments_to_send).
        self.stats_counters.rsts_out += 1
        self._out.append(reset(self._lport, self._rport, self.snd_max))

    def _reset_for(self, ack: int) -> None:
        """<SEQ=SEG.ACK><CTL=RST>: the reply to an unacceptable ACK (§3.10.7.3, §3.10.7.4)."""
        self.stats_counters.rsts_out += 1
        self._out.append(reset(self._lport, self._rport, ack))

    # ------------------------------------------------------------------
    # Segment building

    def _make(self, seq: int, flags: TcpFlags, payload: bytes, now: float) -> TcpSegment:
        """A segment carrying ACK (all ours do but RSTs), with window and options from the TCB."""
        ack = self.rcv_nxt
        ts = self._ts
        ts.last_ack_sent = ack
        self._delack_segments = 0
        self._timers.delack = None
        window = self._advertise()
        opts = NO_OPTIONS
        blocks: tuple[tuple[int, int], ...] = ()
        rcvbuf = self._rcvbuf
        if self._sack_ok and rcvbuf.has_gaps:
            # RFC 2018 §3: what fits in 40 octets beside a timestamp option.
            blocks = blocks_to_send(rcvbuf.sack_blocks(3 if ts.ok else 4), ack)
            if payload:
                # RFC 9293 §3.7.1 MUST-16: _snd_mss already leaves room for a
                # timestamp option; the SACK option must fit in what the
                # payload leaves, else the segment would exceed the peer's
                # MSS. Blocks that do not fit go on a pure ACK (see
                # segments_to_send).
                fit = sack_blocks_that_fit(self._snd_mss - len(payload))
                if fit < len(blocks):
                    blocks = blocks[:fit]
                    self._sack_trimmed = True
        if ts.ok:
            if blocks:
                opts = TcpOptions(timestamps=(ts.tsval(now), ts.recent), sack_blocks=blocks)
            else:
                opts = ts.option(now)
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
                        self._lport, self._rport, seq, ack, flags | URG, window, payload, opts, ptr
                    )
            else:
                self._snd_up = None  # the urgent data is acknowledged
        return TcpSegment(self._lport, self._rport, seq, ack, flags, window, payload, opts)

    def _make_syn(self, now: float, *, ack: bool) -> TcpSegment:
        cfg = self.config
        ts = self._ts
        # RFC 7323 §2.2: the window in a SYN is never scaled.
        window = min(self._rcvbuf.free, 65535)
        self._syn_window = window
        if ack:
            self._rcv_adv = seq_add(self.rcv_nxt, window)
            # Offer options only if the peer offered them (RFC 7323 §2.2,
            # §3.2; RFC 2018 §2).
            opts = TcpOptions(
                mss=cfg.mss,
                wscale=self._rcv_wscale if self._wscale_agreed else None,
                sack_permitted=self._sack_ok,
                timestamps=(ts.tsval(now), ts.recent) if ts.ok else None,
            )
            flags = SYN_ACK
            ackno = self.rcv_nxt
            ts.last_ack_sent = ackno
        else:
            opts = TcpOptions(
                mss=cfg.mss,
                wscale=self._rcv_wscale_offer if cfg.window_scale else None,
                sack_permitted=cfg.sack,
                timestamps=(ts.tsval(now), 0) if cfg.timestamps else None,
            )
            flags = SYN
            ackno = 0
        end = seq_add(self.iss, 1)
        self.snd_nxt = end
        if seq_gt(end, self.snd_max) or self.snd_max == self.iss:
            self.snd_max = end
        rec = self._recovery
        if rec.rtt_seq is None and rec.retries == 0:
            rec.rtt_seq = end
            rec.rtt_time = now
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
        new_edge = seq_add(rcv_nxt, field << shift)
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
