"""Checksum offload on send: with ``Host.enable_offload(tso=True)`` (a link that completes
checksums, like a TAP with IFF_VNET_HDR) TCP frames leave as SplitFrame with
a partial (pseudo-header) checksum; once completed as the kernel does
(VIRTIO_NET_HDR_F_NEEDS_CSUM) they are valid segments."""

from __future__ import annotations

from ipaddress import IPv4Address

from synack.links.lan import Lan
from synack.stack.host import Host, SplitFrame
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.checksum import finish, ones_sum
from synack.wire.errors import MalformedPacket
from tests.stack.netfix import two_hosts

B = IPv4Address("10.213.0.2")


def complete(frame: SplitFrame) -> bytes:
    """What the kernel does with NEEDS_CSUM: sum from csum_start to the end
    (the field holds the pseudo-header sum) and store the complement."""
    raw = bytearray(bytes(frame))
    at = frame.csum_start + frame.csum_offset
    raw[at : at + 2] = finish(ones_sum(raw[frame.csum_start :])).to_bytes(2, "big")
    return bytes(raw)


def resolved_pair() -> tuple[Lan, Host, Host]:
    lan, a, b = two_hosts()
    a.ping(B, 1, 1, b"", lan.now)
    lan.run()  # ARP resolved
    a.ping(B, 1, 2, b"", lan.now)  # fills the route cache (for a second from now)
    a.frames_to_send()
    return lan, a, b


def test_offloaded_syn_is_valid_once_completed_and_answered() -> None:
    lan, a, b = resolved_pair()
    now = lan.now
    b.tcp_listen(7)
    a.enable_offload(split=True, tso=True)
    a.tcp_connect((B, 7), now)
    (frame,) = a.drain_frames()
    assert isinstance(frame, SplitFrame)
    as_sent = bytes(frame)
    ip = wip.parse(weth.parse(as_sent).payload)
    try:
        wtcp.parse(ip.payload, ip.src, ip.dst)
        partial_rejected = False
    except MalformedPacket:
        partial_rejected = True
    assert partial_rejected  # only the pseudo-header sum: not valid on its own
    whole = complete(frame)
    ip = wip.parse(weth.parse(whole).payload)
    seg = wtcp.parse(ip.payload, ip.src, ip.dst)
    assert seg.flags & wtcp.TcpFlags.SYN and seg.dst_port == 7
    b.receive_frame(whole, now)
    (reply,) = b.frames_to_send()
    ip = wip.parse(weth.parse(reply).payload)
    answer = wtcp.parse(ip.payload, ip.src, ip.dst)
    assert answer.flags & wtcp.TcpFlags.SYN and answer.flags & wtcp.TcpFlags.ACK


def test_offloaded_data_payload_kept_apart_and_checksummed_by_completion() -> None:
    lan, a, b = resolved_pair()
    now = lan.now
    listener = b.tcp_listen(9)
    a.enable_offload(split=True, tso=True)
    client = a.tcp_connect((B, 9), now)
    for _ in range(4):  # handshake, by hand: a's frames completed like the kernel would
        for f in a.drain_frames():
            b.receive_frame(complete(f) if isinstance(f, SplitFrame) else f, now)
        for f in b.frames_to_send():
            a.receive_frame(f, now)
    assert listener.queue
    data = bytes(range(256)) * 20
    client.send(data, now)
    frames = [f for f in a.drain_frames() if isinstance(f, SplitFrame)]
    sent = b"".join(bytes(f.payload) for f in frames)
    assert sent and data.startswith(sent)  # the initial window's worth
    got = b""
    for f in frames:
        ip = wip.parse(weth.parse(complete(f)).payload)
        got += wtcp.parse(ip.payload, ip.src, ip.dst).payload
    assert got == sent


def test_loopback_whole_and_without_tso_checksums_complete() -> None:
    lan, a, _b = resolved_pair()
    now = lan.now
    listener = a.tcp_listen(5000, IPv4Address("127.0.0.1"))
    a.enable_offload(split=True, tso=True)
    a.tcp_connect((IPv4Address("127.0.0.1"), 5000), now)
    # Loopback never reaches the link, split or not: the handshake completes
    # over whole packets inside the host.
    assert a.drain_frames() == []
    assert listener.accept() is not None
    a.enable_offload(split=True)  # split frames, but complete: the checksum summed here
    a.tcp_connect((B, 7), now)
    (frame,) = a.drain_frames()
    assert isinstance(frame, SplitFrame) and frame.csum_start == 0
    ip = wip.parse(weth.parse(bytes(frame)).payload)
    wtcp.parse(ip.payload, ip.src, ip.dst)  # a full checksum
    a.enable_offload(split=False)
    a.tcp_connect((B, 8), now)
    (whole,) = a.drain_frames()
    assert type(whole) is bytes
    ip = wip.parse(weth.parse(whole).payload)
    assert wtcp.parse(ip.payload, ip.src, ip.dst).dst_port == 8


def test_offloaded_udp_completed_is_delivered() -> None:
    lan, a, b = resolved_pair()
    now = lan.now
    a.enable_offload(split=True, tso=True)
    sender = a.udp_open(5000)
    receiver = b.udp_open(5001)
    a.udp_sendto(sender, b"hello offload", (B, 5001), now)
    (frame,) = a.drain_frames()
    assert isinstance(frame, SplitFrame) and frame.csum_offset == 6
    b.receive_frame(complete(frame), now)
    assert receiver.recvfrom() == (b"hello offload", (IPv4Address("10.213.0.1"), 5000))
    assert b.counters["udp-in"] == 1
