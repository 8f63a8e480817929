"""One host on a network: ARP, IPv4 routing by subnet, ICMP, UDP and TCP demux.

The :class:`~synack.stack.host.Host` is sans-IO: Ethernet frames and ``now``
go in, frames and one deadline come out. It is the face of one module per
protocol (see :mod:`synack.stack.host`); :mod:`synack.stack.router` forwards
between subnets on the same interface and ICMP code. Adapters (asyncio,
blocking sockets) drive a host on a link (the simulator or a Linux TAP device).

Layer: stack. Imports synack.wire, synack.tcp, synack.core and synack.errors.
"""

from __future__ import annotations
