"""Every row of THE transition table is taken by some scenario test, and no
scenario takes a change that is not a row (states.py is the whole truth)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from synack.tcp.connection import TcpConnection
from synack.tcp.states import TRANSITIONS, Cause, State
from tests.tcp import test_close, test_data, test_open


def _run_all(module: ModuleType) -> None:
    for name, fn in vars(module).items():
        if not name.startswith("test_") or not callable(fn):
            continue
        marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
        names = [m.args[0] for m in marks]
        for combo in itertools.product(*(m.args[1] for m in marks)):
            fn(**dict(zip(names, combo, strict=True)))


def test_every_transition_row_is_exercised(monkeypatch: pytest.MonkeyPatch) -> None:
    visited: set[tuple[State, Cause, State]] = set()
    original: Callable[..., Any] = TcpConnection._set_state

    def recording(self: TcpConnection, new: State, cause: Cause, now: float) -> None:
        visited.add((self.state, cause, new))
        original(self, new, cause, now)

    monkeypatch.setattr(TcpConnection, "_set_state", recording)
    for module in (test_open, test_close, test_data):
        _run_all(module)
    missing = [row for row in TRANSITIONS if row not in visited]
    assert missing == []
    assert visited <= set(TRANSITIONS)


def test_table_is_consistent() -> None:
    rows = list(TRANSITIONS)
    assert len(rows) == len(set(rows)), "duplicate rows"
    # Every state is entered by some row, and CLOSED is reachable from every
    # state except LISTEN (a passive child is forgotten there).
    entered = {new for _, _, new in rows}
    assert entered == set(State)
    leaves_to_closed = {old for old, _, new in rows if new is State.CLOSED}
    assert leaves_to_closed == set(State) - {State.CLOSED, State.LISTEN}
