"""OCI `linux.resources` as plain data, validated once with the kernel's real bounds.

`Resources.from_oci()` is pure: it checks what can be known without the host (types, ranges,
list syntax, consistency between fields). What depends on the host (CPUs present in the parent
cpuset, a blkio weight file, the cgroup version for `unified`) is checked by
`Manager.validate()` before anything is created.

Conventions follow runc so that OCI tooling sees the same behaviour: 0 means "unset" for
memory.limit, memory.swap, memory.reservation, cpu.shares, cpu.quota, cpu.period, pids.limit and
blockIO.weight; -1 means "unlimited" for memory values, cpu.quota and pids.limit.
"""

from __future__ import annotations

from ..errors import ConfigError
from . import model

TYPE_CHECKING = False  # not `from typing import ...`: typing costs ~3 ms to import
if TYPE_CHECKING:
    from typing import Any

# DeviceRule and Resources are plain __slots__ classes rather than frozen dataclasses: they are
# on every `skiff-runc run`'s import path, and importing dataclasses (-> inspect, ast, dis,
# tokenize) plus generating the classes cost more CPU than the whole spec validation. Same
# behaviour as the dataclasses they replace: keyword/positional construction, immutability,
# value equality, hashing, repr, pickling.


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a DeviceRule or Resources (they are immutable values)."""


class _Frozen:
    __slots__ = ()
    _FIELDS: tuple[str, ...] = ()

    def _values(self) -> tuple:
        return tuple(getattr(self, f) for f in self._FIELDS)

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        args = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._FIELDS)
        return f"{type(self).__qualname__}({args})"

    def __reduce__(self) -> tuple:
        return (type(self), self._values())

_F = "linux.resources"

# OCI blockIO throttle lists -> the kind names of v2's io.max.
THROTTLE_KEYS = {
    "throttleReadBpsDevice": "rbps",
    "throttleWriteBpsDevice": "wbps",
    "throttleReadIOPSDevice": "riops",
    "throttleWriteIOPSDevice": "wiops",
}


class DeviceRule(_Frozen):
    """One OCI device cgroup rule; `major`/`minor` None mean any ("*")."""

    __slots__ = ("allow", "type", "major", "minor", "access")
    _FIELDS = __slots__

    allow: bool
    type: str
    major: int | None
    minor: int | None
    access: str

    def __init__(self, allow: bool, type: str = "a", major: int | None = None,  # noqa: A002
                 minor: int | None = None, access: str = "rwm") -> None:
        s = object.__setattr__
        s(self, "allow", allow)
        s(self, "type", type)
        s(self, "major", major)
        s(self, "minor", minor)
        s(self, "access", access)

    def v1_line(self) -> str:
        """The line written to v1 devices.allow / devices.deny."""
        if self.type == "a":
            return "a"
        maj = "*" if self.major is None else str(self.major)
        mnr = "*" if self.minor is None else str(self.minor)
        return f"{self.type} {maj}:{mnr} {self.access}"


# runc's default allowed devices (specconv AllowedDevices): mknod of anything, plus the
# character devices every container gets in /dev.
DEFAULT_ALLOWED_DEVICES: tuple[DeviceRule, ...] = (
    DeviceRule(True, "c", None, None, "m"),
    DeviceRule(True, "b", None, None, "m"),
    DeviceRule(True, "c", 1, 3, "rwm"),  # /dev/null
    DeviceRule(True, "c", 1, 8, "rwm"),  # /dev/random
    DeviceRule(True, "c", 1, 7, "rwm"),  # /dev/full
    DeviceRule(True, "c", 5, 0, "rwm"),  # /dev/tty
    DeviceRule(True, "c", 1, 5, "rwm"),  # /dev/zero
    DeviceRule(True, "c", 1, 9, "rwm"),  # /dev/urandom
    DeviceRule(True, "c", 5, 1, "rwm"),  # /dev/console
    DeviceRule(True, "c", 136, None, "rwm"),  # /dev/pts/*
    DeviceRule(True, "c", 5, 2, "rwm"),  # /dev/ptmx
)


_RESOURCE_FIELDS = (
    "memory_limit", "memory_reservation", "memory_swap", "memory_swappiness",
    "memory_disable_oom_killer", "cpu_shares", "cpu_quota", "cpu_period", "cpu_burst",
    "cpuset_cpus", "cpuset_mems", "pids_limit", "blkio_weight", "hugepage_limits",
    "blkio_throttle", "devices", "unified",
)


class Resources(_Frozen):
    """Validated resources. None means "leave the kernel's value alone"."""

    __slots__ = _RESOURCE_FIELDS
    _FIELDS = _RESOURCE_FIELDS

    memory_limit: int | None  # bytes, -1 unlimited
    memory_reservation: int | None  # bytes, -1 unlimited (v1 soft limit, v2 memory.low)
    memory_swap: int | None  # OCI memory+swap total, -1 unlimited
    memory_swappiness: int | None  # v1 only, 0..100
    memory_disable_oom_killer: bool | None  # v1 memory.oom_control; no v2 equivalent
    cpu_shares: int | None  # 2..262144 (v2: converted to cpu.weight)
    cpu_quota: int | None  # us, -1 unlimited
    cpu_period: int | None  # us
    cpu_burst: int | None  # us
    cpuset_cpus: str | None  # canonical list ("0-1")
    cpuset_mems: str | None
    pids_limit: int | None  # >0, or -1 unlimited
    blkio_weight: int | None  # 10..1000
    hugepage_limits: tuple[tuple[str, int], ...]  # (page size "2MB", bytes)
    # (kind "rbps"|"wbps"|"riops"|"wiops", major, minor, rate; rate 0 removes the rule)
    blkio_throttle: tuple[tuple[str, int, int, int], ...]
    devices: tuple[DeviceRule, ...]  # OCI rules (the defaults are appended on apply)
    unified: dict[str, str]  # v2 raw files

    def __init__(
        self,
        memory_limit: int | None = None,
        memory_reservation: int | None = None,
        memory_swap: int | None = None,
        memory_swappiness: int | None = None,
        memory_disable_oom_killer: bool | None = None,
        cpu_shares: int | None = None,
        cpu_quota: int | None = None,
        cpu_period: int | None = None,
        cpu_burst: int | None = None,
        cpuset_cpus: str | None = None,
        cpuset_mems: str | None = None,
        pids_limit: int | None = None,
        blkio_weight: int | None = None,
        hugepage_limits: tuple[tuple[str, int], ...] = (),
        blkio_throttle: tuple[tuple[str, int, int, int], ...] = (),
        devices: tuple[DeviceRule, ...] = (),
        unified: dict[str, str] | None = None,
    ) -> None:
        s = object.__setattr__
        s(self, "memory_limit", memory_limit)
        s(self, "memory_reservation", memory_reservation)
        s(self, "memory_swap", memory_swap)
        s(self, "memory_swappiness", memory_swappiness)
        s(self, "memory_disable_oom_killer", memory_disable_oom_killer)
        s(self, "cpu_shares", cpu_shares)
        s(self, "cpu_quota", cpu_quota)
        s(self, "cpu_period", cpu_period)
        s(self, "cpu_burst", cpu_burst)
        s(self, "cpuset_cpus", cpuset_cpus)
        s(self, "cpuset_mems", cpuset_mems)
        s(self, "pids_limit", pids_limit)
        s(self, "blkio_weight", blkio_weight)
        s(self, "hugepage_limits", hugepage_limits)
        s(self, "blkio_throttle", blkio_throttle)
        s(self, "devices", devices)
        s(self, "unified", {} if unified is None else unified)

    def is_empty(self) -> bool:
        return all(getattr(self, f) in (None, (), {}) for f in self._FIELDS)

    def merged(self, update: Resources) -> Resources:
        """These resources with every field `update` sets replacing ours (for `update`)."""
        values = {f: getattr(self, f) for f in self._FIELDS}
        for f in update._FIELDS:
            v = getattr(update, f)
            if v not in (None, (), {}):
                values[f] = v
        return Resources(**values)

    @classmethod
    def from_oci(cls, d: dict | None) -> Resources:
        """Validate OCI `linux.resources`; raise ConfigError naming the field and the value."""
        if d is None:
            return cls()
        _expect(d, dict, _F)
        mem = _section(d, "memory")
        cpu = _section(d, "cpu")
        pids = _section(d, "pids")
        blkio = _section(d, "blockIO")

        limit = _memory(mem, "limit", page_floor=True)
        reservation = _memory(mem, "reservation")
        swap = _memory(mem, "swap")
        if swap is not None and swap != -1:
            if limit is None or limit == -1:
                raise ConfigError(
                    f"{_F}.memory.swap", swap, "a swap limit needs memory.limit to be set"
                )
            if swap < limit:
                raise ConfigError(
                    f"{_F}.memory.swap",
                    swap,
                    f"memory+swap must be >= memory.limit ({limit})",
                )
        swappiness = _int(mem, "swappiness", f"{_F}.memory")
        if swappiness is not None and not 0 <= swappiness <= 100:
            raise ConfigError(f"{_F}.memory.swappiness", swappiness, "must be 0..100")
        no_oom = mem.get("disableOOMKiller")
        if no_oom is not None and not isinstance(no_oom, bool):
            raise ConfigError(f"{_F}.memory.disableOOMKiller", no_oom, "must be true or false")
        for unsupported in ("kernel", "kernelTCP"):
            if mem.get(unsupported) not in (None, 0):
                raise ConfigError(
                    f"{_F}.memory.{unsupported}",
                    mem[unsupported],
                    "kernel memory limits are deprecated and not supported",
                )

        shares = _int(cpu, "shares", f"{_F}.cpu")
        if shares == 0:
            shares = None
        if shares is not None and not model.CPU_SHARES_MIN <= shares <= model.CPU_SHARES_MAX:
            raise ConfigError(
                f"{_F}.cpu.shares",
                shares,
                f"must be {model.CPU_SHARES_MIN}..{model.CPU_SHARES_MAX} "
                "(the kernel would silently clamp it)",
            )
        quota = _int(cpu, "quota", f"{_F}.cpu")
        if quota == 0:
            quota = None
        if quota is not None:
            if quota < -1:
                raise ConfigError(f"{_F}.cpu.quota", quota, "must be -1 (unlimited) or >= 1000")
            if 0 <= quota < model.CFS_QUOTA_MIN_US:
                raise ConfigError(
                    f"{_F}.cpu.quota", quota, f"must be >= {model.CFS_QUOTA_MIN_US} us"
                )
            if quota > model.CFS_QUOTA_MAX_US:
                raise ConfigError(
                    f"{_F}.cpu.quota", quota, f"must be <= {model.CFS_QUOTA_MAX_US} us"
                )
        period = _int(cpu, "period", f"{_F}.cpu")
        if period == 0:
            period = None
        if period is not None and not (
            model.CFS_PERIOD_MIN_US <= period <= model.CFS_PERIOD_MAX_US
        ):
            raise ConfigError(
                f"{_F}.cpu.period",
                period,
                f"must be {model.CFS_PERIOD_MIN_US}..{model.CFS_PERIOD_MAX_US} us",
            )
        burst = _int(cpu, "burst", f"{_F}.cpu")
        if burst is not None:
            # kernel/sched/core.c tg_set_cfs_bandwidth: burst <= max_cfs_runtime, and with a
            # quota, burst <= quota and quota + burst <= max_cfs_runtime.
            if not 0 <= burst <= model.CFS_QUOTA_MAX_US:
                raise ConfigError(
                    f"{_F}.cpu.burst", burst, f"must be 0..{model.CFS_QUOTA_MAX_US} us"
                )
            if quota is not None and quota > 0 and (
                burst > quota or burst + quota > model.CFS_QUOTA_MAX_US
            ):
                raise ConfigError(
                    f"{_F}.cpu.burst", burst, f"must not exceed the quota ({quota} us)"
                )
        for rt in ("realtimeRuntime", "realtimePeriod"):
            if cpu.get(rt) not in (None, 0):
                raise ConfigError(f"{_F}.cpu.{rt}", cpu[rt], "realtime scheduling not supported")
        cpus = _cpuset(cpu, "cpus")
        mems = _cpuset(cpu, "mems")

        plimit = _int(pids, "limit", f"{_F}.pids")
        if plimit == 0:
            plimit = None
        if plimit is not None:
            if plimit < -1:
                raise ConfigError(f"{_F}.pids.limit", plimit, "must be -1 (unlimited) or > 0")
            if plimit >= model.PIDS_MAX:
                raise ConfigError(
                    f"{_F}.pids.limit",
                    plimit,
                    f"must be < {model.PIDS_MAX} (PIDS_MAX; use -1 for unlimited)",
                )

        weight = _int(blkio, "weight", f"{_F}.blockIO")
        if weight == 0:
            weight = None
        if weight is not None and not (
            model.BLKIO_WEIGHT_MIN <= weight <= model.BLKIO_WEIGHT_MAX
        ):
            raise ConfigError(
                f"{_F}.blockIO.weight",
                weight,
                f"must be {model.BLKIO_WEIGHT_MIN}..{model.BLKIO_WEIGHT_MAX}",
            )

        devices = tuple(_device(i, r) for i, r in enumerate(_list(d, "devices")))
        unified = _unified(d.get("unified"))
        hugepages = tuple(_hugepage(i, h) for i, h in enumerate(_list(d, "hugepageLimits")))
        for unsupported in ("network", "rdma"):
            if d.get(unsupported):
                raise ConfigError(
                    f"{_F}.{unsupported}", d[unsupported], "not supported by Skiff's cgroups"
                )
        throttle = []
        for key, kind in THROTTLE_KEYS.items():
            for i, t in enumerate(_list(blkio, key) if blkio else []):
                name = f"{_F}.blockIO.{key}[{i}]"
                if not isinstance(t, dict):
                    raise ConfigError(name, t, "must be an object with major, minor, rate")
                nums = []
                for k in ("major", "minor", "rate"):
                    v = t.get(k)
                    if isinstance(v, bool) or not isinstance(v, int) or not (
                        0 <= v <= model.INT64_MAX
                    ):
                        raise ConfigError(f"{name}.{k}", v, "must be an integer >= 0")
                    nums.append(v)
                throttle.append((kind, nums[0], nums[1], nums[2]))
        for unsupported in ("leafWeight", "weightDevice"):
            if blkio.get(unsupported):
                raise ConfigError(
                    f"{_F}.blockIO.{unsupported}", blkio[unsupported],
                    "not supported by Skiff's cgroups (only weight and the throttle lists)",
                )
        return cls(
            memory_limit=limit,
            memory_reservation=reservation,
            memory_swap=swap,
            memory_swappiness=swappiness,
            memory_disable_oom_killer=no_oom or None,
            cpu_shares=shares,
            cpu_quota=quota,
            cpu_period=period,
            cpu_burst=burst,
            cpuset_cpus=cpus,
            cpuset_mems=mems,
            pids_limit=plimit,
            blkio_weight=weight,
            hugepage_limits=hugepages,
            blkio_throttle=tuple(throttle),
            devices=devices,
            unified=unified,
        )


# ---------------------------------------------------------------- helpers


def _expect(v: Any, t: type, name: str) -> None:
    if not isinstance(v, t) or (t is int and isinstance(v, bool)):
        raise ConfigError(name, v, f"must be {'an object' if t is dict else t.__name__}")


def _section(d: dict, key: str) -> dict:
    v = d.get(key)
    if v is None:
        return {}
    _expect(v, dict, f"{_F}.{key}")
    return v


def _list(d: dict, key: str) -> list:
    v = d.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise ConfigError(f"{_F}.{key}", v, "must be a list")
    return v


def _int(d: dict, key: str, prefix: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    name = f"{prefix}.{key}"
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(name, v, "must be an integer")
    if not -(2**63) <= v <= model.INT64_MAX:
        raise ConfigError(name, v, "does not fit in int64")
    return v


def _memory(mem: dict, key: str, page_floor: bool = False) -> int | None:
    v = _int(mem, key, f"{_F}.memory")
    if v is None or v == 0:
        return None  # runc: 0 is "unset"
    name = f"{_F}.memory.{key}"
    if v < -1:
        raise ConfigError(name, v, "must be -1 (unlimited) or a byte count >= 0")
    if page_floor and 0 < v < model.PAGE_SIZE:
        # The kernel takes it (rounds down to 0 pages) and then OOM-kills every process.
        raise ConfigError(
            name, v, f"below one page ({model.PAGE_SIZE} bytes): no process could run"
        )
    return v


def _cpuset(cpu: dict, key: str) -> str | None:
    v = cpu.get(key)
    if v is None or v == "":
        return None
    name = f"{_F}.cpu.{key}"
    if not isinstance(v, str):
        raise ConfigError(name, v, "must be a string list such as '0-2,4'")
    try:
        ids = model.parse_cpu_list(v)
    except ValueError as e:
        raise ConfigError(name, v, f"malformed list: {e}") from None
    return model.format_cpu_list(ids)


def _device(i: int, r: Any) -> DeviceRule:
    name = f"{_F}.devices[{i}]"
    if not isinstance(r, dict):
        raise ConfigError(name, r, "must be an object")
    allow = r.get("allow")
    if not isinstance(allow, bool):
        raise ConfigError(f"{name}.allow", allow, "must be true or false")
    typ = r.get("type") or "a"
    if typ not in ("a", "b", "c"):
        raise ConfigError(f"{name}.type", typ, "must be 'a', 'b' or 'c'")
    nums = []
    for k in ("major", "minor"):
        n = r.get(k)
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < -1):
            raise ConfigError(f"{name}.{k}", n, "must be a device number or null / -1 for any")
        nums.append(None if n in (None, -1) else n)
    access = r.get("access") or "rwm"
    if (
        not isinstance(access, str)
        or not set(access) <= set("rwm")
        or len(set(access)) != len(access)
    ):
        raise ConfigError(f"{name}.access", access, "must be a combination of r, w, m")
    access = "".join(c for c in "rwm" if c in access)  # the kernel's order (devices.list)
    if typ == "a":
        nums = [None, None]
    return DeviceRule(allow, typ, nums[0], nums[1], access)


def _is_page_size(s: str) -> bool:
    """^[1-9][0-9]*[KMG]B$ without `re` (not imported on the start path)."""
    digits = s[:-2]
    return (len(s) >= 3 and s[-1] == "B" and s[-2] in "KMG" and digits.isascii()
            and digits.isdigit() and digits[0] != "0")


_UNIFIED_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz_")
_UNIFIED_REST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")


def _is_unified_key(k: str) -> bool:
    """^[a-z_]+\\.[A-Za-z0-9_.]+$ without `re`: a controller prefix, a dot, a file name."""
    head, dot, tail = k.partition(".")
    return (bool(dot) and bool(head) and bool(tail) and set(head) <= _UNIFIED_FIRST
            and set(tail) <= _UNIFIED_REST)


def _hugepage(i: int, h: Any) -> tuple[str, int]:
    name = f"{_F}.hugepageLimits[{i}]"
    if not isinstance(h, dict):
        raise ConfigError(name, h, "must be an object with pageSize and limit")
    size = h.get("pageSize")
    if not isinstance(size, str) or not _is_page_size(size):
        raise ConfigError(f"{name}.pageSize", size, "must be a size such as '2MB' or '1GB'")
    limit = h.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= model.INT64_MAX:
        raise ConfigError(f"{name}.limit", limit, "must be a byte count >= 0")
    return size, limit


def emulate_devices(rules: tuple[DeviceRule, ...]) -> tuple[bool, list[str]]:
    """The v1 device list after replaying `rules` from default-allow: (default_allow,
    exception lines in order). Exact lines only, which is what Skiff writes."""
    default_allow = True
    exceptions: list[str] = []
    for r in rules:
        if r.type == "a":
            default_allow, exceptions = r.allow, []
            continue
        line = r.v1_line()
        # An exception is a rule that goes against the default.
        if r.allow != default_allow:
            if line not in exceptions:
                exceptions.append(line)
        elif line in exceptions:
            exceptions.remove(line)
    return default_allow, exceptions


def _unified(u: Any) -> dict[str, str]:
    if u is None:
        return {}
    if not isinstance(u, dict):
        raise ConfigError(f"{_F}.unified", u, "must be an object of file -> value")
    out = {}
    for k, v in u.items():
        name = f"{_F}.unified[{k!r}]"
        if not isinstance(k, str) or not _is_unified_key(k) or ".." in k:
            raise ConfigError(name, k, "must name a cgroup interface file such as 'memory.high'")
        if k.startswith("cgroup.") and k not in ("cgroup.max.depth", "cgroup.max.descendants"):
            raise ConfigError(name, k, "cgroup core files cannot be set")
        if not isinstance(v, str):
            raise ConfigError(name, v, "must be a string")
        out[k] = v
    return out
