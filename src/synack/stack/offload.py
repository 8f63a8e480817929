"""Segmentation and checksum offload: split frames and TSO super-segments.

A link that writes a frame as headers plus payload in one gather write (a TAP
device) takes a :class:`SplitFrame` instead of joined bytes: the payload is
never copied. A link that also segments and checksums TCP itself (TAP with
``IFF_VNET_HDR`` offloads, like a NIC with TSO and TX checksum offload) lets
the host hand it one large segment where the connection produced several
contiguous ones: :func:`coalesce` joins them.

Layer: stack. Imports synack.tcp (buffers, seq) and synack.wire.
"""

from __future__ import annotations

from synack.tcp.buffers import join_payloads, owned
from synack.tcp.seq import seq_add
from synack.wire.tcp import TcpFlags, TcpSegment

# The largest TCP payload one IPv4 packet carries whatever the TCP options:
# 65,535 (the total length field's limit, RFC 791) less a 20-octet IPv4 header
# and the largest TCP header (60 octets, RFC 9293 §3.1's data offset of 15). A
# gso super-segment is whole MSS pieces of it: 45 of 1448 octets (65,160), as
# Linux's TSO sends over such a path.
TSO_MAX_PAYLOAD = 65_535 - 20 - 60
IPV4_MAX_TOTAL = 0xFFFF  # RFC 791's 16-bit total length: every normal packet's limit

# "BIG TCP" for IPv4 (Linux 6.3+, ip_rcv_core's iph_totlen): a TCP GSO packet
# of more than 65,535 octets, which a link that asked for it takes whole,
# carries total length 0 and its real length is the frame's. 256 KiB is well
# inside what the kernel's TAP builds one packet of (17 fragments of 32 KiB),
# and four times fewer super-segments for the sender to make (180 x 1448
# octets). Its Ethernet frame still fits a capture's 262,144-octet snapshot
# length (tcpdump's and wire/pcap's), so a pcap holds it whole. A link offers
# it (``Host.enable_offload(tso_max=...)``); every other packet keeps RFC
# 791's meaning.
BIG_TSO_MAX_TOTAL = 262_144 - 14


def total_length_field(total: int) -> int:
    """The IPv4 total length field of a ``total``-octet packet: itself, or 0
    for a BIG TCP super-segment over 65,535 octets (only ever made for a
    link that offered it: the callers check the link's bound first)."""
    return total if total <= IPV4_MAX_TOTAL else 0


def tso_max_payload(max_total: int) -> int:
    """The largest TCP payload of a super-segment in an IPv4 packet of at
    most ``max_total`` octets, whatever its TCP options (as TSO_MAX_PAYLOAD)."""
    return max_total - 20 - 60


class SplitFrame:
    """An outgoing Ethernet frame as ``head`` (all headers) and ``payload``,
    so a link sends it with one gather write instead of joining them (only
    made for such a link: ``Host.enable_offload(split=True)``). With ``csum_start`` 0 it is
    complete. Otherwise its transport checksum is partial: the field at
    ``csum_start + csum_offset`` holds the pseudo-header sum, and the link
    must have the sum from ``csum_start`` to the end added in (virtio's
    NEEDS_CSUM; only with ``Host.enable_offload(tso=True)``). ``mss``: for
    a TCP super-segment, the payload of each segment the link cuts it into
    (the connection's MSS; 0: what the link's MTU leaves)."""

    __slots__ = ("csum_offset", "csum_start", "head", "mss", "payload")

    def __init__(
        self, head: bytes, payload: bytes, csum_start: int, csum_offset: int, mss: int = 0
    ) -> None:
        self.head = head
        self.payload = payload
        self.csum_start = csum_start
        self.csum_offset = csum_offset
        self.mss = mss

    def __bytes__(self) -> bytes:
        # A Lent payload (a file's pages) is never read here: its lender's copy.
        return self.head + owned(self.payload)

    def __len__(self) -> int:
        return len(self.head) + len(self.payload)


def coalesce(segments: list[TcpSegment]) -> list[TcpSegment]:
    """Join runs of contiguous data segments that differ in nothing else
    (same ACK, window, options; only ACK/PSH flags) into single segments.

    First a look with ints only: two neighbours can join only if the first
    ends where the second starts and both fit one segment. A bulk sender's
    flush of super-segments (TCP's ``gso``, already as large as a segment
    may be) has no such pair and is returned as it is, without the flag
    arithmetic (an enum operation per test) of the joining pass."""
    if len(segments) < 2:
        return segments
    prev = segments[0]
    for seg in segments[1:]:
        n = len(prev.payload)
        if n + len(seg.payload) <= TSO_MAX_PAYLOAD and (prev.seq + n) & 0xFFFFFFFF == seg.seq:
            return _join_runs(segments)
        prev = seg
    return segments


def _join_runs(segments: list[TcpSegment]) -> list[TcpSegment]:
    """coalesce()'s joining pass."""
    out: list[TcpSegment] = []
    run: list[TcpSegment] = []

    def close_run() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            flags = TcpFlags(0)
            for r in run:
                flags |= r.flags
            out.append(
                TcpSegment(
                    run[0].src_port,
                    run[0].dst_port,
                    run[0].seq,
                    run[0].ack,
                    flags,
                    run[0].window,
                    join_payloads([r.payload for r in run]),
                    run[0].options,
                )
            )
        run.clear()

    size = 0
    for seg in segments:
        mergeable = (
            seg.payload and not seg.flags & ~(TcpFlags.ACK | TcpFlags.PSH) and not seg.urgent
        )
        if run and mergeable:
            prev = run[-1]
            if (
                not prev.flags & TcpFlags.PSH
                and prev.ack == seg.ack
                and prev.window == seg.window
                and prev.options == seg.options
                and seq_add(prev.seq, len(prev.payload)) == seg.seq
                and size + len(seg.payload) <= TSO_MAX_PAYLOAD
            ):
                run.append(seg)
                size += len(seg.payload)
                continue
        close_run()
        size = 0
        if mergeable:
            run.append(seg)
            size = len(seg.payload)
        else:
            out.append(seg)
    close_run()
    return out
