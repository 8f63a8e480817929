"""``synack serve --services echo:7007,discard:9009,...``: the classic services.

Layer: cli. May import every other package; nothing imports it.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from synack.apps.services import (
    LOOP_PORTS,
    SERVICE_NAMES,
    UdpClassic,
    UdpService,
    announce,
    open_tcp_service,
    open_udp_service,
)
from synack.cli.args import add_host, parse_services, stop_on_signals
from synack.errors import UsageError

DEFAULT_SERVICES = "echo:7007,discard:9009,chargen:19019,daytime:13013"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the classic services (RFC 862 echo, 863 discard, 864 chargen, 867 daytime)",
        description="Run the classic small services over TCP and UDP on the kernel's sockets.",
    )
    p.add_argument(
        "--services",
        default=DEFAULT_SERVICES,
        metavar="NAME:PORT,...",
        help=f"services and ports (default {DEFAULT_SERVICES}; port 0 picks a free one)",
    )
    add_host(p)
    p.add_argument("--tcp", action="store_true", help="TCP only (default: TCP and UDP)")
    p.add_argument("--udp", action="store_true", help="UDP only (default: TCP and UDP)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    services = parse_services(args.services, SERVICE_NAMES)
    if args.tcp and args.udp:
        raise UsageError("--tcp and --udp together are the default: give at most one")
    tcp = not args.udp
    udp = not args.tcp
    asyncio.run(_serve(services, args.host, tcp=tcp, udp=udp))
    return 0


async def _serve(services: list[tuple[str, int]], host: str, *, tcp: bool, udp: bool) -> None:
    servers: list[asyncio.AbstractServer] = []
    endpoints: list[UdpService] = []
    refused = set(LOOP_PORTS)
    with stop_on_signals() as stop:
        try:
            for name, port in services:
                if tcp:
                    server = await open_tcp_service(name, host, port)
                    servers.append(server)
                    # asyncio.Server has .sockets (AbstractServer does not promise it).
                    for sock in getattr(server, "sockets", ()):
                        announce(sock.getsockname(), f"{name}/tcp")
                if udp:
                    service = UdpClassic(name, refuse_ports=refused)
                    endpoint = await open_udp_service(name, service, host, port)
                    endpoints.append(endpoint)
                    # Shared by all: none of our services answers another (a loop).
                    refused.add(int(endpoint.sockname[1]))
                    announce(endpoint.sockname, f"{name}/udp")
            await stop.wait()
        finally:
            for server in servers:
                server.close()
            for endpoint in endpoints:
                endpoint.close()
