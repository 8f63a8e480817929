"""``synack trace FILE.pcap [--html OUT.html] [--json]`` (docs/protocol.md §5, §8).

Layer: cli. May import every other package; nothing imports it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import TYPE_CHECKING

from synack.errors import UsageError

if TYPE_CHECKING:
    from synack.trace.model import Trace

# The trace machinery (rich, the HTML writer, the model) is imported when a
# trace runs, not when the parser is built: every ``synack`` command builds
# every group's parser, and those imports cost ~0.1 s of start-up.

MAX_FRAMES = 100_000  # a bigger capture is cut, and the cut is said
MIN_WIDTH = 60  # the diagram's own floor (terminal.SequenceDiagram): less would be ignored


def trace_pcap(path: str, *, max_frames: int = MAX_FRAMES) -> Trace:
    """Read a classic pcap file into a trace; states inferred from the segments.

    UsageError for a missing, unreadable or malformed file, or a link type
    other than Ethernet and raw IPv4.
    """
    from synack.trace.builder import TraceBuilder
    from synack.trace.model import LinkType
    from synack.wire.errors import MalformedPacket
    from synack.wire.pcap import read_pcap

    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path}")
    builder = TraceBuilder()
    n = 0
    try:
        for n, record in enumerate(read_pcap(path), start=1):
            if n > max_frames:
                sys.stderr.write(f"synack: only the first {max_frames} frames are traced\n")
                break
            try:
                linktype = LinkType(record.linktype)
            except ValueError:
                raise UsageError(
                    f"{path}: link type {record.linktype} is not Ethernet (1) or raw IPv4 (101, 228)"
                ) from None
            builder.add_frame(record.timestamp, record.data, linktype=linktype)
    except MalformedPacket as exc:
        if n == 0:
            raise UsageError(f"{path}: not a readable pcap file ({exc})") from None
        # A capture cut short (tcpdump killed mid-write): keep what came before.
        sys.stderr.write(
            f"synack: {path}: damaged after record {n} ({exc}); tracing the {n} before it\n"
        )
    except PermissionError as exc:
        raise UsageError(f"{path}: permission denied") from exc
    return builder.build()


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from synack.trace.html import MAX_FRAMES as MAX_HTML_FRAMES
    from synack.trace.html import write_html
    from synack.trace.terminal import render

    if args.width is not None and args.width < MIN_WIDTH:
        raise UsageError(f"--width {args.width}: the diagram needs at least {MIN_WIDTH} columns")
    trace = trace_pcap(args.pcap)
    if args.connection is not None:
        count = len(trace.connections)
        if not 0 <= args.connection < count:
            raise UsageError(
                f"--connection {args.connection}: {args.pcap} has {count} TCP connection(s)"
                + (f", numbered 0 to {count - 1}" if count else "")
            )
        trace = trace.only_connection(args.connection)
    if args.html:
        out_dir = os.path.dirname(os.path.abspath(args.html))
        if not os.path.isdir(out_dir):
            raise UsageError(f"no such directory: {out_dir}")
    if args.json:
        from synack.trace.jsonl import lines

        out = sys.stdout.buffer
        for line in lines(trace):
            out.write(line)
        out.flush()
    elif not args.quiet:
        width = args.width or max(shutil.get_terminal_size((100, 24)).columns, 100)
        console = Console(width=width, highlight=False)
        if not trace.events:
            console.print(f"{args.pcap}: no frames")
        else:
            render(trace, console, width=width)
    if args.html:
        write_html(trace, args.html, title=os.path.basename(args.pcap))
        if len(trace.events) > MAX_HTML_FRAMES:
            sys.stderr.write(f"synack: the page shows the first {MAX_HTML_FRAMES} frames\n")
        sys.stderr.write(f"wrote {args.html}\n")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "trace",
        help="draw a pcap file as a sequence diagram (terminal, and HTML with --html)",
        description=(
            "Read a classic pcap file (tcpdump -w, Wireshark 'pcap', synack --pcap) and draw "
            "it as a sequence diagram: one column per host, one arrow per frame, TCP flags "
            "with sequence numbers relative to each side's ISN, and each end's TCP state "
            "(inferred from the segments). --html writes one self-contained page with the "
            "diagrams, the TCP state diagram and a layer-by-layer dissection of every frame."
        ),
    )
    parser.add_argument("pcap", metavar="FILE.pcap", help="the capture to read")
    parser.add_argument("--html", metavar="OUT.html", help="also write a self-contained HTML page")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per frame (docs/protocol.md §8) instead of the diagram",
    )
    parser.add_argument("--width", type=int, default=None, help="diagram width in columns")
    parser.add_argument(
        "--connection",
        "-c",
        type=int,
        metavar="N",
        help="only TCP connection N (numbered from 0 in order of appearance)",
    )
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="do not print the terminal diagram"
    )
    parser.set_defaults(func=_run)
