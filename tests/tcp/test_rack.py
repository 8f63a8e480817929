"""RACK-TLP (RFC 8985) on the manual clock: lost retransmissions and tail losses without an RTO.

Each scenario runs a path of RTT 100 ms by hand (segments cross in half an
RTT each way) and asserts the exact segments and when they leave; the same
losses under RFC 6675's loss detection need a retransmission timeout.
"""

from __future__ import annotations

import dataclasses

from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection
from synack.tcp.states import State
from synack.wire.tcp import TcpSegment
from tests.tcp.harness import PLAIN, Duo, brief

RTT = 0.1
RACK = dataclasses.replace(PLAIN, send_buffer=64000, receive_buffer=32000, sack=True)
RFC6675 = dataclasses.replace(RACK, loss_detection="rfc6675")


def warm(cfg: TcpConfig) -> Duo:
    """Open over the RTT and move 4000 octets, each ACK one RTT after its segment.

    Afterwards cwnd is 8000 and SRTT is exactly RTT (every sample is RTT).
    """
    d = Duo(cfg, cfg)
    d.a.connect(d.now)
    syn = d.out_a()
    d.now += RTT / 2
    d.to_b(syn)
    synack = d.out_b()
    d.now += RTT / 2
    d.to_a(synack)
    d.to_b(d.out_a())
    d.a.send(b"w" * 4000, d.now)
    for s in d.out_a():
        d.to_b([s])
        ack = d.out_b()
        d.now += RTT
        d.to_a(ack)
        d.now -= RTT
    d.now += RTT
    assert d.a.stats.cwnd == 8000
    assert d.a.stats.srtt == RTT
    return d


class Path:
    """A in flight to B: each segment arrives RTT/2 after it left, its ACK RTT/2 later."""

    def __init__(self, d: Duo, lose: dict[int, int]) -> None:
        self.d = d
        self.lose = dict(lose)  # seq -> how many copies are lost
        self.log: list[tuple[float, int, int]] = []  # (time, seq, length) of what A sent
        self.queue: list[tuple[float, TcpSegment]] = []  # (arrival at A, ACK)

    def send(self, segs: list[TcpSegment]) -> None:
        d = self.d
        for s in segs:
            self.log.append((round(d.now, 6), s.seq, len(s.payload)))
            if self.lose.get(s.seq, 0) > 0:
                self.lose[s.seq] -= 1
                continue
            d.to_b([s])
            for ack in d.out_b():
                self.queue.append((d.now + RTT, ack))

    def run(self, conn: TcpConnection, until: float) -> None:
        """Deliver ACKs and fire A's timers in time order until ``until``."""
        d = self.d
        while True:
            t_ack = min((t for t, _ in self.queue), default=None)
            t_timer = conn.get_timer()
            nxt = min(t for t in (t_ack, t_timer) if t is not None) if (t_ack or t_timer) else None
            if nxt is None or nxt > until:
                return
            d.now = max(d.now, nxt)
            if t_ack is not None and t_ack <= d.now:
                ready = [a for t, a in self.queue if t <= d.now]
                self.queue = [(t, a) for t, a in self.queue if t > d.now]
                d.to_a(ready)
            else:
                conn.handle_timer(d.now)
            self.send(d.out_a())


def at(t: float) -> float:
    return round(t, 6)


def lossy(cfg: TcpConfig, n: int, lose: dict[int, int]) -> tuple[Duo, Path, float]:
    """Warm up, send ``n`` octets over a Path losing ``lose``, run 5 s: (duo, path, start)."""
    d = warm(cfg)
    t0 = d.now
    d.a.send(bytes(n), d.now)
    p = Path(d, lose)
    p.send(d.out_a())
    p.run(d.a, t0 + 5)
    return d, p, t0


def test_lost_retransmission_is_detected_within_one_rtt() -> None:
    # The segment at 4101 and its first retransmission are lost.
    d, p, t0 = lossy(RACK, 16000, {4101: 2})
    assert p.log == [(at(t0), 4101 + 1000 * i, 1000) for i in range(8)] + [
        # One RTT later the SACKs show 4101 lost (sent before what arrived,
        # and older than RACK.rtt): fast retransmit, then new data to cwnd
        # = FlightSize / 2 (RFC 6675 §5 step 4).
        (at(t0 + RTT), 4101, 1000),
        (at(t0 + RTT), 12101, 1000),
        (at(t0 + RTT), 13101, 1000),
        (at(t0 + RTT), 14101, 1000),
        # The SACKs of 12101.. show the retransmission lost too: resent one
        # RTT after it left, not at the RTO (1 s).
        (at(t0 + 2 * RTT), 4101, 1000),
        (at(t0 + 2 * RTT), 15101, 1000),
        (at(t0 + 2 * RTT), 16101, 1000),
        (at(t0 + 2 * RTT), 17101, 1000),
        (at(t0 + 3 * RTT), 18101, 1000),
        (at(t0 + 3 * RTT), 19101, 1000),
    ]
    assert d.a.snd_una == 20101
    st = d.a.stats
    assert (st.timeouts, st.fast_retransmits, st.retransmissions) == (0, 1, 2)


def test_lost_retransmission_needs_the_rto_under_rfc_6675() -> None:
    d, p, t0 = lossy(RFC6675, 16000, {4101: 2})
    assert d.a.snd_una == 20101
    assert d.a.stats.timeouts == 1
    resends = [t for t, seq, _ in p.log if seq == 4101]
    # The RTO (1 s, from the first send: no new ACK restarted it) resends it.
    assert resends == [at(t0), at(t0 + RTT), at(t0 + 1.0)]


def test_tail_loss_probe_after_two_srtt() -> None:
    d, p, t0 = lossy(RACK, 8000, {10101: 1, 11101: 1})  # the last two segments
    assert p.log == [(at(t0), 4101 + 1000 * i, 1000) for i in range(8)] + [
        # The last ACK (of 10101) came at t0 + RTT; with two segments in
        # flight PTO = 2 * SRTT: the last segment goes again as the probe.
        (at(t0 + RTT + 2 * RTT), 11101, 1000),
        # Its SACK shows 10101 lost (RACK): fast retransmit, no RTO.
        (at(t0 + 4 * RTT), 10101, 1000),
    ]
    assert d.a.snd_una == 12101
    st = d.a.stats
    assert (st.timeouts, st.loss_probes, st.fast_retransmits) == (0, 1, 1)


def test_single_segment_tail_probe_waits_for_a_delayed_ack() -> None:
    d, p, t0 = lossy(RACK, 1000, {4101: 1})
    # One segment in flight: PTO = 2 * SRTT + WCDelAckT (RFC 8985 §7.2).
    assert p.log == [(at(t0), 4101, 1000), (at(t0 + 2 * RTT + 0.2), 4101, 1000)]
    assert d.a.snd_una == 5101 and d.a.stats.timeouts == 0


def test_tail_loss_needs_the_rto_under_rfc_6675() -> None:
    d = lossy(RFC6675, 8000, {10101: 1, 11101: 1})[0]
    assert d.a.snd_una == 12101
    assert (d.a.stats.timeouts, d.a.stats.loss_probes) == (1, 0)


def test_reordering_within_the_window_is_not_a_loss() -> None:
    # One SACK above a hole: reo_wnd = min_RTT / 4 holds the verdict; the
    # hole fills before the reordering timer fires, nothing is resent.
    d = warm(RACK)
    d.a.send(bytes(2000), d.now)
    first, second = d.out_a()
    d.now += RTT / 2
    d.to_b([second])
    sack = d.out_b()
    d.now += RTT / 2
    d.to_a(sack)
    assert d.out_a() == []
    rack = d.a._rack
    assert rack is not None and rack.deadline is not None
    assert abs(rack.deadline - (d.now + RTT / 4)) < 1e-9  # the reordering timer
    d.advance(d.now + RTT / 8)
    assert d.out_a() == []
    d.to_b([first])  # the "lost" segment was only late
    d.to_a(d.out_b())
    assert d.a.snd_una == 6101
    d.advance(d.now + RTT)
    assert [brief(s) for s in d.out_a()] == []
    assert d.a.stats.retransmissions == 0


def test_default_timeouts_after_one_loss_probe() -> None:
    """SHLD-10/11 with the defaults (RACK-TLP): one probe, then the RTO doubling, R1 and R2."""
    cfg = TcpConfig()
    d = Duo(cfg, cfg)
    d.open()  # no time passes: SRTT 0, so PTO = WCDelAckT (one segment in flight)
    d.a.send(b"lost", d.now)
    assert len(d.out_a()) == 1
    fired: list[float] = []
    while d.a.state is not State.CLOSED:
        fired.append(d.fire_next(d.a))
        d.out_a()  # everything is lost
    assert fired[:7] == [0.2, 1.2, 3.2, 7.2, 15.2, 31.2, 63.2]
    assert d.a.stats.loss_probes == 1
    assert d.a.stats.timeouts == len(fired) - 1 == cfg.r2_retries + 1


def test_reordering_timer_declares_the_hole_lost() -> None:
    d = warm(RACK)
    d.a.send(bytes(2000), d.now)
    _first, second = d.out_a()
    d.now += RTT / 2
    d.to_b([second])
    sack = d.out_b()
    d.now += RTT / 2
    d.to_a(sack)
    assert d.out_a() == []
    t = d.now
    d.advance(t + RTT / 4 - 0.001)
    assert d.out_a() == []
    # RACK.rtt + reo_wnd after it was sent: lost; recovery resends it.
    d.advance(t + RTT / 4)
    assert [brief(s) for s in d.out_a()] == [(4101, 301, "A", 1000)]
    assert d.a.stats.fast_retransmits == 1 and d.a.stats.timeouts == 0


def test_a_closed_window_never_leaves_a_loss_timer_in_the_past() -> None:
    # Found over TAP (tests/interop/test_stack_stop.py): a peer that stopped
    # reading closed its window with data still in flight, then went silent.
    # The persist timer owns a closed window (RFC 9293 §3.8.6.1); a loss probe
    # armed from the last send stayed in the past and fired again at once, for
    # ever, and the host spun in handle_timer. Every deadline after handling a
    # timer must lie ahead of the clock.
    small = dataclasses.replace(RACK, receive_buffer=3000)
    d = Duo(RACK, small)
    d.open()
    d.a.send(b"z" * 20000, d.now)
    for _ in range(6):  # B never reads: its window closes
        d.to_b(d.out_a())
        d.now += RTT / 2
        d.to_a(d.out_b())
        d.now += RTT / 2
    d.a.send(b"more", d.now)
    d.out_a()  # and from now on nothing arrives anywhere (black-holed)
    fired = 0
    for _ in range(200):
        deadline = d.a.get_timer()
        if deadline is None or d.a.state is State.CLOSED:
            break
        d.now = max(d.now, deadline)
        d.a.handle_timer(d.now)
        d.out_a()
        after = d.a.get_timer()
        assert after is None or after > d.now, (d.now, after)
        fired += 1
    assert fired > 0
