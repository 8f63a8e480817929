"""The parts split out of the connection, on their own: timers, timestamps, SACK, recovery, pair."""

from __future__ import annotations

from synack.tcp.config import TcpConfig
from synack.tcp.recovery import LossRecovery
from synack.tcp.sack import SackScoreboard, lost_edge, unsacked
from synack.tcp.seq import SEQ_MOD, seq_add, seq_dist
from synack.tcp.stats import TcpStats
from synack.tcp.timers import Timer, Timers
from synack.tcp.timestamps import PAWS_IDLE, Timestamps
from tests.tcp.harness import Duo, brief, seg_a_to_b


def test_seq_add_and_dist_wrap() -> None:
    top = SEQ_MOD - 3
    assert seq_add(top, 5) == 2 and seq_add(2, -5) == top
    assert seq_dist(2, top) == 5 and seq_dist(top, 2) == SEQ_MOD - 5


def test_timers_next_deadline_and_expiry_order() -> None:
    t = Timers()
    assert t.next_deadline() is None
    t.keepalive, t.rexmit, t.delack, t.close = 9.0, 3.0, 2.0, 20.0
    assert t.next_deadline() == 2.0
    assert list(t.expired(9.0)) == [Timer.REXMIT, Timer.DELACK, Timer.KEEPALIVE]
    assert (t.rexmit, t.delack, t.keepalive, t.close) == (None, None, None, 20.0)
    assert t.next_deadline() == 20.0
    t.stop_all()
    assert t.next_deadline() is None


def test_timers_expiry_is_lazy() -> None:
    # Handling one expiry may stop another that was due as well (a segment
    # sent by the persist timer stops the delayed ACK): it is then not reported.
    t = Timers()
    t.persist, t.delack = 1.0, 1.0
    seen = []
    for timer in t.expired(5.0):
        seen.append(timer)
        t.delack = None
    assert seen == [Timer.PERSIST]


def test_timestamps_paws_recent_and_rtt() -> None:
    ts = Timestamps(offset=SEQ_MOD - 500)  # TSval wraps after 0.5 s
    ts.agree(True, (1000, 0), now=0.0)
    assert ts.ok and ts.recent == 1000 and ts.recent_valid
    assert ts.tsval(1.0) == 500 and ts.option(1.0).timestamps == (500, 1000)
    assert ts.option(1.0) is ts.option(1.0)  # same millisecond, same options
    # RFC 7323 §4.1: the RTT from an echoed TSval, across the wrap.
    assert ts.rtt(SEQ_MOD - 100, now=1.0) == 0.6
    # §5.3: older than TS.Recent is rejected, newer is not.
    assert ts.paws_rejects(999, now=1.0) and not ts.paws_rejects(1001, now=1.0)
    assert ts.in_order(1000, now=1.0) and not ts.in_order(999, now=1.0)
    # §4.3: TS.Recent moves only for a segment covering Last.ACK.sent.
    ts.last_ack_sent = 5000
    ts.update_recent(5001, 2000, now=2.0)
    assert ts.recent == 1000
    ts.update_recent(5000, 2000, now=2.0)
    assert (ts.recent, ts.recent_time) == (2000, 2.0)
    # §5.5: after 24 days of idleness TS.Recent is invalid and rejects nothing.
    assert not ts.paws_rejects(1, now=2.0 + PAWS_IDLE + 1)
    assert not ts.recent_valid
    ts.agree(True, None, now=0.0)
    assert not ts.ok


def test_sack_scoreboard_update_trim_skip() -> None:
    una = SEQ_MOD - 1000  # the scoreboard spans the wrap
    top = seq_add(una, 10_000)
    board = SackScoreboard()
    # New octets counted once; a D-SACK below SND.UNA and a block beyond
    # SND.MAX are ignored.
    blocks = ((seq_add(una, 2000), seq_add(una, 3000)), (seq_add(una, 5000), seq_add(una, 6000)))
    assert board.update(blocks, una, top) == 2000
    assert board.update(((seq_add(una, 2500), seq_add(una, 3500)),), una, top) == 500
    assert board.update(((seq_add(una, -500), una), (top, seq_add(top, 10))), una, top) == 0
    assert board.relative(una) == [(2000, 3500), (5000, 6000)]
    assert board.skip(seq_add(una, 2100)) == (seq_add(una, 3500), None)
    assert board.skip(seq_add(una, 4000)) == (None, 1000)
    board.trim(seq_add(una, 3000))
    assert board.relative(una) == [(3000, 3500), (5000, 6000)]
    board.clear()
    assert board.ranges == []


def test_lost_edge_and_unsacked() -> None:
    rel = [(1000, 2000), (3000, 4000), (5000, 5500)]
    # Three ranges above octet 999: everything below 1000 unSACKed is lost.
    assert lost_edge(rel, mss=1000) == 1000
    # More than 2 * SMSS SACKed octets above: with an MSS of 500 already
    # the top two ranges (1500 octets) count.
    assert lost_edge(rel, mss=500) == 3000
    assert lost_edge(rel[2:], mss=1000) == 0
    assert unsacked(rel, 0, 6000) == 6000 - 2500
    assert unsacked(rel, 1500, 3500) == 1000


def test_recovery_sack_dupacks_enter_recovery_and_choose_the_hole() -> None:
    stats = TcpStats()
    rec = LossRecovery(TcpConfig(min_rto=0.2), iss=0, mss=1000, stats=stats)
    una, snd_max = 1, 10_001
    for i in range(3):
        sacked = rec.board.update(((1001 + 1000 * i, 2001 + 1000 * i),), una, snd_max)
        rec.on_sack_dupack(una, sacked, True, True, una, snd_max, 1000)
    # RFC 6675 §5 step 4: the third duplicate enters recovery, cwnd = ssthresh.
    assert rec.cc.in_recovery and rec.cc.sack_recovery and rec.sack_first
    assert (rec.cc.ssthresh, rec.cc.cwnd) == (5000, 5000)
    assert (stats.dupacks_in, stats.fast_retransmits) == (3, 1)
    assert rec.first_hole(una, snd_max, 1000) == 1000
    rel, edge, pipe = rec.pipe(una, snd_max, 1000)
    assert rel == [(1000, 4000)] and edge == 1000
    assert pipe == 10_000 - 3000 - 1000  # the lost first segment is not in the network
    # NextSeg rule 1: the lost hole at SND.UNA.
    assert rec.next_seg(rel, edge, una, True, 10_000, 10_000, 20_000, 1000) == (1, 0, 1000)
    rec.resent(1, una, 0, 1000)
    assert rec.high_rxt == 1001


def test_pair_listener_answers_a_non_syn_with_a_reset() -> None:
    d = Duo()
    d.to_b([seg_a_to_b(100, 777, "A")])
    (rst,) = d.out_b()
    assert brief(rst) == (777, 0, "R", 0)
    assert d.listener_replies == 1 and d.server is None
