"""Classic libpcap files: read and write, microsecond and nanosecond variants.

File layout (the libpcap "savefile" format): a 24-octet global header (magic,
version 2.4, thiszone, sigfigs, snaplen, link type) then records of a 16-octet
header (seconds, micro- or nanoseconds, captured length, original length)
followed by the captured octets. The magic number tells the byte order and the
timestamp resolution; writers here use the native little-endian order like
tcpdump does on x86, readers accept all four magics.

Reading is bounded: a record that announces more than ``max_record`` octets is
refused (``bad-length``) before anything is read, and a file cut short inside a
record is reported (``truncated``), never silently shortened.

Layer: wire. Imports synack.errors and the rest of synack.wire.
"""

from __future__ import annotations

import io
import math
import os
import struct
from collections.abc import Iterator
from types import TracebackType
from typing import IO, NamedTuple, Self

from synack.errors import LocalProtocolError
from synack.wire.errors import MalformedPacket

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # raw IPv4/IPv6, version taken from the first nibble
LINKTYPE_IPV4 = 228
LINKTYPES = {LINKTYPE_ETHERNET: "ethernet", LINKTYPE_RAW: "raw", LINKTYPE_IPV4: "ipv4"}

MAGIC_MICRO = 0xA1B2C3D4
MAGIC_NANO = 0xA1B23C4D
PCAPNG_MAGIC = 0x0A0D0D0A
DEFAULT_SNAPLEN = 262144  # what tcpdump writes today
GLOBAL_HEADER_LEN = 24
RECORD_HEADER_LEN = 16

_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")

PathOrFile = str | os.PathLike[str] | IO[bytes]


class PcapRecord(NamedTuple):
    """One captured frame: a tuple ``(timestamp, linktype, data)``."""

    timestamp: float  # Unix seconds
    linktype: int
    data: bytes


class _PcapFile:
    """A pcap file given as a path (opened here, closed by :meth:`close`) or as a
    binary file object (the caller's: left open)."""

    def __init__(self, file: PathOrFile, mode: str) -> None:
        if isinstance(file, (str, os.PathLike)):
            self._file: IO[bytes] = open(file, mode)  # noqa: SIM115 - closed in close()
            self._owned = True
        else:
            self._file = file
            self._owned = False

    def close(self) -> None:
        if self._owned:
            self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PcapWriter(_PcapFile):
    """A streaming pcap writer, usable as a capture sink: ``.write(timestamp, frame)``.

    ``file`` is a path (created/truncated, closed by :meth:`close`) or a binary
    file object (left open). Each record is flushed when ``flush_each`` is true
    so a capture can be read while it runs.
    """

    def __init__(
        self,
        file: PathOrFile,
        linktype: int = LINKTYPE_ETHERNET,
        *,
        nanosecond: bool = False,
        snaplen: int = DEFAULT_SNAPLEN,
        flush_each: bool = False,
    ) -> None:
        if linktype not in LINKTYPES:
            raise LocalProtocolError(f"pcap: unsupported link type {linktype} (use 1, 101 or 228)")
        if not 0 < snaplen <= 0x7FFFFFFF:
            raise LocalProtocolError(f"pcap: snaplen {snaplen} out of range")
        self.linktype = linktype
        self.nanosecond = nanosecond
        self.snaplen = snaplen
        self.flush_each = flush_each
        self.count = 0
        self._scale = 1_000_000_000 if nanosecond else 1_000_000
        super().__init__(file, "wb")
        magic = MAGIC_NANO if nanosecond else MAGIC_MICRO
        self._file.write(_GLOBAL.pack(magic, 2, 4, 0, 0, snaplen, linktype))
        if flush_each:
            self._file.flush()

    def write(self, timestamp: float, frame: bytes | bytearray | memoryview) -> None:
        """Append one frame captured at ``timestamp`` (Unix seconds, float)."""
        # Split before scaling: seconds * 1e9 as a float would lose ~100 ns at
        # today's epoch; the fraction alone is exact and rounds once, so 0.1 s
        # becomes 100000 µs, not 99999.
        seconds = math.floor(timestamp)
        self.write_units(seconds * self._scale + round((timestamp - seconds) * self._scale), frame)

    def write_ns(self, timestamp_ns: int, frame: bytes | bytearray | memoryview) -> None:
        """Append one frame with an integer nanosecond timestamp (no float rounding)."""
        units = timestamp_ns if self.nanosecond else (timestamp_ns + 500) // 1000
        self.write_units(units, frame)

    def write_units(self, units: int, frame: bytes | bytearray | memoryview) -> None:
        if self._file.closed:
            raise LocalProtocolError("pcap: write on a closed writer")
        if units < 0:
            raise LocalProtocolError("pcap: timestamps before 1970 cannot be written")
        seconds, fraction = divmod(units, self._scale)
        if seconds > 0xFFFFFFFF:
            raise LocalProtocolError("pcap: timestamp beyond 2106 cannot be written")
        orig = len(frame)
        caplen = min(orig, self.snaplen)
        self._file.write(_RECORD.pack(seconds, fraction, caplen, orig))
        self._file.write(frame[:caplen] if caplen < orig else frame)
        self.count += 1
        if self.flush_each:
            self._file.flush()

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._owned and not self._file.closed:
            self._file.flush()
        super().close()


def write_pcap(
    file: PathOrFile,
    records: list[tuple[float, bytes]],
    linktype: int = LINKTYPE_ETHERNET,
    *,
    nanosecond: bool = False,
) -> int:
    """Write ``(timestamp, frame)`` pairs to a new pcap; returns the number written."""
    with PcapWriter(file, linktype, nanosecond=nanosecond) as writer:
        for timestamp, frame in records:
            writer.write(timestamp, frame)
        return writer.count


def _read_exact(f: IO[bytes], n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise MalformedPacket(
            "pcap", "truncated", f"{what}: wanted {n} octets, file has {len(data)}"
        )
    return data


class PcapReader(_PcapFile):
    """Iterate the records of a classic pcap file; see :func:`read_pcap`."""

    def __init__(self, file: PathOrFile, *, max_record: int = DEFAULT_SNAPLEN) -> None:
        super().__init__(file, "rb")
        try:
            header = _read_exact(self._file, GLOBAL_HEADER_LEN, "global header")
            magic_le = int.from_bytes(header[:4], "little")
            if magic_le in (MAGIC_MICRO, MAGIC_NANO):
                order = "<"
                magic = magic_le
            else:
                magic = int.from_bytes(header[:4], "big")
                order = ">"
            if magic == PCAPNG_MAGIC:
                raise MalformedPacket(
                    "pcap", "unsupported", "pcapng file; save as classic pcap (editcap -F pcap)"
                )
            if magic not in (MAGIC_MICRO, MAGIC_NANO):
                raise MalformedPacket(
                    "pcap", "bad-magic", f"0x{magic_le:08x} is not a libpcap magic number"
                )
            _m, major, minor, _zone, _sigfigs, snaplen, linktype = struct.unpack(
                order + "IHHiIII", header
            )
            if major != 2:
                raise MalformedPacket("pcap", "unsupported", f"format version {major}.{minor}")
        except BaseException:
            self.close()
            raise
        self.nanosecond = magic == MAGIC_NANO
        self.snaplen = snaplen
        # The low 16 bits are the link type; upper bits carry FCS information (pcap-linktype(7)).
        self.linktype = linktype & 0xFFFF
        self.max_record = max_record
        self._record = struct.Struct(order + "IIII")
        self._scale = 1e9 if self.nanosecond else 1e6

    def __iter__(self) -> Iterator[PcapRecord]:
        f = self._file
        record = self._record
        scale = self._scale
        linktype = self.linktype
        limit = max(self.max_record, 0)
        while True:
            head = f.read(RECORD_HEADER_LEN)
            if not head:
                return
            if len(head) != RECORD_HEADER_LEN:
                raise MalformedPacket(
                    "pcap", "truncated", f"record header cut at {len(head)} octets"
                )
            seconds, fraction, caplen, _orig = record.unpack(head)
            if caplen > limit:
                raise MalformedPacket(
                    "pcap", "bad-length", f"record of {caplen} octets exceeds {limit}"
                )
            if fraction >= scale:
                raise MalformedPacket(
                    "pcap", "bad-length", f"sub-second field {fraction} out of range"
                )
            data = _read_exact(f, caplen, "record data")
            yield PcapRecord(seconds + fraction / scale, linktype, data)


def read_pcap(file: PathOrFile, *, max_record: int = DEFAULT_SNAPLEN) -> Iterator[PcapRecord]:
    """Yield ``(timestamp, linktype, data)`` for every record of a classic pcap file.

    Only :class:`MalformedPacket` (layer ``pcap``) is raised for a bad file;
    OSError for a missing one.
    """
    with PcapReader(file, max_record=max_record) as reader:
        yield from reader


def read_pcap_bytes(data: bytes) -> list[PcapRecord]:
    """All records of a pcap held in memory."""
    return list(read_pcap(io.BytesIO(data)))
