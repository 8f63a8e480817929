"""The textbook sequence diagram in a terminal (rich).

One column per host (two for one connection, like the lessons' figures), time
running down: every frame is a label line and an arrow from sender to
receiver, every TCP state change is written beside its host's column, a lost
segment's arrow stops half-way at a ✗ (where it died), retransmissions and
duplicate ACKs are marked.

Layer: trace. Imports synack.core, synack.tcp, synack.wire and synack.trace.model.
"""

from __future__ import annotations

import itertools
import re
import textwrap
from collections.abc import Iterator

from rich.console import Console
from rich.text import Text

from synack.core.printable import escape
from synack.tcp.states import State
from synack.trace.model import Checksum, Note, StateChange, Trace, TraceEvent, state_name
from synack.wire.tcp import TcpFlags

TIME_WIDTH = 9
TERMINAL_FRAMES = 2000

_STATE_STYLE: dict[State, str] = {
    State.ESTABLISHED: "bold green",
    State.CLOSED: "bold red",
    State.TIME_WAIT: "bold magenta",
    State.LISTEN: "bold cyan",
}


def _flag_style(event: TraceEvent) -> str:
    if event.lost:
        return "red"
    tcp = event.tcp
    if tcp is None:
        return {"ARP": "blue", "UDP": "cyan", "ICMP": "yellow"}.get(event.protocol, "white")
    if tcp.retransmission or tcp.dup_ack:
        return "yellow"
    if tcp.flags & TcpFlags.RST:
        return "bold red"
    if tcp.flags & (TcpFlags.SYN | TcpFlags.FIN):
        return "bold"
    return ""


def short_options(event: TraceEvent) -> str:
    """Options as a diagram shows them: timestamps named, not valued (they change every segment)."""
    if event.tcp is None:
        return ""
    o = event.tcp.options
    parts = []
    if o.mss is not None:
        parts.append(f"mss {o.mss}")
    if o.sack_permitted:
        parts.append("sackOK")
    if o.wscale is not None:
        parts.append(f"wscale {o.wscale}")
    if o.sack_blocks:
        parts.append("SACK")
    if o.fastopen is not None:  # RFC 7413: the cookie's value says nothing to a reader
        parts.append("TFO cookie" if o.fastopen else "TFO cookie request")
    return f" <{','.join(parts)}>" if parts else ""


_IP_PREFIX = re.compile(r"^IP [0-9.]+ > [0-9.]+: |^ARP, ")


def event_label(event: TraceEvent) -> str:
    """What an arrow says: flags and relative seq/ack for TCP, the summary for the rest."""
    tcp = event.tcp
    if tcp is None:
        # The arrow already says who talks to whom.
        text = _IP_PREFIX.sub("", event.summary)
        return text + (" (LOST)" if event.lost else "")
    text = tcp.label()
    marks = []
    if tcp.retransmission:
        marks.append("retransmission")
    if tcp.dup_ack:
        marks.append("dup ACK")
    if tcp.out_of_order:
        marks.append("out of order")
    if event.lost:
        marks.append("LOST" + (f" on {event.lost_where}" if event.lost_where else ""))
    if event.checksum is Checksum.BAD:
        marks.append("bad checksum")
    if marks:
        text += " (" + ", ".join(marks) + ")"
    return text


class _Row:
    """A line of fixed-width cells with a style per cell."""

    def __init__(self, width: int) -> None:
        self.chars = [" "] * width
        self.styles = [""] * width

    def put(self, x: int, text: str, style: str = "") -> None:
        # Everything drawn passes here: a control, bidi or format character
        # from a packet (a name, a summary) is escaped, never sent to the
        # terminal (issue 14).
        for i, ch in enumerate(escape(text)):
            if 0 <= x + i < len(self.chars):
                self.chars[x + i] = ch
                self.styles[x + i] = style

    def text(self) -> Text:
        line = "".join(self.chars).rstrip()
        out = Text(line)
        start = 0
        for i in range(1, len(line) + 1):
            if i == len(line) or self.styles[i] != self.styles[start]:
                if self.styles[start]:
                    out.stylize(self.styles[start], start, i)
                start = i
        return out


class SequenceDiagram:
    """Lays a :class:`Trace` out as lines of text, ``width`` cells wide."""

    def __init__(self, trace: Trace, width: int = 100, origin: float | None = None) -> None:
        """``origin``: the time shown as 0 (default: the trace's first item)."""
        self.trace = trace
        self.origin = trace.start if origin is None else origin
        self.width = max(width, 60)
        keys = [lane.key for lane in trace.lanes]
        self.keys = keys
        # A host with several connections shows which port changed state.
        ports: dict[str, set[int]] = {}
        for change in trace.state_changes:
            ports.setdefault(change.lane, set()).add(change.port)
        self.multi = {lane for lane, p in ports.items() if len(p) > 1}
        longest = max((len(self._state_text(c)) for c in trace.state_changes), default=12)
        self.gutter = max(longest, 12) + 2
        left = TIME_WIDTH + self.gutter
        right = self.width - self.gutter - 1
        if len(keys) <= 1:
            self.x = {k: left for k in keys}
        else:
            step = (right - left) / (len(keys) - 1)
            self.x = {k: round(left + i * step) for i, k in enumerate(keys)}

    def _state_text(self, change: StateChange) -> str:
        prefix = f":{change.port} " if change.lane in getattr(self, "multi", set()) else ""
        return prefix + change.new.value

    def _row(self) -> _Row:
        row = _Row(self.width)
        for x in self.x.values():
            row.put(x, "│", "dim")
        return row

    def lines(self) -> Iterator[Text]:
        trace = self.trace
        placed = []
        for lane in trace.lanes:
            name = lane.name if lane.name == lane.key else f"{lane.name} {lane.key}"
            x = self.x[lane.key]
            placed.append((max(0, min(x - len(name) // 2, self.width - len(name))), name))
        # Names that would run into each other take turns on two lines.
        crowded = any(a + len(n) >= b for (a, n), (b, _) in itertools.pairwise(placed))
        headers = [_Row(self.width), _Row(self.width)] if crowded else [_Row(self.width)]
        for i, (at, name) in enumerate(placed):
            headers[i % len(headers)].put(at, name, "bold")
        for header in headers:
            yield header.text()
        # The state each connection end starts in, under its host's name.
        initial = self._row()  # lifelines first: a state's name is written over them
        shown: set[str] = set()
        for conn in trace.connections:
            ends = (
                (conn.client_lane, conn.client[1], conn.initial[0]),
                (conn.server_lane, conn.server[1], conn.initial[1]),
            )
            for key, port, state in ends:
                if state is None or key not in self.x or key in shown:
                    continue
                shown.add(key)
                prefix = f":{port} " if key in self.multi else ""
                note = " (inferred)" if conn.inferred and state is State.LISTEN else ""
                self._put_state(initial, key, prefix + state.value + note, state)
        yield initial.text()
        for item in trace.items:
            if isinstance(item, Note):
                row = _Row(self.width)
                row.put(0, f"── {item.text} ", "bold yellow")
                yield row.text()
            elif isinstance(item, StateChange):
                row = self._row()
                state = item.new
                self._put_state(row, item.lane, self._state_text(item), state)
                yield row.text()
            else:
                yield from self._event_lines(item)

    def _put_state(self, row: _Row, lane: str, text: str, state: State) -> None:
        x = self.x.get(lane)
        if x is None:
            return
        style = _STATE_STYLE.get(state, "bold")
        if x == min(self.x.values()) and len(self.x) > 1:
            row.put(x - len(text) - 1, text, style)
        else:
            row.put(x + 2, text, style)

    def _event_lines(self, event: TraceEvent) -> Iterator[Text]:
        x1 = self.x.get(event.src)
        x2 = self.x.get(event.dst)
        style = _flag_style(event)
        label = event_label(event)
        t = f"{event.time - self.origin:8.3f}"
        top = self._row()
        top.put(0, t, "dim")
        arrow = self._row()
        if x1 is None or x2 is None or x1 == x2:
            top.put(TIME_WIDTH, label, style)
            yield top.text()
            return
        lo, hi = min(x1, x2), max(x1, x2)
        span = hi - lo - 3
        full = label + short_options(event)
        if len(full) <= span:
            top.put(lo + 2 + (span - len(full)) // 2, full, style)
        else:
            # Too long for the arrow: centred over it across the other lifelines,
            # wrapped at spaces when wider than the diagram; nothing is cut.
            avail = self.width - TIME_WIDTH
            rows = [top] + [self._row() for _ in range(1, 99)]
            wrapped = textwrap.wrap(full, avail, break_on_hyphens=False) or [full]
            centre = (lo + hi) // 2
            for row, part in zip(rows, wrapped, strict=False):
                at = min(max(centre - len(part) // 2, TIME_WIDTH), self.width - len(part))
                row.put(at, part, style)
            for row in rows[1 : len(wrapped)]:
                yield top.text()
                top = row
        if event.lost:
            # The arrow dies half-way, where the link dropped it.
            mid = (x1 + x2) // 2
            if x2 > x1:
                arrow.put(x1 + 1, "─" * (mid - x1 - 1), style)
            else:
                arrow.put(mid + 1, "─" * (x1 - mid - 1), style)
            arrow.put(mid, "✗", "bold red")
        elif x2 > x1:
            arrow.put(x1 + 1, "─" * (x2 - x1 - 2) + "▶", style or "white")
        else:
            arrow.put(x2 + 1, "◀" + "─" * (x1 - x2 - 2), style or "white")
        yield top.text()
        yield arrow.text()


def render(trace: Trace, console: Console | None = None, width: int | None = None) -> None:
    """Print ``trace`` as a sequence diagram, followed by one line per connection."""
    console = console or Console()
    diagram = SequenceDiagram(trace, width or min(console.width, 140))
    if not console.is_terminal and console.file is not None and not console.record:
        # Piped: plain lines, without paying for rich's rendering line by line.
        for line in diagram.lines():
            console.file.write(line.plain + "\n")
    else:
        # rich renders a few thousand styled lines a second: a terminal gets
        # the first TERMINAL_FRAMES frames (pipe the output for all of them).
        shown = 0
        batch: list[Text] = []
        for line in diagram.lines():
            batch.append(line)
            if "▶" in line.plain or "◀" in line.plain or "✗" in line.plain:
                shown += 1
                if shown >= TERMINAL_FRAMES:
                    break
        console.print(Text("\n").join(batch), overflow="crop", no_wrap=True, soft_wrap=True)
        if len(trace.events) > shown >= TERMINAL_FRAMES:
            console.print(
                Text(
                    f"… {len(trace.events) - shown} more frames: pipe the output, or use "
                    "--connection N or --html",
                    "yellow",
                )
            )
    unverified = sum(e.checksum is Checksum.UNVERIFIED for e in trace.events)
    if unverified:
        console.print(
            Text(
                f"{unverified} frame(s): checksum unverified, not bad (the sending host's NIC "
                "fills it in after the capture point: offload)",
                "dim",
            )
        )
    for conn in trace.connections:
        how = "inferred from the segments" if conn.inferred else "recorded by the connections"
        final = " / ".join(state_name(s) for s in conn.final)
        console.print(
            Text(f"connection {conn.index}: {conn.label()}  final states {final} ({how})", "dim")
        )


def to_text(trace: Trace, width: int = 100) -> str:
    """The diagram as plain text (for tests and for piping)."""
    return "\n".join(line.plain for line in SequenceDiagram(trace, width).lines())
