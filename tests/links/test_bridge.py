"""LinkBridge on the loop's clock, with in-memory ends (no TAP needed)."""

from __future__ import annotations

import asyncio
import statistics

import pytest

from synack.cli.main import main
from synack.core.sim import LinkParams
from synack.errors import UsageError
from synack.links.base import FrameSink
from synack.links.bridge import LinkBridge, parse_delay, parse_percent, parse_rate


class End:
    """One end of the bridge: frames we inject, frames it wrote to us (with the loop time)."""

    def __init__(self) -> None:
        self.sink: FrameSink | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.got: list[tuple[float, bytes]] = []
        self.closed = False

    def start(self, loop: asyncio.AbstractEventLoop, sink: FrameSink) -> None:
        self.loop, self.sink = loop, sink

    def send(self, frame: bytes) -> None:
        assert self.loop is not None
        self.got.append((self.loop.time(), frame))

    def close(self) -> None:
        self.closed = True

    def inject(self, frames: list[bytes]) -> None:
        assert self.sink is not None
        self.sink(frames)


def frame(i: int, size: int = 100) -> bytes:
    return i.to_bytes(4, "big") + bytes(size - 4)


def test_parsers() -> None:
    assert parse_delay("25ms") == pytest.approx(0.025)
    assert parse_delay("300us") == pytest.approx(0.0003)
    assert parse_delay("0.5") == 0.5
    assert parse_rate("10mbit") == pytest.approx(1.25e6)
    assert parse_rate("100Mbit") == pytest.approx(12.5e6)
    assert parse_rate("1MB") == pytest.approx(1e6)
    assert parse_percent("1%") == pytest.approx(0.01)
    assert parse_percent("0.5") == pytest.approx(0.005)
    for bad, fn in (("25 parsecs", parse_delay), ("-1mbit", parse_rate), ("120%", parse_percent)):
        with pytest.raises(UsageError):
            fn(bad)
    with pytest.raises(UsageError):
        parse_rate("0mbit")


def test_delay_and_loss_in_real_time_seeded() -> None:
    async def run(seed: int) -> tuple[list[float], list[int], dict[str, int]]:
        a, b = End(), End()
        bridge = LinkBridge(a, b, LinkParams(delay=0.02, loss=0.1), seed=seed)
        bridge.start(asyncio.get_running_loop())
        sent: dict[int, float] = {}
        loop = asyncio.get_running_loop()
        for i in range(400):
            sent[i] = loop.time()
            a.inject([frame(i)])
            if i % 20 == 19:
                await asyncio.sleep(0.002)
        await asyncio.sleep(0.1)
        bridge.close()
        assert a.closed and b.closed
        delays = [t - sent[int.from_bytes(f[:4], "big")] for t, f in b.got]
        ids = [int.from_bytes(f[:4], "big") for _, f in b.got]
        st = bridge.stats["a->b"]
        return delays, ids, {"lost": st.lost, "sent": st.sent, "delivered": st.delivered}

    delays, ids, st = asyncio.run(run(7))
    assert st["sent"] == 400 and st["lost"] + st["delivered"] == 400
    assert 20 <= st["lost"] <= 65  # 10% of 400, drawn
    assert len(ids) == st["delivered"] and ids == sorted(ids)  # no jitter: in order
    # Every frame waited the delay, and not much more (the loop's timer slack).
    assert min(delays) >= 0.0195
    assert statistics.median(delays) < 0.03
    # Same seed, same frames lost.
    _, ids2, _ = asyncio.run(run(7))
    assert ids2 == ids


def test_rate_and_drop_tail_queue() -> None:
    async def lateness(loop: asyncio.AbstractEventLoop, until: float) -> float:
        """How late a 1 ms timer fires at worst while the bridge runs."""
        worst = 0.0
        while loop.time() < until:
            due = loop.time() + 0.001
            await asyncio.sleep(0.001)
            worst = max(worst, loop.time() - due)
        return worst

    async def run() -> tuple[list[float], int, int, float]:
        a, b = End(), End()
        # 10 Mbit/s: a 1250-octet frame takes 1 ms; 30 frames may wait.
        params = LinkParams(delay=0.005, bandwidth=1.25e6, queue_limit=30)
        bridge = LinkBridge(a, b, params, seed=1)
        loop = asyncio.get_running_loop()
        bridge.start(loop)
        t0 = loop.time()
        a.inject([frame(i, 1250) for i in range(100)])  # one burst
        b.inject([frame(1000, 60)])  # the other direction is independent
        late = await lateness(loop, t0 + 0.08)
        bridge.close()
        times = [t - t0 for t, _ in b.got]
        return times, bridge.stats["a->b"].queue_drops, len(a.got), late

    times, drops, back, late = asyncio.run(run())
    assert drops == 70 and len(times) == 30 and back == 1
    assert times[0] >= 0.006  # never early: the 5 ms delay plus one frame's 1 ms
    # Serialised one after the other at the rate: 1 ms apart, the last at ~35 ms.
    # The bridge runs in real time: on a machine too busy to keep a 1 ms timer
    # within 3 ms (seen at load 7-8 on 2 cores) frames bunch behind the late
    # loop, so the spacing is checked only when the loop kept time.
    if late < 0.003:
        assert times[-1] - times[0] == pytest.approx(0.029, abs=0.006)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--queue", "5"], "--queue needs --rate"),
        (["--loss", "5x"], "bad percentage"),
        (["--delay", "3 weeks"], "bad duration"),
        (["--rate", "fast"], "bad rate"),
        (["--tap-b", "same"], "two different devices"),
    ],
)
def test_cli_mistakes_are_one_line_and_status_2(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["link", "bridge", "--tap-a", "same", "--tap-b", "other"]
    assert main(base + args) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_cli_help_names_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["link", "bridge", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--tap-a", "--delay", "--loss", "--rate", "--queue", "--seed", "--reorder"):
        assert opt in out
