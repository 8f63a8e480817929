"""``--history N`` on the sans-IO room (manual clock): the last N broadcasts after
``welcome``, marked ``"history": true``, oldest first; direct messages never replayed."""

from __future__ import annotations

import pytest

from synack.apps.chat import ChatConfig
from synack.apps.chat.history import History, mark
from synack.apps.chat.messages import Msg, decode_server, encode_message
from synack.cli.chat import describe
from synack.errors import LocalProtocolError

from .helpers import Room


def test_off_by_default_a_newcomer_gets_only_welcome() -> None:
    r = Room()
    r.hello("ada")
    r.send("ada", type="say", text="before")
    r.take("ada")
    r.connect("bob")
    r.send("bob", type="hello", nick="bob")
    assert r.types("bob") == ["welcome"]


def test_last_n_broadcasts_after_welcome_in_order_and_marked() -> None:
    r = Room(ChatConfig(history=3))
    r.hello("ada")
    r.hello("cy")
    for i in range(5):
        r.send("ada", type="say", text=f"m{i}")
        r.advance(1.0)
    r.send("ada", type="say", text="secret", to="cy")  # direct: never history
    r.take("ada")
    r.take("cy")
    r.connect("bob")
    r.send("bob", type="hello", nick="bob")
    got = r.take("bob")
    assert got[0]["type"] == "welcome"
    replay = got[1:]
    assert [m["text"] for m in replay] == ["m2", "m3", "m4"]
    assert all(m["type"] == "msg" and m["history"] is True for m in replay)
    assert all(m["from"] == "ada" and m["to"] is None for m in replay)
    ids = [m["id"] for m in replay]
    assert ids == sorted(ids)
    # Live traffic after the replay is not marked, and its ids keep increasing.
    r.send("cy", type="say", text="live")
    (live,) = r.take("bob")
    assert live["text"] == "live" and "history" not in live and live["id"] > ids[-1]
    # The others did not get the replay.
    assert [m["type"] for m in r.take("ada")] == ["joined", "msg"]


def test_replay_and_same_turn_broadcasts_keep_the_order() -> None:
    r = Room(ChatConfig(history=2))
    r.hello("ada")
    r.send("ada", type="say", text="old")
    r.take("ada")
    with r.turn():
        r.send("ada", type="say", text="just-before")
        r.connect("bob")
        r.send("bob", type="hello", nick="bob")
        r.send("ada", type="say", text="just-after")
    got = r.take("bob")
    assert [(m["type"], m.get("text"), m.get("history")) for m in got] == [
        ("welcome", None, None),
        ("msg", "old", True),
        ("msg", "just-before", True),
        ("msg", "just-after", None),
    ]


def test_history_bounds_are_checked() -> None:
    with pytest.raises(LocalProtocolError):
        ChatConfig(history=-1)
    with pytest.raises(ValueError):
        History(0)
    with pytest.raises(ValueError):
        mark(b"[1]")


def test_chat_join_marks_replayed_messages_and_only_those() -> None:
    """What `chat join` prints: a replayed message says it was said earlier; a live one, with
    the same id, text and time, does not (decoded from the very bytes the server sends)."""
    live = encode_message(Msg(id=7, from_="ada", text="hi", ts=1_700_000_000.0))
    replayed = mark(live)
    assert b'"history":true' in replayed and b"history" not in live
    live_line, replay_line = describe(decode_server(live)), describe(decode_server(replayed))
    assert live_line is not None and replay_line is not None
    assert "(earlier)" in replay_line and "(earlier)" not in live_line
    assert replay_line.replace(" (earlier)", "") == live_line
