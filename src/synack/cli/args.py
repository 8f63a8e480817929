"""What the command groups share: option types, host/port options, signals (docs/protocol.md §5).

A bad value is refused by argparse itself, so the user gets one line naming
the option and exit status 2. Numbers must be finite: ``nan`` compares false
with everything (it slips past ``> 0`` checks and poisons timer heaps) and
``inf`` seconds overflow the socket layer's time_t. A port is checked in one
place (:func:`port_number`), whether it comes as an option, a positional or
inside a ``--services NAME:PORT,...`` list.

The serving commands all stop the same way: :func:`stop_on_signals` turns
SIGINT and SIGTERM into an event, the server closes cleanly and the command
exits 0.

Layer: cli. May import every other package; nothing imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence

from synack.errors import UsageError

__all__ = [
    "LOCALHOST",
    "MAX_SECONDS",
    "add_host",
    "add_host_port",
    "non_negative",
    "parse_services",
    "port",
    "port_number",
    "positive",
    "seconds",
    "server_port",
    "stdin_lines",
    "stop_on_signals",
]

# About eleven days: longer than any sensible timeout, well inside time_t.
MAX_SECONDS = 1e6
LOCALHOST = "127.0.0.1"  # every command binds or connects here unless told otherwise


def port_number(text: str) -> int | None:
    """``text`` as a TCP/UDP port, 0 to 65535; None when it is not one."""
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 <= value <= 65535 else None


def port(text: str) -> int:
    """A TCP/UDP port, 0 (pick a free one) to 65535."""
    value = port_number(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"bad port {text!r}: expected 0..65535")
    return value


def server_port(text: str) -> int:
    """A port to reach a server on: 1 to 65535 (port 0 only means "pick one" to bind)."""
    value = port_number(text)
    if not value:
        raise argparse.ArgumentTypeError(f"bad port {text!r}: expected 1..65535")
    return value


def add_host(parser: argparse.ArgumentParser, what: str = "address to bind") -> None:
    """``--host`` (default 127.0.0.1), the address to bind or the server's."""
    parser.add_argument("--host", default=LOCALHOST, help=f"{what} (default {LOCALHOST})")


def add_host_port(
    parser: argparse.ArgumentParser,
    *,
    port_help: str,
    default_port: int | None = None,
    what: str = "address to bind",
    port_type: Callable[[str], int] | None = None,
) -> None:
    """``--host`` and ``--port``; the help says the default port when there is one."""
    add_host(parser, what)
    parser.add_argument(
        "--port",
        type=port if port_type is None else port_type,
        default=default_port,
        help=port_help if default_port is None else f"{port_help} (default {default_port})",
    )


def parse_services(
    spec: str, names: Sequence[str], *, also: Sequence[str] = ()
) -> list[tuple[str, int]]:
    """``echo:7007,discard:9009`` -> [("echo", 7007), ("discard", 9009)].

    Each NAME must be one of ``names`` or ``also`` (names a command accepts
    besides the ones it lists in the error); UsageError otherwise.
    """
    out: list[tuple[str, int]] = []
    for item in spec.split(","):
        item = item.strip()
        name, sep, port_text = item.partition(":")
        if name not in also and (not sep or name not in names):
            raise UsageError(
                f"bad service {item!r}: expected NAME:PORT with NAME one of {', '.join(names)}"
            )
        value = port_number(port_text)
        if value is None:
            raise UsageError(f"bad port in {item!r}: expected 0..65535")
        out.append((name, value))
    return out


@contextlib.contextmanager
def stop_on_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM (servers then close cleanly, exit 0).

    Enter it before printing `listening on`: a signal that arrives right
    after the line must already find its handler.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    sigs = (signal.SIGINT, signal.SIGTERM)
    for sig in sigs:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in sigs:
            loop.remove_signal_handler(sig)


def stdin_lines(put: Callable[[str | None], object]) -> threading.Thread:
    """Read stdin's lines in a daemon thread; ``put`` gets each (decoded,
    line end kept) and then None at end of input. Call ``put`` only through
    the loop (``call_soon_threadsafe``): the caller wraps it.

    The thread reads the file descriptor with ``os.read``, not through
    ``sys.stdin``: a daemon thread blocked inside a buffered reader holds its
    lock, and a signal-driven exit then aborts the interpreter ("could not
    acquire lock for <stdin> at interpreter shutdown", exit -6).
    """

    def run() -> None:
        pending = b""
        try:
            while chunk := os.read(0, 65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    put(raw.decode("utf-8", "replace") + "\n")
            if pending:
                put(pending.decode("utf-8", "replace"))
            put(None)
        except (RuntimeError, OSError, ValueError):
            pass  # the loop closed first (a signal), or stdin went away: nothing to tell

    thread = threading.Thread(target=run, name="stdin", daemon=True)
    thread.start()
    return thread


def _finite(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def positive(text: str) -> float:
    value = _finite(text)
    if value is None or not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def non_negative(text: str) -> float:
    value = _finite(text)
    if value is None or not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def seconds(text: str) -> float:
    """A duration: positive, finite, at most ``MAX_SECONDS``."""
    value = _finite(text)
    if value is None or not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"expected seconds, a number > 0 and <= {MAX_SECONDS:g}, got {text!r}"
        )
    return value
