"""RACK's packed records (tcp/rack.py ``sent_run``): a super-segment's pieces
held as one record until anything but a cumulative ACK looks at them.

Both ways are run on the same input and compared: a Rack fed random sends,
cumulative ACKs (at piece edges and inside pieces), SACKs, loss detection,
retransmissions, loss probes and timeouts, packed or one record per piece;
and a bulk sender cut into super-segments on a lossy, reordering path, with
packing on and off: the same frames, TCB, RACK and recovery variables.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from synack.stack.host import Host, TcpStream
from synack.tcp.rack import Rack
from synack.tcp.states import State
from tests.stack.netfix import two_hosts
from tests.stack.test_fast_paths import B

MSS = 1448


def _state(r: Rack) -> tuple[object, ...]:
    r.unpack()
    r._fold()
    return (
        [list(rec) for rec in r.records], r.order, r.xmit_ts, r.end_seq, r.xmit_order, r.rtt,
        r.min_rtt, r.fack, r.reordering_seen, r.sacked_segs, r.lost, r.deadline, r.last,
    )  # fmt: skip


def _sent_pieces(r: Rack, start: int, end: int, now: float, count: int) -> None:
    """What the sender did before packing: one record per piece."""
    for _ in range(count - 1):
        piece_end = (start + MSS) & 0xFFFFFFFF
        r.sent(start, piece_end, now)
        start = piece_end
    r.sent(start, end, now)


@pytest.mark.parametrize("seed", range(40))
def test_packed_records_give_what_a_record_per_piece_gives(seed: int) -> None:
    rng = random.Random(seed)
    packed, plain = Rack(), Rack()
    base = rng.choice([0, 0xFFFFFFFF - 50 * MSS])  # sequence numbers wrap in some
    una = nxt = base
    now = 1.0
    for _ in range(200):
        now += rng.choice([0.0, 0.0005, 0.002])
        op = rng.random()
        flight = (nxt - una) & 0xFFFFFFFF
        if op < 0.35 or flight == 0:
            count = rng.randint(1, 44)
            n = (count - 1) * MSS + rng.randint(1, MSS)
            fin = rng.random() < 0.05
            end = (nxt + n + fin) & 0xFFFFFFFF
            if count > 1:
                packed.sent_run(nxt, end, now, MSS, count)
            else:
                packed.sent(nxt, end, now)
            _sent_pieces(plain, nxt, end, now, count)
            nxt = end
        elif op < 0.7:
            # A cumulative ACK: at a piece's edge, inside one, or of nothing new.
            step = rng.choice([MSS, 2 * MSS, 7 * MSS, rng.randint(0, flight), 0, flight])
            step = min(step, flight)
            ack = (una + step) & 0xFFFFFFFF
            for r in (packed, plain):
                r.on_cumulative_ack(ack, now)
            una = ack
        elif op < 0.8 and flight > MSS:
            lo = (una + rng.randint(1, flight // MSS) * MSS) & 0xFFFFFFFF
            hi = (lo + rng.randint(1, 5) * MSS) & 0xFFFFFFFF
            if (hi - una) & 0xFFFFFFFF > flight:
                hi = nxt
            for r in (packed, plain):
                r.on_sacks([(lo, hi)], now)
        elif op < 0.88:
            reo = rng.choice([0.0, 0.001])
            assert packed.detect_loss(now, reo) == plain.detect_loss(now, reo)
            assert packed.next_lost(MSS) == plain.next_lost(MSS)
        elif op < 0.94 and flight:
            lost = plain.next_lost(MSS)
            start = lost[0] if lost else (una + rng.randint(0, flight - 1)) & 0xFFFFFFFF
            end = (start + MSS) & 0xFFFFFFFF
            for r in (packed, plain):
                r.resent(start, end, now)
        elif op < 0.97:
            assert packed.pipe() == plain.pipe()
        else:
            for r in (packed, plain):
                r.on_rto()
        assert packed.pipe() == plain.pipe()
        assert packed.order == plain.order
        if rng.random() < 0.1:
            # Unpacked at any time, the same records and variables.
            assert _state(packed) == _state(plain)
    assert _state(packed) == _state(plain)


def test_a_super_segment_is_one_record_until_looked_at() -> None:
    r = Rack()
    r.sent_run(0, 10 * MSS + 1, 1.0, MSS, 11)  # ten pieces and a 1-octet tail
    assert len(r.records) == 1 and r.order == 11
    r.on_cumulative_ack(3 * MSS + 5, 1.1)  # inside the fourth piece
    assert list(r.records) == [[3 * MSS, 10 * MSS + 1, 1.0, 0, 4, MSS, 8]]
    assert r.pend == [2 * MSS, 3 * MSS, 1.0, 0, 3]
    assert r.pipe() == 7 * MSS + 1
    r.on_cumulative_ack(10 * MSS, 1.2)  # the last piece left: a plain record
    assert list(r.records) == [[10 * MSS, 10 * MSS + 1, 1.0, 0, 11]] and r.packed == 0
    assert r.pend == [9 * MSS, 10 * MSS, 1.0, 0, 10]


def _pair(packs: bool) -> tuple[Host, Host, TcpStream, TcpStream]:
    lan, a, b = two_hosts()
    b.enable_offload(split=False, gso=True)  # B cuts its super-segments in software
    listener = b.tcp_listen(80)
    client = a.tcp_connect((B, 80), lan.now)
    lan.run()
    server = listener.accept()
    assert server is not None and server.conn.state is State.ESTABLISHED
    rack = server.conn._rack
    assert rack is not None
    rack.packs = packs
    return a, b, client, server


def _variables(s: TcpStream) -> tuple[object, ...]:
    c = s.conn
    rec = c._recovery
    return (
        c.snd_una, c.snd_nxt, c.snd_max, c.snd_wnd, c._cc.cwnd, c._cc.ssthresh,
        c._cc.in_recovery, rec.high_rxt, c._timers.rexmit, c._timers.loss, c.get_timer(),
    )  # fmt: skip


def _lossy_download(packs: bool, seed: int) -> tuple[object, ...]:
    """B sends 2 MB to A; a seeded tenth of B's frames is lost and some
    arrive a round late (reordering); A ACKs as it goes (SACK on)."""
    rng = random.Random(seed)
    a, b, client, server = _pair(packs)
    size = 2_000_000
    data = random.Random(5).randbytes(size)
    sent, got = 0, bytearray()
    out_b: list[bytes] = []
    seen: list[tuple[object, ...]] = []
    held: list[bytes] = []
    now = 1.0
    for _ in range(5_000):
        if sent < size:
            sent += server.send(data[sent : sent + 65536], now)
        frames = b.frames_to_send()
        out_b += frames
        late, held = held, []
        acks: list[bytes] = []
        for f in frames:
            x = rng.random()
            if x < 0.08:
                continue  # lost
            if x < 0.12:
                held.append(f)  # a round late
                continue
            a.receive_frame(f, now)
        for f in late:
            a.receive_frame(f, now)
        acks += a.frames_to_send()
        got += client.receive(1 << 20, now)
        acks += a.frames_to_send()
        now += 0.002
        b.receive_frames(acks, now)
        rack = server.conn._rack
        assert rack is not None
        seen.append((_variables(server), rack.pipe(), rack.lost))
        if len(got) == size:
            break
        if not frames and not acks:
            now = max(now, min(t for t in (b.get_timer(), a.get_timer(), now + 0.2) if t))
            for h in (a, b):
                h.handle_timer(now)
    assert bytes(got) == data
    rack = server.conn._rack
    assert rack is not None
    stats = server.conn.stats_counters
    return (
        out_b, seen, Counter(b.counters), _state(rack),
        (stats.retransmissions, stats.segments_out, server.conn._recovery.stats.rack_lost),
    )  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2])
def test_a_lossy_super_segment_send_is_the_same_packed_or_not(seed: int) -> None:
    on = _lossy_download(True, seed)
    off = _lossy_download(False, seed)
    assert on[0] == off[0]  # every frame B sent, in order, byte for byte
    assert on[1] == off[1]  # TCB, timers, pipe and lost octets after each round
    assert on[2:] == off[2:]
    assert on[4][0] > 10  # type: ignore[index]  # losses were repaired
