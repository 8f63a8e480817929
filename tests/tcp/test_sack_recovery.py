"""RFC 6675 SACK-based loss recovery, against NewReno on the same losses.

A round-trip driver with a manual clock: every segment A sends in one
round reaches B (unless the test drops its first transmission), each of
B's ACKs goes back to A one at a time, and what A sends in answer forms the
next round, one RTT (0.1 s) later. The minimum RTO is 1 s, so a recovery
that finishes within the rounds below did so without a timeout.
"""

from __future__ import annotations

import dataclasses

from synack.tcp.config import TcpConfig
from synack.wire.tcp import TcpOptions
from tests.tcp.harness import PLAIN, Duo, brief, seg_b_to_a

RTT = 0.1
# These scenarios are RFC 6675's loss detection (DupThresh, IsLost, the
# rescue retransmission), kept as its configuration; RACK-TLP's (the
# default with SACK) are in test_rack.py.
SACK = dataclasses.replace(
    PLAIN, send_buffer=64000, receive_buffer=32000, sack=True, loss_detection="rfc6675"
)
NO_SACK = dataclasses.replace(SACK, sack=False)


def warm(d: Duo) -> None:
    """Open and move 4000 octets one ACK at a time: cwnd 4000 -> 8000."""
    d.open()
    d.a.send(b"w" * 4000, d.now)
    for s in d.out_a():
        d.to_b([s])
        d.to_a(d.out_b())
    assert d.a.stats.cwnd == 8000


def rounds_of(
    cfg_a: TcpConfig, cfg_b: TcpConfig, lose: set[int], nbytes: int
) -> tuple[Duo, list[list[int]], list[int]]:
    """Send ``nbytes`` after warm-up, dropping the first copy of each seq in ``lose``.

    Returns the Duo, the seqs A sent in each round, and SND.UNA after each round.
    """
    d = Duo(cfg_a, cfg_b)
    warm(d)
    data = bytes(i % 247 for i in range(nbytes))
    d.a.send(data, d.now)
    flight = d.out_a()
    pending = set(lose)
    rounds: list[list[int]] = []
    una: list[int] = []
    while flight:
        assert len(rounds) < 20
        rounds.append([s.seq for s in flight])
        d.now += RTT
        acks = []
        for s in flight:
            if s.seq in pending:
                pending.discard(s.seq)
                continue
            d.to_b([s])
            acks += d.out_b()
        flight = []
        for a in acks:
            d.to_a([a])
            flight += d.out_a()
        una.append(d.a.snd_una)
    assert d.b.receive()[4000:] == data
    return d, rounds, una


def test_three_losses_in_one_window_sack_vs_newreno() -> None:
    lose = {5101, 7101, 9101}
    d, rounds, una = rounds_of(SACK, SACK, lose, 16000)
    # Round 2 carries limited transmit (12101, 13101), the new data the
    # cumulative ACK of 4101 released (14101, 15101) and the fast
    # retransmit of 5101 on the third duplicate (RFC 6675 §5 step 4). The
    # two other holes go out in round 3 as soon as IsLost() says so and pipe
    # allows (rule 1 of NextSeg), next to new data (rule 2).
    assert rounds == [
        [4101 + 1000 * i for i in range(8)],
        [12101, 13101, 14101, 15101, 5101],
        [7101, 9101, 16101, 17101, 18101],
        [19101],
    ]
    # RecoveryPoint was 16101 (HighData at entry): passed after round 3,
    # every hole and the new data of round 3 acknowledged.
    assert una[:3] == [5101, 7101, 19101]
    st = d.a.stats
    assert (st.timeouts, st.fast_retransmits, st.retransmissions) == (0, 1, 3)
    # ssthresh = cwnd = FlightSize / 2 = 11000 / 2 (step 4.2), unchanged
    # through recovery: no inflation, no partial-ACK deflation.
    assert (st.ssthresh, st.cwnd) == (5500, 5500)

    d2, rounds2, una2 = rounds_of(NO_SACK, NO_SACK, lose, 16000)
    # NewReno learns of one hole per partial ACK: one RTT per loss.
    assert rounds2 == [
        [4101 + 1000 * i for i in range(8)],
        [12101, 13101, 14101, 15101, 5101],
        [16101, 17101, 7101, 18101],
        [19101, 9101],
    ]
    assert una2[:4] == [5101, 7101, 9101, 20101]
    st2 = d2.a.stats
    assert (st2.timeouts, st2.fast_retransmits, st2.retransmissions) == (0, 1, 3)


def test_tail_loss_gets_the_rescue_retransmission() -> None:
    # 5101 and the last segment, 11101, are lost: nothing is SACKed above
    # 11101, so it never IsLost(); NextSeg rule 4 (one rescue per
    # recovery) resends it in the same round as the fast retransmit.
    d, rounds, una = rounds_of(SACK, SACK, {5101, 11101}, 8000)
    assert rounds == [[4101 + 1000 * i for i in range(8)], [5101, 11101]]
    assert una == [5101, 12101]
    assert d.a.stats.timeouts == 0
    # NewReno needs the partial ACK first: one more RTT.
    _, rounds2, una2 = rounds_of(NO_SACK, NO_SACK, {5101, 11101}, 8000)
    assert rounds2 == [[4101 + 1000 * i for i in range(8)], [5101], [11101]]
    assert una2 == [5101, 11101, 12101]


def test_islost_enters_recovery_before_three_duplicates() -> None:
    # RFC 6675 §5 step 2: one ACK SACKing more than (DupThresh - 1) * SMSS
    # above SND.UNA (here B's ACKs for four segments were aggregated into
    # one) is enough to declare the first hole lost.
    d = Duo(SACK, SACK)
    warm(d)
    d.a.send(bytes(8000), d.now)
    segs = d.out_a()
    d.to_b([segs[0]])
    d.to_a(d.out_b())
    d.out_a()
    d.to_b(segs[2:6])  # 5101 lost
    (ack,) = d.out_b()
    assert brief(ack)[1] == 5101 and ack.options.sack_blocks == ((6101, 10101),)
    d.to_a([ack])
    out = d.out_a()
    assert [brief(s)[0] for s in out][:1] == [5101]
    assert d.a.stats.fast_retransmits == 1 and d.a.stats.dupacks_in == 1


def test_without_sack_negotiated_recovery_is_newreno() -> None:
    # A offers SACK, B does not: A falls back to RFC 6582 (cwnd inflated
    # by 3 * SMSS on entry).
    d = Duo(SACK, NO_SACK)
    warm(d)
    d.a.send(bytes(8000), d.now)
    segs = d.out_a()
    for s in [segs[0], *segs[2:5]]:  # 5101 lost, three duplicates
        d.to_b([s])
        d.to_a(d.out_b())
    st = d.a.stats
    assert st.fast_retransmits == 1
    assert (st.ssthresh, st.cwnd) == (3500, 3500 + 3 * 1000)


def test_bogus_sack_blocks_are_ignored() -> None:
    d = Duo(SACK, SACK)
    warm(d)
    d.a.send(bytes(4000), d.now)
    d.out_a()
    assert (d.a.snd_una, d.a.snd_max) == (4101, 8101)
    bogus = (
        (3101, 4101),  # below SND.UNA (a D-SACK, RFC 2883)
        (8101, 9101),  # never sent
        (7101, 5101),  # inverted
        (0xFFFFFF00, 200),  # across the wrap, far away
    )
    seg = seg_b_to_a(301, 4101, "A", options=TcpOptions(sack_blocks=bogus))
    for _ in range(4):
        d.to_a([seg])
    assert d.a._sacked == []  # the scoreboard itself is the outcome
    assert d.a.stats.fast_retransmits == 0 and d.a.stats.dupacks_in == 0
    # A genuine block alongside the bogus ones is taken, clipped to nothing else.
    good = seg_b_to_a(301, 4101, "A", options=TcpOptions(sack_blocks=((5101, 6101), *bogus[:3])))
    d.to_a([good])
    assert d.a._sacked == [(5101, 6101)]
    assert d.a.stats.dupacks_in == 1
    # A plain cumulative ACK beyond the block (no SACK option: the header
    # prediction case) empties the scoreboard; nothing stale stays below
    # SND.UNA.
    d.to_a([seg_b_to_a(301, 7101, "A")])
    assert d.a.snd_una == 7101
    assert d.a._sacked == []
