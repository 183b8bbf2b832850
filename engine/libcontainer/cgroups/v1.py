"""cgroup v1 (one hierarchy per controller, cgroupfs files) — this dev machine's layout.

Directories are kept as strings (os.path): this manager is on every `skiff-runc run`'s path
and importing pathlib costs ~5 ms. The public attributes (mounts, paths, dirs(),
procs_dir(), v1_mounts()) still give Path objects, built on access.
"""

from __future__ import annotations

import errno
import os
from os.path import dirname, exists, join

from ..errors import ConfigError
from . import base, fs, model
from .base import Manager
from .resources import DEFAULT_ALLOWED_DEVICES, DeviceRule, Resources, emulate_devices

TYPE_CHECKING = False  # not `from typing import ...`: typing costs ~3 ms to import
if TYPE_CHECKING:
    from pathlib import Path

    from .fs import StrPath

# The controllers a container joins, in the order runc joins them (cpuset first: its files
# must be filled before any task can enter).
CONTROLLERS = ("cpuset", "cpu", "cpuacct", "memory", "pids", "blkio", "devices", "freezer",
               "hugetlb")


V1_THROTTLE = {
    "rbps": "blkio.throttle.read_bps_device",
    "wbps": "blkio.throttle.write_bps_device",
    "riops": "blkio.throttle.read_iops_device",
    "wiops": "blkio.throttle.write_iops_device",
}


def v1_mounts(root: StrPath | None = None, mountinfo: str | None = None) -> dict[str, Path]:
    """controller -> hierarchy mount point. With `root`, a fake tree: root/<controller>.

    Co-mounted controllers (cpu,cpuacct on many distributions) map to the same directory.
    """
    from pathlib import Path

    return {c: Path(m) for c, m in _mounts(root, mountinfo).items()}


def _mounts(root: StrPath | None = None, mountinfo: str | None = None) -> dict[str, str]:
    """v1_mounts() with string paths."""
    if root is not None:
        r = os.fspath(root)
        return {c: join(r, c) for c in CONTROLLERS if os.path.isdir(join(r, c))}
    out: dict[str, str] = {}
    for mnt, fstype, opts in fs.mountinfo(mountinfo):
        if fstype != "cgroup":
            continue
        for opt in opts.split(","):
            if opt in CONTROLLERS and opt not in out:
                out[opt] = mnt
    return out


def _parts_below(target: str, level: str) -> list[str]:
    """The components of `target` below `level` (Path.relative_to(...).parts, lexically)."""
    lv = level.rstrip("/")
    if target == lv:
        return []
    if not target.startswith(lv + "/"):
        raise ValueError(f"{target!r} is not below {level!r}")
    return [p for p in target[len(lv) + 1:].split("/") if p]


class V1Manager(Manager):
    version = "v1"

    def __init__(self, cgroups_path: str, resources: Resources | None = None, *,
                 root: StrPath | None = None) -> None:
        super().__init__(cgroups_path, resources)
        # controller -> hierarchy mount / this cgroup's directory, as strings
        self._mounts = _mounts(root)
        rel = self.path.lstrip("/")
        self._paths = {c: join(m, rel) for c, m in self._mounts.items()}

    @property
    def mounts(self) -> dict[str, Path]:
        """controller -> hierarchy mount point."""
        from pathlib import Path

        return {c: Path(m) for c, m in self._mounts.items()}

    @mounts.setter
    def mounts(self, value: dict[str, StrPath]) -> None:
        self._mounts = {c: os.fspath(m) for c, m in value.items()}

    @property
    def paths(self) -> dict[str, Path]:
        """controller -> this cgroup's directory in that hierarchy."""
        from pathlib import Path

        return {c: Path(p) for c, p in self._paths.items()}

    @paths.setter
    def paths(self, value: dict[str, StrPath]) -> None:
        self._paths = {c: os.fspath(p) for c, p in value.items()}

    # -- helpers ----------------------------------------------------------------------------

    def _dirs(self) -> list[str]:
        seen: list[str] = []
        for p in self._paths.values():  # co-mounted controllers (cpu,cpuacct) share a dir
            if p not in seen:
                seen.append(p)
        return seen

    def dirs(self) -> list[Path]:
        from pathlib import Path

        return [Path(d) for d in self._dirs()]

    def _file(self, ctrl: str, name: str) -> str:
        return join(self._paths[ctrl], name)

    def _has(self, ctrl: str, name: str) -> bool | None:
        """Does this cgroup have interface file `name`? None when it cannot be known yet.

        Some files exist only below the root (blkio.bfq.weight), so the root proves nothing;
        the cgroup itself or an existing non-root ancestor does. set() re-checks after mkdir.
        """
        if ctrl not in self._paths:
            return False
        p = self._paths[ctrl]
        mount = self._mounts[ctrl]
        while p != mount:
            if exists(p):
                return exists(join(p, name))
            p = dirname(p)
        return True if exists(join(mount, name)) else None

    def _write(self, ctrl: str, name: str, value: str) -> None:
        fs.write(self._file(ctrl, name), value)

    def _nearest_existing(self, ctrl: str) -> str:
        p = self._paths[ctrl]
        while not exists(p) and p != self._mounts[ctrl]:
            p = dirname(p)
        return p

    # -- Manager ----------------------------------------------------------------------------

    def validate(self, resources: Resources) -> None:
        r = resources
        if r.unified:
            raise ConfigError(
                "linux.resources.unified", r.unified, "needs cgroup v2; this host is cgroup v1"
            )
        needs = {
            "memory": r.memory_limit is not None or r.memory_reservation is not None
            or r.memory_swap is not None or r.memory_swappiness is not None
            or bool(r.memory_disable_oom_killer),
            "cpu": r.cpu_shares is not None or r.cpu_quota is not None
            or r.cpu_period is not None or r.cpu_burst is not None,
            "cpuset": r.cpuset_cpus is not None or r.cpuset_mems is not None,
            "pids": r.pids_limit is not None,
            "blkio": r.blkio_weight is not None or bool(r.blkio_throttle),
            "devices": bool(r.devices),
            "hugetlb": bool(r.hugepage_limits),
        }
        for ctrl, needed in needs.items():
            if needed and ctrl not in self._paths:
                raise ConfigError(
                    f"linux.resources ({ctrl})", self.path,
                    f"the {ctrl} cgroup controller is not mounted on this host",
                )
        if r.memory_swap not in (None, -1) and self._has(
            "memory", "memory.memsw.limit_in_bytes"
        ) is False:
            raise ConfigError(
                "linux.resources.memory.swap", r.memory_swap,
                "swap accounting is disabled on this host (no memory.memsw.limit_in_bytes)",
            )
        base.check_throttle_devices(r)
        self._check_memsw_state(r)
        if r.cpu_burst is not None and self._has("cpu", "cpu.cfs_burst_us") is False:
            raise ConfigError("linux.resources.cpu.burst", r.cpu_burst, "not supported here")
        if r.blkio_weight is not None and self._blkio_weight_file() is None:
            raise ConfigError(
                "linux.resources.blockIO.weight", r.blkio_weight,
                "this kernel has no blkio weight (no blkio.weight or blkio.bfq.weight)",
            )
        for key, value in (("cpus", r.cpuset_cpus), ("mems", r.cpuset_mems)):
            if value is None:
                continue
            parent = self._nearest_existing("cpuset")
            if parent == self._paths["cpuset"]:
                parent = dirname(parent)
            avail = _effective(parent, key)
            while not avail and parent != self._mounts["cpuset"]:
                # an empty intermediate level gets its parent's set on create
                parent = dirname(parent)
                avail = _effective(parent, key)
            extra = model.parse_cpu_list(value) - avail
            if extra:
                raise ConfigError(
                    f"linux.resources.cpu.{key}", value,
                    f"{'CPUs' if key == 'cpus' else 'memory nodes'} "
                    f"{model.format_cpu_list(extra)} not available "
                    f"(parent has {model.format_cpu_list(avail) or 'none'})",
                )

    def _check_memsw_state(self, r: Resources) -> None:
        """An update that raises memory above the current memory+swap without setting swap
        would be EINVAL half-way; refuse it first (docker refuses it the same way)."""
        if (r.memory_limit in (None, -1) or r.memory_swap is not None
                or "memory" not in self._paths):
            return
        f = join(self._paths["memory"], "memory.memsw.limit_in_bytes")
        if not exists(f):
            return
        memsw = fs.read_int(f)
        if memsw != model.V1_MEMORY_UNLIMITED and model.memory_readback_v1(
            r.memory_limit
        ) > memsw:
            raise ConfigError(
                "linux.resources.memory.limit", r.memory_limit,
                f"above the current memory+swap limit ({memsw}); "
                "set linux.resources.memory.swap in the same update",
            )

    def _blkio_weight_file(self) -> str | None:
        """The weight file of the I/O scheduler ("" = unknown until the cgroup exists)."""
        unknown = False
        for name in ("blkio.bfq.weight", "blkio.weight"):
            has = self._has("blkio", name)
            if has:
                return name
            unknown = unknown or has is None
        return "" if unknown else None

    def _create_dirs(self) -> None:
        for ctrl in CONTROLLERS:
            if ctrl not in self._paths:
                continue
            target = self._paths[ctrl]
            if ctrl == "cpuset":
                self._mkdir_cpuset(target)
            else:
                level = self._mounts[ctrl]
                for part in _parts_below(target, level):
                    level = join(level, part)
                    fs.mkdir(level)

    def _mkdir_cpuset(self, target: str) -> None:
        """Create each level and copy the parent's cpus/mems into empty ones (else no task fits)."""
        mount = self._mounts["cpuset"]
        level = mount
        for part in _parts_below(target, mount):
            parent, level = level, join(level, part)
            fs.mkdir(level)
            for key in ("cpus", "mems"):
                f = join(level, f"cpuset.{key}")
                cur = fs.read(f) if exists(f) else ""
                if not cur:
                    fs.write(f, fs.read(join(parent, f"cpuset.{key}")))

    def set(self, resources: Resources) -> None:
        r = resources
        self.validate(r)
        if "cpuset" in self._paths:
            if r.cpuset_cpus is not None:
                self._write("cpuset", "cpuset.cpus", r.cpuset_cpus)
            if r.cpuset_mems is not None:
                self._write("cpuset", "cpuset.mems", r.cpuset_mems)
        if r.memory_limit is not None or r.memory_swap is not None:
            self._set_memory(r.memory_limit, r.memory_swap)
        if r.memory_reservation is not None:
            self._write("memory", "memory.soft_limit_in_bytes", str(r.memory_reservation))
        if r.memory_swappiness is not None:
            self._write("memory", "memory.swappiness", str(r.memory_swappiness))
        if r.memory_disable_oom_killer:
            self._write("memory", "memory.oom_control", "1")
        if r.cpu_shares is not None:
            self._write("cpu", "cpu.shares", str(r.cpu_shares))
        if r.cpu_period is not None or r.cpu_quota is not None:
            self._set_cfs(r.cpu_quota, r.cpu_period)
        if r.cpu_burst is not None:
            self._write("cpu", "cpu.cfs_burst_us", str(r.cpu_burst))
        if r.pids_limit is not None:
            self._write("pids", "pids.max", model.pids_value(r.pids_limit))
        if r.blkio_weight is not None:
            name = self._blkio_weight_file()
            assert name, "validate() checked it with the cgroup present"
            self._write("blkio", name, str(r.blkio_weight))
        for kind, major, minor, rate in r.blkio_throttle:
            # rate 0 removes the device's rule (the kernel's own convention)
            self._write("blkio", V1_THROTTLE[kind], f"{major}:{minor} {rate}")
        for i, (size, limit) in enumerate(r.hugepage_limits):
            name = f"hugetlb.{size}.limit_in_bytes"
            if not exists(self._file("hugetlb", name)):
                raise ConfigError(
                    f"linux.resources.hugepageLimits[{i}].pageSize", size,
                    "this kernel has no huge pages of that size",
                )
            self._write("hugetlb", name, str(limit))
        if r.devices:
            self._set_devices(r.devices + DEFAULT_ALLOWED_DEVICES)

    def _set_memory(self, memory: int | None, swap: int | None) -> None:
        has_memsw = exists(join(self._paths["memory"], "memory.memsw.limit_in_bytes"))
        if memory == -1 and swap is None and has_memsw:
            swap = -1  # unlimited memory means unlimited memory+swap (runc)
        if not has_memsw:
            swap = None
        current = _int_or(
            self._file("memory", "memory.limit_in_bytes"), model.V1_MEMORY_UNLIMITED
        )
        values = {"memory.limit_in_bytes": memory, "memory.memsw.limit_in_bytes": swap}
        for name in model.memsw_write_order(current, memory, swap):
            value = values[name]
            try:
                self._write("memory", name, str(value))
            except fs.CgroupError as e:
                raise self._memory_error(name, value, e) from None

    def _memory_error(self, name: str, value: object, e: fs.CgroupError) -> fs.CgroupError:
        if e.errno_ == errno.EBUSY:
            usage = fs.read(self._file("memory", "memory.usage_in_bytes"))
            return fs.CgroupError(
                f"cannot set {name} to {value}: the cgroup uses {usage} bytes and cgroup v1 "
                "cannot reclaim below that (EBUSY); stop processes or raise the limit",
                path=e.path, value=e.value, err=e.errno_,
            )
        if e.errno_ == errno.EINVAL and name.startswith("memory."):
            memsw = fs.read(self._file("memory", "memory.memsw.limit_in_bytes"))
            return fs.CgroupError(
                f"cannot set {name} to {value}: memory must stay <= memory+swap ({memsw}); "
                "set linux.resources.memory.swap together with the limit",
                path=e.path, value=e.value, err=e.errno_,
            )
        return e

    def _set_cfs(self, quota: int | None, period: int | None) -> None:
        """Write period and quota; if the first order is refused (ratio check against the
        parent or the old pair), try the other order, as runc does."""
        writes = []
        if period is not None:
            writes.append(("cpu.cfs_period_us", str(period)))
        if quota is not None:
            writes.append(("cpu.cfs_quota_us", str(quota)))
        try:
            for name, value in writes:
                self._write("cpu", name, value)
        except fs.CgroupError:
            if len(writes) < 2:
                raise
            for name, value in reversed(writes):
                self._write("cpu", name, value)

    def _set_devices(self, rules: tuple[DeviceRule, ...]) -> None:
        """Make the device list equal to what the rules describe.

        When both the current and the target list are default-deny (the usual container),
        only the differing exceptions are written, so a running container never sees a
        moment where /dev/null is denied. Otherwise the rules are replayed in order: the
        kernel's own semantics (deny "a" resets to default-deny, allow "a" to default-allow)
        make sequential writes exact.
        """
        if not rules or rules[0].type != "a":
            # default-deny, as runc and the v2 eBPF program (devices_bpf) decide: a list that
            # does not start with "a" means the same on both cgroup versions
            rules = (DeviceRule(False),) + rules
        want_allow, want = emulate_devices(rules)
        listing = self._file("devices", "devices.list")
        current = fs.read(listing).splitlines() if exists(listing) else ["a *:* rwm"]
        if not want_allow and current and "a *:* rwm" not in current:
            for line in current:
                if line not in want:
                    self._write("devices", "devices.deny", line)
            for line in want:
                if line not in current:
                    self._write("devices", "devices.allow", line)
            return
        for rule in rules:
            self._write("devices", "devices.allow" if rule.allow else "devices.deny",
                        rule.v1_line())

    def apply(self, pid: int) -> None:
        for d in self._dirs():
            fs.write(join(d, "cgroup.procs"), str(pid))

    def _procs_top(self) -> str | None:
        for ctrl in ("pids", "freezer", "memory", "cpu"):
            if ctrl in self._paths:
                return self._paths[ctrl]
        return None

    def procs_dir(self) -> Path | None:
        from pathlib import Path

        top = self._procs_top()
        return None if top is None else Path(top)

    def pids(self) -> list[int]:
        for ctrl in ("pids", "memory", "freezer", "cpu"):
            if ctrl in self._paths:
                f = self._file(ctrl, "cgroup.procs")
                try:
                    return [int(x) for x in fs.read(f).split()]
                except FileNotFoundError:
                    return []
        return []

    def freeze(self) -> None:
        self._require("freezer")
        self._write("freezer", "freezer.state", "FROZEN")
        fs.poll(lambda: fs.read(self._file("freezer", "freezer.state")) == "FROZEN",
                10.0, f"{self.path} to freeze")

    def thaw(self) -> None:
        self._require("freezer")
        self._write("freezer", "freezer.state", "THAWED")
        fs.poll(lambda: fs.read(self._file("freezer", "freezer.state")) == "THAWED",
                10.0, f"{self.path} to thaw")

    def freezer_state(self) -> str:
        return fs.read(self._file("freezer", "freezer.state")).lower()

    def _require(self, ctrl: str) -> None:
        if ctrl not in self._paths:
            raise fs.CgroupError(f"the {ctrl} controller is not mounted")

    def oom_kill_count(self) -> int:
        if "memory" not in self._paths:
            return 0
        return fs.read_keyed(self._file("memory", "memory.oom_control")).get("oom_kill", 0)

    def stats(self) -> dict:
        out: dict = {"version": "v1"}
        if "memory" in self._paths:
            m = self._paths["memory"]
            out["memory"] = {
                "usage": _int_or(join(m, "memory.usage_in_bytes")),
                "max_usage": _int_or(join(m, "memory.max_usage_in_bytes")),
                "limit": _int_or(join(m, "memory.limit_in_bytes")),
                "failcnt": _int_or(join(m, "memory.failcnt")),
                "oom_kill": self.oom_kill_count(),
                "stat": fs.read_keyed(join(m, "memory.stat")),
            }
        cpu: dict = {}
        if "cpuacct" in self._paths:
            a = self._paths["cpuacct"]
            cpu["usage_ns"] = _int_or(join(a, "cpuacct.usage"))
            cpu["user_ns"] = _int_or(join(a, "cpuacct.usage_user"))
            cpu["system_ns"] = _int_or(join(a, "cpuacct.usage_sys"))
            try:
                percpu = fs.read(join(a, "cpuacct.usage_percpu"))
                cpu["percpu_ns"] = [int(x) for x in percpu.split()]
            except (FileNotFoundError, ValueError):
                cpu["percpu_ns"] = []
        if "cpu" in self._paths:
            st = fs.read_keyed(join(self._paths["cpu"], "cpu.stat"))
            cpu["nr_periods"] = st.get("nr_periods", 0)
            cpu["nr_throttled"] = st.get("nr_throttled", 0)
            cpu["throttled_ns"] = st.get("throttled_time", 0)
        out["cpu"] = cpu
        if "pids" in self._paths:
            p = self._paths["pids"]
            out["pids"] = {
                "current": _int_or(join(p, "pids.current")),
                "limit": _max_or_int(join(p, "pids.max")),
            }
        if "blkio" in self._paths:
            out["io"] = blkio_stats(self._paths["blkio"])
        return out

    def destroy(self) -> None:
        errors = []
        for d in self._dirs():
            try:
                fs.rmdir_tree(d)
            except fs.CgroupError as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def exists(self) -> bool:
        return any(exists(d) for d in self._dirs())


# Where v1 counts I/O, in runc's order of preference: the CFQ files (gone since 5.0), BFQ's
# (non-empty only for devices that use the bfq scheduler), then the throttle layer's, which
# sees every bio of the cgroup whatever the scheduler.
BLKIO_STAT_PREFIXES = ("blkio.", "blkio.bfq.", "blkio.throttle.")


def parse_blkio_v1(text: str) -> list[dict]:
    """`MAJ:MIN Op value` lines (blkio.*io_service_bytes_recursive, *io_serviced_recursive)
    -> docker's BlkioStatEntry dicts, Op as the kernel spells it ("Read", "Write", "Sync",
    "Async", "Discard", "Total"), which is what docker reports on v1. The final device-less
    `Total N` line is skipped, as runc does."""
    out: list[dict] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        try:
            out.append({"major": int(major), "minor": int(minor), "op": parts[1],
                        "value": int(parts[2])})
        except ValueError:
            continue
    return out


def blkio_stats(d: str) -> dict[str, list[dict]]:
    """{"service_bytes": [...], "serviced": [...]} from the first v1 source that has entries
    (an empty list when none has: a cgroup that never did block I/O)."""
    for prefix in BLKIO_STAT_PREFIXES:
        try:
            sb = parse_blkio_v1(fs.read(join(d, prefix + "io_service_bytes_recursive")))
        except OSError:
            continue
        if not sb:
            continue
        try:
            sv = parse_blkio_v1(fs.read(join(d, prefix + "io_serviced_recursive")))
        except OSError:
            sv = []
        return {"service_bytes": sb, "serviced": sv}
    return {"service_bytes": [], "serviced": []}


def _effective(parent: str, key: str) -> set[int]:
    for name in (f"cpuset.effective_{key}", f"cpuset.{key}"):
        f = join(parent, name)
        if exists(f):
            text = fs.read(f)
            if text:
                return model.parse_cpu_list(text)
    return set()


def _int_or(path: str, default: int = 0) -> int:
    try:
        return fs.read_int(path)
    except (FileNotFoundError, ValueError):
        return default


def _max_or_int(path: str) -> int:
    """pids.max style: "max" -> -1."""
    try:
        text = fs.read(path)
    except FileNotFoundError:
        return -1
    return -1 if text == "max" else int(text)
