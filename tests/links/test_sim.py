"""The deterministic simulator and its links."""

from __future__ import annotations

import pytest

from synack.core.sim import Link, LinkParams, Simulator
from synack.errors import LocalProtocolError
from synack.tcp.config import TcpConfig
from synack.tcp.pair import SimApp, TcpSimPair
from synack.tcp.states import State
from synack.wire.tcp import TcpFlags, TcpSegment


def test_callbacks_run_in_time_order_fifo_on_ties() -> None:
    sim = Simulator()
    log: list[tuple[float, str]] = []
    sim.schedule(2.0, lambda: log.append((sim.now, "c")))
    sim.schedule(1.0, lambda: log.append((sim.now, "a")))
    sim.schedule(1.0, lambda: log.append((sim.now, "b")))
    h = sim.schedule(1.5, lambda: log.append((sim.now, "cancelled")))
    h.cancel()
    assert sim.run() == 3
    assert log == [(1.0, "a"), (1.0, "b"), (2.0, "c")]


def test_run_until_stops_and_advances_the_clock() -> None:
    sim = Simulator()
    hits: list[float] = []
    sim.schedule(5.0, lambda: hits.append(sim.now))
    sim.run(until=3.0)
    assert hits == [] and sim.now == 3.0
    sim.run(until=10.0)
    assert hits == [5.0] and sim.now == 10.0
    with pytest.raises(LocalProtocolError):
        sim.call_later(-1, lambda: None)


def _collect(
    sim: Simulator, params: LinkParams, items: list[bytes]
) -> tuple[list[tuple[float, bytes]], Link[bytes]]:
    got: list[tuple[float, bytes]] = []
    link: Link[bytes] = Link(sim, lambda item, now: got.append((now, item)), params)
    for item in items:
        link.send(item)
    sim.run()
    return got, link


def test_delay_and_bandwidth_serialise_items() -> None:
    sim = Simulator()
    got, _ = _collect(sim, LinkParams(delay=0.05, bandwidth=1_000_000), [b"x" * 1000] * 3)
    assert [round(t, 9) for t, _ in got] == [0.051, 0.052, 0.053]


def test_queue_limit_tail_drops() -> None:
    sim = Simulator()
    got, link = _collect(
        sim, LinkParams(delay=0.0, bandwidth=1000, queue_limit=2), [b"y" * 100] * 5
    )
    assert len(got) == 2 and link.stats.queue_drops == 3


def test_loss_duplication_reordering_are_seeded() -> None:
    params = LinkParams(delay=0.01, loss=0.2, duplicate=0.1, reorder=0.2)
    items = [i.to_bytes(2, "big") for i in range(500)]
    runs = [_collect(Simulator(seed), params, items) for seed in (7, 7, 8)]
    assert runs[0][0] == runs[1][0]  # same seed, same run, bit for bit
    assert runs[0][0] != runs[2][0]
    got, link = runs[0]
    st = link.stats
    assert st.sent == 500 and st.lost > 0 and st.duplicated > 0 and st.reordered > 0
    assert len(got) == 500 - st.lost + st.duplicated
    order = [int.from_bytes(item, "big") for _, item in got]
    assert order != sorted(order)  # reordered
    assert len(set(order)) == 500 - st.lost  # what arrives is what was not lost
    assert all(order.count(i) <= 2 for i in set(order))


def test_corruption_flips_one_byte() -> None:
    sim = Simulator(3)
    item = bytes(64)
    got, link = _collect(sim, LinkParams(corrupt=1.0), [item])
    ((_, damaged),) = got
    assert len(damaged) == 64 and sum(1 for x, y in zip(item, damaged, strict=True) if x != y) == 1
    assert link.stats.corrupted == 1


def test_drop_if_hook_drops_the_chosen_item() -> None:
    sim = Simulator()
    seen = {"n": 0}

    def third(item: bytes) -> bool:
        seen["n"] += 1
        return seen["n"] == 3

    got: list[bytes] = []
    link: Link[bytes] = Link(sim, lambda item, now: got.append(item), LinkParams(), drop_if=third)
    for i in range(5):
        link.send(bytes([i]))
    sim.run()
    assert got == [b"\x00", b"\x01", b"\x03", b"\x04"] and link.stats.hook_drops == 1


def test_link_params_validate() -> None:
    with pytest.raises(LocalProtocolError):
        LinkParams(loss=1.5)
    with pytest.raises(LocalProtocolError):
        LinkParams(bandwidth=0)


def _pair_run(seed: int, **kw: object) -> TcpSimPair:
    sim = Simulator(seed)
    cfg = TcpConfig(mss=1000, min_rto=0.2, msl=1.0)
    pair = TcpSimPair(
        sim,
        client_config=cfg,
        server_config=cfg,
        client_app=SimApp(outgoing=b"c" * 30000),
        server_app=SimApp(outgoing=b"s" * 5000),
        **kw,  # type: ignore[arg-type]
    )
    pair.record_trace = True
    pair.start()
    sim.run(until=1000.0)
    return pair


def test_tcp_pair_lose_the_third_ack() -> None:
    acks = {"n": 0}

    def third_pure_ack(seg: TcpSegment) -> bool:
        if seg.flags == TcpFlags.ACK and not seg.payload:
            acks["n"] += 1
            return acks["n"] == 3
        return False

    pair = _pair_run(1, drop_to_client=third_pure_ack)
    assert pair.link_to_client.stats.hook_drops == 1
    assert bytes(pair.server_app.received) == b"c" * 30000
    assert bytes(pair.client_app.received) == b"s" * 5000
    assert pair.both_closed()


def test_tcp_pair_is_deterministic_and_serialises_with_corruption() -> None:
    lossy = LinkParams(loss=0.05, corrupt=0.05)
    p1 = _pair_run(11, to_server=lossy, to_client=lossy)
    p2 = _pair_run(11, to_server=lossy, to_client=lossy)
    assert p1.serialize and p1.trace == p2.trace
    assert p1.decode_errors > 0  # corrupted segments failed the checksum
    assert (
        p1.client.state is State.CLOSED
        and p1.server is not None
        and p1.server.state is State.CLOSED
    )
    assert bytes(p1.server_app.received) == b"c" * 30000


def test_posted_items_interleave_with_scheduled_callbacks_in_order() -> None:
    # post() is schedule_call() without a handle: same clock, same FIFO on ties.
    sim = Simulator()
    log: list[tuple[float, str]] = []
    sim.post(1.0, lambda tag: log.append((sim.now, tag)), "p1")
    h = sim.schedule_call(1.0, lambda tag: log.append((sim.now, tag)), "s1")
    sim.post(0.5, lambda tag: log.append((sim.now, tag)), "p0")
    sim.schedule_call(1.0, lambda tag: log.append((sim.now, tag)), "cancelled").cancel()
    sim.post(1.0, lambda tag: log.append((sim.now, tag)), "p2")
    assert sim.pending == 4 and sim.next_time() == 0.5
    assert sim.run(max_events=1) == 1 and log == [(0.5, "p0")]
    assert sim.run() == 3
    assert log == [(0.5, "p0"), (1.0, "p1"), (1.0, "s1"), (1.0, "p2")]
    assert not h.cancelled and sim.events_run == 4 and sim.pending == 0


def test_a_plain_link_delivers_after_the_delay_in_order() -> None:
    # No loss, jitter, reordering, duplication, corruption or bandwidth: the
    # short path, which must not touch the link's random stream.
    sim = Simulator(5)
    items = [bytes([i]) * 10 for i in range(5)]
    got, link = _collect(sim, LinkParams(delay=0.02), items)
    assert got == [(0.02, item) for item in items]
    assert (link.stats.sent, link.stats.delivered) == (5, 5)
    assert link.rng.random() == Link(Simulator(5), lambda i, t: None).rng.random()
