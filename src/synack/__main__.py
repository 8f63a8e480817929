from __future__ import annotations

from synack.cli import main

raise SystemExit(main())
