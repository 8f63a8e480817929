"""What a transport needs of the driver that runs its host.

:class:`Driver` is the part of :class:`synack.adapters.driver.HostDriver` the
TCP and UDP transports use: the loop, the host, the clock, and a way to have
the host's frames sent. A protocol rather than an import, so the driver can
build its transports without an import cycle.

Layer: adapters. Imports synack.stack.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from synack.stack.host import Host

__all__ = ["Driver"]


class Driver(Protocol):
    """The driver as a transport sees it (:class:`~synack.adapters.driver.HostDriver`)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def host(self) -> Host: ...
    def now(self) -> float:
        """The loop's clock, the ``now`` every host call takes."""
        ...

    def pump(self) -> None:
        """Deliver the host's events and send its frames now."""
        ...

    def schedule_pump(self) -> None:
        """Pump once, soon: many calls in one loop iteration make one pump."""
        ...
