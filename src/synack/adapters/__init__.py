"""I/O adapters over synack's sans-IO host: the asyncio driver, TCP and UDP
transports shaped like asyncio's, and the socket-shaped blocking API.

``driver`` (HostDriver, the adapter loop), ``tcp`` (TcpTransport, TcpServer,
TcpApi), ``udp`` (DatagramTransport), ``sockets`` (Runtime, SocketModule,
SynackSocket), ``oserrors`` (the one mapping to the stdlib's OSError) and
``base`` (what a transport needs of its driver).

Layer: adapters. Imports links, stack, tcp, wire, core, errors; never apps, trace or cli.
"""

from __future__ import annotations
