"""synack: socket communication made real, visible and dependable.

The package is layered (docs/architecture.md); this top module holds only the
version.

Layer: the package root. Imports nothing.
"""

from __future__ import annotations

__version__ = "0.1.0"
