"""Small sans-IO cores shared by every layer above: framing, rate limiting, the
discrete-event simulator clock.

Layer: core. Imports only synack.errors and the standard library.
"""

from __future__ import annotations
