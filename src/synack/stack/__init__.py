"""One host on a network: ARP, IPv4 routing by subnet, ICMP, UDP and TCP demux.

The :class:`~synack.stack.host.Host` is sans-IO: Ethernet frames and ``now``
go in, frames and one deadline come out. Adapters (asyncio, blocking sockets)
live next to it and drive it on a link (the simulator or a Linux TAP device).
"""

from __future__ import annotations
