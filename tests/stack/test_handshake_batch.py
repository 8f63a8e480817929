"""A handshake's last ACK and the request right behind it, read in one batch
(as a busy server's TAP reads give them): the ACK is not offered to ACK
filtering (stack/gro.py needs a second pure ACK for a run) and the outcome is
what the two frames one by one give: the same counters, connection and
frames out."""

from __future__ import annotations

import pytest

from synack.stack.gro import Coalescer
from synack.stack.host import Host
from tests.stack.netfix import two_hosts
from tests.stack.test_fast_paths import B

REQUEST = b"GET /hello HTTP/1.0\r\nHost: b\r\n\r\n"


def _offers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The batch indexes offered to ACK filtering (Coalescer.ack_run) from now on."""
    offered: list[int] = []
    real = Coalescer.ack_run

    def counted(self: Coalescer, frames: list[bytes], i: int, *args: object) -> int:
        offered.append(i)
        return real(self, frames, i, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Coalescer, "ack_run", counted)
    return offered


def _serve(batched: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[object, ...]:
    lan, a, b = two_hosts()
    b.coalesce = True
    listener = b.tcp_listen(80)
    a.tcp_connect((B, 80), lan.now)
    lan.run()  # ARP both ways, and a first connection
    assert listener.accept() is not None
    client = a.tcp_connect((B, 80), lan.now)
    (syn,) = a.drain_frames()
    b.receive_frames([syn], lan.now)
    (synack,) = b.drain_frames()
    a.receive_frames([synack], lan.now)
    (ack,) = a.drain_frames()  # the handshake's last ACK, then the request (as Linux sends)
    client.send(REQUEST, lan.now)
    (request,) = a.drain_frames()
    offered = _offers(monkeypatch)
    if batched:
        b.receive_frames([ack, request], lan.now)
    else:
        b.receive_frames([ack], lan.now)
        b.receive_frames([request], lan.now)
    monkeypatch.undo()
    assert not offered  # neither way: a lone ACK, or a run of one
    server = listener.accept()
    assert server is not None
    c = server.conn
    state = (c.state, c.snd_una, c.snd_nxt, c.rcv_nxt, c.snd_wnd, c.readable_bytes, c.get_timer())
    data = server.receive(1000, lan.now)
    return dict(b.counters), state, data, b.drain_frames()


def test_handshake_ack_and_request_in_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    one_by_one = _serve(False, monkeypatch)
    assert one_by_one[2] == REQUEST
    assert _serve(True, monkeypatch) == one_by_one


def test_a_run_of_pure_acks_is_still_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two pure ACKs of one flow in a batch still reach ACK filtering."""
    lan, a, b = two_hosts()
    b.coalesce = True
    listener = b.tcp_listen(80)
    client = a.tcp_connect((B, 80), lan.now)
    lan.run()
    server = listener.accept()
    assert server is not None
    server.send(b"x" * 100, lan.now)
    a.receive_frames(b.drain_frames(), lan.now)
    assert client.receive(1000, lan.now) == b"x" * 100
    a.handle_timer(lan.now + 1)  # the delayed ACK
    (pure_ack,) = a.drain_frames()
    acks = [pure_ack, pure_ack]  # (a duplicate: the run is offered, then taken one by one)
    offered = _offers(monkeypatch)
    b.receive_frames(acks, lan.now + 1)
    assert offered == [0]
    assert isinstance(b, Host) and b.counters["tcp-acks-filtered"] == 0
