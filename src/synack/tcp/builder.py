"""Segment building: what every segment of a connection carries.

:class:`TcpBuilder` adds to the TCB (:class:`~synack.tcp.tcb.Tcb`) the
builders :class:`~synack.tcp.sender.TcpSender` schedules with: the ACK,
window and options every segment carries (RCV.ADV and receiver SWS avoidance,
RFC 9293 §3.8.6.2.2; RFC 7323 timestamps; RFC 2018 SACK blocks; URG,
§3.10.2), the SYN and SYN-ACK with the options offered or agreed (§3.7.1,
RFC 7323 §2.2, RFC 7413 §4), a data segment from the send buffer, and the
resets a connection sends itself (§3.10.5, §3.10.7.3).

Layer: tcp. Imports synack.wire and the rest of synack.tcp (below sender).
"""

from __future__ import annotations

from dataclasses import replace

from synack.tcp.sack import blocks_to_send
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
from synack.tcp.seq import SEQ_MASK, seq_diff, seq_gt
from synack.tcp.tcb import Tcb
from synack.wire._fast import slot_maker
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment

__all__ = ["TcpBuilder"]

# TcpSegment filled positionally (ports, seq, ack, flags, window, payload,
# options, urgent): a segment per segment sent.
_segment = slot_maker(TcpSegment)
# TcpOptions filled positionally (mss, wscale, sack_permitted, sack_blocks,
# timestamps, unknown, fastopen): a SYN-ACK's per connection.
_options = slot_maker(TcpOptions)


class TcpBuilder(Tcb):
    """A TCB that builds its segments (see the module docstring)."""

    __slots__ = ()

    def _data_segment(
        self, seq: int, off: int, n: int, now: float, *, fin: bool, psh: bool
    ) -> TcpSegment:
        if fin:
            flags = ACK_PSH_FIN if psh else ACK_FIN
        else:
            flags = ACK_PSH if psh else ACK
        buf = self._sndbuf
        # A lent buffer's retransmission carries a Lent too (see TcpSender._emit_data).
        return self._make(seq, flags, buf.view(off, n) if buf.lends else buf.peek(off, n), now)

    def _send_reset(self, now: float) -> None:
        # <SEQ=SND.NXT><CTL=RST> (RFC 9293 §3.10.5; SND.MAX, see segments_to_send).
        self._reset_for(self.snd_max, now)

    def _reset_for(self, seq: int, now: float) -> None:
        """<SEQ=seq><CTL=RST>; also the reply to an unacceptable ACK (§3.10.7.3, §3.10.7.4).

        Once timestamps were agreed the RST carries TSopt (RFC 7323 §3.2
        "SHOULD be sent in an <RST> segment"), so that a peer checking
        timestamps on resets (RFC 7323 §5.2) sees a current one.
        """
        self.stats_counters.rsts_out += 1
        rst = reset(self._lport, self._rport, seq)
        ts = self._ts
        if ts.ok:
            rst = TcpSegment(self._lport, self._rport, seq, 0, rst.flags, 0, b"", ts.option(now))
        self._out.append(rst)

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
        if self._sack_ok and (rcvbuf.has_gaps or self._dsack is not None):
            # RFC 2018 §3: what fits in 40 octets beside a timestamp option.
            room = 3 if ts.ok else 4
            dsack = self._dsack
            if dsack is not None:
                # RFC 2883 §4: the D-SACK block first, reported once.
                self._dsack = None
                blocks = (dsack, *blocks_to_send(rcvbuf.sack_blocks(room - 1), ack))
            else:
                blocks = blocks_to_send(rcvbuf.sack_blocks(room), ack)
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
        return _segment(self._lport, self._rport, seq, ack, flags, window, payload, opts, 0)

    def _make_syn(self, now: float, *, ack: bool) -> TcpSegment:
        cfg = self.config
        ts = self._ts
        # RFC 7323 §2.2: the window in a SYN is never scaled.
        window = self._rcvbuf.free
        if window > 65535:
            window = 65535
        self._syn_window = window
        if ack:
            self._rcv_adv = (self.rcv_nxt + window) & SEQ_MASK  # seq_add, inline
            # Offer options only if the peer offered them (RFC 7323 §2.2,
            # §3.2; RFC 2018 §2).
            opts = _options(
                cfg.mss,
                self._rcv_wscale if self._wscale_agreed else None,
                self._sack_ok,
                (),
                # ts.tsval(now), inline (seq_add(offset, ms)).
                ((ts.offset + int(now * 1000)) & SEQ_MASK, ts.recent) if ts.ok else None,
                (),
                None,
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
        payload = b""
        tfo = self._tfo
        if tfo is not None and ack is self._passive:  # (not on a simultaneous open's SYN-ACK)
            # RFC 7413 §4.1.1: our cookie (b"": a request) or the server's answer (None:
            # none). Data rides on the first SYN only, with a cookie (§4.2.1).
            opts = replace(opts, fastopen=tfo.cookie)
            if not ack and (n := tfo.syn_octets(len(self._sndbuf), cfg.mss, self._syn_resent)):
                payload = self._sndbuf.peek(0, n)
                self.stats_counters.bytes_out += n
        # (seq_add, seq_lt and seq_gt inline: once per connection.)
        end = (self.iss + 1 + len(payload)) & SEQ_MASK
        if self._timers.rexmit is None or ((self.snd_nxt - end) & SEQ_MASK) >= 0x80000000:
            # Not when a duplicate SYN asks for our SYN-ACK again while data
            # sent after it (RFC 7413 §4.2.2) is in flight: only a timeout
            # goes back over that data.
            self.snd_nxt = end
        if ((self.snd_max - end) & SEQ_MASK) >= 0x80000000 or self.snd_max == self.iss:
            self.snd_max = end
        self._recovery.time_syn(end, now)
        return _segment(self._lport, self._rport, self.iss, ackno, flags, window, payload, opts, 0)
