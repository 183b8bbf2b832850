"""cgroups for libcontainer: one Manager interface, a v1 (cgroupfs) and a v2 implementation.

    detect() -> "v1" | "v2"          a hybrid host (controllers on v1) is v1
    Resources.from_oci(dict)         validated OCI linux.resources (ConfigError names the field)
    new_manager(path, resources)     the Manager for this host's version

The kernel arithmetic (page rounding, unlimited keywords, shares -> weight, memory+swap) is in
`model`, shared with the property tests.

Manager (both versions): path; create() (validate, mkdir, set; nothing left on failure);
set(resources) / update(resources) (update merges with what was set before); apply(pid);
pids() (this cgroup) / all_pids() (with nested cgroups); freeze(); thaw(); freezer_state();
kill_all(sig=SIGKILL) (v2: cgroup.kill); oom_kill_count(); destroy() (idempotent, retries
EBUSY for 2 s, removes nested cgroups); exists(); dirs(); warnings (what v2 ignored).

stats() has one shape on both versions (v2 values converted to the same units):
    {"version": "v1"|"v2",
     "memory": {"usage", "max_usage", "limit" (-1 = unlimited on v2), "failcnt",
                "oom_kill", "stat": {memory.stat keys}},
     "cpu": {"usage_ns", "user_ns", "system_ns", "percpu_ns": [..] (v1 only),
             "nr_periods", "nr_throttled", "throttled_ns"},
     "pids": {"current", "limit" (-1 = max)}}

Errors: ConfigError (field, value, reason) for anything refused before a write, including host
checks; CgroupError (an OSError with .errno, .path, .value) when the kernel refuses a write,
e.g. EBUSY when v1 cannot lower memory below usage.
"""

from __future__ import annotations

from . import fs, model
from .base import Manager, normalize_path
from .fs import CgroupError
from .resources import DEFAULT_ALLOWED_DEVICES, DeviceRule, Resources
from .v1 import V1Manager

# The v2 module (and the pathlib it uses) is imported on first use: this host and every
# `skiff-runc run` on it use v1, and each import costs start-up time.
TYPE_CHECKING = False  # not `from typing import ...`: typing costs ~3 ms to import
if TYPE_CHECKING:
    from pathlib import Path

    from . import v2  # noqa: F401 - for type checkers; at run time via __getattr__
    from .v2 import V2Manager

__all__ = [
    "DEFAULT_ALLOWED_DEVICES",
    "CgroupError",
    "DeviceRule",
    "Manager",
    "Resources",
    "V1Manager",
    "V2Manager",
    "detect",
    "model",
    "new_manager",
    "normalize_path",
]


def __getattr__(name: str) -> object:
    """`cgroups.V2Manager` and `cgroups.v2`, imported when first asked for."""
    if name in ("V2Manager", "v2"):
        import importlib  # not `from . import v2`: that asks this hook for "v2" again

        v2 = importlib.import_module(".v2", __name__)
        return v2 if name == "v2" else v2.V2Manager
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def detect(mountinfo: str | None = None) -> str:
    """"v2" only when /sys/fs/cgroup itself is cgroup2 (pure unified); otherwise "v1".

    A hybrid host mounts a cgroup2 at /sys/fs/cgroup/unified but binds the controllers to v1
    hierarchies, so it is v1 for resource control.
    """
    for mnt, fstype, _ in fs.mountinfo(mountinfo):
        if mnt == fs.ROOT and fstype == "cgroup2":
            return "v2"
    return "v1"


def new_manager(cgroups_path: str, resources: Resources | None = None, *,
                version: str | None = None, root: str | Path | None = None) -> Manager:
    """The Manager for `cgroups_path` on this host (or `version`/`root`, for tests)."""
    version = version or detect()
    if version == "v2":
        from pathlib import Path

        from .v2 import V2Manager

        return V2Manager(cgroups_path, resources, root=Path(root) if root is not None else None)
    if version == "v1":
        return V1Manager(cgroups_path, resources, root=root)
    raise ValueError(f"unknown cgroup version {version!r}")
