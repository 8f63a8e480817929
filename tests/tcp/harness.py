"""Two TcpConnections in memory with a manual clock (house style item 10).

The test moves every segment by hand, so it can lose, reorder, duplicate or
forge any of them and assert exact sequence numbers, flags and states.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from synack.tcp import events as ev
from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection
from synack.tcp.states import State
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


class Duo:
    """A (active opener) and B (created from A's SYN by accept_syn)."""

    def __init__(
        self,
        cfg_a: TcpConfig = PLAIN,
        cfg_b: TcpConfig = PLAIN,
        iss_a: int = 100,
        iss_b: int = 300,
    ) -> None:
        self.now = 0.0
        self.cfg_b = cfg_b
        self.iss_b = iss_b
        self.a = TcpConnection(A_ADDR, B_ADDR, config=cfg_a, iss=iss_a)
        self._b: TcpConnection | None = None

    @property
    def b(self) -> TcpConnection:
        assert self._b is not None, "B does not exist yet (no SYN delivered)"
        return self._b

    def out_a(self) -> list[TcpSegment]:
        return self.a.segments_to_send(self.now)

    def out_b(self) -> list[TcpSegment]:
        return self.b.segments_to_send(self.now) if self._b is not None else []

    def to_b(self, segs: list[TcpSegment]) -> None:
        for s in segs:
            if self._b is None:
                self._b = TcpConnection.accept_syn(
                    s, B_ADDR, A_ADDR, self.cfg_b, self.iss_b, self.now
                )
            else:
                self._b.receive_segment(s, self.now)

    def to_a(self, segs: list[TcpSegment]) -> None:
        for s in segs:
            self.a.receive_segment(s, self.now)

    def open(self) -> tuple[list[TcpSegment], list[TcpSegment], list[TcpSegment]]:
        self.a.connect(self.now)
        syn = self.out_a()
        self.to_b(syn)
        synack = self.out_b()
        self.to_a(synack)
        ack = self.out_a()
        self.to_b(ack)
        assert self.a.state is State.ESTABLISHED and self.b.state is State.ESTABLISHED
        return syn, synack, ack

    def exchange(self, rounds: int = 100) -> int:
        """Shuttle segments both ways until both are quiet; returns segments moved."""
        moved = 0
        for _ in range(rounds):
            sa = self.out_a()
            sb = self.out_b()
            if not sa and not sb:
                return moved
            moved += len(sa) + len(sb)
            self.to_b(sa)
            self.to_a(sb)
        raise AssertionError("no quiescence")

    def advance(self, t: float) -> None:
        """Move the clock to ``t`` and fire every timer due by then."""
        assert t >= self.now
        self.now = t
        for c in (self.a, self._b):
            if c is not None:
                deadline = c.get_timer()
                if deadline is not None and deadline <= t:
                    c.handle_timer(t)

    def fire_next(self, conn: TcpConnection) -> float:
        """Advance to ``conn``'s next deadline and handle it; returns that time."""
        deadline = conn.get_timer()
        assert deadline is not None
        self.now = max(self.now, deadline)
        conn.handle_timer(self.now)
        return deadline


class Mirror:
    """The same Duo seen from the other side: ``a`` is the passive opener.

    Lets a scenario written for A run unchanged for B ("both directions").
    """

    def __init__(self, duo: Duo) -> None:
        self.duo = duo

    @property
    def a(self) -> TcpConnection:
        return self.duo.b

    @property
    def b(self) -> TcpConnection:
        return self.duo.a

    @property
    def now(self) -> float:
        return self.duo.now

    @now.setter
    def now(self, value: float) -> None:
        self.duo.now = value

    def out_a(self) -> list[TcpSegment]:
        return self.duo.out_b()

    def out_b(self) -> list[TcpSegment]:
        return self.duo.out_a()

    def to_a(self, segs: list[TcpSegment]) -> None:
        self.duo.to_b(segs)

    def to_b(self, segs: list[TcpSegment]) -> None:
        self.duo.to_a(segs)

    def exchange(self, rounds: int = 100) -> int:
        return self.duo.exchange(rounds)

    def advance(self, t: float) -> None:
        self.duo.advance(t)

    def fire_next(self, conn: TcpConnection) -> float:
        return self.duo.fire_next(conn)


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
