"""synack: socket communication made real, visible and dependable."""

from __future__ import annotations

__version__ = "0.1.0"
