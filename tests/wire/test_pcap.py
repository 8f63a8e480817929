"""pcap read/write: round trip, and scapy and dpkt as independent readers and writers."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import IP, TCP, Ether, rdpcap  # type: ignore[attr-defined]
from scapy.all import PcapWriter as ScapyPcapWriter

from synack.errors import LocalProtocolError
from synack.wire import MalformedPacket
from synack.wire.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    PcapWriter,
    read_pcap,
    read_pcap_bytes,
    write_pcap,
)

FRAMES = [
    bytes(
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="10.213.0.1", dst="10.213.0.2")
        / TCP()
    ),
    bytes(range(256)) * 3,
    b"",
]


@pytest.mark.parametrize("nanosecond", [False, True])
@pytest.mark.parametrize("linktype", [LINKTYPE_ETHERNET, LINKTYPE_RAW])
def test_round_trip_file(tmp_path: Path, nanosecond: bool, linktype: int) -> None:
    path = tmp_path / "x.pcap"
    stamps = [1_700_000_000.123456, 1_700_000_000.5, 0.0]
    assert (
        write_pcap(path, list(zip(stamps, FRAMES, strict=True)), linktype, nanosecond=nanosecond)
        == 3
    )
    records = list(read_pcap(path))
    assert [r.data for r in records] == FRAMES
    assert all(r.linktype == linktype for r in records)
    for got, want in zip(records, stamps, strict=True):
        assert got.timestamp == pytest.approx(want, abs=1e-6)


def test_writer_to_file_object_is_a_streaming_sink() -> None:
    buf = io.BytesIO()
    writer = PcapWriter(buf, linktype=LINKTYPE_RAW, nanosecond=True, flush_each=True)
    writer.write_ns(1_700_000_000_000_000_123, FRAMES[0][14:])
    assert read_pcap_bytes(buf.getvalue())[0].data == FRAMES[0][14:]  # readable while open
    writer.write(2.25, b"\x45")
    writer.close()
    assert not buf.closed
    raw = buf.getvalue()
    # Nanosecond magic, and the 123 ns survive exactly in the record header.
    assert raw[:4] == b"\x4d\x3c\xb2\xa1"
    assert struct.unpack_from("<II", raw, 24) == (1_700_000_000, 123)
    assert [r.timestamp for r in read_pcap_bytes(raw)][1] == 2.25


def test_microsecond_rounding() -> None:
    buf = io.BytesIO()
    with PcapWriter(buf) as w:
        w.write(0.1, b"x")  # 0.1 * 1e6 is 99999.99999... in binary floating point
    assert struct.unpack_from("<II", buf.getvalue(), 24) == (0, 100000)


def test_snaplen_truncates_and_keeps_original_length() -> None:
    buf = io.BytesIO()
    with PcapWriter(buf, snaplen=100) as w:
        w.write(1.0, bytes(300))
    raw = buf.getvalue()
    assert struct.unpack_from("<II", raw, 32) == (100, 300)
    assert len(read_pcap_bytes(raw)[0].data) == 100


@pytest.mark.parametrize("nano", [False, True])
def test_scapy_and_dpkt_read_ours(tmp_path: Path, nano: bool) -> None:
    path = tmp_path / "ours.pcap"
    write_pcap(
        path, [(1_700_000_000.25, FRAMES[0]), (1_700_000_001.75, FRAMES[1])], nanosecond=nano
    )
    packets = rdpcap(str(path))
    assert [bytes(p) for p in packets] == FRAMES[:2]
    assert float(packets[1].time) == pytest.approx(1_700_000_001.75)
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        got = list(reader)
    assert [bytes(buf) for _ts, buf in got] == FRAMES[:2]
    assert float(got[0][0]) == pytest.approx(1_700_000_000.25)


@pytest.mark.parametrize("nano", [False, True])
def test_we_read_scapys(tmp_path: Path, nano: bool) -> None:
    path = tmp_path / "scapy.pcap"
    writer = ScapyPcapWriter(str(path), nano=nano, linktype=1)
    pkt = Ether(FRAMES[0])
    pkt.time = 1_600_000_000.5
    writer.write(pkt)
    writer.close()
    (record,) = list(read_pcap(path))
    assert record == (pytest.approx(1_600_000_000.5), LINKTYPE_ETHERNET, FRAMES[0])


def test_big_endian_file() -> None:
    header = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
    record = struct.pack(">IIII", 10, 500000, 3, 3) + b"abc"
    assert read_pcap_bytes(header + record) == [(10.5, LINKTYPE_RAW, b"abc")]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\xd4\xc3\xb2\xa1" + bytes(10), "truncated"),
        (b"\x00" * 24, "bad-magic"),
        (b"\x0a\x0d\x0d\x0a" + bytes(20), "unsupported"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 1, 0, 0, 0, 65535, 1), "unsupported"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + bytes(15), "truncated"),
        (
            struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
            + struct.pack("<IIII", 0, 0, 5, 5)
            + b"ab",
            "truncated",
        ),
        (
            struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
            + struct.pack("<IIII", 0, 0, 1 << 30, 5),
            "bad-length",
        ),
        (
            struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
            + struct.pack("<IIII", 0, 1_000_000, 0, 0),
            "bad-length",
        ),
    ],
)
def test_bad_files(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as info:
        read_pcap_bytes(data)
    assert (info.value.layer, info.value.reason) == ("pcap", reason)


def test_writer_refuses_bad_use(tmp_path: Path) -> None:
    with pytest.raises(LocalProtocolError):
        PcapWriter(io.BytesIO(), linktype=9999)
    w = PcapWriter(tmp_path / "a.pcap")
    with pytest.raises(LocalProtocolError):
        w.write(-1.0, b"x")
    w.close()
    with pytest.raises(LocalProtocolError):
        w.write(1.0, b"x")


def test_missing_file_is_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(read_pcap(tmp_path / "nope.pcap"))


_VALID = (
    struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    + struct.pack("<IIII", 1, 2, 4, 4)
    + b"abcd"
)


@settings(max_examples=500)
@given(
    st.binary(max_size=80)
    | st.lists(st.tuples(st.integers(0, 43), st.integers(0, 255)), max_size=4).map(
        lambda edits: bytes(
            _VALID[i] if all(i != j for j, _ in edits) else next(v for j, v in edits if j == i)
            for i in range(len(_VALID))
        )
    )
)
def test_fuzz_reader_raises_only_malformed(data: bytes) -> None:
    try:
        records = read_pcap_bytes(data)
    except MalformedPacket as exc:
        assert exc.layer == "pcap" and exc.reason in MalformedPacket.REASONS
    else:
        assert all(isinstance(r.data, bytes) for r in records)


@settings(max_examples=150)
@given(
    st.lists(
        st.tuples(st.integers(0, 0xFFFFFFFF * 10**9 - 1), st.binary(max_size=200)), max_size=8
    ),
    st.booleans(),
    st.sampled_from([LINKTYPE_ETHERNET, LINKTYPE_RAW]),
)
def test_round_trip_property(
    records: list[tuple[int, bytes]], nanosecond: bool, linktype: int
) -> None:
    buf = io.BytesIO()
    with PcapWriter(buf, linktype, nanosecond=nanosecond) as writer:
        for stamp_ns, frame in records:
            writer.write_ns(stamp_ns, frame)
    raw = buf.getvalue()
    got = read_pcap_bytes(raw)
    assert [(r.linktype, r.data) for r in got] == [(linktype, f) for _, f in records]
    # The stored integer fields are exact (ns, or µs rounded to nearest).
    offset = 24
    for stamp_ns, frame in records:
        seconds, fraction = struct.unpack_from("<II", raw, offset)
        units = seconds * (10**9 if nanosecond else 10**6) + fraction
        assert units == (stamp_ns if nanosecond else (stamp_ns + 500) // 1000)
        offset += 16 + len(frame)
