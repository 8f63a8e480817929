"""A bulk upload's receive side in memory: the frames a kernel sends, fed to one synack host.

    .venv/bin/python bench/stack_receive.py [--mb 8] [--rounds 3] [--profile]

Host B holds an established connection from A. The bench builds, ahead of
time, the data frames A's kernel would send (1448-octet segments carrying
Linux's NOP NOP TS options, or with ``--offload`` 64 KiB ones the TAP
vouches for), and hands them to ``Host.receive_frames`` in batches of 64 (a
TAP read; 3 of the 64 KiB ones, what a 256 KiB window lets through), reading the connection dry and draining B's ACKs after each batch,
as ``synack run``'s loop thread does. No system calls: what is left is the
stack's own work per frame (parse, checksum, demux, TCP, the receive buffer),
with receive coalescing (``Host.coalesce``, stack/gro.py) on and off, rounds
interleaved; the per-frame path (coalescing off) is the anchor, printed as a
ratio. ``--profile`` prints the cProfile top functions of one run.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import random
from ipaddress import IPv4Address, IPv4Interface

from synack.links.lan import Lan
from synack.links.tap import KernelChecked
from synack.stack.host import Host, HostConfig, TcpStream
from synack.wire import ethernet as weth
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")
BATCH = 64
BATCH_OFFLOAD = 3  # 64 KiB frames: what a 256 KiB window lets the kernel send in one go


def _host(n: int) -> Host:
    cfg = HostConfig(mac=bytes([2, 0, 0, 0, 0, n]), interface=IPv4Interface(f"10.213.0.{n}/24"))
    return Host(cfg, rng=random.Random(n), isn_secret=bytes([n]) * 16)


def _setup() -> tuple[Host, TcpStream, wtcp.TcpSegment, bytes, bytes]:
    """B with a connection from A; A's next data segment (the template) and the MACs."""
    lan = Lan()
    sw, _ = lan.switch()
    a, b = _host(1), _host(2)
    for h in (a, b):
        lan.attach_host(h, sw)
        h.start(0.0)
    listener = b.tcp_listen(80)
    client = a.tcp_connect((B, 80), lan.now)
    lan.run()
    stream = listener.accept()
    assert stream is not None
    # B's first read opens its window past the SYN's unscaled 65,535.
    client.send(b"x" * 100, lan.now)
    lan.run()
    stream.receive(1 << 16, lan.now)
    lan.run()
    client.send(b"x" * 100, lan.now)
    (frame,) = a.frames_to_send()
    eth = weth.parse(frame)
    pkt = wip.parse(eth.payload)
    seg = wtcp.parse(pkt.payload, pkt.src, pkt.dst)
    return b, stream, seg, eth.src, eth.dst


def _frames(template: wtcp.TcpSegment, src: bytes, dst: bytes, size: int, mss: int) -> list[bytes]:
    """The data frames of ``size`` octets from the template's sequence number on.
    Their TSval moves on every 32 frames (Linux's millisecond clock)."""
    block = bytes(range(256)) * (mss // 256 + 1)
    out = []
    seq = template.seq
    ts = template.options.timestamps
    assert ts is not None
    sent = i = 0
    while sent < size:
        n = min(mss, size - sent)
        opts = wtcp.TcpOptions(timestamps=((ts[0] + i // 32) & 0xFFFFFFFF, ts[1]))
        seg = wtcp.TcpSegment(
            template.src_port,
            template.dst_port,
            seq,
            template.ack,
            wtcp.TcpFlags.ACK | (wtcp.TcpFlags.PSH if i % 8 == 7 else 0),
            template.window,
            block[:n],
            opts,
        )
        raw = wip.build(wip.Ipv4Packet(A, B, wip.PROTO_TCP, wtcp.build(seg, A, B), ident=i))
        out.append(weth.build(weth.EthernetFrame(dst, src, weth.ETHERTYPE_IPV4, raw)))
        seq = (seq + n) & 0xFFFFFFFF
        sent += n
        i += 1
    return out


def run(
    mb: float, coalesce: bool, offload: bool, prof: cProfile.Profile | None = None
) -> tuple[float, int]:
    """CPU microseconds per frame received, and the frames B sent (its ACKs);
    ``prof`` profiles the receiving only."""
    b, stream, template, src, dst = _setup()
    if hasattr(b, "coalesce"):
        b.coalesce = coalesce
    mss = 65536 - 66 if offload else 1448
    frames = _frames(template, src, dst, int(mb * 1_000_000), mss)
    if offload:
        frames = [KernelChecked(f) for f in frames]
    vouched = KernelChecked if offload else None
    if prof is not None:
        prof.enable()
    got = acks = 0
    now = 1.0
    c0 = time.process_time()
    batch = BATCH_OFFLOAD if offload else BATCH
    for i in range(0, len(frames), batch):
        now += 0.001
        b.receive_frames(frames[i : i + batch], now, vouched=vouched)
        while b.next_event() is not None:
            pass
        while data := stream.receive(1 << 18, now):
            got += len(data)
        acks += len(b.drain_frames())
    cpu = time.process_time() - c0
    if prof is not None:
        prof.disable()
    if got != int(mb * 1_000_000):
        raise RuntimeError(f"received {got} octets of {int(mb * 1_000_000)}")
    return cpu / len(frames) * 1e6, acks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--mb", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--offload", action="store_true", help="64 KiB frames the link vouches for")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if args.profile:
        for coalesce in (True, False):
            prof = cProfile.Profile()
            run(args.mb, coalesce, args.offload, prof)
            print(f"--- coalesce={coalesce}")
            pstats.Stats(prof).sort_stats("tottime").print_stats(14)
        return
    res: dict[bool, list[float]] = {True: [], False: []}
    acks: dict[bool, int] = {}
    for _ in range(args.rounds):
        for coalesce in (True, False):
            us, acks[coalesce] = run(args.mb, coalesce, args.offload)
            res[coalesce].append(us)
    kind = "64 KiB vouched" if args.offload else "1448-octet"
    batch = BATCH_OFFLOAD if args.offload else BATCH
    print(f"{args.mb:g} MB in {kind} frames, batches of {batch}, {args.rounds} rounds")
    for coalesce in (True, False):
        v = res[coalesce]
        print(
            f"coalesce {'on ' if coalesce else 'off'}: {statistics.median(v):6.2f} us CPU "
            f"per frame ({min(v):.2f}-{max(v):.2f}), {acks[coalesce]} ACKs sent"
        )
    # The anchor is the per-frame path on the same frames, in the same run.
    ratio = statistics.median(res[False]) / statistics.median(res[True])
    print(f"coalescing: {ratio:.2f}x the per-frame path's frames per CPU-second")


if __name__ == "__main__":
    main()
