"""The pictures show what happened: over random simulated runs (loss, reordering,
simultaneous open and close, resets), each end's state sequence in the trace is its
connection's own history, the highlighted rows of the state diagram are exactly the
transitions taken, and every change sits on the frame that caused it."""

from __future__ import annotations

import random
import re
from ipaddress import IPv4Address, IPv4Interface

import pytest

from synack.core.sim import LinkParams
from synack.links.lan import Lan
from synack.stack.host import Host, HostConfig, TcpStream
from synack.tcp.connection import TcpConnection
from synack.tcp.events import Trigger
from synack.tcp.states import Cause, State
from synack.trace.html import render_html
from synack.trace.live import HostTrace
from synack.trace.model import StateChange, Trace, TraceEvent
from synack.wire.tcp import TcpFlags

A, B = IPv4Address("10.213.9.1"), IPv4Address("10.213.9.2")
SCENARIOS = ("plain", "client-closes", "server-closes", "simultaneous-close",
             "simultaneous-open", "refused", "abort")  # fmt: skip


def _host(ip: IPv4Address, last: int, seed: int) -> Host:
    return Host(
        HostConfig(mac=bytes([2, 0, 0, 0, 9, last]), interface=IPv4Interface(f"{ip}/24")),
        rng=random.Random(seed * 7 + last),
        isn_secret=bytes([seed % 256]) * 16,
    )


def _run(seed: int, scenario: str) -> tuple[Trace, list[TcpConnection]]:
    rng = random.Random(seed)
    params = LinkParams(
        delay=0.001,
        jitter=rng.choice((0.0, 0.0005)),
        loss=rng.choice((0.0, 0.05, 0.15)),
        reorder=rng.choice((0.0, 0.1)),
    )
    lan = Lan(seed=seed, params=params)
    sw, _ = lan.switch()
    a, b = _host(A, 1, seed), _host(B, 2, seed)
    lan.attach_host(a, sw, "A")
    lan.attach_host(b, sw, "B")
    live = HostTrace(names={str(A): "A", str(B): "B"})
    live.attach(a)
    live.attach(b)
    conns: list[TcpConnection] = []
    if scenario == "simultaneous-open":
        sa = a.tcp_connect((B, 4000), lan.now, local=(A, 5000))
        sb = b.tcp_connect((A, 5000), lan.now, local=(B, 4000))
        conns += [sa.conn, sb.conn]
        lan.run_until(lambda: sa.conn.state is State.ESTABLISHED is sb.conn.state, timeout=60)
        sa.close(lan.now)
        sb.close(lan.now)
        lan.run_until(lambda: sa.gone and sb.gone, timeout=600)
        return live.build(), conns
    if scenario == "refused":
        s = a.tcp_connect((B, 9), lan.now)
        conns.append(s.conn)
        lan.run_until(lambda: s.conn.state is State.CLOSED, timeout=120)
        return live.build(), conns
    listener = b.tcp_listen(7)
    client = a.tcp_connect((B, 7), lan.now)
    conns.append(client.conn)
    got: list[TcpStream] = []

    def accepted() -> bool:
        s = listener.accept()
        if s is not None:
            got.append(s)
            conns.append(s.conn)
        return bool(got)

    if not lan.run_until(accepted, timeout=120):
        return live.build(), conns
    server = got[0]
    data = rng.randbytes(rng.randrange(1, 4000))
    client.send(data, lan.now)
    lan.run(lan.now + rng.uniform(0.0, 0.05))
    if scenario == "abort":
        (client if rng.random() < 0.5 else server).abort(lan.now)
    elif scenario in ("client-closes", "plain"):
        client.close(lan.now)
        lan.run(lan.now + rng.uniform(0.0, 0.02))
        server.receive(1 << 20, lan.now)
        server.close(lan.now)
    elif scenario == "server-closes":
        server.receive(1 << 20, lan.now)
        server.close(lan.now)
        lan.run(lan.now + rng.uniform(0.0, 0.02))
        client.close(lan.now)
    else:  # simultaneous close: both FINs leave before either arrives
        server.receive(1 << 20, lan.now)
        lan.run_until(lambda: server.conn.readable_bytes == 0 and not server.receive(1, lan.now))
        client.close(lan.now)
        server.close(lan.now)
    lan.run_until(lambda: client.gone and server.gone, timeout=600)
    return live.build(), conns


def _history(conn: TcpConnection) -> list[tuple[State, State, Cause]]:
    return [(t.old, t.new, t.cause) for t in conn.transitions]


def check_truth(trace: Trace, conns: list[TcpConnection]) -> None:
    own = {(c.local, c.remote): c for c in conns}
    seen_ends = 0
    for tc in trace.connections:
        for local, remote in ((tc.client, tc.server), (tc.server, tc.client)):
            lane = str(local[0])
            changes = [
                (c.old, c.new, c.cause)
                for c in trace.state_changes
                if c.conn == tc.index and c.lane == lane and c.port == local[1]
            ]
            conn = own.get((local, remote))
            if conn is None:
                continue  # a child the test never got hold of (reset before accept)
            seen_ends += 1
            assert changes == _history(conn), (local, remote)
    assert seen_ends == len(conns)
    # Highlighted rows: exactly the transitions the connections took.
    taken = {(old, cause, new) for c in conns for old, new, cause in _history(c)}
    assert trace.visited() == taken
    page = render_html(trace)
    highlighted = {
        (frm, cause, to)
        for frm, to, causes in re.findall(
            r'class="edge[^"]* visited" data-from="([^"]+)" data-to="([^"]+)" '
            r'data-taken="([^"]*)"',
            page,
        )
        for cause in causes.split(" / ")
    }
    drawn = {
        (old.value, str(cause), "CLOSED-END" if new is State.CLOSED and old not in
         (State.SYN_SENT, State.LISTEN, State.CLOSED) else new.value)
        for old, cause, new in taken
    }  # fmt: skip
    assert highlighted == drawn
    # Every change sits on its frame: a received segment's change on that
    # segment, a call's on the SYN/FIN/RST it sent; the listening on none.
    events = {e.index: e for e in trace.events}
    for c in trace.state_changes:
        if c.trigger is Trigger.RECEIVED:
            assert c.frame is not None and c.segment is not None, c
            ev = events[c.frame]
            assert ev.tcp is not None and ev.dst == c.lane and ev.tcp.dst_port == c.port
            assert (ev.tcp.seq, ev.tcp.ack, ev.tcp.length) == (
                c.segment.seq,
                c.segment.ack,
                c.segment.length,
            )
        elif c.cause is Cause.ACTIVE_OPEN:
            # The first SYN this end sent before its next change; none when it
            # never sent one in SYN-SENT (ARP for the peer failed, or the peer's
            # SYN arrived first and it answered with SYN,ACK from SYN-RECEIVED).
            syns = []
            for it in trace.items[trace.items.index(c) + 1 :]:
                if isinstance(it, StateChange) and (it.conn, it.lane, it.port) == (
                    c.conn,
                    c.lane,
                    c.port,
                ):
                    break
                if (
                    isinstance(it, TraceEvent)
                    and it.tcp is not None
                    and (it.tcp.conn, it.src, it.tcp.src_port) == (c.conn, c.lane, c.port)
                    and it.tcp.flags & TcpFlags.SYN
                ):
                    syns.append(it.index)
            assert c.frame == (syns[0] if syns else None)
            if syns:
                tcp = events[syns[0]].tcp
                assert tcp is not None and tcp.before[0] is State.CLOSED
        elif c.cause is Cause.PASSIVE_OPEN:
            assert c.frame is None
    # The States column of each frame is its own changes, in order.
    for frame, changes in trace.changes_by_frame().items():
        ev = events[frame]
        assert ev.tcp is not None
        for end, (before, after) in enumerate(zip(ev.tcp.before, ev.tcp.after, strict=True)):
            lane = ev.src if end == 0 else ev.dst
            port = ev.tcp.src_port if end == 0 else ev.tcp.dst_port
            mine = [c for c in changes if (c.lane, c.port) == (lane, port)]
            if mine:
                assert (before, after) == (mine[0].old, mine[-1].new)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_trace_states_are_each_connections_history(scenario: str) -> None:
    for seed in range(12):
        trace, conns = _run(seed * 31 + SCENARIOS.index(scenario), scenario)
        check_truth(trace, conns)


def test_listening_end_is_listen_from_when_it_listened() -> None:
    lan = Lan(delay=0.001)
    sw, _ = lan.switch()
    a, b = _host(A, 1, 1), _host(B, 2, 1)
    lan.attach_host(a, sw, "A")
    lan.attach_host(b, sw, "B")
    live = HostTrace(names={str(A): "A", str(B): "B"})
    live.attach(a)
    live.attach(b)
    b.tcp_listen(7)
    live.note(lan.now, "B listens")
    lan.run(lan.now + 0.5)
    s = a.tcp_connect((B, 7), lan.now)
    lan.run_until(lambda: s.conn.state is State.ESTABLISHED)
    trace = live.build()
    first = trace.items.index(trace.events[0])  # A's ARP request, 0.5 s after the listen
    listen = [c for c in trace.state_changes if c.new is State.LISTEN]
    assert len(listen) == 1 and listen[0].time < trace.events[0].time - 0.4
    assert trace.items.index(listen[0]) < first
    syn = next(e.tcp for e in trace.events if e.tcp is not None)
    assert syn is not None and syn.flags == TcpFlags.SYN
    assert syn.before == (State.CLOSED, State.LISTEN)
