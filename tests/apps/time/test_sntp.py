from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.ntp import NTPHeader

from synack.apps.time import sntp
from synack.apps.time.sntp import NtpPacket, SntpServer

UNIX_EPOCH_NTP = 2_208_988_800 << 32


def request(
    version: int = 4, mode: int = 3, poll: int = 6, tx: int = 0x1234_5678_9ABC_DEF0
) -> bytes:
    return struct.pack("!BBbb3I4Q", (version << 3) | mode, 0, poll, 0, 0, 0, 0, 0, 0, 0, tx)


def test_timestamp_conversion_known_values() -> None:
    assert sntp.unix_ns_to_ntp(0) == UNIX_EPOCH_NTP
    assert sntp.unix_ns_to_ntp(500_000_000) == UNIX_EPOCH_NTP | (1 << 31)
    assert sntp.unix_ns_to_ntp(1_000_000_000) == UNIX_EPOCH_NTP + (1 << 32)
    # Resolution is 2^-32 s: 1 ns is 4.29 fraction units, truncated.
    assert sntp.unix_ns_to_ntp(1) & 0xFFFFFFFF == 4
    assert sntp.ntp_to_unix(sntp.unix_ns_to_ntp(1_700_000_000_250_000_000)) == pytest.approx(
        1_700_000_000.25, abs=1e-9
    )
    # 2036-02-07 06:28:16 UTC: era 0 ends, the seconds field wraps to 0.
    assert sntp.unix_ns_to_ntp((2**32 - 2_208_988_800) * 10**9) == 0


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_reply_fields(version: int) -> None:
    server = SntpServer()
    rx_ns = 1_763_000_000_123_456_789
    tx_ns = rx_ns + 15_000
    out = server.reply(request(version=version, poll=-3), rx_ns, tx_ns)
    assert out is not None and len(out) == 48
    p = sntp.parse(out)
    assert p.mode == 4
    assert p.version == version
    assert p.leap == 0
    assert p.stratum == 10 and p.reference_id == bytes([127, 127, 1, 1])
    assert p.poll == -3
    assert -30 < p.precision < 0
    assert p.originate_ts == 0x1234_5678_9ABC_DEF0
    assert p.receive_ts == sntp.unix_ns_to_ntp(rx_ns)
    assert p.transmit_ts == sntp.unix_ns_to_ntp(tx_ns)
    assert 0 < p.reference_ts <= p.receive_ts <= p.transmit_ts
    assert server.counters.answered == 1


@pytest.mark.parametrize(
    "rx_ns",
    [
        (2**32 - 2_208_988_800) * 10**9 - 1_000,  # 1 us before era 0 ends: tx wraps, rx not
        (2**32 - 2_208_988_800) * 10**9 + 123_456_789,  # both in era 1
        -5 * 10**9,  # before the Unix epoch, still era 0
    ],
)
def test_reply_timestamps_wrap_into_era_1(rx_ns: int) -> None:
    # The reply packs unmasked timestamps and masks only when they pass
    # 2^64 (RFC 5905 §6): the result must be the conversion's, bit for bit.
    out = SntpServer().reply(request(), rx_ns, rx_ns + 2_000)
    assert out is not None
    p = sntp.parse(out)
    assert p.receive_ts == sntp.unix_ns_to_ntp(rx_ns)
    assert p.transmit_ts == sntp.unix_ns_to_ntp(rx_ns + 2_000)
    assert p.reference_ts == p.receive_ts & ~0xFFFFFFFF


def test_scapy_reads_the_reply_the_same_way() -> None:
    out = SntpServer().reply(request(version=3, tx=sntp.unix_ns_to_ntp(10**18)), 10**18, 10**18 + 1)
    assert out is not None
    hdr = NTPHeader(out)
    assert (hdr.leap, hdr.version, hdr.mode, hdr.stratum) == (0, 3, 4, 10)
    assert hdr.id == "127.127.1.1"
    assert hdr.recv == pytest.approx(10**9 + 2_208_988_800, abs=1e-6)
    assert hdr.orig == pytest.approx(10**9 + 2_208_988_800, abs=1e-6)


@pytest.mark.parametrize(
    ("data", "counter"),
    [
        (b"", "too_short"),
        (request()[:47], "too_short"),
        (request() + bytes(1024), "too_long"),
        (request(version=0), "bad_version"),
        (request(version=5), "bad_version"),
        (request(version=7), "bad_version"),
        (request(mode=4), "not_client"),
        (request(mode=1), "not_client"),
        (request(mode=6), "not_client"),
        (request(mode=0), "not_client"),
    ],
)
def test_malformed_requests_get_no_reply_and_are_counted(data: bytes, counter: str) -> None:
    server = SntpServer()
    assert server.reply(data, 1, 2) is None
    assert getattr(server.counters, counter) == 1
    assert server.counters.answered == 0


def test_extension_fields_are_ignored() -> None:
    # An NTPv4 request with a 16-byte extension field and a MAC still gets a
    # plain 48-byte reply (we hold no keys, RFC 5905 §7.5).
    out = SntpServer().reply(request() + bytes(16) + bytes(20), 5, 6)
    assert out is not None and len(out) == 48


@given(st.binary(max_size=1100))
def test_fuzz_never_raises_and_answers_only_clients(data: bytes) -> None:
    server = SntpServer()
    out = server.reply(data, 1_700_000_000 * 10**9, 1_700_000_000 * 10**9 + 1)
    if out is None:
        return
    assert 48 <= len(data) <= 1024
    assert data[0] & 7 == 3 and 1 <= (data[0] >> 3) & 7 <= 4
    p = sntp.parse(out)
    assert p.mode == 4 and p.originate_ts.to_bytes(8, "big") == data[40:48]


@given(
    st.builds(
        NtpPacket,
        leap=st.integers(0, 3),
        version=st.integers(0, 7),
        mode=st.integers(0, 7),
        stratum=st.integers(0, 255),
        poll=st.integers(-128, 127),
        precision=st.integers(-128, 127),
        root_delay=st.integers(0, 2**32 - 1),
        root_dispersion=st.integers(0, 2**32 - 1),
        reference_id=st.binary(min_size=4, max_size=4),
        reference_ts=st.integers(0, 2**64 - 1),
        originate_ts=st.integers(0, 2**64 - 1),
        receive_ts=st.integers(0, 2**64 - 1),
        transmit_ts=st.integers(0, 2**64 - 1),
    )
)
def test_parse_build_roundtrip(packet: NtpPacket) -> None:
    assert sntp.parse(sntp.build(packet)) == packet


def test_invalid_representation_is_refused() -> None:
    with pytest.raises(ValueError):
        NtpPacket(leap=4, version=4, mode=3)
    with pytest.raises(ValueError):
        NtpPacket(leap=0, version=4, mode=3, reference_id=b"abc")


def test_measure_computes_offset_and_delay_as_ntp_does() -> None:
    # Client sends at t1=100.0, server (1 s ahead) receives at 101.010 and
    # sends at 101.011, client receives at t4=100.021.
    t1, t2, t3, t4 = 100 * 10**9, 101_010_000_000, 101_011_000_000, 100_021_000_000
    reply = SntpServer().reply(sntp.client_request(t1), t2, t3)
    assert reply is not None
    m = sntp.measure(reply, t1, t4)
    assert m.offset == pytest.approx(((101.010 - 100.0) + (101.011 - 100.021)) / 2, abs=1e-6)
    assert m.offset == pytest.approx(1.0, abs=1e-6)
    assert m.delay == pytest.approx((100.021 - 100.0) - (101.011 - 101.010), abs=1e-6)
    with pytest.raises(ValueError, match="originate"):
        sntp.measure(reply, t1 + 10**9, t4)
