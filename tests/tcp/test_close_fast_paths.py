"""The close path's shortcuts do exactly what the full path does: the same
segments out, the same events, the same TCB afterwards, on the same input.

- ``TcpSender.fin_sent_idle``: :meth:`TcpSender._output_data` returns at once
  when only our FIN, already sent after all the data, is outstanding
  (FIN-WAIT-1, CLOSING, LAST-ACK waiting for its ACK).
- ``synack.tcp.states``' module constants, which those paths read, are the
  enum's members.
- ``TcpConnection._fin_arrives`` (the peer's bare FIN) refuses, untouched, a
  FIN whose timestamps the full path must judge (tests/tcp/
  test_handshake_fast_path.py compares the FINs it takes with the full path).

Each scenario runs twice, shortcut on and off, over a hand-driven pair: a
request and a reply of random sizes, then either end closes (close() or
shutdown_write(), first or second, or both at once), with loss,
duplication, reordering, partial reads and timers, until both ends are
CLOSED or TIME-WAIT expires."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from synack.tcp import states
from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection
from synack.tcp.pair import TcpPair
from synack.tcp.sender import TcpSender
from synack.tcp.states import Cause, State
from synack.wire.tcp import TcpSegment
from tests.tcp.test_fast_data_ack import _snapshot
from tests.tcp.test_handshake_fast_path import _fin_to_server


def _close_scenario(seed: int) -> list[Any]:
    rng = random.Random(seed)
    cfg = TcpConfig(
        timestamps=rng.random() < 0.8,
        sack=rng.random() < 0.8,
        nodelay=rng.random() < 0.5,
        loss_detection=rng.choice(["rack", "rack", "rfc6675"]),
        congestion_control=rng.choice(["newreno", "cubic"]),
        msl=1.0,
    )
    pair = TcpPair(cfg, cfg)
    pair.open()
    conns: list[TcpConnection] = [pair.a, pair.b]
    log: list[Any] = []
    held: list[tuple[int, TcpSegment]] = []
    closed: set[int] = set()
    # Who closes when (step), and how.
    plan = [(rng.randrange(1, 12), rng.random() < 0.7) for _ in conns]
    conns[0].send(rng.randbytes(rng.choice([1, 90, 300, 2000])), pair.now)
    loss = rng.choice([0.0, 0.05, 0.15])
    for step in range(200):
        for i, c in enumerate(conns):
            at, full_close = plan[i]
            if c.readable_bytes and i not in closed and rng.random() < 0.7:
                data = c.receive(rng.choice([50, 500, 1 << 20]))
                log.append(("read", i, data))
                if i == 1 and c.state in (State.ESTABLISHED, State.CLOSE_WAIT):
                    c.send(rng.randbytes(rng.choice([5, 300, 1460, 4000])), pair.now)
            if step == at and c.state in (State.ESTABLISHED, State.CLOSE_WAIT):
                if full_close:
                    c.close(pair.now)
                    closed.add(i)  # no more reading (receive() after close() is an error)
                else:
                    c.shutdown_write(pair.now)
        outs = [pair.out_a(), pair.out_b()]
        for who, segs in enumerate(outs):
            log.append(("out", who, segs))
            for seg in segs:
                fate = rng.random()
                if fate < loss:
                    continue  # lost
                if fate < 2 * loss:
                    held.append((who, seg))
                    continue
                (pair.to_b if who == 0 else pair.to_a)([seg])
                if fate < 2 * loss + 0.03:
                    (pair.to_b if who == 0 else pair.to_a)([seg])  # duplicated
        if held and rng.random() < 0.3:
            who, seg = held.pop(rng.randrange(len(held)))
            (pair.to_b if who == 0 else pair.to_a)([seg])
        for i, c in enumerate(conns):
            while (event := c.next_event()) is not None:
                log.append(("event", i, event))
        if rng.random() < 0.3:
            pair.advance(pair.now + rng.choice([0.001, 0.05, 0.3, 1.5]))
        if pair.both_closed():
            break
    log.append(("end", [c.state for c in conns], [_snapshot(c) for c in conns]))
    return log


def _run(seed: int, on: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], int]:
    monkeypatch.setattr(TcpSender, "fin_sent_idle", on)
    taken = [0]
    real = TcpSender._output_data

    def counted(self: TcpSender, now: float, out: list[TcpSegment]) -> None:
        # Its test, as the entry finds the TCB: SND.NXT one past our FIN,
        # the data before it all sent, no resend, persist timer or recovery.
        fin, cc = self._fin_seq, self._cc
        taken[0] += (
            fin is not None
            and self._fin_queued
            and self.snd_nxt == (fin + 1) & 0xFFFFFFFF
            and len(self._sndbuf) == (fin - self.snd_una) & 0xFFFFFFFF
            and not self._recovery.rexmit_one
            and self._timers.persist is None
            and not (cc.sack_recovery and cc.in_recovery)
        )
        real(self, now, out)

    monkeypatch.setattr(TcpSender, "_output_data", counted)
    return _close_scenario(seed), taken[0]


@pytest.mark.parametrize("seed", range(40))
def test_close_shortcuts_equal_the_full_path(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, _ = _run(seed, True, monkeypatch)
    slow, _ = _run(seed, False, monkeypatch)
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        assert a == b
    assert fast[-1][1] != [State.ESTABLISHED, State.ESTABLISHED]  # it did close


def test_the_shortcuts_are_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the scenarios, the FIN-sent shortcut answers often (so the
    comparison above compares something)."""
    taken = sum(_run(seed, True, monkeypatch)[1] for seed in range(10))
    assert taken >= 10


@pytest.mark.parametrize(
    ("config", "timestamps"),
    [
        (TcpConfig(), "old"),  # PAWS rejects it (RFC 7323 §5.3)
        (TcpConfig(), None),  # timestamps agreed, none on the FIN
        (TcpConfig(timestamps=False), (1, 0)),  # not agreed, yet one on the FIN
    ],
    ids=["paws", "no-ts", "unagreed-ts"],
)
def test_fins_with_timestamps_to_decide_go_the_full_way(
    config: TcpConfig, timestamps: object
) -> None:
    """``_fin_arrives`` (the peer's bare FIN, here acknowledging ours in
    FIN-WAIT-1) leaves a FIN whose timestamps the full path must judge to the
    full path, untouched."""
    p, fin = _fin_to_server(State.FIN_WAIT_1, config)
    ts = fin.options.timestamps
    if timestamps == "old":
        assert ts is not None
        new = ((ts[0] - 1000) % 2**32, ts[1])
    else:
        new = timestamps  # type: ignore[assignment]
    seg = dataclasses.replace(fin, options=dataclasses.replace(fin.options, timestamps=new))
    before = _snapshot(p.b)
    assert not p.b._fin_arrives(seg, p.now)
    assert _snapshot(p.b) == before
    assert p.b._fin_arrives(fin, p.now)  # the FIN as sent is taken
    assert p.b.state is State.TIME_WAIT


def test_the_state_and_cause_constants_are_the_members() -> None:
    """The module constants the per-segment paths read in place of
    ``State.X`` / ``Cause.X`` (synack.tcp.states): one for every state, each
    the member of its own name, and those of the causes likewise."""
    for member in State:
        assert getattr(states, member.name) is member
    for name in ("PASSIVE_OPEN", "RCV_SYN", "RCV_ACK_OF_SYN", "CLOSE", "RCV_ACK_OF_FIN", "RCV_FIN"):
        assert getattr(states, name) is Cause[name]
