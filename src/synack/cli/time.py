"""``synack time serve`` and ``synack time query`` (docs/protocol.md §3, §5).

Layer: cli. May import every other package; nothing imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from typing import Any

from synack.apps.services import announce
from synack.apps.time import sntp
from synack.apps.time.server import DEFAULT_PORT, DEFAULT_SNTP_PORT, start_time_server
from synack.cli import args as cliargs
from synack.cli.args import add_host_port, stop_on_signals
from synack.core.printable import escape
from synack.errors import UsageError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "time",
        help="UDP time service: the strftime format protocol and SNTPv4",
        description="The UDP time service (format protocol and SNTPv4 server).",
    )
    sub = p.add_subparsers(dest="time_command", metavar="COMMAND", required=True)

    s = sub.add_parser("serve", help="serve the format protocol and SNTP")
    add_host_port(s, port_help="format protocol port", default_port=DEFAULT_PORT)
    s.add_argument(
        "--sntp-port",
        type=cliargs.port,
        default=DEFAULT_SNTP_PORT,
        help=f"SNTP port (default {DEFAULT_SNTP_PORT})",
    )
    s.add_argument(
        "--rate",
        type=cliargs.non_negative,
        default=50.0,
        help="requests per second per source host, each service (default 50, 0 = no limit)",
    )
    s.add_argument(
        "--burst",
        type=cliargs.positive,
        default=100.0,
        help="requests a source may save up (default 100)",
    )
    s.set_defaults(func=run_serve)

    q = sub.add_parser("query", help="ask a time server for the time")
    q.add_argument(
        "format", nargs="?", default="", help="strftime format (default %%Y-%%m-%%d %%X)"
    )
    add_host_port(
        q,
        what="server address",
        port_help=f"server port (default {DEFAULT_PORT}, or {DEFAULT_SNTP_PORT} with --sntp)",
        port_type=cliargs.server_port,
    )
    q.add_argument(
        "--sntp", action="store_true", help="ask over SNTP and print offset and round-trip delay"
    )
    q.add_argument(
        "--timeout", type=cliargs.seconds, default=1.0, help="seconds to wait per try (default 1)"
    )
    q.add_argument("--tries", type=int, default=3, help="tries before giving up (default 3)")
    q.set_defaults(func=run_query)


def run_serve(args: argparse.Namespace) -> int:
    asyncio.run(_serve(args))
    return 0


async def _serve(args: argparse.Namespace) -> None:
    with stop_on_signals() as stop:
        server = await start_time_server(
            args.host, args.port, args.sntp_port, rate=args.rate, burst=args.burst
        )
        try:
            announce(server.fmt_endpoint.sockname, "time")
            announce(server.sntp_endpoint.sockname, "sntp")
            await stop.wait()
        finally:
            server.close()
            f, n = server.fmt.counters, server.sntp.counters
            ignored = n.too_short + n.too_long + n.bad_version + n.not_client
            sys.stderr.write(
                f"time: {f.answered} answered, {f.errors} error replies, "
                f"{f.rate_limited} rate-limited; sntp: {n.answered} answered, "
                f"{n.rate_limited} rate-limited, {ignored} ignored "
                f"(short {n.too_short}, long {n.too_long}, version {n.bad_version}, "
                f"not client {n.not_client})\n"
            )


def _resolve(host: str, port: int) -> tuple[int, tuple[Any, ...]]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve {host!r}: {exc.strerror}") from None
    family, _, _, _, addr = infos[0]
    return family, addr


def run_query(args: argparse.Namespace) -> int:
    if args.sntp and args.format:
        raise UsageError("--sntp takes no FORMAT")
    if args.tries < 1:
        raise UsageError("--tries must be at least 1")
    port = (
        args.port if args.port is not None else (DEFAULT_SNTP_PORT if args.sntp else DEFAULT_PORT)
    )
    family, addr = _resolve(args.host, port)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        # connect(): the kernel then delivers only the server's datagrams.
        sock.connect(addr)
        for _ in range(args.tries):
            if args.sntp:
                t1 = time.time_ns()
                sock.send(sntp.client_request(t1))
            else:
                sock.send(args.format.encode("utf-8", "surrogateescape"))
            deadline = time.monotonic() + args.timeout
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    reply = sock.recv(2048)
                except TimeoutError:
                    break
                except ConnectionRefusedError:
                    sys.stderr.write(f"synack: error: no time server at {args.host}:{port}\n")
                    return 1
                if not args.sntp:
                    # The server's text is escaped (ESC, C1, bidi...), except a
                    # newline or tab the format itself asked for.
                    text = reply.decode("utf-8", "replace")
                    asked = set(args.format) & {"\n", "\t"}
                    sys.stdout.write("".join(c if c in asked else escape(c) for c in text) + "\n")
                    return 1 if reply.startswith(b"error: ") else 0
                t4 = time.time_ns()
                try:
                    m = sntp.measure(reply, t1, t4)
                except ValueError:
                    continue  # a stale reply to an earlier try, or garbage
                refid = ".".join(str(b) for b in m.reference_id)
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.server_time))
                sys.stdout.write(
                    f"offset {m.offset:+.6f} s  delay {m.delay:.6f} s  "
                    f"stratum {m.stratum}  refid {refid}  server time {stamp}\n"
                )
                return 0
    sys.stderr.write(f"synack: error: no answer from {args.host}:{port} after {args.tries} tries\n")
    return 1
