"""TCP header and options (RFC 9293 §3.1, RFC 7323, RFC 2018, RFC 7413).

CONTRACT (shared by wire/, tcp/, stack/ and trace/): the representation
classes below, ``parse`` and ``build``.

Layer: wire. Imports synack.errors and the rest of synack.wire.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from synack.errors import LocalProtocolError
from synack.wire import options as tlv
from synack.wire._fast import address_int, fast_init, slot_maker
from synack.wire.checksum import finish, fold, le_residue, pseudo_header_sum
from synack.wire.errors import MalformedPacket

PROTO_TCP = 6
MIN_HEADER_LEN = 20
MAX_OPTIONS_LEN = 40
MAX_WSCALE = 14  # RFC 7323 §2.3: a larger window scale shift is taken as 14

# Header layout (RFC 9293 §3.1): octet offsets of the fields, for code that reads
# or patches one field in place (the dissection, checksum offload).
SRC_PORT_AT = 0
DST_PORT_AT = 2
SEQ_AT = 4
ACK_AT = 8
DATA_OFFSET_AT = 12  # data offset (32-bit words): high nibble; reserved: low nibble
FLAGS_AT = 13
WINDOW_AT = 14
CHECKSUM_AT = 16
URGENT_AT = 18

OPT_EOL = tlv.OPT_EOL
OPT_NOP = tlv.OPT_NOP
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMPS = 8
OPT_FASTOPEN = 34  # RFC 7413 §4.1.1: TCP Fast Open Cookie
KNOWN_OPTIONS = frozenset(
    {
        OPT_EOL,
        OPT_NOP,
        OPT_MSS,
        OPT_WSCALE,
        OPT_SACK_PERMITTED,
        OPT_SACK,
        OPT_TIMESTAMPS,
        OPT_FASTOPEN,
    }
)
#: RFC 7413 §4.1.1: a cookie is 4 to 16 octets (an empty one is a request).
FASTOPEN_COOKIE_MIN = 4
FASTOPEN_COOKIE_MAX = 16

# The fixed length of each option synack understands (SACK: 2 + 8n, checked apart).
_OPTION_LEN = {OPT_MSS: 4, OPT_WSCALE: 3, OPT_SACK_PERMITTED: 2, OPT_TIMESTAMPS: 10}


class TcpFlags(enum.IntFlag):
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


# Building an IntFlag through the Enum machinery costs more than the rest of a
# header parse: look the 256 combinations up instead.
_FLAGS: tuple[TcpFlags, ...] = tuple(TcpFlags(i) for i in range(256))


@dataclass(frozen=True, slots=True)
class TcpOptions:
    """The options synack understands; unknown ones are kept as (kind, data).

    Built in a canonical order (MSS, SACK-permitted, timestamps, window scale,
    SACK blocks, unknown) padded with NOPs/EOL to a multiple of 4 bytes.
    """

    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()  # (left edge, right edge)
    timestamps: tuple[int, int] | None = None  # (TSval, TSecr)
    unknown: tuple[tuple[int, bytes], ...] = ()  # (kind, data without kind/len)
    #: RFC 7413 Fast Open: None (no option), b"" (a cookie request) or the
    #: cookie. A cookie of an illegal length is kept as it came: the server
    #: refuses it as invalid (RFC 7413 §4.2.2), the segment stays good.
    fastopen: bytes | None = None


fast_init(TcpOptions)
NO_OPTIONS = TcpOptions()


@dataclass(frozen=True, slots=True)
class TcpSegment:
    """One TCP segment's meaning. ``window`` is the raw 16-bit header field
    (unscaled); scaling is the connection's business (RFC 7323 §2.3)."""

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: TcpFlags
    window: int
    payload: bytes = b""
    options: TcpOptions = field(default=NO_OPTIONS)
    urgent: int = 0

    @property
    def seg_len(self) -> int:
        """SEG.LEN: payload octets plus one for SYN and one for FIN (RFC 9293 §3.4)."""
        n = len(self.payload)
        if self.flags & TcpFlags.SYN:
            n += 1
        if self.flags & TcpFlags.FIN:
            n += 1
        return n


fast_init(TcpSegment)


_HDR = struct.Struct("!HHIIBBHHH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_TS = struct.Struct("!II")
_SACK_EDGE = struct.Struct("!II")
_TS_ALIGNED = b"\x01\x01\x08\x0a"  # NOP NOP TS: what Linux puts on every data segment
# A SYN's options as Linux lays them out (and build_options does): MSS,
# SACK-permitted then TS, NOP then window scale; 20 octets, no padding.
_SYN_OPTIONS = struct.Struct("!HHIIIBBBB")
_SYN_TS = b"\x04\x02\x08\x0a"
_NOP_WS = b"\x01\x03\x03"
TS_ALIGNED = _TS_ALIGNED  # (for a host that packs these options with its headers)


def parse_options(opts: bytes | memoryview) -> TcpOptions:
    """Parse the option octets of a header (RFC 9293 §3.2).

    MUST-7: an option whose length is illegal (below 2, running past the
    header, or wrong for its kind) makes the segment ``bad-option``; unknown
    kinds are kept and skipped (MUST-6 ... "MUST ignore"), which is why they
    carry their data.
    """
    n = len(opts)
    if n == 0:
        return NO_OPTIONS
    if n == 12 and opts[:4] == _TS_ALIGNED:
        return TcpOptions(timestamps=_TS.unpack_from(opts, 4))
    if n == 20 and opts[:2] == b"\x02\x04" and opts[4:8] == _SYN_TS and opts[16:19] == _NOP_WS:
        # MSS, SACK-permitted + TS, NOP + window scale, each of its right
        # length: the SYN (and SYN,ACK) of every Linux connection, and ours.
        _, mss, _, tsval, tsecr, _, _, _, wscale = _SYN_OPTIONS.unpack(opts)
        return _make_options(mss, wscale, True, (), (tsval, tsecr), (), None)
    return _parse_options_walk(opts)


def _parse_options_walk(opts: bytes | memoryview) -> TcpOptions:
    """:func:`parse_options` for any layout: option by option."""
    mss: int | None = None
    wscale: int | None = None
    sack_permitted = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    timestamps: tuple[int, int] | None = None
    unknown: list[tuple[int, bytes]] = []
    fastopen: bytes | None = None
    for kind, i, length in tlv.walk(opts, "tcp"):
        want = _OPTION_LEN.get(kind)
        if want is not None and length != want:
            raise MalformedPacket(
                "tcp", "bad-option", f"option {kind} has length {length}, not {want}"
            )
        if kind == OPT_MSS:
            mss = _U16.unpack_from(opts, i + 2)[0]
        elif kind == OPT_TIMESTAMPS:
            timestamps = _TS.unpack_from(opts, i + 2)
        elif kind == OPT_WSCALE:
            wscale = opts[i + 2]
        elif kind == OPT_SACK_PERMITTED:
            sack_permitted = True
        elif kind == OPT_SACK:
            if (length - 2) % 8 or length == 2:
                raise MalformedPacket(
                    "tcp", "bad-option", f"SACK option length {length} is not 2+8n"
                )
            sack_blocks = tuple(
                _SACK_EDGE.unpack_from(opts, j) for j in range(i + 2, i + length, 8)
            )
        elif kind == OPT_FASTOPEN:
            fastopen = bytes(opts[i + 2 : i + length])
        else:
            unknown.append((kind, bytes(opts[i + 2 : i + length])))
    return TcpOptions(
        mss, wscale, sack_permitted, sack_blocks, timestamps, tuple(unknown), fastopen
    )


_make = slot_maker(TcpSegment)
_from_bytes = int.from_bytes
_make_options = slot_maker(TcpOptions)
_ts_options: dict[tuple[int, int], TcpOptions] = {}
_TS_OPTIONS_MAX = 64


def parse(
    data: bytes | memoryview, src: IPv4Address, dst: IPv4Address, *, verify_checksum: bool = True
) -> TcpSegment:
    """Parse one TCP segment (header + payload) carried between ``src`` and ``dst``."""
    if type(data) is not bytes:
        data = bytes(data)
    return parse_at(
        data, 0, len(data), address_int(src), address_int(dst), verify_checksum=verify_checksum
    )


def parse_at(
    data: bytes, start: int, end: int, src: int, dst: int, *, verify_checksum: bool = True
) -> TcpSegment:
    """Parse the TCP segment held in ``data[start:end]`` (a host's receive
    path hands the whole frame: no intermediate copy), carried between the
    addresses ``src`` and ``dst`` given as ints. ``0 <= start <= end <=
    len(data)`` is the caller's promise; the segment itself is checked as
    :func:`parse` checks it."""
    n = end - start
    if n < MIN_HEADER_LEN:
        raise MalformedPacket("tcp", "truncated", f"{n} bytes, header needs {MIN_HEADER_LEN}")
    sport, dport, seq, ack, off, flags, window, csum, urgent = _HDR.unpack_from(data, start)
    hlen = (off >> 4) << 2
    if hlen < MIN_HEADER_LEN:
        raise MalformedPacket("tcp", "bad-data-offset", f"data offset {hlen >> 2} is below 5")
    if hlen > n:
        raise MalformedPacket(
            "tcp", "bad-data-offset", f"header of {hlen} octets in a {n}-octet segment"
        )
    if verify_checksum:
        # Pseudo-header (RFC 9293 §3.1) + segment, as one sum; see checksum.py:
        # the little-endian residue times 256 is the big-endian one (RFC 1071 §2(B)).
        # (le_residue, inline below 256 octets, where it makes no folds: a request.)
        raw = data[start:end]
        residue = _from_bytes(raw, "little") % 0xFFFF if n < 256 else le_residue(raw)
        total = residue * 256 + src + dst + PROTO_TCP + n
        if total % 0xFFFF:  # checksum.is_valid, inline (total is never 0 here)
            raise MalformedPacket("tcp", "bad-checksum", f"checksum 0x{csum:04x} is wrong")
    at = start + MIN_HEADER_LEN
    if hlen == MIN_HEADER_LEN:
        options = NO_OPTIONS
    elif hlen == 32 and data[at : at + 4] == _TS_ALIGNED:
        # NOP NOP TS: the options of nearly every segment of a Linux connection.
        # Dozens of segments share a millisecond's TSval: share their
        # (immutable) options too, from a small bounded table.
        ts = _TS.unpack_from(data, at + 4)
        shared = _ts_options.get(ts)
        if shared is None:
            if len(_ts_options) >= _TS_OPTIONS_MAX:
                _ts_options.clear()
            shared = _ts_options[ts] = _make_options(None, None, False, (), ts, (), None)
        options = shared
    else:
        options = parse_options(data[at : start + hlen])
    return _make(
        sport, dport, seq, ack, _FLAGS[flags], window, data[start + hlen : end], options, urgent
    )


# For stack/rx.py's inline of segment_at's common case: the segment maker,
# flags by value, the shared timestamp options and their maker.
make_segment = _make
FLAGS = _FLAGS
SHARED_TS_OPTIONS = _ts_options
TIMESTAMPS = _TS
TS_ALIGNED = _TS_ALIGNED


def shared_ts_options(ts: tuple[int, int]) -> TcpOptions:
    """The options NOP NOP TS(``ts``) as parse_at shares them (a bounded table)."""
    shared = _ts_options.get(ts)
    if shared is None:
        if len(_ts_options) >= _TS_OPTIONS_MAX:
            _ts_options.clear()
        shared = _ts_options[ts] = _make_options(None, None, False, (), ts, (), None)
    return shared


def segment_at(
    data: bytes,
    at: int,
    end: int,
    hlen: int,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    urgent: int,
) -> TcpSegment:
    """The segment :func:`parse_at` gives for the header at ``data[at:]``
    whose fixed fields the caller unpacked and checked (data offset ``hlen``
    within the segment, which ends at ``end``; checksum verified): only its
    options are read here (MalformedPacket as parse_at raises it). For a
    host's one-pass frame input (stack/rx.py); parse_at keeps its own copy
    of these lines (a call less on its path), tests/stack/test_rx.py holds
    the two equal."""
    opts_at = at + MIN_HEADER_LEN
    if hlen == MIN_HEADER_LEN:
        options = NO_OPTIONS
    elif hlen == 32 and data[opts_at : opts_at + 4] == _TS_ALIGNED:
        options = shared_ts_options(_TS.unpack_from(data, opts_at + 4))
    else:
        options = parse_options(data[opts_at : at + hlen])
    return _make(
        sport, dport, seq, ack, _FLAGS[flags], window, data[at + hlen : end], options, urgent
    )


def build_options(options: TcpOptions) -> bytes:
    """Options in the canonical order, NOP-aligned like Linux, EOL-padded to a multiple of 4."""
    return _options(options)[0]


# NOP NOP kind 8 length 10 as 16-bit words, in a ones'-complement sum.
_TS_ALIGNED_SUM = 0x0101 + 0x080A
TS_ALIGNED_SUM = _TS_ALIGNED_SUM


def _options(options: TcpOptions) -> tuple[bytes, int]:
    """:func:`build_options` and the sum of its 16-bit words (modulo 0xFFFF:
    a 32-bit value counts as itself, checksum.py), for the checksum."""
    if options is NO_OPTIONS:
        return b"", 0
    ts = options.timestamps
    if (
        ts is not None
        and options.mss is None
        and options.wscale is None
        and not options.sack_permitted
        and not options.sack_blocks
        and not options.unknown
        and options.fastopen is None
    ):
        # Timestamps alone: the options of nearly every data segment, summed
        # from their values.
        try:
            return _TS_ALIGNED + _TS.pack(*ts), _TS_ALIGNED_SUM + ts[0] + ts[1]
        except (struct.error, TypeError, IndexError) as exc:
            raise LocalProtocolError(f"tcp: cannot build options {options!r}: {exc}") from None
    if (
        ts is not None
        and options.mss is not None
        and options.sack_permitted
        and options.wscale is not None
        and not options.sack_blocks
        and not options.unknown
        and options.fastopen is None
    ):
        # A SYN's usual set (see _SYN_OPTIONS), packed at once.
        try:
            raw = _SYN_OPTIONS.pack(0x0204, options.mss, 0x0402080A, *ts, 1, 3, 3, options.wscale)
        except (struct.error, TypeError) as exc:
            raise LocalProtocolError(f"tcp: cannot build options {options!r}: {exc}") from None
        return raw, le_residue(raw) * 256
    return _options_walk(options)


def _options_walk(options: TcpOptions) -> tuple[bytes, int]:
    """:func:`_options` for any set of options: one by one."""
    parts: list[bytes] = []
    try:
        if options.mss is not None:
            parts.append(b"\x02\x04" + _U16.pack(options.mss))
        if options.sack_permitted and options.timestamps is not None:
            parts.append(b"\x04\x02\x08\x0a" + _TS.pack(*options.timestamps))
        elif options.timestamps is not None:
            parts.append(_TS_ALIGNED + _TS.pack(*options.timestamps))
        elif options.sack_permitted:
            parts.append(b"\x01\x01\x04\x02")
        if options.wscale is not None:
            parts.append(b"\x01\x03\x03" + bytes((options.wscale,)))
        if options.sack_blocks:
            parts.append(b"\x01\x01\x05" + bytes((2 + 8 * len(options.sack_blocks),)))
            parts.extend(_SACK_EDGE.pack(left, right) for left, right in options.sack_blocks)
        if options.fastopen is not None:
            # RFC 7413 §4.1.1; NOPs keep what follows 32-bit aligned.
            n = len(options.fastopen)
            parts.append(b"\x01" * (-(n + 2) % 4) + bytes((OPT_FASTOPEN, n + 2)) + options.fastopen)
        for kind, data in options.unknown:
            if kind in KNOWN_OPTIONS or not 0 <= kind <= 255:
                raise LocalProtocolError(f"tcp: unknown option kind {kind} is not unknown")
            parts.append(bytes((kind, 2 + len(data))) + data)
    except (struct.error, ValueError, TypeError) as exc:
        raise LocalProtocolError(f"tcp: cannot build options {options!r}: {exc}") from None
    raw = b"".join(parts)
    if len(raw) > MAX_OPTIONS_LEN:
        raise LocalProtocolError(f"tcp: options need {len(raw)} octets, at most 40 fit")
    if len(raw) % 4:
        # End of Option List, then zeros to the 32-bit boundary (RFC 9293 §3.1).
        raw += bytes(4 - len(raw) % 4)
    return raw, le_residue(raw) * 256


def _pack_header(segment: TcpSegment, hlen: int, checksum: int) -> bytes:
    """The fixed 20-octet header; LocalProtocolError for a field out of range."""
    try:
        return _HDR.pack(
            segment.src_port,
            segment.dst_port,
            segment.seq,
            segment.ack,
            hlen << 2,
            int(segment.flags),
            segment.window,
            checksum,
            segment.urgent,
        )
    except (struct.error, TypeError) as exc:
        raise LocalProtocolError(f"tcp: cannot build {segment!r}: {exc}") from None


def build(segment: TcpSegment, src: IPv4Address, dst: IPv4Address) -> bytes:
    """Serialise ``segment`` with a correct pseudo-header checksum."""
    return build_header(segment, address_int(src), address_int(dst)) + segment.payload


def build_header(segment: TcpSegment, src: int, dst: int) -> bytes:
    """The header of ``segment`` (options included) with its checksum over
    pseudo-header, header and payload, for addresses given as ints; the
    payload is summed, not copied (a host joins it into its frame once)."""
    opts, opts_sum = _options(segment.options)
    hlen = MIN_HEADER_LEN + len(opts)
    payload = segment.payload
    length = hlen + len(payload)
    try:
        sport, dport, seq, ack = segment.src_port, segment.dst_port, segment.seq, segment.ack
        flags, window, urgent = int(segment.flags), segment.window, segment.urgent
        # The fixed header summed from its fields (a 32-bit field counts as
        # itself modulo 0xFFFF, checksum.py) and packed once, checksum
        # included; the payload read as one little-endian residue, turned
        # big-endian (RFC 1071 §2(B)). Out-of-range fields: pack refuses them.
        total = (
            src + dst + PROTO_TCP + length + sport + dport + seq + ack + (hlen << 10) + flags
        ) + (window + urgent + opts_sum + le_residue(payload) * 256)
        header = _HDR.pack(sport, dport, seq, ack, hlen << 2, flags, window, finish(total), urgent)
    except (struct.error, TypeError) as exc:
        raise LocalProtocolError(f"tcp: cannot build {segment!r}: {exc}") from None
    if length > 0xFFFF:
        raise LocalProtocolError(f"tcp: segment of {length} octets exceeds 65535")
    return header + opts if opts else header


def build_options_sum(options: TcpOptions) -> tuple[bytes, int]:
    """:func:`build_options` and the sum of the options' 16-bit words
    (modulo 0xFFFF), for a caller that sums a header's checksum itself."""
    return _options(options)


def build_header_offload(
    segment: TcpSegment, src: IPv4Address, dst: IPv4Address, *, max_length: int = 0xFFFF
) -> bytes:
    """The header of ``segment`` (options included, payload not) for checksum
    offload: the checksum field holds the folded pseudo-header sum only, not
    complemented, as a NIC (or virtio's VIRTIO_NET_HDR_F_NEEDS_CSUM) expects,
    which then sums from the TCP header to the end and stores the result.
    The payload is neither copied nor summed. Not valid on the wire as is.
    ``max_length``: over 65,535 only for a BIG TCP super-segment (its
    pseudo-header length summed as the 32-bit value it is, as Linux's)."""
    opts = build_options(segment.options)
    hlen = MIN_HEADER_LEN + len(opts)
    length = hlen + len(segment.payload)
    if length > max_length:
        raise LocalProtocolError(f"tcp: segment of {length} octets exceeds {max_length}")
    partial = fold(pseudo_header_sum(address_int(src), address_int(dst), PROTO_TCP, length))
    header = _pack_header(segment, hlen, partial)
    return header + opts if opts else header
