"""Hypothesis profiles for the property suites (`--hypothesis-profile ci|dev|soak`).

The example database lives outside the repository (SKIFF_HYPOTHESIS_DB, default
/var/tmp/skiff-hypothesis) so that failing examples replay on the next run on this machine.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.database import DirectoryBasedExampleDatabase

_db = DirectoryBasedExampleDatabase(
    os.environ.get("SKIFF_HYPOTHESIS_DB", "/var/tmp/skiff-hypothesis")
)
_common = dict(
    database=_db,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("ci", max_examples=60, print_blob=True, derandomize=False, **_common)
settings.register_profile("dev", max_examples=20, verbosity=Verbosity.verbose, **_common)
settings.register_profile(
    "soak", max_examples=100_000, phases=list(Phase), print_blob=True, **_common
)
settings.load_profile(os.environ.get("SKIFF_HYPOTHESIS_PROFILE", "ci"))
