from __future__ import annotations

from synack.cli.main import main

raise SystemExit(main())
