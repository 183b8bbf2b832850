"""cgroups for libcontainer: one Manager interface, a v1 (cgroupfs) and a v2 implementation.

    detect() -> "v1" | "v2"          a hybrid host (controllers on v1) is v1
    Resources.from_oci(dict)         validated OCI linux.resources (ConfigError names the field)
    new_manager(path, resources)     the Manager for this host's version

The kernel arithmetic (page rounding, unlimited keywords, shares -> weight, memory+swap) is in
`model`, shared with the property tests.
"""

from __future__ import annotations

from pathlib import Path

from . import fs, model
from .base import Manager, normalize_path
from .fs import CgroupError
from .resources import DEFAULT_ALLOWED_DEVICES, DeviceRule, Resources
from .v1 import V1Manager
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


def detect(mountinfo: str | None = None) -> str:
    """"v2" only when /sys/fs/cgroup itself is cgroup2 (pure unified); otherwise "v1".

    A hybrid host mounts a cgroup2 at /sys/fs/cgroup/unified but binds the controllers to v1
    hierarchies, so it is v1 for resource control.
    """
    for mnt, fstype, _ in fs.mountinfo(mountinfo):
        if mnt == str(fs.CGROUP_ROOT) and fstype == "cgroup2":
            return "v2"
    return "v1"


def new_manager(cgroups_path: str, resources: Resources | None = None, *,
                version: str | None = None, root: str | Path | None = None) -> Manager:
    """The Manager for `cgroups_path` on this host (or `version`/`root`, for tests)."""
    version = version or detect()
    r = Path(root) if root is not None else None
    if version == "v2":
        return V2Manager(cgroups_path, resources, root=r)
    if version == "v1":
        return V1Manager(cgroups_path, resources, root=r)
    raise ValueError(f"unknown cgroup version {version!r}")
