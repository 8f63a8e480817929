"""RACK with more holes than the scoreboard used to keep (a drop-tail burst).

A drop-tail queue that overflows drops every other segment for a while: one
hole per two segments, more SACK ranges than the 32 the scoreboard used to
keep. The blocks above the 32nd range were forgotten, RACK never saw them
SACKed, and segments the peer held were sent again (each answered by a
D-SACK). On the manual clock: exactly the lost segments are resent, once.
"""

from __future__ import annotations

import dataclasses

from synack.tcp.sack import MAX_RANGES, SackScoreboard
from tests.tcp.test_rack import RACK, RTT, Path, at, warm

WIDE = dataclasses.replace(RACK, send_buffer=200_000, receive_buffer=200_000, window_scale=True)


def test_every_other_segment_lost_resends_exactly_the_holes_once() -> None:
    d = warm(WIDE)
    d.a._cc.cwnd = 100_000  # a window of 100 segments (the burst a slow start overshoots with)
    t0 = d.now
    d.a.send(bytes(100_000), d.now)
    first = 4101
    lost = [first + 2000 * i for i in range(45)]  # 45 holes: 45 SACK ranges above them
    p = Path(d, {s: 1 for s in lost})
    p.send(d.out_a())
    assert len(p.log) == 100 and all(t == at(t0) for t, _, _ in p.log)
    p.run(d.a, t0 + 5)
    resent = [(t, seq) for t, seq, _ in p.log[100:] if seq < first + 100_000]
    # Every hole resent exactly once, one RTT after it left (when the SACKs
    # of the segments after it arrived), and nothing the peer held.
    assert sorted(seq for _, seq in resent) == lost
    assert all(t == at(t0 + RTT) for t, _ in resent)
    st = d.a.stats
    assert (st.timeouts, st.dsacks_in, st.retransmissions) == (0, 0, 45)
    assert d.a.snd_una == d.a.snd_max  # all delivered


def test_scoreboard_keeps_more_ranges_than_one_burst_makes() -> None:
    board = SackScoreboard()
    una, top = 1000, 1000 + 400 * 100
    for i in range(150):  # 150 separate one-octet-gap ranges, reported highest first
        lo = una + 100 * (149 - i) + 1
        assert board.update(((lo, lo + 99),), una, top) == 99
    assert len(board.ranges) == 150 <= MAX_RANGES
    # A block bridging three ranges merges them and counts only the gaps.
    assert board.update(((una + 1, una + 300),), una, top) == 2
    assert board.ranges[0] == (una + 1, una + 300)
    assert len(board.ranges) == 148
    # Stale, forged and D-SACK blocks are ignored.
    assert board.update(((una - 500, una - 10), (top, top + 100)), una, top) == 0
