"""A trace as JSON lines: one object per frame, what the pictures show, for programs.

``synack trace FILE.pcap --json`` writes these (docs/protocol.md §8).
Every object has the same keys, in this order; a value that does not apply is
``null``. Encoded by msgspec, as the chat messages are.

Layer: trace. Imports msgspec, synack.tcp, synack.wire and synack.trace.model.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from synack.tcp.states import State
from synack.trace.model import (
    Checksum,
    Connection,
    StateChange,
    TcpInfo,
    Trace,
    TraceEvent,
    decode,
    flag_names,
)
from synack.wire.tcp import TcpOptions


class Options(msgspec.Struct, frozen=True):
    mss: int | None
    wscale: int | None
    sack_permitted: bool
    timestamps: tuple[int, int] | None  # (TSval, TSecr)
    sack_blocks: list[tuple[int, int]]  # (left edge, right edge), absolute
    unknown: list[tuple[int, str]]  # (kind, data as hex)
    fastopen: str | None  # RFC 7413: null (no option), "" (a cookie request), the cookie as hex


class End(msgspec.Struct, frozen=True):
    addr: str  # "ip:port"
    role: str  # "sender" or "receiver" of this segment
    before: str | None  # RFC state name; null: no connection object (a closed port)
    after: str | None
    inferred: bool  # from the segments (a capture), not recorded by the connection


class Tcp(msgspec.Struct, frozen=True):
    connection: int
    flags: list[str]
    seq: int
    ack: int
    rel_seq: int
    rel_ack: int | None
    len: int
    window: int
    window_scaled: int
    options: Options
    ends: tuple[End, End]
    changes: list[str]  # "addr: OLD->NEW (cause)" this frame caused, in order


class Frame(msgspec.Struct, frozen=True):
    index: int
    time: float
    rel_time: float
    src: str
    dst: str
    protocol: str
    length: int
    checksum: str  # "ok", "bad" or "unverified" (offloaded: filled in after the capture)
    marks: list[str]
    summary: str
    tcp: Tcp | None


def _addr(ip: object, port: int) -> str:
    return f"{ip}:{port}"


def _options(o: TcpOptions) -> Options:
    return Options(
        mss=o.mss,
        wscale=o.wscale,
        sack_permitted=o.sack_permitted,
        timestamps=o.timestamps,
        sack_blocks=list(o.sack_blocks),
        unknown=[(kind, data.hex()) for kind, data in o.unknown],
        fastopen=None if o.fastopen is None else o.fastopen.hex(),
    )


def _name(state: State | None) -> str | None:
    return None if state is None else state.value


def _tcp(t: TcpInfo, conn: Connection, changes: list[StateChange]) -> Tcp:
    sender, receiver = (conn.client, conn.server) if t.from_client else (conn.server, conn.client)
    ends = (
        End(_addr(*sender), "sender", _name(t.before[0]), _name(t.after[0]), conn.inferred),
        End(_addr(*receiver), "receiver", _name(t.before[1]), _name(t.after[1]), conn.inferred),
    )
    by_lane = {conn.client_lane: conn.client, conn.server_lane: conn.server}
    said = []
    for c in changes:
        ip = by_lane.get(c.lane, (c.lane, c.port))[0]
        said.append(
            f"{_addr(ip, c.port)}: {c.old.value if c.old else 'none'}->{c.new.value}"
            + (f" ({c.cause})" if c.cause else "")
        )
    return Tcp(
        connection=t.conn,
        flags=flag_names(t.flags).split(",") if int(t.flags) else [],
        seq=t.seq,
        ack=t.ack,
        rel_seq=t.rel_seq,
        rel_ack=t.rel_ack,
        len=t.length,
        window=t.window,
        window_scaled=t.window_scaled,
        options=_options(t.options),
        ends=ends,
        changes=said,
    )


def frames(trace: Trace) -> Iterator[Frame]:
    """One :class:`Frame` per frame event of ``trace``, in order."""
    start = trace.events[0].time if trace.events else 0.0
    caused = trace.changes_by_frame()
    conns = {c.index: c for c in trace.connections}
    for ev in trace.events:
        yield _frame(ev, start, conns, caused.get(ev.index, []))


def _frame(
    ev: TraceEvent, start: float, conns: dict[int, Connection], changes: list[StateChange]
) -> Frame:
    checksum = ev.checksum
    marks = []
    t = ev.tcp
    if t is not None and t.retransmission:
        marks.append("retransmission")
    if t is not None and t.dup_ack:
        marks.append("dup-ack")
    if t is not None and t.out_of_order:
        marks.append("out-of-order")
    if ev.lost:
        marks.append("lost")
    if checksum is Checksum.BAD:
        marks.append("checksum-bad")
    elif checksum is Checksum.UNVERIFIED:
        marks.append("checksum-unverified")
    src, dst = ev.src, ev.dst
    tcp = None
    if t is not None:
        conn = conns[t.conn]
        sender, receiver = (
            (conn.client, conn.server) if t.from_client else (conn.server, conn.client)
        )
        src, dst = _addr(*sender), _addr(*receiver)
        tcp = _tcp(t, conn, changes)
    else:
        d = decode(ev.frame, ev.linktype)
        if d.udp is not None and d.ipv4 is not None:
            src, dst = _addr(d.ipv4.src, d.udp.src_port), _addr(d.ipv4.dst, d.udp.dst_port)
        elif d.ipv4 is not None:
            src, dst = str(d.ipv4.src), str(d.ipv4.dst)
    return Frame(
        index=ev.index,
        time=ev.time,
        rel_time=round(ev.time - start, 6),
        src=src,
        dst=dst,
        protocol=ev.protocol,
        length=len(ev.frame),
        checksum=checksum.value,
        marks=marks,
        summary=ev.summary,
        tcp=tcp,
    )


_ENCODER = msgspec.json.Encoder()


def lines(trace: Trace) -> Iterator[bytes]:
    """The trace as JSON lines (each ends in a newline)."""
    for frame in frames(trace):
        yield _ENCODER.encode(frame) + b"\n"
