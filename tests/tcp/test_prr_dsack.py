"""D-SACK (RFC 2883) generation and use (undo, RFC 3708), and PRR (RFC 6937), on the manual clock."""

from __future__ import annotations

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
