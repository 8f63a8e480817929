from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from synack.tcp.states import TRANSITIONS, State
from synack.trace.browser import Browser
from synack.trace.builder import TraceBuilder
from synack.trace.html import render_html, write_html
from synack.trace.layers import dissect
from synack.trace.model import Trace
from tests.trace.conftest import OVERLAPS_JS, needs_chromium
from tests.trace.frames import CONVERSATION, A, B

LOST = 5  # "hello" dies on the link


def conversation() -> Trace:
    b = TraceBuilder(names={str(A): "A", str(B): "B"})
    b.add_note(0.0, "ARP, then the three-way handshake")
    for i, (t, f) in enumerate(CONVERSATION):
        b.add_frame(t, f, lost=i == LOST, lost_where="A-B" if i == LOST else None)
    return b.build()


def test_page_is_self_contained() -> None:
    page = render_html(conversation())
    # Nothing to fetch: no external scripts, styles, images or fonts.
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert all(r.startswith(("data:", "#")) for r in refs), refs
    assert "@import" not in page and "url(http" not in page
    urls = set(re.findall(r"https?://[^\s\"'<)]+", page)) - {"http://www.w3.org/2000/svg"}
    assert urls == set()
    # The JSON blob cannot end the script element early.
    blob = page.split('<script type="application/json" id="trace-data">')[1].split("</script>")[0]
    assert len(json.loads(blob)["packets"]) == len(CONVERSATION)


def test_one_arrow_per_frame_and_the_state_diagram_is_the_table() -> None:
    page = render_html(conversation())
    assert page.count('<g class="arrow') == len(CONVERSATION)
    assert len(re.findall(r'<g class="arrow[^"]*\blost\b', page)) == 1
    nodes = re.findall(r'<g class="node[^"]*" data-state="([^"]+)"', page)
    assert set(nodes) == {s.value for s in State}
    edges = set(re.findall(r'<g class="edge[^"]*" data-from="([^"]+)" data-to="([^"]+)"', page))
    closed_end = {"CLOSED", "CLOSED-END"}
    # Every row of the table is drawn (CLOSED appears at the top and the bottom, as in the RFC).
    for old, _cause, new in TRANSITIONS:
        assert any(
            a == old.value and (b == new.value or (new is State.CLOSED and b in closed_end))
            for a, b in edges
        ), (old, new)
    visited = set(
        re.findall(r'<g class="edge[^"]*visited" data-from="([^"]+)" data-to="([^"]+)"', page)
    )
    assert ("SYN-SENT", "ESTABLISHED") in visited
    assert ("FIN-WAIT-2", "TIME-WAIT") in visited
    assert ("LAST-ACK", "CLOSED-END") in visited
    assert ("SYN-SENT", "SYN-RECEIVED") not in visited  # no simultaneous open here


def test_dissection_layers_cover_the_frame_in_order() -> None:
    frame = CONVERSATION[5][1]
    layers = dissect(frame)
    assert [layer.name for layer in layers] == ["Ethernet", "IPv4", "TCP", "data"]
    assert layers[0].start == 0 and layers[-1].end == len(frame)
    for left, right in itertools.pairwise(layers):
        assert left.end == right.start
    for layer in layers:
        for f in layer.fields:
            assert layer.start <= f.start and f.start + f.length <= layer.end, f
    tcp = {f.name: f for f in layers[2].fields}
    assert tcp["Sequence number"].value == "1001"
    assert frame[tcp["Sequence number"].start : tcp["Sequence number"].start + 4] == (
        1001
    ).to_bytes(4, "big")
    arp = dissect(CONVERSATION[0][1])
    assert [layer.name for layer in arp] == ["Ethernet", "ARP"]
    assert {f.name: f.value for f in arp[1].fields}["Target IP"] == str(B)


# --- in a real browser -------------------------------------------------------------------


@needs_chromium
def test_page_loads_without_console_errors_and_draws_every_segment(
    browser: Browser, tmp_path: Path
) -> None:
    path = tmp_path / "trace.html"
    write_html(conversation(), str(path))
    browser.open(path)
    assert browser.evaluate("document.body.getAttribute('data-ready')") == "1"
    assert browser.console_errors() == []
    assert [u for u in browser.network_requests() if not u.startswith("file:")] == []
    assert browser.evaluate("document.querySelectorAll('#sequence .arrow').length") == len(
        CONVERSATION
    )
    assert browser.evaluate("document.querySelectorAll('#sequence .arrow.lost').length") == 1
    assert browser.evaluate("document.querySelectorAll('#sequence .arrow line').length") == len(
        CONVERSATION
    )
    labels = browser.evaluate(
        "Array.from(document.querySelectorAll('#sequence .state-label'))"
        ".map(e => e.getAttribute('data-lane') + ' ' + e.textContent)"
    )
    for expected in (
        f"{A} SYN-SENT",
        f"{B} SYN-RECEIVED",
        f"{A} ESTABLISHED",
        f"{B} ESTABLISHED",
        f"{A} FIN-WAIT-1",
        f"{B} CLOSE-WAIT",
        f"{A} TIME-WAIT",
        f"{B} CLOSED",
    ):
        assert expected in labels
    assert browser.evaluate("document.querySelectorAll('#packets tbody tr').length") == len(
        CONVERSATION
    )
    visited = browser.evaluate("document.querySelectorAll('#state-diagram .edge.visited').length")
    assert visited >= 8


@needs_chromium
def test_selecting_a_packet_dissects_it_and_lights_its_bytes(
    browser: Browser, tmp_path: Path
) -> None:
    path = tmp_path / "trace.html"
    write_html(conversation(), str(path))
    browser.open(path)
    frame = CONVERSATION[6][1]  # B's "world!"
    browser.evaluate("document.querySelector('#packets tr[data-index=\"6\"]').click()")
    assert "Frame 7" in browser.evaluate("document.getElementById('detail-title').textContent")
    chips = browser.evaluate(
        "Array.from(document.querySelectorAll('#layers .layer-chip')).map(e => e.textContent)"
    )
    assert chips == ["[Ethernet]", "[IPv4]", "[TCP]", "[data]"]
    assert browser.evaluate("document.querySelectorAll('#hex .byte').length") == len(frame)
    hex_text = browser.evaluate(
        "Array.from(document.querySelectorAll('#hex .byte')).map(e => e.textContent).join('')"
    )
    assert hex_text == frame.hex()
    # Hovering a layer lights exactly its bytes.
    browser.evaluate(
        "document.querySelectorAll('#layers .layer-chip')[2]"
        ".dispatchEvent(new MouseEvent('mouseenter'))"
    )
    lit = browser.evaluate(
        "Array.from(document.querySelectorAll('#hex .byte')).map((e, i) => "
        "e.classList.contains('lit') ? i : -1).filter(i => i >= 0)"
    )
    assert lit == list(range(34, 54))
    assert (
        browser.evaluate("document.querySelector('#sequence .arrow.selected').dataset.index") == "6"
    )
    assert browser.console_errors() == []


@needs_chromium
def test_empty_trace_page_has_no_errors(browser: Browser, tmp_path: Path) -> None:
    path = tmp_path / "empty.html"
    write_html(TraceBuilder().build(), str(path))
    browser.open(path)
    assert browser.console_errors() == []
    assert browser.evaluate("document.querySelectorAll('.arrow').length") == 0


def test_a_long_trace_is_cut_and_says_so() -> None:
    page = render_html(conversation(), limit=5)
    assert page.count('<g class="arrow') == 5
    assert f"the first 5 of {len(CONVERSATION)} frames" in page
    blob = page.split('<script type="application/json" id="trace-data">')[1].split("</script>")[0]
    assert len(json.loads(blob)["packets"]) == 5


def test_frame_text_cannot_end_or_unbalance_the_data_script(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Captured bytes are the network's, not ours: whatever they say, the JSON blob must stay
    # inside its <script> element and decode to the same values.
    from synack.trace import html as trace_html
    from synack.trace.builder import TraceBuilder

    evil = [{"summary": "<!--<script>x</script>-->", "layers": ["</SCRIPT ", "<"]}]
    monkeypatch.setattr(trace_html, "_packet_data", lambda trace: evil)
    page = trace_html.render_html(TraceBuilder().build())
    start = page.index('<script type="application/json" id="trace-data">') + len(
        '<script type="application/json" id="trace-data">'
    )
    blob = page[start : page.index("</script>", start)]
    assert "<" not in blob
    assert json.loads(blob)["packets"] == evil


@needs_chromium
def test_no_label_overlaps_on_a_captured_conversation(browser: Browser, tmp_path: Path) -> None:
    path = tmp_path / "c.html"
    write_html(conversation(), str(path))
    browser.open(path)
    found = json.loads(browser.evaluate(OVERLAPS_JS))
    assert [row for row in found if row[0] != "count"] == []
