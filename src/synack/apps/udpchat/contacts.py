"""The contact book (docs/protocol.md §4): ``[contacts]`` in TOML plus ``--contact``.

Layer: apps. Imports synack.errors.
"""

from __future__ import annotations

import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from synack.errors import UsageError

Address = tuple[str, int]


def parse_hostport(text: str, *, what: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``; UsageError naming ``what`` otherwise."""
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not sep or not host or not 1 <= port <= 65535:
        raise UsageError(f"{what}: expected HOST:PORT with PORT 1..65535, got {text!r}")
    return host, port


def resolve(host: str, port: int, *, what: str) -> Address:
    """Resolve once, up front: incoming datagrams carry numeric addresses, and
    a contact is recognised by comparing with them."""
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise UsageError(f"{what}: cannot resolve {host!r} ({exc.strerror})") from None
    addr = infos[0][4]
    return str(addr[0]), int(addr[1])


@dataclass(slots=True)
class ContactBook:
    by_name: dict[str, Address] = field(default_factory=dict)

    def add(self, name: str, addr: Address) -> None:
        self.by_name[name] = addr

    def name_of(self, addr: Address) -> str | None:
        for name, a in self.by_name.items():
            if a == addr:
                return name
        return None

    def label(self, addr: Address) -> str:
        return self.name_of(addr) or f"{addr[0]}:{addr[1]}"


def _check_name(name: str, what: str) -> None:
    if not name or len(name) > 64 or any(c.isspace() for c in name):
        raise UsageError(f"{what}: contact name {name!r} must be 1-64 characters, no spaces")


def load_contacts(path: str | None, extra: list[str]) -> ContactBook:
    book = ContactBook()
    if path is not None:
        try:
            with Path(path).open("rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise UsageError(f"no such contacts file: {path}") from None
        except IsADirectoryError:
            raise UsageError(f"{path}: is a directory, not a contacts file") from None
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{path}: not valid TOML ({exc})") from None
        except UnicodeDecodeError as exc:
            # TOML is UTF-8 (tomllib decodes before it parses, so this is not a TOMLDecodeError).
            raise UsageError(f"{path}: not valid TOML (not UTF-8 at byte {exc.start})") from None
        table = data.get("contacts", {})
        if not isinstance(table, dict):
            raise UsageError(f'{path}: [contacts] must be a table of name = "host:port"')
        for name, value in table.items():
            what = f"{path}: contact {name!r}"
            _check_name(name, what)
            if not isinstance(value, str):
                raise UsageError(f'{what}: expected "host:port"')
            book.add(name, resolve(*parse_hostport(value, what=what), what=what))
    for item in extra:
        name, sep, hostport = item.partition("=")
        what = f"--contact {item!r}"
        if not sep:
            raise UsageError(f"{what}: expected NAME=HOST:PORT")
        _check_name(name, what)
        book.add(name, resolve(*parse_hostport(hostport, what=what), what=what))
    return book
