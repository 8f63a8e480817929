"""A SYN's usual options (MSS, SACK-permitted + TS, NOP + window scale) are
parsed and built at once; the same input through the option-by-option walk
must give the same options, octets, checksum sum and errors."""

from __future__ import annotations

import random

import pytest

from synack.errors import LocalProtocolError
from synack.wire import tcp as wtcp
from synack.wire.errors import MalformedPacket
from synack.wire.tcp import TcpOptions


def _linux_syn(mss: int, tsval: int, tsecr: int, ws: int) -> bytes:
    return (
        b"\x02\x04"
        + mss.to_bytes(2, "big")
        + b"\x04\x02\x08\x0a"
        + tsval.to_bytes(4, "big")
        + tsecr.to_bytes(4, "big")
        + b"\x01\x03\x03"
        + bytes((ws,))
    )


def _cases() -> list[tuple[int, int, int, int]]:
    rng = random.Random(6)
    edges = [(0, 0, 0, 0), (65535, 2**32 - 1, 2**32 - 1, 255), (1460, 1, 0, 7), (536, 5, 9, 14)]
    return edges + [
        (rng.randrange(65536), rng.randrange(2**32), rng.randrange(2**32), rng.randrange(256))
        for _ in range(200)
    ]


@pytest.mark.parametrize("view", [bytes, memoryview], ids=["bytes", "memoryview"])
def test_linux_syn_options_parse_as_the_walk_does(view: type) -> None:
    for mss, tsval, tsecr, ws in _cases():
        raw = _linux_syn(mss, tsval, tsecr, ws)
        fast = wtcp.parse_options(view(raw))
        assert fast == wtcp._parse_options_walk(view(raw))
        assert fast == TcpOptions(
            mss=mss, wscale=ws, sack_permitted=True, timestamps=(tsval, tsecr)
        )


def test_syn_options_build_as_the_walk_does() -> None:
    for mss, tsval, tsecr, ws in _cases():
        o = TcpOptions(mss=mss, wscale=ws, sack_permitted=True, timestamps=(tsval, tsecr))
        built = wtcp._options(o)
        assert built == wtcp._options_walk(o)
        assert built[0] == _linux_syn(mss, tsval, tsecr, ws)
        assert wtcp.parse_options(built[0]) == o


@pytest.mark.parametrize(
    "raw",
    [
        b"\x02\x05\x05\xb4\x04\x02\x08\x0a" + bytes(8) + b"\x01\x03\x03\x07",  # MSS length 5
        b"\x02\x04\x05\xb4\x04\x02\x08\x0b" + bytes(8) + b"\x01\x03\x03\x07",  # TS length 11
        b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + bytes(8) + b"\x01\x03\x04\x07",  # WS length 4
        b"\x02\x04\x05\xb4\x04\x03\x08\x0a" + bytes(8) + b"\x01\x03\x03\x07",  # SACK-perm length 3
    ],
    ids=["mss-len", "ts-len", "ws-len", "sackok-len"],
)
def test_near_misses_take_the_walk_and_are_refused(raw: bytes) -> None:
    with pytest.raises(MalformedPacket):
        wtcp.parse_options(raw)


def test_other_layouts_of_20_octets_take_the_walk() -> None:
    # SACK-permitted replaced by two NOPs: no SACK, same MSS, TS, WS.
    raw = b"\x02\x04\x05\xb4\x01\x01\x08\x0a" + bytes(8) + b"\x01\x03\x03\x07"
    o = wtcp.parse_options(raw)
    assert o == wtcp._parse_options_walk(raw)
    assert not o.sack_permitted and o.mss == 1460 and o.wscale == 7


@pytest.mark.parametrize(
    "options",
    [
        TcpOptions(mss=70000, wscale=7, sack_permitted=True, timestamps=(1, 2)),
        TcpOptions(mss=1460, wscale=256, sack_permitted=True, timestamps=(1, 2)),
        TcpOptions(mss=1460, wscale=7, sack_permitted=True, timestamps=(1, 2**32)),
        TcpOptions(mss=1460, wscale=7, sack_permitted=True, timestamps=(1, 2, 3)),  # type: ignore[arg-type]
    ],
    ids=["mss", "wscale", "tsecr", "ts-arity"],
)
def test_bad_values_are_refused_by_both(options: TcpOptions) -> None:
    with pytest.raises(LocalProtocolError):
        wtcp._options(options)
    with pytest.raises(LocalProtocolError):
        wtcp._options_walk(options)
