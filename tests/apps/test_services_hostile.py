"""The UDP echo <-> chargen loop between services (issue 14 item 9), kept as tests."""

from __future__ import annotations

import asyncio
import os
import socket
import struct

import pytest

from synack.apps.services import LOOP_PORTS, UdpClassic, open_udp_service


@pytest.mark.parametrize("port", sorted(LOOP_PORTS))
def test_no_service_answers_a_service_port(port: int) -> None:
    for name in ("echo", "chargen", "daytime"):
        service = UdpClassic(name)
        assert service(b"x", ("10.0.0.1", port)) is None
        assert service.loops_refused == 1 and service.rate_limited == 0
        assert service(b"x", ("10.0.0.1", 40000)) is not None  # a client port is served


def _spoof(src_port: int, dst_port: int, payload: bytes) -> None:
    """One UDP datagram on loopback with a forged source port (checksum 0: none)."""
    udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP) as s:
        s.sendto(udp, ("127.0.0.1", 0))


@pytest.mark.skipif(os.geteuid() != 0, reason="forging a source port needs a raw socket (root)")
def test_one_spoofed_datagram_does_not_start_an_echo_chargen_loop() -> None:
    # Attack: one datagram to echo "from" chargen's port, both services on
    # ephemeral ports of one server (it used to loop at ~441 datagrams/s).
    async def main() -> tuple[int, int, int]:
        refused: set[int] = set(LOOP_PORTS)
        echo = UdpClassic("echo", refuse_ports=refused)
        chargen = UdpClassic("chargen", refuse_ports=refused)
        e = await open_udp_service("echo", echo, "127.0.0.1", 0)
        c = await open_udp_service("chargen", chargen, "127.0.0.1", 0)
        refused.update({int(e.sockname[1]), int(c.sockname[1])})
        try:
            _spoof(int(c.sockname[1]), int(e.sockname[1]), b"loop?")
            await asyncio.sleep(1.0)
        finally:
            e.close()
            c.close()
        return echo.loops_refused, chargen.loops_refused, chargen.rate_limited

    echo_refused, chargen_refused, chargen_limited = asyncio.run(main())
    # Guarantee: the forged datagram is refused and counted; nothing bounced.
    assert (echo_refused, chargen_refused, chargen_limited) == (1, 0, 0)
