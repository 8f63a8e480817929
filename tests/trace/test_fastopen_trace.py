"""The trace of TCP Fast Open (RFC 7413): data on the SYN drawn as such, states true.

Two hosts on the simulated LAN, two connections: a cookie request, then the
request on the SYN and the answer sent in SYN-RECEIVED. The arrows say what
was on the wire (the SYN's length, the cookie option, the SYN-ACK's ACK
covering the SYN's data) and every end's state sequence is its connection's
own history (tests/trace/test_truth.py's check).
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Interface

from synack.core.sim import LinkParams
from synack.links.lan import Lan
from synack.stack.host import Host, HostConfig, TcpListener, TcpStream
from synack.tcp.connection import TcpConnection
from synack.trace import jsonl
from synack.trace.live import HostTrace
from synack.trace.terminal import event_label, short_options, to_text
from synack.wire.tcp import TcpFlags
from tests.trace.test_truth import check_truth

A, B = IPv4Address("10.213.0.1"), IPv4Address("10.213.0.2")


def _host(ip: IPv4Address, n: int) -> Host:
    cfg = HostConfig(
        mac=bytes([2, 0, 0, 0, 9, n]), interface=IPv4Interface(f"{ip}/24"), tcp_fastopen=3
    )
    return Host(cfg, rng=random.Random(n), isn_secret=bytes([n]) * 16)


def _one_open(lan: Lan, a: Host, listener: TcpListener) -> list[TcpConnection]:
    """One Fast Open: "hello" on (or after) the SYN, "world" back, both close."""
    c = a.tcp_connect((B, 7), lan.now, fastopen=True)
    c.send(b"hello", lan.now)
    lan.kick()
    got: list[TcpStream] = []

    def accepted() -> bool:
        s = listener.accept()
        if s is not None:
            got.append(s)
        return bool(got)

    assert lan.run_until(accepted)
    s = got[0]
    assert lan.run_until(lambda: s.conn.readable_bytes > 0)
    assert s.receive(100, lan.now) == b"hello"
    s.send(b"world", lan.now)
    lan.kick()
    assert lan.run_until(lambda: c.conn.readable_bytes > 0)
    assert c.receive(100, lan.now) == b"world"
    c.close(lan.now)
    s.close(lan.now)
    assert lan.run_until(lambda: c.gone and s.gone, timeout=600)
    return [c.conn, s.conn]


def test_data_on_the_syn_is_drawn_and_the_states_are_true() -> None:
    lan = Lan(params=LinkParams(delay=0.005))
    sw, _ = lan.switch()
    a, b = _host(A, 1), _host(B, 2)
    lan.attach_host(a, sw, "A")
    lan.attach_host(b, sw, "B")
    live = HostTrace(names={str(A): "A", str(B): "B"})
    live.attach(a)
    live.attach(b)
    listener = b.tcp_listen(7, fastopen_qlen=4)
    conns: list[TcpConnection] = []
    for _ in range(2):
        conns += _one_open(lan, a, listener)
    trace = live.build()
    check_truth(trace, conns)
    syns = [e for e in trace.events if e.tcp is not None and e.tcp.flags & TcpFlags.SYN]
    labels = [event_label(e) + short_options(e) for e in syns]
    assert labels == [
        "SYN seq=0 win=65535 <mss 1460,sackOK,wscale 3,TFO cookie request>",
        "SYN,ACK seq=0 ack=1 win=65535 <mss 1460,sackOK,wscale 3,TFO cookie>",
        "SYN seq=0 win=65535 len=5 <mss 1460,sackOK,wscale 3,TFO cookie>",
        "SYN,ACK seq=0 ack=6 win=65535 <mss 1460,sackOK,wscale 3>",
    ]
    # Nothing of the second open is marked resent or out of order.
    tcps = [e.tcp for e in trace.events if e.tcp is not None]
    second = [t for t in tcps if t.conn == tcps[-1].conn]
    assert len(second) >= 6
    assert not any(t.retransmission or t.out_of_order for t in second)
    assert "len=5" in to_text(trace, width=120)
    # The JSON lines (docs/protocol.md §8) name the option: request, then cookie.
    tfo = [f.tcp.options.fastopen for f in jsonl.frames(trace) if f.tcp and "SYN" in f.tcp.flags]
    assert tfo[0] == "" and tfo[2] == syns[2].tcp.options.fastopen.hex()  # type: ignore[union-attr]
    assert tfo[1] == tfo[2] and len(tfo[1] or "") == 16 and tfo[3] is None
