"""SNTPv4 server mode, sans-IO (docs/protocol.md §3b; RFC 4330 §5, RFC 5905 §7.3).

The packet is the RFC 5905 §7.3 header (48 bytes): leap indicator, version and
mode in the first byte, then stratum, poll, precision, root delay, root
dispersion, reference id and four 64-bit timestamps (seconds since 1900 in the
high 32 bits, a 2^-32 s fraction in the low 32). Extension fields and a MAC may
follow in NTPv4 requests; a server without keys ignores them (RFC 5905 §7.5).

Nothing here reads a clock: :meth:`SntpServer.reply` takes the receive and
transmit instants as Unix nanoseconds from the adapter.

Stratum and reference id: the server's clock is the host's system clock, and
this program cannot know whether (or by whom) the host is synchronised. It
therefore announces itself the way chrony's ``local`` directive and ntpd's
undisciplined local clock do: stratum 10 with reference id 127.127.1.1. That is
an honest "local clock, serve it but prefer anything better" (a client with a
real stratum 1-3 source will never select us over it), and it is what chrony
and ntplib accept: chrony rejects only stratum 0 (kiss-o'-death) and >= 16
(unsynchronised, RFC 5905 §7.3), LI = 3, a zero transmit timestamp, or a
reference time after the transmit time. Claiming stratum 1 with "LOCL" would
tell clients we hold a reference clock, which we do not.

Layer: apps. Imports synack.core.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass, field

from synack.core.ratelimit import TokenBuckets

# Seconds from the NTP era 0 epoch (1900-01-01) to the Unix epoch (RFC 5905 §6).
NTP_UNIX_OFFSET = 2_208_988_800
_NS = 1_000_000_000
_MASK64 = (1 << 64) - 1
_OFFSET_SHIFTED = NTP_UNIX_OFFSET << 32

HEADER_LEN = 48
# RFC 5905 §7.5: extension fields (>= 16 bytes each) and a MAC (<= 24 bytes)
# may follow. Anything longer than this is not a client we can serve.
MAX_REQUEST_LEN = 1024

# The reply builder: byte 0, stratum, poll, precision, root delay, root
# dispersion, reference id, then reference/originate/receive/transmit.
_REPLY = struct.Struct("!BBbbIIIQQQQ")


class LeapIndicator(enum.IntEnum):
    NO_WARNING = 0
    LAST_MINUTE_61 = 1
    LAST_MINUTE_59 = 2
    UNSYNCHRONISED = 3  # "alarm condition": clients discard the reply


class Mode(enum.IntEnum):
    RESERVED = 0
    SYMMETRIC_ACTIVE = 1
    SYMMETRIC_PASSIVE = 2
    CLIENT = 3
    SERVER = 4
    BROADCAST = 5
    CONTROL = 6
    PRIVATE = 7


@dataclass(frozen=True, slots=True)
class NtpPacket:
    """The meaning of an NTP header (timestamps as raw 64-bit NTP values)."""

    leap: int
    version: int
    mode: int
    stratum: int = 0
    poll: int = 0
    precision: int = 0
    root_delay: int = 0  # 16.16 fixed-point seconds
    root_dispersion: int = 0  # 16.16 fixed-point seconds
    reference_id: bytes = b"\0\0\0\0"
    reference_ts: int = 0
    originate_ts: int = 0
    receive_ts: int = 0
    transmit_ts: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.leap <= 3:
            raise ValueError(f"leap indicator {self.leap} out of range 0..3")
        if not 0 <= self.version <= 7:
            raise ValueError(f"version {self.version} out of range 0..7")
        if not 0 <= self.mode <= 7:
            raise ValueError(f"mode {self.mode} out of range 0..7")
        if not 0 <= self.stratum <= 255:
            raise ValueError(f"stratum {self.stratum} out of range 0..255")
        if not -128 <= self.poll <= 127 or not -128 <= self.precision <= 127:
            raise ValueError("poll and precision are signed 8-bit values")
        if len(self.reference_id) != 4:
            raise ValueError("reference id is 4 bytes")
        for name in ("root_delay", "root_dispersion"):
            if not 0 <= getattr(self, name) <= 0xFFFFFFFF:
                raise ValueError(f"{name} is an unsigned 32-bit value")
        for name in ("reference_ts", "originate_ts", "receive_ts", "transmit_ts"):
            if not 0 <= getattr(self, name) <= _MASK64:
                raise ValueError(f"{name} is an unsigned 64-bit value")


def parse(data: bytes) -> NtpPacket:
    """Parse the 48-byte header; trailing extension fields/MAC are ignored.

    Raises ValueError on a short packet (the server counts and drops it).
    """
    if len(data) < HEADER_LEN:
        raise ValueError(f"NTP packet too short: {len(data)} bytes, need {HEADER_LEN}")
    b0, stratum, poll, precision, rdelay, rdisp, refid, ref, org, rec, xmt = _REPLY.unpack_from(
        data
    )
    return NtpPacket(
        leap=b0 >> 6,
        version=(b0 >> 3) & 7,
        mode=b0 & 7,
        stratum=stratum,
        poll=poll,
        precision=precision,
        root_delay=rdelay,
        root_dispersion=rdisp,
        reference_id=refid.to_bytes(4, "big"),
        reference_ts=ref,
        originate_ts=org,
        receive_ts=rec,
        transmit_ts=xmt,
    )


def build(packet: NtpPacket) -> bytes:
    return _REPLY.pack(
        (packet.leap << 6) | (packet.version << 3) | packet.mode,
        packet.stratum,
        packet.poll,
        packet.precision,
        packet.root_delay,
        packet.root_dispersion,
        int.from_bytes(packet.reference_id, "big"),
        packet.reference_ts,
        packet.originate_ts,
        packet.receive_ts,
        packet.transmit_ts,
    )


def unix_ns_to_ntp(ns: int) -> int:
    """Unix nanoseconds -> 64-bit NTP timestamp (2^-32 s resolution).

    One shift and one division: floor((ns * 2^32) / 10^9) splits exactly into
    seconds << 32 plus the truncated fraction. Modulo 2^64: after 2036-02-07
    the seconds field wraps into era 1, as RFC 5905 §6 specifies; clients
    resolve the era from their own clock.
    """
    return (((ns << 32) // _NS) + _OFFSET_SHIFTED) & _MASK64


def ntp_to_unix(ts: int) -> float:
    """64-bit NTP timestamp (era 0) -> Unix seconds as a float."""
    return (ts >> 32) - NTP_UNIX_OFFSET + (ts & 0xFFFFFFFF) / 2**32


def client_request(transmit_ns: int, *, version: int = 4) -> bytes:
    """A minimal mode 3 request whose transmit timestamp is ``transmit_ns``."""
    return build(
        NtpPacket(
            leap=0, version=version, mode=Mode.CLIENT, transmit_ts=unix_ns_to_ntp(transmit_ns)
        )
    )


@dataclass(frozen=True, slots=True)
class Measurement:
    """What a client computes from one exchange (RFC 5905 §8, RFC 4330 §5)."""

    offset: float  # ((t2 - t1) + (t3 - t4)) / 2, seconds
    delay: float  # (t4 - t1) - (t3 - t2), seconds
    stratum: int
    reference_id: bytes
    server_time: float  # t3 as Unix seconds


def measure(reply: bytes, t1_ns: int, t4_ns: int) -> Measurement:
    """Validate a server reply to our request sent at ``t1_ns`` and compute offset/delay.

    Raises ValueError when the reply is not a usable answer to that request.
    """
    pkt = parse(reply)
    if pkt.mode != Mode.SERVER:
        raise ValueError(f"reply has mode {pkt.mode}, expected 4 (server)")
    if pkt.leap == LeapIndicator.UNSYNCHRONISED or pkt.stratum == 0 or pkt.stratum >= 16:
        raise ValueError(f"server is unsynchronised (LI {pkt.leap}, stratum {pkt.stratum})")
    # RFC 4330 §5: the originate timestamp must echo our transmit timestamp,
    # which is how a client rejects stale or forged replies.
    if pkt.originate_ts != unix_ns_to_ntp(t1_ns):
        raise ValueError("reply's originate timestamp does not match our request")
    if pkt.transmit_ts == 0:
        raise ValueError("reply has a zero transmit timestamp")
    t1 = t1_ns / _NS
    t4 = t4_ns / _NS
    t2 = ntp_to_unix(pkt.receive_ts)
    t3 = ntp_to_unix(pkt.transmit_ts)
    return Measurement(
        offset=((t2 - t1) + (t3 - t4)) / 2,
        delay=(t4 - t1) - (t3 - t2),
        stratum=pkt.stratum,
        reference_id=pkt.reference_id,
        server_time=t3,
    )


# chrony's and ntpd's "local clock" reference id, 127.127.1.1.
LOCAL_CLOCK_REFID = bytes((127, 127, 1, 1))


@dataclass(slots=True)
class SntpCounters:
    answered: int = 0
    too_short: int = 0
    too_long: int = 0
    bad_version: int = 0
    not_client: int = 0
    rate_limited: int = 0


# The reply after the poll byte and before the timestamps is the same for
# every request: precision, root delay, root dispersion, reference id.
# The reference timestamp is packed as its seconds field and a zero fraction.
_REPLY_FAST = struct.Struct("!2sB13sI4x8sQQ")

_ACCEPT = "accept"


@dataclass(slots=True)
class SntpServer:
    """Server-mode reply computation. ``reply`` returns the bytes to send, or None.

    A peer can never make this raise: every malformed request is counted in
    ``counters`` and answered with nothing (RFC 4330 §5 lets a server drop
    what it does not serve, and silence gives an attacker no amplification).
    A reply is never larger than its request (48 bytes for 48 or more).

    Given the request's ``source_host``, ``reply`` applies the per-source
    rate limit first, the same token buckets as the format protocol (``rate``
    requests/s per source host, ``burst`` saved up; 0 = no limit) at the
    monotonic clock of the last ``tick``: without it the server is a 1:1
    reflector for anyone who can spoof a source address.
    """

    rate: float = 0.0
    burst: float = 100.0

    stratum: int = 10
    reference_id: bytes = LOCAL_CLOCK_REFID
    # log2 seconds. time.time_ns() is read in the adapter a few hundred ns
    # before/after the datagram moves, so ~1 µs (2^-20) is the honest figure.
    precision: int = -20
    # 16.16 fixed point. Root dispersion: our bound on the local clock's error
    # relative to its reference; 1 ms is conservative for a disciplined host.
    root_delay: int = 0
    root_dispersion: int = 0x0000_0042  # ~1 ms
    counters: SntpCounters = field(default_factory=SntpCounters)
    # Per first request byte: the first two reply bytes, or why it is refused.
    _by_first_byte: list[tuple[str, bytes]] = field(init=False, repr=False)
    _fixed: bytes = field(init=False, repr=False)
    _buckets: TokenBuckets | None = field(init=False, repr=False)
    _now: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.rate < math.inf:
            raise ValueError("rate must be >= 0 (0 = no limit)")
        self._buckets = TokenBuckets(self.rate, self.burst) if self.rate > 0 else None
        # Validates the configured fields the same way a parsed packet is.
        NtpPacket(
            leap=0,
            version=4,
            mode=Mode.SERVER,
            stratum=self.stratum,
            precision=self.precision,
            root_delay=self.root_delay,
            root_dispersion=self.root_dispersion,
            reference_id=self.reference_id,
        )
        table: list[tuple[str, bytes]] = []
        for b0 in range(256):
            version, mode = (b0 >> 3) & 7, b0 & 7
            if version == 0 or version > 4:
                table.append(("bad_version", b""))
            elif mode != Mode.CLIENT:
                table.append(("not_client", b""))
            else:
                first = (LeapIndicator.NO_WARNING << 6) | (version << 3) | Mode.SERVER
                table.append((_ACCEPT, bytes((first, self.stratum))))
        self._by_first_byte = table
        self._fixed = struct.pack(
            "!bII4s", self.precision, self.root_delay, self.root_dispersion, self.reference_id
        )

    def tick(self, now: float) -> None:
        """Set the monotonic clock of the rate limit for the requests that
        follow (the kernel fast path reads it once per batch of datagrams)."""
        self._now = now

    def reply(
        self, request: bytes, receive_ns: int, transmit_ns: int, source_host: str | None = None
    ) -> bytes | None:
        """The reply to ``request`` received at ``receive_ns`` and answered at
        ``transmit_ns`` (Unix nanoseconds), or None. With ``source_host``, the
        per-source rate limit is applied first, at the clock of the last
        :meth:`tick` (one call per datagram on the fast path)."""
        if (
            source_host is not None
            and self._buckets is not None
            and not self._buckets.allow(source_host, self._now)
        ):
            self.counters.rate_limited += 1
            return None
        n = len(request)
        if n < HEADER_LEN:
            self.counters.too_short += 1
            return None
        if n > MAX_REQUEST_LEN:
            self.counters.too_long += 1
            return None
        verdict, head = self._by_first_byte[request[0]]
        if verdict is not _ACCEPT:
            setattr(self.counters, verdict, getattr(self.counters, verdict) + 1)
            return None
        # The version is copied (in ``head``) and so is the poll byte (RFC
        # 4330 §5); the request's transmit timestamp becomes our originate
        # timestamp byte for byte.
        rx = ((receive_ns << 32) // _NS) + _OFFSET_SHIFTED
        tx = ((transmit_ns << 32) // _NS) + _OFFSET_SHIFTED
        # The reference time (when our clock was last set) must not be after
        # the transmit time or chrony rejects the reply (its "test 7"); the
        # start of the receive second (its seconds field, fraction 0) is
        # always earlier.
        try:
            out = _REPLY_FAST.pack(head, request[2], self._fixed, rx >> 32, request[40:48], rx, tx)
        except struct.error:
            # From 2036-02-07 the timestamps pass 2^64 and wrap into era 1
            # (RFC 5905 §6). struct's range check finds that, so the masks
            # cost nothing per datagram before then.
            rx &= _MASK64
            tx &= _MASK64
            out = _REPLY_FAST.pack(head, request[2], self._fixed, rx >> 32, request[40:48], rx, tx)
        self.counters.answered += 1
        return out
