"""The connection set-up and teardown paths' shortcuts equal what they replace.

The host keys its TIME-WAIT records by 4-tuples of ints (TimeWaitTable), makes
ISNs from a blake2s state keyed once, and fills the slots of per-connection
records (Transition, TcpActivity) directly: each is checked here against the
plain way on the same input.
"""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address

from synack.stack.events import TcpActivity
from synack.tcp.isn import TICKS_PER_SECOND, IsnGenerator
from synack.tcp.states import TRANSITIONS, Cause, State, Transition, is_transition
from tests.stack.netfix import two_hosts

A, B = IPv4Address("10.213.0.1"), IPv4Address("10.213.0.2")


def _isn_reference(secret: bytes, lip: IPv4Address, lport: int, rip: IPv4Address, rport: int,
                   now: float) -> int:  # fmt: skip
    """RFC 6528 §3 as written: M + F(4-tuple, key), F a keyed blake2s keyed each time."""
    data = lip.packed + lport.to_bytes(2, "big") + rip.packed + rport.to_bytes(2, "big")
    f = int.from_bytes(hashlib.blake2s(data, key=secret, digest_size=4).digest())
    return (int(now * TICKS_PER_SECOND) + f) % 2**32


def test_isn_from_a_once_keyed_state_equals_keying_each_time() -> None:
    for secret in (b"k" * 16, bytes(range(32))):
        gen = IsnGenerator(secret)
        for lport, rport, now in ((80, 40000, 0.0), (8081, 1, 1234.5678), (65535, 65535, 1e6)):
            want = _isn_reference(secret, B, lport, A, rport, now)
            assert gen((B, lport), (A, rport), now) == want
            assert gen.for_ints(int(B), lport, int(A), rport, now) == want
    # A secret over 32 bytes is hashed down first (blake2s keys are <= 32).
    long = b"s" * 64
    want = _isn_reference(hashlib.sha256(long).digest(), B, 80, A, 9, 3.0)
    assert IsnGenerator(long)((B, 80), (A, 9), 3.0) == want


def test_fast_records_equal_plain_ones() -> None:
    t = Transition(1.5, State.SYN_RECEIVED, State.ESTABLISHED, Cause.RCV_ACK_OF_SYN)
    plain = object.__new__(Transition)
    for name, value in (
        ("time", 1.5),
        ("old", State.SYN_RECEIVED),
        ("new", State.ESTABLISHED),
        ("cause", Cause.RCV_ACK_OF_SYN),
    ):
        object.__setattr__(plain, name, value)
    assert t == plain and hash(t) == hash(plain) and repr(t) == repr(plain)
    assert Transition(time=1.5, old=t.old, new=t.new, cause=t.cause) == t
    marker = object()
    assert TcpActivity(marker).socket is marker  # type: ignore[arg-type]
    # Causes hash by identity now: every row is still found, nothing else is.
    for old, cause, new in TRANSITIONS:
        assert is_transition(old, cause, new)
    assert not is_transition(State.CLOSED, Cause.RCV_FIN, State.TIME_WAIT)


def test_time_wait_table_reads_as_a_mapping_by_connection_key() -> None:
    lan, a, b = two_hosts()
    listener = b.tcp_listen(80)
    keys = []
    for _ in range(3):
        client = a.tcp_connect((B, 80), lan.now)
        lan.run(until=lan.now + 0.01)
        server = listener.accept()
        assert server is not None
        server.close(lan.now)  # B closes first: B holds the TIME-WAIT
        lan.run(until=lan.now + 0.01)
        client.close(lan.now)
        lan.run(until=lan.now + 0.05)
        keys.append(server.key)
    table = b.tcp.time_wait
    assert len(table) == 3 and set(table) == set(keys) and all(k in table for k in keys)
    for key in keys:
        tw = table[key]
        assert tw.key == key and table.by_flow[(int(key[0]), key[1], int(key[2]), key[3])] is tw
    other = (B, 80, A, 1)
    assert other not in table and table.get(other) is None
    assert "nonsense" not in table and (1, 2) not in table
    # The records end at 2*MSL, found through their own heap.
    deadline = b.tcp.get_timer()
    assert deadline is not None
    lan.run(until=lan.now + 2 * b.tcp.config.msl + 1)
    assert not table and not b.connections
