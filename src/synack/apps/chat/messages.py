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
    "Replayed",
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
    "nick_key",
    "normalize_nick",
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


class Replayed(Msg, frozen=True, tag="msg"):
    """A ``msg`` as a client decodes it: ``history`` is true on a replayed message (§2a).

    Only decoded, never encoded: the server splices ``"history":true`` into the frame it
    already broadcast, and a live ``msg`` does not carry the member at all."""

    history: bool = False


class Users(_Message, frozen=True, tag="users"):
    users: list[str]
    more: int = 0  # as in Welcome


class Error(msgspec.Struct, frozen=True, tag_field="type", tag="error"):
    code: str
    detail: str = ""


ClientMessage = Hello | Say | Who | Ping | Pong | Bye
ServerMessage = Welcome | Joined | Left | Msg | Users | Ping | Pong | Error | Bye

_client_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
# The client's view of a server message: every ``msg`` decodes as a ``Replayed`` (a Msg).
_server_decoder: msgspec.json.Decoder[ServerMessage] = msgspec.json.Decoder(
    Welcome | Joined | Left | Replayed | Users | Ping | Pong | Error | Bye
)
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
    return (cat[0] == "L" or cat == "Nd") and c not in _INVISIBLE_LETTERS


# Letters that draw nothing (Unicode's Default_Ignorable_Code_Point among the
# letters): the Hangul fillers. A nick made of them looks empty, or like
# another nick with nothing added. (Format characters, category Cf, such as
# the zero-width joiner, are not letters and are refused already.)
_INVISIBLE_LETTERS: Final = frozenset("\u115f\u1160\u3164\uffa0")

# The skeleton (after NFKC and case folding): letters of other scripts, and
# digits, that draw like a Latin letter in common fonts map to that letter, so
# two nicks that look alike get one key. A small, deliberate subset of
# Unicode's confusables (UTS #39, confusables.txt): the Cyrillic and Greek
# lowercase homoglyphs of Latin letters, dotless i and script g/a, and the
# digits 0 and 1. "rn" drawn as "m" is handled in nick_key. Not covered:
# rarer scripts' look-alikes (Cherokee, Armenian, ...) and "I" vs "l" (case
# folding turns "I" into "i" first). See docs/protocol.md §2b.
_SKELETON: Final = str.maketrans(
    {
        # Cyrillic
        "\u0430": "a",  # а
        "\u0435": "e",  # е
        "\u0451": "e",  # ё (NFKC keeps it composed; drawn as ë, close enough to refuse)
        "\u043e": "o",  # о
        "\u0440": "p",  # р
        "\u0441": "c",  # с
        "\u0443": "y",  # у
        "\u0445": "x",  # х
        "\u0455": "s",  # ѕ
        "\u0456": "i",  # і
        "\u0458": "j",  # ј
        "\u04bb": "h",  # һ
        "\u0501": "d",  # ԁ
        "\u051b": "q",  # ԛ
        "\u051d": "w",  # ԝ
        "\u04cf": "l",  # ӏ
        # Greek
        "\u03b1": "a",  # α
        "\u03bf": "o",  # ο
        "\u03b9": "i",  # ι
        "\u03bd": "v",  # ν
        "\u03c1": "p",  # ρ
        "\u03c5": "u",  # υ
        "\u03f2": "c",  # ϲ
        "\u03f3": "j",  # ϳ
        # Latin variants
        "\u0131": "i",  # ı dotless i
        "\u0261": "g",  # ɡ script g
        "\u0251": "a",  # ɑ alpha
        # digits drawn like letters
        "0": "o",
        "1": "l",
    }
)


def normalize_nick(nick: str) -> str:
    """The nick as registered: NFKC (full-width and math-alphanumeric forms
    become plain letters: ``ａｄａ`` and ``𝐚𝐝𝐚`` are ``ada``)."""
    return unicodedata.normalize("NFKC", nick)


def nick_key(nick: str) -> str:
    """What two nicks share when people would take them for one: NFKC, case
    folded (NFKC again, folding can denormalise), then the skeleton."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", nick).casefold())
    return folded.translate(_SKELETON).replace("rn", "m")


def check_nick(nick: str) -> str | None:
    """Why ``nick`` breaks the rule (1-32 letters, digits, ``_``, ``-``, none
    invisible), or None. Check the normalised nick (``normalize_nick``)."""
    if not 1 <= len(nick) <= MAX_NICK:
        return f"a nick has 1 to {MAX_NICK} characters, not {len(nick)}"
    for c in nick:
        if c in _INVISIBLE_LETTERS:
            return f"a nick holds no invisible characters, not U+{ord(c):04X}"
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
