"""Building a trace: a source's frames, recorded state changes and notes, in order.

A source (a pcap file, synack's simulated network, a live host) feeds a
:class:`TraceBuilder` with ``(time, frame bytes)`` pairs, optionally the state
changes its TCP connections recorded, and optional narration. ``build()``
decodes every frame (:func:`synack.trace.model.decode`), gives each endpoint
its column, groups TCP segments into connections, computes relative sequence
numbers, marks retransmissions and duplicate ACKs, and gives every segment
the state of both ends before and after it: recorded, or inferred
(:mod:`synack.trace.connections`).

Layer: trace. Imports synack.tcp, synack.wire and the rest of synack.trace.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from synack.tcp.events import SegmentRef, StateChanged, Trigger
from synack.tcp.seq import seq_dist, seq_lt
from synack.tcp.states import Cause, State
from synack.trace.connections import (
    ACK_BIT,
    FIN_BIT,
    RST_BIT,
    SYN_BIT,
    Conn,
    Side,
    conn_key,
    observe,
    receive,
    send,
)
from synack.trace.model import (
    Addr,
    Checksum,
    Connection,
    Item,
    Lane,
    LinkType,
    Note,
    StateChange,
    TcpInfo,
    Trace,
    TraceEvent,
    checksum_status,
    decode,
    table_targets,
)
from synack.wire import ethernet as weth
from synack.wire.decode import Decoded
from synack.wire.summary import summarize
from synack.wire.tcp import TcpFlags


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
    trigger: Trigger | None = None
    segment: SegmentRef | None = None


# The segment a user call (or a give-up timer) makes its end send, announcing the change.
_ANNOUNCED_BY = {
    Cause.ACTIVE_OPEN: SYN_BIT,
    Cause.CLOSE: FIN_BIT,
    Cause.ABORT: RST_BIT,
    Cause.DATA_AFTER_CLOSE: RST_BIT,
    Cause.TIMEOUT: RST_BIT,
}
_RECEIVED_CAUSES = frozenset(
    {
        Cause.RCV_SYN,
        Cause.RCV_SYN_ACK,
        Cause.RCV_ACK_OF_SYN,
        Cause.RCV_FIN,
        Cause.RCV_ACK_OF_FIN,
        Cause.RCV_RST,
    }
)


def _ports(d: Decoded) -> tuple[int | None, int | None]:
    if d.tcp is not None:
        return d.tcp.src_port, d.tcp.dst_port
    if d.udp is not None:
        return d.udp.src_port, d.udp.dst_port
    return None, None


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
        *,
        trigger: Trigger | None = None,
        segment: SegmentRef | None = None,
    ) -> None:
        """A state change a connection recorded; its connection is then not inferred."""
        self._log.append(_Recorded(time, local, remote, old, new, cause, trigger, segment))

    def add_change(self, local: Addr, remote: Addr, change: StateChanged) -> None:
        """A connection's own :class:`~synack.tcp.events.StateChanged`, as it reported it."""
        self.add_state_change(
            change.time,
            local,
            remote,
            change.old,
            change.new,
            change.cause,
            trigger=change.trigger,
            segment=change.segment,
        )

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
        self.conns: dict[tuple[Addr, Addr], Conn] = {}
        self.items: list[Item] = []
        self._decoded: dict[int, Decoded] = {}
        self.recorded_keys = {
            conn_key(e.local, e.remote) for e in self.log if isinstance(e, _Recorded)
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
            key = conn_key(src, (d.ipv4.dst, d.tcp.dst_port))
            if key in decided:
                continue
            flags = int(d.tcp.flags)
            if key not in opener:
                if flags & SYN_BIT and not flags & ACK_BIT:
                    opener[key] = src
                else:
                    decided.add(key)
            elif opener[key] != src:
                decided.add(key)
                if flags & RST_BIT:
                    refused.add(key)
        return refused

    def decoded(self, entry: _Frame) -> Decoded:
        d = self._decoded.get(id(entry))
        if d is None:
            d = self._decoded[id(entry)] = decode(entry.frame, entry.linktype)
        return d

    def run(self) -> Trace:
        index = 0
        for entry in _listening_first(self.log):
            if isinstance(entry, Note):
                self.items.append(entry)
            elif isinstance(entry, _Recorded):
                self.items.append(self._recorded(entry))
            else:
                self._frame(entry, index)
                index += 1
        self._attribute_recorded()
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

    def _conn_for(self, src: Addr, dst: Addr, flags: TcpFlags) -> Conn:
        key = conn_key(src, dst)
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
            conn = Conn(
                len(self.conns),
                Side(dst, State.SYN_SENT),
                Side(src, State.LISTEN, passive=True),
                inferred,
            )
            conn.initial = (State.SYN_SENT, State.LISTEN)
            self.conns[key] = conn
            return conn
        else:
            client_state = server_state = State.ESTABLISHED  # mid-stream capture
        conn = Conn(
            len(self.conns),
            Side(src, client_state),
            Side(dst, server_state, passive=server_state is State.LISTEN),
            inferred,
        )
        conn.initial = (client_state, server_state)
        self.conns[key] = conn
        return conn

    def _recorded(self, rec: _Recorded) -> StateChange:
        key = conn_key(rec.local, rec.remote)
        conn = self.conns.get(key)
        if conn is None:
            # A recorded change before any segment (connect() -> SYN-SENT): the
            # recording end is the client unless it starts by listening.
            client, server = (
                (rec.remote, rec.local) if rec.new is State.LISTEN else (rec.local, rec.remote)
            )
            conn = Conn(len(self.conns), Side(client, None), Side(server, None), False)
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
            trigger=rec.trigger,
            segment=rec.segment,
        )

    def _attribute_recorded(self) -> None:
        """Give each recorded change the frame that caused it.

        A received segment is matched by its sequence number, acknowledgment,
        flags and length among the frames to that end before the change; a
        user call (or a give-up timer) is announced by the SYN, FIN or RST its
        end sends next, before its next change. A passive OPEN (the listening)
        or a 2MSL expiry has no frame.
        """
        items = self.items
        for pos, it in enumerate(items):
            if not isinstance(it, StateChange) or it.inferred or it.cause is None:
                continue
            end = (it.conn, it.lane, it.port)
            found: int | None = None
            trigger = it.trigger
            if trigger is None:  # a source that does not say: the cause tells
                trigger = Trigger.RECEIVED if it.cause in _RECEIVED_CAUSES else Trigger.CALL
            if trigger is Trigger.RECEIVED:
                ref = it.segment
                for back in range(pos - 1, -1, -1):
                    ev = items[back]
                    if (
                        isinstance(ev, TraceEvent)
                        and ev.tcp is not None
                        and not ev.lost
                        and (ev.tcp.conn, ev.dst, ev.tcp.dst_port) == end
                        and (
                            ref is None
                            or (ev.tcp.seq, ev.tcp.ack, int(ev.tcp.flags), ev.tcp.length)
                            == (ref.seq, ref.ack, ref.flags, ref.length)
                        )
                    ):
                        found = ev.index
                        break
            elif it.cause in _ANNOUNCED_BY:
                bit = _ANNOUNCED_BY[it.cause]
                for ev in items[pos + 1 :]:
                    if isinstance(ev, StateChange) and (ev.conn, ev.lane, ev.port) == end:
                        break
                    if (
                        isinstance(ev, TraceEvent)
                        and ev.tcp is not None
                        and (ev.tcp.conn, ev.src, ev.tcp.src_port) == end
                        and int(ev.tcp.flags) & bit
                    ):
                        found = ev.index
                        break
            if found is not None:
                items[pos] = replace(it, frame=found)

    # -- frames ------------------------------------------------------------------------

    def _frame(self, entry: _Frame, index: int) -> None:
        d = self.decoded(entry)
        src, dst, protocol = self._endpoints(d)
        summary = summarize(entry.frame, int(entry.linktype))
        checksum = checksum_status(entry.frame, entry.linktype)
        if checksum is Checksum.UNVERIFIED:
            # Not damaged: the sender's NIC fills this checksum in after the capture point.
            summary = summary.replace("bad-checksum]", "checksum unverified]")
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
            checksum=checksum,
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
            side: Side, cause: Cause, into: list[StateChange], prefer: State | None = None
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

        marks = observe(sender, receiver, seg)
        ack = bool(int(seg.flags) & ACK_BIT)
        # A FIN whose ACK does not cover the peer's FIN crossed it on the path
        # (simultaneous close, RFC 9293 Figure 13): the observer saw the peer's
        # FIN first, but it had not arrived yet. Take back its arrival and
        # deliver it after this FIN left.
        crossed = bool(
            marks.first_fin
            and conn.inferred
            and sender.fin_change is not None
            and receiver.fin_seq is not None
            and not (ack and seq_lt(receiver.fin_seq, seg.ack))
        )
        if crossed and sender.fin_change is not None:
            self._take_back(sender, sender.fin_change)

        if conn.inferred:
            send(sender, seg, marks.first_fin, change, changes_before)
            if not entry.lost:
                receive(receiver, seg, change, changes_after)
            if crossed:
                sender.fin_received = True
                change(sender, Cause.RCV_FIN, changes_after)

        assert sender.isn is not None  # observe() took it from this segment at the latest
        tcp = TcpInfo(
            conn=conn.index,
            from_client=from_client,
            src_port=seg.src_port,
            dst_port=seg.dst_port,
            flags=seg.flags,
            seq=seg.seq,
            ack=seg.ack,
            rel_seq=seq_dist(seg.seq, sender.isn),
            rel_ack=seq_dist(seg.ack, receiver.isn) if ack and receiver.isn is not None else None,
            window=seg.window,
            window_scaled=marks.window_scaled,
            length=len(seg.payload),
            options=seg.options,
            retransmission=marks.retransmission,
            dup_ack=marks.dup_ack,
            before=before,
            after=(sender.state, receiver.state),
            out_of_order=marks.out_of_order,
        )
        self.items.extend(changes_before)
        self.items.append(replace(event, tcp=tcp))
        self.items.extend(changes_after)

    def _take_back(self, side: Side, fin_change: StateChange) -> None:
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

        Before a frame, an end is in the state its changes so far left it in,
        or the old state of the first change this frame caused; after it, in
        the new state of the last change this frame caused, if any.
        """
        recorded = {c.index: c for c in self.conns.values() if not c.inferred}
        if not recorded:
            return
        cur: dict[tuple[int, str, int], State | None] = {}
        for c in recorded.values():
            cur[(c.index, self.lane_key(c.client.addr), c.client.addr[1])] = c.initial[0]
            cur[(c.index, self.lane_key(c.server.addr), c.server.addr[1])] = c.initial[1]
        caused: dict[int, list[StateChange]] = {}
        for it in self.items:
            if isinstance(it, StateChange) and it.frame is not None and not it.inferred:
                caused.setdefault(it.frame, []).append(it)
        out = list(self.items)
        for pos, it in enumerate(self.items):
            if isinstance(it, StateChange):
                cur[(it.conn, it.lane, it.port)] = it.new
                continue
            if not isinstance(it, TraceEvent) or it.tcp is None or it.tcp.conn not in recorded:
                continue
            conn = recorded[it.tcp.conn]
            s_side, r_side = (
                (conn.client, conn.server) if it.tcp.from_client else (conn.server, conn.client)
            )
            mine = caused.get(it.index, [])
            ends = []
            for side in (s_side, r_side):
                key = (conn.index, self.lane_key(side.addr), side.addr[1])
                changes = [c for c in mine if (c.conn, c.lane, c.port) == key]
                before = changes[0].old if changes else cur.get(key)
                after = changes[-1].new if changes else cur.get(key)
                ends.append((before, after))
            out[pos] = replace(
                it,
                tcp=replace(
                    it.tcp,
                    before=(ends[0][0], ends[1][0]),
                    after=(ends[0][1], ends[1][1]),
                ),
            )
        self.items = out


def _listening_first(log: list[_Frame | _Recorded | Note]) -> list[_Frame | _Recorded | Note]:
    """The log with each passive OPEN moved back to when it listened.

    A listener's child connection reports CLOSED -> LISTEN when the SYN
    arrives, stamped with the time its listener listened: that end has been in
    LISTEN since then, so the change goes before every entry after that time.
    """
    out: list[_Frame | _Recorded | Note] = []
    for entry in log:
        if isinstance(entry, _Recorded) and entry.cause is Cause.PASSIVE_OPEN:
            at = len(out)
            while at > 0 and out[at - 1].time > entry.time:
                at -= 1
            out.insert(at, entry)
        else:
            out.append(entry)
    return out
