"""A host's TCP: listeners, connections by 4-tuple, ports, timers, TIME-WAIT.

The sans-IO connection (:class:`~synack.tcp.connection.TcpConnection`) does
TCP itself; this module gives each segment to its connection or listener
(RFC 9293 §3.10.7), answers segments for nobody with a reset, keeps one timer
heap for all connections, picks ephemeral ports, and runs the per-connection
loop (events, segments, timer) once per batch of frames. A full half-open
queue is defended with :mod:`SYN cookies <synack.stack.syncookies>` or by
evicting its oldest entry. Output goes through
:class:`~synack.stack.tcp_output.TcpOutput`.

The per-segment path of an established connection keeps ``IPv4Address``
objects out of it (hashing or comparing one is a Python-level call): the IP
fast path hands :meth:`TcpDemux.receive_at` the frame and the addresses as
ints, and a connection is found by a tuple of plain ints (a private index
kept beside :attr:`TcpDemux.conns`).

Layer: stack. Imports synack.errors, synack.wire, synack.tcp and lower stack modules.
"""

from __future__ import annotations

import errno
import heapq
from collections import Counter, deque
from collections.abc import Mapping
from ipaddress import IPv4Address

from synack.errors import LocalProtocolError
from synack.stack.config import (
    ANY,
    Address,
    AddressInUseError,
    ConnKey,
    HostConfig,
    NoRouteError,
    as_address,
    mss_for,
)
from synack.stack.endpoints import StreamsByKey, TcpListener, TcpStream
from synack.stack.events import (
    HostEvent,
    HostUnreachable,
    Observer,
    TcpActivity,
    TcpStateTrace,
)
from synack.stack.fastopen import HostFastOpen
from synack.stack.interface import count_malformed
from synack.stack.ipv4 import Ipv4
from synack.stack.offload import coalesce
from synack.stack.ports import EphemeralPorts
from synack.stack.syncookies import SynCookies
from synack.stack.synflood import SynFlood
from synack.stack.tcp_output import TcpOutput
from synack.stack.timewait import TimeWaitSide, TimeWaitTable
from synack.tcp import events as tev
from synack.tcp.config import TcpConfig
from synack.tcp.connection import TcpConnection, reply_when_closed, reply_when_listening
from synack.tcp.icmp import IcmpError, classify
from synack.tcp.isn import IsnGenerator
from synack.tcp.seq import seq_gt
from synack.tcp.states import TIME_WAIT, State
from synack.wire import ipv4 as wip
from synack.wire import tcp as wtcp
from synack.wire.errors import MalformedPacket
from synack.wire.ipv4 import address_from_int, address_int
from synack.wire.tcp import TcpFlags, TcpSegment

_SYN, _ACK, _RST = TcpFlags.SYN, TcpFlags.ACK, TcpFlags.RST
# ICMP destination unreachable codes and the errno Linux reports for them
# (icmp_err_convert): the hard ones (RFC 9293 §3.9.2.2), then soft ones.
# The errno a socket keeps for a soft error (SHLD-25), as Linux reports them;
# anything else unreachable, and time exceeded, is EHOSTUNREACH.
_SOFT_ERRNO = {
    IcmpError.NET_UNREACHABLE: errno.ENETUNREACH,
    IcmpError.PROTOCOL_UNREACHABLE: errno.ENOPROTOOPT,
    IcmpError.PORT_UNREACHABLE: errno.ECONNREFUSED,
}
_SYN_ACK_RST = _SYN | _ACK | _RST
_INT_SYN_ACK_RST, _INT_ACK = int(_SYN_ACK_RST), int(_ACK)
_IP_HLEN = wip.MIN_HEADER_LEN  # our IPv4 headers carry no options
_parse_at = wtcp.parse_at
_FLAGS_AT = wtcp.FLAGS_AT
_EARLY_MASK = int(_SYN | _ACK | _RST | TcpFlags.FIN)  # a pure SYN, read before parsing
_PURE_SYN = int(_SYN)
_RAW_DPORT_AT = wip.ETH_IPV4_HEADER_LEN + wtcp.DST_PORT_AT  # in a frame


class TcpDemux(TimeWaitSide):
    """The TCP of one host (see the module docstring).

    ``now`` is the host's clock: it only moves forward, so no segment is sent
    with a timestamp older than one already sent (RFC 7323 PAWS would drop
    it). ``split``/``tso``: see :meth:`Host.enable_offload`.
    """

    __slots__ = (
        "_cookies",
        "_events",
        "_heap",
        "_heap_seq",
        "_ip",
        "_output",
        "_ports",
        "config",
        "conns",
        "counters",
        "dirty",
        "fastopen",
        "flood",
        "flows",
        "isn",
        "listeners",
        "name",
        "now",
        "observers",
        "output",
        "time_wait",
    )

    def __init__(
        self,
        host_config: HostConfig,
        ip: Ipv4,
        ports: EphemeralPorts,
        isn_secret: bytes,
        events: deque[HostEvent],
        observers: list[Observer],
        counters: Counter[str],
        name: str,
    ) -> None:
        self._ip = ip
        self._ports = ports
        self._events = events
        self.observers = observers
        self.counters = counters
        self.name = name
        self.isn = IsnGenerator(isn_secret)
        # Our MSS is what the link carries minus the IP and TCP headers.
        self.config = host_config.tcp or TcpConfig(mss=mss_for(ip.mtu))
        self._cookies = SynCookies(isn_secret) if host_config.syn_cookies else None
        self.fastopen = HostFastOpen(host_config.tcp_fastopen, isn_secret, counters)
        # The SYN-flood budgets and the stateless answer from raw bytes.
        self.flood = SynFlood(host_config, ip, self._cookies, isn_secret, counters)
        # The streams by (local ip, local port, remote ip, remote port) with
        # the addresses as ints: what an arriving segment is looked up by. A
        # 4-tuple is never here and in ``time_wait`` at once (a stream leaves
        # as its record enters, and a stream is added only for a 4-tuple
        # without one). ``conns`` reads the same table by ConnKey.
        self.flows: dict[tuple[int, int, int, int], TcpStream] = {}
        self.conns: Mapping[ConnKey, TcpStream] = StreamsByKey(self.flows)
        self.listeners: dict[int, TcpListener] = {}
        # The connections' deadlines: (time, number, 4-tuple with int
        # addresses), live while the stream of that 4-tuple in ``flows``
        # still has that number and deadline (lazy deletion). Ints only: an
        # entry neither keeps a finished connection alive nor is tracked by
        # the cycle collector, and a stream that leaves ``flows`` (for a
        # TIME-WAIT record, or forgotten) leaves its entries dead.
        self._heap: list[tuple[float, int, tuple[int, int, int, int]]] = []
        self._heap_seq = 0
        # TIME-WAIT as compact records (synack.stack.timewait), by 4-tuple
        # (int addresses; read as a mapping by ConnKey), with their own
        # deadline heap (lazy deletion as for streams).
        self.time_wait = TimeWaitTable()
        self.dirty: dict[
            TcpStream, None
        ] = {}  # streams fed segments, not yet touched (read by Host)
        self.now = 0.0
        self.output = TcpOutput(ip, counters)
        self._output = self.output.send

    @property
    def split(self) -> bool:
        """The link takes split frames (see ``Host.enable_offload``)."""
        return self.output.split

    @split.setter
    def split(self, on: bool) -> None:
        self.output.split = on

    @property
    def tso(self) -> bool:
        """The link segments and checksums TCP itself (see ``Host.enable_offload``)."""
        return self.output.tso

    @tso.setter
    def tso(self, on: bool) -> None:
        self.output.tso = on

    # ------------------------------------------------------------ the loop
    def has_dirty(self) -> bool:
        return bool(self.dirty)

    def touch_later(self, stream: TcpStream, now: float) -> None:
        """Touch ``stream`` at the next flush (Host.tcp_touch_later); the flush's
        clock is at least ``now`` (a stale one would date its segments and
        timers in the past)."""
        if now > self.now:
            self.now = now
        self.dirty[stream] = None

    def flush(self) -> None:
        """Touch every stream fed segments since the last flush (touching one
        may feed another over loopback: until none is left)."""
        while self.dirty:
            dirty, self.dirty = self.dirty, {}
            for stream in dirty:
                self.touch(stream, self.now)

    def touch(self, stream: TcpStream, now: float) -> None:
        """The per-connection adapter loop: events, segments, timer."""
        if now > self.now:
            self.now = now
        else:
            now = self.now
        conn = stream.conn
        notify = False
        events = conn.events  # next_event()'s queue, drained here without a call each
        while events:
            event = events.popleft()
            if type(event) is tev.DataAvailable:
                # Readable data (a request): none of the cases below.
                stream.pending.append(event)
                notify = True
                continue
            if isinstance(event, tev.StateChanged):
                if self.observers:
                    rec = TcpStateTrace(self.name, conn.local, conn.remote, event)
                    for obs in self.observers:
                        obs(rec)
                continue
            if isinstance(event, tev.Connected) and stream.listener is not None:
                listener = stream.listener
                self.flood.prove(stream.flow[2])
                if listener.half_open.pop(stream.flow, None) is None:
                    pass  # a Fast Open child, queued for accept at its SYN
                elif listener.closed:
                    conn.abort(now)
                else:
                    listener.queue.append(stream)
                    self._events.append(TcpActivity(listener))
            elif isinstance(event, tev.Closed):
                self._forget(stream)
            if self.fastopen.opens and isinstance(event, (tev.Connected, tev.Closed)):
                self.fastopen.over(stream, now)
            stream.pending.append(event)
            notify = True
        gso = self.output.gso
        segments = conn.segments_to_send(now, gso=gso)
        if self.output.tso and len(segments) > 1:
            segments = coalesce(segments)
        if segments:
            src, dst, output = conn.local[0], conn.remote[0], self._output
            if gso:
                # Super-segments (segments_to_send's gso) are cut below TCP.
                mss = conn.effective_mss
                for seg in segments:
                    if len(seg.payload) > mss:
                        self.output.send_large(src, dst, seg, mss, now)
                    else:
                        output(src, dst, seg, now)
            else:
                for seg in segments:
                    output(src, dst, seg, now)
        if notify and stream.owner is not None:
            self._events.append(TcpActivity(stream))
        if conn.state is TIME_WAIT:  # (a module constant: State.X is slow on 3.11)
            if self.flows.get(stream.flow) is stream:
                self._enter_time_wait(stream, now)
            return
        t = conn.get_timer()
        if t != stream.deadline and not stream.gone:
            stream.deadline = t
            if t is not None:
                self._heap_seq += 1
                stream.timer_seq = self._heap_seq
                heap = self._heap
                heapq.heappush(heap, (t, self._heap_seq, stream.flow))
                if len(heap) > 2 * len(self.flows) + 256:
                    # Mostly dead entries (deadlines that moved, long ones of
                    # connections gone): keep the live ones (amortized O(1)).
                    flows = self.flows
                    heap[:] = [e for e in heap if _live(flows.get(e[2]), e)]
                    heapq.heapify(heap)

    def _heap_forget(self, stream: TcpStream) -> None:
        """``stream`` left ``flows`` for a TIME-WAIT record: no deadline of its own."""
        stream.deadline = None

    # ---------------------------------------------------------------- timers
    def get_timer(self) -> float | None:
        heap, flows = self._heap, self.flows
        # Lazy deletion: an entry is live only if it still is its stream's
        # deadline (_live, inline: asked after every batch).
        t = None
        while heap:
            entry = heap[0]
            stream = flows.get(entry[2])
            if stream is not None and stream.timer_seq == entry[1] and stream.deadline == entry[0]:
                t = entry[0]
                break
            heapq.heappop(heap)
        tw = self.time_wait.next_deadline()
        if tw is not None and (t is None or tw < t):
            t = tw
        return t

    def handle_timer(self, now: float) -> None:
        for tw in self.time_wait.expired(now):
            self._time_wait_over(tw, None, now)
        heap, flows = self._heap, self.flows
        # Each due connection is handled once per call: one whose next deadline
        # is again <= now (a bug in a timer) waits for the next call, so the
        # adapter's loop still runs (signals, I/O) instead of spinning here.
        due: list[TcpStream] = []
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            stream = flows.get(entry[2])
            if stream is None or not _live(stream, entry):
                continue
            stream.deadline = None
            due.append(stream)
        for stream in due:
            if stream.gone:
                continue
            stream.conn.handle_timer(now)
            self.touch(stream, now)

    def unreachable(self, hop: IPv4Address, now: float) -> None:
        """ARP failed for ``hop``: connections still in SYN-SENT through it fail
        (Linux reports EHOSTUNREACH to connect() then)."""
        for stream in list(self.conns.values()):
            if stream.conn.state is not State.SYN_SENT or stream.remote[0].is_loopback:
                continue
            try:
                via = self._ip.next_hop(stream.remote[0])
            except NoRouteError:
                continue
            if via == hop:
                self.counters["tcp-host-unreachable"] += 1
                stream.pending.append(HostUnreachable(stream.remote[0]))
                stream.conn.abort(now)
                self.touch(stream, now)  # CLOSED: the owner is told, in order

    # ----------------------------------------------------------- ICMP errors
    def icmp_error(
        self,
        local: Address,
        remote: Address,
        seq: int,
        type_: int,
        code: int,
        mtu: int,
        now: float,
    ) -> None:
        """An ICMP error about a segment we sent (RFC 9293 §3.9.2.2, MUST-54).

        The quoted sequence number must be one we sent and is not yet
        acknowledged (SND.UNA <= SEQ < SND.NXT), or the message is ignored:
        a blind attacker would have to guess it (RFC 5927 §4.1). Then:
        protocol and port unreachable are hard errors that abort a
        connection still opening (SYN-SENT, SYN-RECEIVED: SHLD-26); in the
        synchronized states they are kept as soft errors, as RFC 5927 §4.2
        advises and Linux does. Every other unreachable code and time
        exceeded are soft errors: never fatal (MUST-56), the errno is kept on
        the stream for the application (SHLD-25). Fragmentation needed has
        already lowered the path MTU in the IP layer (RFC 1191).
        """
        key = (local[0], local[1], remote[0], remote[1])
        stream = self.conns.get(key)
        kind = classify(type_, code)
        if stream is None or kind is None:
            self.counters["tcp-icmp-no-connection"] += 1
            return
        # The connection decides (synack.tcp.icmp: soft or hard, the quoted
        # sequence number checked against [SND.UNA, SND.MAX)); the host keeps
        # the errno a socket reports and counts what happened.
        if not stream.conn.icmp_error(kind, seq, now):
            self.counters["tcp-icmp-bad-seq"] += 1
            return
        if stream.conn.state is State.CLOSED:
            # SHLD-26: the connect fails with ConnectionRefused(icmp=kind),
            # which adapters/oserrors.py maps to ECONNREFUSED or ENOPROTOOPT.
            self.counters["tcp-icmp-hard-abort"] += 1
            self.touch(stream, now)
            return
        if kind is IcmpError.FRAG_NEEDED:
            # Path MTU discovery's (RFC 1191): the IP layer lowered the path MTU.
            self.counters["tcp-icmp-frag-needed"] += 1
            return
        self.counters["tcp-icmp-soft"] += 1
        stream.soft_error = _SOFT_ERRNO.get(kind, errno.EHOSTUNREACH)

    def _forget(self, stream: TcpStream) -> None:
        if stream.gone:
            return
        stream.gone = True
        if self.flows.get(stream.flow) is stream:
            del self.flows[stream.flow]
        if stream.listener is not None:
            stream.listener.half_open.pop(stream.flow, None)

    # ----------------------------------------------------------------- input
    def _syn_over_budget(self, src: int, dst_port: int, now: float) -> bool:
        """A SYN from ``src`` (an int) to a listener under a SYN flood, beyond
        its budgets: dropped before anything else is spent on it
        (synack.stack.synflood)."""
        listener = self.listeners.get(dst_port)
        if listener is None or len(listener.half_open) < listener.syn_backlog:
            return False  # no flood: every SYN is handled in full
        return self.flood.over_budget(src, now)

    def raw_syn(self, data: bytes, now: float) -> bool:
        """The host's early path for a pure SYN in a frame without IPv4
        options, before any parsing: when its listener is flooded (half-open
        queue full), answered with a cookie or dropped from the raw bytes
        (synack.stack.synflood). True when handled."""
        listener = self.listeners.get(int.from_bytes(data[_RAW_DPORT_AT : _RAW_DPORT_AT + 2]))
        if listener is None or len(listener.half_open) < listener.syn_backlog:
            return False
        return self.flood.answer(data, listener, now)

    def receive(self, pkt: wip.Ipv4Packet, _broadcast: bool, now: float) -> None:
        """A segment for us (never a broadcast: the IP layer drops those)."""
        payload = pkt.payload
        if (
            len(payload) > _FLAGS_AT
            and payload[_FLAGS_AT] & _EARLY_MASK == _PURE_SYN
            and self._syn_over_budget(address_int(pkt.src), int.from_bytes(payload[2:4]), now)
        ):
            return
        try:
            seg = wtcp.parse(pkt.payload, pkt.src, pkt.dst, verify_checksum=self._ip.verify_l4)
        except MalformedPacket as exc:
            count_malformed(self.counters, exc)
            return
        self.counters["tcp-in"] += 1
        self.dispatch_segment(seg, pkt.src, pkt.dst, now)

    def receive_at(self, data: bytes, start: int, end: int, src: int, dst: int, now: float) -> None:
        """A segment for us held in ``data[start:end]`` (a whole frame from
        the IP layer's fast path), between the addresses ``src`` and ``dst``
        as ints. The same steps as :meth:`receive`, in the same order; a
        segment of a connection we hold goes to it without an ``IPv4Address``
        made, hashed or compared."""
        if (
            end - start > _FLAGS_AT
            and data[start + _FLAGS_AT] & _EARLY_MASK == _PURE_SYN
            # _syn_over_budget inline (a pure SYN is each passive open's first
            # segment, and its listener is nearly never flooded).
            and (listener := self.listeners.get(int.from_bytes(data[start + 2 : start + 4])))
            is not None
            and len(listener.half_open) >= listener.syn_backlog
            and self.flood.over_budget(src, now)
        ):
            return
        try:
            seg = _parse_at(data, start, end, src, dst, verify_checksum=self._ip.verify_l4)
        except MalformedPacket as exc:
            count_malformed(self.counters, exc)
            return
        self.counters["tcp-in"] += 1
        flow = None
        if seg.src_port and seg.dst_port:
            flow = (dst, seg.dst_port, src, seg.src_port)
            stream = self.flows.get(flow)
            if stream is not None and stream.conn.state is not TIME_WAIT:
                # What _segment does with a segment of a connection we hold
                # (not in TIME-WAIT: that one may be reopened by a SYN).
                stream.conn.receive_segment(seg, now)
                self.dirty[stream] = None
                return
        self.dispatch_segment(seg, address_from_int(src), address_from_int(dst), now, flow)

    def flow(self, dst: int, dst_port: int, src: int, src_port: int) -> TcpStream | None:
        """The connection a segment from ``src``:``src_port`` to ``dst``:``dst_port``
        (addresses as ints) goes to, as :meth:`receive_at` finds it; None when
        it has none or is in TIME-WAIT (a SYN may reopen that one)."""
        stream = self.flows.get((dst, dst_port, src, src_port))
        if stream is None or stream.conn.state is State.TIME_WAIT:
            return None
        return stream

    def receive_run(self, stream: TcpStream, seg: TcpSegment, segments: int, now: float) -> None:
        """``seg``, ``segments`` in-order data segments of ``stream``'s peer merged
        by the host (stack/gro.py), each of which :meth:`receive_at` would have
        given to the connection: counted as that many (``tcp-in``)."""
        self.counters["tcp-in"] += segments
        stream.conn.receive_coalesced(seg, segments, now)
        self.dirty[stream] = None

    def dispatch_segment(
        self,
        seg: TcpSegment,
        src: IPv4Address,
        dst: IPv4Address,
        now: float,
        flow: tuple[int, int, int, int] | None = None,
    ) -> None:
        """A parsed segment from ``src`` to ``dst`` (counted as tcp-in): to its
        TIME-WAIT record, connection or listener, or answered with a reset.
        ``flow``: its 4-tuple with int addresses, when the caller has it."""
        if not seg.src_port or not seg.dst_port:
            # Port 0 is reserved (RFC 9293 §3.1): never a connection's.
            self.counters["tcp-bad-port"] += 1
            return
        key = (dst, seg.dst_port, src, seg.src_port)
        if flow is None:
            flow = (address_int(dst), seg.dst_port, address_int(src), seg.src_port)
        if self.time_wait.by_flow:  # (the dict's truth, not the table's __len__)
            tw = self.time_wait.by_flow.get(flow)
            if tw is not None and self._time_wait_segment(tw, seg, now):
                return
        stream = self.flows.get(flow)
        if stream is not None:
            if not (
                stream.conn.state is TIME_WAIT
                and seg.flags & _SYN_ACK_RST == _SYN
                and seq_gt(seg.seq, stream.conn.rcv_nxt)
                and seg.dst_port in self.listeners
            ):
                stream.conn.receive_segment(seg, now)
                # Touched (events, output, timer) once per batch of frames, so
                # a burst of segments is acknowledged by one ACK (RFC 9293
                # §3.10.7.4 MUST-58/59) and its owner woken once.
                self.dirty[stream] = None
                return
            # RFC 9293 §3.6.1 (MAY-2): a new SYN beyond the old incarnation's
            # sequence space may reopen a TIME-WAIT 4-tuple; our ISNs grow
            # with the clock (RFC 6528) so the new one is larger too.
            self.counters["tcp-timewait-reopen"] += 1
            self._forget(stream)
        listener = self.listeners.get(seg.dst_port)
        if listener is not None and address_int(listener.local[0]) not in (0, flow[0]):
            listener = None  # bound to another of our addresses (0: ANY)
        if listener is None:
            # RFC 9293 §3.10.7.1: a segment to a closed port gets a reset.
            self.counters["tcp-closed-port"] += 1
            reply = reply_when_closed(seg)
            if reply is not None:
                self.counters["tcp-rst-out"] += 1
                self._output(dst, src, reply, now)
            return
        flags = int(seg.flags) & _INT_SYN_ACK_RST  # ints: IntFlag's & is Python code
        if flags != _PURE_SYN:
            if (
                flags == _INT_ACK
                and self._cookies is not None
                and self._cookie_ack(listener, key, seg, now)
            ):
                return
            reply = reply_when_listening(seg)
            if reply is not None:
                self.counters["tcp-rst-out"] += 1
                self._output(dst, src, reply, now)
            return
        self.syn_to_listener(listener, key, seg, now, flow)

    def syn_to_listener(
        self,
        listener: TcpListener,
        key: ConnKey,
        seg: TcpSegment,
        now: float,
        flow: tuple[int, int, int, int],
    ) -> None:
        """A SYN for ``listener`` with no connection of its 4-tuple (RFC 9293
        §3.10.7.2): the backlogs, SYN cookies or Fast Open, then a child in
        SYN-RECEIVED. Callers (``dispatch_segment``, the one-pass input) have
        made every test before it."""
        if len(listener.queue) >= listener.backlog:
            # The accept queue is full: drop the SYN (as Linux does) so the
            # client retries later instead of being refused.
            self.counters["tcp-listen-overflow"] += 1
            return
        if len(listener.half_open) >= listener.syn_backlog:
            if self._cookies is not None:
                reply = self._cookies.syn_ack(key, seg, listener.config, now)
                self.counters["tcp-syncookies-sent"] += 1
                self._output(key[0], key[2], reply, now)
                return
            # SYN-flood defence: a bounded half-open queue that evicts its
            # oldest entry. Spoofed SYNs never complete, so they age out in
            # arrival order, while a real client completes its handshake in
            # one round trip, long before syn_backlog newer SYNs push it out.
            oldest_key = next(iter(listener.half_open))
            victim = listener.half_open.pop(oldest_key)
            self.counters["tcp-synq-evicted"] += 1
            self._forget(victim)
        local = (key[0], key[1])
        remote = (key[2], key[3])
        # RFC 7413 only where the listener takes Fast Open (at_syn's first test).
        fo = self.fastopen.at_syn(listener, key[2], seg, now) if listener.fastopen_qlen else None
        conn = TcpConnection.accept_syn(
            seg,
            local,
            remote,
            listener.config,
            self.isn.for_ints(flow[0], flow[1], flow[2], flow[3], now),
            now,
            listener.since,
            fo,
            self.observers,
        )
        stream = self._add_passive(listener, key, conn, flow)
        self.counters["tcp-passive-opens"] += 1
        if fo is not None and fo.accepted:
            # RFC 7413 §4.2.2: the data is the application's now: accept it now.
            del listener.half_open[stream.flow]
            self.fastopen.accepted(stream, fo, listener)
            listener.queue.append(stream)
            self._events.append(TcpActivity(listener))
        self.touch(stream, now)

    def _add_passive(
        self,
        listener: TcpListener,
        key: ConnKey,
        conn: TcpConnection,
        flow: tuple[int, int, int, int] | None = None,
    ) -> TcpStream:
        """A connection the listener made, half-open until its handshake completes."""
        stream = TcpStream(key, conn, listener, self.touch, flow)
        self.flows[stream.flow] = stream
        listener.half_open[stream.flow] = stream
        return stream

    def _cookie_ack(self, listener: TcpListener, key: ConnKey, seg: TcpSegment, now: float) -> bool:
        """An ACK that may complete a SYN-cookie handshake: True if it did (or
        was a valid one dropped for a full accept queue)."""
        assert self._cookies is not None
        found = self._cookies.check_ack(key, seg, now)
        if found is None:
            self.counters["tcp-syncookies-bad"] += 1
            return False
        if len(listener.queue) >= listener.backlog:
            self.counters["tcp-listen-overflow"] += 1
            return True  # dropped; the client retransmits
        iss, syn = found
        local, remote = (key[0], key[1]), (key[2], key[3])
        conn = TcpConnection.accept_syn(
            syn, local, remote, listener.config, iss, now, listener.since, None, self.observers
        )
        conn.segments_to_send(now)  # the SYN-ACK the cookie already answered with
        stream = self._add_passive(listener, key, conn)
        conn.receive_segment(seg, now)
        self.counters["tcp-syncookies-ok"] += 1
        self.touch(stream, now)
        return True

    # ------------------------------------------------------------------ API
    def port_in_use(self, port: int) -> bool:
        """A listener or any connection has ``port`` as its local port."""
        return (
            port in self.listeners
            or any(k[1] == port for k in self.conns)
            or any(k[1] == port for k in self.time_wait)
        )

    def pick_listen_port(self) -> int:
        """A free ephemeral port for a listener (RFC 6335 §6 range)."""
        return self._ports.pick(self.port_in_use)

    def listen(
        self,
        port: int,
        addr: IPv4Address = ANY,
        *,
        backlog: int = 128,
        syn_backlog: int = 256,
        config: TcpConfig | None = None,
    ) -> TcpListener:
        self._ip.check_local(addr)
        if not 0 <= port <= 65535:
            raise LocalProtocolError("port must be 0-65535")
        if port == 0:
            port = self.pick_listen_port()
        elif port in self.listeners:
            raise AddressInUseError(f"TCP port {port} already has a listener")
        listener = TcpListener(
            (addr, port),
            max(1, backlog),
            max(1, syn_backlog),
            config or self.config,
            flush=self.flush,
            close=self.close_listener,
            since=self.now,
        )
        self.listeners[port] = listener
        return listener

    def connect(
        self,
        remote: Address,
        now: float,
        *,
        local: Address | None = None,
        config: TcpConfig | None = None,
        fastopen: bool = False,
    ) -> TcpStream:
        ip = self._ip
        rip, rport = as_address(remote[0]), remote[1]
        if not 0 < rport <= 65535:
            raise LocalProtocolError("destination port must be 1-65535")
        if not (rip.is_loopback or rip == ip.ip):
            ip.next_hop(rip)  # NoRouteError now, not later
        lip = ip.source_for(rip)
        if local is not None and local[0] != ANY:
            ip.check_local(local[0])
            lip = local[0]
        if local is not None and local[1]:
            lport = local[1]
            if (lip, lport, rip, rport) in self.conns or (lip, lport, rip, rport) in self.time_wait:
                raise AddressInUseError(f"{lip}:{lport} -> {rip}:{rport} exists")
        else:
            lport = self._ports.pick_for(
                (rip, rport),
                lambda p: (
                    p in self.listeners
                    or (lip, p, rip, rport) in self.conns
                    or (lip, p, rip, rport) in self.time_wait
                ),
            )
        key = (lip, lport, rip, rport)
        conn = TcpConnection(
            (lip, lport),
            (rip, rport),
            config=config or self.config,
            iss=self.isn((lip, lport), (rip, rport), now),
        )
        conn.report_states = self.observers  # see TcpConnection.report_states
        stream = TcpStream(key, conn, None, self.touch)
        self.flows[stream.flow] = stream
        conn.connect(now, self.fastopen.offer(stream, now) if fastopen else None)
        self.counters["tcp-active-opens"] += 1
        if not fastopen:
            self.touch(stream, now)
        # else RFC 7413: the SYN waits for data to carry: it leaves with the
        # first send() or poll() (Linux's TCP_FASTOPEN_CONNECT does the same).
        return stream

    def close_listener(self, listener: TcpListener, now: float) -> None:
        """Stop listening; connections not yet accepted are reset (as Linux)."""
        if listener.closed:
            return
        listener.closed = True
        if self.listeners.get(listener.local[1]) is listener:
            del self.listeners[listener.local[1]]
        for stream in [*listener.half_open.values(), *listener.queue]:
            stream.conn.abort(now)
            self.touch(stream, now)
            self._forget(stream)
        listener.half_open.clear()
        listener.queue.clear()


def _live(stream: TcpStream | None, entry: tuple[float, int, tuple[int, int, int, int]]) -> bool:
    """Whether a timer heap entry is still ``stream``'s deadline (see ``TcpDemux._heap``)."""
    return stream is not None and stream.timer_seq == entry[1] and stream.deadline == entry[0]
