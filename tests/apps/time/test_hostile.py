"""Attacks on the time services (issue 14 item 5), kept as tests.

Each test names the attack, its size, and the guarantee it checks.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

from hypothesis import given
from hypothesis import strategies as st

from synack.apps.time.fmtproto import UDP_IPV4_HEADERS, FormatService
from synack.apps.time.server import sntp_handler
from synack.apps.time.sntp import SntpServer, client_request

SECOND = 1_700_000_000


def wire(payload_len: int) -> int:
    return payload_len + UDP_IPV4_HEADERS


def test_amplifying_format_is_refused_within_the_bound() -> None:
    # Attack: `%512Y` (5 bytes) used to return 512 bytes: 102x payload, 16x on the wire.
    service = FormatService(rate=0)
    out = service.handle(b"%512Y", "h", 0.0, SECOND)
    assert out is not None and out.startswith(b"error: ")
    # Guarantee: the reply datagram is at most twice the request datagram.
    assert wire(len(out)) <= 2 * wire(5)


@given(st.binary(max_size=300))
def test_no_request_is_amplified_more_than_twice_on_the_wire(req: bytes) -> None:
    out = FormatService(rate=0).handle(req, "h", 0.0, SECOND)
    assert out is not None and 0 < len(out) <= 512
    assert wire(len(out)) <= 2 * wire(len(req))


@given(st.lists(st.sampled_from(["%Y", "%c", "%512Y", "%s", "%%", "a", "%A", "%B"]), max_size=40))
def test_format_directives_never_amplify(parts: list[str]) -> None:
    req = "".join(parts).encode()
    out = FormatService(rate=0).handle(req, "h", 0.0, SECOND)
    assert out is not None and wire(len(out)) <= 2 * wire(len(req))


def test_flushing_the_bucket_table_buys_no_answers() -> None:
    # Attack: one source drains its bucket, then 5,000 other sources (more
    # than the 4,096-key table) each send one request, then the first source
    # asks again, all within one second (it used to get a fresh full bucket).
    service = FormatService(rate=10, burst=20)
    victim_answers = sum(
        service.handle(b"", "10.9.9.9", 0.0, SECOND) is not None for _ in range(100)
    )
    assert victim_answers == 20
    flood_answers = 0
    for i in range(5000):
        src = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        flood_answers += service.handle(b"", src, 0.5, SECOND) is not None
    again = sum(service.handle(b"", "10.9.9.9", 0.5, SECOND) is not None for _ in range(100))
    # Guarantee: the drained source gets only what 0.5 s refilled (5 tokens),
    # and the sources beyond the table share one bucket's burst, not one each.
    assert again == 5
    assert service.buckets is not None and len(service.buckets) == 4096
    overflow = 5000 - (4096 - 1)
    assert flood_answers == (4096 - 1) + 20  # 4,095 own buckets + one shared burst
    assert service.buckets.overflowed == overflow
    assert service.counters.rate_limited == 80 + (overflow - 20) + 95


def test_sntp_is_rate_limited_per_source() -> None:
    # Attack: 1,000 SNTP requests from one source in one second (SNTP was a
    # 1:1 reflector with no limit).
    clock = iter(range(10**18, 10**18 + 10**6))
    now = [0.0]
    server = SntpServer(rate=10, burst=20)
    handle = sntp_handler(server, clock_ns=lambda: next(clock), monotonic=lambda: now[0])
    req = client_request(10**18)
    answered = sum(handle(req, ("10.0.0.1", 123)) is not None for _ in range(1000))
    # Guarantee: one burst's worth answered, the rest counted and silent;
    # another source is unaffected; 48 bytes in, 48 out (no amplification).
    assert answered == 20 and server.counters.rate_limited == 980
    other = handle(req, ("10.0.0.2", 123))
    assert other is not None and len(other) == len(req) == 48
    now[0] = 1.0
    assert sum(handle(req, ("10.0.0.1", 123)) is not None for _ in range(100)) == 10


def test_time_query_escapes_what_a_hostile_server_sends() -> None:
    # Attack: a "time server" answering with ESC sequences and a forged line.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.settimeout(10)
        port = srv.getsockname()[1]

        def answer() -> None:
            _, addr = srv.recvfrom(2048)
            srv.sendto(b"12:00\x1b[2J\nroot# \xe2\x80\xae", addr)

        t = threading.Thread(target=answer)
        t.start()
        out = subprocess.run(
            [sys.executable, "-m", "synack", "time", "query", "%H:%M", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=20,
        )
        t.join()
    # Guarantee: one line, every control and bidi character escaped.
    assert out.returncode == 0
    assert out.stdout == "12:00\\x1b[2J\\x0aroot# \\u202e\n"
