"""ACK filtering (stack/gro.py): a run of pure ACKs of one connection in a
batch goes to TCP as its last ACK, standing for all. A bulk sender fed the
same ACKs in batches with it on and off sends the same frames, keeps the same
TCB variables (SND.UNA, SND.WND, cwnd) and counters (but
``tcp-acks-filtered``); anything unusual in a run (a duplicate ACK, a bad
checksum, SACK, a TSval going back, another flow) is taken frame by frame,
with the same outcome."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from synack.stack.host import Host, TcpStream
from synack.tcp.config import TcpConfig
from synack.tcp.hystart import HyStart
from synack.tcp.states import State
from synack.wire.checksum import internet_checksum
from tests.stack.netfix import two_hosts
from tests.stack.test_fast_paths import B

_ACK_AT = 14 + 20 + 8  # SEG.ACK in a frame of an option-less IPv4 packet


def _pair(filtering: bool, **kw: object) -> tuple[Host, Host, TcpStream, TcpStream]:
    """A (the receiver) connected to B (the bulk sender); B's batches are
    filtered or not."""
    lan, a, b = two_hosts(**kw)
    b.coalesce = filtering
    a.coalesce = False
    listener = b.tcp_listen(80)
    client = a.tcp_connect((B, 80), lan.now)
    lan.run()
    server = listener.accept()
    assert server is not None and server.conn.state is State.ESTABLISHED
    return a, b, client, server


def _tcb(s: TcpStream) -> tuple[object, ...]:
    c = s.conn
    return (c.snd_una, c.snd_nxt, c.snd_wnd, c._cc.cwnd, c._cc.ssthresh, c._cc.dupacks)


def _hystart(s: TcpStream) -> tuple[object, ...]:
    """HyStart++'s state (RFC 9406 §4.2), None once it is over."""
    hs = s.conn._recovery.hystart
    if hs is None:
        return (None, s.conn._cc.ss_divisor)
    return (
        hs.window_end, hs.last_min, hs.current_min, hs.samples, hs.in_css,
        hs.css_baseline, hs.css_rounds, hs.open, s.conn._cc.ss_divisor,
    )  # fmt: skip


def _download(filtering: bool, size: int, read_every: int, queue_at: int = 0) -> tuple[object, ...]:
    """B sends ``size`` octets; A takes B's frames one by one, ACKing as it
    goes (every second segment, as the kernel does), and its ACKs reach B in
    one batch per round (one read of the TAP). A's program reads every
    ``read_every`` rounds. ``queue_at``: from that round on, A's ACKs reach
    B 10 ms late (a queue: HyStart++ leaves slow start)."""
    a, b, client, server = _pair(filtering)
    data = random.Random(3).randbytes(size)
    sent, got = 0, bytearray()
    out_b: list[bytes] = []
    tcbs = []
    now = 1.0
    for i in range(20_000):
        if sent < size:
            sent += server.send(data[sent : sent + 65536], now)
        frames = b.frames_to_send()
        out_b += frames
        acks: list[bytes] = []
        for f in frames:
            a.receive_frame(f, now)
            acks += a.frames_to_send()
        if i % read_every == 0:
            got += client.receive(1 << 20, now)
            acks += a.frames_to_send()
        late = 0.01 if queue_at and i >= queue_at else 0.0
        now += late
        b.receive_frames(acks, now)
        tcbs.append((_tcb(server), _hystart(server)))
        if len(got) == size:
            break
        now += 0.001
        if not frames and not acks:
            now += 0.2  # a timer (delayed ACK, persist) runs
            for h in (a, b):
                h.handle_timer(now)
    assert bytes(got) == data
    counters = Counter({k: v for k, v in b.counters.items() if k != "tcp-acks-filtered"})
    stats = server.conn.stats_counters
    return out_b, tcbs, counters, (stats.segments_in, stats.hystart_exits), b.counters


def test_a_bulk_send_is_the_same_with_and_without_ack_filtering() -> None:
    on = _download(True, 3_000_000, 1)
    off = _download(False, 3_000_000, 1)
    assert on[0] == off[0]  # every frame B sent, in order, byte for byte
    assert on[1] == off[1]  # SND.UNA, SND.NXT, SND.WND, cwnd, ssthresh after each batch
    assert on[2:4] == off[2:4]
    filtered = on[4]["tcp-acks-filtered"]  # type: ignore[index]
    assert filtered > on[2]["tcp-in"] // 3  # type: ignore[index]
    assert off[4]["tcp-acks-filtered"] == 0  # type: ignore[index]


@pytest.mark.parametrize("queue_at", [0, 12])
def test_hystart_rounds_are_the_same_with_and_without_ack_filtering(
    queue_at: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While a HyStart++ round samples RTTs (RFC 9406 §4.2), a run whose
    # ACKs share one TSecr (one sample, N times) goes to TCP as one ACK
    # unless it would enter CSS part-way; HyStart++'s variables after each
    # batch, CSS and the exit from slow start are those of the ACKs one by one.
    runs: list[int] = []
    real = HyStart.on_ack_run

    def counted(hs: HyStart, ack: int, snd_max: int, rtt: float | None, n: int) -> int:
        runs.append(n)
        return real(hs, ack, snd_max, rtt, n)

    monkeypatch.setattr(HyStart, "on_ack_run", counted)
    on = _download(True, 3_000_000, 1, queue_at)
    assert runs and max(runs) > 1  # runs were taken while a round sampled
    off = _download(False, 3_000_000, 1, queue_at)
    assert on[:4] == off[:4]
    if queue_at:
        in_css = [h for _, h in on[1] if h[0] is not None and h[4]]  # type: ignore[attr-defined]
        assert in_css  # the RTT rise was seen: CSS
        assert on[3][1] == 1  # type: ignore[index]  # and slow start ended by HyStart++


def test_a_slow_reader_is_the_same_with_and_without_ack_filtering() -> None:
    # The window fills and opens: ACKs that only move the window, window
    # updates, zero-window probes.
    on = _download(True, 1_000_000, 9)
    off = _download(False, 1_000_000, 9)
    assert on[:4] == off[:4]
    assert on[4]["tcp-acks-filtered"] > 0  # type: ignore[index]


def _fix(f: bytearray) -> bytes:
    """The TCP checksum of an option-less IPv4 frame made right again."""
    f[50:52] = b"\0\0"
    l4 = bytes(f[34:])
    pseudo = bytes(f[26:34]) + b"\0\x06" + len(l4).to_bytes(2, "big")
    f[50:52] = internet_checksum(pseudo + l4).to_bytes(2, "big")
    return bytes(f)


def _mutate(acks: list[bytes], how: str) -> list[bytes]:
    out = [bytearray(f) for f in acks]
    mid = len(out) // 2
    if how == "duplicate":
        out.insert(mid, bytearray(out[mid - 1]))
    elif how == "bad-checksum":
        out[mid][-1] ^= 0xFF
        return [bytes(f) for f in out]
    elif how == "tsval-back":
        out[mid][58:62] = (int.from_bytes(out[mid][58:62]) - 5).to_bytes(4, "big")
    elif how == "window":
        out[mid][48:50] = (int.from_bytes(out[mid][48:50]) // 2).to_bytes(2, "big")
    elif how == "beyond-snd-max":
        out[-1][_ACK_AT : _ACK_AT + 4] = (
            int.from_bytes(out[-1][_ACK_AT : _ACK_AT + 4]) + 10**6
        ).to_bytes(4, "big")
    elif how == "other-flow":
        out[mid][36:38] = (int.from_bytes(out[mid][36:38]) ^ 1).to_bytes(2, "big")
    elif how == "flags":
        out[mid][47] |= 0x08  # PSH on a pure ACK: not a run's
    return [_fix(f) for f in out]


@pytest.mark.parametrize(
    "how",
    ["duplicate", "bad-checksum", "tsval-back", "window", "beyond-snd-max", "other-flow", "flags"],
)
def test_an_unusual_ack_in_a_run_gives_what_frame_by_frame_gives(how: str) -> None:
    results = []
    for filtering in (True, False):
        # (HyStart++ off: its rounds would keep a batch this small frame by frame.)
        a, b, client, server = _pair(filtering, tcp=TcpConfig(mss=1448, hystart=False))
        now = 1.0
        server.send(bytes(3_000_000), now)
        for _ in range(12):  # slow start opens the window
            for f in b.frames_to_send():
                a.receive_frame(f, now)
            b.receive_frames(a.frames_to_send(), now)
            client.receive(1 << 20, now)
            now += 0.001
        acks: list[bytes] = []
        for f in b.frames_to_send():
            a.receive_frame(f, now)
            acks += a.frames_to_send()
        assert len(acks) >= 6
        b.receive_frames(_mutate(acks, how), now)
        after = b.frames_to_send()
        counters = Counter({k: v for k, v in b.counters.items() if k != "tcp-acks-filtered"})
        results.append((_tcb(server), after, counters, b.counters["tcp-acks-filtered"]))
    on, off = results
    assert on[:3] == off[:3]
    assert on[3] > 0  # the ordinary ACKs around the odd one were still filtered
