"""Ethernet on the simulator: a learning switch, and the nodes that put hosts and routers on it.

The switch is sans-IO like the hosts and the router
(:class:`synack.stack.router.Router`): a frame arrives on a port with
``now``, the frames to forward come back as ``(port, frame)`` pairs.
:class:`Lan` wires hosts, switches and routers together on a virtual clock
(deterministic, no threads, no sockets) so whole networks can be tested in
memory.

Layer: links. Imports synack.core and synack.stack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from synack.core.sim import Link, LinkParams, LinkStats, Simulator, TimerHandle
from synack.stack.router import Forward, Router


class Switch:
    """A learning bridge (IEEE 802.1D in miniature): learn the source MAC's
    port, forward to the known port of the destination, flood the rest."""

    def __init__(self, *, ageing: float = 300.0, max_entries: int = 4096) -> None:
        self.ports = 0
        self.ageing = ageing
        self.max_entries = max_entries
        self.table: dict[bytes, tuple[int, float]] = {}  # mac -> (port, last seen)
        self.counters: dict[str, int] = {}

    def add_port(self) -> int:
        self.ports += 1
        return self.ports - 1

    def receive(self, port: int, frame: bytes, now: float) -> Forward:
        if len(frame) < 14:
            self.counters["runt"] = self.counters.get("runt", 0) + 1
            return []
        dst, src = bytes(frame[0:6]), bytes(frame[6:12])
        if not src[0] & 1 and (src in self.table or len(self.table) < self.max_entries):
            self.table[src] = (port, now)
        entry = self.table.get(dst)
        if entry is not None and now - entry[1] < self.ageing and not dst[0] & 1:
            out = entry[0]
            return [] if out == port else [(out, frame)]
        return [(p, frame) for p in range(self.ports) if p != port]


class Node(Protocol):
    """Anything with Ethernet ports on a :class:`Lan`: sans-IO, port numbers
    local to the node."""

    def receive(self, port: int, frame: bytes, now: float) -> Forward: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> Forward: ...


class HostNode(Node):
    """A :class:`~synack.stack.host.Host` as a one-port node."""

    def __init__(self, host: HostLike) -> None:
        self.host = host

    def receive(self, port: int, frame: bytes, now: float) -> Forward:
        self.host.receive_frame(frame, now)
        return [(0, f) for f in self.host.frames_to_send()]

    def get_timer(self) -> float | None:
        return self.host.get_timer()

    def handle_timer(self, now: float) -> Forward:
        self.host.handle_timer(now)
        return [(0, f) for f in self.host.frames_to_send()]

    def flush(self) -> Forward:
        return [(0, f) for f in self.host.frames_to_send()]


class SwitchNode(Node):
    def __init__(self, switch: Switch) -> None:
        self.switch = switch

    def receive(self, port: int, frame: bytes, now: float) -> Forward:
        return self.switch.receive(port, frame, now)

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> Forward:
        return []


class RouterNode(Node):
    def __init__(self, router: Router) -> None:
        self.router = router

    def receive(self, port: int, frame: bytes, now: float) -> Forward:
        return self.router.receive(port, frame, now)

    def get_timer(self) -> float | None:
        return self.router.get_timer()

    def handle_timer(self, now: float) -> Forward:
        return self.router.handle_timer(now)


class HostLike(Protocol):
    """The sans-IO host interface a :class:`HostNode` drives."""

    def receive_frame(self, data: bytes, now: float) -> None: ...
    def frames_to_send(self) -> list[bytes]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...


Tap = Callable[[str, float, bytes], None]  # (link name, time, frame)


class Lan:
    """Nodes joined by point-to-point wires on the simulator's virtual clock.

    Built on :mod:`synack.core.sim`: one :class:`~synack.core.sim.Simulator`
    (the clock and the seeded randomness) and, for each direction of each
    wire, a :class:`~synack.core.sim.Link` shaped by ``params`` (delay, loss,
    duplication, reordering, corruption, bandwidth), so a seed reproduces a
    run bit for bit. :attr:`taps` see every frame put on a wire (pcap capture
    hooks in there). Nothing sleeps: :meth:`run` jumps from event to event.
    """

    def __init__(
        self,
        *,
        delay: float = 50e-6,
        loss: float = 0.0,
        seed: int = 0,
        params: LinkParams | None = None,
    ) -> None:
        self.sim = Simulator(seed)
        self.params = params if params is not None else LinkParams(delay=delay, loss=loss)
        self.taps: list[Tap] = []
        self._wires: dict[tuple[int, int], tuple[Link[bytes], str]] = {}
        self._nodes: list[Node] = []
        self._timers: dict[int, tuple[float, TimerHandle]] = {}
        self.frames_carried = 0

    @property
    def now(self) -> float:
        return self.sim.now

    def add(self, node: Node) -> int:
        self._nodes.append(node)
        return len(self._nodes) - 1

    def connect(
        self,
        a: int,
        a_port: int,
        b: int,
        b_port: int,
        name: str = "",
        params: LinkParams | None = None,
    ) -> None:
        label = name or f"{a}.{a_port}-{b}.{b_port}"
        p = params or self.params

        def deliver_to(node: int, port: int) -> Callable[[bytes, float], None]:
            def deliver(frame: bytes, now: float) -> None:
                self.frames_carried += 1
                self._send(node, self._nodes[node].receive(port, frame, now))
                self._arm(node)

            return deliver

        self._wires[(a, a_port)] = (Link(self.sim, deliver_to(b, b_port), p, name=label), label)
        self._wires[(b, b_port)] = (Link(self.sim, deliver_to(a, a_port), p, name=label), label)

    def wire_stats(self, node: int, port: int) -> LinkStats:
        """The sending direction's statistics of the wire at (node, port)."""
        return self._wires[(node, port)][0].stats

    def switch(self) -> tuple[int, Switch]:
        sw = Switch()
        return self.add(SwitchNode(sw)), sw

    def attach_host(self, host: HostLike, switch_index: int, name: str = "") -> int:
        """Plug ``host`` into the switch at node ``switch_index``; return its node id."""
        node = self.add(HostNode(host))
        sw = self._nodes[switch_index]
        assert isinstance(sw, SwitchNode)
        self.connect(node, 0, switch_index, sw.switch.add_port(), name)
        return node

    def attach_router(self, router: Router, switches: list[int]) -> int:
        node = self.add(RouterNode(router))
        for port, sw_index in enumerate(switches):
            sw = self._nodes[sw_index]
            assert isinstance(sw, SwitchNode)
            self.connect(node, port, sw_index, sw.switch.add_port())
        return node

    def _send(self, node: int, out: Forward) -> None:
        for port, frame in out:
            wire = self._wires.get((node, port))
            if wire is None:
                continue
            link, label = wire
            for tap in self.taps:
                tap(label, self.sim.now, frame)
            link.send(frame)

    def _arm(self, node: int) -> None:
        t = self._nodes[node].get_timer()
        armed = self._timers.get(node)
        if armed is not None and armed[0] == t:
            return
        if armed is not None:
            armed[1].cancel()
            del self._timers[node]
        if t is not None:
            self._timers[node] = (t, self.sim.schedule(t, lambda: self._fire(node)))

    def _fire(self, node: int) -> None:
        self._timers.pop(node, None)
        self._send(node, self._nodes[node].handle_timer(self.sim.now))
        self._arm(node)

    def kick(self) -> None:
        """Send what nodes have queued outside :meth:`run` (an API call on a
        host produced frames) and re-arm their timers."""
        for i, node in enumerate(self._nodes):
            if isinstance(node, HostNode):
                self._send(i, node.flush())
            self._arm(i)

    def run(self, until: float | None = None, *, max_events: int = 1_000_000) -> int:
        """Process events up to virtual time ``until`` (default: one virtual
        second from now, plenty for exchanges on a LAN; timers further out,
        such as ARP ageing, need an explicit ``until``)."""
        if until is None:
            until = self.sim.now + 1.0
        self.kick()
        return self.sim.run(until, max_events=max_events)

    def run_until(self, done: Callable[[], bool], *, timeout: float = 60.0) -> bool:
        """Run until ``done()`` holds or ``timeout`` virtual seconds pass."""
        end = self.sim.now + timeout
        self.kick()
        self.sim.run(end, stop=done)
        return done()
