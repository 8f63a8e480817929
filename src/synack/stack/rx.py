"""A host's one-pass input of the common TCP frame: Ethernet, IPv4 and TCP
headers read by one unpack, every check done on ints, the flow key built
once, straight to the connection.

:meth:`FrameInput.take` is what :meth:`Ipv4.receive_tcp_frame
<synack.stack.ipv4.Ipv4.receive_tcp_frame>`, :meth:`TcpDemux.receive_at
<synack.stack.tcp_demux.TcpDemux.receive_at>` and :func:`~synack.wire.tcp.parse_at`
do with a frame, one after the other, fused into one function for the frame
they all accept: unicast to our MAC and address, a header checksum that
holds, a source the slow path takes, a whole TCP header with a correct
checksum and options, non-zero ports. Such a frame is counted (``ipv4-in``,
``tcp-in``) and handed on as the three would hand it on. Any other frame is
declined with nothing counted or changed, and the caller sends it the usual
way, which refuses and counts it as it always did (tests/stack/test_rx.py
runs both ways on the same frames, hostile ones included). The caller
(:meth:`Host.receive_frames <synack.stack.host.Host.receive_frames>`) has
already read the frame's raw bytes: an unfragmented IPv4 packet without
options carrying TCP, at least ``_MIN_LEN`` octets.

A pure SYN (each passive open's first segment) is taken only when the usual
way would make it a new connection of a listener with nothing else done
first: a listener on its port that is not flooded (checked on the raw bytes
first, as :meth:`TcpDemux.raw_syn <synack.stack.tcp_demux.TcpDemux.raw_syn>`
does: a flooded listener's SYN goes to the SYN-flood path's answer from
here, unparsed, as the host's raw path would send it), bound to the frame's address or
to any, and no connection of its 4-tuple. It then goes to the listener's
SYN step (``TcpDemux.syn_to_listener``) as ``dispatch_segment`` hands it on,
or, with a TIME-WAIT record of its 4-tuple (a client's port used again within
2 MSL: every SYN of a long run of new connections from one client), to
``dispatch_segment`` itself, without the SYN-flood path's, the IP fast path's
and the demux's second and third looks at the same listener, flow and header
(tests/stack/test_rx_syn.py: on and off, the same fates).

Layer: stack. Imports synack.wire, synack.tcp and the rest of synack.stack.
"""

from __future__ import annotations

import struct
from collections import Counter

from synack.stack.ipv4 import Ipv4
from synack.stack.tcp_demux import TcpDemux
from synack.tcp.states import State
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.checksum import le_residue
from synack.wire.errors import MalformedPacket
from synack.wire.ipv4 import address_from_int, address_int

# The destination MAC and EtherType, the IPv4 header as 16-bit words (the
# checksum sums them; the addresses as 32-bit ints count as themselves modulo
# 0xFFFF) and the fixed TCP header.
_FRAME = struct.Struct("!6s6xHHHHHHHIIHHIIBBHHH")
_unpack = _FRAME.unpack_from
_MIN_LEN = _FRAME.size  # all three fixed headers whole
_IP_AT = weth.HEADER_LEN
_L4_AT = wip.ETH_IPV4_HEADER_LEN
_ETHERTYPE_IPV4 = weth.ETHERTYPE_IPV4
_VERSION_IHL = wip.VERSION_IHL  # version 4, no options
_FRAGMENT_MASK = 0x3FFF  # more fragments and the offset (DF may be set)
# A pure SYN goes to the SYN-flood path first (stack/synflood.py), not here.
_SYN_MASK = int(wtcp.TcpFlags.SYN | wtcp.TcpFlags.ACK | wtcp.TcpFlags.RST | wtcp.TcpFlags.FIN)
_SYN = int(wtcp.TcpFlags.SYN)
_FLAGS_AT = _L4_AT + wtcp.FLAGS_AT  # in the frame
_IP_HLEN = wip.MIN_HEADER_LEN
_TCP_HLEN = wtcp.MIN_HEADER_LEN
_PROTO_TCP = wip.PROTO_TCP
_MULTICAST_FIRST = range(224, 240)
_LOOPBACK_FIRST = 127
_TIME_WAIT = State.TIME_WAIT
_from_bytes = int.from_bytes
_segment_at = wtcp.segment_at
_make = wtcp.make_segment
_FLAGS = wtcp.FLAGS
_ts_table = wtcp.SHARED_TS_OPTIONS
_ts_options = wtcp.shared_ts_options
_unpack_ts = wtcp.TIMESTAMPS.unpack_from
_TS_ALIGNED = wtcp.TS_ALIGNED
_TS_HLEN = _TCP_HLEN + 12
_TS_AT = _L4_AT + _TCP_HLEN
_TS_KIND_END = _TS_AT + 4
_TS_PAYLOAD_AT = _TS_AT + 12
_DPORT_AT = _L4_AT + 2  # the destination port in the frame
_DPORT_END = _DPORT_AT + 2
# Host.receive_frames' raw tests: IPv4 without options, unfragmented, TCP.
_RAW_IPV4_AT = weth.ETHERTYPE_AT
_RAW_IPV4_END = _RAW_IPV4_AT + 3
_RAW_IPV4_NO_OPTIONS = _ETHERTYPE_IPV4.to_bytes(2, "big") + bytes([_VERSION_IHL])
_FRAG_AT = _IP_AT + wip.FRAGMENT_AT
_PROTO_AT = _IP_AT + wip.PROTO_AT

__all__ = ["FrameInput"]


class FrameInput:
    """The fused input of one host (see the module's docstring)."""

    __slots__ = ("_counters", "_ip", "_listeners", "_mac", "_tcp", "syns")

    def __init__(self, ip: Ipv4, tcp: TcpDemux, counters: Counter[str]) -> None:
        self._ip = ip
        self._tcp = tcp
        self._listeners = tcp.listeners
        self._mac = ip.iface.mac
        self._counters = counters
        # Pure SYNs to a listener taken here (the module's docstring); off:
        # each goes the usual way (the tests compare).
        self.syns = True

    def take(self, data: bytes, now: float, verify: bool) -> bool:
        """True when ``data`` (a frame as the module's docstring says) was
        taken: counted and given to TCP. False: nothing was done, the frame
        goes the usual way. ``verify``: its TCP checksum is summed (False: the
        link vouches for it, or the IP layer's ``verify_l4`` is off)."""
        if len(data) < _MIN_LEN:
            return False
        if data[_FLAGS_AT] & _SYN_MASK == _SYN:
            # A pure SYN: TcpDemux.raw_syn's test first, on the raw bytes (a
            # flooded listener's SYNs go to the SYN-flood path unparsed).
            if not self.syns:
                return False
            listener = self._listeners.get(_from_bytes(data[_DPORT_AT:_DPORT_END]))
            if listener is None:
                return False
            if len(listener.half_open) >= listener.syn_backlog:
                # Flooded: what the host's raw path does with it (its raw
                # tests, then raw_syn's flood answer, once looked up). Declined
                # (False) it goes that way, where the answer, a pure test,
                # declines it again.
                if (
                    data[_RAW_IPV4_AT:_RAW_IPV4_END] != _RAW_IPV4_NO_OPTIONS
                    or data[_FRAG_AT] & 0x3F
                    or data[_FRAG_AT + 1]
                    or data[_PROTO_AT] != _PROTO_TCP
                ):
                    return False
                ip = self._ip
                if verify or not ip.verify_l4:
                    return self._tcp.flood.answer(data, listener, now)
                # A frame the link vouches for: its checksum not summed there
                # either (as receive_frame with l4_verified hands it on).
                ip.verify_l4 = False
                try:
                    return self._tcp.flood.answer(data, listener, now)
                finally:
                    ip.verify_l4 = True
        else:
            listener = None
        (
            mac,
            ethertype,
            w0,
            total,
            ident,
            frag,
            ttl_proto,
            csum,
            src,
            dst,
            sport,
            dport,
            seq,
            ack,
            off,
            flags,
            window,
            _tcsum,
            urgent,
        ) = _unpack(data)
        # Host.receive_frame's raw tests (an unfragmented IPv4 packet without
        # options carrying TCP, not a pure SYN), Ipv4.receive_tcp_frame's
        # (tcp_frame_span), then parse_at's, in that order.
        if (
            ethertype != _ETHERTYPE_IPV4
            or w0 >> 8 != _VERSION_IHL
            or frag & _FRAGMENT_MASK
            or ttl_proto & 0xFF != _PROTO_TCP
            or mac != self._mac
        ):
            return False
        ip = self._ip
        if dst != ip.fast_dst or total < _IP_HLEN or total + _IP_AT > len(data):
            return False
        # RFC 791 §3.1: a correct header sums to ones'-complement -0.
        if (w0 + total + ident + frag + ttl_proto + csum + src + dst) % 0xFFFF:
            return False
        first = src >> 24
        if first in _MULTICAST_FIRST or first == _LOOPBACK_FIRST or src in ip.fast_bad_src:
            return False
        n = total - _IP_HLEN
        hlen = (off >> 4) << 2
        if hlen < _TCP_HLEN or hlen > n:
            return False  # truncated or a bad data offset: parse_at refuses it
        end = _IP_AT + total
        if verify:
            # The pseudo-header and segment as one sum (RFC 9293 §3.1), as parse_at.
            raw = data[_L4_AT:end]
            residue = _from_bytes(raw, "little") % 0xFFFF if n < 256 else le_residue(raw)
            if (residue * 256 + src + dst + _PROTO_TCP + n) % 0xFFFF:
                return False
        if not sport or not dport:
            return False  # port 0: the demux counts tcp-bad-port
        tcp = self._tcp
        flow = (dst, dport, src, sport)
        if listener is not None and (
            flow in tcp.flows or address_int(listener.local[0]) not in (0, dst)
        ):
            # A SYN for a connection of its 4-tuple, or to a listener bound
            # to another of our addresses: the demux's.
            return False
        if hlen == _TS_HLEN and data[_TS_AT:_TS_KIND_END] == _TS_ALIGNED:
            # NOP NOP TS, the options of nearly every segment of a Linux
            # connection: segment_at's common case, without the call.
            ts = _unpack_ts(data, _TS_KIND_END)
            options = _ts_table.get(ts)
            if options is None:
                options = _ts_options(ts)
            seg = _make(
                sport,
                dport,
                seq,
                ack,
                _FLAGS[flags],
                window,
                data[_TS_PAYLOAD_AT:end],
                options,
                urgent,
            )
        else:
            try:
                seg = _segment_at(
                    data, _L4_AT, end, hlen, sport, dport, seq, ack, flags, window, urgent
                )
            except MalformedPacket:
                return False  # a bad option: parse_at refuses and counts it
        counters = self._counters
        counters["ipv4-in"] += 1
        counters["tcp-in"] += 1
        if listener is not None:
            src_addr, dst_addr = address_from_int(src), address_from_int(dst)
            if flow in tcp.time_wait.by_flow:
                # A SYN for a TIME-WAIT record of its 4-tuple: a client's port
                # used again within 2 MSL, as every SYN of a client opening
                # connections for longer than its port range lasts (RFC 9293
                # §3.6.1, MAY-2: reopened, or answered): dispatch_segment's
                # steps from its TIME-WAIT one, as the usual way would take.
                tcp.dispatch_segment(seg, src_addr, dst_addr, now, flow)
                return True
            # dispatch_segment's last step for it, with its key.
            tcp.syn_to_listener(listener, (dst_addr, dport, src_addr, sport), seg, now, flow)
            return True
        stream = tcp.flows.get(flow)
        if stream is not None and stream.conn.state is not _TIME_WAIT:
            stream.conn.receive_segment(seg, now)
            tcp.dirty[stream] = None
        else:
            tcp.dispatch_segment(seg, address_from_int(src), address_from_int(dst), now, flow)
        return True
