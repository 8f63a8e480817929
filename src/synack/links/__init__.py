"""How frames move: the deterministic simulator (sim.py) and real links."""

from __future__ import annotations
