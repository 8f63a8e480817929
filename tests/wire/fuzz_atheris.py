"""Coverage-guided fuzzing of every wire parser with atheris (libFuzzer).

    .venv/bin/python tests/wire/fuzz_atheris.py -runs=200000

The first input byte picks the target; the rest is the packet. Any exception
other than MalformedPacket (or, for builders fed parsed values, a failed
round trip) is a crash and libFuzzer stops with the input that caused it.
tests/wire/test_atheris.py runs a short bounded campaign when atheris is
installed.
"""

from __future__ import annotations

import io
import sys
from ipaddress import IPv4Address

import atheris

with atheris.instrument_imports():
    from synack.wire import arp, ethernet, icmp, ipv4, tcp, udp
    from synack.wire.dissect import dissect
    from synack.wire.errors import MalformedPacket
    from synack.wire.pcap import read_pcap
    from synack.wire.summary import summarize

A = IPv4Address("10.213.0.1")
B = IPv4Address("10.213.0.2")


def _tcp(data: bytes) -> None:
    seg = tcp.parse(data, A, B, verify_checksum=False)
    rebuilt = tcp.parse(tcp.build(seg, A, B), A, B)
    assert rebuilt == seg, (rebuilt, seg)


def _ipv4(data: bytes) -> None:
    packet = ipv4.parse(data, verify_checksum=False)
    assert ipv4.parse(ipv4.build(packet)) == packet


TARGETS = [
    lambda d: ethernet.parse(d),
    lambda d: arp.parse(d),
    _ipv4,
    lambda d: icmp.parse(d, verify_checksum=False),
    lambda d: udp.parse(d, A, B, verify_checksum=False),
    _tcp,
    lambda d: tcp.parse_options(d),
    lambda d: list(read_pcap(io.BytesIO(d))),
    lambda d: dissect(d),
    lambda d: dissect(d, 101),
    lambda d: summarize(d),
]


def one_input(data: bytes) -> None:
    if not data:
        return
    target = TARGETS[data[0] % len(TARGETS)]
    try:
        target(data[1:])
    except MalformedPacket:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
