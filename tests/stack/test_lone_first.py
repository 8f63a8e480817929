"""A batch's frame that cannot join a coalescing run (nothing held, the next
frame another flow's) goes to the one-pass input first, without the
coalescing tests (``Host.lone_first``). The host does the same with it on and
off: frames of many connections interleaved with runs of one (data and pure
ACKs), new connections' SYNs, closes, corrupted and repeated frames, some
vouched for by the link, in batches of every size, meet the same fate batch
by batch (counters, frames out, events, each connection's state and bytes
delivered)."""

from __future__ import annotations

import random
from collections import Counter
from itertools import pairwise

from synack.links.tap import KernelChecked
from synack.stack.host import Host, TcpStream
from tests.stack.netfix import drained, two_hosts
from tests.stack.test_rx import B

_FLOW = slice(26, 38)  # IPv4 addresses and TCP ports


def _state(h: Host, streams: list[TcpStream]) -> tuple[object, ...]:
    return (
        *drained(h),
        [(s.conn.state, s.conn.rcv_nxt, s.conn.snd_nxt) for s in streams],
        [s.receive(1 << 20, h.tcp.now) for s in streams],
    )


def _run(lone_first: bool, seed: int) -> tuple[list[object], Counter[str]]:
    """Connections from a to b driven at random; a's frames reach b in
    random batches (b's reach a whole). What b did after each batch, and
    how the batches were made (adjacent frames of one flow or not)."""
    lan, a, b = two_hosts()
    b.lone_first = lone_first
    listener = b.tcp_listen(80)
    clients = [a.tcp_connect((B, 80), lan.now) for _ in range(3)]
    lan.run()
    servers: list[TcpStream] = []
    while (s := listener.accept()) is not None:
        servers.append(s)
    r = random.Random(seed)
    now = lan.now
    pending: list[bytes] = []
    got: list[object] = []
    shape: Counter[str] = Counter()
    for step in range(300):
        now += 0.002
        act = r.random()
        if act < 0.45 and clients:
            c = r.choice(clients)
            if c.conn.state.name in ("ESTABLISHED", "CLOSE_WAIT"):
                # A write of up to a few segments: a run of one flow's data.
                c.send(r.randbytes(r.randrange(1, 4000)), now)
        elif act < 0.7 and servers:
            s = r.choice(servers)
            if s.conn.state.name in ("ESTABLISHED", "CLOSE_WAIT"):
                s.send(r.randbytes(r.randrange(1, 6000)), now)  # a's pure ACKs, runs of them
        elif act < 0.8:
            clients.append(a.tcp_connect((B, 80), now))  # a SYN among the rest
        elif act < 0.85 and clients:
            r.choice(clients).close(now)
        pending += a.frames_to_send()
        if r.random() < 0.5 or step == 299:
            # Deliver what a sent, as batches of 1-10 frames, some spoilt.
            frames = list(pending)
            pending.clear()
            for i in range(len(frames)):
                roll = r.random()
                if roll < 0.08:
                    f = bytearray(frames[i])
                    f[r.randrange(len(f))] ^= 1 << r.randrange(8)
                    frames[i] = bytes(f)
                elif roll < 0.12:
                    frames.insert(i, frames[i])  # a repeat, next to itself
            vouching = r.random() < 0.3  # as from a TAP with offloads
            while frames:
                n = r.randint(1, 10)
                batch, frames = frames[:n], frames[n:]
                for x, y in pairwise(batch):
                    shape["same flow" if x[_FLOW] == y[_FLOW] else "other flow"] += 1
                if vouching:
                    # Some frames' checksums vouched for (not summed again).
                    batch = [KernelChecked(f) if r.random() < 0.5 else f for f in batch]
                    b.receive_frames(batch, now, vouched=KernelChecked)
                else:
                    b.receive_frames(batch, now)
                while (s := listener.accept()) is not None:
                    servers.append(s)
                state = _state(b, servers)
                got.append(state)
                a.receive_frames(state[1], now)  # type: ignore[arg-type]
        for h in (a, b):
            t = h.get_timer()
            if t is not None and t <= now:
                h.handle_timer(now)
        a.receive_frames(b.frames_to_send(), now)
    got.append(Counter(b.counters))
    return got, shape


def test_lone_frames_first_or_through_the_coalescing_tests_meet_the_same_fate() -> None:
    for seed in range(5):
        on, shape = _run(True, seed)
        off, shape_off = _run(False, seed)
        assert shape == shape_off
        # Both kinds of neighbours occurred, and runs were coalesced.
        assert shape["same flow"] > 20 and shape["other flow"] > 20, shape
        counters = on[-1]
        assert isinstance(counters, Counter)
        assert counters["tcp-coalesced"] > 0
        assert counters["tcp-passive-opens"] > 3
        assert len(on) == len(off)
        for i, (x, y) in enumerate(zip(on, off, strict=True)):
            assert x == y, (seed, i)
