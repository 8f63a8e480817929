"""I/O adapters over synack's sans-IO host: the asyncio driver, TCP and UDP
transports shaped like asyncio's, and the socket-shaped blocking API.

Layer: adapters. Imports links, stack, tcp, wire, core, errors; never apps, trace or cli.
"""

from __future__ import annotations
