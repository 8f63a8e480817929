"""The trace: an ordered log of frames and TCP state changes, independent of its source.

A source (a pcap file, synack's simulated network, a live host) feeds a
:class:`TraceBuilder` with ``(time, frame bytes)`` pairs, optionally the state
changes its TCP connections recorded, and optional narration. ``build()``
decodes every frame with the wire formats, groups TCP segments into
connections, computes relative sequence numbers, marks retransmissions and
duplicate ACKs, and gives every segment the state of both ends before and
after it.

When a source records no state changes for a connection (a capture of two
kernels talking), the states are inferred from the segments alone by driving
the one transition table of :mod:`synack.tcp.states` with the causes each
segment implies for its sender ("send SYN" is an active OPEN, "send FIN" a
CLOSE) and, unless the segment was lost, for its receiver (rcv SYN, rcv ACK of
SYN, rcv FIN, ...). The observer sees one point of the path, so it takes a
segment as received when it is seen; a pcap cannot show TIME-WAIT ending.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address

from synack.tcp.seq import SEQ_MOD, seq_lt
from synack.tcp.states import TRANSITIONS, Cause, State
from synack.wire import arp as warp
from synack.wire import ethernet as weth
from synack.wire import icmp as wicmp
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire import udp as wudp
from synack.wire.errors import MalformedPacket
from synack.wire.summary import summarize
from synack.wire.tcp import TcpFlags, TcpOptions

_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10  # TcpFlags as plain ints for the hot path

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


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one frame means, layer by layer (None where a layer is absent)."""

    ethernet: weth.EthernetFrame | None = None
    arp: warp.ArpPacket | None = None
    ipv4: wip.Ipv4Packet | None = None
    tcp: wtcp.TcpSegment | None = None
    udp: wudp.UdpDatagram | None = None
    icmp: wicmp.IcmpMessage | None = None
    error: str | None = None  # "layer: reason" of the first layer that failed to parse


def decode(frame: bytes, linktype: LinkType = LinkType.ETHERNET) -> Decoded:
    """Parse ``frame`` as far as it goes; a malformed layer stops there, never raises.

    Checksums are not verified here: captures taken on the sending host carry
    checksums the NIC (or loopback) never filled in. :func:`checksums_ok`
    tells them apart when it matters.
    """
    eth: weth.EthernetFrame | None = None
    try:
        if linktype is LinkType.ETHERNET:
            eth = weth.parse(frame)
            if eth.ethertype == weth.ETHERTYPE_ARP:
                return Decoded(ethernet=eth, arp=warp.parse(eth.payload))
            if eth.ethertype != weth.ETHERTYPE_IPV4:
                return Decoded(ethernet=eth)
            ip_bytes = eth.payload
        else:  # RAW or IPV4: the frame is an IPv4 packet
            ip_bytes = frame
    except MalformedPacket as exc:
        return Decoded(ethernet=eth, error=f"{exc.layer}: {exc.reason}")
    try:
        ip = wip.parse(ip_bytes, verify_checksum=False)
    except MalformedPacket as exc:
        return Decoded(ethernet=eth, error=f"{exc.layer}: {exc.reason}")
    if ip.frag_offset or ip.more_fragments:
        return Decoded(ethernet=eth, ipv4=ip)  # a fragment: its transport header may be elsewhere
    try:
        if ip.proto == wip.PROTO_TCP:
            seg = wtcp.parse(ip.payload, ip.src, ip.dst, verify_checksum=False)
            return Decoded(ethernet=eth, ipv4=ip, tcp=seg)
        if ip.proto == wip.PROTO_UDP:
            dgram = wudp.parse(ip.payload, ip.src, ip.dst, verify_checksum=False)
            return Decoded(ethernet=eth, ipv4=ip, udp=dgram)
        if ip.proto == wip.PROTO_ICMP:
            return Decoded(
                ethernet=eth, ipv4=ip, icmp=wicmp.parse(ip.payload, verify_checksum=False)
            )
    except MalformedPacket as exc:
        return Decoded(ethernet=eth, ipv4=ip, error=f"{exc.layer}: {exc.reason}")
    return Decoded(ethernet=eth, ipv4=ip)


def checksums_ok(frame: bytes, linktype: LinkType = LinkType.ETHERNET) -> bool:
    """Whether every checksum in ``frame`` verifies (IPv4 header, TCP/UDP/ICMP)."""
    d = decode(frame, linktype)
    if d.ipv4 is None:
        return True
    ip = d.ipv4
    try:
        raw = d.ethernet.payload if d.ethernet is not None else frame
        wip.parse(raw)
        if d.tcp is not None:
            wtcp.parse(ip.payload, ip.src, ip.dst)
        elif d.udp is not None:
            wudp.parse(ip.payload, ip.src, ip.dst)
        elif d.icmp is not None:
            wicmp.parse(ip.payload)
    except MalformedPacket:
        return False
    return True


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
        """The rows (from, cause, to) of the transition table this trace went through.

        A change recorded without its cause counts for every row from its old
        to its new state.
        """
        rows: set[tuple[State, Cause, State]] = set()
        for c in self.state_changes:
            if c.old is None:
                continue
            if c.cause is not None:
                rows.add((c.old, c.cause, c.new))
            else:
                rows.update(r for r in TRANSITIONS if r[0] is c.old and r[2] is c.new)
        return rows

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


# --- building ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Frame:
    time: float
    frame: bytes
    linktype: LinkType
    link: str | None
    lost: bool
    lost_where: str | None


@dataclass(slots=True)
class _Recorded:
    time: float
    local: Addr
    remote: Addr
    old: State | None
    new: State
    cause: Cause | None


@dataclass(slots=True)
class _Side:
    addr: Addr
    state: State | None
    isn: int | None = None
    snd_max: int | None = None  # highest seq + SEG.LEN sent so far
    fin_seq: int | None = None  # sequence number of our FIN
    fin_received: bool = False
    passive: bool = False  # went through LISTEN
    last_ack: int | None = None
    last_window: int | None = None
    wscale: int | None = None  # the shift its SYN announced (RFC 7323 §2.2)
    fin_change: StateChange | None = None  # the inferred change its peer's FIN caused


@dataclass(slots=True)
class _Conn:
    index: int
    client: _Side
    server: _Side
    inferred: bool
    initial: tuple[State | None, State | None] = (None, None)


def _ports(d: Decoded) -> tuple[int | None, int | None]:
    if d.tcp is not None:
        return d.tcp.src_port, d.tcp.dst_port
    if d.udp is not None:
        return d.udp.src_port, d.udp.dst_port
    return None, None


def _conn_key(a: Addr, b: Addr) -> tuple[Addr, Addr]:
    return (a, b) if (int(a[0]), a[1]) <= (int(b[0]), b[1]) else (b, a)


@dataclass(slots=True)
class TraceBuilder:
    """Collects what a source saw, in order; :meth:`build` turns it into a :class:`Trace`.

    ``names`` maps an IP address (text) to the name its lane shows ("A").
    """

    names: dict[str, str] = field(default_factory=dict)
    _log: list[_Frame | _Recorded | Note] = field(default_factory=list)

    def add_frame(
        self,
        time: float,
        frame: bytes,
        *,
        linktype: LinkType = LinkType.ETHERNET,
        link: str | None = None,
        lost: bool = False,
        lost_where: str | None = None,
    ) -> None:
        self._log.append(_Frame(time, bytes(frame), linktype, link, lost, lost_where))

    def add_state_change(
        self,
        time: float,
        local: Addr,
        remote: Addr,
        old: State | None,
        new: State,
        cause: Cause | None = None,
    ) -> None:
        """A state change a connection recorded; its connection is then not inferred."""
        self._log.append(_Recorded(time, local, remote, old, new, cause))

    def add_note(self, time: float, text: str) -> None:
        self._log.append(Note(time, text))

    def extend_frames(
        self, frames: Iterable[tuple[float, bytes]], linktype: LinkType = LinkType.ETHERNET
    ) -> None:
        for time, frame in frames:
            self.add_frame(time, frame, linktype=linktype)

    def build(self) -> Trace:
        return _Assembler(self).run()


class _Assembler:
    def __init__(self, builder: TraceBuilder) -> None:
        self.names = builder.names
        self.log = builder._log
        self.lanes: dict[str, Lane] = {}
        self.name_lane: dict[str, str] = {}
        self.conns: dict[tuple[Addr, Addr], _Conn] = {}
        self.items: list[Item] = []
        self._decoded: dict[int, Decoded] = {}
        self.recorded_keys = {
            _conn_key(e.local, e.remote) for e in self.log if isinstance(e, _Recorded)
        }
        # Which side answers the first SYN of a connection with RST: a closed
        # port (CLOSED throughout), not a listener (RFC 9293 §3.10.7.1).
        self.refused = self._refused_connections()
        # Two ends on one address (a loopback capture): one column per (address, port).
        self.by_port = any(
            d.ipv4 is not None and d.ipv4.src == d.ipv4.dst and _ports(d)[0] is not None
            for d in (self.decoded(e) for e in self.log if isinstance(e, _Frame))
        )
        # Named hosts get their columns in the order they were named.
        if not self.by_port:
            for key in self.names:
                self.lane(key)

    def lane_key(self, addr: Addr) -> str:
        return f"{addr[0]}:{addr[1]}" if self.by_port else str(addr[0])

    def lane(self, key: str) -> str:
        """The lane for an address: addresses given one name share the first one's lane."""
        name = self.names.get(key)
        if name is not None:
            key = self.name_lane.setdefault(name, key)
        if key not in self.lanes:
            self.lanes[key] = Lane(key, name or key)
        return key

    def _refused_connections(self) -> set[tuple[Addr, Addr]]:
        opener: dict[tuple[Addr, Addr], Addr] = {}
        decided: set[tuple[Addr, Addr]] = set()
        refused: set[tuple[Addr, Addr]] = set()
        for entry in self.log:
            if not isinstance(entry, _Frame):
                continue
            d = self.decoded(entry)
            if d.tcp is None or d.ipv4 is None:
                continue
            src = (d.ipv4.src, d.tcp.src_port)
            key = _conn_key(src, (d.ipv4.dst, d.tcp.dst_port))
            if key in decided:
                continue
            flags = int(d.tcp.flags)
            if key not in opener:
                if flags & _SYN and not flags & _ACK:
                    opener[key] = src
                else:
                    decided.add(key)
            elif opener[key] != src:
                decided.add(key)
                if flags & _RST:
                    refused.add(key)
        return refused

    def decoded(self, entry: _Frame) -> Decoded:
        d = self._decoded.get(id(entry))
        if d is None:
            d = self._decoded[id(entry)] = decode(entry.frame, entry.linktype)
        return d

    def run(self) -> Trace:
        pending: list[_Recorded] = []
        index = 0
        for entry in self.log:
            if isinstance(entry, Note):
                self.items.append(entry)
            elif isinstance(entry, _Recorded):
                self.items.append(self._recorded(entry))
                pending.append(entry)
            else:
                self._frame(entry, index)
                index += 1
        self._attach_recorded_states()
        connections = tuple(
            Connection(
                c.index,
                c.client.addr,
                c.server.addr,
                self.lane_key(c.client.addr),
                self.lane_key(c.server.addr),
                c.client.isn,
                c.server.isn,
                c.initial,
                (c.client.state, c.server.state),
                c.inferred,
            )
            for c in sorted(self.conns.values(), key=lambda c: c.index)
        )
        return Trace(tuple(self.lanes.values()), tuple(self.items), connections)

    # -- connections -------------------------------------------------------------------

    def _conn_for(self, src: Addr, dst: Addr, flags: TcpFlags) -> _Conn:
        key = _conn_key(src, dst)
        conn = self.conns.get(key)
        if conn is not None:
            return conn
        inferred = key not in self.recorded_keys
        opening = bool(flags & TcpFlags.SYN) and not flags & TcpFlags.ACK
        if not inferred:
            client_state = server_state = None
        elif opening:
            # The SYN's sender starts CLOSED; its peer either listens or is a closed port.
            client_state = State.CLOSED
            server_state = State.CLOSED if key in self.refused else State.LISTEN
        elif flags & TcpFlags.SYN:
            # Capture began after the SYN: the SYN-ACK's receiver is the client.
            conn = _Conn(
                len(self.conns),
                _Side(dst, State.SYN_SENT),
                _Side(src, State.LISTEN, passive=True),
                inferred,
            )
            conn.initial = (State.SYN_SENT, State.LISTEN)
            self.conns[key] = conn
            return conn
        else:
            client_state = server_state = State.ESTABLISHED  # mid-stream capture
        conn = _Conn(
            len(self.conns),
            _Side(src, client_state),
            _Side(dst, server_state, passive=server_state is State.LISTEN),
            inferred,
        )
        conn.initial = (client_state, server_state)
        self.conns[key] = conn
        return conn

    def _recorded(self, rec: _Recorded) -> StateChange:
        key = _conn_key(rec.local, rec.remote)
        conn = self.conns.get(key)
        if conn is None:
            # A recorded change before any segment (connect() -> SYN-SENT): the
            # recording end is the client unless it starts by listening.
            client, server = (
                (rec.remote, rec.local) if rec.new is State.LISTEN else (rec.local, rec.remote)
            )
            conn = _Conn(len(self.conns), _Side(client, None), _Side(server, None), False)
            self.conns[key] = conn
        side = conn.client if conn.client.addr == rec.local else conn.server
        old = rec.old if rec.old is not None else side.state
        if side.state is None:
            if side is conn.client:
                conn.initial = (old, conn.initial[1])
            else:
                conn.initial = (conn.initial[0], old)
        side.state = rec.new
        return StateChange(
            rec.time,
            conn.index,
            self.lane(self.lane_key(rec.local)),
            rec.local[1],
            old,
            rec.new,
            rec.cause,
            inferred=False,
        )

    # -- frames ------------------------------------------------------------------------

    def _frame(self, entry: _Frame, index: int) -> None:
        d = self.decoded(entry)
        src, dst, protocol = self._endpoints(d)
        summary = summarize(entry.frame, int(entry.linktype))
        if self.by_port:
            port_src, port_dst = _ports(d)
            if port_src is not None:
                src, dst = f"{src}:{port_src}", f"{dst}:{port_dst}"
        event = TraceEvent(
            index=index,
            time=entry.time,
            src=self.lane(src),
            dst=self.lane(dst),
            frame=entry.frame,
            linktype=entry.linktype,
            protocol=protocol,
            summary=summary,
            link=entry.link,
            lost=entry.lost,
            lost_where=entry.lost_where,
            error=d.error,
        )
        if d.tcp is None or d.ipv4 is None:
            self.items.append(event)
            return
        seg = d.tcp
        s_addr = (d.ipv4.src, seg.src_port)
        conn = self._conn_for(s_addr, (d.ipv4.dst, seg.dst_port), seg.flags)
        from_client = conn.client.addr == s_addr
        sender, receiver = (conn.client, conn.server) if from_client else (conn.server, conn.client)
        before = (sender.state, receiver.state)
        changes_before: list[StateChange] = []
        changes_after: list[StateChange] = []

        def change(
            side: _Side, cause: Cause, into: list[StateChange], prefer: State | None = None
        ) -> None:
            if side.state is None:
                return
            targets = table_targets(side.state, cause)
            if not targets:
                return  # not a row of the table: the observer does not guess
            new = prefer if prefer in targets else targets[0]
            if side.state is State.LISTEN:
                side.passive = True
            into.append(
                StateChange(
                    time=entry.time,
                    conn=conn.index,
                    lane=self.lane_key(side.addr),
                    port=side.addr[1],
                    old=side.state,
                    new=new,
                    cause=cause,
                    inferred=True,
                    frame=index,
                )
            )
            side.state = new

        flags = seg.flags
        bits = int(flags)  # plain int arithmetic: IntFlag operators are slow per segment
        syn = bool(bits & 0x02)
        ack = bool(bits & 0x10)
        fin = bool(bits & 0x01)
        rst = bool(bits & 0x04)
        # Sequence bookkeeping and the marks, before the state machine moves.
        if sender.isn is None:
            sender.isn = seg.seq  # its SYN, or (mid-stream) the first byte seen is relative 0
        if ack and receiver.isn is None:
            receiver.isn = (seg.ack - (1 if syn else 0)) % SEQ_MOD
        seg_len = seg.seg_len
        end = (seg.seq + seg_len) % SEQ_MOD
        retransmission = (
            seg_len > 0 and sender.snd_max is not None and seq_lt(seg.seq, sender.snd_max)
        )
        dup_ack = bool(
            ack
            and seg_len == 0
            and not (syn or fin or rst)
            and sender.last_ack == seg.ack
            and sender.last_window == seg.window
            and receiver.snd_max is not None
            and seq_lt(seg.ack, receiver.snd_max)
        )
        if sender.snd_max is None or (seg_len and seq_lt(sender.snd_max, end)):
            sender.snd_max = end
        first_fin = fin and sender.fin_seq is None
        if first_fin:
            sender.fin_seq = (seg.seq + len(seg.payload) + (1 if syn else 0)) % SEQ_MOD
        if syn:
            sender.wscale = seg.options.wscale
        # RFC 7323 §2.2-2.3: scaling is in force only when both SYNs carried the
        # option, and never applies to the window of a SYN itself.
        scaling = not syn and sender.wscale is not None and receiver.wscale is not None
        window_scaled = seg.window << min(sender.wscale or 0, 14) if scaling else seg.window
        if ack and not syn:
            sender.last_ack = seg.ack
            sender.last_window = seg.window
        # A FIN whose ACK does not cover the peer's FIN crossed it on the path
        # (simultaneous close, RFC 9293 Figure 13): the observer saw the peer's
        # FIN first, but it had not arrived yet. Take back its arrival and
        # deliver it after this FIN left.
        crossed = bool(
            first_fin
            and conn.inferred
            and sender.fin_change is not None
            and receiver.fin_seq is not None
            and not (ack and seq_lt(receiver.fin_seq, seg.ack))
        )
        if crossed and sender.fin_change is not None:
            self._take_back(sender, sender.fin_change)

        if conn.inferred:
            # What sending this segment implies about its sender.
            if rst:
                if sender.state not in (State.CLOSED, State.LISTEN):
                    change(sender, Cause.ABORT, changes_before)
            elif syn and not ack:
                if sender.state is State.CLOSED:
                    change(sender, Cause.ACTIVE_OPEN, changes_before)
            elif sender.state is State.SYN_SENT and ack:
                # An ACK from SYN-SENT: the SYN-ACK it answers was not captured.
                change(sender, Cause.RCV_SYN_ACK, changes_before)
            if first_fin and not rst:
                change(sender, Cause.CLOSE, changes_before)
            if not entry.lost:
                self._receive(receiver, seg, change, changes_after)
            if crossed:
                sender.fin_received = True
                change(sender, Cause.RCV_FIN, changes_after)

        tcp = TcpInfo(
            conn=conn.index,
            from_client=from_client,
            src_port=seg.src_port,
            dst_port=seg.dst_port,
            flags=flags,
            seq=seg.seq,
            ack=seg.ack,
            rel_seq=(seg.seq - sender.isn) % SEQ_MOD,
            rel_ack=(seg.ack - receiver.isn) % SEQ_MOD
            if ack and receiver.isn is not None
            else None,
            window=seg.window,
            window_scaled=window_scaled,
            length=len(seg.payload),
            options=seg.options,
            retransmission=retransmission,
            dup_ack=dup_ack,
            before=before,
            after=(sender.state, receiver.state),
        )
        self.items.extend(changes_before)
        self.items.append(replace(event, tcp=tcp))
        self.items.extend(changes_after)

    def _receive(
        self,
        receiver: _Side,
        seg: wtcp.TcpSegment,
        change: Callable[[_Side, Cause, list[StateChange], State | None], None],
        into: list[StateChange],
    ) -> None:
        """The causes a segment's arrival implies for its receiver (RFC 9293 §3.10.7)."""
        flags = int(seg.flags)
        state = receiver.state
        if flags & _RST:
            if state is State.SYN_SENT and not (
                flags & _ACK
                and receiver.isn is not None
                and seg.ack == (receiver.isn + 1) % SEQ_MOD
            ):
                return  # §3.10.7.3: in SYN-SENT an RST that does not ACK our SYN is ignored
            if state not in (State.CLOSED, State.LISTEN):
                # §3.10.7.4: SYN-RECEIVED of a passive open goes back to LISTEN,
                # of an active (simultaneous) open to CLOSED.
                back = State.LISTEN if receiver.passive else State.CLOSED
                change(receiver, Cause.RCV_RST, into, back)
            return
        if flags & _SYN:
            if flags & _ACK:
                if state is State.SYN_SENT:
                    change(receiver, Cause.RCV_SYN_ACK, into, None)
                elif state is State.SYN_RECEIVED and not receiver.passive:
                    change(receiver, Cause.RCV_ACK_OF_SYN, into, None)  # simultaneous open
            elif state in (State.LISTEN, State.SYN_SENT):
                change(receiver, Cause.RCV_SYN, into, None)
            return
        if not flags & _ACK:
            return
        # §3.10.7.4 processes the ACK field before the FIN bit: FIN-WAIT-1 that
        # gets FIN+ACK of its FIN passes through FIN-WAIT-2 to TIME-WAIT.
        if (
            receiver.state is State.SYN_RECEIVED
            and receiver.isn is not None
            and seq_lt(receiver.isn, seg.ack)
        ):
            change(receiver, Cause.RCV_ACK_OF_SYN, into, None)
        if (
            receiver.fin_seq is not None
            and seq_lt(receiver.fin_seq, seg.ack)
            and receiver.state in (State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK)
        ):
            change(receiver, Cause.RCV_ACK_OF_FIN, into, None)
        if flags & _FIN and not receiver.fin_received:
            receiver.fin_received = True
            n = len(into)
            change(receiver, Cause.RCV_FIN, into, None)
            if len(into) > n:
                receiver.fin_change = into[-1]

    def _take_back(self, side: _Side, fin_change: StateChange) -> None:
        """Undo the arrival of a FIN that, as the next segment shows, had not arrived."""
        self.items = [it for it in self.items if it is not fin_change]
        side.fin_received = False
        side.fin_change = None
        if fin_change.old is not None:
            side.state = fin_change.old
        for i, it in enumerate(self.items):
            if isinstance(it, TraceEvent) and it.index == fin_change.frame and it.tcp is not None:
                after = (it.tcp.after[0], fin_change.old)
                self.items[i] = replace(it, tcp=replace(it.tcp, after=after))

    def _endpoints(self, d: Decoded) -> tuple[str, str, str]:
        """(src lane, dst lane, protocol) of a decoded frame."""
        if d.arp is not None:
            return str(d.arp.sender_ip), str(d.arp.target_ip), "ARP"
        if d.ipv4 is not None:
            src, dst = str(d.ipv4.src), str(d.ipv4.dst)
            if d.tcp is not None:
                return src, dst, "TCP"
            if d.udp is not None:
                return src, dst, "UDP"
            if d.icmp is not None:
                return src, dst, "ICMP"
            return src, dst, "malformed" if d.error is not None else "IPv4"
        if d.ethernet is not None:
            src, dst = weth.format_mac(d.ethernet.src), weth.format_mac(d.ethernet.dst)
            return src, dst, "malformed" if d.error is not None else "Ethernet"
        return "?", "?", "malformed"

    def _attach_recorded_states(self) -> None:
        """Give segments of recorded connections the states of both ends around them.

        Each change between two frames belongs to one of them: a change made by
        a user call (OPEN, CLOSE, ABORT) of the next frame's sender comes before
        that frame (connect() enters SYN-SENT, then the SYN goes out); any other
        change is what the previous frame caused on arrival.
        """
        user_calls = {Cause.ACTIVE_OPEN, Cause.PASSIVE_OPEN, Cause.CLOSE, Cause.ABORT}
        recorded = {c.index: c for c in self.conns.values() if not c.inferred}
        if not recorded:
            return
        cur: dict[tuple[int, str, int], State | None] = {}
        for c in recorded.values():
            cur[(c.index, self.lane_key(c.client.addr), c.client.addr[1])] = c.initial[0]
            cur[(c.index, self.lane_key(c.server.addr), c.server.addr[1])] = c.initial[1]
        items = self.items
        frames = [i for i, it in enumerate(items) if isinstance(it, TraceEvent)]

        def sender_key(ev: TraceEvent) -> tuple[int, str, int] | None:
            if ev.tcp is None:
                return None
            port = ev.tcp.src_port
            return (ev.tcp.conn, ev.src, port)

        # owner[i] = position of the frame a state change at position i belongs to
        owner: dict[int, int] = {}
        for n, pos in enumerate(frames):
            nxt = frames[n + 1] if n + 1 < len(frames) else len(items)
            next_ev = items[nxt] if nxt < len(items) else None
            nkey = sender_key(next_ev) if isinstance(next_ev, TraceEvent) else None
            for i in range(pos + 1, nxt):
                it = items[i]
                if not isinstance(it, StateChange):
                    continue
                if (
                    nkey is not None
                    and it.cause in user_calls
                    and (it.conn, it.lane, it.port) == nkey
                ):
                    owner[i] = nxt
                else:
                    owner[i] = pos
        for i in range(frames[0] if frames else 0):
            it = items[i]
            if isinstance(it, StateChange) and frames:
                ev0 = items[frames[0]]
                assert isinstance(ev0, TraceEvent)
                key0 = sender_key(ev0)
                if it.cause in user_calls and (it.conn, it.lane, it.port) == key0:
                    owner[i] = frames[0]
                else:
                    cur[(it.conn, it.lane, it.port)] = it.new
        out = list(items)
        for pos in frames:
            ev = items[pos]
            assert isinstance(ev, TraceEvent)
            mine = sorted(i for i, o in owner.items() if o == pos)
            before_map = dict(cur)
            for i in mine:
                it = items[i]
                assert isinstance(it, StateChange)
                cur[(it.conn, it.lane, it.port)] = it.new
            if ev.tcp is None or ev.tcp.conn not in recorded:
                continue
            conn = recorded[ev.tcp.conn]
            s_side, r_side = (
                (conn.client, conn.server) if ev.tcp.from_client else (conn.server, conn.client)
            )
            s_key = (conn.index, self.lane_key(s_side.addr), s_side.addr[1])
            r_key = (conn.index, self.lane_key(r_side.addr), r_side.addr[1])
            out[pos] = replace(
                ev,
                tcp=replace(
                    ev.tcp,
                    before=(before_map.get(s_key), before_map.get(r_key)),
                    after=(cur.get(s_key), cur.get(r_key)),
                ),
            )
        self.items = out
