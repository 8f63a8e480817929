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
