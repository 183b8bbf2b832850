"""Hypothesis profiles for the property suites (`--hypothesis-profile ci|dev|soak`), and the
kernel-behaviour report every run writes.

- ci: bounded examples, no deadline, prints the reproduce blob of a failure.
- dev: fewer examples, verbose.
- vm: ci's checks with fewer examples, for a VM under emulation (TCG, ~4x slower), where
  the ci profile would not fit in CI's time (`tox -e system` picks it without KVM).
- soak: hours on a kernel under test (SKIFF_SOAK_EXAMPLES, default 100000 per test).

The example database lives outside the repository (SKIFF_HYPOTHESIS_DB, default
/var/tmp/skiff-hypothesis) so that a failing example replays on the next run on this machine;
`print_blob` prints `@reproduce_failure(...)` to replay it anywhere. The report goes to
SKIFF_RESULTS_DIR (default ./results) as kernel-behaviour-<kernel>-cgroup<v>.{json,md}.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.database import DirectoryBasedExampleDatabase

_db = DirectoryBasedExampleDatabase(
    os.environ.get("SKIFF_HYPOTHESIS_DB", "/var/tmp/skiff-hypothesis")
)
_common = dict(
    database=_db,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
    ],
)
settings.register_profile("ci", max_examples=100, print_blob=True, **_common)
settings.register_profile("dev", max_examples=25, verbosity=Verbosity.verbose, **_common)
settings.register_profile("vm", max_examples=25, print_blob=True, **_common)
settings.register_profile(
    "soak",
    max_examples=int(os.environ.get("SKIFF_SOAK_EXAMPLES", "100000")),
    phases=list(Phase),
    print_blob=True,
    **_common,
)
settings.load_profile(os.environ.get("SKIFF_HYPOTHESIS_PROFILE", "ci"))

_REPORT = None


def pytest_configure(config: pytest.Config) -> None:
    # `--hypothesis-profile` is applied by Hypothesis' plugin after conftest import; remember
    # it for the report and for the enforcement tests' example counts.
    name = config.getoption("hypothesis_profile", default=None)
    if name:
        os.environ["SKIFF_HYPOTHESIS_PROFILE"] = name


@pytest.fixture(scope="session")
def kernel_report(require_root):
    global _REPORT
    if _REPORT is None:
        from engine.libcontainer import cgroups
        from tests.property.cgsupport import profile_name
        from tests.property.kernel_report import Report

        _REPORT = Report(cgroups.detect(), profile_name())
    return _REPORT


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _REPORT is None or not _REPORT.families:
        return
    from tests.property.cgsupport import remove_prefix
    from tests.property.kernel_report import results_dir

    remove_prefix()
    jp, mp = _REPORT.write(results_dir())
    data = _REPORT.to_dict()
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(
            f"kernel-behaviour report: {jp} and {mp} ({data['examples']} examples, "
            f"{data['examples_per_second']}/s, {data['distinct_behaviours']} distinct behaviours)"
        )
