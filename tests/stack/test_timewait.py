"""TIME-WAIT kept as a compact record (synack.stack.timewait) on a host."""

from __future__ import annotations

import gc
import weakref
from ipaddress import IPv4Address

from synack.links.lan import Lan
from synack.stack import events as ev
from synack.stack.host import Host, TcpStream
from synack.stack.timewait import TimeWait
from synack.tcp.seq import seq_add
from synack.tcp.states import State
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment
from tests.stack.netfix import mac, two_hosts

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")
F = TcpFlags


def closed_from_a() -> tuple[Lan, Host, Host, TcpStream, TimeWait]:
    """A connects to B, sends, closes first: A ends in TIME-WAIT."""
    lan, a, b = two_hosts()
    listener = b.tcp_listen(7)
    client = a.tcp_connect((B, 7), lan.now)
    lan.run()
    server = listener.accept()
    assert server is not None
    client.send(b"hello", lan.now)
    lan.run()
    assert server.receive(100, lan.now) == b"hello"
    client.close(lan.now)
    lan.run()
    server.close(lan.now)
    lan.run()
    assert client.conn.state is State.TIME_WAIT
    tw = a.tcp.time_wait[client.key]
    return lan, a, b, client, tw


def inject(host: Host, src: IPv4Address, dst: IPv4Address, seg: TcpSegment, now: float) -> None:
    raw = wip.build(wip.Ipv4Packet(src, dst, wip.PROTO_TCP, wtcp.build(seg, src, dst)))
    dst_mac = mac(1) if dst == A else mac(2)
    host.receive_frame(
        weth.build(weth.EthernetFrame(dst_mac, mac(99), weth.ETHERTYPE_IPV4, raw)), now
    )


def sent(host: Host) -> list[TcpSegment]:
    out = []
    for frame in host.frames_to_send():
        pkt = wip.parse(weth.parse(frame).payload)
        if pkt.proto == wip.PROTO_TCP:
            out.append(wtcp.parse(pkt.payload, pkt.src, pkt.dst))
    return out


def from_b(tw: TimeWait, seq: int, flags: TcpFlags, ts_step: int = 1000) -> TcpSegment:
    """A segment from B's end of the connection, TSval ``ts_step`` past TS.Recent."""
    ts = TcpOptions(timestamps=(seq_add(tw.ts_recent, ts_step), 0)) if tw.ts_ok else TcpOptions()
    return TcpSegment(tw.key[3], tw.key[1], seq, tw.snd_nxt, flags, 1000, options=ts)


def test_time_wait_keeps_a_record_not_the_connection() -> None:
    lan, a, _b, client, tw = closed_from_a()
    assert client.key not in a.connections  # the connection is no longer kept
    assert tw.rcv_nxt == client.conn.rcv_nxt and tw.snd_nxt == client.conn.snd_nxt
    assert tw.ts_ok  # the default configuration agrees timestamps
    deadline = a.get_timer()
    assert deadline is not None and abs(deadline - (lan.now + 120)) < 1


def test_retransmitted_fin_is_reacked_and_restarts_2msl() -> None:
    lan, a, _b, client, tw = closed_from_a()
    lan.run(until=lan.now + 30)
    a.frames_to_send()
    fin = from_b(tw, seq_add(tw.rcv_nxt, -1), F.FIN | F.ACK)
    inject(a, B, A, fin, lan.now)
    (ack,) = sent(a)
    assert ack.flags == F.ACK and ack.seq == tw.snd_nxt and ack.ack == tw.rcv_nxt
    assert ack.options.timestamps is not None and ack.options.timestamps[1] == tw.ts_recent
    # The 2*MSL wait restarted from the FIN: still held 100 s later ...
    lan.run(until=lan.now + 100)
    assert client.key in a.tcp.time_wait and client.conn.state is State.TIME_WAIT
    # ... and gone 2*MSL after it, the owner's stream closed with it.
    lan.run(until=lan.now + 21)
    assert client.key not in a.tcp.time_wait
    assert client.gone and client.conn.state is State.CLOSED
    assert client.conn.transitions[-1].old is State.TIME_WAIT


def test_rst_in_time_wait_per_rfc_9293_and_5961() -> None:
    lan, a, _b, client, tw = closed_from_a()
    a.frames_to_send()
    # Outside the window: dropped silently (RFC 5961 §3.2 check 1).
    inject(a, B, A, from_b(tw, seq_add(tw.rcv_nxt, 1 << 20), F.RST), lan.now)
    assert sent(a) == [] and client.key in a.tcp.time_wait
    # In the window but not RCV.NXT: a challenge ACK, TIME-WAIT stays.
    inject(a, B, A, from_b(tw, seq_add(tw.rcv_nxt, 10), F.RST), lan.now)
    (challenge,) = sent(a)
    assert challenge.flags == F.ACK and challenge.ack == tw.rcv_nxt
    assert client.key in a.tcp.time_wait
    # Exactly RCV.NXT: TIME-WAIT ends (second step), the stream with it.
    inject(a, B, A, from_b(tw, tw.rcv_nxt, F.RST), lan.now)
    assert sent(a) == []
    assert client.key not in a.tcp.time_wait and client.gone
    assert client.conn.state is State.CLOSED


def test_syn_without_listener_gets_an_ack_and_old_segments_are_answered() -> None:
    lan, a, _b, client, tw = closed_from_a()
    a.frames_to_send()
    # A SYN in the window (no listener on A's ephemeral port): challenge ACK.
    inject(a, B, A, from_b(tw, tw.rcv_nxt, F.SYN), lan.now)
    (reply,) = sent(a)
    assert reply.flags == F.ACK and reply.ack == tw.rcv_nxt
    # An old data segment: ACKed with where we are (first step, not acceptable).
    old = TcpSegment(
        tw.key[3], tw.key[1], seq_add(tw.rcv_nxt, -100), tw.snd_nxt, F.ACK, 1000, b"x" * 10
    )
    inject(a, B, A, old, lan.now)
    (reply,) = sent(a)
    assert reply.flags == F.ACK and reply.ack == tw.rcv_nxt
    # PAWS: an old TSval is dropped with a (rate-limited) ACK; the record stays.
    lan.run(until=lan.now + 1)
    a.frames_to_send()
    inject(a, B, A, from_b(tw, tw.rcv_nxt, F.ACK | F.FIN, ts_step=-5), lan.now)
    assert [s.flags for s in sent(a)] == [F.ACK]
    assert client.key in a.tcp.time_wait


def closed_from_b() -> tuple[Lan, Host, Host, TcpStream, TimeWait]:
    """B (the server) closes first: B holds TIME-WAIT for A's 4-tuple."""
    lan, a, b = two_hosts()
    listener = b.tcp_listen(7)
    client = a.tcp_connect((B, 7), lan.now)
    lan.run()
    server = listener.accept()
    assert server is not None
    server.close(lan.now)
    lan.run()
    client.close(lan.now)
    lan.run()
    tw = b.tcp.time_wait[server.key]
    return lan, a, b, client, tw


def test_new_syn_reopens_per_rfc_6191_on_timestamps() -> None:
    lan, _a, b, _client, tw = closed_from_b()
    b.frames_to_send()
    # A SYN whose TSval is older than TS.Recent is an old duplicate: not a
    # new connection even with a larger sequence number; it earns an ACK.
    old = from_b(tw, seq_add(tw.rcv_nxt, 1000), F.SYN, ts_step=-1)
    inject(b, A, B, old, lan.now)
    assert [s.flags for s in sent(b)] == [F.ACK]
    assert tw.key in b.tcp.time_wait and b.counters["tcp-timewait-reopen"] == 0
    # A newer TSval reopens the 4-tuple even with a smaller sequence number.
    new = from_b(tw, seq_add(tw.rcv_nxt, -5000), F.SYN, ts_step=5)
    inject(b, A, B, new, lan.now)
    (synack,) = sent(b)
    assert synack.flags == F.SYN | F.ACK and synack.ack == seq_add(new.seq, 1)
    assert b.counters["tcp-timewait-reopen"] == 1
    assert tw.key not in b.tcp.time_wait and tw.key in b.connections


def test_new_syn_without_timestamps_reopens_above_rcv_nxt() -> None:
    lan, _a, b, _client, tw = closed_from_b()
    b.frames_to_send()
    syn = TcpSegment(tw.key[3], tw.key[1], seq_add(tw.rcv_nxt, 1 << 16), 0, F.SYN, 1000)
    inject(b, A, B, syn, lan.now)
    (synack,) = sent(b)
    assert synack.flags == F.SYN | F.ACK and b.counters["tcp-timewait-reopen"] == 1


def test_churn_keeps_records_and_frees_connections() -> None:
    """Many short connections, server closing first: the server keeps one
    record each and no connection object; all of it ends at 2*MSL."""
    lan, a, b = two_hosts()
    listener = b.tcp_listen(13)
    changes: list[ev.TcpStateTrace] = []
    b.observers.append(lambda r: changes.append(r) if isinstance(r, ev.TcpStateTrace) else None)
    refs = []
    for _ in range(300):
        c = a.tcp_connect((B, 13), lan.now)
        lan.run(until=lan.now + 0.01)
        s = listener.accept()
        assert s is not None
        s.send(b"daytime\r\n", lan.now)
        s.close(lan.now)
        refs.append(weakref.ref(s))  # the stream holds its connection
        del s
        lan.run(until=lan.now + 0.01)
        assert c.receive(100, lan.now) == b"daytime\r\n"
        c.close(lan.now)
        lan.run(until=lan.now + 0.01)
    assert not b.connections and len(b.tcp.time_wait) == 300
    gc.collect()
    assert sum(r() is not None for r in refs) == 0  # no TIME-WAIT holds its connection
    lan.run(until=lan.now + 121)
    assert not b.tcp.time_wait and not b.connections
    ends = [c for c in changes if (c.old, c.new) == ("TIME-WAIT", "CLOSED")]
    assert len(ends) == 300


def test_a_record_is_one_tracked_object_its_own_weak_reference() -> None:
    """A record is the stream's only weak reference (no second object for the
    cycle collector to keep for 2*MSL): it gives the stream while its owner
    holds it and the move to CLOSED reaches that owner; dropped, the stream is
    freed at once (refcount, no collection) and the record gives None. Records
    compare by identity, never by their streams."""
    lan, a, _b, client, tw = closed_from_a()
    assert isinstance(tw, weakref.ref) and gc.is_tracked(tw)
    assert tw() is client and weakref.getweakrefcount(client) == 1
    other = TimeWait(client, tw.deadline, tw.linger)
    assert other != tw and tw == tw and hash(other) != hash(tw)
    assert len({tw, other}) == 2
    del other
    # The owner still holds the stream: it sees CLOSED at the deadline.
    lan.run(until=lan.now + 121)
    assert client.conn.state is State.CLOSED and not a.tcp.time_wait
    # Freed by refcount alone once nobody holds it.
    lan2, a2, _b2, client2, tw2 = closed_from_a()
    gc.disable()
    try:
        del client2
        assert tw2() is None
    finally:
        gc.enable()
    lan2.run(until=lan2.now + 121)
    assert not a2.tcp.time_wait
