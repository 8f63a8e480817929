"""Chat messages (docs/protocol.md §2), validated by msgspec.

Each frame's payload is one UTF-8 JSON object whose ``type`` member selects the
message. The structs here are the frozen, validated events of the chat layer:
decoding checks the shape (object, known type, member types); the rules that
have their own error codes (nick, text) are checked by ``check_nick`` and
``check_text`` so the server can answer with the right code.

Layer: apps. Imports msgspec and the standard library.
"""

from __future__ import annotations

import unicodedata
from typing import Final

import msgspec

__all__ = [
    "DEFAULT_PORT",
    "LEFT_REASONS",
    "MAX_NICK",
    "MAX_TEXT",
    "Bye",
    "ClientMessage",
    "Error",
    "Hello",
    "Joined",
    "Left",
    "Msg",
    "Ping",
    "Pong",
    "Say",
    "ServerMessage",
    "Users",
    "Welcome",
    "Who",
    "check_nick",
    "check_text",
    "decode_client",
    "decode_server",
    "encode_message",
]

DEFAULT_PORT: Final = 8898  # §2
MAX_NICK: Final = 32
MAX_TEXT: Final = 4096
LEFT_REASONS: Final = frozenset({"bye", "disconnected", "timeout", "too-slow", "error"})


class _Message(msgspec.Struct, frozen=True, tag_field="type", omit_defaults=True):
    pass


# -- both directions --------------------------------------------------------


class Ping(_Message, frozen=True, tag="ping"):
    pass


class Pong(_Message, frozen=True, tag="pong"):
    pass


class Bye(_Message, frozen=True, tag="bye"):
    pass


# -- client to server -------------------------------------------------------


class Hello(_Message, frozen=True, tag="hello"):
    nick: str


class Say(_Message, frozen=True, tag="say"):
    text: str
    to: str | None = None


class Who(_Message, frozen=True, tag="who"):
    pass


# -- server to client -------------------------------------------------------


class Welcome(_Message, frozen=True, tag="welcome"):
    nick: str
    users: list[str]
    # Users left out so the frame stays within a peer's max_frame (omitted when 0).
    more: int = 0


class Joined(_Message, frozen=True, tag="joined"):
    nick: str


class Left(_Message, frozen=True, tag="left"):
    nick: str
    reason: str


class Msg(msgspec.Struct, frozen=True, tag_field="type", tag="msg"):
    # Not omit_defaults: `to` is always on the wire, null for a broadcast.
    id: int
    from_: str = msgspec.field(name="from")
    text: str
    ts: float
    to: str | None = None


class Users(_Message, frozen=True, tag="users"):
    users: list[str]
    more: int = 0  # as in Welcome


class Error(msgspec.Struct, frozen=True, tag_field="type", tag="error"):
    code: str
    detail: str = ""


ClientMessage = Hello | Say | Who | Ping | Pong | Bye
ServerMessage = Welcome | Joined | Left | Msg | Users | Ping | Pong | Error | Bye

_client_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
_server_decoder: msgspec.json.Decoder[ServerMessage] = msgspec.json.Decoder(ServerMessage)
encode_message = msgspec.json.Encoder().encode


def decode_client(payload: bytes | bytearray) -> ClientMessage:
    """Decode a client's frame; ``ValueError`` (msgspec's errors included) if bad."""
    return _client_decoder.decode(payload)


def decode_server(payload: bytes | bytearray) -> ServerMessage:
    """Decode a server's frame; ``ValueError`` for anything this client does not know."""
    return _server_decoder.decode(payload)


def _nick_char_ok(c: str) -> bool:
    if c in "_-":
        return True
    cat = unicodedata.category(c)
    return cat[0] == "L" or cat == "Nd"


def check_nick(nick: str) -> str | None:
    """Why ``nick`` breaks the rule (1-32 letters, digits, ``_``, ``-``), or None."""
    if not 1 <= len(nick) <= MAX_NICK:
        return f"a nick has 1 to {MAX_NICK} characters, not {len(nick)}"
    for c in nick:
        if not _nick_char_ok(c):
            return f"a nick holds only letters, digits, '_' and '-', not {c!r}"
    return None


def check_text(text: str) -> str | None:
    """Why ``text`` breaks the rule (1-4,096 characters of valid Unicode), or None."""
    if not 1 <= len(text) <= MAX_TEXT:
        return f"a text has 1 to {MAX_TEXT} characters, not {len(text)}"
    try:
        text.encode()
    except UnicodeEncodeError:
        # A lone surrogate from a JSON escape cannot be sent on as UTF-8.
        return "text is not valid Unicode"
    return None
