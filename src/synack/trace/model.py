"""The trace's records: frames, TCP segments, state changes and notes, and the whole trace.

A :class:`Trace` is an ordered log of :class:`TraceEvent` (one frame on a link,
with its TCP view :class:`TcpInfo` when it is a segment), :class:`StateChange`
(one end of a connection changing state, recorded or inferred) and
:class:`Note` (narration), plus its columns (:class:`Lane`) and connections
(:class:`Connection`); it does not know its source. It is built by
:class:`synack.trace.builder.TraceBuilder`, drawn by
:mod:`synack.trace.terminal` and :mod:`synack.trace.html`.

Layer: trace. Imports synack.tcp and synack.wire.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from synack.tcp.events import SegmentRef, Trigger
from synack.tcp.states import TRANSITIONS, Cause, State
from synack.wire import tcp as wtcp
from synack.wire import udp as wudp
from synack.wire.checksum import fold, pseudo_header_sum
from synack.wire.decode import Decoded
from synack.wire.decode import checksums_ok as checksums_ok  # re-exported: the trace API
from synack.wire.decode import decode as wire_decode
from synack.wire.tcp import TcpFlags, TcpOptions

Addr = tuple[IPv4Address, int]


class LinkType(enum.IntEnum):
    """The two pcap link types a trace reads (LINKTYPE_* numbers)."""

    ETHERNET = 1
    RAW = 101
    IPV4 = 228


def table_targets(state: State, cause: Cause) -> list[State]:
    """The states the transition table allows ``cause`` to lead to from ``state``."""
    return [to for (old, why, to) in TRANSITIONS if old is state and why is cause]


def state_name(state: State | None) -> str:
    """A state's RFC name; an end with no connection object (a closed port) has none."""
    return "no connection" if state is None else state.value


_FLAG_ORDER = (
    (TcpFlags.SYN, "SYN"),
    (TcpFlags.FIN, "FIN"),
    (TcpFlags.RST, "RST"),
    (TcpFlags.PSH, "PSH"),
    (TcpFlags.ACK, "ACK"),
    (TcpFlags.URG, "URG"),
    (TcpFlags.ECE, "ECE"),
    (TcpFlags.CWR, "CWR"),
)


_FLAG_NAMES = tuple(
    ",".join(name for bit, name in _FLAG_ORDER if i & bit) or "none" for i in range(256)
)


def flag_names(flags: TcpFlags | int) -> str:
    """``SYN,ACK``-style flag list in the order the textbooks write them."""
    return _FLAG_NAMES[int(flags) & 0xFF]


def decode(frame: bytes, linktype: LinkType = LinkType.ETHERNET) -> Decoded:
    """A frame as far as it parses (:func:`synack.wire.decode.decode`), never raising.

    A first fragment's transport header is left out: the segment is not whole,
    so it is no connection's segment. Checksums are not verified (captures
    taken on the sending host carry checksums the NIC never filled in);
    :func:`checksums_ok` tells them apart when it matters.
    """
    return wire_decode(frame, linktype, first_fragment=False)


class Checksum(enum.Enum):
    """What a frame's checksums say, as a capture point can know it."""

    OK = "ok"
    BAD = "bad"
    # Only the TCP/UDP checksum is wrong, and it holds the pseudo-header sum: the
    # sending host handed the segment to its NIC (or loopback) to finish, and the
    # capture saw it before that (checksum offload). Unverifiable here, not bad.
    UNVERIFIED = "unverified"


MARKS_LEGEND = (
    "Marks: checksum unverified = the sending host's NIC fills the TCP/UDP checksum in "
    "after the capture point (offload), not an error; bad checksum = the bytes are damaged; "
    "out of order = starts past what its sender had sent (a gap before it)."
)


def checksum_status(frame: bytes, linktype: LinkType = LinkType.ETHERNET) -> Checksum:
    """:class:`Checksum` of one frame (ICMP, UDP and TCP; the IPv4 header's always counts)."""
    d = wire_decode(frame, linktype, verify=True, first_fragment=False)
    if not d.bad_checksums:
        return Checksum.OK
    if (
        len(d.bad_checksums) == 1
        and d.bad_checksums[0].layer in ("tcp", "udp")
        and d.ipv4 is not None
        and d.transport_at is not None
    ):
        at = d.transport_at + (wtcp.CHECKSUM_AT if d.tcp is not None else wudp.CHECKSUM_AT)
        field = int.from_bytes(frame[at : at + 2], "big")
        length = len(d.ipv4.payload)
        proto = 6 if d.tcp is not None else 17
        partial = fold(pseudo_header_sum(int(d.ipv4.src), int(d.ipv4.dst), proto, length))
        if field in (partial, partial ^ 0xFFFF):
            return Checksum.UNVERIFIED
    return Checksum.BAD


@dataclass(frozen=True, slots=True)
class Lane:
    """One column of a sequence diagram: a host, named by its IP (or MAC)."""

    key: str  # the IP address (or MAC) as text
    name: str  # what to call it ("A", "client", or the key itself)


@dataclass(frozen=True, slots=True)
class Connection:
    """One TCP connection seen in the trace. ``client`` sent the first SYN (or the first segment)."""

    index: int
    client: Addr
    server: Addr
    client_lane: str  # Lane.key of each end
    server_lane: str
    client_isn: int | None
    server_isn: int | None
    initial: tuple[State | None, State | None]  # (client, server) before the first segment
    final: tuple[State | None, State | None]
    inferred: bool  # True when states were inferred from segments, not recorded

    def label(self) -> str:
        return f"{self.client[0]}:{self.client[1]} ↔ {self.server[0]}:{self.server[1]}"


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """The TCP part of a frame event, as the pictures need it."""

    conn: int  # Connection.index
    from_client: bool
    src_port: int
    dst_port: int
    flags: TcpFlags
    seq: int
    ack: int
    rel_seq: int  # relative to the sender's ISN
    rel_ack: int | None  # relative to the receiver's ISN (None without ACK or unknown ISN)
    window: int  # the raw 16-bit header field
    window_scaled: int  # in octets: shifted by the sender's scale once both SYNs agreed to scale
    length: int  # payload octets
    options: TcpOptions
    retransmission: bool
    dup_ack: bool
    # (sender, receiver) states before and after this segment.
    before: tuple[State | None, State | None]
    after: tuple[State | None, State | None]
    # It begins past the highest sequence number its sender had sent: a segment
    # before it was lost before the capture point, or comes later (reordering).
    out_of_order: bool = False

    @property
    def flag_text(self) -> str:
        return flag_names(self.flags)

    def label(self) -> str:
        """Textbook arrow label: ``SYN,ACK seq=0 ack=1 win=65535 len=0``."""
        text = f"{self.flag_text} seq={self.rel_seq}"
        if self.rel_ack is not None:
            text += f" ack={self.rel_ack}"
        text += f" win={self.window_scaled}"
        if self.length or not self.flags & (TcpFlags.SYN | TcpFlags.FIN | TcpFlags.RST):
            text += f" len={self.length}"
        return text


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One frame on a link: who sent it to whom, what it is, and what became of it."""

    index: int  # position among the trace's frame events, from 0
    time: float  # seconds, as the source gave them
    src: str  # Lane.key
    dst: str  # Lane.key
    frame: bytes
    linktype: LinkType
    protocol: str  # "TCP", "UDP", "ICMP", "ARP", "IPv4", "Ethernet", or "malformed"
    summary: str  # one line
    link: str | None = None  # which link it was seen on (simulated networks)
    lost: bool = False  # dropped on the link: never reached dst
    lost_where: str | None = None
    tcp: TcpInfo | None = None
    error: str | None = None
    checksum: Checksum = Checksum.OK


@dataclass(frozen=True, slots=True)
class StateChange:
    """One TCP state change of one end of a connection."""

    time: float
    conn: int  # Connection.index
    lane: str  # Lane.key of the host whose state changed
    port: int
    old: State | None
    new: State
    cause: Cause | None
    inferred: bool
    frame: int | None = None  # TraceEvent.index that caused it, when known
    # What the connection said took it (recorded changes only): the segment that
    # arrived (``segment`` names it), a user call (the SYN, FIN or RST it sends is
    # ``frame``) or a timer.
    trigger: Trigger | None = None
    segment: SegmentRef | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """Narration between frames (the demo's stage titles)."""

    time: float
    text: str


Item = TraceEvent | StateChange | Note


@dataclass(frozen=True, slots=True)
class Trace:
    lanes: tuple[Lane, ...]
    items: tuple[Item, ...]
    connections: tuple[Connection, ...]

    @property
    def events(self) -> tuple[TraceEvent, ...]:
        return tuple(item for item in self.items if isinstance(item, TraceEvent))

    @property
    def state_changes(self) -> tuple[StateChange, ...]:
        return tuple(item for item in self.items if isinstance(item, StateChange))

    @property
    def start(self) -> float:
        return self.items[0].time if self.items else 0.0

    def lane_name(self, key: str) -> str:
        for lane in self.lanes:
            if lane.key == key:
                return lane.name
        return key

    def visited(self) -> set[tuple[State, Cause, State]]:
        """The rows (from, cause, to) of the transition table this trace went through:
        exactly its state changes (one without a known cause or old state is no row)."""
        return {
            (c.old, c.cause, c.new)
            for c in self.state_changes
            if c.old is not None and c.cause is not None
        }

    def changes_by_frame(self) -> dict[int, list[StateChange]]:
        """The state changes each frame caused (or, for a user call, announced), in order."""
        out: dict[int, list[StateChange]] = {}
        for c in self.state_changes:
            if c.frame is not None:
                out.setdefault(c.frame, []).append(c)
        return out

    def only_connection(self, index: int) -> Trace:
        """One TCP connection's segments and state changes, as a trace of their own."""
        conn = self.connections[index]
        items = tuple(
            it
            for it in self.items
            if (isinstance(it, TraceEvent) and it.tcp is not None and it.tcp.conn == index)
            or (isinstance(it, StateChange) and it.conn == index)
        )
        used = {k for it in items for k in _lanes_of(it)}
        lanes = tuple(lane for lane in self.lanes if lane.key in used)
        return Trace(lanes, items, (conn,))

    def window(self, start: int, end: int | None = None) -> Trace:
        """Items ``start:end`` as a trace of their own (one stage of a tour).

        Its lanes are those the items use, and each connection's initial
        states are the states at ``start``.
        """
        items = self.items[start:end]
        used = {k for it in items for k in _lanes_of(it)}
        states: dict[tuple[int, str, int], State | None] = {}
        for conn in self.connections:
            states[(conn.index, conn.client_lane, conn.client[1])] = conn.initial[0]
            states[(conn.index, conn.server_lane, conn.server[1])] = conn.initial[1]
        for it in self.items[:start]:
            if isinstance(it, StateChange):
                states[(it.conn, it.lane, it.port)] = it.new
        conns = []
        for conn in self.connections:
            seen = any(
                (isinstance(it, TraceEvent) and it.tcp is not None and it.tcp.conn == conn.index)
                or (isinstance(it, StateChange) and it.conn == conn.index)
                for it in items
            )
            if not seen:
                continue
            initial = (
                states[(conn.index, conn.client_lane, conn.client[1])],
                states[(conn.index, conn.server_lane, conn.server[1])],
            )
            conns.append(replace(conn, initial=initial))
        lanes = tuple(lane for lane in self.lanes if lane.key in used)
        return Trace(lanes, items, tuple(conns))


def _lanes_of(item: Item) -> tuple[str, ...]:
    if isinstance(item, TraceEvent):
        return (item.src, item.dst)
    if isinstance(item, StateChange):
        return (item.lane,)
    return ()
