"""``synack demo``: the guided tour (docs/protocol.md §5).

The tour (``synack.cli.tour``) runs on a simulated network: ARP, the
handshake, a framed chat on synack's TCP, a lost segment and its
retransmission, a UDP time query through a router, the four-way close with
TIME-WAIT, a SYN to a closed port; it writes demo.pcap and demo.html. Its last
stage is the scripted loopback chat (``synack.apps.chat.demo``): a server and
three clients on the kernel's TCP, printed as a conversation (``--chat`` runs
only that stage).

Layer: cli. May import every other package; nothing imports it.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from rich.console import Console

from synack.errors import UsageError


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="the guided tour (no root needed)",
        description=(
            "The guided tour on a simulated network (no root, no real interface): ARP, the "
            "three-way handshake, a framed chat on synack's own TCP, a lost segment and its "
            "retransmission, a UDP time query through a router, the four-way close with "
            "TIME-WAIT, a SYN to a closed port; then the chat server and three clients on "
            "loopback. Writes demo.pcap, demo.html and the chat transcript into --out."
        ),
    )
    demo.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="where to write demo.pcap, demo.html, chat.txt and chat.html (default ./synack-demo/)",
    )
    demo.add_argument("--chat", action="store_true", help="run only the chat stage")
    demo.add_argument("--step", action="store_true", help="pause between stages (press Enter)")
    demo.add_argument("--seed", type=int, default=1, help="reproduce a run (default 1)")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from synack.apps.chat.demo import run_chat_demo

    out: Path | None = args.out
    if out is None and not args.chat:
        out = Path("synack-demo")
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {out}: {exc.strerror}") from None
    if not args.chat:
        assert out is not None
        _tour(out, args)
    console = Console(record=out is not None, highlight=False)
    if not args.chat:
        console.rule("[bold]8. the same chat protocol on the kernel's TCP (loopback)")
    asyncio.run(run_chat_demo(console))
    if out is not None:
        console.save_text(str(out / "chat.txt"), clear=False)
        console.save_html(str(out / "chat.html"))
        console.print(f"[dim]transcript saved in {out}/chat.txt and chat.html[/]")
    return 0


def _tour(out: Path, args: argparse.Namespace) -> None:
    import sys

    from synack.cli.tour import run_tour

    stepping = True

    def pause(title: str) -> None:
        nonlocal stepping
        if stepping and sys.stdin.isatty():
            try:
                input(f"[Enter] for the next stage: {title} ")
            except EOFError:
                # Ctrl-D at the prompt: the learner has seen enough pausing; run the rest.
                stepping = False
                sys.stdout.write("\n")

    run_tour(
        out, seed=args.seed, console=Console(highlight=False), pause=pause if args.step else None
    )
