"""Traces of synack's own hosts, live: plug :class:`HostTrace` into their observers.

Every :class:`~synack.stack.host.Host` reports each frame it sends or receives
and each TCP state change of its connections to ``host.observers``. A
:class:`HostTrace` attached to one or more hosts turns those reports into a
:class:`~synack.trace.builder.TraceBuilder` log: a frame is logged once, when
its sender (one of the attached hosts) sends it, or when an attached host
receives it from a sender nobody attached (the kernel over a TAP device); the
state changes are the ones the connections recorded, so nothing is inferred.

Layer: trace. Imports synack.stack and the rest of synack.trace.
"""

from __future__ import annotations

from synack.stack import events as sev
from synack.stack.host import Host
from synack.trace.builder import TraceBuilder
from synack.trace.model import Trace


class HostTrace:
    def __init__(self, names: dict[str, str] | None = None) -> None:
        self.builder = TraceBuilder(names=dict(names or {}))
        self._macs: set[bytes] = set()

    def attach(self, host: Host) -> None:
        self._macs.add(host.mac)
        host.observers.append(self.observe)

    def observe(self, record: object) -> None:
        if isinstance(record, sev.FrameTrace):
            if record.direction == "out" or bytes(record.frame[6:12]) not in self._macs:
                self.builder.add_frame(record.ts, record.frame, link=record.host)
        elif isinstance(record, sev.TcpStateTrace):
            self.builder.add_change(record.local, record.remote, record.change)

    def note(self, now: float, text: str) -> None:
        self.builder.add_note(now, text)

    def build(self) -> Trace:
        return self.builder.build()
