"""A deterministic simulated network: a virtual clock, an event queue, links.

Generic on purpose: a :class:`Link` carries any item (TCP segments today,
whole Ethernet frames when the host stack sits on it) to a callable
``deliver(item, now)``. All randomness (loss, duplication, reordering,
corruption, jitter) comes from one seeded ``random.Random`` held by the
:class:`Simulator`, so a seed reproduces a run bit for bit (house style 3).

Layer: core. Imports only :mod:`synack.errors` and the standard library; the
TCP pair (:mod:`synack.tcp.pair`) and the simulated LAN (:mod:`synack.links.lan`)
are built on it.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from synack.errors import LocalProtocolError

T = TypeVar("T")

__all__ = ["Link", "LinkParams", "LinkStats", "Simulator", "TimerHandle"]


_NO_ARG = object()


class TimerHandle:
    """A scheduled callback; ``cancel()`` makes it a no-op."""

    __slots__ = ("arg", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., None], arg: object = _NO_ARG) -> None:
        self.when = when
        self.callback = callback
        self.arg = arg
        self.cancelled = False

    def run(self) -> None:
        if self.arg is _NO_ARG:
            self.callback()
        else:
            self.callback(self.arg)

    def cancel(self) -> None:
        self.cancelled = True


# A queue entry: (when, order, callback, arg, handle or None). ``order`` is
# unique, so comparisons never look past it; ties in time run in the order
# they were scheduled. Items in flight on a link have no handle (they cannot
# be cancelled), which spares an object per item.
_Entry = tuple[float, int, Callable[..., None], object, "TimerHandle | None"]


class Simulator:
    """Discrete-event simulation: callbacks run in time order on a virtual clock."""

    def __init__(self, seed: int = 0) -> None:
        self.now = 0.0
        self.random = random.Random(seed)
        self._queue: list[_Entry] = []
        self._order = itertools.count()
        self.events_run = 0

    def schedule(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` at absolute virtual time ``when`` (not before now)."""
        return self.schedule_call(when, callback)

    def schedule_call(
        self, when: float, callback: Callable[..., None], arg: object = _NO_ARG
    ) -> TimerHandle:
        """Like :meth:`schedule`, calling ``callback(arg)`` (no closure per item)."""
        if when < self.now:
            when = self.now
        handle = TimerHandle(when, callback, arg)
        heapq.heappush(self._queue, (when, next(self._order), callback, arg, handle))
        return handle

    def post(self, when: float, callback: Callable[[T], None], arg: T) -> None:
        """Like :meth:`schedule_call` without a handle: cannot be cancelled, costs less."""
        if when < self.now:
            when = self.now
        heapq.heappush(self._queue, (when, next(self._order), callback, arg, None))

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        if delay < 0:
            raise LocalProtocolError("delay must be >= 0")
        return self.schedule(self.now + delay, callback)

    @property
    def pending(self) -> int:
        return sum(1 for e in self._queue if e[4] is None or not e[4].cancelled)

    def next_time(self) -> float | None:
        queue = self._queue
        while queue:
            h = queue[0][4]
            if h is None or not h.cancelled:
                return queue[0][0]
            heapq.heappop(queue)
        return None

    def step(self) -> bool:
        """Run the earliest callback; False when nothing is scheduled."""
        queue = self._queue
        while queue:
            when, _, callback, arg, handle = heapq.heappop(queue)
            if handle is not None and handle.cancelled:
                continue
            self.now = when
            self.events_run += 1
            if arg is _NO_ARG:
                callback()
            else:
                callback(arg)
            return True
        return False

    def run(
        self,
        until: float | None = None,
        *,
        max_events: int | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> int:
        """Run callbacks until the queue is empty, time ``until`` is reached,
        ``max_events`` ran, or ``stop()`` is true. Returns how many ran."""
        n = 0
        queue = self._queue
        heappop = heapq.heappop
        no_arg = _NO_ARG
        limit = until if until is not None else math.inf
        most = max_events if max_events is not None else math.inf
        while queue:
            if n >= most:
                break
            if stop is not None and stop():
                break
            if queue[0][0] > limit:
                break
            when, _, callback, arg, handle = heappop(queue)
            if handle is not None and handle.cancelled:
                continue
            self.now = when
            self.events_run += 1
            n += 1
            if arg is no_arg:
                callback()
            else:
                callback(arg)
        if (
            until is not None
            and (not queue or queue[0][0] > until)
            and self.now < until
            and (stop is None or not stop())
        ):
            self.now = until
        return n


def _flip_a_byte(item: object, rng: random.Random) -> object | None:
    if isinstance(item, bytes | bytearray) and len(item) > 0:
        data = bytearray(item)
        i = rng.randrange(len(data))
        data[i] ^= rng.randrange(1, 256)
        return bytes(data)
    return None


def _size_of(item: object) -> int:
    if isinstance(item, bytes | bytearray | memoryview):
        return len(item)
    payload = getattr(item, "payload", None)
    if isinstance(payload, bytes | bytearray | memoryview):
        return 40 + len(payload)  # a segment object: payload plus IPv4 and TCP headers
    return 0


@dataclass(slots=True)
class LinkStats:
    sent: int = 0
    delivered: int = 0
    lost: int = 0  # random loss
    queue_drops: int = 0  # tail drops at the queue limit
    hook_drops: int = 0  # dropped by drop_if
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0


@dataclass(slots=True)
class LinkParams:
    """Everything that shapes one direction of a link (all optional)."""

    delay: float = 0.01
    jitter: float = 0.0
    bandwidth: float | None = None  # bytes per second; None: infinite
    queue_limit: int | None = None  # items waiting for the wire; None: unbounded
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float | None = None  # extra delay of a reordered item (default: 2*delay)
    corrupt: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise LocalProtocolError(f"{name} must be a probability, got {p}")
        if self.delay < 0 or self.jitter < 0:
            raise LocalProtocolError("delay and jitter must be >= 0")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise LocalProtocolError("bandwidth must be positive")
        if self.queue_limit is not None and self.queue_limit < 1:
            raise LocalProtocolError("queue_limit must be >= 1")


class Link(Generic[T]):
    """One direction of a wire: a queue, a serialiser at ``bandwidth``, a delay.

    Jitter is uniform in [0, jitter) per item and may itself reorder items.
    ``drop_if(item)`` is consulted for every item sent; returning True drops
    that item (for "lose the third ACK" scenarios). ``corrupter(item, rng)``
    returns a damaged copy (default: flip one byte of a bytes item) or None
    when the item cannot be corrupted.
    """

    def __init__(
        self,
        sim: Simulator,
        deliver: Callable[[T, float], None],
        params: LinkParams | None = None,
        *,
        drop_if: Callable[[T], bool] | None = None,
        size: Callable[[T], int] = _size_of,
        corrupter: Callable[[T, random.Random], T | None] = _flip_a_byte,  # type: ignore[assignment]
        name: str = "link",
    ) -> None:
        self.sim = sim
        self.deliver = deliver
        self.params = params if params is not None else LinkParams()
        self.drop_if = drop_if
        self.size = size
        self.corrupter = corrupter
        self.name = name
        # Each link draws from its own stream, seeded from the simulator's,
        # so adding a link elsewhere does not change this one's losses.
        self.rng = random.Random(sim.random.getrandbits(64))
        self.stats = LinkStats()
        self._busy_until = 0.0
        self._departures: deque[float] = deque()

    def send(self, item: T) -> None:
        p = self.params
        sim = self.sim
        st = self.stats
        st.sent += 1
        if (
            self.drop_if is None
            and p.bandwidth is None
            and not (p.loss or p.jitter or p.reorder or p.corrupt or p.duplicate)
        ):
            # A plain wire (the common case of benchmarks): only the delay;
            # no draw would have been made below either.
            sim.post(sim.now + p.delay, self._arrive, item)
            return
        rng = self.rng
        now = sim.now
        if self.drop_if is not None and self.drop_if(item):
            st.hook_drops += 1
            return
        if p.loss and rng.random() < p.loss:
            st.lost += 1
            return
        start = now
        if p.bandwidth is not None:
            deps = self._departures
            while deps and deps[0] <= now:
                deps.popleft()
            if p.queue_limit is not None and len(deps) >= p.queue_limit:
                st.queue_drops += 1
                return
            start = max(now, self._busy_until)
            self._busy_until = start + self.size(item) / p.bandwidth
            deps.append(self._busy_until)
            start = self._busy_until
        arrival = start + p.delay
        if p.jitter:
            arrival += rng.random() * p.jitter
        if p.reorder and rng.random() < p.reorder:
            st.reordered += 1
            arrival += p.reorder_delay if p.reorder_delay is not None else 2 * p.delay
        if p.corrupt and rng.random() < p.corrupt:
            damaged = self.corrupter(item, rng)
            if damaged is not None:
                st.corrupted += 1
                item = damaged
        self._schedule(item, arrival)
        if p.duplicate and rng.random() < p.duplicate:
            st.duplicated += 1
            self._schedule(item, arrival + rng.random() * max(p.delay, 1e-4))

    def _schedule(self, item: T, at: float) -> None:
        self.sim.post(at, self._arrive, item)

    def _arrive(self, item: T) -> None:
        self.stats.delivered += 1
        self.deliver(item, self.sim.now)
