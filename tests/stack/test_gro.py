"""Receive coalescing (stack/gro.py) changes nothing but the work: the same
traffic, fed to a host in batches with coalescing on and off, gives the same
bytes delivered, the same counters (but ``tcp-coalesced``), the same frames
out (the ACKs) and the same events; hostile frames in a batch are refused and
counted the same."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import example, given, settings
from hypothesis import strategies as st

from synack.stack.host import Host, TcpStream
from synack.tcp.states import State
from synack.wire.checksum import internet_checksum
from tests.stack.netfix import two_hosts
from tests.stack.test_fast_paths import B


def _pair(coalesce: bool, warm: bool = False) -> tuple[Host, Host, TcpStream, TcpStream]:
    """A client on A connected to a server on B; ``warm``: after 200 kB
    (A's congestion window then lets a whole batch go at once)."""
    lan, a, b = two_hosts()
    b.coalesce = coalesce
    listener = b.tcp_listen(80)
    client = a.tcp_connect((B, 80), lan.now)
    lan.run()
    server = listener.accept()
    assert server is not None and server.conn.state is State.ESTABLISHED
    # The server's first read opens its window beyond the SYN's 65,535.
    client.send(b"!", lan.now)
    lan.run()
    assert server.receive(10, lan.now) == b"!"
    lan.run()
    if warm:
        sent = got = 0
        while got < 200_000:
            sent += client.send(bytes(200_000 - sent), lan.now)
            lan.run(until=lan.now + 0.01)
            got += len(server.receive(1 << 20, lan.now))
        lan.run()
    return a, b, client, server


def _without_gro(counters: Counter[str]) -> Counter[str]:
    return Counter({k: v for k, v in counters.items() if k != "tcp-coalesced"})


def _events(h: Host) -> list[str]:
    out = []
    while (e := h.next_event()) is not None:
        out.append(type(e).__name__)
    return out


def _bulk(coalesce: bool, size: int, read_every: int) -> tuple[object, ...]:
    """A sends ``size`` octets; each round every frame A has goes to B in one
    batch (as one TAP read), B's frames back to A one by one; B's program
    reads every ``read_every`` rounds (so its window fills and opens)."""
    a, b, client, server = _pair(coalesce)
    data = random.Random(7).randbytes(size)
    sent = 0
    got = bytearray()
    out_b: list[bytes] = []
    events: list[str] = []
    now = 1.0
    for i in range(5000):
        if sent < size:
            sent += client.send(data[sent : sent + 65536], now)
        batch = a.frames_to_send()
        b.receive_frames(batch, now)
        events += _events(b)
        if i % read_every == 0:
            got += server.receive(1 << 20, now)
        back = b.frames_to_send()
        out_b += back
        for f in back:
            a.receive_frame(f, now)
        if len(got) == size:
            break
        now += 0.001
        if not batch and not back:
            now += 0.2  # let a timer (delayed ACK, persist) run
            for h in (a, b):
                h.handle_timer(now)
    assert bytes(got) == data
    stats = server.conn.stats_counters
    return (
        _without_gro(b.counters),
        out_b,
        events,
        stats.segments_in,
        stats.bytes_in,
        b.counters["tcp-coalesced"],
    )


def test_bulk_upload_is_the_same_with_and_without_coalescing() -> None:
    on = _bulk(True, 400_000, 1)
    off = _bulk(False, 400_000, 1)
    assert on[:5] == off[:5]
    assert off[5] == 0
    # Coalescing did happen: most frames went to TCP inside a run.
    assert on[5] > on[0]["tcp-in"] // 2  # type: ignore[index]


def test_a_full_window_is_the_same_with_and_without_coalescing() -> None:
    # The program reads rarely: the window fills, runs end at its edge, and
    # zero-window probes and window updates go back and forth.
    on = _bulk(True, 600_000, 7)
    off = _bulk(False, 600_000, 7)
    assert on[:5] == off[:5]
    assert on[5] > 0


def test_coalesced_run_is_acknowledged_at_once_with_the_first_tsval() -> None:
    # Two segments or more in a run owe an ACK at once (RFC 9293 §3.8.6.3
    # SHLD-19); it echoes the run's first TSval (RFC 7323 §4.3).
    a, b, client, server = _pair(True)
    client.send(b"y" * 1448 * 3, 1.0)
    batch = a.frames_to_send()
    assert [len(f) for f in batch] == [14 + 20 + 32 + 1448] * 3
    # Later TSvals than the first (a clock that ticked mid-run), checksums kept right.
    frames = [bytearray(f) for f in batch]
    for i, f in enumerate(frames[1:], 1):
        f[58:62] = (int.from_bytes(f[58:62]) + i).to_bytes(4, "big")
        _fix_tcp_checksum(f)
    first_ts = int.from_bytes(frames[0][58:62])
    segments_before = server.conn.stats_counters.segments_in
    b.receive_frames([bytes(f) for f in frames], 1.0)
    assert b.counters["tcp-coalesced"] == 2 and b.counters["tcp-bad-checksum"] == 0
    (ack,) = b.frames_to_send()
    assert int.from_bytes(ack[62:66]) == first_ts  # the TSecr B echoes
    assert int.from_bytes(ack[42:46]) == (int.from_bytes(batch[-1][38:42]) + 1448) & 0xFFFFFFFF
    assert server.receive(1 << 16, 1.0) == b"y" * 1448 * 3
    assert server.conn.stats_counters.segments_in == segments_before + 3


def _fix_tcp_checksum(f: bytearray) -> None:
    f[50:52] = b"\0\0"
    pseudo = f[26:34] + bytes([0, 6]) + (len(f) - 34).to_bytes(2, "big")
    f[50:52] = internet_checksum(pseudo + f[34:]).to_bytes(2, "big")


def _batch_outcome(
    coalesce: bool, mutate: list[tuple[int, int, int]], order: list[int], fix: bool
) -> object:
    a, b, client, server = _pair(coalesce, warm=True)
    client.send(random.Random(3).randbytes(1448 * 8), 1.0)
    frames = [bytearray(f) for f in a.frames_to_send()]
    assert len(frames) == 8
    for which, pos, value in mutate:
        f = frames[which % len(frames)]
        f[pos % len(f)] = value
        if fix:  # both checksums right again: the edit is judged on its own
            f[24:26] = b"\0\0"
            f[24:26] = internet_checksum(f[14:34]).to_bytes(2, "big")
            _fix_tcp_checksum(f)
    batch = [bytes(frames[i % len(frames)]) for i in order]
    b.receive_frames(batch, 2.0)
    return (
        _without_gro(b.counters),
        b.frames_to_send(),
        _events(b),
        server.conn.state,
        server.receive(1 << 20, 2.0),
        server.conn.stats_counters.segments_in,
        server.conn.snd_wnd,
        server.conn.rcv_nxt,
    )


@settings(max_examples=120, deadline=None)
@example(mutate=[], order=list(range(8)), fix=False)
@example(mutate=[(2, 47, 0x11)], order=list(range(8)), fix=True)  # a FIN in the middle
@example(mutate=[(2, 47, 0x38)], order=list(range(8)), fix=True)  # URG
@example(mutate=[(3, 1000, 0)], order=list(range(8)), fix=False)  # a bad TCP checksum
@example(mutate=[(1, 58, 0)], order=list(range(8)), fix=True)  # a TSval that goes back
@example(mutate=[(1, 58, 0)], order=list(range(8)), fix=False)
@example(mutate=[(4, 65, 7)], order=list(range(8)), fix=True)  # another TSecr
@example(mutate=[(4, 49, 7)], order=list(range(8)), fix=True)  # another window
@example(mutate=[(4, 45, 7)], order=list(range(8)), fix=True)  # another ACK
@example(mutate=[(5, 55, 7)], order=list(range(8)), fix=True)  # other options
@example(mutate=[(6, 46, 0x81)], order=list(range(8)), fix=True)  # a reserved bit
@example(mutate=[(6, 53, 1)], order=list(range(8)), fix=True)  # an urgent pointer
@example(mutate=[(6, 37, 1)], order=list(range(8)), fix=True)  # another port
@example(mutate=[(3, 22, 1)], order=list(range(8)), fix=False)  # a bad IPv4 checksum
@example(mutate=[(3, 30, 1)], order=list(range(8)), fix=True)  # another destination
@example(mutate=[], order=[0, 1, 3, 2, 4, 5, 6, 7], fix=False)  # reordered
@example(mutate=[], order=[0, 1, 1, 2, 3, 4, 5, 6, 7], fix=False)  # a duplicate
@given(
    # Edits in the Ethernet, IPv4 and TCP headers and options (offsets 0-70)
    # or anywhere in the frame, of any frame of the batch.
    mutate=st.lists(
        st.tuples(
            st.integers(0, 7),
            st.one_of(st.integers(0, 70), st.integers(0, 1600)),
            st.integers(0, 255),
        ),
        max_size=3,
    ),
    order=st.one_of(
        st.just(list(range(8))),
        st.lists(st.integers(0, 7), min_size=1, max_size=12),
    ),
    fix=st.booleans(),
)
def test_mutated_frames_in_a_batch_meet_the_same_fate(
    mutate: list[tuple[int, int, int]], order: list[int], fix: bool
) -> None:
    on = _batch_outcome(True, mutate, order, fix)
    assert on == _batch_outcome(False, mutate, order, fix)


def test_header_edits_mid_run_meet_the_same_fate() -> None:
    # An edited Ethernet or IPv4 field in a frame mid-run: with both
    # checksums made right again (the field judged on its own: length,
    # addresses, protocol, fragment bits, MAC), or with the IPv4 header
    # checksum left wrong (TTL, ident, TOS: outside the TCP checksum), each
    # also in frames the link vouches for (no TCP checksum to catch it).
    edits = [(pos, value, True) for pos, value in ((16, 0), (17, 200), (16, 9), (23, 17))]
    edits += [(pos, value, True) for pos, value in ((20, 0x20), (26, 127), (29, 7), (33, 9))]
    edits += [(0, 0x04, True), (5, 9, True)]
    edits += [(22, 1, False), (18, 0xAB, False), (15, 4, False)]
    for pos, value, fix in edits:
        for vouch in (False, True):
            outcomes = []
            for coalesce in (True, False):
                a, b, client, server = _pair(coalesce, warm=True)
                client.send(b"z" * 1448 * 5, 1.0)
                frames = [bytearray(f) for f in a.frames_to_send()]
                f = frames[2]
                f[pos] = value
                if fix:
                    f[24:26] = b"\0\0"
                    f[24:26] = internet_checksum(f[14:34]).to_bytes(2, "big")
                    _fix_tcp_checksum(f)
                kind = _Vouched if vouch else bytes
                b.receive_frames([kind(x) for x in frames], 2.0, vouched=_Vouched)
                outcomes.append(
                    (_without_gro(b.counters), b.frames_to_send(), server.receive(1 << 20, 2.0))
                )
            assert outcomes[0] == outcomes[1], (pos, value, fix, vouch)


class _Vouched(bytes):
    """A frame whose TCP checksum the link vouches for (as links.tap.KernelChecked)."""

    __slots__ = ()


def test_a_tsval_that_goes_back_mid_run_meets_the_same_fate() -> None:
    # RFC 7323 §5 (PAWS): the frame whose TSval is older than the run's
    # first is dropped frame by frame; a run must not carry it in.
    outcomes = []
    for coalesce in (True, False):
        a, b, client, server = _pair(coalesce)
        client.send(b"w" * 1448 * 3, 1.0)
        frames = [bytearray(f) for f in a.frames_to_send()]
        assert len(frames) == 3
        first = int.from_bytes(frames[0][58:62])
        for i, f in enumerate(frames):
            tsval = first - 1 if i == 2 else first + i
            f[58:62] = (tsval & 0xFFFFFFFF).to_bytes(4, "big")
            _fix_tcp_checksum(f)
        b.receive_frames([bytes(f) for f in frames], 2.0)
        outcomes.append(
            (
                _without_gro(b.counters),
                b.frames_to_send(),
                server.receive(1 << 20, 2.0),
                b.counters["tcp-coalesced"],
            )
        )
    assert outcomes[0][:3] == outcomes[1][:3]
    assert outcomes[0][2] == b"w" * 1448 * 2  # the two before it
    assert outcomes[0][3] == 1


def _field_edit(f: bytearray, at: int, size: int, delta: int) -> None:
    value = (int.from_bytes(f[at : at + size]) + delta) % (1 << (8 * size))
    f[at : at + size] = value.to_bytes(size, "big")
    _fix_tcp_checksum(f)


def test_header_fields_that_change_mid_run_meet_the_same_fate() -> None:
    # SEG.ACK (42), the window (48) and TSecr (62) of one frame in a run,
    # moved either way: each ends the run (or is taken by TCP the same way).
    for which in (3, 7):
        for at, size, delta in (
            (42, 4, 5000),  # acknowledges what was never sent
            (42, 4, -5000),  # an old ACK
            (48, 2, 3),  # a window update
            (48, 2, -3),
            (62, 4, 1),
            (62, 4, -1),
        ):
            outcomes = []
            for coalesce in (True, False):
                a, b, client, server = _pair(coalesce, warm=True)
                client.send(b"q" * 1448 * 8, 1.0)
                frames = [bytearray(f) for f in a.frames_to_send()]
                _field_edit(frames[which], at, size, delta)
                b.receive_frames([bytes(f) for f in frames], 2.0)
                conn = server.conn
                outcomes.append(
                    (
                        _without_gro(b.counters),
                        b.frames_to_send(),
                        server.receive(1 << 20, 2.0),
                        (conn.snd_wnd, conn.snd_una, conn.rcv_nxt, conn.stats_counters),
                    )
                )
            assert outcomes[0] == outcomes[1], (which, at, delta)


def test_vouched_frames_are_not_summed_again_and_unvouched_ones_are() -> None:
    # A TAP with offloads hands over frames whose checksum field holds only
    # the pseudo-header sum: taken in a run as frame by frame; the same
    # frames not vouched for are refused as bad, the same way on both paths.
    for vouch in (True, False):
        outcomes = []
        for coalesce in (True, False):
            a, b, client, server = _pair(coalesce, warm=True)
            client.send(b"v" * 1448 * 6, 1.0)
            frames = [bytearray(f) for f in a.frames_to_send()]
            for f in frames:
                f[50:52] = b"\x12\x34"
            batch = [(_Vouched if vouch else bytes)(f) for f in frames]
            b.receive_frames(batch, 2.0, vouched=_Vouched)
            outcomes.append(
                (_without_gro(b.counters), b.frames_to_send(), server.receive(1 << 20, 2.0))
            )
        assert outcomes[0] == outcomes[1]
        assert outcomes[0][2] == (b"v" * 1448 * 6 if vouch else b"")
        assert outcomes[0][0]["tcp-bad-checksum"] == (0 if vouch else 6)
