"""Data transfer: windows, probes, SWS, Nagle, delayed ACK, loss recovery, RFC 5961/7323 checks."""

from __future__ import annotations

import dataclasses

from synack.tcp import events as ev
from synack.tcp.config import TcpConfig
from synack.tcp.seq import SEQ_MOD
from synack.tcp.states import Cause, State
from synack.wire.tcp import TcpOptions
from tests.tcp.harness import PLAIN, Duo, brief, drain, kinds, seg_a_to_b, seg_b_to_a


def test_data_both_ways_exact() -> None:
    d = Duo()
    d.open()
    drain(d.a)
    assert d.a.send(b"hello", d.now) == 5
    (s,) = d.out_a()
    assert brief(s) == (101, 301, "AP", 5)  # PSH on the last segment of a write (MUST-61)
    d.to_b([s])
    assert kinds(drain(d.b)) == ["Connected", "DataAvailable"]
    assert d.b.readable_bytes == 5
    b_out = d.out_b()
    assert [brief(x) for x in b_out] == [(301, 106, "A", 0)]
    assert b_out[0].window == 8000 - 5  # the unread 5 octets are not offered
    assert d.b.receive(3) == b"hel" and d.b.receive() == b"lo" and d.b.receive() == b""


def test_segmentation_by_the_peer_mss() -> None:
    d = Duo(PLAIN, dataclasses.replace(PLAIN, mss=600))
    d.open()
    d.a.send(b"x" * 1500, d.now)
    assert [brief(s) for s in d.out_a()] == [
        (101, 301, "A", 600),
        (701, 301, "A", 600),
        (1301, 301, "AP", 300),
    ]


def test_send_buffer_bounds_and_send_space_event() -> None:
    cfg = dataclasses.replace(PLAIN, send_buffer=3000)
    d = Duo(cfg)
    d.open()
    drain(d.a)
    assert d.a.send(b"z" * 5000, d.now) == 3000
    assert d.a.send_space == 0 and d.a.send(b"more", d.now) == 0
    d.exchange()
    assert d.a.send_space == 3000
    assert kinds(drain(d.a)) == ["SendSpaceAvailable"]


def test_zero_window_probing_and_window_update() -> None:
    d = Duo(PLAIN, dataclasses.replace(PLAIN, receive_buffer=2000))
    d.open()
    assert d.a.send(b"d" * 5000, d.now) == 5000
    d.exchange()
    # B's buffer (2000) is full and its reader asleep: the window is zero.
    assert d.b.readable_bytes == 2000 and d.a.snd_una == 2101 and d.a.snd_wnd == 0
    # SHLD-29/30: first probe after one RTO, then exponential backoff.
    probes = []
    for _ in range(3):
        t = d.fire_next(d.a)
        out = d.out_a()
        probes.append((t, [brief(s) for s in out]))
        d.to_b(out)
        replies = d.out_b()
        assert [brief(s) for s in replies] == [(301, 2101, "A", 0)]
        assert replies[0].window == 0  # a zero window still answers (§3.8.6.1)
        d.to_a(replies)
    assert probes == [
        (1.0, [(2101, 301, "A", 1)]),
        (3.0, [(2101, 301, "A", 1)]),
        (7.0, [(2101, 301, "A", 1)]),
    ]
    assert d.a.state is State.ESTABLISHED  # MUST-37: acknowledged probes keep it open
    assert d.a.stats.window_probes == 3 and d.a.stats.retransmissions == 0
    # The reader wakes: the window update opens the window by a full MSS.
    assert len(d.b.receive(1000)) == 1000
    (update,) = d.out_b()
    assert brief(update) == (301, 2101, "A", 0) and update.window == 1000
    d.to_a([update])
    assert [brief(s) for s in d.out_a()] == [(2101, 301, "A", 1000)]


def test_receiver_sws_avoidance_holds_small_window_updates() -> None:
    d = Duo(PLAIN, dataclasses.replace(PLAIN, receive_buffer=4000))
    d.open()
    d.a.send(b"q" * 4000, d.now)
    d.exchange()
    assert d.a.snd_wnd == 0
    d.b.receive(10)  # 10 free octets: far below min(RCV.BUFF/2, MSS) (MUST-39)
    assert d.out_b() == []
    d.b.receive(990)
    (update,) = d.out_b()
    assert update.window == 1000


def test_sender_sws_avoidance_waits_for_a_useful_window() -> None:
    cfg = dataclasses.replace(PLAIN, nodelay=False)
    d = Duo(cfg, dataclasses.replace(PLAIN, receive_buffer=4000))
    d.open()
    d.a.send(b"w" * 4000, d.now)
    d.exchange()
    d.a.send(b"w" * 3000, d.now)
    # A window of 300 is under Eff.snd.MSS and under half the largest window
    # seen (4000): the sender waits (MUST-38) ...
    d.to_a([seg_b_to_a(301, 4101, "A", window=300)])
    assert d.out_a() == []
    # ... until the override (persist) timer forces what fits.
    d.fire_next(d.a)
    assert [brief(s) for s in d.out_a()] == [(4101, 301, "AP", 300)]


def test_nagle_coalesces_small_writes() -> None:
    d = Duo(dataclasses.replace(PLAIN, nodelay=False))
    d.open()
    d.a.send(b"a", d.now)
    first = d.out_a()
    assert [brief(s) for s in first] == [(101, 301, "AP", 1)]
    d.a.send(b"b", d.now)
    d.a.send(b"c", d.now)
    assert d.out_a() == []  # RFC 896: one small segment in flight at a time
    d.to_b(first)
    d.to_a(d.out_b())
    assert [brief(s) for s in d.out_a()] == [(102, 301, "AP", 2)]
    # With nodelay a small write goes at once, even with data in flight.
    d2 = Duo()
    d2.open()
    d2.a.send(b"a", d2.now)
    assert [brief(s) for s in d2.out_a()] == [(101, 301, "AP", 1)]
    d2.a.send(b"b", d2.now)
    assert [brief(s) for s in d2.out_a()] == [(102, 301, "AP", 1)]


def test_delayed_ack_every_second_segment_and_timer() -> None:
    d = Duo(PLAIN, dataclasses.replace(PLAIN, delayed_ack=True))
    d.open()
    d.a.send(b"1" * 1000, d.now)
    d.to_b(d.out_a())
    assert d.out_b() == []  # SHLD-18: delayed
    assert d.b.get_timer() == 0.2  # MUST-40: under 0.5 s
    d.a.send(b"2" * 1000, d.now)
    d.to_b(d.out_a())
    assert [brief(s) for s in d.out_b()] == [(301, 2101, "A", 0)]  # SHLD-19
    assert d.b.get_timer() is None
    d.a.send(b"3" * 10, d.now)
    d.to_b(d.out_a())
    assert d.out_b() == []
    d.advance(0.2)
    assert [brief(s) for s in d.out_b()] == [(301, 2111, "A", 0)]


def test_out_of_order_reassembly_with_sack_blocks() -> None:
    cfg = dataclasses.replace(PLAIN, sack=True, timestamps=False)
    d = Duo(cfg, cfg)
    d.open()
    d.a.send(bytes(range(250)) * 16, d.now)  # 4000 octets, 4 segments
    segs = d.out_a()
    assert [brief(s)[0] for s in segs] == [101, 1101, 2101, 3101]
    d.to_b([segs[2]])
    (ack,) = d.out_b()
    assert brief(ack) == (301, 101, "A", 0)
    assert ack.options.sack_blocks == ((2101, 3101),)  # RFC 2018 §4
    d.to_b([segs[0]])
    d.to_b([segs[3]])
    (ack2,) = d.out_b()
    assert brief(ack2) == (301, 1101, "A", 0)
    assert ack2.options.sack_blocks == ((2101, 4101),)
    d.to_b([segs[1]])  # fills the gap: everything in order, acknowledged at once
    (ack3,) = d.out_b()
    assert brief(ack3) == (301, 4101, "A", 0) and ack3.options.sack_blocks == ()
    assert d.b.receive() == bytes(range(250)) * 16


def test_fast_retransmit_and_newreno_recovery() -> None:
    cfg = dataclasses.replace(PLAIN, receive_buffer=16000)
    d = Duo(cfg, cfg)
    d.open()
    assert d.a.stats.cwnd == 4000  # RFC 5681 IW for SMSS <= 1095
    d.a.send(b"i" * 4000, d.now)
    for s in d.out_a():  # one ACK per segment (no aggregation here)
        d.to_b([s])
        d.to_a(d.out_b())
    assert d.a.stats.cwnd == 8000  # slow start: + SMSS per ACK
    data = bytes(i % 251 for i in range(8000))
    d.a.send(data, d.now)
    segs = d.out_a()
    assert len(segs) == 8
    lost = segs[1]
    acks = []
    for s in [segs[0], *segs[2:]]:
        d.to_b([s])
        acks += d.out_b()
    assert [brief(a)[1] for a in acks] == [5101] * 7  # 1 new, then 6 duplicates
    d.to_a(acks[:4])
    out = d.out_a()
    # The third duplicate ACK triggers the retransmission of 5101 (RFC 5681 §3.2).
    assert [brief(s) for s in out][:1] == [(5101, 301, "A", 1000)]
    st = d.a.stats
    # ssthresh = FlightSize / 2 (RFC 5681 eq. 4): 7000 octets were outstanding
    # (5101..12101) when the third duplicate arrived; cwnd = ssthresh + 3*SMSS.
    assert st.fast_retransmits == 1 and st.ssthresh == 3500 and st.timeouts == 0
    assert st.cwnd == 3500 + 3000
    d.to_a(acks[4:])
    d.to_b(out)
    d.exchange()
    assert d.b.receive()[4000:] == data
    assert d.a.stats.cwnd <= 3500  # deflated after the full ACK (RFC 6582 §3.2 step 3)
    assert lost.seq == 5101


def test_rto_backoff_and_karn() -> None:
    d = Duo()
    d.open()
    d.a.send(b"r" * 10, d.now)
    assert [brief(s) for s in d.out_a()] == [(101, 301, "AP", 10)]
    times = []
    for _ in range(3):
        times.append(d.fire_next(d.a))
        assert [brief(s) for s in d.out_a()] == [(101, 301, "AP", 10)]
    assert times == [1.0, 3.0, 7.0]  # RTO 1, 2, 4 (RFC 6298 §5.5)
    assert d.a.stats.rto == 8.0 and d.a.stats.retransmissions == 3
    srtt_before = d.a.stats.srtt
    d.to_b([seg_a_to_b(101, 301, "AP", payload=b"r" * 10)])
    d.to_a(d.out_b())
    assert d.a.get_timer() is None
    # Karn (MUST-18): no RTT sample from the retransmitted segment.
    assert d.a.stats.srtt == srtt_before and d.a.stats.rto == 8.0
    # A fresh segment is timed and its sample ends the backoff.
    d.now = 8.0
    d.a.send(b"s", d.now)
    d.to_b(d.out_a())
    d.now = 8.05
    d.to_a(d.out_b())
    assert d.a.stats.rto == 1.0


def test_sequence_numbers_wrap() -> None:
    iss_a, iss_b = SEQ_MOD - 1500, SEQ_MOD - 10
    d = Duo(iss_a=iss_a, iss_b=iss_b)
    d.open()
    a_data = bytes(i % 253 for i in range(5000))
    b_data = bytes(i % 241 for i in range(5000))
    sa = sb = 0
    got_a = bytearray()
    got_b = bytearray()
    for _ in range(50):
        sa += d.a.send(a_data[sa:], d.now)
        sb += d.b.send(b_data[sb:], d.now)
        d.exchange()
        got_b += d.b.receive()
        got_a += d.a.receive()
    assert bytes(got_b) == a_data and bytes(got_a) == b_data
    assert d.a.snd_una == (iss_a + 1 + 5000) % SEQ_MOD == 3501
    assert d.b.snd_una == (iss_b + 1 + 5000) % SEQ_MOD == 4991
    d.a.shutdown_write(d.now)
    d.b.shutdown_write(d.now)
    d.exchange()
    assert d.a.state is State.TIME_WAIT and d.b.state is State.TIME_WAIT


def test_syn_in_established_gets_rate_limited_challenge_acks() -> None:
    cfg = dataclasses.replace(PLAIN, challenge_ack_limit=2)
    d = Duo(cfg, cfg)
    d.open()
    for _ in range(3):
        d.to_b([seg_a_to_b(101, 301, "S")])  # RFC 5961 §4.2
    assert d.b.state is State.ESTABLISHED
    assert [brief(s) for s in d.out_b()] == [(301, 101, "A", 0)]
    assert d.b.stats.challenge_acks == 2
    assert d.b.stats.dropped == {"challenge-ack-limited": 1}


def test_blind_data_injection_checks() -> None:
    d = Duo()
    d.open()
    d.a.send(b"k" * 100, d.now)
    d.exchange()
    # An ACK far below SND.UNA - MAX.SND.WND (RFC 5961 §5.2): dropped.
    d.to_b([seg_a_to_b(201, (301 - 9000) % SEQ_MOD, "A", payload=b"evil")])
    assert d.b.readable_bytes == 100
    assert d.b.stats.dropped == {"ack-too-old": 1}
    # An ACK for data never sent: dropped, answered with an ACK.
    d.to_b([seg_a_to_b(201, 5000, "A", payload=b"evil")])
    assert d.b.readable_bytes == 100
    assert [brief(s)[:3] for s in d.out_b()] == [(301, 201, "A")]


def test_paws_drops_old_timestamps() -> None:
    cfg = dataclasses.replace(PLAIN, timestamps=True)
    d = Duo(cfg, cfg)
    d.open()
    d.now = 5.0
    d.a.send(b"new", d.now)
    (s,) = d.out_a()
    assert s.options.timestamps is not None
    d.to_b([s])
    d.out_b()
    tsval = s.options.timestamps[0]
    old = seg_a_to_b(
        104, 301, "A", payload=b"old", options=TcpOptions(timestamps=(tsval - 1000, 0))
    )
    d.to_b([old])
    assert d.b.readable_bytes == 3 and d.b.stats.dropped == {"paws": 1}
    assert [brief(x) for x in d.out_b()] == [(301, 104, "A", 0)]


def test_keepalive_probes_and_death() -> None:
    cfg = dataclasses.replace(PLAIN, keepalive=True)
    assert (cfg.keepalive_idle, cfg.keepalive_interval, cfg.keepalive_count) == (7200.0, 75.0, 9)
    assert not PLAIN.keepalive  # MUST-25: off by default
    d = Duo(cfg, PLAIN)
    d.open()
    assert d.a.get_timer() == 7200.0
    d.advance(7200.0)
    probe = d.out_a()
    assert [brief(s) for s in probe] == [(100, 301, "A", 0)]  # SEG.SEQ = SND.NXT-1
    d.to_b(probe)
    reply = d.out_b()
    assert [brief(s) for s in reply] == [(301, 101, "A", 0)]
    d.to_a(reply)
    assert d.a.get_timer() == 14400.0  # answered: idle again
    # Now the peer is gone: 9 probes 75 s apart, then the connection dies.
    sent = []
    while d.a.state is State.ESTABLISHED:
        t = d.fire_next(d.a)
        sent.append((t, [brief(s)[2] for s in d.out_a()]))
    assert [t for t, _ in sent] == [14400.0 + 75.0 * i for i in range(10)]
    assert all(flags == ["A"] for _, flags in sent[:9]) and sent[9][1] == ["R"]
    assert d.a.transitions[-1].cause is Cause.TIMEOUT
    assert ev.TimedOut("keepalive") in drain(d.a)
    assert d.a.stats.keepalive_probes == 10  # 1 answered + 9 unanswered


def test_window_scale_large_transfer_in_memory() -> None:
    big = TcpConfig(mss=1460, send_buffer=1 << 20, receive_buffer=1 << 20)
    d = Duo(big, big)
    d.open()
    data = bytes(i % 256 for i in range(600_000))
    sent = 0
    got = bytearray()
    for _ in range(400):
        sent += d.a.send(data[sent:], d.now)
        d.exchange()
        got += d.b.receive()
        d.now += 0.01
        if len(got) == len(data):
            break
    assert bytes(got) == data
    assert d.a.stats.snd_wnd > 65535  # only possible with window scaling


def test_go_back_after_timeout_skips_sacked_data() -> None:
    # RFC 2018 §5: what the receiver SACKed is not sent again; RFC 2018 §8:
    # the scoreboard is cleared by the timeout and rebuilt from fresh SACKs.
    # RFC 6675's loss detection (RACK-TLP's variant: test_rack.py).
    cfg = dataclasses.replace(PLAIN, receive_buffer=16000, sack=True, loss_detection="rfc6675")
    d = Duo(cfg, cfg)
    d.open()
    d.a.send(b"i" * 4000, d.now)
    for s in d.out_a():
        d.to_b([s])
        d.to_a(d.out_b())
    data = bytes(i % 249 for i in range(8000))
    d.a.send(data, d.now)
    segs = d.out_a()
    assert [s.seq for s in segs] == [4101 + 1000 * i for i in range(8)]
    resent = []
    for s in [segs[1], segs[2], segs[3], segs[5], segs[6], segs[7]]:  # 4101 and 8101 lost
        d.to_b([s])
        d.to_a(d.out_b())
        resent += [brief(x)[0] for x in d.out_a()]
    assert d.a.stats.fast_retransmits == 1
    # RFC 6675 recovery resends both holes; both copies are lost too.
    assert resent == [4101, 8101]
    d.fire_next(d.a)  # RTO
    resent = d.out_a()
    assert [brief(s)[0] for s in resent] == [4101]
    d.to_b(resent)
    (ack,) = d.out_b()
    assert brief(ack)[1] == 8101 and ack.options.sack_blocks == ((9101, 12101),)
    d.to_a([ack])
    # Only the hole goes out; 9101..12101 is SACKed and skipped.
    hole = d.out_a()
    assert [brief(s)[:2] for s in hole] == [(8101, 301)]
    d.to_b(hole)
    d.exchange()
    assert d.b.receive()[4000:] == data
    assert d.a.snd_una == 12101


def test_zero_window_probes_unanswered_give_up() -> None:
    d = Duo(PLAIN, dataclasses.replace(PLAIN, receive_buffer=2000))
    d.open()
    d.a.send(b"d" * 5000, d.now)
    d.exchange()
    assert d.a.snd_wnd == 0
    # The peer vanishes: probes at RTO 1, 2, 4, 8 s (R2 = 4 here), then give up.
    times = []
    while d.a.state is State.ESTABLISHED:
        times.append(d.fire_next(d.a))
        d.out_a()
    assert times == [1.0, 3.0, 7.0, 15.0, 31.0]
    assert d.a.stats.window_probes == 4
    assert ev.TimedOut("retransmit") in drain(d.a)


def test_limited_transmit_on_the_first_two_duplicate_acks() -> None:
    # RFC 3042: each of the first two duplicate ACKs releases one new segment.
    d = Duo(PLAIN, dataclasses.replace(PLAIN, receive_buffer=16000))
    d.open()
    d.a.send(b"L" * 6000, d.now)
    segs = d.out_a()
    assert [s.seq for s in segs] == [101, 1101, 2101, 3101]  # IW = 4 * SMSS
    released = []
    for s in segs[1:]:  # 101 is lost
        d.to_b([s])
        d.to_a(d.out_b())
        released.append([(*brief(x)[:2], len(x.payload)) for x in d.out_a()])
    assert released == [
        [(4101, 301, 1000)],  # first duplicate ACK
        [(5101, 301, 1000)],  # second
        [(101, 301, 1000)],  # third: fast retransmit
    ]


def test_replies_to_unacceptable_acks_are_rate_limited() -> None:
    # Two ends that find each other's ACKs unacceptable must not ACK each
    # other forever: one reply per 0.5 s.
    d = Duo()
    d.open()
    stale = seg_a_to_b(50, 301, "A")  # an old pure ACK (SEG.SEQ < RCV.NXT)
    d.to_b([stale])
    assert [brief(s) for s in d.out_b()] == [(301, 101, "A", 0)]
    d.to_b([stale])
    d.to_b([stale])
    assert d.out_b() == []
    d.now = 0.5
    d.to_b([stale])
    assert len(d.out_b()) == 1
    assert d.b.stats.dropped == {"old-ack": 4, "oow-ack-limited": 2}
