"""cgroup v2 (the unified hierarchy) — the VM's layout.

Written from the kernel's cgroup-v2 interface (Documentation/admin-guide/cgroup-v2.rst) and the
facts in shared/reference/kernel-facts.md. On the hybrid dev machines the controllers are bound
to v1, so the resource files are exercised against a fake tree in unit tests and the core
(create, subtree_control, procs, freeze, kill, destroy) against the real cgroup2 mount at
/sys/fs/cgroup/unified, which has only hugetlb.

v2 has no devices controller: linux.resources.devices (plus runc's defaults) become an eBPF
device program attached to the cgroup (devices_bpf), which works on that cgroup2 too.
"""

from __future__ import annotations

import errno
from pathlib import Path

from ..errors import ConfigError
from . import base, fs, model
from .base import Manager
from .resources import DEFAULT_ALLOWED_DEVICES, DeviceRule, Resources

# Controllers Skiff enables along the path (those the root offers; the rest are ignored).
WANTED = ("cpuset", "cpu", "io", "memory", "pids", "hugetlb")


def v2_root() -> Path:
    """The cgroup2 mount: /sys/fs/cgroup on a pure v2 host."""
    for mnt, fstype, _ in fs.mountinfo():
        if fstype == "cgroup2" and mnt == str(fs.CGROUP_ROOT):
            return Path(mnt)
    for mnt, fstype, _ in fs.mountinfo():
        if fstype == "cgroup2":
            return Path(mnt)
    return fs.CGROUP_ROOT


class V2Manager(Manager):
    version = "v2"

    def __init__(self, cgroups_path: str, resources: Resources | None = None, *,
                 root: Path | None = None) -> None:
        super().__init__(cgroups_path, resources)
        self.root = root if root is not None else v2_root()
        self.dir = self.root / self.path.lstrip("/")

    def dirs(self) -> list[Path]:
        return [self.dir]

    def _f(self, name: str) -> Path:
        return self.dir / name

    def _write(self, name: str, value: str) -> None:
        fs.write(self._f(name), value)

    def _available(self) -> set[str]:
        """Controllers the leaf will have: the nearest existing level's cgroup.controllers
        (its subtree_control decides the leaf's), or the root's before creation."""
        if self.dir.exists():
            f = self.dir / "cgroup.controllers"
            return set(fs.read(f).split()) if f.exists() else set()
        f = self.root / "cgroup.controllers"
        return set(fs.read(f).split()) if f.exists() else set()

    # -- Manager ----------------------------------------------------------------------------

    def validate(self, resources: Resources) -> None:
        r = resources
        avail = self._available()
        needs = {
            "memory": r.memory_limit is not None or r.memory_reservation is not None
            or r.memory_swap is not None,
            "cpu": r.cpu_shares is not None or r.cpu_quota is not None
            or r.cpu_period is not None or r.cpu_burst is not None,
            "cpuset": r.cpuset_cpus is not None or r.cpuset_mems is not None,
            "pids": r.pids_limit is not None,
            "io": r.blkio_weight is not None or bool(r.blkio_throttle),
            "hugetlb": bool(r.hugepage_limits),
        }
        for ctrl, needed in needs.items():
            if needed and ctrl not in avail:
                raise ConfigError(
                    f"linux.resources ({ctrl})", self.path,
                    f"the {ctrl} controller is not available in this cgroup v2 hierarchy "
                    f"(available: {' '.join(sorted(avail)) or 'none'})",
                )
        for key in r.unified:
            ctrl = key.split(".", 1)[0]
            if ctrl != "cgroup" and ctrl not in avail:
                raise ConfigError(
                    f"linux.resources.unified[{key!r}]", r.unified[key],
                    f"controller {ctrl!r} is not available (have: {' '.join(sorted(avail))})",
                )
        for key, value in (("cpus", r.cpuset_cpus), ("mems", r.cpuset_mems)):
            if value is None:
                continue
            parent = self.dir.parent
            while not parent.exists() and parent != self.root:
                parent = parent.parent
            have = _effective(parent, key) or _effective(self.root, key)
            extra = model.parse_cpu_list(value) - have
            if have and extra:
                raise ConfigError(
                    f"linux.resources.cpu.{key}", value,
                    f"{'CPUs' if key == 'cpus' else 'memory nodes'} "
                    f"{model.format_cpu_list(extra)} not available "
                    f"(parent has {model.format_cpu_list(have)})",
                )
        base.check_throttle_devices(r)
        if r.devices:
            from . import devices_bpf

            devices_bpf.compile_rules(r.devices + DEFAULT_ALLOWED_DEVICES)  # ConfigError

    def _create_dirs(self) -> None:
        """mkdir each level, enabling the wanted controllers in every ancestor's
        subtree_control so that they reach the leaf (the root offers only some)."""
        level = self.root
        for part in self.dir.relative_to(self.root).parts:
            self._enable_controllers(level)
            level = level / part
            fs.mkdir(level)

    def _enable_controllers(self, level: Path) -> None:
        offered = set(fs.read(level / "cgroup.controllers").split())
        sc = level / "cgroup.subtree_control"
        enabled = set(fs.read(sc).split()) if sc.exists() else set()
        for ctrl in WANTED:
            if ctrl in offered and ctrl not in enabled:
                try:
                    fs.write(sc, f"+{ctrl}")
                except fs.CgroupError as e:
                    # EBUSY: the level has processes of its own (no internal processes);
                    # the controller is then unavailable below; validate()/set() report it
                    # if the resources need it.
                    if e.errno_ not in (errno.EBUSY, errno.EINVAL, errno.ENOENT,
                                        errno.EOPNOTSUPP):
                        raise
                    self.warnings.append(f"could not enable {ctrl} in {level}: {e}")

    def set(self, resources: Resources) -> None:
        r = resources
        self.validate(r)
        if r.cpuset_cpus is not None:
            self._write("cpuset.cpus", r.cpuset_cpus)
        if r.cpuset_mems is not None:
            self._write("cpuset.mems", r.cpuset_mems)
        # swap.max first: lowering memory.max reclaims at once, and with the old swap.max
        # still in place the reclaim could swap the container out instead of enforcing both.
        swap = model.swap_v2_value(r.memory_swap, r.memory_limit)
        if swap is not None:
            if self._f("memory.swap.max").exists():
                self._set_memory("memory.swap.max", swap)
            elif swap != -1:
                raise ConfigError(
                    "linux.resources.memory.swap", r.memory_swap,
                    "swap accounting is not available (no memory.swap.max)",
                )
        if r.memory_limit is not None:
            self._set_memory("memory.max", r.memory_limit)
        if r.memory_reservation is not None:
            self._write("memory.low", model.memory_v2_value(r.memory_reservation))
        for set_, what in ((r.memory_swappiness is not None, "memory.swappiness"),
                           (bool(r.memory_disable_oom_killer), "memory.disableOOMKiller")):
            msg = f"{what} has no cgroup v2 equivalent; ignored"
            if set_ and msg not in self.warnings:
                self.warnings.append(msg)
        if r.cpu_shares is not None:
            self._write("cpu.weight", str(model.shares_to_weight(r.cpu_shares)))
        cpu_max = model.cpu_max_v2(r.cpu_quota, r.cpu_period)
        if cpu_max is not None:
            if r.cpu_quota is None or r.cpu_period is None:
                # A partial update changes only its own half of cpu.max (as docker update and
                # v1's two files do): the other half keeps its current value.
                f = self._f("cpu.max")
                cur = fs.read(f).split() if f.exists() else []
                quota, period = cpu_max.split()
                if len(cur) == 2:
                    if r.cpu_quota is None:
                        quota = cur[0]
                    else:
                        period = cur[1]
                cpu_max = f"{quota} {period}"
            self._write("cpu.max", cpu_max)
        if r.cpu_burst is not None:
            self._write("cpu.max.burst", str(r.cpu_burst))
        if r.pids_limit is not None:
            self._write("pids.max", model.pids_value(r.pids_limit))
        if r.blkio_weight is not None:
            if self._f("io.bfq.weight").exists():
                self._write("io.bfq.weight", str(r.blkio_weight))
            elif self._f("io.weight").exists():
                self._write("io.weight", str(model.blkio_weight_to_io_weight(r.blkio_weight)))
            else:
                raise ConfigError(
                    "linux.resources.blockIO.weight", r.blkio_weight,
                    "this kernel has no io weight (no io.weight or io.bfq.weight)",
                )
        for kind, major, minor, rate in r.blkio_throttle:
            # io.max: one "MAJ:MIN key=value" line per write; "max" removes the limit
            self._write("io.max", f"{major}:{minor} {kind}={rate if rate else 'max'}")
        for i, (size, limit) in enumerate(r.hugepage_limits):
            f = self._f(f"hugetlb.{size}.max")
            if not f.exists():
                raise ConfigError(
                    f"linux.resources.hugepageLimits[{i}].pageSize", size,
                    "this kernel has no huge pages of that size",
                )
            self._write(f.name, str(limit))
        for key, value in r.unified.items():
            if not self._f(key).exists():
                raise ConfigError(
                    f"linux.resources.unified[{key!r}]", value, "no such cgroup interface file"
                )
            try:
                self._write(key, value)
            except fs.CgroupError as e:
                raise ConfigError(
                    f"linux.resources.unified[{key!r}]", value, f"the kernel refused it: {e}"
                ) from None
        if r.devices:
            self._set_devices(r.devices + DEFAULT_ALLOWED_DEVICES)

    def _set_devices(self, rules: tuple[DeviceRule, ...]) -> None:
        """Attach the device filter (an eBPF program, see devices_bpf) in place of the old one.

        Like runc: when bpf(2) fails (no CAP_SYS_ADMIN / CAP_BPF, a kernel without cgroup-bpf,
        an LSM), that is an error unless nothing is restricted anyway (every rule allows rwm,
        e.g. --privileged) or we run in a user namespace, where bpf(2) is not available and
        the container cannot reach host devices through mknod; then it is a warning.
        """
        from . import devices_bpf

        try:
            devices_bpf.apply(self.dir, rules)
        except OSError as e:
            if not devices_bpf.can_skip_error(rules):
                raise fs.CgroupError(
                    f"cannot install the device filter on {self.dir} (cgroup v2 enforces "
                    f"linux.resources.devices with an eBPF program): {e}",
                    path=self.dir, err=e.errno,
                ) from None
            msg = f"device rules not enforced: {e}"
            if msg not in self.warnings:
                self.warnings.append(msg)

    def _set_memory(self, name: str, value: int) -> None:
        """v2 reclaims (and then OOM-kills) when lowered below usage: no EBUSY here."""
        self._write(name, model.memory_v2_value(value))

    def apply(self, pid: int) -> None:
        self._write("cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in fs.read(self._f("cgroup.procs")).split()]
        except FileNotFoundError:
            return []

    def freeze(self) -> None:
        self._write("cgroup.freeze", "1")
        fs.poll(lambda: self._events().get("frozen") == 1, 10.0, f"{self.path} to freeze")

    def thaw(self) -> None:
        self._write("cgroup.freeze", "0")
        fs.poll(lambda: self._events().get("frozen") == 0, 10.0, f"{self.path} to thaw")

    def freezer_state(self) -> str:
        return "frozen" if self._events().get("frozen") == 1 else "thawed"

    def _events(self) -> dict[str, int]:
        return fs.read_keyed(self._f("cgroup.events"))

    def kill_all(self, sig: int = 9) -> None:
        """cgroup.kill (5.14+) SIGKILLs the whole subtree atomically; else the generic way."""
        if sig == 9 and self._f("cgroup.kill").exists():
            self._write("cgroup.kill", "1")
            return
        super().kill_all(sig)

    def oom_kill_count(self) -> int:
        return fs.read_keyed(self._f("memory.events")).get("oom_kill", 0)

    def stats(self) -> dict:
        out: dict = {"version": "v2"}
        if self._f("memory.current").exists():
            ev = fs.read_keyed(self._f("memory.events"))
            out["memory"] = {
                "usage": _int_or(self._f("memory.current")),
                "max_usage": _int_or(self._f("memory.peak")),
                "limit": _max_or_int(self._f("memory.max")),
                "failcnt": ev.get("max", 0),
                "oom_kill": ev.get("oom_kill", 0),
                "stat": fs.read_keyed(self._f("memory.stat")),
            }
        st = fs.read_keyed(self._f("cpu.stat"))
        out["cpu"] = {
            "usage_ns": st.get("usage_usec", 0) * 1000,
            "user_ns": st.get("user_usec", 0) * 1000,
            "system_ns": st.get("system_usec", 0) * 1000,
            "percpu_ns": [],
            "nr_periods": st.get("nr_periods", 0),
            "nr_throttled": st.get("nr_throttled", 0),
            "throttled_ns": st.get("throttled_usec", 0) * 1000,
        }
        if self._f("pids.current").exists():
            out["pids"] = {
                "current": _int_or(self._f("pids.current")),
                "limit": _max_or_int(self._f("pids.max")),
            }
        try:
            out["io"] = parse_io_stat(fs.read(self._f("io.stat")))
        except OSError:  # the io controller is not enabled for this cgroup
            pass
        return out

    def destroy(self) -> None:
        fs.rmdir_tree(self.dir)

    def exists(self) -> bool:
        return self.dir.exists()


def parse_io_stat(text: str) -> dict[str, list[dict]]:
    """io.stat (`8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0` per device) -> the
    v1-shaped {"service_bytes": [...], "serviced": [...]}, ops "read"/"write" in lowercase as
    docker reports them on v2 (its CLI sums ops case-insensitively). Keys a kernel adds later
    are ignored; a device missing a key counts 0 for it."""
    sb: list[dict] = []
    sv: list[dict] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        dev, *pairs = line.split()
        major, sep, minor = dev.partition(":")
        if not sep or not major.isdigit() or not minor.isdigit():
            continue
        kv: dict[str, int] = {}
        for pair in pairs:
            k, _, v = pair.partition("=")
            if v.isdigit():
                kv[k] = int(v)
        for op, b, n in (("read", "rbytes", "rios"), ("write", "wbytes", "wios")):
            sb.append({"major": int(major), "minor": int(minor), "op": op,
                       "value": kv.get(b, 0)})
            sv.append({"major": int(major), "minor": int(minor), "op": op,
                       "value": kv.get(n, 0)})
    return {"service_bytes": sb, "serviced": sv}


def _effective(d: Path, key: str) -> set[int]:
    for name in (f"cpuset.{key}.effective", f"cpuset.{key}"):
        f = d / name
        if f.exists():
            text = fs.read(f)
            if text:
                return model.parse_cpu_list(text)
    return set()


def _int_or(path: Path, default: int = 0) -> int:
    try:
        return fs.read_int(path)
    except (FileNotFoundError, ValueError):
        return default


def _max_or_int(path: Path) -> int:
    try:
        text = fs.read(path)
    except FileNotFoundError:
        return -1
    return -1 if text == "max" else int(text)
