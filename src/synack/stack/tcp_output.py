"""A host's TCP output: one segment of a connection onto the link.

The fastest way that applies, in order: on a link that takes split frames
(``split``), the headers packed as one string and the payload left apart
(:class:`~synack.stack.offload.SplitFrame`, its checksum maybe left to the
link: ``tso``); else, to a resolved neighbour, the Ethernet, IPv4 and TCP
headers packed at once with the payload joined once (what
:meth:`Ipv4.send <synack.stack.ipv4.Ipv4.send>` does with the bytes
:func:`synack.wire.tcp.build` gives, without joining them twice); else
:func:`~synack.wire.tcp.build` and :meth:`Ipv4.send`, which resolve,
fragment and loop back. Each way puts the same octets on the link (the
tests compare them).

Layer: stack. Imports synack.wire and lower stack modules (config, ipv4, offload).
"""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address

from synack.stack.config import NoRouteError
from synack.stack.ipv4 import Ipv4
from synack.stack.offload import SplitFrame
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.ipv4 import address_int
from synack.wire.tcp import TcpFlags, TcpSegment

_L4_START = wip.ETH_IPV4_HEADER_LEN  # where the TCP header starts in a frame
_CSUM = wtcp.CHECKSUM_AT
_IP_HLEN = wip.MIN_HEADER_LEN  # our IPv4 headers carry no options
_build_header_offload = wtcp.build_header_offload
_build_header = wtcp.build_header
_segment_headers = wtcp.segment_headers
_NOT_BEFORE_LAST = ~(TcpFlags.PSH | TcpFlags.FIN)
_PROTO_TCP = wip.PROTO_TCP
_FLAG_DF = wip.FLAG_DF


class TcpOutput:
    """Sends the TCP segments of one host through its IPv4 layer ``ip``.

    ``split`` and ``tso``: what the link can do (``Host.enable_offload``).
    ``fast``: the framing fast path to a resolved neighbour (off: every
    segment goes through :func:`synack.wire.tcp.build` and ``Ipv4.send``;
    the tests compare both).
    """

    __slots__ = ("_ip", "counters", "fast", "gso", "large_out", "split", "tso")

    def __init__(self, ip: Ipv4, counters: Counter[str]) -> None:
        self._ip = ip
        self.counters = counters
        self.split = False
        self.tso = False
        self.fast = True
        # The largest TCP payload a connection may hand over in one segment
        # (its segments_to_send ``gso``), cut by send_large; 0: one MSS.
        self.gso = 0
        self.large_out = 0  # such segments handed to send_large

    def send(self, src: IPv4Address, dst: IPv4Address, seg: TcpSegment, now: float) -> None:
        """``seg`` from ``src`` to ``dst``; a segment with no route is counted."""
        ip = self._ip
        if ip.dest_cache:
            if self.split:
                if self._send_split(src, dst, seg, now):
                    return
            elif not ip.pmtu and self.fast:
                dst_int = address_int(dst)
                cached = ip.dest_cache.get(dst_int)
                if cached is not None and cached[1] > now:
                    header = _build_header(seg, address_int(src), dst_int)
                    payload = seg.payload
                    total = _IP_HLEN + len(header) + len(payload)
                    if total <= ip.mtu:
                        # DF: the segment fits the path (no learnt path MTU).
                        self.counters["tcp-out"] += 1
                        head = ip.eth_ip_head(
                            cached[0], total, _FLAG_DF, _PROTO_TCP, ip.ip_int, dst_int
                        )
                        ip.emit(b"".join((head, header, payload)), now)
                        return
        raw = wtcp.build(seg, src, dst)
        self.counters["tcp-out"] += 1
        try:
            # DF as Linux does for TCP (PMTU discovery), when the segment fits.
            mtu = ip.path_mtu(dst)
            if self.tso and _IP_HLEN + len(raw) > mtu and mtu == ip.mtu:
                # A coalesced segment: the link cuts it into MTU-sized ones.
                self.counters["tcp-tso-out"] += 1
                ip.send(dst, _PROTO_TCP, raw, now, dont_fragment=True, oversize=True)
            else:
                ip.send(dst, _PROTO_TCP, raw, now, dont_fragment=_IP_HLEN + len(raw) <= mtu)
        except NoRouteError:
            self.counters["tcp-no-route"] += 1

    def _send_split(
        self, src: IPv4Address, dst: IPv4Address, seg: TcpSegment, now: float, mss: int = 0
    ) -> bool:
        """The fast path to a resolved neighbour over a link that takes split
        frames (``split``): Ethernet, IPv4 and TCP headers built as one
        string, the payload left as it is (never copied). With a
        checksum-offloading link (``tso``) the payload is not summed either:
        the TCP checksum field holds the pseudo-header sum for the link to
        complete, as a NIC with TX checksum offload does. False when the slow
        path must do it (unresolved next hop, a learnt path MTU, loopback, a
        segment to fragment). ``mss``: how a super-segment is to be cut
        (0: as the link's MTU allows)."""
        ip = self._ip
        dst_int = address_int(dst)
        cached = ip.dest_cache.get(dst_int)
        if cached is None or cached[1] <= now or ip.pmtu:
            return False
        src_int = address_int(src)
        tso = self.tso
        payload = seg.payload
        if tso:
            tcp_header = _build_header_offload(seg, src, dst)
        else:
            # The whole checksum here: pseudo-header, header and payload summed once each.
            tcp_header = _build_header(seg, src_int, dst_int)
        total = _IP_HLEN + len(tcp_header) + len(payload)
        if total > ip.mtu:
            if not tso:
                return False
            self.counters["tcp-tso-out"] += 1
        self.counters["tcp-out"] += 1
        head = ip.eth_ip_head(cached[0], total, _FLAG_DF, _PROTO_TCP, src_int, dst_int) + tcp_header
        ip.emit(SplitFrame(head, payload, _L4_START if tso else 0, _CSUM, mss), now)
        return True

    def send_large(
        self, src: IPv4Address, dst: IPv4Address, seg: TcpSegment, mss: int, now: float
    ) -> None:
        """A segment of more than ``mss`` payload octets (``gso``): whole to a
        link that segments TCP itself (TSO), else cut here into the
        MSS-sized segments the connection would have sent one by one
        (software segmentation, Linux's GSO), the same octets on the link."""
        ip = self._ip
        self.large_out += 1
        dst_int = address_int(dst)
        cached = ip.dest_cache.get(dst_int) if ip.dest_cache and not ip.pmtu else None
        if cached is not None and cached[1] > now:
            if self.tso:
                if self._send_split(src, dst, seg, now, mss):
                    return
            elif self.split or self.fast:
                src_int = address_int(src)
                pieces = _segment_headers(seg, src_int, dst_int, mss)
                if _IP_HLEN + len(pieces[0][0]) + mss <= ip.mtu:
                    self._send_pieces(cached[0], src_int, dst_int, pieces, now)
                    return
        # Anything else (unresolved, loopback, a learnt path MTU): each piece
        # as a segment of its own through send().
        payload = seg.payload
        mid_flags = seg.flags & _NOT_BEFORE_LAST
        size = len(payload)
        for start in range(0, size, mss):
            last = start + mss >= size
            self.send(
                src,
                dst,
                TcpSegment(
                    seg.src_port,
                    seg.dst_port,
                    (seg.seq + start) & 0xFFFFFFFF,
                    seg.ack,
                    seg.flags if last else mid_flags,
                    seg.window,
                    payload[start : start + mss],
                    seg.options,
                    seg.urgent,
                ),
                now,
            )

    def _send_pieces(
        self, mac: bytes, src: int, dst: int, pieces: list[tuple[bytes, bytes]], now: float
    ) -> None:
        """Frames for ``pieces`` (TCP header, payload) to the neighbour at ``mac``:
        split ones on a link that takes them, else joined once each."""
        ip = self._ip
        head_of, emit, split = ip.eth_ip_head, ip.emit, self.split
        self.counters["tcp-out"] += len(pieces)
        for header, payload in pieces:
            total = _IP_HLEN + len(header) + len(payload)
            head = head_of(mac, total, _FLAG_DF, _PROTO_TCP, src, dst)
            if split:
                emit(SplitFrame(head + header, payload, 0, _CSUM), now)
            else:
                emit(b"".join((head, header, payload)), now)
