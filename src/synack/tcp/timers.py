"""All the deadlines of one TCP connection, in one object.

A connection runs up to seven timers (RFC 9293 §3.8.1 retransmission, RFC 8985
loss detection (RACK reordering, TLP probe), §3.8.6.1
persist, §3.8.6.3 delayed ACK, §3.8.4 keep-alive, the close timer of
TIME-WAIT (2*MSL, MUST-13) or an orphaned FIN-WAIT-2, and the connect timeout).
Each is an absolute deadline or None; :class:`Timers` answers "what is the
next deadline" and "which have expired", and nothing else: what an expiry
means is the connection's business.

Layer: tcp. Imports nothing (the standard library only).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator

__all__ = ["Timer", "Timers"]


class Timer(enum.Enum):
    """The kinds of deadline, in the order an expiry is handled."""

    CONNECT = "connect"
    CLOSE = "close"  # TIME-WAIT 2MSL, FIN-WAIT-2 orphan timeout
    LOSS = "loss-detection"  # RACK reordering timer, TLP probe timeout (RFC 8985)
    REXMIT = "retransmit"
    PERSIST = "persist"
    DELACK = "delayed-ack"
    KEEPALIVE = "keepalive"


class Timers:
    """The six deadlines (absolute times, None when not running).

    The attributes are set directly by the connection (they are rearmed on
    almost every segment: a method call each time would cost more than the
    store).
    """

    __slots__ = ("close", "connect", "delack", "keepalive", "loss", "persist", "rexmit")

    def __init__(self) -> None:
        self.rexmit: float | None = None
        self.loss: float | None = None
        self.persist: float | None = None
        self.delack: float | None = None
        self.keepalive: float | None = None
        self.close: float | None = None
        self.connect: float | None = None

    def next_deadline(self) -> float | None:
        """The earliest pending deadline, or None. Pure."""
        # Unrolled: the adapters ask after every flush.
        best = self.rexmit
        t = self.loss
        if t is not None and (best is None or t < best):
            best = t
        t = self.persist
        if t is not None and (best is None or t < best):
            best = t
        t = self.delack
        if t is not None and (best is None or t < best):
            best = t
        t = self.keepalive
        if t is not None and (best is None or t < best):
            best = t
        t = self.close
        if t is not None and (best is None or t < best):
            best = t
        t = self.connect
        if t is not None and (best is None or t < best):
            best = t
        return best

    def expired(self, now: float) -> Iterator[Timer]:
        """Each deadline due at ``now``, in :class:`Timer` order, stopped as it is yielded.

        Lazy on purpose: each is looked at only after the caller handled the
        previous one, since handling one may stop another (sending a segment
        stops the delayed-ACK timer) or close the connection (the caller then
        stops iterating).
        """
        t = self.connect
        if t is not None and now >= t:
            self.connect = None
            yield Timer.CONNECT
        t = self.close
        if t is not None and now >= t:
            self.close = None
            yield Timer.CLOSE
        t = self.loss
        if t is not None and now >= t:
            self.loss = None
            yield Timer.LOSS
        t = self.rexmit
        if t is not None and now >= t:
            self.rexmit = None
            yield Timer.REXMIT
        t = self.persist
        if t is not None and now >= t:
            self.persist = None
            yield Timer.PERSIST
        t = self.delack
        if t is not None and now >= t:
            self.delack = None
            yield Timer.DELACK
        t = self.keepalive
        if t is not None and now >= t:
            self.keepalive = None
            yield Timer.KEEPALIVE

    def stop_all(self) -> None:
        self.rexmit = self.persist = self.delack = self.loss = None
        self.keepalive = self.close = self.connect = None
