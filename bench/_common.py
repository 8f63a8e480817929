"""What every bench shares: the Figure it reports, rounds statistics, the environment.

Not a bench itself (run_all.py skips files whose name starts with ``_``). A bench
plugs into ``bench/run_all.py`` by defining, at module level::

    def figures(quick: bool) -> list[Figure]: ...

run_all.py runs each such bench in its own process (``python bench/_common.py
NAME [--quick]``), reads the figures back as JSON and writes docs/performance.md.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


@dataclass(slots=True)
class Figure:
    """One line of docs/performance.md: synack's figure against one anchor, same run.

    ``ratios`` holds the per-round ratio (synack / anchor, higher is better for
    synack) so the page can print the median with its min and max.
    """

    bench: str  # the bench's file name, without .py
    name: str  # what is measured, e.g. "UDP time service, 64 in flight, asyncio"
    value: float  # synack's median
    unit: str
    anchor: str  # what it is compared with
    anchor_value: float  # the anchor's median, same unit
    ratios: list[float] = field(default_factory=list)
    goal: float | None = None  # ratio the issue asks for, if any
    command: str = ""
    note: str = ""  # e.g. "CPU 12.3 us per request"

    @property
    def ratio(self) -> float:
        if self.ratios:
            return statistics.median(self.ratios)
        return self.value / self.anchor_value if self.anchor_value else float("nan")


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of interleaved rounds."""
    return statistics.median(values), min(values), max(values)


def loadavg() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def environment() -> dict[str, str]:
    """What can move a figure and should be quoted beside it."""
    env = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}",
        "load average (1/5/15 min)": loadavg(),
    }
    try:
        import uvloop

        env["uvloop"] = uvloop.__version__
    except ImportError:
        env["uvloop"] = "not installed"
    # glibc's malloc thresholds decide whether asyncio's 256 KiB datagram buffer
    # is mmap'd per call (system calls and page faults per datagram) or reused.
    malloc = {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    env["malloc settings"] = ", ".join(f"{k}={v}" for k, v in sorted(malloc.items())) or (
        "glibc defaults (no MALLOC_* or GLIBC_TUNABLES set)"
    )
    env["gc thresholds"] = " ".join(str(t) for t in __import__("gc").get_threshold())
    return env


def _run_one(name: str, quick: bool) -> None:
    """Child side of run_all.py: import bench NAME, print its figures as JSON."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    module = importlib.import_module(name)
    figs = module.figures(quick)
    print("FIGURES-JSON " + json.dumps([asdict(f) for f in figs]), flush=True)


if __name__ == "__main__":
    _run_one(sys.argv[1], "--quick" in sys.argv[2:])
