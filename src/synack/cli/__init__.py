"""The ``synack`` command line: the one place that wires apps, adapters, links
and the stack together (see main.py for the assembly).

Layer: cli. May import every other package; nothing imports it.
"""

from __future__ import annotations
