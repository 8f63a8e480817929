"""Properties over random networks and random input (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synack.core.sim import LinkParams, Simulator
from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection
from synack.tcp.pair import SimApp, TcpSimPair
from synack.tcp.seq import SEQ_MOD
from synack.tcp.states import Cause, State
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment
from tests.tcp.harness import A_ADDR, B_ADDR, PLAIN, Duo

networks = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "loss": st.sampled_from([0.0, 0.01, 0.05, 0.15]),
        "duplicate": st.sampled_from([0.0, 0.02, 0.1]),
        "reorder": st.sampled_from([0.0, 0.05, 0.2]),
        "corrupt": st.sampled_from([0.0, 0.02, 0.08]),
        "jitter": st.sampled_from([0.0, 0.005]),
    }
)


def _config(options: bool, mss: int) -> TcpConfig:
    return TcpConfig(
        mss=mss,
        send_buffer=20000,
        receive_buffer=24000 if options else 12000,
        window_scale=options,
        timestamps=options,
        sack=options,
        min_rto=0.2,
        msl=60.0,  # 2MSL must outlast the peer's FIN retransmissions
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    net=networks,
    a_len=st.integers(0, 40000),
    b_len=st.integers(0, 20000),
    options=st.booleans(),
    mss=st.sampled_from([536, 1460]),
    near_wrap=st.booleans(),
    chunk=st.sampled_from([1, 700, 1 << 20]),
)
def test_streams_arrive_byte_exact_and_both_ends_close(
    net: dict[str, float],
    a_len: int,
    b_len: int,
    options: bool,
    mss: int,
    near_wrap: bool,
    chunk: int,
) -> None:
    seed = int(net["seed"])
    sim = Simulator(seed)
    link = LinkParams(
        delay=0.01,
        jitter=net["jitter"],
        loss=net["loss"],
        duplicate=net["duplicate"],
        reorder=net["reorder"],
        corrupt=net["corrupt"],
    )
    a_data = bytes((i * 7 + seed) % 256 for i in range(a_len))
    b_data = bytes((i * 13 + seed) % 256 for i in range(b_len))
    iss_a = SEQ_MOD - 3000 if near_wrap else seed % SEQ_MOD
    cfg = _config(options, mss)
    pair = TcpSimPair(
        sim,
        client_config=cfg,
        server_config=cfg,
        client_iss=iss_a,
        server_iss=(iss_a * 31 + 12345) % SEQ_MOD,
        to_server=link,
        to_client=link,
        client_app=SimApp(outgoing=a_data, chunk=chunk),
        server_app=SimApp(outgoing=b_data, chunk=chunk),
    )
    pair.start()
    sim.run(until=5000.0, max_events=400_000)
    assert pair.server is not None
    assert bytes(pair.server_app.received) == a_data
    assert bytes(pair.client_app.received) == b_data
    assert pair.client.state is State.CLOSED and pair.server.state is State.CLOSED
    # Clean closes: both sides went through the FIN exchange, nobody reset.
    for conn, peer in ((pair.client, pair.server), (pair.server, pair.client)):
        assert any(
            t.new in (State.TIME_WAIT, State.LAST_ACK, State.CLOSING) for t in conn.transitions
        )
        peer_done = [
            t.time for t in peer.transitions if t.cause is Cause.TIME_WAIT_EXPIRED
        ]  # when the peer's TIME-WAIT ended, if it had one
        for t in conn.transitions:
            if t.cause is not Cause.RCV_RST:
                continue
            # Two resets are part of a clean close. A duplicated last ACK
            # reaching the already CLOSED peer draws a RST that ends our
            # TIME-WAIT early, as RFC 9293 §3.10.7.4 prescribes (RFC 1337's
            # "ignore it" is not implemented). And when the peer's ACK of our
            # FIN was lost and so were our retransmissions for as long as the
            # peer waited in TIME-WAIT (2*MSL), the retransmission that finally
            # arrives finds it CLOSED and draws a RST (§3.3.2: TIME-WAIT is
            # only as long as 2*MSL; no finite wait outlasts every loss). Any
            # other reset is a bug.
            assert t.old is State.TIME_WAIT or (
                t.old in (State.CLOSING, State.LAST_ACK)
                and any(done < t.time for done in peer_done)
            ), t
    if link.corrupt:
        # Every corrupted copy fails the checksum (a duplicated one twice).
        corrupted = pair.link_to_server.stats.corrupted + pair.link_to_client.stats.corrupted
        assert corrupted <= pair.decode_errors <= 2 * corrupted


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.sampled_from([0.0, 0.05]),
    rcvbuf=st.integers(1000, 6000),
    read_max=st.integers(300, 3000),
    mss=st.sampled_from([536, 1000]),
    a_len=st.integers(1, 15000),
    nodelay=st.booleans(),
)
def test_slow_reader_small_window_still_delivers(
    seed: int, loss: float, rcvbuf: int, read_max: int, mss: int, a_len: int, nodelay: bool
) -> None:
    # Zero windows, probes, SWS avoidance and window updates, under loss.
    sim = Simulator(seed)
    link = LinkParams(delay=0.01, loss=loss)
    cfg = TcpConfig(
        mss=mss,
        receive_buffer=rcvbuf,
        send_buffer=8000,
        min_rto=0.2,
        max_rto=5.0,
        msl=60.0,
        nodelay=nodelay,
        r2_retries=30,
    )
    a_data = bytes((i * 5 + seed) % 256 for i in range(a_len))
    pair = TcpSimPair(
        sim,
        client_config=cfg,
        server_config=cfg,
        to_server=link,
        to_client=link,
        client_app=SimApp(outgoing=a_data),
        server_app=SimApp(close_on_eof=True, read_max=read_max),
    )
    pair.start()
    sim.run(until=20000.0, max_events=400_000)
    assert pair.server is not None
    assert bytes(pair.server_app.received) == a_data
    assert pair.both_closed()


flag_sets = st.integers(0, 0x3F).map(TcpFlags)
option_sets = st.builds(
    TcpOptions,
    mss=st.none() | st.integers(0, 65535),
    wscale=st.none() | st.integers(0, 255),
    sack_permitted=st.booleans(),
    sack_blocks=st.lists(
        st.tuples(st.integers(0, SEQ_MOD - 1), st.integers(0, SEQ_MOD - 1)), max_size=4
    ).map(tuple),
    timestamps=st.none() | st.tuples(st.integers(0, SEQ_MOD - 1), st.integers(0, SEQ_MOD - 1)),
)


@settings(max_examples=150, deadline=None)
@given(
    target=st.sampled_from(["a", "b"]),
    stage=st.sampled_from(["syn-received", "established", "fin-wait", "time-wait"]),
    segs=st.lists(
        st.tuples(
            st.integers(-70000, 70000),  # seq relative to RCV.NXT
            st.integers(-70000, 70000),  # ack relative to SND.UNA
            flag_sets,
            st.integers(0, 65535),
            st.binary(max_size=3000),
            option_sets,
            st.floats(0, 100),
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_random_segments_never_raise(
    target: str, stage: str, segs: list[tuple[int, int, TcpFlags, int, bytes, TcpOptions, float]]
) -> None:
    cfg = TcpConfig(mss=1000, receive_buffer=65535, window_scale=True, challenge_ack_limit=1000)
    d = Duo(cfg, cfg)
    if stage == "syn-received":
        d.a.connect(0.0)
        d.to_b(d.out_a())
        d.out_b()
        conn = d.b
    else:
        d.open()
        d.a.send(b"payload" * 300, d.now)
        d.b.send(b"other" * 100, d.now)
        d.exchange()
        if stage in ("fin-wait", "time-wait"):
            d.a.shutdown_write(d.now)
            d.to_b(d.out_a())
            if stage == "time-wait":
                d.b.shutdown_write(d.now)
                d.exchange()
        conn = d.a if target == "a" else d.b
    src, dst = (B_ADDR[1], A_ADDR[1]) if conn is d.a else (A_ADDR[1], B_ADDR[1])
    now = d.now
    for rel_seq, rel_ack, flags, window, payload, options, dt in segs:
        now += dt
        seg = TcpSegment(
            src,
            dst,
            (conn.rcv_nxt + rel_seq) % SEQ_MOD,
            (conn.snd_una + rel_ack) % SEQ_MOD,
            flags,
            window,
            payload,
            options,
        )
        conn.receive_segment(seg, now)
        for out in conn.segments_to_send(now):
            assert 0 <= out.seq < SEQ_MOD and 0 <= out.ack < SEQ_MOD and 0 <= out.window <= 65535
        deadline = conn.get_timer()
        if deadline is not None and deadline <= now:
            conn.handle_timer(now)
        while conn.next_event() is not None:
            pass
        assert isinstance(conn.state, State)
        assert conn.readable_bytes <= cfg.receive_buffer
    # Whatever happened, the connection still answers and times out cleanly.
    for _ in range(200):
        deadline = conn.get_timer()
        if deadline is None:
            break
        now = max(now, deadline)
        conn.handle_timer(now)
        conn.segments_to_send(now)


def test_plain_config_is_what_the_scenarios_use() -> None:
    # Guard for the scenario tests' exact numbers.
    assert (PLAIN.mss, PLAIN.receive_buffer, PLAIN.timestamps, PLAIN.sack) == (
        1000,
        8000,
        False,
        False,
    )
    assert isinstance(TcpConnection(A_ADDR, B_ADDR, config=PLAIN, iss=0).state, State)


@settings(max_examples=80, deadline=None)
@given(
    lose=st.sets(st.integers(0, 15), max_size=8),
    forged=st.lists(
        st.lists(st.tuples(st.integers(-3000, 20000), st.integers(-3000, 20000)), max_size=4).map(
            tuple
        ),
        max_size=10,
    ),
)
def test_sack_recovery_survives_forged_blocks_and_delivers(
    lose: set[int], forged: list[tuple[tuple[int, int], ...]]
) -> None:
    # RFC 6675 with a lying receiver: duplicate ACKs whose SACK blocks claim
    # random ranges (also data never received, or never sent). The scoreboard
    # stays inside [SND.UNA, SND.MAX], sorted and disjoint; output stays in
    # what was sent; and once the real receiver speaks again (the timeout
    # forgets the lies, RFC 2018 §8) the stream arrives byte-exact.
    cfg = TcpConfig(
        mss=1000,
        send_buffer=64000,
        receive_buffer=32000,
        window_scale=False,
        timestamps=False,
        sack=True,
        delayed_ack=False,
        nodelay=True,
        min_rto=0.2,
    )
    d = Duo(cfg, cfg)
    d.open()
    data = bytes(i % 253 for i in range(16000))
    d.a.send(data, d.now)
    first = d.out_a()
    d.to_b([s for i, s in enumerate(first) if i not in lose])
    real_acks = d.out_b()
    window = real_acks[-1].window if real_acks else 32000
    for blocks in forged:
        una = d.a.snd_una
        sacks = tuple(((una + lo) % SEQ_MOD, (una + hi) % SEQ_MOD) for lo, hi in blocks)
        d.a.receive_segment(
            TcpSegment(
                B_ADDR[1],
                A_ADDR[1],
                d.b.snd_max,
                una,
                TcpFlags.ACK,
                window,
                b"",
                TcpOptions(sack_blocks=sacks),
            ),
            d.now,
        )
        top = (d.a.snd_max - una) % SEQ_MOD
        board = [((lo - una) % SEQ_MOD, (hi - una) % SEQ_MOD) for lo, hi in d.a._sacked]
        assert all(0 <= lo < hi <= top for lo, hi in board)
        assert all(board[i][1] < board[i + 1][0] for i in range(len(board) - 1))
        out = d.out_a()
        sent = (d.a.snd_max - una) % SEQ_MOD  # new data may have gone out too
        for s in out:
            assert (s.seq - una) % SEQ_MOD < sent
            d.to_b([s])
        d.out_b()  # the real receiver's answers to those are lost
    d.to_a(real_acks)
    for _ in range(60):
        d.exchange()
        if d.a.snd_una == (d.a.iss + 1 + len(data)) % SEQ_MOD:
            break
        d.fire_next(d.a)
    assert d.b.receive() == data
