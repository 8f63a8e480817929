"""Receive coalescing: a run of in-order data segments from one read of the link, to TCP as one.

What Linux's GRO does below its TCP (net/ipv4/tcp_offload.c, tcp_gro_receive),
done here on the frames of one :meth:`Host.receive_frames` call (one read
of the TAP, up to 64 frames): consecutive data segments of one connection,
nothing unusual in any of them, are merged and handed to TCP as one segment,
so TCP's per-segment work (the §3.10.7 steps, the receive buffer, the
``DataAvailable`` event, the owner's wake-up) happens once per run, not per
frame. Every frame of a run has been checked as the per-frame path checks it:
unicast to our MAC and address, the IPv4 header checksum, a source the slow
path would take, and its TCP checksum (RFC 9293 §3.1, MUST-2/3), unless the
link vouches for it (a TAP with offloads).

What a run is made of (anything else goes, untouched, to the per-frame path,
after the run held so far, so a connection's segments keep their order):

- an unfragmented IPv4 packet without options, TCP with flags ACK or
  ACK|PSH only (no SYN, FIN, RST, URG, ECE, CWR, no reserved bit), an urgent
  field of 0, and payload;
- options: none, or exactly Linux's NOP NOP TS (RFC 7323 Appendix A), the
  same layout in every frame of the run;
- the same 4-tuple, SEG.ACK, window field and TSecr as the run's first
  frame, SEG.SEQ where the run ends, and a TSval that never goes back
  (RFC 7323 §5 PAWS: each would pass where the first does). Linux's GRO
  wants every option octet equal (a new TSval ends its run); here the TSval
  may move forward, because TCP takes only the first one (below);
- the first frame of a run must be what TCP's header prediction takes as
  it stands (``TcpReceiver.coalesce_room``: ESTABLISHED or another state
  that takes text, SEG.SEQ = RCV.NXT, SEG.ACK = SND.UNA, the window
  unchanged, no loss recovery, no out-of-order data held, PAWS passed), and
  the run no longer than the window we advertised; so each frame of the run
  would have taken header prediction too, one after the other.

What TCP sees: the first frame's header and options with every payload
joined, PSH if any frame had it. RFC 7323 §4.3: TS.Recent takes a TSval
only from a segment with SEG.SEQ <= Last.ACK.sent; of a run, only the first
frame can be one (the ACK for the batch leaves after it), so the merged
segment's TSval (the first) is the one TS.Recent would have taken frame by
frame, and our ACK echoes it as it would have.

ACKs (RFC 9293 §3.8.6.3 SHLD-19, RFC 5681 §4.2 "at least every second
full-sized segment"): TCP counts a run as that many segments for the
delayed-ACK rule, so a run of two or more is acknowledged at once, as the
frames one by one would have been; and, as before coalescing, the ACK leaves
when the batch has been taken (stack/tcp_demux.py touches a connection once
per batch): one ACK per read of the link, up to 64 frames. That stretches
ACKs past "every second segment" exactly as Linux does with GRO: its TCP
sees one segment of up to 64 KiB (45 of 1448 octets) per NAPI poll and
acknowledges it at once for being more than one full-sized segment
(tcp_input.c, __tcp_ack_snd_check). A sender that counts bytes acknowledged
(RFC 3465, Linux's cwnd growth) is not slowed by it.

ACK filtering (RFC 3449 §5.2.1: an ACK superseded by a later one in the
same queue may be dropped, as routers and DOCSIS/Wi-Fi links do), done so
that TCP ends exactly where the ACKs one by one would have left it. A bulk
sender over TAP reads up to 64 pure ACKs at a time (the kernel ACKs every
second segment while our loop writes), each ~15 µs of Python. A run is
pure ACKs of one connection in a batch: flags ACK only, no payload, no
option but NOP NOP TS, the same SEG.SEQ (= RCV.NXT) and TSecr, each
acknowledging more than the one before, TSvals never going back (PAWS as
the first); TCP says when it takes one (``TcpReceiver.ack_run_end``,
``arm_ack_run``): each an ACK of new data with nothing else to do, no loss
recovery, SACK scoreboard, FIN of ours or loss probe, no HyStart++ round
still sampling or ending inside the run; duplicate ACKs never join. The
run's last ACK goes to TCP standing for all (``receive_coalesced``): what
it leaves is what the run left (SND.UNA, the send buffer, SND.WND by the
window-update rule, TS.Recent, RACK's newest delivered segment); the RTT
estimator takes the one sample (the same TSecr, the same instant) once per
ACK; slow start grows by min(acked, SMSS) per ACK summed over the run
(``NewReno.ss_credit``), and NewReno's byte-counting congestion avoidance
by its one SMSS at most (tests/stack/test_ack_filter.py: the same frames,
TCB variables and counters with and without).

Counters are those the frames would have made one by one (``frames-in``,
``ipv4-in``, ``tcp-in`` and the connection's ``segments_in``), and
``tcp-coalesced`` counts the frames merged into a run's first one and
``tcp-acks-filtered`` the ACKs an ACK run left out.

Layer: stack. Imports synack.wire, synack.stack (endpoints, ipv4, tcp_demux).
"""

from __future__ import annotations

import struct
from collections import Counter

from synack.stack.endpoints import TcpStream
from synack.stack.ipv4 import Ipv4
from synack.stack.tcp_demux import TcpDemux
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.checksum import le_residue

__all__ = ["Coalescer"]

_L4 = wip.ETH_IPV4_HEADER_LEN  # the TCP header, in a frame of an option-less packet
_OFF = _L4 + wtcp.DATA_OFFSET_AT
_OPTS = _L4 + wtcp.MIN_HEADER_LEN
_TS_END = _OPTS + 12
_NO_OPTIONS = wtcp.MIN_HEADER_LEN << 2  # the data offset octet: 5 words, no reserved bit
_TS_OPTIONS = 32 << 2  # 8 words: NOP NOP TS
_TS_LAYOUT = 0x0101080A  # NOP NOP kind 8 length 10
_ACK = int(wtcp.TcpFlags.ACK)
_ACK_PSH = int(wtcp.TcpFlags.ACK | wtcp.TcpFlags.PSH)
_PROTO_TCP = wip.PROTO_TCP
_DATA_FLAGS = (_ACK, _ACK_PSH)
# The TCP header (RFC 9293 §3.1), then NOP NOP TS as one word and the two values.
_HEADER = struct.Struct("!HHIIBBHHH").unpack_from
_TS_HEADER = struct.Struct("!HHIIBBHHHIII").unpack_from
# A whole frame's headers at once, for a frame that extends a run: the
# destination MAC, (the source MAC and EtherType skipped), the option-less
# IPv4 header as words and addresses (RFC 791 §3.1), the TCP header and
# NOP NOP TS. The frame is at least this long (the caller checks).
_FRAME_TS = struct.Struct("!6s8xHHHHHHIIHHIIBBHHHIII")
_FRAME_TS_LEN = _FRAME_TS.size
_frame_ts = _FRAME_TS.unpack_from
_IP_AT = wip.ETH_IPV4_HEADER_LEN - wip.MIN_HEADER_LEN
_FLOW = slice(_IP_AT + 12, _L4 + 4)  # IPv4 source and destination, TCP ports


class Coalescer:
    """The run of one connection's frames held while a batch is read (see the module doc).

    :meth:`offer` takes a frame into the run (True) or declines it (False:
    the caller gives it to the per-frame path, after :meth:`flush`);
    :meth:`flush` hands the run to TCP. A batch ends with a flush.
    """

    __slots__ = (
        "_ack",
        "_counters",
        "_demux",
        "_dport",
        "_dst",
        "_end_seq",
        "_flags",
        "_ipv4",
        "_mac",
        "_room",
        "_size",
        "_sport",
        "_src",
        "_stream",
        "_tsecr",
        "_tsval",
        "_window",
        "run",
    )

    def __init__(self, ipv4: Ipv4, demux: TcpDemux, counters: Counter[str]) -> None:
        self._ipv4 = ipv4
        self._demux = demux
        self._counters = counters
        # The run: frames with the span of their payload, and what the next
        # frame must match.
        self.run: list[tuple[bytes, int, int]] = []  # the held frames (read by Host)
        self._stream: TcpStream | None = None
        self._src = self._sport = self._dport = 0
        self._dst = 0
        self._mac = ipv4.iface.mac
        self._end_seq = 0
        self._ack = 0
        self._window = 0
        self._tsecr = -1  # -1: no timestamp option
        self._tsval = -1
        self._flags = 0
        self._size = 0
        self._room = 0

    @property
    def held(self) -> bool:
        """A run is held (flush before anything else reaches TCP)."""
        return bool(self.run)

    def offer(self, f: bytes, now: float, verified: bool) -> bool:
        """Take frame ``f`` (an unfragmented IPv4 packet without options
        carrying TCP, as the caller found from its raw bytes) into a run;
        ``verified``: the link vouches for its TCP checksum. False: not a
        frame for a run (the held run, if any, has been flushed when ``f``
        was a candidate that could not extend it)."""
        if self.run and self._tsecr >= 0 and len(f) >= _FRAME_TS_LEN:
            # The common frame: the next of a run with timestamps. Its headers
            # in one unpack, checked against the run's (whose source the
            # full checks below accepted): the same MAC, addresses and
            # ports; IPv4's length and header checksum; then the run's rules.
            (mac, w0, total, ident, frag, ttl_proto, csum, src, dst, sport, dport, seq, ack) = (
                head := _frame_ts(f)
            )[:13]
            words, flags, window, _, urgent, layout, tsval, tsecr = head[13:]
            end = _IP_AT + total
            if (
                seq == self._end_seq
                and mac == self._mac
                and src == self._src
                and dst == self._dst
                and sport == self._sport
                and dport == self._dport
                and words == _TS_OPTIONS
                and layout == _TS_LAYOUT
                and flags in _DATA_FLAGS
                and not urgent
                and ack == self._ack
                and window == self._window
                and tsecr == self._tsecr
                and (tsval - self._tsval) & 0xFFFFFFFF < 0x80000000
                and _TS_END < end <= len(f)
                and not (w0 + total + ident + frag + ttl_proto + csum + src + dst) % 0xFFFF
                and self._size + end - _TS_END <= self._room
            ):
                n = end - _L4
                if not verified and (
                    (le_residue(f[_L4:end]) * 256 + src + dst + _PROTO_TCP + n) % 0xFFFF
                ):
                    return False  # the per-frame path counts it (tcp-bad-checksum)
                self.run.append((f, _TS_END, end))
                size = end - _TS_END
                self._end_seq = (seq + size) & 0xFFFFFFFF
                self._size += size
                self._tsval = tsval
                self._flags |= flags
                return True
        span = self._ipv4.tcp_frame_span(f)
        if span is None:
            return False
        src, dst, end = span
        words = f[_OFF]
        if words == _TS_OPTIONS:
            if end <= _TS_END:
                return False  # no payload (or not even the options)
            sport, dport, seq, ack, _, flags, window, _, urgent, layout, tsval, tsecr = _TS_HEADER(
                f, _L4
            )
            if layout != _TS_LAYOUT:
                return False
            payload_at = _TS_END
        elif words == _NO_OPTIONS:
            if end <= _OPTS:
                return False
            sport, dport, seq, ack, _, flags, window, _, urgent = _HEADER(f, _L4)
            payload_at = _OPTS
            tsval = tsecr = -1
        else:
            return False
        if (flags != _ACK and flags != _ACK_PSH) or urgent:
            return False
        n = end - _L4
        if not verified and (le_residue(f[_L4:end]) * 256 + src + dst + _PROTO_TCP + n) % 0xFFFF:
            return False  # the per-frame path counts it (tcp-bad-checksum)
        size = end - payload_at
        if self.run:
            if (
                seq == self._end_seq
                and ack == self._ack
                and sport == self._sport
                and src == self._src
                and dport == self._dport
                and window == self._window
                and tsecr == self._tsecr
                and self._size + size <= self._room
                and (tsval - self._tsval) & 0xFFFFFFFF < 0x80000000
            ):
                # (tsecr matches, so both frames have the options or neither.)
                self.run.append((f, payload_at, end))
                self._end_seq = (seq + size) & 0xFFFFFFFF
                self._size += size
                self._tsval = tsval
                self._flags |= flags
                return True
            self.flush(now)
        stream = self._demux.flow(dst, dport, src, sport)
        if stream is None:
            return False
        room = stream.conn.coalesce_room(seq, ack, window, None if tsval < 0 else tsval, now)
        if size > room:
            return False
        self.run.append((f, payload_at, end))
        self._stream = stream
        self._src = src
        self._dst = dst
        self._sport = sport
        self._dport = dport
        self._end_seq = (seq + size) & 0xFFFFFFFF
        self._ack = ack
        self._window = window
        self._tsecr = tsecr
        self._tsval = tsval
        self._flags = flags
        self._size = size
        self._room = room
        return True

    def ack_run(self, frames: list[bytes], i: int, now: float, vouched: type[bytes] | None) -> int:
        """ACK filtering (see the module doc): ``frames[i]`` and the pure
        ACKs of its connection right after it, each acknowledging more, go
        to TCP as the last one, standing for all. How many frames it took
        (0: none, the caller goes on with ``frames[i]``). Nothing may be held."""
        first = self._pure_ack(frames[i], type(frames[i]) is vouched)
        if first is None:
            return 0
        src, dst, sport, dport, seq, ack, tsval, tsecr, end = first
        first_tsval = None if tsval < 0 else tsval
        stream = self._demux.flow(dst, dport, src, sport)
        if stream is None:
            return 0
        bound = stream.conn.ack_run_end()
        if bound is None or not 0 < (bound - ack) & 0xFFFFFFFF < 0x80000000:
            return 0
        flow = frames[i][_FLOW]
        acks = [ack]
        j = i + 1
        while j < len(frames) and frames[j][_FLOW] == flow:
            nxt = self._pure_ack(frames[j], type(frames[j]) is vouched)
            if (
                nxt is None
                or nxt[4] != seq
                or not 0 < (nxt[5] - acks[-1]) & 0xFFFFFFFF < 0x80000000
                or not 0 < (bound - nxt[5]) & 0xFFFFFFFF < 0x80000000
                or (nxt[6] - tsval) & 0xFFFFFFFF >= 0x80000000  # PAWS: never back
                or nxt[7] != tsecr  # the same RTT sample as the first (or none)
            ):
                break
            acks.append(nxt[5])
            tsval, end = nxt[6], nxt[8]
            j += 1
        n = j - i
        if n == 1 or not stream.conn.arm_ack_run(seq, acks, first_tsval, now, tsecr):
            return 0
        seg = wtcp.parse_at(frames[j - 1], _L4, end, src, dst, verify_checksum=False)
        counters = self._counters
        counters["frames-in"] += n
        counters["ipv4-in"] += n
        counters["tcp-acks-filtered"] += n - 1
        self._demux.receive_run(stream, seg, n, now)
        return n

    def _pure_ack(self, f: bytes, verified: bool) -> tuple[int, ...] | None:
        """(source, destination, ports, SEG.SEQ, SEG.ACK, TSval and TSecr or
        -1, where the segment ends) of ``f`` if it is a pure ACK the per-frame path
        would take (its frame checks and TCP checksum) with flags ACK only,
        no urgent pointer, no payload and no option but NOP NOP TS; else None."""
        span = self._ipv4.tcp_frame_span(f)
        if span is None:
            return None
        src, dst, end = span
        words = f[_OFF]
        if words == _TS_OPTIONS and end == _TS_END:
            sport, dport, seq, ack, _, flags, _, _, urgent, layout, tsval, tsecr = _TS_HEADER(
                f, _L4
            )
            if layout != _TS_LAYOUT:
                return None
        elif words == _NO_OPTIONS and end == _OPTS:
            sport, dport, seq, ack, _, flags, _, _, urgent = _HEADER(f, _L4)
            tsval = tsecr = -1
        else:
            return None
        if flags != _ACK or urgent:
            return None
        if (
            not verified
            and (le_residue(f[_L4:end]) * 256 + src + dst + _PROTO_TCP + end - _L4) % 0xFFFF
        ):
            return None  # the per-frame path counts it (tcp-bad-checksum)
        return src, dst, sport, dport, seq, ack, tsval, tsecr, end

    def flush(self, now: float) -> None:
        """Hand the held run to TCP as one segment (see the module doc)."""
        run = self.run
        if not run:
            return
        stream = self._stream
        assert stream is not None
        self.run = []
        self._stream = None
        first, _, end = run[0]
        src = self._src
        seg = wtcp.parse_at(first, _L4, end, src, self._ipv4.ip_int, verify_checksum=False)
        n = len(run)
        if n > 1:
            payload = b"".join([memoryview(f)[a:b] for f, a, b in run])
            seg = wtcp.TcpSegment(
                seg.src_port,
                seg.dst_port,
                seg.seq,
                seg.ack,
                wtcp.TcpFlags(self._flags),
                seg.window,
                payload,
                seg.options,
                0,
            )
        counters = self._counters
        counters["frames-in"] += n
        counters["ipv4-in"] += n
        if n > 1:
            counters["tcp-coalesced"] += n - 1
        self._demux.receive_run(stream, seg, n, now)
