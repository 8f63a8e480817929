"""D-SACK (RFC 2883) generation and use (undo, RFC 3708), and PRR (RFC 6937), on the manual clock."""

from __future__ import annotations

from synack.tcp.rack import REO_WND_PERSIST, Rack
from synack.wire.tcp import TcpSegment
from tests.tcp.harness import Duo, brief, seg_a_to_b
from tests.tcp.test_rack import RACK, RTT, warm


def grow(d: Duo, cwnd: int) -> None:
    """Send rounds of a full cwnd, each ACK one RTT after its segment, until cwnd >= ``cwnd``."""
    while d.a.stats.cwnd < cwnd:
        d.a.send(bytes(d.a.stats.cwnd), d.now)
        for s in d.out_a():
            d.to_b([s])
            ack = d.out_b()
            d.now += RTT
            d.to_a(ack)
            d.now -= RTT
        d.now += RTT
        assert d.out_a() == []


# -- D-SACK generation ----------------------------------------------------------------


def test_duplicate_segment_is_reported_in_a_dsack_block() -> None:
    d = Duo(RACK, RACK)
    d.open()
    d.a.send(b"d" * 1000, d.now)
    (seg,) = d.out_a()
    d.to_b([seg])
    (ack,) = d.out_b()
    assert brief(ack) == (301, 1101, "A", 0) and ack.options.sack_blocks == ()
    d.to_b([seg])  # the same segment again
    (ack,) = d.out_b()
    assert brief(ack) == (301, 1101, "A", 0)
    assert ack.options.sack_blocks == ((101, 1101),)  # RFC 2883 §4: below the ACK
    d.to_a([ack])
    assert d.a.stats.dsacks_in == 1


def test_partly_old_segment_dsacks_its_old_part_and_the_rest_is_taken() -> None:
    d = Duo(RACK, RACK)
    d.open()
    d.to_b([_from_a(101, 1000)])
    d.out_b()
    d.to_b([_from_a(601, 1000)])  # 601..1101 old, 1101..1601 new
    (ack,) = d.out_b()
    assert brief(ack) == (301, 1601, "A", 0)
    assert ack.options.sack_blocks == ((601, 1101),)
    assert d.b.receive() == b"x" * 1500


def test_dsack_block_goes_first_before_the_sack_blocks() -> None:
    d = Duo(RACK, RACK)
    d.open()
    d.to_b([_from_a(101, 500)])
    d.out_b()
    d.to_b([_from_a(1101, 500)])  # out of order: a gap at 601
    (ack,) = d.out_b()
    assert ack.options.sack_blocks == ((1101, 1601),)
    d.to_b([_from_a(101, 500)])  # a duplicate of old data
    (ack,) = d.out_b()
    assert brief(ack) == (301, 601, "A", 0)
    assert ack.options.sack_blocks == ((101, 601), (1101, 1601))


def test_out_of_order_duplicate_leads_a_dsack_block_then_its_block() -> None:
    d = Duo(RACK, RACK)
    d.open()
    d.to_b([_from_a(101, 500)])
    d.out_b()
    d.to_b([_from_a(1101, 500)])  # out of order: a gap at 601
    d.to_b([_from_a(2101, 500)])  # another block
    d.out_b()
    d.to_b([_from_a(1101, 500)])  # again: held already, above RCV.NXT
    (ack,) = d.out_b()
    assert brief(ack) == (301, 601, "A", 0)
    # RFC 2883 §4 (example 4.2.1's shape): the D-SACK block, then the block
    # holding it (here the same octets), then the other blocks.
    assert ack.options.sack_blocks == ((1101, 1601), (1101, 1601), (2101, 2601))
    d.to_b([_from_a(3101, 500)])
    (ack,) = d.out_b()
    # Reported once: the next ACK has the SACK blocks only, the most
    # recently received first (RFC 2018 §4).
    assert ack.options.sack_blocks == ((3101, 3601), (1101, 1601), (2101, 2601))


def test_partly_held_out_of_order_segment_dsacks_the_held_part() -> None:
    d = Duo(RACK, RACK)
    d.open()
    d.to_b([_from_a(101, 500)])
    d.out_b()
    d.to_b([_from_a(1101, 500)])  # held: 1101..1601
    d.out_b()
    d.to_b([_from_a(1301, 500)])  # 1301..1601 held already, 1601..1801 new
    (ack,) = d.out_b()
    assert brief(ack) == (301, 601, "A", 0)
    assert ack.options.sack_blocks == ((1301, 1601), (1101, 1801))


def test_no_dsack_without_sack() -> None:
    d = Duo()
    d.open()
    d.to_b([_from_a(101, 1000)])
    d.out_b()
    d.to_b([_from_a(101, 1000)])
    (ack,) = d.out_b()
    assert brief(ack) == (301, 1101, "A", 0) and ack.options.sack_blocks == ()


def _from_a(seq: int, n: int) -> TcpSegment:
    return seg_a_to_b(seq, 301, "A", payload=b"x" * n)


# -- undo of a spurious fast retransmit ----------------------------------------------


def test_reordering_fast_retransmit_is_undone_by_the_dsack() -> None:
    d = warm(RACK)
    t0 = d.now
    d.a.send(bytes(8000), d.now)
    segs = d.out_a()
    d.now = t0 + RTT / 2
    for s in segs[1:]:  # segs[0] is only late, not lost
        d.to_b([s])
    acks = d.out_b()
    d.now = t0 + RTT
    resent = []
    for a in acks:
        d.to_a([a])
        resent += d.out_a()
    # RACK: three segments SACKed above it and older than RACK.rtt -> lost.
    assert brief(resent[0]) == (4101, 301, "A", 1000)
    st = d.a.stats
    assert (st.fast_retransmits, st.ssthresh) == (1, 4000)
    d.to_b([segs[0]])  # the original arrives after all
    d.to_b(resent)  # ... and then the retransmission: a duplicate
    acks = d.out_b()
    assert acks[-1].options.sack_blocks[0] == (4101, 5101)  # D-SACK
    d.now = t0 + 2 * RTT
    d.to_a(acks)
    st = d.a.stats
    assert (st.dsacks_in, st.undos) == (1, 1)
    assert st.cwnd >= 8000 and st.ssthresh > 8000  # back to what it was (RFC 3708 / Linux)


def test_a_dsack_round_widens_reo_wnd_so_the_same_reordering_is_waited_out() -> None:
    d = warm(RACK)
    t0 = d.now
    rack = d.a._rack
    assert rack is not None and rack.reo_wnd_mult == 1
    # Round 1 as above: 4101 is only late, RACK resends it, the D-SACK says so.
    d.a.send(bytes(8000), d.now)
    segs = d.out_a()
    d.now = t0 + RTT / 2
    d.to_b(segs[1:])
    acks = d.out_b()
    d.now = t0 + RTT
    d.to_a(acks)
    resent = d.out_a()
    assert [brief(s)[0] for s in resent if brief(s)[0] < 12101] == [4101]
    d.to_b([segs[0]])
    d.to_b(resent)
    acks = d.out_b()
    d.now = t0 + 2 * RTT
    d.to_a(acks)
    d.out_a()
    # RFC 8985 §6.2 step 4: one D-SACK round, reo_wnd = 2 * min_RTT / 4.
    assert (rack.reo_wnd_mult, rack.reordering_seen) == (2, True)
    assert abs(rack.reo_wnd(False, d.a.stats.srtt) - RTT / 2) < 1e-9
    # Round 2: a segment 0.4 RTT late. RACK waits reo_wnd (0.5 RTT) past
    # RACK.rtt before calling it lost, so the original's SACK comes first and
    # nothing is resent.
    d.now = t1 = round(t0 + 3 * RTT, 9)
    d.a.send(bytes(4000), d.now)
    segs = d.out_a()
    late = segs[0]
    d.now = t1 + RTT / 2
    d.to_b(segs[1:])
    acks = d.out_b()
    d.now = t1 + RTT
    d.to_a(acks)
    assert [s for s in d.out_a() if s.payload and s.seq == late.seq] == []
    deadline = rack.deadline
    assert deadline is not None and abs(deadline - (t1 + RTT + RTT / 2)) < 1e-9
    d.now = t1 + 0.9 * RTT
    d.to_b([late])
    acks = d.out_b()
    d.now = t1 + 1.4 * RTT
    d.to_a(acks)
    assert d.out_a() == [] and d.a.snd_una == d.a.snd_max
    st = d.a.stats
    assert (st.fast_retransmits, st.retransmissions) == (1, 1)  # round 1's only


def test_reo_wnd_falls_back_after_16_recoveries_without_a_dsack() -> None:
    rack = Rack()
    rack.min_rtt = 0.1
    rack.on_dsack(una=1000, snd_nxt=5000)
    rack.on_dsack(una=2000, snd_nxt=6000)  # same round (SND.UNA < 5000): no change
    assert rack.reo_wnd_mult == 2
    rack.on_dsack(una=5000, snd_nxt=9000)  # the round ended: another one
    assert rack.reo_wnd_mult == 3
    assert abs(rack.reo_wnd(False, srtt=1.0) - 3 * 0.1 / 4) < 1e-12
    assert rack.reo_wnd(False, srtt=0.05) == 0.05  # capped at SRTT
    for _ in range(REO_WND_PERSIST - 1):
        rack.recovery_ended()
    assert rack.reo_wnd_mult == 3
    rack.recovery_ended()
    assert rack.reo_wnd_mult == 1


# -- PRR ---------------------------------------------------------------------------


def test_prr_sends_one_segment_per_two_delivered_above_ssthresh() -> None:
    d = warm(RACK)
    grow(d, 16000)
    assert d.a.stats.cwnd == 16000
    t0 = d.now
    d.a.send(bytes(32000), d.now)
    segs = d.out_a()
    assert len(segs) == 16
    first = segs[0].seq
    d.now = t0 + RTT
    sent_per_ack = []
    for s in segs[1:]:  # segs[0] is lost
        d.to_b([s])
        d.b.receive()
        (ack,) = d.out_b()
        d.to_a([ack])
        sent_per_ack.append([brief(x)[0] for x in d.out_a()])
    st = d.a.stats
    # Limited transmit (RFC 3042) on the first two SACKs: FlightSize 18000
    # when the third shows segs[0] lost, so ssthresh = 9000, RecoverFS = 18000.
    assert (st.ssthresh, st.fast_retransmits) == (9000, 1)
    new = first + 16000
    assert sent_per_ack == [
        [new],
        [new + 1000],
        # The loss goes at once (RFC 6675 (4.3)); then while pipe (15000,
        # falling) > ssthresh: sndcnt = ceil(prr_delivered * 9000 / 18000)
        # - prr_out, one new segment per 2000 octets delivered (RFC 6937 §3).
        [first],
        [],
        [],
        [],
        [new + 2000],
        [],
        [new + 3000],
        [],
        # pipe reached ssthresh (9000): the slow-start reduction bound keeps
        # it there, one segment out per segment delivered.
        [],
        [new + 4000],
        [new + 5000],
        [new + 6000],
        [new + 7000],
    ]
    assert st.cwnd == 9000  # pipe + sndcnt; recovery ends at ssthresh
