"""Peer text made safe for a terminal: every character that could move the
cursor, change colours, reorder the line or end it is shown as an escape.

Text from the network reaches people through terminals. A newline in a chat
message would print a second line that looks like someone else's; ESC starts
a control sequence (colours, cursor moves, a window title); C1 controls
(U+0080..U+009F) are the 8-bit form of the same; the bidi overrides and
isolates (U+202A..U+202E, U+2066..U+2069) reorder what follows; zero-width
and other format characters (category Cf) hide text; a lone surrogate (what
JSON's ``\\ud800`` decodes to) cannot even be encoded as UTF-8 and would
raise on print. Each of these is written as ``\\xNN``, ``\\uNNNN`` or
``\\UNNNNNNNN`` instead; every other character is kept as it is.

Layer: core. Imports nothing from synack.
"""

from __future__ import annotations

import unicodedata

# Cc: C0 and C1 controls and DEL; Cf: format (bidi, zero-width, BOM, ...);
# Cs: surrogates; Zl/Zp: the line and paragraph separators (they end a line
# in some terminals and most viewers).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def is_unsafe(ch: str) -> bool:
    """True for a character :func:`escape` rewrites."""
    return unicodedata.category(ch) in _UNSAFE_CATEGORIES


def escape(text: str) -> str:
    """``text`` with every unsafe character escaped: one line, safe to print."""
    if text.isprintable() and text.isascii():
        return text  # the common case, without a per-character walk
    return "".join(_escape_char(c) if is_unsafe(c) else c for c in text)
