"""A passive open's steps with their arithmetic written out (the SYN's options
taken, the SYN,ACK's numbers, the handshake ACK): each checked against the
RFC's formulas in the seq helpers' terms, on the edges (the sequence circle's
wrap, tiny and huge MSS, window shifts over 14, buffers over 64 KiB), and the
window shift a configuration offers against its definition."""

from __future__ import annotations

import dataclasses
import itertools
from ipaddress import IPv4Address

import pytest

from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection
from synack.tcp.seq import seq_add
from synack.tcp.states import State
from synack.wire.tcp import TcpFlags, TcpOptions, TcpSegment

L = (IPv4Address("10.213.0.2"), 80)
R = (IPv4Address("10.213.0.1"), 40000)
F = TcpFlags


def offered_shift(cfg: TcpConfig) -> int:
    """RFC 7323 §2.2: the smallest shift that fits the receive buffer in 16 bits (<= 14)."""
    if not cfg.window_scale:
        return 0
    shift = 0
    while (cfg.receive_buffer >> shift) > 65535 and shift < 14:
        shift += 1
    return shift


@pytest.mark.parametrize(
    "buf", [1, 65535, 65536, 131071, 256 * 1024, 4 << 20, 65535 << 13, 65535 << 14]
)
def test_offered_shift_is_worked_out_once_right(buf: int) -> None:
    cfg = TcpConfig(receive_buffer=buf)
    assert cfg.rcv_wscale == offered_shift(cfg)
    other = dataclasses.replace(cfg, receive_buffer=max(1, buf // 3))
    assert other.rcv_wscale == offered_shift(other)  # replace() works it out again
    if buf <= 65535:
        off = TcpConfig(receive_buffer=buf, window_scale=False)
        assert off.rcv_wscale == 0
    assert cfg == TcpConfig(receive_buffer=buf) and hash(cfg) == hash(TcpConfig(receive_buffer=buf))


CONFIGS = [
    TcpConfig(),
    TcpConfig(timestamps=False, sack=False),
    TcpConfig(window_scale=False, receive_buffer=32 * 1024),
    TcpConfig(mss=536, receive_buffer=4 << 20),
]


def syn(seq: int, mss: int | None, wscale: int | None, window: int, ts: bool) -> TcpSegment:
    opts = TcpOptions(
        mss=mss, wscale=wscale, sack_permitted=True, timestamps=(77, 0) if ts else None
    )
    return TcpSegment(R[1], L[1], seq, 0, F.SYN, window, options=opts)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_syn_taken_and_syn_ack_made_as_the_formulas_say(cfg: TcpConfig) -> None:
    mask = 2**32 - 1
    for seq, iss, mss, wscale, window, ts in itertools.product(
        [0, 1, mask, mask - 5, 0x80000000],
        [0, mask, 0x7FFFFFFF],
        [None, 0, 1, 88, 536, 1460, 9000],
        [None, 0, 3, 14, 15, 255],
        [0, 1000, 65535],
        [True, False],
    ):
        conn = TcpConnection.accept_syn(syn(seq, mss, wscale, window, ts), L, R, cfg, iss, 5.0)
        agreed = cfg.window_scale and wscale is not None
        assert conn.rcv_nxt == seq_add(seq, 1) and conn.irs == seq and conn.snd_wl1 == seq
        assert conn._wscale_agreed is agreed
        assert conn._snd_wscale == (min(wscale or 0, 14) if agreed else 0)
        assert conn._rcv_wscale == (cfg.rcv_wscale if agreed else 0)
        peer_mss = max(mss if mss else 536, cfg.min_peer_mss)
        ts_ok = cfg.timestamps and ts
        assert conn._snd_mss == max(min(peer_mss, cfg.mss) - (12 if ts_ok else 0), 1)
        assert conn.snd_wnd == window and conn._max_snd_wnd == window
        # The SYN,ACK: the unscaled window (RFC 7323 §2.2) and the numbers it moves.
        (out,) = conn.segments_to_send(5.0)
        win = min(conn._rcvbuf.free, 65535)
        assert out.flags == F.SYN | F.ACK and out.seq == iss and out.ack == seq_add(seq, 1)
        assert out.window == win == conn._syn_window
        assert conn._rcv_adv == seq_add(conn.rcv_nxt, win)
        assert conn.snd_nxt == conn.snd_max == seq_add(iss, 1)
        assert out.options.wscale == (cfg.rcv_wscale if agreed else None)
        # Every option as the keyword constructor makes it (the SYN,ACK's are
        # filled positionally): what the peer offered, TSval = offset + ms
        # (RFC 7323 §5.4, the ISS is the offset) and TSecr = its TSval.
        assert type(out.options) is TcpOptions and out.options == TcpOptions(
            mss=cfg.mss,
            wscale=cfg.rcv_wscale if agreed else None,
            sack_permitted=cfg.sack,
            timestamps=(seq_add(iss, 5000), 77) if ts_ok else None,
        )
        assert type(out) is TcpSegment and (out.payload, out.urgent) == (b"", 0)
        # Asked again (a duplicate SYN): the same numbers, nothing moves.
        conn._syn_needed = True
        (again,) = conn.segments_to_send(5.1)
        assert again.seq == iss and conn.snd_nxt == conn.snd_max == seq_add(iss, 1)


@pytest.mark.parametrize("iss", [0, 2**32 - 1, 0x7FFFFFFF, 0x80000000])
def test_handshake_ack_across_the_wrap(iss: int) -> None:
    """SYN-RECEIVED takes an ACK of our SYN (SND.UNA < SEG.ACK =< SND.NXT) and
    nothing else, wherever the ISS lies on the circle."""
    cfg = TcpConfig()
    for ack, ok in [
        (seq_add(iss, 1), True),
        (iss, False),
        (seq_add(iss, 2), False),
        (seq_add(iss, -1), False),
        (seq_add(iss, 0x80000000), False),
    ]:
        conn = TcpConnection.accept_syn(syn(1000, 1460, 7, 500, True), L, R, cfg, iss, 5.0)
        (synack,) = conn.segments_to_send(5.0)
        assert synack.options.timestamps is not None
        opts = TcpOptions(timestamps=(78, synack.options.timestamps[0]))
        conn.receive_segment(TcpSegment(R[1], L[1], 1001, ack, F.ACK, 300, options=opts), 5.01)
        if ok:
            assert conn.state is State.ESTABLISHED
            assert conn.snd_una == conn.snd_nxt == seq_add(iss, 1)
            assert conn.snd_wnd == 300 << 7 == conn._max_snd_wnd
            assert (conn.snd_wl1, conn.snd_wl2) == (1001, ack)
        else:
            assert conn.state is State.SYN_RECEIVED  # answered with a RST, still waiting
            assert conn.snd_una == iss
