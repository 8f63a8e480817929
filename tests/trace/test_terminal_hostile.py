"""Peer-controlled text in the terminal diagram is escaped (issue 14 item 7)."""

from __future__ import annotations

from synack.trace.builder import TraceBuilder
from synack.trace.terminal import to_text
from tests.trace.frames import CONVERSATION, A, B


def test_control_and_bidi_characters_in_names_never_reach_the_terminal() -> None:
    hostile = "A\x1b[2J\n\u202eevil\x85"
    plain = TraceBuilder(names={str(A): "A", str(B): "B"})
    b = TraceBuilder(names={str(A): hostile, str(B): "B"})
    for t, f in CONVERSATION:
        b.add_frame(t, f)
        plain.add_frame(t, f)
    text = to_text(b.build(), width=100)
    # Guarantee: no ESC, C1 or bidi override printed, and no line added.
    assert not any(c in text for c in "\x1b\x85\u202e")
    assert "A\\x1b[2J\\x0a\\u202eevil\\x85" in text
    assert text.count("\n") == to_text(plain.build(), width=100).count("\n")
