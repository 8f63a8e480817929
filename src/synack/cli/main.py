"""The ``synack`` command line (docs/protocol.md §5).

Each command group lives next to the code it drives and exposes
``register(subparsers)``; this module only assembles them and turns user
mistakes into one clear line on stderr and exit status 2.

Layer: cli. May import every other package; nothing imports it.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import socket
import sys
from collections.abc import Sequence

from synack import __version__
from synack.errors import UsageError

# Modules that contribute sub-commands, in the order ``--help`` lists them,
# keyed by the command name each registers. Each defines
# ``register(subparsers: argparse._SubParsersAction) -> None`` and sets
# ``func`` on its parsers via ``set_defaults(func=...)``; ``func(args)``
# returns the exit status.
COMMANDS: dict[str, str] = {
    "demo": "synack.cli.demo",
    "chat": "synack.cli.chat",
    "time": "synack.cli.time",
    "udpchat": "synack.cli.udpchat",
    "serve": "synack.cli.serve",
    "net": "synack.cli.net",
    "stack": "synack.cli.stack",
    "run": "synack.cli.run",
    "link": "synack.cli.link",
    "trace": "synack.cli.trace",
}
COMMAND_MODULES: tuple[str, ...] = tuple(COMMANDS.values())


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line, or only the group ``argv`` names.

    Importing a group pulls in its machinery (asyncio servers, rich, the
    stack); a command that names its group imports that one alone, so
    ``synack stack serve`` starts in a fraction of the time. ``synack --help``
    and anything unrecognised build every group.
    """
    parser = _Parser(
        prog="synack",
        description="Socket communication made real, visible and dependable.",
    )
    parser.add_argument("--version", action="version", version=f"synack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    first = next((a for a in argv or () if not a.startswith("-")), None)
    names = [COMMANDS[first]] if first in COMMANDS else list(COMMANDS.values())
    for name in names:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def _describe_os_error(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        # getaddrinfo's errno values are EAI_* codes, not errno ones: "[Errno -2]" means nothing
        # to a user who mistyped a host name.
        return f"cannot resolve host name ({exc.strerror or exc})"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"address already in use ({exc.strerror})" if exc.strerror else "address already in use"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return "cannot assign requested address (is the host address on this machine?)"
    if exc.errno == errno.ECONNREFUSED:
        return "connection refused (is the server running?)"
    if exc.errno == errno.EACCES:
        return f"permission denied{': ' + exc.filename if exc.filename else ''}"
    if exc.errno == errno.ENOENT and exc.filename:
        return f"no such file: {exc.filename}"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        status = func(args)
    except UsageError as exc:
        sys.stderr.write(f"synack: error: {exc}\n")
        return 2
    except BrokenPipeError:
        # The reader went away (`synack trace x.pcap | head`): not the user's mistake and not
        # worth a message. Point stdout at devnull so the interpreter's final flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    except OSError as exc:
        # Bind/connect failures are user mistakes (port in use, bad address).
        sys.stderr.write(f"synack: error: {_describe_os_error(exc)}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    return int(status or 0)
