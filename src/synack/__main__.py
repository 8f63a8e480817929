"""``python -m synack``: the same as the ``synack`` command.

Layer: cli. Imports synack.cli.main.
"""

from __future__ import annotations

from synack.cli.main import main

raise SystemExit(main())
