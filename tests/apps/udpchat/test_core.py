from __future__ import annotations

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synack.apps.udpchat.core import (
    Delivered,
    Event,
    MessageReceived,
    UdpChatPeer,
    Undelivered,
    encode_msg,
)
from synack.errors import LocalProtocolError

A = ("10.0.0.1", 8081)
B = ("10.0.0.2", 8081)


def events(peer: UdpChatPeer) -> list[Event]:
    out = []
    while (ev := peer.next_event()) is not None:
        out.append(ev)
    return out


def test_message_ack_delivered() -> None:
    alice, bob = UdpChatPeer("alice"), UdpChatPeer("bob")
    msg_id = alice.send(B, "hi bob", now=0.0, ts=1000.0)
    [(data, to)] = alice.datagrams_to_send()
    assert to == B
    assert json.loads(data) == {
        "type": "msg",
        "id": msg_id,
        "from": "alice",
        "text": "hi bob",
        "ts": 1000.0,
    }
    bob.receive_datagram(data, A, now=0.01)
    assert events(bob) == [MessageReceived(A, "alice", msg_id, "hi bob", 1000.0)]
    [(ack, ack_to)] = bob.datagrams_to_send()
    assert ack_to == A and json.loads(ack) == {"type": "ack", "id": msg_id}
    alice.receive_datagram(ack, B, now=0.02)
    assert events(alice) == [Delivered(B, msg_id)]
    assert alice.pending == 0 and alice.get_timer() is None


def test_ids_increase_per_sender() -> None:
    alice = UdpChatPeer("alice", first_id=41)
    assert [alice.send(B, f"m{i}", 0.0, 0.0) for i in range(3)] == [41, 42, 43]


def test_retransmission_schedule_doubles_then_undelivered() -> None:
    alice = UdpChatPeer("alice")
    msg_id = alice.send(B, "anyone?", now=0.0, ts=0.0)
    first = alice.datagrams_to_send()
    sends = [0.0]
    # Transmissions at 0, 0.5, 1.5, 3.5, 7.5; undelivered 8 s after the last.
    while (deadline := alice.get_timer()) is not None:
        alice.handle_timer(deadline)
        out = alice.datagrams_to_send()
        if out:
            assert out == first  # the same bytes, same id
            sends.append(deadline)
    assert sends == [0.0, 0.5, 1.5, 3.5, 7.5]
    assert events(alice) == [Undelivered(B, msg_id, 5)]
    assert deadline is None and alice.pending == 0
    assert alice.counters.retransmitted == 4


def test_timer_does_nothing_before_the_deadline() -> None:
    alice = UdpChatPeer("alice")
    alice.send(B, "x", now=0.0, ts=0.0)
    alice.datagrams_to_send()
    alice.handle_timer(0.49)
    assert alice.datagrams_to_send() == [] and alice.get_timer() == 0.5


def test_duplicate_is_acked_but_shown_once() -> None:
    bob = UdpChatPeer("bob")
    data = encode_msg(7, "alice", "once", 1.0)
    for _ in range(3):
        bob.receive_datagram(data, A, now=0.0)
    assert len(events(bob)) == 1
    assert [json.loads(d)["id"] for d, _ in bob.datagrams_to_send()] == [7, 7, 7]
    assert bob.counters.duplicates == 2


def test_ack_only_counts_from_the_recipient() -> None:
    alice = UdpChatPeer("alice")
    msg_id = alice.send(B, "x", 0.0, 0.0)
    alice.receive_datagram(b'{"type":"ack","id":%d}' % msg_id, ("10.9.9.9", 1), 0.1)
    alice.receive_datagram(b'{"type":"ack","id":999}', B, 0.1)
    assert events(alice) == [] and alice.counters.stray_acks == 2
    alice.receive_datagram(b'{"type":"ack","id":%d}' % msg_id, B, 0.1)
    alice.receive_datagram(b'{"type":"ack","id":%d}' % msg_id, B, 0.1)  # duplicate ack
    assert events(alice) == [Delivered(B, msg_id)]
    assert alice.counters.stray_acks == 3


def test_oversized_send_is_refused_and_nothing_queued() -> None:
    alice = UdpChatPeer("alice")
    with pytest.raises(LocalProtocolError, match="limit 1200"):
        alice.send(B, "x" * 1200, 0.0, 0.0)
    with pytest.raises(LocalProtocolError):
        alice.send(B, "", 0.0, 0.0)
    assert alice.pending == 0 and alice.datagrams_to_send() == []
    # Multi-byte text counts in bytes, not characters.
    with pytest.raises(LocalProtocolError):
        alice.send(B, "\u00e9" * 600, 0.0, 0.0)


@pytest.mark.parametrize(
    ("data", "counter"),
    [
        (encode_msg(1, "a", "x" * 1200, 0.0), "oversized"),
        (b"\xff\xfe", "malformed"),
        (b"not json", "malformed"),
        (b"[1,2]", "malformed"),
        (b'{"type":"hello"}', "malformed"),
        (b'{"type":"msg","id":"1","from":"a","text":"x"}', "malformed"),
        (b'{"type":"msg","id":true,"from":"a","text":"x"}', "malformed"),
        (b'{"type":"msg","id":-1,"from":"a","text":"x"}', "malformed"),
        (b'{"type":"msg","id":1,"from":"","text":"x"}', "malformed"),
        (b'{"type":"msg","id":1,"from":"a","text":""}', "malformed"),
        (b'{"type":"ack","id":null}', "malformed"),
        (b"[" * 100_000, "oversized"),
        (b"[" * 1000, "malformed"),
    ],
)
def test_bad_datagrams_are_dropped_and_counted(data: bytes, counter: str) -> None:
    bob = UdpChatPeer("bob")
    bob.receive_datagram(data, A, 0.0)
    assert getattr(bob.counters, counter) == 1
    assert events(bob) == [] and bob.datagrams_to_send() == []


def test_unknown_members_ignored_and_bad_ts_tolerated() -> None:
    bob = UdpChatPeer("bob")
    bob.receive_datagram(
        b'{"type":"msg","id":3,"from":"a","text":"x","ts":"soon","extra":1}', A, 0.0
    )
    assert events(bob) == [MessageReceived(A, "a", 3, "x", None)]


@given(st.binary(max_size=1300))
def test_fuzz_receive_never_raises(data: bytes) -> None:
    UdpChatPeer("bob").receive_datagram(data, A, 0.0)


def run_lossy(seed: int, n: int, loss: float, dup: float) -> None:
    """Two cores over a seeded lossy, duplicating, reordering channel."""
    rng = random.Random(seed)
    alice, bob = UdpChatPeer("alice"), UdpChatPeer("bob")
    peers = {A: alice, B: bob}
    in_flight: list[tuple[float, bytes, tuple[str, int], tuple[str, int]]] = []
    now = 0.0
    sent = {alice.send(B, f"m{i}", now, now): f"m{i}" for i in range(n)}
    shown: list[tuple[str, int]] = []
    outcome: dict[int, str] = {}

    def flush(src: tuple[str, int]) -> None:
        for data, dst in peers[src].datagrams_to_send():
            for _ in range(2 if rng.random() < dup else 1):
                if rng.random() >= loss:
                    in_flight.append((now + rng.uniform(0.001, 0.2), data, src, dst))

    flush(A)
    for _ in range(100_000):
        timers = [t for t in (alice.get_timer(), bob.get_timer()) if t is not None]
        arrivals = [t for t, *_ in in_flight]
        if not timers and not arrivals:
            break
        now = min(timers + arrivals)
        in_flight.sort(key=lambda x: x[0])
        while in_flight and in_flight[0][0] <= now:
            _, data, src, dst = in_flight.pop(0)
            peers[dst].receive_datagram(data, src, now)
        for p in (alice, bob):
            p.handle_timer(now)
        flush(A)
        flush(B)
        for ev in events(bob):
            assert isinstance(ev, MessageReceived)
            shown.append((ev.sender, ev.id))
            assert ev.text == sent[ev.id]
        for ev in events(alice):
            assert isinstance(ev, Delivered | Undelivered)
            assert ev.id not in outcome
            outcome[ev.id] = type(ev).__name__
    assert len(shown) == len(set(shown)), "a message was shown twice"
    assert set(outcome) == set(sent), "every message gets exactly one outcome"
    shown_ids = {i for _, i in shown}
    for msg_id, result in outcome.items():
        if result == "Delivered":
            assert msg_id in shown_ids


@pytest.mark.parametrize("seed", range(20))
def test_lossy_channel_delivers_once_or_reports(seed: int) -> None:
    run_lossy(seed, n=30, loss=0.3, dup=0.1)


def test_total_loss_reports_everything_undelivered() -> None:
    run_lossy(0, n=5, loss=1.0, dup=0.0)
