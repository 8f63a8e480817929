"""One self-contained HTML page for a trace: nothing is fetched from the network.

The page holds, inline: an SVG sequence diagram (one arrow per frame, state
changes beside each host's column, lost frames stopping at a ✗), a state
timeline per connection end, the TCP state diagram drawn from the one
transition table (:data:`synack.tcp.states.TRANSITIONS`) with the rows this
trace went through highlighted, a packet list, and for the selected packet its
dissection layer by layer with a hex dump whose bytes light up per layer and
per field. The SVGs and the list are drawn here; a small script only handles
selection and highlighting, from JSON embedded in the page.

Layer: trace. Imports synack.tcp and the rest of synack.trace.
"""

from __future__ import annotations

import json
import math
from html import escape

from synack.tcp.states import TRANSITIONS, Cause, State
from synack.trace.layers import dissect
from synack.trace.model import (
    MARKS_LEGEND,
    Checksum,
    Note,
    StateChange,
    Trace,
    TraceEvent,
    state_name,
)
from synack.trace.terminal import event_label, short_options

ROW = 30  # px between rows of the sequence diagram
# Every frame carries its bytes and dissection in the page (about 3 kB for a
# full-size segment): past a few thousand frames a browser tab gets sluggish.
MAX_FRAMES = 3000
LANE_GAP = 300
CHAR_PX = 7.3  # one character of the 12 px monospace font, a little generous
TIME_COLUMN_PX = 52  # the time at the left of each arrow ("12.345") and a gap

_STATE_COLOURS: dict[State, str] = {
    State.CLOSED: "#9e9e9e",
    State.LISTEN: "#26a69a",
    State.SYN_SENT: "#ffb74d",
    State.SYN_RECEIVED: "#ffa726",
    State.ESTABLISHED: "#43a047",
    State.FIN_WAIT_1: "#64b5f6",
    State.FIN_WAIT_2: "#42a5f5",
    State.CLOSE_WAIT: "#ba68c8",
    State.CLOSING: "#7986cb",
    State.LAST_ACK: "#ab47bc",
    State.TIME_WAIT: "#ec407a",
}

# Where each state sits in the diagram, after RFC 9293 Figure 5: opening at
# the top, ESTABLISHED in the middle, the active close down the left, the
# passive close down the right. CLOSED appears twice, as in the RFC: where
# connections start (top) and where they end (bottom).
_NODE_POS: dict[str, tuple[int, int]] = {
    "CLOSED": (400, 40),
    "LISTEN": (400, 130),
    "SYN-RECEIVED": (190, 220),
    "SYN-SENT": (610, 220),
    "ESTABLISHED": (400, 310),
    "FIN-WAIT-1": (190, 400),
    "CLOSE-WAIT": (610, 400),
    "FIN-WAIT-2": (190, 500),
    "CLOSING": (400, 460),
    "LAST-ACK": (610, 500),
    "TIME-WAIT": (190, 600),
    "CLOSED-END": (400, 680),
}
_OPENING = {State.CLOSED, State.LISTEN, State.SYN_SENT, State.SYN_RECEIVED}
# Edges of the event processing (§3.10), not of the textbook figure: drawn
# faintly, labelled only when the trace went through them.
_ABORTS = {Cause.RCV_RST, Cause.ABORT, Cause.TIMEOUT, Cause.DATA_AFTER_CLOSE}

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;background:#fafafa}
header{padding:12px 20px;background:#263238;color:#eceff1}
header h1{margin:0;font-size:20px} header p{margin:4px 0 0;font-size:13px;color:#b0bec5}
main{padding:12px 20px}
section{background:#fff;border:1px solid #ddd;border-radius:6px;margin:0 0 16px;padding:10px 14px}
h2{font-size:16px;margin:4px 0 10px}
.scroll{overflow:auto;max-height:720px}
svg text{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px}
.lane-line{stroke:#90a4ae;stroke-width:2}
.lane-name{font-weight:bold;font-size:13px}
.arrow line{stroke:#37474f;stroke-width:1.6}
.arrow text{fill:#263238}
.arrow text.opts{fill:#607d8b;font-size:10px}
.arrow{cursor:pointer}
.arrow:hover line{stroke:#1565c0;stroke-width:3}
.arrow.selected line{stroke:#d81b60;stroke-width:3}
.arrow.selected text{fill:#d81b60;font-weight:bold}
.arrow.lost line{stroke:#c62828;stroke-dasharray:5 3}
.arrow.lost text,.cross{fill:#c62828}
.arrow.retrans text{fill:#ef6c00}
.arrow.rst line{stroke:#b71c1c}
.arrow.arp line{stroke:#1e88e5} .arrow.udp line{stroke:#00897b}
.state-label{font-weight:bold}
.note{fill:#6d4c41;font-weight:bold;font-size:13px}
.note-line{stroke:#d7ccc8;stroke-dasharray:2 4}
.tl-seg{stroke:#fff;stroke-width:1}
.node rect{fill:#eceff1;stroke:#78909c;stroke-width:1.5;rx:6}
.node.visited rect{fill:#fff3e0;stroke:#ef6c00;stroke-width:3}
.node text{font-size:11px;font-weight:bold}
.edge path{fill:none;stroke:#b0bec5;stroke-width:1.2}
.edge.abort path{stroke-dasharray:3 3;stroke:#cfd8dc}
.edge text{fill:#78909c;font-size:9px}
.edge.visited path{stroke:#ef6c00;stroke-width:3;stroke-dasharray:none}
.edge.visited text{fill:#e65100;font-size:10px;font-weight:bold}
table{border-collapse:collapse;width:100%;font-size:12px;font-family:ui-monospace,"DejaVu Sans Mono",monospace}
th,td{text-align:left;padding:2px 6px;border-bottom:1px solid #eee;white-space:nowrap}
tbody tr{cursor:pointer} tbody tr:hover{background:#e3f2fd} tr.selected{background:#fce4ec}
tr.lost td{color:#c62828} tr.retrans td{color:#ef6c00}
#layers{display:flex;gap:4px;margin:0 0 8px;flex-wrap:wrap}
.layer-chip{padding:4px 10px;border-radius:4px;font-weight:bold;font-size:13px;cursor:default}
.layer-box{border-left:6px solid;padding:2px 8px;margin:0 0 8px}
.layer-box h3{margin:2px 0;font-size:14px}
.field{cursor:default}
.field:hover{background:#fffde7}
#hex{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:13px;line-height:1.5;white-space:pre}
.byte{padding:0 1px;border-radius:2px}
.byte.lit{outline:2px solid #212121}
.detail{display:grid;grid-template-columns:minmax(320px,1fr) minmax(420px,1fr);gap:16px}
.muted{color:#78909c;font-size:12px}
"""

_LAYER_COLOURS = {
    "Ethernet": "#ffe0b2",
    "ARP": "#c5cae9",
    "IPv4": "#c8e6c9",
    "TCP": "#bbdefb",
    "UDP": "#b2dfdb",
    "ICMP": "#fff59d",
    "data": "#f8bbd0",
    "Ethernet padding": "#eeeeee",
    "IPv4 (quoted)": "#dcedc8",
}

_JS = """
(function(){
  "use strict";
  var data = JSON.parse(document.getElementById("trace-data").textContent);
  var colours = data.colours;
  function colourOf(name){
    if (!name) { return "#ffffff"; }
    return colours[name] || colours[name.split(" \u2717")[0]] || "#e0e0e0";
  }
  function el(tag, attrs, text){
    var e = document.createElement(tag);
    if (attrs) { for (var k in attrs) { e.setAttribute(k, attrs[k]); } }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function light(start, len){
    var bytes = document.querySelectorAll("#hex .byte");
    for (var i = 0; i < bytes.length; i++) {
      var on = len > 0 && i >= start && i < start + len;
      bytes[i].classList.toggle("lit", on);
    }
  }
  function select(index){
    var p = data.packets[index];
    if (!p) { return; }
    document.querySelectorAll(".selected").forEach(function(n){ n.classList.remove("selected"); });
    document.querySelectorAll('[data-index="' + index + '"]').forEach(function(n){ n.classList.add("selected"); });
    document.getElementById("detail-title").textContent = "Frame " + (index + 1) + ": " + p.summary;
    var chips = document.getElementById("layers");
    var boxes = document.getElementById("fields");
    var hex = document.getElementById("hex");
    chips.textContent = ""; boxes.textContent = ""; hex.textContent = "";
    p.layers.forEach(function(layer){
      var c = colourOf(layer.name);
      var chip = el("span", {"class": "layer-chip", "style": "background:" + c}, "[" + layer.name + "]");
      chip.addEventListener("mouseenter", function(){ light(layer.start, layer.end - layer.start); });
      chip.addEventListener("mouseleave", function(){ light(0, 0); });
      chips.appendChild(chip);
      var box = el("div", {"class": "layer-box", "style": "border-color:" + c});
      box.appendChild(el("h3", null, layer.name + "  (bytes " + layer.start + "–" + (layer.end - 1) + ")"));
      var table = el("table");
      layer.fields.forEach(function(f){
        var tr = el("tr", {"class": "field"});
        tr.appendChild(el("td", null, f[0]));
        tr.appendChild(el("td", null, f[1]));
        tr.appendChild(el("td", {"class": "muted"}, f[3] ? ("@" + f[2] + "+" + f[3]) : ""));
        tr.addEventListener("mouseenter", function(){ light(f[2], f[3]); });
        tr.addEventListener("mouseleave", function(){ light(0, 0); });
        table.appendChild(tr);
      });
      box.appendChild(table);
      boxes.appendChild(box);
    });
    var owner = [];
    p.layers.forEach(function(layer){
      for (var i = layer.start; i < layer.end; i++) { owner[i] = layer.name; }
    });
    var n = p.hex.length / 2;
    for (var row = 0; row < n; row += 16) {
      hex.appendChild(document.createTextNode(("000" + row.toString(16)).slice(-4) + "  "));
      for (var i = row; i < Math.min(row + 16, n); i++) {
        var b = el("span", {"class": "byte", "style": "background:" + colourOf(owner[i])}, p.hex.substr(2 * i, 2));
        hex.appendChild(b);
        hex.appendChild(document.createTextNode(i % 8 === 7 ? "  " : " "));
      }
      hex.appendChild(document.createTextNode("\\n"));
    }
  }
  document.querySelectorAll("[data-index]").forEach(function(node){
    node.addEventListener("click", function(){ select(parseInt(node.getAttribute("data-index"), 10)); });
  });
  if (data.packets.length) { select(0); }
  document.body.setAttribute("data-ready", "1");
})();
"""


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _svg_sequence(trace: Trace) -> tuple[str, int]:
    """The sequence diagram; returns (svg, number of arrows)."""
    lanes = list(trace.lanes)
    left = 170
    x = {lane.key: left + i * LANE_GAP for i, lane in enumerate(lanes)}
    width = left + max(len(lanes) - 1, 1) * LANE_GAP + 170
    rows: list[str] = []
    y = 60
    multi_port = _multi_port_lanes(trace)
    # Initial state of each connection end, under its host's name.
    shown: set[str] = set()
    for conn in trace.connections:
        for key, port, state in (
            (conn.client_lane, conn.client[1], conn.initial[0]),
            (conn.server_lane, conn.server[1], conn.initial[1]),
        ):
            if state is None or key in shown or key not in x:
                continue
            shown.add(key)
            # A capture cannot show the listen call: LISTEN is inferred from the SYN-ACK.
            note = " (inferred)" if conn.inferred and state is State.LISTEN else ""
            rows.append(_state_text(x, key, port, state, y, key in multi_port, note))
    y += ROW
    arrows = 0
    start = trace.start
    for item in trace.items:
        if isinstance(item, Note):
            y += ROW // 2
            rows.append(
                f'<line class="note-line" x1="10" y1="{y - 4}" x2="{width - 10}" y2="{y - 4}"/>'
                f'<text class="note" x="12" y="{y - 8}">{escape(item.text)}</text>'
            )
            y += ROW
        elif isinstance(item, StateChange):
            rows.append(_state_text(x, item.lane, item.port, item.new, y, item.lane in multi_port))
            y += ROW * 2 // 3
        else:
            rows.append(_arrow(item, x, y, start, width))
            arrows += 1
            y += ROW + 6
    head = [
        f'<line class="lane-line" x1="{x[lane.key]}" y1="34" x2="{x[lane.key]}" y2="{y}"/>'
        f'<text class="lane-name" x="{x[lane.key]}" y="22" text-anchor="middle">'
        f"{escape(lane.name if lane.name == lane.key else f'{lane.name} {lane.key}')}</text>"
        for lane in lanes
    ]
    svg = (
        f'<svg id="sequence" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{y + 20}" viewBox="0 0 {width} {y + 20}">'
        '<defs><marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="10" '
        'markerHeight="10" markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#37474f"/>'
        "</marker></defs>" + "".join(head) + "".join(rows) + "</svg>"
    )
    return svg, arrows


def _multi_port_lanes(trace: Trace) -> set[str]:
    ports: dict[str, set[int]] = {}
    for change in trace.state_changes:
        ports.setdefault(change.lane, set()).add(change.port)
    return {lane for lane, p in ports.items() if len(p) > 1}


def _state_text(
    x: dict[str, int],
    key: str,
    port: int,
    state: State,
    y: int,
    port_too: bool,
    note: str = "",
) -> str:
    if key not in x:
        return ""
    text = (f":{port} " if port_too else "") + state.value + note
    first = x[key] == min(x.values()) and len(x) > 1
    anchor, dx = ("end", -8) if first else ("start", 8)
    colour = _STATE_COLOURS.get(state, "#333")
    return (
        f'<text class="state-label" data-state="{_attr(state.value)}" data-lane="{_attr(key)}" '
        f'x="{x[key] + dx}" y="{y}" text-anchor="{anchor}" fill="{colour}">{escape(text)}</text>'
    )


def _arrow(ev: TraceEvent, x: dict[str, int], y: int, start: float, width: int) -> str:
    x1, x2 = x.get(ev.src), x.get(ev.dst)
    classes = ["arrow", ev.protocol.lower()]
    if ev.lost:
        classes.append("lost")
    if ev.tcp is not None:
        if ev.tcp.retransmission:
            classes.append("retrans")
        if ev.tcp.flags & 0x04:
            classes.append("rst")
    label = escape(event_label(ev))
    t = f"{ev.time - start:.3f}"
    title = f"<title>{escape(ev.summary)}</title>"
    time_text = f'<text class="time" x="8" y="{y + 14}" fill="#90a4ae">{t}</text>'
    if x1 is None or x2 is None:
        return ""
    common = f'class="{" ".join(classes)}" data-index="{ev.index}"'
    if x1 == x2:
        return (
            f"<g {common}>{title}{time_text}"
            f'<text x="{x1 + 8}" y="{y + 14}">{label}</text>'
            f'<line x1="{x1}" y1="{y + 8}" x2="{x1 + 6}" y2="{y + 8}"/></g>'
        )
    mid = (x1 + x2) / 2
    ya = y + 14
    # Centred over the arrow, but never over the time column nor past the right edge
    # (monospace 12 px: about 7.3 px a character).
    # A label wider than its arrow is split at the space nearest its middle, so
    # that it does not run past the lifelines (the space stays: textContent is whole).
    text = event_label(ev)
    parts = [text]
    if len(text) * CHAR_PX > abs(x2 - x1) - 12 and " " in text:
        cut = min(
            (i for i, c in enumerate(text) if c == " "), key=lambda i: abs(i - len(text) // 2)
        )
        parts = [text[: cut + 1], text[cut + 1 :]]
    half = max(len(p.rstrip()) for p in parts) * CHAR_PX / 2
    label_x = min(max(mid, TIME_COLUMN_PX + half), width - 4 - half)
    up = 12 * (len(parts) - 1)
    label_y = y + 8 - up
    if ev.lost:
        # The frame died on the link: the arrow stops half-way at a cross, under its label.
        label_y = y + 2 - up
        body = (
            f'<line x1="{x1}" y1="{ya}" x2="{mid:.0f}" y2="{ya}"/>'
            f'<text class="cross" x="{mid:.0f}" y="{ya + 5}" text-anchor="middle" '
            f'font-size="13">✗</text>'
        )
    else:
        body = f'<line x1="{x1}" y1="{ya}" x2="{x2}" y2="{ya}" marker-end="url(#head)"/>'
    # A SYN's options (either direction) under its arrow: they set MSS and window scaling.
    opts = short_options(ev).strip(" <>") if ev.tcp is not None and ev.tcp.flags & 0x02 else ""
    if opts:
        body += (
            f'<text class="opts" x="{mid:.0f}" y="{ya + 12}" text-anchor="middle">'
            f"{escape(opts)}</text>"
        )
    return (
        f"<g {common}>{title}{time_text}{body}"
        f'<text class="label" x="{label_x:.0f}" y="{label_y}" text-anchor="middle">'
        + "".join(
            f'<tspan x="{label_x:.0f}" dy="{12 if i else 0}">{escape(part)}</tspan>'
            for i, part in enumerate(parts)
        )
        + "</text></g>"
    )


def _svg_timelines(trace: Trace) -> str:
    """One bar per connection end: which state it was in, frame by frame."""
    events = trace.events
    if not trace.connections or not events:
        return '<p class="muted">No TCP connection in this trace.</p>'
    n = len(events)
    left, width = 260, 900
    # One slot per frame, and one more for what happens after the last frame
    # (a recorded TIME-WAIT expiry, for instance).
    step = width / (n + 1)
    bars: list[str] = []
    y = 30
    for conn in trace.connections:
        ends = (
            (conn.client_lane, conn.client, conn.initial[0]),
            (conn.server_lane, conn.server, conn.initial[1]),
        )
        for lane, addr, initial in ends:
            spans = _state_spans(trace, conn.index, addr[1], lane, initial, n)
            name = trace.lane_name(lane)
            label = f"#{conn.index} {name}" + (f" :{addr[1]}" if ":" not in name else "")
            bars.append(f'<text x="8" y="{y + 14}" class="tl-name">{escape(label)}</text>')
            for first, last, state in spans:
                colour = _STATE_COLOURS.get(state, "#ccc")
                x0 = left + first * step
                w = max((last - first) * step, 1)
                where = _span_frames(first, last, n)
                bars.append(
                    f'<g class="tl"><title>{escape(state.value)} ({where})</title>'
                    f'<rect class="tl-seg" data-state="{_attr(state.value)}" x="{x0:.1f}" y="{y}" '
                    f'width="{w:.1f}" height="20" fill="{colour}"/>'
                    + (
                        f'<text x="{x0 + 3:.1f}" y="{y + 14}" font-size="10">{escape(state.value)}</text>'
                        if w > 8 * len(state.value)
                        else ""
                    )
                    + "</g>"
                )
            y += 28
        y += 8
    axis = f'<text x="{left}" y="18" class="muted" font-size="10">frame 1</text>'
    axis += f'<text x="{left + width}" y="18" text-anchor="end" font-size="10">frame {n}</text>'
    return (
        f'<svg id="timelines" xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" '
        f'height="{y}">{axis}{"".join(bars)}</svg>'
    )


def _span_frames(first: float, last: float, n: int) -> str:
    """Which frames a timeline span covers, 1-based: slot k shows the state
    after frame k+1; a change between frames starts half a slot early."""
    lo, hi = math.ceil(first) + 1, min(math.ceil(last), n)
    if lo < hi:
        return f"frames {lo}–{hi}"
    if lo == hi:
        return f"frame {lo}"
    if lo > n:
        return f"after frame {n}"
    return f"between frames {lo - 1} and {lo}"


def _state_spans(
    trace: Trace, conn: int, port: int, lane: str, initial: State | None, n: int
) -> list[tuple[float, float, State]]:
    """(start, end, state) runs of one connection end over the frame axis.

    A change caused by frame k (0-based) starts at slot k; a recorded change
    between frames (the listening, a 2MSL expiry) half a slot before the next
    frame, so that it shows even when that frame changes the state again.
    """
    spans: list[tuple[float, float, State]] = []
    state: State | None = initial
    since: float = 0
    next_slot = 0
    # Slots are positions among this trace's frames (a cut-out trace keeps
    # the frames' original numbers).
    slot = {ev.index: i for i, ev in enumerate(trace.events)}
    for item in trace.items:
        if isinstance(item, TraceEvent):
            next_slot = slot[item.index] + 1
        elif isinstance(item, StateChange) and (item.conn, item.lane, item.port) == (
            conn,
            lane,
            port,
        ):
            at: float = (
                slot.get(item.frame, next_slot)
                if item.frame is not None
                else max(next_slot - 0.5, since)
            )
            if state is not None and at > since:
                spans.append((since, at, state))
            state, since = item.new, at
    if state is not None:
        spans.append((since, n + 1, state))
    return spans


def _svg_state_diagram(trace: Trace) -> str:
    """The TCP state diagram, every row of the transition table an edge."""
    visited_rows = trace.visited()
    visited_states = {c.new for c in trace.state_changes} | {
        c.old for c in trace.state_changes if c.old is not None
    }
    for conn in trace.connections:
        visited_states.update(s for s in conn.initial if s is not None)

    def node_key(state: State, arriving_from: State | None) -> str:
        if state is State.CLOSED and arriving_from is not None and arriving_from not in _OPENING:
            return "CLOSED-END"
        return state.value

    edges: dict[tuple[str, str], list[tuple[Cause, bool]]] = {}
    for old, cause, new in TRANSITIONS:
        key = (node_key(old, None), node_key(new, old))
        edges.setdefault(key, []).append((cause, (old, cause, new) in visited_rows))
    parts: list[str] = []
    w, h = 150, 30
    # Boxes a label must stay clear of: every node, then each label placed so far.
    placed: list[tuple[float, float, float, float]] = [
        (x - w / 2 - 2, y - h / 2 - 2, x + w / 2 + 2, y + h / 2 + 2) for x, y in _NODE_POS.values()
    ]
    for (a, b), causes in edges.items():  # one edge per pair of nodes
        if a not in _NODE_POS or b not in _NODE_POS:
            continue
        (x1, y1), (x2, y2) = _NODE_POS[a], _NODE_POS[b]
        visited = any(v for _, v in causes)
        abort = all(c in _ABORTS for c, _ in causes)
        # Curve each edge a little to one side, so A->B and B->A do not overlap.
        dx, dy = x2 - x1, y2 - y1
        dist = math.hypot(dx, dy) or 1.0
        bend = 0.18 * dist if abort else 0.10 * dist
        cx, cy = (x1 + x2) / 2 - dy / dist * bend, (y1 + y2) / 2 + dx / dist * bend
        sx, sy = _border(x1, y1, cx, cy, w, h)
        ex, ey = _border(x2, y2, cx, cy, w, h)
        names = [str(c) for c, v in causes if v or c not in _ABORTS]
        label = " / ".join(names)
        lx, ly = _place_label(label, visited, (sx, sy), (cx, cy), (ex, ey), placed)
        cls = "edge" + (" abort" if abort else "") + (" visited" if visited else "")
        every = " / ".join(str(c) for c, _ in causes)
        parts.append(
            f'<g class="{cls}" data-from="{_attr(a)}" data-to="{_attr(b)}" '
            f'data-taken="{_attr(" / ".join(str(c) for c, v in causes if v))}">'
            f"<title>{escape(a)} → {escape(b)}: {escape(every)}</title>"
            f'<path d="M{sx:.1f},{sy:.1f} Q{cx:.1f},{cy:.1f} {ex:.1f},{ey:.1f}" '
            f'marker-end="url(#{"hv" if visited else "hd"})"/>'
            + (
                f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="middle">{escape(label)}</text>'
                if label
                else ""
            )
            + "</g>"
        )
    for node, (x, y) in _NODE_POS.items():
        state = State.CLOSED if node == "CLOSED-END" else State(node)
        cls = "node" + (" visited" if state in visited_states else "")
        parts.append(
            f'<g class="{cls}" data-state="{_attr(state.value)}">'
            f'<rect x="{x - w / 2}" y="{y - h / 2}" width="{w}" height="{h}" rx="6"/>'
            f'<text x="{x}" y="{y + 4}" text-anchor="middle">{escape(state.value)}</text></g>'
        )
    defs = (
        '<defs><marker id="hd" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" '
        'markerHeight="9" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0L10,5L0,10z" fill="#b0bec5"/></marker>'
        '<marker id="hv" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="12" '
        'markerHeight="12" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0L10,5L0,10z" fill="#ef6c00"/></marker></defs>'
    )
    return (
        '<svg id="state-diagram" xmlns="http://www.w3.org/2000/svg" width="820" height="720" '
        f'viewBox="0 0 820 720">{defs}{"".join(parts)}</svg>'
    )


def _place_label(
    label: str,
    bold: bool,
    start: tuple[float, float],
    ctrl: tuple[float, float],
    end: tuple[float, float],
    placed: list[tuple[float, float, float, float]],
) -> tuple[float, float]:
    """Where an edge's label goes: the point of its curve nearest the middle whose
    box (estimated from the 9/10 px monospace font) covers no node and no other
    label; the box is then added to ``placed``."""
    if not label:
        return ((start[0] + 2 * ctrl[0] + end[0]) / 4, (start[1] + 2 * ctrl[1] + end[1]) / 4)
    half = len(label) * (6.1 if bold else 5.5) / 2 + 2
    best: tuple[float, float] | None = None
    for t in (0.5, 0.42, 0.58, 0.34, 0.66, 0.26, 0.74, 0.18, 0.82):
        u = 1 - t
        x = u * u * start[0] + 2 * u * t * ctrl[0] + t * t * end[0]
        y = u * u * start[1] + 2 * u * t * ctrl[1] + t * t * end[1]
        for dy in (0.0, -9.0, 9.0, -16.0, 16.0):
            box = (x - half, y + dy - 10, x + half, y + dy + 3)
            if not any(
                box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed
            ):
                best = (x, y + dy)
                break
        if best is not None:
            break
    if best is None:
        best = ((start[0] + 2 * ctrl[0] + end[0]) / 4, (start[1] + 2 * ctrl[1] + end[1]) / 4)
    placed.append((best[0] - half, best[1] - 10, best[0] + half, best[1] + 3))
    return best


def _border(x: float, y: float, tx: float, ty: float, w: float, h: float) -> tuple[float, float]:
    """Where the line from a node's centre (x, y) towards (tx, ty) leaves its box."""
    dx, dy = tx - x, ty - y
    if dx == 0 and dy == 0:
        return x, y
    scale = min(
        (w / 2) / abs(dx) if dx else math.inf,
        (h / 2) / abs(dy) if dy else math.inf,
    )
    return x + dx * scale, y + dy * scale


def _packet_list(trace: Trace) -> str:
    rows = []
    start = trace.start
    caused = trace.changes_by_frame()
    for ev in trace.events:
        classes = []
        marks = []
        if ev.lost:
            classes.append("lost")
            marks.append("lost" + (f" on {ev.lost_where}" if ev.lost_where else ""))
        if ev.tcp is not None and ev.tcp.retransmission:
            classes.append("retrans")
            marks.append("retransmission")
        if ev.tcp is not None and ev.tcp.dup_ack:
            marks.append("dup ACK")
        if ev.tcp is not None and ev.tcp.out_of_order:
            marks.append("out of order")
        if ev.checksum is Checksum.BAD:
            classes.append("bad")
            marks.append("bad checksum")
        elif ev.checksum is Checksum.UNVERIFIED:
            marks.append("checksum unverified")
        states = "; ".join(
            f"{trace.lane_name(c.lane)}: {state_name(c.old)}→{state_name(c.new)}"
            for c in caused.get(ev.index, ())
        )
        rows.append(
            f'<tr class="{" ".join(classes)}" data-index="{ev.index}"><td>{ev.index + 1}</td>'
            f"<td>{ev.time - start:.6f}</td><td>{escape(trace.lane_name(ev.src))}</td>"
            f"<td>{escape(trace.lane_name(ev.dst))}</td><td>{escape(ev.protocol)}</td>"
            f"<td>{escape(', '.join(marks))}</td><td>{escape(states)}</td>"
            f"<td>{escape(ev.summary)}</td></tr>"
        )
    return (
        '<table id="packets"><thead><tr><th>No.</th><th>Time</th><th>Source</th>'
        "<th>Destination</th><th>Protocol</th><th>Marks</th><th>States</th><th>Info</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _packet_data(trace: Trace) -> list[dict[str, object]]:
    packets: list[dict[str, object]] = []
    for ev in trace.events:
        layers = dissect(ev.frame, ev.linktype)
        packets.append(
            {
                "summary": ev.summary,
                "hex": ev.frame.hex(),
                "layers": [
                    {
                        "name": layer.name,
                        "start": layer.start,
                        "end": layer.end,
                        "fields": [[f.name, f.value, f.start, f.length] for f in layer.fields],
                    }
                    for layer in layers
                ],
            }
        )
    return packets


def render_html(trace: Trace, title: str = "synack trace", limit: int = MAX_FRAMES) -> str:
    """The whole page as one string; a trace of more than ``limit`` frames is cut there."""
    total = len(trace.events)
    cut = ""
    if total > limit:
        end = next(
            i
            for i, it in enumerate(trace.items)
            if isinstance(it, TraceEvent) and it.index == limit
        )
        trace = trace.window(0, end)
        cut = f" This page shows the first {limit} of {total} frames."
    sequence, arrows = _svg_sequence(trace)
    data = {
        "packets": _packet_data(trace),
        "colours": _LAYER_COLOURS,
    }
    # No "<" at all inside the <script> element: "</script>" would end it, and "<!--" followed by
    # "<script" would make the HTML parser run past its real end. In JSON, "<" only occurs inside
    # strings, where \u003c means the same character.
    blob = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    conns = "".join(
        f"<li>#{c.index} {escape(c.label())}: "
        f"{escape(' / '.join(state_name(s) for s in c.initial))} → "
        f"{escape(' / '.join(state_name(s) for s in c.final))} "
        f"({'states inferred from the segments' if c.inferred else 'states recorded by the connections'})</li>"
        for c in trace.connections
    )
    n = len(trace.events)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{escape(title)}</title>
<style>{_CSS}</style></head>
<body data-frames="{n}" data-arrows="{arrows}">
<header><h1>{escape(title)}</h1>
<p>{n} frames, {len(trace.connections)} TCP connection(s), {len(trace.state_changes)} state changes.
Click an arrow or a row to dissect its frame.{cut}</p></header>
<main>
<section><h2>Sequence diagram</h2><div class="scroll">{sequence}</div>
<ul class="muted">{conns}</ul></section>
<section><h2>States over time</h2><div class="scroll">{_svg_timelines(trace)}</div></section>
<section><h2>TCP state diagram (RFC 9293), drawn from synack's transition table</h2>
<p class="muted">Highlighted: the states and transitions this trace went through. Dashed: resets,
aborts and timeouts.</p>
<div class="scroll">{_svg_state_diagram(trace)}</div></section>
<section><h2>Packets</h2>
<p class="muted legend">{escape(MARKS_LEGEND)}</p>
<div class="scroll" style="max-height:360px">{_packet_list(trace)}</div></section>
<section><h2 id="detail-title">Frame</h2>
<div id="layers"></div>
<div class="detail"><div id="fields"></div><div><div id="hex"></div></div></div></section>
</main>
<script type="application/json" id="trace-data">{blob}</script>
<script>{_JS}</script>
</body></html>
"""


def write_html(trace: Trace, path: str, title: str = "synack trace") -> None:
    with open(path, "w", encoding="utf-8") as out:
        out.write(render_html(trace, title))
