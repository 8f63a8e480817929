from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Interface

from synack.links.lan import Lan
from synack.stack.host import Host, HostConfig, TcpStream
from synack.tcp.states import State
from synack.trace.live import HostTrace

A, B = IPv4Address("10.213.7.1"), IPv4Address("10.213.7.2")


def make(ip: IPv4Address, last: int) -> Host:
    return Host(
        HostConfig(mac=bytes([2, 0, 0, 0, 7, last]), interface=IPv4Interface(f"{ip}/24")),
        rng=random.Random(last),
        isn_secret=bytes(16),
    )


def test_two_hosts_traced_live_each_frame_once_with_recorded_states() -> None:
    lan = Lan(delay=0.001)
    sw, _ = lan.switch()
    a, b = make(A, 1), make(B, 2)
    lan.attach_host(a, sw, "A")
    lan.attach_host(b, sw, "B")
    live = HostTrace(names={str(A): "A", str(B): "B"})
    live.attach(a)
    live.attach(b)
    on_wire: list[bytes] = []
    lan.taps.append(lambda _link, _now, frame: on_wire.append(frame))
    listener = b.tcp_listen(7)
    stream = a.tcp_connect((B, 7), lan.now)
    got: list[TcpStream] = []

    def accepted_one() -> bool:
        s = listener.accept()
        if s is not None:
            got.append(s)
        return bool(got)

    assert lan.run_until(accepted_one)
    accepted = got[0]
    stream.send(b"ping", lan.now)
    received = bytearray()

    def got_ping() -> bool:  # idempotent: run_until may ask more than once
        received.extend(accepted.receive(16, lan.now))
        return bytes(received) == b"ping"

    assert lan.run_until(got_ping)
    stream.close(lan.now)
    accepted.close(lan.now)
    assert lan.run_until(lambda: stream.gone and accepted.gone, timeout=600)
    trace = live.build()
    # Each frame once: the switch put every unicast frame on two wires.
    assert sorted(e.frame for e in trace.events) == sorted(set(on_wire))
    assert len(trace.events) == len(set(on_wire))
    (conn,) = trace.connections
    assert not conn.inferred
    a_states = [c.new for c in trace.state_changes if c.lane == str(A)]
    assert a_states[:2] == [State.SYN_SENT, State.ESTABLISHED]
    assert a_states[-2:] == [State.TIME_WAIT, State.CLOSED]
    syn = next(e for e in trace.events if e.tcp is not None)
    assert syn.tcp is not None and syn.tcp.flag_text == "SYN"
    assert syn.tcp.after[0] is State.SYN_SENT
    assert syn.link == str(A)  # seen at the host that sent it
