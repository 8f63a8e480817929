"""Segment building blocks shared by the connection, its output and the host's listeners.

The flag bits as plain ints (enum.Flag arithmetic is slow on the hot path),
the replies for segments that reach no connection (RFC 9293 §3.10.7.1
CLOSED, §3.10.7.2 LISTEN), the reset a connection sends, and the options
helpers of the segments a connection builds: how many SACK blocks fit beside
a payload (MUST-16) and the blocks themselves.

Layer: tcp. Imports synack.wire and synack.tcp.seq.
"""

from __future__ import annotations

from synack.tcp.seq import seq_add
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment

__all__ = [
    "F_ACK",
    "F_FIN",
    "F_PSH",
    "F_RST",
    "F_SYN",
    "F_URG",
    "reply_when_closed",
    "reply_when_listening",
    "reset",
    "sack_blocks_that_fit",
]

F_FIN, F_SYN, F_RST, F_PSH, F_ACK, F_URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

ACK = TcpFlags.ACK
SYN = TcpFlags.SYN
RST = TcpFlags.RST
URG = TcpFlags.URG
SYN_ACK = TcpFlags.SYN | TcpFlags.ACK
ACK_PSH = TcpFlags.ACK | TcpFlags.PSH
ACK_FIN = TcpFlags.ACK | TcpFlags.FIN
ACK_PSH_FIN = TcpFlags.ACK | TcpFlags.PSH | TcpFlags.FIN
NO_OPTIONS = TcpOptions()


def reset(src_port: int, dst_port: int, seq: int) -> TcpSegment:
    """<SEQ=seq><CTL=RST> (no ACK)."""
    return TcpSegment(src_port, dst_port, seq, 0, RST, 0)


def reply_when_closed(seg: TcpSegment) -> TcpSegment | None:
    """The reset a CLOSED connection (no TCB) answers ``seg`` with (RFC 9293 §3.10.7.1).

    An incoming RST is never answered. Ports are swapped: the reply goes back.
    """
    if seg.flags & RST:
        return None
    if seg.flags & ACK:
        return reset(seg.dst_port, seg.src_port, seg.ack)
    return TcpSegment(seg.dst_port, seg.src_port, 0, seq_add(seg.seq, seg.seg_len), RST | ACK, 0)


def reply_when_listening(seg: TcpSegment) -> TcpSegment | None:
    """What a LISTEN socket answers a segment with, other than a SYN (RFC 9293 §3.10.7.2).

    A RST is ignored; any ACK is bad in LISTEN and gets <SEQ=SEG.ACK><CTL=RST>;
    a SYN (without ACK/RST) is for :meth:`TcpConnection.accept_syn`; anything
    else is dropped (None).
    """
    if seg.flags & RST:
        return None
    if seg.flags & ACK:
        return reset(seg.dst_port, seg.src_port, seg.ack)
    return None


def sack_blocks_that_fit(room: int) -> int:
    """How many SACK blocks fit in ``room`` octets of option space (4 + 8 per block).

    RFC 9293 §3.7.1 MUST-16: Eff.snd.MSS is less the options; a data segment
    leaves the octets its payload does not use for SACK blocks.
    """
    return (room - 4) >> 3 if room >= 12 else 0
