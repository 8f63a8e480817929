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

A segment larger than the connection's MSS (``gso``: TCP handed over a run
of full-sized segments as one, see ``TcpSender.segments_to_send``) goes to
:meth:`TcpOutput.send_large`: whole to a link that segments TCP itself
(TSO), else cut here into the MSS-sized frames TCP would have sent, one
pack of all headers per frame (software segmentation, as Linux's GSO).

Layer: stack. Imports synack.errors, synack.tcp (buffers), synack.wire and lower stack modules
(config, ipv4, offload).
"""

from __future__ import annotations

import dataclasses
import struct
from collections import Counter
from ipaddress import IPv4Address

from synack.errors import LocalProtocolError
from synack.stack.config import NoRouteError
from synack.stack.ipv4 import Ipv4
from synack.stack.offload import IPV4_MAX_TOTAL, SplitFrame, total_length_field
from synack.tcp.buffers import LENT
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.checksum import le_residue
from synack.wire.ipv4 import address_int
from synack.wire.tcp import TcpFlags, TcpSegment

_L4_START = wip.ETH_IPV4_HEADER_LEN  # where the TCP header starts in a frame
_CSUM = wtcp.CHECKSUM_AT
_IP_HLEN = wip.MIN_HEADER_LEN  # our IPv4 headers carry no options
_IP_MAX = IPV4_MAX_TOTAL  # an IPv4 packet's largest total length (a TSO super-segment's)
_build_header_offload = wtcp.build_header_offload
_build_header = wtcp.build_header
_build_options_sum = wtcp.build_options_sum
_le_residue = le_residue
_NOT_BEFORE_LAST = ~(TcpFlags.PSH | TcpFlags.FIN)
_NOT_BEFORE_LAST_INT = ~(int(TcpFlags.PSH) | int(TcpFlags.FIN))
_VERSION_IHL = wip.VERSION_IHL
_VERSION_WORD = wip.VERSION_IHL << 8  # an IPv4 header's first word (TOS 0)
# Ethernet, IPv4 (no options) and TCP headers in one pack; the options follow.
_FRAME_HEAD = "!14sBBHHHHHIIHHIIBBHHH"
_FRAME_HEADS: dict[int, struct.Struct] = {}
# The same with the options of nearly every segment: NOP NOP TS (RFC 7323
# Appendix A's layout, as Linux sends it), TSval and TSecr.
_FRAME_HEAD_TS = struct.Struct(f"{_FRAME_HEAD}III")
_TS_ALIGNED_WORD = int.from_bytes(wtcp.TS_ALIGNED)
_TS_WORDS_SUM = wtcp.TS_ALIGNED_SUM
_FOLDS: dict[int, tuple[int, ...]] = {}
_from_bytes = int.from_bytes


def _owned(seg: TcpSegment) -> TcpSegment:
    """``seg`` with its Lent payload replaced by the lender's copy."""
    return dataclasses.replace(seg, payload=bytes(seg.payload))


def _folds(n: int) -> tuple[int, ...]:
    """(shift, mask) four times: folds of an ``n``-octet little-endian value
    at multiples of 16 bits, each halving it; a fold too short to make is
    (a shift past any value, all ones): ``(x >> k) + (x & m)`` is then x."""
    made = _FOLDS.get(n)
    if made is None:
        out: list[int] = []
        k = (n << 2) & ~15
        for _ in range(4):
            out += (k, (1 << k) - 1) if k >= 16 else (1 << 20, -1)
            k = (k >> 1) & ~15
        if len(_FOLDS) >= 64:
            _FOLDS.clear()
        made = _FOLDS[n] = tuple(out)
    return made


_PROTO_TCP = wip.PROTO_TCP
_FLAG_DF = wip.FLAG_DF


class TcpOutput:
    """Sends the TCP segments of one host through its IPv4 layer ``ip``.

    ``split`` and ``tso``: what the link can do (``Host.enable_offload``).
    ``fast``: the framing fast path to a resolved neighbour (off: every
    segment goes through :func:`synack.wire.tcp.build` and ``Ipv4.send``;
    the tests compare both).
    """

    __slots__ = (
        "_eth_heads", "_ip", "counters", "fast", "gso", "ip_max", "large_out", "split", "tso",
    )  # fmt: skip

    def __init__(self, ip: Ipv4, counters: Counter[str]) -> None:
        self._ip = ip
        self.counters = counters
        self.split = False
        self.tso = False
        self.fast = True
        # By neighbour MAC: the Ethernet header to it and the IPv4 TTL and
        # protocol word of a TCP packet (Ipv4.eth_ip_template's, which stay
        # as they are): _head's, without a call and a join per frame.
        self._eth_heads: dict[bytes, tuple[bytes, int]] = {}
        # The largest TCP payload a connection may hand over in one segment
        # (its segments_to_send ``gso``), cut by send_large; 0: one MSS.
        self.gso = 0
        # The largest IPv4 packet of a TSO super-segment: 65,535, or more on
        # a link that takes BIG TCP packets (total length field 0; see
        # stack/offload.BIG_TSO_MAX_TOTAL). Set by Host.enable_offload.
        self.ip_max = _IP_MAX
        self.large_out = 0  # such segments handed to send_large

    def send(self, src: IPv4Address, dst: IPv4Address, seg: TcpSegment, now: float) -> None:
        """``seg`` from ``src`` to ``dst``; a segment with no route is counted.
        A :class:`~synack.tcp.buffers.Lent` payload (a file's pages) goes on
        as it is only to a link that completes the checksum (``tso``) by the
        split-frame paths, which measure it and nothing more; any other way
        gets its lender's copy first (:func:`_owned`), never its memory."""
        ip = self._ip
        if type(seg.payload) is LENT and not self.tso:
            seg = _owned(seg)
        if ip.dest_cache:
            if self.fast and not ip.pmtu:
                dst_int = address_int(dst)
                cached = ip.dest_cache.get(dst_int)
                if cached is not None and cached[1] > now:
                    payload = seg.payload
                    tso = self.tso
                    head = self._head(cached[0], address_int(src), dst_int, seg, payload, tso)
                    if head is not None:
                        # DF: the segment fits the path (no learnt path MTU).
                        self.counters["tcp-out"] += 1
                        if tso:  # the checksum for the link to complete (_send_split's frame)
                            ip.emit(SplitFrame(head, payload, _L4_START, _CSUM), now)
                        elif self.split:
                            ip.emit(SplitFrame(head, payload, 0, _CSUM), now)
                        else:
                            ip.emit(head + payload, now)
                        return
            if self.split and self._send_split(src, dst, seg, now):
                return
        if type(seg.payload) is LENT:
            seg = _owned(seg)  # built and summed below: user space reads it
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

    def _eth_head(self, mac: bytes) -> tuple[bytes, int]:
        """The Ethernet header to the neighbour at ``mac`` and the TTL and
        protocol word of a TCP packet, kept (a few neighbours per host)."""
        eth, ttl_word = self._ip.eth_ip_template(mac)
        if len(self._eth_heads) >= 64:
            self._eth_heads.clear()
        made = self._eth_heads[mac] = (eth, ttl_word | _PROTO_TCP)
        return made

    def _head(
        self,
        mac: bytes,
        src: int,
        dst: int,
        seg: TcpSegment,
        payload: bytes,
        partial: bool,
        limit: int = 0,
    ) -> bytes | None:
        """All the headers of the frame carrying ``seg`` to the neighbour at
        ``mac`` (Ethernet, IPv4 with the next identification, TCP with its
        options), packed at once; both checksums summed from the fields
        (RFC 1071: additive, a 32-bit field counting as itself modulo
        0xFFFF) and the payload's words, as :meth:`_cut` does for a piece.
        ``partial``: the TCP checksum field holds the folded pseudo-header
        sum only, for a checksum-offloading link to complete
        (:func:`synack.wire.tcp.build_header_offload`'s). None when the
        packet would not fit the MTU (or ``limit``: a TSO super-segment's,
        which the link cuts)."""
        ip = self._ip
        o = seg.options
        ts = o.timestamps
        if (
            ts is not None
            and o.mss is None
            and o.wscale is None
            and not o.sack_permitted
            and not o.sack_blocks
            and not o.unknown
            and o.fastopen is None
        ):
            # Timestamps alone (nearly every segment): NOP NOP TS packed with
            # the headers, its words summed from the values (wire/tcp.py).
            tsval, tsecr = ts
            hlen = 32
            opts_sum = _TS_WORDS_SUM + tsval + tsecr
            packer = _FRAME_HEAD_TS
            opts = b""
        else:
            opts, opts_sum = _build_options_sum(o)
            hlen = 20 + len(opts)
            found = _FRAME_HEADS.get(len(opts))
            if found is None:
                found = _FRAME_HEADS[len(opts)] = struct.Struct(f"{_FRAME_HEAD}{len(opts)}s")
            packer = found
            tsval = tsecr = -1
        n = len(payload)
        l3 = _IP_HLEN + hlen + n
        if l3 > (limit or ip.mtu):
            return None
        made = self._eth_heads.get(mac)
        if made is None:
            made = self._eth_head(mac)
        eth, ttl_proto = made
        ip.ident = ident = (ip.ident + 1) & 0xFFFF
        # The total length field: 0 for a BIG TCP super-segment (over 65,535
        # octets; only with a ``limit`` above that, a link's that takes them):
        # offload.total_length_field, inline (once per frame).
        tot = l3 if l3 <= _IP_MAX else 0
        try:
            sport, dport, seq, ack = seg.src_port, seg.dst_port, seg.seq, seg.ack
            flags, window, urgent = int(seg.flags), seg.window, seg.urgent
            if partial:
                # checksum.fold() of the pseudo-header (RFC 9293 §3.1), not complemented.
                pseudo = src + dst + _PROTO_TCP + hlen + n
                tcsum = pseudo % 0xFFFF or (0xFFFF if pseudo else 0)
            else:
                # finish(): a sum that is never zero, folded and complemented.
                tcsum = 0xFFFF - (
                    (
                        src + dst + _PROTO_TCP + hlen + n + sport + dport + seq + ack
                        + (hlen << 10) + flags + window + urgent + opts_sum
                        # le_residue makes no folds under 256 octets: the int itself.
                        + (_from_bytes(payload, "little") if n < 256 else _le_residue(payload))
                        * 256
                    )
                    % 0xFFFF
                    or 0xFFFF
                )  # fmt: skip
            icsum = 0xFFFF - (
                (_VERSION_WORD + tot + ident + _FLAG_DF + ttl_proto + src + dst) % 0xFFFF or 0xFFFF
            )
            if tsval >= 0:
                return packer.pack(
                    eth, _VERSION_IHL, 0, tot, ident, _FLAG_DF, ttl_proto, icsum, src, dst, sport,
                    dport, seq, ack, 128, flags, window, tcsum, urgent, _TS_ALIGNED_WORD, tsval,
                    tsecr,
                )  # fmt: skip
            return packer.pack(
                eth, _VERSION_IHL, 0, tot, ident, _FLAG_DF, ttl_proto, icsum,
                src, dst, sport, dport, seq, ack, hlen << 2, flags, window, tcsum, urgent, opts,
            )  # fmt: skip
        except (struct.error, TypeError) as exc:
            raise LocalProtocolError(f"tcp: cannot build {seg!r}: {exc}") from None

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
            tcp_header = _build_header_offload(seg, src, dst, max_length=self.ip_max)
        else:
            # The whole checksum here: pseudo-header, header and payload summed once each.
            tcp_header = _build_header(seg, src_int, dst_int)
        total = _IP_HLEN + len(tcp_header) + len(payload)
        if total > ip.mtu:
            if not tso:
                return False
            if total > self.ip_max:
                # No IPv4 packet carries it (RFC 791's 16-bit total length, or
                # the link's BIG TCP bound): the caller handed over more than gso.
                raise LocalProtocolError(
                    f"tcp: a {len(payload)}-octet super-segment exceeds IPv4's {self.ip_max}"
                    f"-octet packet (on this link) with a {len(tcp_header)}-octet header"
                )
            self.counters["tcp-tso-out"] += 1
        self.counters["tcp-out"] += 1
        tot = total_length_field(total)  # BIG TCP: 0 over 65,535
        head = ip.eth_ip_head(cached[0], tot, _FLAG_DF, _PROTO_TCP, src_int, dst_int) + tcp_header
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
        if type(seg.payload) is LENT and not self.tso:
            seg = _owned(seg)  # cut and summed in software (see send)
        dst_int = address_int(dst)
        cached = ip.dest_cache.get(dst_int) if ip.dest_cache and not ip.pmtu else None
        if cached is not None and cached[1] > now:
            if self.tso:
                if self.fast:
                    # All headers in one pack (_head, the checksum field the
                    # pseudo-header sum for the link to complete), as
                    # _send_split frames it with wire/tcp's builder.
                    payload = seg.payload
                    head = self._head(
                        cached[0], address_int(src), dst_int, seg, payload, True, self.ip_max
                    )
                    if head is not None:
                        counters = self.counters
                        counters["tcp-out"] += 1
                        if _IP_HLEN + len(head) - _L4_START + len(payload) > ip.mtu:
                            counters["tcp-tso-out"] += 1
                        ip.emit(SplitFrame(head, payload, _L4_START, _CSUM, mss), now)
                        return
                if self._send_split(src, dst, seg, now, mss):
                    return
            elif (self.split or self.fast) and self._cut(
                cached[0], address_int(src), dst_int, seg, mss, now
            ):
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

    def _cut(self, mac: bytes, src: int, dst: int, seg: TcpSegment, mss: int, now: float) -> bool:
        """Software segmentation to the neighbour at ``mac``: ``seg`` as
        frames of ``mss`` payload octets, each the frame :meth:`send` builds
        for that piece (PSH and FIN on the last only; identifications in
        turn). Per piece one pack of all three headers: the options are
        built once, and both checksums are the fixed fields' sums plus the
        piece's own words (length, identification; sequence number, flags
        and payload), RFC 1071's sums being additive. False when a piece
        would not fit the MTU (then each goes through send())."""
        ip = self._ip
        opts, opts_sum = _build_options_sum(seg.options)
        hlen = wtcp.MIN_HEADER_LEN + len(opts)
        if _IP_HLEN + hlen + mss > ip.mtu:
            return False
        eth, ttl_word = ip.eth_ip_template(mac)
        ttl_proto = ttl_word | _PROTO_TCP
        packer = _FRAME_HEADS.get(len(opts))
        if packer is None:
            packer = _FRAME_HEADS[len(opts)] = struct.Struct(f"{_FRAME_HEAD}{len(opts)}s")
        pack = packer.pack
        payload = seg.payload
        size = len(payload)
        sport, dport, seq, ack = seg.src_port, seg.dst_port, seg.seq, seg.ack
        flags, window, urgent = int(seg.flags), seg.window, seg.urgent
        mid_flags = flags & _NOT_BEFORE_LAST_INT
        offset = hlen << 2
        l3_total = _IP_HLEN + hlen  # plus the piece
        # The pseudo-header (RFC 9293 §3.1) and the TCP fields all pieces share.
        tcp_sum = src + dst + _PROTO_TCP + hlen + sport + dport + ack + (hlen << 10)
        tcp_sum += window + urgent + opts_sum
        ip_sum = _VERSION_WORD + l3_total + _FLAG_DF + ttl_proto + src + dst
        ident = ip.ident
        frames: list[bytes] = []
        add = frames.append
        # An MSS-long piece's value folded at multiples of 16 bits (so unchanged
        # modulo 0xFFFF, wire/checksum.py) down to a sixteenth before the %.
        _, _, k2, m2, k3, m3, k4, m4 = _folds(mss)
        half = (mss >> 1) & ~1  # even: 2**(8 * half) is 1 modulo 0xFFFF
        self.counters["tcp-out"] += (size + mss - 1) // mss
        try:
            for start in range(0, size, mss):
                piece = payload[start : start + mss]
                n = len(piece)
                f = flags if start + mss >= size else mid_flags
                s = (seq + start) & 0xFFFFFFFF
                ident = (ident + 1) & 0xFFFF
                if n == mss:
                    # le_residue inlined for this length: the payload's sum.
                    # Its two halves as ints added (the first fold, without
                    # shifting and masking an MSS-long int), then three folds.
                    mid = start + half
                    x = _from_bytes(payload[start:mid], "little") + _from_bytes(
                        payload[mid : start + mss], "little"
                    )
                    x = (x >> k2) + (x & m2)
                    x = (x >> k3) + (x & m3)
                    x = (x >> k4) + (x & m4)
                else:
                    x = _le_residue(piece)
                # finish(): a sum that is never zero, folded and complemented.
                tcsum = 0xFFFF - ((tcp_sum + n + s + f + x % 0xFFFF * 256) % 0xFFFF or 0xFFFF)
                icsum = 0xFFFF - ((ip_sum + n + ident) % 0xFFFF or 0xFFFF)
                head = pack(
                    eth, _VERSION_IHL, 0, l3_total + n, ident, _FLAG_DF, ttl_proto, icsum,
                    src, dst, sport, dport, s, ack, offset, f, window, tcsum, urgent, opts,
                )  # fmt: skip
                # Joined even for a link that takes split frames: an MSS of
                # payload copies in less time than a SplitFrame is made.
                add(head + piece)
        except (struct.error, TypeError) as exc:
            raise LocalProtocolError(f"tcp: cannot build {seg!r}: {exc}") from None
        finally:
            ip.ident = ident
            # All at once (Host._emit_frames), in order, those built before any error too.
            if frames:
                ip.emit_frames(frames, now)
        return True
