"""``synack run``: a Python program, unchanged, with its IPv4 networking on synack's stack.

``synack run --tap DEV --ip A.B.C.D/N [...] -- PROGRAM [ARGS...]`` where
PROGRAM is what ``python`` takes (``script.py`` or ``-m module``). The stack
runs on a loop thread of this process, and in the program's own thread while
the program's asyncio loop runs (synack.adapters.loopthread);
:mod:`synack.adapters.patch` puts every AF_INET socket the program opens on it
(AF_UNIX and the rest stay on the kernel). When the program ends - normally, by an exception, SIGINT or SIGTERM -
its connections are closed (FIN, a bounded linger, then RST).

Layer: cli. May import every other package; nothing imports it.
"""

from __future__ import annotations

import argparse
import os
import runpy
import signal
import sys
import time
import traceback
from typing import Any

from synack.errors import UsageError


def register(subparsers: Any) -> None:
    from synack.cli.stack import add_stack_options

    p = subparsers.add_parser(
        "run",
        help="run a Python program with its IPv4 networking on synack's stack",
        description="Run a Python program (script.py ARGS or -m module ARGS) in this "
        "process, its AF_INET sockets (socket, socketserver, http, asyncio...) on "
        "synack's stack over a TAP device. Example: synack run --tap tap0 "
        "--ip 10.0.0.2/24 -- -m http.server 8000",
    )
    add_stack_options(p)
    p.add_argument(
        "--linger",
        type=float,
        default=2.0,
        help="seconds open connections get to close at exit before RST; a program "
        "that listened keeps answering SYNs with RST that long (default 2)",
    )
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="cProfile the stack's thread and the program's (where a program's asyncio "
        "loop drives the stack) into FILE, one profile of both",
    )
    p.add_argument("program", nargs=argparse.REMAINDER, help="-- script.py ARGS | -m module ARGS")
    p.set_defaults(func=run_program)


def _target(argv: list[str]) -> tuple[str, str, list[str]]:
    """("module"|"path", name, sys.argv for the program)."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("no program: synack run ... -- script.py ARGS | -m module ARGS")
    if argv[0] == "-m":
        if len(argv) < 2:
            raise UsageError("-m needs a module name")
        return "module", argv[1], [argv[1], *argv[2:]]
    if argv[0].startswith("-"):
        raise UsageError(f"unknown program option {argv[0]!r} (only -m is understood)")
    if not os.path.exists(argv[0]):
        raise UsageError(f"no such program: {argv[0]}")
    return "path", argv[0], list(argv)


def run_program(args: argparse.Namespace) -> int:
    from synack.adapters import patch
    from synack.adapters.sockets import Runtime
    from synack.cli.stack import _host, _open_tap
    from synack.links.tap import TapLink

    kind, name, prog_argv = _target(list(args.program))
    host = _host(args)
    tap = _open_tap(args.tap, host.mtu, args.offload, args.big_tcp)
    runtime = Runtime()
    capture = None
    if args.pcap:
        from synack.links.capture import Capture

        try:
            capture = Capture(args.pcap, time_offset=time.time() - time.monotonic())
        except OSError as exc:
            tap.close()
            raise UsageError(f"cannot write --pcap {args.pcap}: {exc.strerror}") from None
        host.observers.append(capture)
    module = runtime.add_host(host, TapLink(tap))
    profilers: list[Any] = []
    if args.profile:
        import cProfile

        # A profiler sees the thread it is enabled on: the stack's, and the
        # program's (its asyncio loop drives the stack while it runs).
        profilers = [cProfile.Profile(), cProfile.Profile()]
        runtime.call(profilers[0].enable)
        profilers[1].enable()
    patch.install(module)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = prog_argv
    status = 0
    try:
        if kind == "module":
            sys.path.insert(0, os.getcwd())
            runpy.run_module(name, run_name="__main__", alter_sys=True)
        else:
            sys.path.insert(0, os.path.dirname(os.path.abspath(name)))
            runpy.run_path(name, run_name="__main__")
    except SystemExit as exc:
        # Each handler first closes the listening ports, while the program's
        # frames (and so its sockets) are still alive: see patch.stop_listening.
        patch.stop_listening(runtime)
        code = exc.code
        status = code if isinstance(code, int) else (0 if code is None else 1)
        if code is not None and not isinstance(code, int):
            sys.stderr.write(f"{code}\n")
    except KeyboardInterrupt:
        patch.stop_listening(runtime)
        status = 130
    except BaseException:
        patch.stop_listening(runtime)
        traceback.print_exc()
        status = 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        signal.signal(signal.SIGTERM, previous)
        try:
            patch.close_all(runtime, linger=args.linger)
            if profilers:
                import pstats

                runtime.call(profilers[0].disable)
                profilers[1].disable()
                pstats.Stats(profilers[0]).add(profilers[1]).dump_stats(args.profile)
        finally:
            patch.uninstall()
            runtime.close()
            tap.close()
            if capture is not None:
                capture.close()
    return status
