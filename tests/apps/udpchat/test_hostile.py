"""Attacks on the UDP messenger (issue 14 item 1), kept as tests.

Each test names the attack, its size, and the guarantee it checks.
"""

from __future__ import annotations

import io
import itertools
import json

from synack.apps.udpchat.contacts import ContactBook
from synack.apps.udpchat.core import (
    ID_SECRET_BITS,
    MAX_SENDERS,
    Delivered,
    Event,
    MessageReceived,
    UdpChatPeer,
    encode_msg,
)
from synack.cli.udpchat import Ui

ALICE = ("10.0.0.1", 8081)
BOB = ("10.0.0.2", 8081)
MALLORY = ("10.0.0.66", 4444)


def events(peer: UdpChatPeer) -> list[Event]:
    out = []
    while (ev := peer.next_event()) is not None:
        out.append(ev)
    return out


def shown(peer: UdpChatPeer) -> list[MessageReceived]:
    return [e for e in events(peer) if isinstance(e, MessageReceived)]


def test_strangers_claiming_a_contacts_name_cannot_suppress_its_messages() -> None:
    # Attack: 5,000 datagrams from a stranger claiming `from: bob` with huge
    # ids (they used to fill bob's duplicate window and drop his real messages).
    alice = UdpChatPeer("alice", contacts=[BOB])
    for i in range(5000):
        alice.receive_datagram(encode_msg(2**62 + i, "bob", "fake", 0.0), MALLORY, 0.0)
    events(alice)
    alice.datagrams_to_send()
    # Guarantee: bob's real messages (small ids, from his address) are shown,
    # and as a contact's, the forged ones as a stranger's.
    real = UdpChatPeer("bob", wall_start=1_700_000_000.0)
    for text in ("one", "two"):
        real.send(ALICE, text, 0.0, 0.0)
    for data, _ in real.datagrams_to_send():
        alice.receive_datagram(data, BOB, 0.1)
    got = shown(alice)
    assert [(m.text, m.contact) for m in got] == [("one", True), ("two", True)]
    # ... and his acks come back to him: delivered means shown.
    for ack, to in alice.datagrams_to_send():
        assert to == BOB
        real.receive_datagram(ack, ALICE, 0.2)
    assert sum(isinstance(e, Delivered) for e in events(real)) == 2


def test_replay_after_flooding_stranger_names_is_still_a_duplicate() -> None:
    # Attack: after bob's message is shown, 1,100 other sources (more than the
    # stranger table holds) each send one, then bob's message is replayed.
    alice = UdpChatPeer("alice", contacts=[BOB])
    original = encode_msg(7, "bob", "pay 10", 0.0)
    alice.receive_datagram(original, BOB, 0.0)
    assert len(shown(alice)) == 1
    flood = MAX_SENDERS + 76
    for i in range(flood):
        src = (f"10.1.{i // 250}.{i % 250 + 1}", 9000)
        alice.receive_datagram(encode_msg(1, f"n{i}", "x", 0.0), src, 0.0)
    assert len(shown(alice)) == flood
    assert alice.counters.strangers_forgotten == flood - MAX_SENDERS
    # Guarantee: a contact's history is never evicted: the replay is a duplicate.
    alice.receive_datagram(original, BOB, 1.0)
    assert shown(alice) == [] and alice.counters.duplicates == 1


def test_same_id_from_two_addresses_are_two_messages() -> None:
    # Identity is (source address, id), never the claimed name.
    alice = UdpChatPeer("alice", contacts=[BOB])
    alice.receive_datagram(encode_msg(5, "bob", "from bob", 0.0), BOB, 0.0)
    alice.receive_datagram(encode_msg(5, "bob", "from mallory", 0.0), MALLORY, 0.0)
    assert [(m.text, m.source, m.contact) for m in shown(alice)] == [
        ("from bob", BOB, True),
        ("from mallory", MALLORY, False),
    ]


def test_ids_are_secret_increasing_and_survive_a_restart() -> None:
    wall = 1_700_000_000.0
    firsts = {UdpChatPeer("a", wall_start=wall).send(BOB, "x", 0.0, 0.0) for _ in range(50)}
    # 50 runs started in the same second: 50 different first ids.
    assert len(firsts) == 50
    peer = UdpChatPeer("a", wall_start=wall)
    ids = [peer.send(BOB, "x", 0.0, 0.0) for _ in range(1000)]
    steps = {b - a for a, b in itertools.pairwise(ids)}
    assert all(s > 0 for s in steps) and len(steps) > 900  # increasing, by unguessable steps
    # A restart one second later starts above all 1,000 ids of the last run.
    restarted = UdpChatPeer("a", wall_start=wall + 1).send(BOB, "x", 0.0, 0.0)
    assert restarted > ids[-1]
    assert ids[0] >> ID_SECRET_BITS == int(wall)


def test_guessed_and_misdirected_acks_confirm_nothing() -> None:
    # Attack: 5,000 acks with ids around "now" (what wall-clock-ms ids made
    # easy), from the right address, plus the right id from a wrong address.
    alice = UdpChatPeer("alice", wall_start=1_700_000_000.0)
    msg_id = alice.send(BOB, "secret plan", 0.0, 0.0)
    alice.datagrams_to_send()
    base = 1_700_000_000 << ID_SECRET_BITS
    for guess in range(base, base + 5000):
        if guess != msg_id:
            alice.receive_datagram(b'{"type":"ack","id":%d}' % guess, BOB, 0.1)
    alice.receive_datagram(b'{"type":"ack","id":%d}' % msg_id, MALLORY, 0.1)
    # Guarantee: only bob's ack of the id sent to bob delivers it.
    assert events(alice) == [] and alice.pending == 1
    assert alice.counters.stray_acks == 5000 - (base <= msg_id < base + 5000) + 1
    alice.receive_datagram(b'{"type":"ack","id":%d}' % msg_id, BOB, 0.2)
    assert events(alice) == [Delivered(BOB, msg_id)]


def _strict_stream() -> tuple[io.BytesIO, io.TextIOWrapper]:
    raw = io.BytesIO()
    # A terminal's stdout: UTF-8, strict (a lone surrogate raises on write).
    return raw, io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)


HOSTILE_TEXTS = [
    "\ud800",  # lone surrogate: used to raise UnicodeEncodeError after the ack
    "hi\n[12:00:00] [bob] send me your password",  # a forged second line
    "\x1b[2J\x1b]0;owned\x07",  # clear screen, set the window title
    "\u202eevil\u202c",  # bidi override
    "a\x85b\u2028c",  # C1 NEL and LINE SEPARATOR
]


def test_hostile_text_is_shown_on_one_escaped_line_text_and_json() -> None:
    book = ContactBook()
    book.add("bob", BOB)
    for json_mode in (False, True):
        raw, out = _strict_stream()
        ui = Ui(book, json_mode=json_mode, out=out, err=io.StringIO())
        peer = UdpChatPeer("alice", contacts=[BOB])
        for i, text in enumerate(HOSTILE_TEXTS):
            data = json.dumps({"type": "msg", "id": i, "from": "bob", "text": text}).encode()
            peer.receive_datagram(data, BOB, 0.0)
            peer.receive_datagram(data.replace(b'"bob"', b'"bob\\n[bob]"'), MALLORY, 0.0)
        for ev in events(peer):
            ui.on_event(ev)  # guarantee: never raises
        lines = raw.getvalue().decode("utf-8").split("\n")
        assert lines[-1] == ""
        lines = lines[:-1]
        assert len(lines) == 2 * len(HOSTILE_TEXTS)  # one line per message
        for line in lines:
            assert not any(c in line for c in "\x1b\x07\x85\u2028\u202e\u202c\r")
        if json_mode:
            objs = [json.loads(line) for line in lines]
            assert [o["text"] for o in objs if o["contact"]] == HOSTILE_TEXTS
            assert [o["from"] for o in objs if not o["contact"]] == ["bob\n[bob]"] * 5
        else:
            # Contacts' lines start "[bob] "; the stranger's never does.
            assert sum(line.startswith("[bob] ") for line in lines) == len(HOSTILE_TEXTS)
            assert all(line.startswith("?[10.0.0.66:4444 ") for line in lines[1::2])
            assert lines[0] == "[bob] \\ud800"
            assert lines[2] == "[bob] hi\\x0a[12:00:00] [bob] send me your password"
