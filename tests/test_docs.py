"""The README and docs/ cite only what a clone of the repository has."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Written by `python bench/run_all.py`; it exists, and is checked like the others.
GENERATED: set[str] = set()
CODE = [*sorted((ROOT / "src").rglob("*.py")), *sorted((ROOT / "tests").rglob("*.py"))]


def test_pages_and_code_cite_the_contract_in_the_repo() -> None:
    for path in [*PAGES, *CODE]:
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text, path
        assert "PROTOCOLS.md" not in text, path
    assert (ROOT / "docs" / "protocol.md").is_file()


def test_relative_links_of_the_pages_resolve() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:") or target.endswith(tuple(GENERATED)):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
    for page in PAGES:
        for target in re.findall(
            r"`(docs/[\w./-]+\.(?:md|png))`", page.read_text(encoding="utf-8")
        ):
            if not target.endswith(tuple(GENERATED)):
                assert (ROOT / target).exists(), f"{page.name} names missing {target}"
