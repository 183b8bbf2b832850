"""The Manager interface both cgroup versions implement (runc's cgroups.Manager, trimmed)."""

from __future__ import annotations

import abc
import errno
import os

from ..errors import ConfigError
from .resources import THROTTLE_KEYS, Resources

TYPE_CHECKING = False  # not `from typing import ...`: typing costs ~3 ms to import
if TYPE_CHECKING:
    from pathlib import Path

    from .fs import StrPath

# A string (pathlib is not imported on the start path); a Path works too.
SYS_DEV_BLOCK: StrPath = "/sys/dev/block"
_SIGKILL = 9  # signal.SIGKILL; the signal module (-> enum) is not imported on the start path


def check_throttle_devices(resources: Resources) -> None:
    """blkio throttling takes whole disks only: an unknown device or a partition is ENODEV."""
    for kind, major, minor, _rate in resources.blkio_throttle:
        dev = os.path.join(SYS_DEV_BLOCK, f"{major}:{minor}")
        key = {v: k for k, v in THROTTLE_KEYS.items()}[kind]
        if not os.path.exists(dev):
            raise ConfigError(
                f"linux.resources.blockIO.{key}", f"{major}:{minor}", "no such block device"
            )
        if os.path.exists(os.path.join(dev, "partition")):
            raise ConfigError(
                f"linux.resources.blockIO.{key}", f"{major}:{minor}",
                "is a partition; throttling applies to whole disks",
            )


def normalize_path(cgroups_path: str) -> str:
    """OCI cgroupsPath -> a path below the hierarchy root ("/skiff/abc").

    A relative path is taken relative to the hierarchy root (runc would nest it below its own
    cgroup; Skiff's callers always pass absolute paths, and nesting below the caller's cgroup
    would make the container's placement depend on who started it).
    """
    if not isinstance(cgroups_path, str) or not cgroups_path.strip("/"):
        raise ConfigError("linux.cgroupsPath", cgroups_path, "must name a cgroup below the root")
    if ":" in cgroups_path:
        raise ConfigError(
            "linux.cgroupsPath", cgroups_path, "systemd slice:prefix:name paths are not supported"
        )
    parts = [p for p in cgroups_path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ConfigError("linux.cgroupsPath", cgroups_path, "must not contain . or ..")
    return "/" + "/".join(parts)


class Manager(abc.ABC):
    """One container's cgroup, in every controller the host has."""

    version: str = ""

    def __init__(self, cgroups_path: str, resources: Resources | None = None) -> None:
        self.path = normalize_path(cgroups_path)
        self.resources = resources or Resources()
        # Things the kernel cannot do here and that were skipped (e.g. a controller not enabled).
        self.warnings: list[str] = []

    # -- lifecycle ------------------------------------------------------------------------

    @abc.abstractmethod
    def validate(self, resources: Resources) -> None:
        """Host-dependent checks (CPUs present, files supported); raise ConfigError. No writes."""

    @abc.abstractmethod
    def _create_dirs(self) -> None: ...

    def create(self) -> None:
        """Make the cgroup and apply the resources; on any failure leave nothing behind."""
        self.validate(self.resources)
        try:
            self._create_dirs()
            self.set(self.resources)
        except BaseException:
            try:
                self.destroy()
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            raise

    @abc.abstractmethod
    def set(self, resources: Resources) -> None:
        """Apply resources (first time or an update of a running cgroup)."""

    def update(self, resources: Resources) -> None:
        """Apply the fields `resources` sets, keeping the others (docker update)."""
        merged = self.resources.merged(resources)
        self.set(resources)
        self.resources = merged

    @abc.abstractmethod
    def apply(self, pid: int) -> None:
        """Move a process (its whole thread group) into the cgroup."""

    @abc.abstractmethod
    def pids(self) -> list[int]: ...

    @abc.abstractmethod
    def freeze(self) -> None: ...

    @abc.abstractmethod
    def thaw(self) -> None: ...

    @abc.abstractmethod
    def stats(self) -> dict: ...

    @abc.abstractmethod
    def oom_kill_count(self) -> int: ...

    @abc.abstractmethod
    def destroy(self) -> None:
        """Remove the cgroup everywhere; idempotent; the caller kills the processes first."""

    @abc.abstractmethod
    def exists(self) -> bool: ...

    @abc.abstractmethod
    def dirs(self) -> list[Path]:
        """Every directory this cgroup has (one per v1 hierarchy, one on v2)."""

    def procs_dir(self) -> Path | None:
        """The directory whose cgroup.procs lists the container's processes."""
        dirs = self.dirs()
        return dirs[0] if dirs else None

    def _procs_top(self) -> str | None:
        """procs_dir() as a string (V1Manager answers without building a Path)."""
        d = self.procs_dir()
        return None if d is None else os.fspath(d)

    def all_pids(self) -> list[int]:
        """Processes in the cgroup and in every cgroup below it (a container may nest)."""
        top = self._procs_top()
        out: list[int] = []
        if top is None or not os.path.exists(top):
            return out
        for d, _subdirs, files in os.walk(top):
            if "cgroup.procs" in files:
                try:
                    with open(os.path.join(d, "cgroup.procs"), encoding="utf-8") as f:
                        out.extend(int(x) for x in f.read().split())
                except FileNotFoundError:
                    continue
        return out

    def kill_all(self, sig: int = _SIGKILL) -> None:
        """Signal every process in the cgroup (frozen first so none can fork away)."""
        frozen = False
        try:
            self.freeze()
            frozen = True
        except Exception:  # noqa: BLE001 - no freezer: signal anyway
            pass
        try:
            for pid in self.all_pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
                except OSError as e:
                    if e.errno != errno.ESRCH:
                        raise
        finally:
            if frozen:
                self.thaw()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"
