"""A lossy bridge: synack's simulated link between two real links, in real time.

Frames read from one end (a TAP device, or anything with the
:class:`~synack.links.base.Link` shape) go through a
:class:`~synack.core.sim.Link` -- delay, jitter, a bottleneck rate with a
drop-tail queue, random loss, duplication, reordering, corruption, all drawn
from one seeded generator -- and are written to the other end when the
simulated link delivers them. It is the user-space equivalent of ``tc netem``
plus a rate limit, for machines that do not have netem: put it between two
kernels (a TAP in each of two namespaces) or between a kernel and synack, and
compare TCP stacks on the same emulated path.

The simulator runs on the event loop's clock: a frame entering the link is
stamped with the loop's time, and one loop timer, always armed at the
simulator's next event, delivers frames when they are due. Each direction has
its own :class:`~synack.core.sim.LinkParams` and its own statistics.

Layer: links. Imports synack.core and synack.links.base.
"""

from __future__ import annotations

import asyncio
import re

from synack.core.sim import Link, LinkParams, LinkStats, Simulator
from synack.errors import UsageError
from synack.links.base import FrameSink
from synack.links.base import Link as RealLink

__all__ = ["LinkBridge", "parse_delay", "parse_percent", "parse_rate"]

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(us|ms|s)?\s*$")
_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmg]?)(bit|bps|b|B)?\s*$", re.IGNORECASE)
_PERCENT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(%)?\s*$")


def parse_delay(text: str) -> float:
    """``25ms``, ``0.5s``, ``300us`` or a plain number of seconds -> seconds."""
    m = _DURATION.match(text)
    if m is None:
        raise UsageError(f"bad duration {text!r} (e.g. 25ms, 0.2s, 300us)")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, None: 1.0}[m.group(2)]
    return float(m.group(1)) * scale


def parse_rate(text: str) -> float:
    """``10mbit``, ``100Mbit``, ``2gbit``, ``500kbit`` (bits/s), ``1MB`` or
    ``1mbps`` (bytes/s, as tc's ``bps``) -> bytes per second."""
    m = _RATE.match(text)
    if m is None or float(m.group(1)) <= 0:
        raise UsageError(f"bad rate {text!r} (e.g. 10mbit, 100mbit, 1gbit)")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()]
    unit = m.group(3) or "bit"
    return value if unit in ("B", "bps") else value / 8


def parse_percent(text: str) -> float:
    """``1%``, ``0.5%`` -> a probability (a bare number is a percentage too)."""
    m = _PERCENT.match(text)
    if m is None or float(m.group(1)) > 100:
        raise UsageError(f"bad percentage {text!r} (e.g. 1%, 0.5%)")
    return float(m.group(1)) / 100


class LinkBridge:
    """Two real links joined through a simulated one (see the module docstring).

    ``a_to_b``/``b_to_a`` shape each direction (``b_to_a`` defaults to the
    same parameters). ``start(loop)`` begins; ``close()`` stops and closes
    both ends. ``stats`` has each direction's counters.
    """

    def __init__(
        self,
        a: RealLink,
        b: RealLink,
        a_to_b: LinkParams,
        b_to_a: LinkParams | None = None,
        *,
        seed: int = 0,
    ) -> None:
        self.a = a
        self.b = b
        self.sim = Simulator(seed)
        self._ab: Link[bytes] = Link(self.sim, self._to_b, a_to_b, name="a->b")
        self._ba: Link[bytes] = Link(
            self.sim, self._to_a, b_to_a if b_to_a is not None else a_to_b, name="b->a"
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._armed: float | None = None

    @property
    def stats(self) -> dict[str, LinkStats]:
        return {"a->b": self._ab.stats, "b->a": self._ba.stats}

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._t0 = loop.time()
        self.a.start(loop, self._sink(self._ab))
        self.b.start(loop, self._sink(self._ba))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.a.close()
        self.b.close()

    # ------------------------------------------------------------ the clock
    def _clock(self) -> float:
        assert self._loop is not None
        return self._loop.time() - self._t0

    def _sink(self, link: Link[bytes]) -> FrameSink:
        def frames_in(frames: list[bytes]) -> None:
            sim = self.sim
            now = self._clock()
            if now > sim.now:
                sim.now = now  # the simulated link sees the frame when it arrived
            for frame in frames:
                link.send(bytes(frame))
            self._arm()

        return frames_in

    def _arm(self) -> None:
        due = self.sim.next_time()
        if due is None or due == self._armed:
            return
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._armed = due
        self._timer = self._loop.call_at(self._t0 + due, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._armed = None
        self.sim.run(until=max(self._clock(), self.sim.now))
        self._arm()

    def _to_b(self, frame: bytes, _now: float) -> None:
        self.b.send(frame)

    def _to_a(self, frame: bytes, _now: float) -> None:
        self.a.send(frame)
