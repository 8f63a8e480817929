"""Applications written once against asyncio transports and streams, so they run
on the kernel's sockets and on synack's own TCP/IP stack alike.

Layer: apps. Imports adapters, links, stack, tcp, wire, core, errors; never trace or
cli, and no app imports another (chat, time and udpchat are independent).
"""

from __future__ import annotations
