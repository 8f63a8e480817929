"""How frames move: the simulated LAN and its learning switch (on core.sim's
clock), Linux TAP devices, an in-memory hub for asyncio drivers, pcap capture.

Layer: links. Imports stack, tcp, wire, core, errors; never adapters, apps, trace or cli.
"""

from __future__ import annotations
