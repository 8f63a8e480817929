"""What a person can see: the trace model of a capture or a live run, drawn as a
terminal sequence diagram and an HTML page.

Layer: trace. Imports stack, tcp, wire, core, errors; never apps, adapters or cli.
"""

from __future__ import annotations
