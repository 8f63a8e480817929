"""``synack demo``: the guided tour (PROTOCOLS.md §5).

For now the tour is the scripted loopback chat (``synack.apps.chat.demo``):
a server and three clients in one process, printed as a conversation.
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
        description="A scripted chat on loopback: a server and three clients in one process.",
    )
    demo.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="also save the transcript (chat.txt, chat.html) in DIR",
    )
    demo.add_argument("--chat", action="store_true", help="run only the chat stage")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from synack.apps.chat.demo import run_chat_demo

    out: Path | None = args.out
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {out}: {exc.strerror}") from None
    console = Console(record=out is not None, highlight=False)
    asyncio.run(run_chat_demo(console))
    if out is not None:
        console.save_text(str(out / "chat.txt"), clear=False)
        console.save_html(str(out / "chat.html"))
        console.print(f"[dim]transcript saved in {out}/chat.txt and chat.html[/]")
    return 0
