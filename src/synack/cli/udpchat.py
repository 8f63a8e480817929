"""``synack udpchat``: the peer-to-peer messenger's command line (docs/protocol.md §4, §5).

Layer: cli. May import every other package; nothing imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any, TextIO

from synack.apps.services import announce
from synack.apps.udpchat.contacts import ContactBook, load_contacts
from synack.apps.udpchat.core import (
    INITIAL_TIMEOUT,
    MAX_NAME,
    TRIES,
    Delivered,
    Event,
    MessageReceived,
    UdpChatPeer,
    Undelivered,
)
from synack.apps.udpchat.endpoint import ChatEndpoint, open_chat_endpoint
from synack.cli import args as cliargs
from synack.cli.args import add_host_port, stop_on_signals
from synack.core.printable import escape, is_unsafe
from synack.errors import LocalProtocolError, UsageError

DEFAULT_PORT = 8081


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "udpchat",
        help="peer-to-peer UDP messenger with acks and retransmission",
        description=(
            "Peer-to-peer UDP messenger. Lines: /to NAME [TEXT], /contacts, /quit; "
            "anything else goes to the selected contact."
        ),
    )
    p.add_argument("--name", required=True, help="what you call yourself")
    add_host_port(p, port_help="UDP port", default_port=DEFAULT_PORT)
    p.add_argument("--contacts", metavar="FILE", help="TOML file with a [contacts] table")
    p.add_argument(
        "--contact",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        help="add a contact (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per output line")
    p.add_argument(
        "--timeout",
        type=cliargs.seconds,
        default=INITIAL_TIMEOUT,
        help=f"first retransmission timeout in seconds, doubling (default {INITIAL_TIMEOUT})",
    )
    p.add_argument(
        "--tries",
        type=int,
        default=TRIES,
        help=f"transmissions before undelivered (default {TRIES})",
    )
    p.set_defaults(func=run)


class Ui:
    """Turns input lines into sends and events into output lines."""

    def __init__(self, book: ContactBook, *, json_mode: bool, out: TextIO, err: TextIO) -> None:
        self.book = book
        self.json_mode = json_mode
        self.out = out
        self.err = err
        self.selected: str | None = (
            next(iter(book.by_name), None) if len(book.by_name) == 1 else None
        )
        self.endpoint: ChatEndpoint | None = None

    def _emit(self, obj: dict[str, Any], text: str) -> None:
        if self.json_mode:
            line = json.dumps(obj, ensure_ascii=False)
            if any(is_unsafe(c) for c in line):
                # Peer text with a lone surrogate or a control character:
                # JSON's own escapes keep it one valid, encodable line.
                line = json.dumps(obj)
        else:
            line = text
        self.out.write(line + "\n")
        self.out.flush()

    def error(self, message: str) -> None:
        self.err.write(f"error: {message}\n")
        self.err.flush()

    def on_event(self, event: Event) -> None:
        if isinstance(event, MessageReceived):
            # §4: a source in the book is shown under that contact's name.
            contact = self.book.name_of(event.source)
            shown = contact or event.sender
            addr = f"{event.source[0]}:{event.source[1]}"
            # A contact's line starts with "[name]"; a stranger's with "?[",
            # its address first and its self-chosen name after (escaped: a
            # name cannot print a newline, a "]" cannot end the label), so a
            # stranger cannot pass for a contact of the same name.
            if contact is not None:
                line = f"[{contact}] {escape(event.text)}"
            else:
                name = json.dumps(escape(event.sender), ensure_ascii=False)
                line = f"?[{addr} {name}] {escape(event.text)}"
            obj = {
                "type": "msg",
                "from": shown,
                "contact": contact is not None,
                "id": event.id,
                "text": event.text,
                "addr": addr,
            }
            self._emit(obj, line)
        elif isinstance(event, Delivered):
            to = self.book.label(event.to)
            self._emit(
                {"type": "delivered", "to": to, "id": event.id}, f"(delivered to {to}: #{event.id})"
            )
        elif isinstance(event, Undelivered):
            to = self.book.label(event.to)
            self._emit(
                {"type": "undelivered", "to": to, "id": event.id},
                f"(undelivered to {to}: #{event.id}, no acknowledgement after {event.tries} tries)",
            )

    def handle_line(self, line: str) -> bool:
        """False when the user asked to quit."""
        line = line.rstrip("\r\n")
        if not line.strip():
            return True
        if line.startswith("/"):
            cmd, _, rest = line.partition(" ")
            if cmd == "/quit":
                return False
            if cmd == "/contacts":
                contacts = {n: f"{a[0]}:{a[1]}" for n, a in self.book.by_name.items()}
                if self.json_mode:
                    self._emit({"type": "contacts", "contacts": contacts}, "")
                elif not contacts:
                    self._emit({}, "(no contacts: add them with --contact or --contacts)")
                else:
                    for n, hp in contacts.items():
                        mark = "*" if n == self.selected else " "
                        self._emit({}, f"{mark} {n} {hp}")
                return True
            if cmd == "/to":
                name, _, text = rest.strip().partition(" ")
                if not name:
                    self.error("usage: /to NAME [TEXT]")
                elif name not in self.book.by_name:
                    self.error(f"no contact named {name!r} (see /contacts)")
                elif text.strip():
                    self._send(name, text)
                else:
                    self.selected = name
                return True
            self.error(f"unknown command {cmd!r} (try /to, /contacts, /quit)")
            return True
        if self.selected is None:
            self.error("no recipient selected: use /to NAME first")
            return True
        self._send(self.selected, line)
        return True

    def _send(self, name: str, text: str) -> None:
        assert self.endpoint is not None
        try:
            self.endpoint.send(self.book.by_name[name], text)
        except LocalProtocolError as exc:
            self.error(str(exc))


def run(args: argparse.Namespace) -> int:
    if not 1 <= len(args.name) <= MAX_NAME:
        raise UsageError(f"--name must be 1 to {MAX_NAME} characters")
    if args.tries < 1:
        raise UsageError("--tries must be at least 1")
    book = load_contacts(args.contacts, args.contact)
    asyncio.run(_main(args, book))
    return 0


async def _line_mode(ui: Ui) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    cliargs.stdin_lines(lambda item: loop.call_soon_threadsafe(queue.put_nowait, item))
    while (line := await queue.get()) is not None:
        if not ui.handle_line(line):
            return


async def _tty_mode(ui: Ui) -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.patch_stdout import patch_stdout

    session: PromptSession[str] = PromptSession()
    # patch_stdout: messages print above the prompt while the user types.
    with patch_stdout(raw=True):
        ui.out = sys.stdout
        while True:
            try:
                line = await session.prompt_async(lambda: f"{ui.selected or '(/to NAME)'}> ")
            except (EOFError, KeyboardInterrupt):
                return
            if not ui.handle_line(line):
                return


async def _main(args: argparse.Namespace, book: ContactBook) -> None:
    # Ids are secret and grow with the wall clock (core.secret_first_id):
    # unguessable, so an ack cannot be forged, and still above the last run's
    # ids after a restart, so a peer's duplicate suppression hides nothing new.
    peer = UdpChatPeer(
        args.name,
        wall_start=time.time(),
        contacts=set(book.by_name.values()),
        initial_timeout=args.timeout,
        tries=args.tries,
    )
    ui = Ui(book, json_mode=args.json, out=sys.stdout, err=sys.stderr)
    with stop_on_signals() as stop:
        endpoint = await open_chat_endpoint(peer, args.host, args.port, ui.on_event)
        ui.endpoint = endpoint
        try:
            announce(endpoint.sockname, "udpchat")
            interactive = sys.stdin.isatty() and sys.stdout.isatty() and not args.json
            reader = asyncio.ensure_future(_tty_mode(ui) if interactive else _line_mode(ui))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                reader.result()
                # End of input: finish what was sent (acked or given up on).
                if peer.pending and interactive:
                    sys.stderr.write(f"waiting for {peer.pending} acknowledgement(s)...\n")
                finishing = asyncio.ensure_future(endpoint.wait_idle())
                await asyncio.wait({finishing, stopper}, return_when=asyncio.FIRST_COMPLETED)
                finishing.cancel()
            reader.cancel()
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        finally:
            endpoint.close()
            c = peer.counters
            if c.oversized or c.malformed:
                sys.stderr.write(
                    f"dropped {c.oversized} oversized and {c.malformed} malformed datagram(s)\n"
                )
