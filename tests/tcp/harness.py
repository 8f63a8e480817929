"""Helpers for the TCP tests: segment constructors, the PLAIN config, drain/kinds.

The pair itself (two TcpConnections in memory with a manual clock, and its
mirror view) is :mod:`synack.tcp.pair`; :class:`Duo` only gives it the
tests' defaults.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from synack.tcp import events as ev
from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection
from synack.tcp.pair import Mirror, TcpPair
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment

A_ADDR = (IPv4Address("10.213.0.1"), 1111)
B_ADDR = (IPv4Address("10.213.0.2"), 2222)

#: No options, no delayed ACK, no Nagle: the plainest RFC 9293 exchange.
PLAIN = TcpConfig(
    mss=1000,
    send_buffer=16000,
    receive_buffer=8000,
    window_scale=False,
    timestamps=False,
    sack=False,
    delayed_ack=False,
    nodelay=True,
    r2_retries=4,
    syn_retries=3,
    msl=30.0,
)

F = TcpFlags


def flags(text: str) -> TcpFlags:
    """ "SA" -> SYN|ACK. Letters: S SYN, A ACK, F FIN, R RST, P PSH."""
    out = TcpFlags(0)
    for ch in text:
        out |= {"S": F.SYN, "A": F.ACK, "F": F.FIN, "R": F.RST, "P": F.PSH}[ch]
    return out


def seg_a_to_b(
    seq: int,
    ack: int,
    fl: str,
    window: int = 8000,
    payload: bytes = b"",
    options: TcpOptions | None = None,
) -> TcpSegment:
    return TcpSegment(
        A_ADDR[1], B_ADDR[1], seq, ack, flags(fl), window, payload, options or TcpOptions()
    )


def seg_b_to_a(
    seq: int,
    ack: int,
    fl: str,
    window: int = 8000,
    payload: bytes = b"",
    options: TcpOptions | None = None,
) -> TcpSegment:
    return TcpSegment(
        B_ADDR[1], A_ADDR[1], seq, ack, flags(fl), window, payload, options or TcpOptions()
    )


def brief(s: TcpSegment) -> tuple[int, int, str, int]:
    """(seq, ack, flags, payload length) with flags as letters in SAFRP order."""
    letters = "".join(
        ch
        for ch, f in (("S", F.SYN), ("A", F.ACK), ("F", F.FIN), ("R", F.RST), ("P", F.PSH))
        if s.flags & f
    )
    return (s.seq, s.ack if s.flags & F.ACK else 0, letters, len(s.payload))


class Duo(TcpPair):
    """The hand-driven pair with the tests' defaults: PLAIN, A_ADDR/B_ADDR, ISS 100 and 300."""

    def __init__(
        self,
        cfg_a: TcpConfig = PLAIN,
        cfg_b: TcpConfig = PLAIN,
        iss_a: int = 100,
        iss_b: int = 300,
    ) -> None:
        super().__init__(
            cfg_a, cfg_b, client_iss=iss_a, server_iss=iss_b, client_addr=A_ADDR, server_addr=B_ADDR
        )


def seg_to(view: Duo | Mirror, seq: int, ack: int, fl: str, payload: bytes = b"") -> TcpSegment:
    """A segment from ``view.b`` to ``view.a`` (ports right for either view)."""
    if isinstance(view, Mirror):
        return seg_a_to_b(seq, ack, fl, payload=payload)
    return seg_b_to_a(seq, ack, fl, payload=payload)


def drain(conn: TcpConnection) -> list[ev.Event]:
    out: list[ev.Event] = []
    while (e := conn.next_event()) is not None:
        out.append(e)
    return out


def kinds(events: list[ev.Event]) -> list[str]:
    return [type(e).__name__ for e in events if not isinstance(e, ev.StateChanged)]
