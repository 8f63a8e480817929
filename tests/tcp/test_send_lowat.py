"""SendSpaceAvailable after a send() cut short: as soon as any room is free
(the default), or once ``set_send_lowat`` octets are (a bulk writer woken
for large writes, as Linux wakes a socket's writer)."""

from __future__ import annotations

import dataclasses

import pytest

from tests.tcp.harness import PLAIN, Duo, drain, kinds


def _acks_until_woken(lowat: int | None) -> list[int]:
    """A fills a 3000-octet buffer; B acknowledges each 1000-octet segment
    alone: the send space after each ACK that woke A."""
    d = Duo(dataclasses.replace(PLAIN, send_buffer=3000))
    d.open()
    drain(d.a)
    if lowat is not None:
        d.a.set_send_lowat(lowat)
    assert d.a.send(b"z" * 5000, d.now) == 3000
    woken = []
    for seg in d.out_a():
        d.to_b([seg])
        d.to_a(d.out_b())
        if "SendSpaceAvailable" in kinds(drain(d.a)):
            woken.append(d.a.send_space)
    return woken


@pytest.mark.parametrize(
    ("lowat", "woken"),
    [(None, [1000]), (1, [1000]), (1500, [2000]), (3000, [3000]), (10**9, [3000])],
)
def test_send_space_is_reported_at_the_low_water_mark(lowat: int | None, woken: list[int]) -> None:
    assert _acks_until_woken(lowat) == woken  # once; a mark above the buffer is all of it
