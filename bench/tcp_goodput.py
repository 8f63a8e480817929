"""Goodput of synack's TCP in virtual time under random loss, against the
Mathis et al. bound  MSS/RTT * C/sqrt(p)  with C = sqrt(3/2) = 1.22 (one ACK
per segment; with delayed ACKs, b = 2, the model's constant is sqrt(3/4) =
0.87, printed as a second anchor).

The path: 25 ms each way (RTT 50 ms), no bandwidth limit (so the loss, not a
queue, sets the rate), random loss p on the data direction only, 4 MB
buffers (the window never limits). Goodput is payload octets delivered in
order divided by the virtual time from ESTABLISHED to the last octet.
Several seeds are averaged; the target is >= 0.8 of the 1.22 bound. Each
setting runs with SACK and RACK-TLP loss detection (RFC 8985, the default),
with SACK and RFC 6675's DupThresh detection, and with SACK off (NewReno,
RFC 6582) on the same seeds.

A second table is the burst-loss case: a 10 Mbit/s bottleneck with a short
drop-tail queue and no random loss, where slow start overshoots and loses
many segments of one window; the anchor is the link rate.

What the ratio means: synack's goodput (virtual time, so the machine's load
does not enter) over the Mathis bound with C = 1.22; goal >= 0.8.

    .venv/bin/python bench/tcp_goodput.py [--mb 20] [--loss 0.01] [--seeds 5]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Figure
from synack.core.sim import LinkParams, Simulator
from synack.tcp.config import TcpConfig
from synack.tcp.pair import SimApp, TcpSimPair
from synack.tcp.states import State

ONE_WAY = 0.025
BOTTLENECK = 1.25e6  # bytes per second: 10 Mbit/s


def run(
    mb: float, loss: float, seed: int, cfg: TcpConfig, to_server: LinkParams | None = None
) -> tuple[float, int, dict[str, int]]:
    size = int(mb * 1_000_000)
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    sim = Simulator(seed)
    pair = TcpSimPair(
        sim,
        client_config=cfg,
        server_config=cfg,
        to_server=to_server or LinkParams(delay=ONE_WAY, loss=loss),
        to_client=LinkParams(delay=ONE_WAY),
        client_app=SimApp(outgoing=data),
        server_app=SimApp(close_on_eof=True),
    )
    pair.start()
    sim.run(until=1e7, stop=lambda: len(pair.server_app.received) >= size)
    if pair.server_app.received != data:
        raise SystemExit("transfer incomplete or corrupted")
    t0 = next(t.time for t in pair.client.transitions if t.new is State.ESTABLISHED)
    st = pair.client.stats
    counts = {"fast": st.fast_retransmits, "timeouts": st.timeouts, "rexmit": st.retransmissions}
    return size / (sim.now - t0), pair.client.effective_mss, counts


def figures(quick: bool) -> list[Figure]:
    mb, seeds, loss = (2.0, 3, 0.01) if quick else (20.0, 5, 0.01)
    rtt = 2 * ONE_WAY
    base = TcpConfig(send_buffer=4 << 20, receive_buffer=4 << 20)
    out = []
    for name, cfg in (("SACK", base), ("NewReno", replace(base, sack=False))):
        rates, mss = [], 0
        for seed in range(1, seeds + 1):
            rate, mss, _ = run(mb, loss, seed, cfg)
            rates.append(rate)
        bound = mss / rtt * math.sqrt(1.5) / math.sqrt(loss)
        out.append(
            Figure(
                bench="tcp_goodput",
                name=f"goodput under {loss:.0%} random loss, RTT 50 ms, defaults, {name}",
                value=sum(rates) / len(rates) / 1e3,
                unit="kB/s (virtual time)",
                anchor="Mathis bound, C = 1.22",
                anchor_value=bound / 1e3,
                ratios=[r / bound for r in rates],
                goal=0.8,
                command=f".venv/bin/python bench/tcp_goodput.py --mb {mb:g} --seeds {seeds}",
                note=f"mean of {seeds} seeds, {mb:g} MB each; min-max are per seed",
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=20.0, help="megabytes per run (default 20)")
    ap.add_argument("--loss", type=float, default=0.01, help="random loss rate p (default 0.01)")
    ap.add_argument("--seeds", type=int, default=5, help="runs to average (default 5)")
    args = ap.parse_args()
    rtt = 2 * ONE_WAY
    base = TcpConfig(send_buffer=4 << 20, receive_buffer=4 << 20)
    variants: dict[str, TcpConfig] = {}
    for name, cfg in {
        "defaults (delayed ACK, min RTO 1 s)": base,
        "min RTO 0.2 s": replace(base, min_rto=0.2),
        "no delayed ACK, min RTO 0.2 s": replace(base, min_rto=0.2, delayed_ack=False),
    }.items():
        variants[f"{name}, SACK + RACK-TLP"] = cfg
        variants[f"{name}, SACK + RFC 6675 DupThresh"] = replace(cfg, loss_detection="rfc6675")
        variants[f"{name}, NewReno"] = replace(cfg, sack=False)
        variants[f"{name}, SACK + RACK-TLP, CUBIC"] = replace(cfg, congestion_control="cubic")
    print(f"{args.mb:g} MB x {args.seeds} seeds, RTT {rtt * 1000:.0f} ms, loss p = {args.loss:g}")
    for name, cfg in variants.items():
        c0 = time.process_time()
        rates = []
        mss = 0
        totals = {"fast": 0, "timeouts": 0, "rexmit": 0}
        for seed in range(1, args.seeds + 1):
            rate, mss, counts = run(args.mb, args.loss, seed, cfg)
            rates.append(rate)
            for k, v in counts.items():
                totals[k] += v
        goodput = sum(rates) / len(rates)
        bound = mss / rtt * math.sqrt(1.5) / math.sqrt(args.loss)
        bound_delack = mss / rtt * math.sqrt(0.75) / math.sqrt(args.loss)
        print(f"synack, {name}: {goodput / 1e3:8.1f} kB/s  ({time.process_time() - c0:.1f} CPU s)")
        print(
            f"  anchor Mathis C=1.22: {bound / 1e3:8.1f} kB/s -> ratio {goodput / bound:.2f}"
            f"   anchor C=0.87 (b=2): {bound_delack / 1e3:8.1f} kB/s -> ratio {goodput / bound_delack:.2f}"
        )
        print(
            f"  per run: {totals['fast'] / args.seeds:.0f} fast retransmits, "
            f"{totals['timeouts'] / args.seeds:.1f} timeouts, {totals['rexmit'] / args.seeds:.0f} segments resent"
        )
    print(
        f"\nburst losses: {BOTTLENECK * 8 / 1e6:g} Mbit/s bottleneck, drop-tail queue, "
        f"RTT {rtt * 1000:.0f} ms, no random loss, {args.mb:g} MB, min RTO 0.2 s"
    )
    for queue in (10, 50):
        link = LinkParams(delay=ONE_WAY, bandwidth=BOTTLENECK, queue_limit=queue)
        for name, cfg in (
            ("RACK", replace(base, min_rto=0.2)),
            ("RFC6675", replace(base, min_rto=0.2, loss_detection="rfc6675")),
            ("NewReno", replace(base, min_rto=0.2, sack=False)),
        ):
            c0 = time.process_time()
            rate, _, counts = run(args.mb, 0.0, 1, cfg, link)
            print(
                f"synack, queue {queue:2d}, {name:7s}: {rate / 1e3:8.1f} kB/s, anchor link rate "
                f"{BOTTLENECK / 1e3:.0f} kB/s -> ratio {rate / BOTTLENECK:.3f}  ({counts['fast']} fast "
                f"retransmits, {counts['timeouts']} timeouts, {counts['rexmit']} resent; "
                f"{time.process_time() - c0:.1f} CPU s)"
            )


if __name__ == "__main__":
    main()
