from __future__ import annotations

from collections.abc import Iterator

import pytest

from synack.trace.browser import Browser, find_chromium

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="needs chromium (Debian package 'chromium', installed by .ci/run)",
)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for all the trace tests (about a second to start)."""
    with Browser(timeout=60) as b:
        yield b


# Every text of the two diagrams against every other text and every state box
# (a box's own name excepted), by the browser's own bounding boxes.
OVERLAPS_JS = r"""
(() => {
  const out = [];
  const box = (el) => {
    const b = el.getBoundingClientRect();
    return {x0: b.left + 0.5, y0: b.top + 0.5, x1: b.right - 0.5, y1: b.bottom - 0.5};
  };
  const hit = (a, b) => a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
  const name = (el) => (el.textContent || el.tagName).slice(0, 40);
  for (const id of ['sequence', 'state-diagram']) {
    const svg = document.getElementById(id);
    const texts = [...svg.querySelectorAll('text')].filter(t => t.textContent.trim());
    const rects = [...svg.querySelectorAll('rect')];
    const tb = texts.map(box), rb = rects.map(box);
    for (let i = 0; i < texts.length; i++) {
      for (let j = i + 1; j < texts.length; j++) {
        if (hit(tb[i], tb[j])) out.push([id, name(texts[i]), name(texts[j])]);
      }
      for (let j = 0; j < rects.length; j++) {
        if (rects[j].parentNode === texts[i].parentNode) continue;
        if (hit(tb[i], rb[j])) out.push([id, name(texts[i]), 'box ' + name(rects[j].parentNode)]);
      }
    }
    out.push(['count', id, texts.length]);
  }
  return JSON.stringify(out);
})()
"""
