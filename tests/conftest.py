from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Hypothesis: CI is a 2-core machine shared with other tests; keep examples
# deterministic (derandomize) so a failure reproduces, and never time-box.
settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")
