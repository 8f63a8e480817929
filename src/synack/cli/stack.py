"""``synack stack serve`` and ``synack stack nc`` (docs/protocol.md §5): synack's
own TCP/IP stack on a Linux TAP device.

Layer: cli. May import every other package; nothing imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import os
import secrets
import sys
import time
from collections.abc import Coroutine, Iterator
from ipaddress import IPv4Address, IPv4Interface
from typing import TYPE_CHECKING, Any, TypeVar

from synack.cli.args import parse_services, seconds, server_port, stop_on_signals
from synack.errors import UsageError

if TYPE_CHECKING:
    # Imported when a stack command runs, not when the CLI is assembled:
    # every other `synack` command starts faster for it.
    from synack.adapters.driver import HostDriver
    from synack.links.tap import TapDevice
    from synack.stack.host import Host, TcpStream

T = TypeVar("T")
DEFAULT_SERVICES = "echo:7,discard:9,chargen:19,daytime:13"
EXTRA_SERVICES = ("chat", "time", "sntp")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "stack",
        help="synack's own TCP/IP stack on a Linux TAP device",
        description="Run synack's own TCP/IP stack (ARP, IPv4, ICMP, UDP, TCP) on a TAP device.",
    )
    sub = p.add_subparsers(dest="stack_command", metavar="COMMAND")
    sub.required = True

    common = add_stack_options

    s = sub.add_parser(
        "serve",
        help="serve the classic services (and chat/time/sntp if named) on synack's stack",
        description="Serve the classic services over synack's stack; 'chat:PORT', "
        "'time:PORT' and 'sntp:PORT' add the chat server and the time services.",
    )
    common(s)
    s.add_argument(
        "--services",
        default=DEFAULT_SERVICES,
        metavar="NAME:PORT,...",
        help=f"services (default {DEFAULT_SERVICES}); also chat:PORT, time:PORT, sntp:PORT",
    )
    s.set_defaults(func=run_serve)

    n = sub.add_parser(
        "nc",
        help="netcat over synack's stack (stdin to the connection, half-close at EOF)",
        description="Connect to HOST PORT over synack's stack; stdin goes to the "
        "connection (half-closed at EOF), the connection goes to stdout.",
    )
    common(n)
    n.add_argument("host", metavar="HOST")
    n.add_argument("port", metavar="PORT", type=server_port)
    n.add_argument("--timeout", type=seconds, default=10.0, help="connect timeout in seconds")
    n.set_defaults(func=run_nc)


def add_stack_options(q: argparse.ArgumentParser) -> None:
    """The options every command on a TAP device takes (stack serve/nc, run)."""
    q.add_argument("--tap", required=True, metavar="DEV", help="TAP device to open or create")
    q.add_argument("--ip", required=True, metavar="A.B.C.D/N", help="synack's address and prefix")
    q.add_argument("--gateway", metavar="A.B.C.D", help="default gateway (on the --ip subnet)")
    q.add_argument(
        "--mtu",
        type=int,
        default=1500,
        help="link MTU (default 1500; 65535 is clamped to a TAP device's ceiling, 65521)",
    )
    q.add_argument("--mac", help="MAC address (default: a random locally administered one)")
    q.add_argument("--pcap", metavar="FILE", help="capture every frame in and out to FILE")
    q.add_argument(
        "--offload",
        action="store_true",
        help="IFF_VNET_HDR with checksum/TSO offload: the kernel sends up to 64 KiB segments",
    )
    q.add_argument(
        "--no-big-tcp",
        dest="big_tcp",
        action="store_false",
        help="with --offload: keep synack's TSO segments within 64 KiB (by default they "
        "reach 256 KiB on Linux 6.3+, as BIG TCP does)",
    )


def _host(args: argparse.Namespace) -> Host:
    from synack.stack.config import link_tcp_config
    from synack.stack.host import Host, HostConfig

    try:
        iface = IPv4Interface(args.ip)
    except ValueError:
        raise UsageError(f"bad --ip {args.ip!r}: expected A.B.C.D/N") from None
    if iface.network.prefixlen == 32 or iface.ip in (
        iface.network.network_address,
        iface.network.broadcast_address,
    ):
        raise UsageError(f"--ip {args.ip}: not a usable host address on its subnet")
    gateway = None
    if args.gateway:
        try:
            gateway = IPv4Address(args.gateway)
        except ValueError:
            raise UsageError(f"bad --gateway {args.gateway!r}") from None
        if gateway not in iface.network:
            raise UsageError(f"--gateway {gateway} is not on {iface.network}")
    if not 576 <= args.mtu <= 65535:
        raise UsageError("--mtu must be between 576 and 65535")
    if args.mac:
        from synack.wire.ethernet import parse_mac

        try:
            mac = parse_mac(args.mac)
        except ValueError:
            raise UsageError(f"bad --mac {args.mac!r}") from None
        if mac[0] & 1:
            raise UsageError("--mac must be a unicast address")
    else:
        mac = bytes([0x02]) + secrets.token_bytes(5)  # locally administered, unicast
    mtu = min(args.mtu, 65535 - 14)  # a TAP device's ceiling
    import random

    return Host(
        HostConfig(
            mac=mac,
            interface=iface,
            gateway=gateway,
            mtu=mtu,
            name="synack",
            tcp=link_tcp_config(mtu),
        ),
        rng=random.Random(secrets.randbits(64)),
        isn_secret=secrets.token_bytes(32),
    )


def _open_tap(name: str, mtu: int, offload: bool = False, big_tcp: bool = True) -> TapDevice:
    from synack.links.tap import TapDevice

    if not big_tcp and not offload:
        raise UsageError("--no-big-tcp needs --offload (without it every segment is one frame)")
    if not os.path.exists("/dev/net/tun"):
        raise UsageError("no /dev/net/tun on this machine (TAP devices need it)")
    try:
        return TapDevice(name, mtu=min(mtu, 65535 - 14), offload=offload, big_tcp=big_tcp)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except PermissionError:
        raise UsageError(
            f"cannot open TAP device {name!r}: permission denied (run as root or own the device)"
        ) from None
    except OSError as exc:
        if exc.errno == errno.EBUSY:  # the message names the holder
            raise UsageError(str(exc.strerror)) from None
        raise UsageError(f"cannot open TAP device {name!r}: {exc.strerror}") from None


@contextlib.contextmanager
def _driver(args: argparse.Namespace) -> Iterator[HostDriver]:
    from synack.adapters.driver import HostDriver
    from synack.links.tap import TapLink

    host = _host(args)
    tap = _open_tap(args.tap, host.mtu, args.offload, args.big_tcp)
    capture = None
    try:
        loop = asyncio.get_running_loop()
        if args.pcap:
            from synack.links.capture import Capture  # only when asked: start-up time

            try:
                capture = Capture(args.pcap, time_offset=time.time() - loop.time())
            except OSError as exc:
                raise UsageError(f"cannot write --pcap {args.pcap}: {exc.strerror}") from None
            host.observers.append(capture)
        driver = HostDriver(host, TapLink(tap), loop=loop)
        driver.start()
        try:
            yield driver
        finally:
            driver.close()
    finally:
        tap.close()
        if capture is not None:
            capture.close()


def _parse_services(spec: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(classic services, chat/time/sntp) of a ``--services`` list."""
    from synack.apps.services import SERVICE_NAMES

    services = parse_services(spec, SERVICE_NAMES, also=EXTRA_SERVICES)
    classic = [(name, port) for name, port in services if name not in EXTRA_SERVICES]
    extra = [(name, port) for name, port in services if name in EXTRA_SERVICES]
    return classic, extra


def _run(main: Coroutine[Any, Any, T]) -> T:
    """uvloop when installed (the ``fast`` extra: ~1.3x on bulk sends over
    TAP, see bench/stack_tap.py), else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def run_serve(args: argparse.Namespace) -> int:
    classic, extra = _parse_services(args.services)
    _run(_serve(args, classic, extra))
    return 0


async def _serve(
    args: argparse.Namespace, classic: list[tuple[str, int]], extra: list[tuple[str, int]]
) -> None:
    from synack.apps.services import (
        UdpClassic,
        announce,
        open_tcp_service,
        open_udp_service,
    )

    closers: list[Any] = []
    with stop_on_signals() as stop, _driver(args) as d:
        ip = str(d.host.ip)
        try:
            for name, port in classic:
                server = await open_tcp_service(name, "0.0.0.0", port, start_server=d.start_server)
                closers.append(server)
                announce((ip, server.sockets[0].getsockname()[1]), f"{name}/tcp")  # type: ignore[attr-defined]
                ep = await open_udp_service(
                    name,
                    UdpClassic(name),
                    "0.0.0.0",
                    port,
                    create_datagram_endpoint=d.create_datagram_endpoint,
                )
                closers.append(ep)
                announce((ip, ep.sockname[1]), f"{name}/udp")
            ports = dict(extra)
            if "chat" in ports:
                from synack.apps.chat.server import ChatServer

                chat = ChatServer(create_server=d.create_server)
                await chat.start("0.0.0.0", ports["chat"])
                closers.append(chat)
                announce((ip, chat.addresses[0][1]), "chat")
            if "time" in ports or "sntp" in ports:
                from synack.apps.time.server import start_time_server

                # One start_time_server runs both; an unnamed one gets a free port.
                ts = await start_time_server(
                    "0.0.0.0",
                    ports.get("time", 0),
                    ports.get("sntp", 0),
                    create_datagram_endpoint=d.create_datagram_endpoint,
                )
                closers.append(ts)
                if "time" in ports:
                    announce((ip, ts.fmt_endpoint.sockname[1]), "time")
                if "sntp" in ports:
                    announce((ip, ts.sntp_endpoint.sockname[1]), "sntp")
            # Start-up is done: move what is alive now (modules, tables, the
            # host) out of the collector's view, so a full collection under
            # churn walks only the connections. Measured with
            # `bench/stack_tap.py --churn-only` (docs/performance.md): the
            # longest pause under churn shrinks several-fold (80 -> 25 ms at
            # 3,000 connections, 600 -> 101 ms at 5,000 on a loaded machine).
            gc.collect()
            gc.freeze()
            await stop.wait()
        finally:
            deadline = asyncio.get_running_loop().time() + LINGER
            for c in reversed(closers):
                stop_fn = getattr(c, "stop", None)
                if stop_fn is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop_fn(), _left(deadline))
                else:
                    c.close()
            await _linger_then_abort(d, deadline)


# After SIGINT/SIGTERM, connections get this long to finish what they were
# sending (a bounded linger, as SO_LINGER with a timeout); the rest are then
# aborted (RST), so the stop takes under 2 s whatever the clients do: a
# client that never reads (zero window) or a peer black-holed mid-transfer
# would otherwise keep its connection, and the process, alive for minutes.
LINGER = 1.0


def _left(deadline: float) -> float:
    return max(0.0, deadline - asyncio.get_running_loop().time())


async def _linger_then_abort(d: HostDriver, deadline: float) -> None:
    from synack.tcp.states import State

    done = (State.CLOSED, State.TIME_WAIT)

    def busy() -> list[TcpStream]:
        return [s for s in d.host.connections.values() if s.conn.state not in done]

    while busy() and _left(deadline) > 0:
        await asyncio.sleep(min(0.05, _left(deadline)))
    now = d.now()
    for stream in busy():
        stream.abort(now)
    d.pump()
    # Let the transports tell their protocols (connection_lost): handlers
    # blocked in drain() or wait_closed() then finish.
    for _ in range(3):
        await asyncio.sleep(0)


def run_nc(args: argparse.Namespace) -> int:
    try:
        ip = IPv4Address(args.host)
    except ValueError:
        raise UsageError(f"bad HOST {args.host!r}: synack's stack takes an IPv4 address") from None
    return _run(_nc(args, ip))


async def _nc(args: argparse.Namespace, ip: IPv4Address) -> int:
    loop = asyncio.get_running_loop()
    with _driver(args) as d:
        try:
            reader, writer = await asyncio.wait_for(
                d.open_connection(str(ip), args.port), args.timeout
            )
        except TimeoutError:
            sys.stderr.write(f"synack: error: connection to {ip}:{args.port} timed out\n")
            return 1
        except ConnectionRefusedError:
            sys.stderr.write(f"synack: error: connection to {ip}:{args.port} refused\n")
            return 1
        stdin_fd = sys.stdin.fileno()
        stdout = sys.stdout.buffer

        async def pump_in() -> None:
            while True:
                chunk = await loop.run_in_executor(None, os.read, stdin_fd, 65536)
                if not chunk:
                    break
                writer.write(chunk)
                await writer.drain()
            writer.write_eof()  # half-close: the peer may still answer

        async def pump_out() -> None:
            while chunk := await reader.read(65536):
                stdout.write(chunk)
                stdout.flush()

        sender = asyncio.create_task(pump_in())
        try:
            await pump_out()
            # The peer's FIN closes only its direction (a half-close): like the
            # kernel's nc, keep sending stdin until it ends (RFC 9293 §3.6).
            await sender
        except ConnectionResetError:
            sys.stderr.write("synack: connection reset by peer\n")
            return 1
        finally:
            if not sender.done():
                sender.cancel()
            writer.close()
            # Let our FIN/ACK go out before the link closes.
            stream = writer.get_extra_info("synack_stream")
            for _ in range(100):
                if (
                    stream is None
                    or stream.gone
                    or stream.conn.state.value in ("TIME-WAIT", "CLOSED")
                ):
                    break
                await asyncio.sleep(0.01)
    return 0
