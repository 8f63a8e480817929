"""Render a PNG screenshot of an HTML page (a trace page) in headless Chromium, for people to look at.

    .venv/bin/python tools/screenshot.py PAGE.html OUT.png [--width 1400] [--height 1000] [--viewport]
    .venv/bin/python tools/screenshot.py --pcap FILE.pcap OUT.png    (trace the pcap first)

It prints any console error the page logged; exit status 1 when there was one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from synack.trace.browser import Browser, find_chromium


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", help="an HTML file, or a pcap with --pcap")
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument(
        "--pcap", action="store_true", help="PAGE is a pcap: trace it to HTML first"
    )
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--viewport", action="store_true", help="only the first screenful")
    parser.add_argument("--click", type=int, default=None, help="select frame N (1-based) first")
    args = parser.parse_args(argv)
    if find_chromium() is None:
        print("no chromium on PATH", file=sys.stderr)
        return 2
    page = Path(args.page)
    if args.pcap:
        from synack.cli.trace import trace_pcap
        from synack.trace.html import write_html

        html = Path(tempfile.mkdtemp()) / (page.stem + ".html")
        write_html(trace_pcap(str(page)), str(html), title=page.name)
        page = html
    with Browser() as browser:
        browser.open(page, args.width, args.height)
        if args.click is not None:
            browser.evaluate(
                f"document.querySelector('#packets tr[data-index=\"{args.click - 1}\"]').click()"
            )
        browser.screenshot(args.out, full_page=not args.viewport)
        errors = browser.console_errors()
    for error in errors:
        print(f"console error: {error}", file=sys.stderr)
    print(f"wrote {args.out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
