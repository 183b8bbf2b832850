"""The kernel's cgroup arithmetic, modelled in one place.

Every conversion between an OCI value and what the kernel stores lives here, so that the
managers write through these functions and the property tests compare the kernel's read-back
with the same model (see docs/kernel-behaviour.md and shared kernel-facts). Pure functions only:
nothing here touches the filesystem.
"""

from __future__ import annotations

import math

PAGE_SIZE = 4096
INT64_MAX = 2**63 - 1
# include/linux/page_counter.h on 64-bit: LONG_MAX / PAGE_SIZE pages.
PAGE_COUNTER_MAX = INT64_MAX // PAGE_SIZE
# What v1 memory.limit_in_bytes reads back when unlimited (PAGE_COUNTER_MAX pages in bytes).
V1_MEMORY_UNLIMITED = PAGE_COUNTER_MAX * PAGE_SIZE  # 9223372036854771712

# kernel/cgroup/pids.c: PIDS_MAX = PID_MAX_LIMIT + 1 (4 Mi + 1 on 64-bit).
PIDS_MAX = 4 * 1024 * 1024 + 1

# kernel/sched/core.c: the CFS bandwidth bounds, in microseconds.
CFS_PERIOD_MIN_US = 1000
CFS_PERIOD_MAX_US = 1_000_000
CFS_QUOTA_MIN_US = 1000
CFS_QUOTA_MAX_US = (1 << 44) - 1  # max_cfs_runtime: MAX_BW in us (~203 days)
CFS_PERIOD_DEFAULT_US = 100_000

# v1 cpu.shares is clamped by the kernel to [MIN_SHARES, MAX_SHARES]; runc refuses values that
# would be clamped (it reads back and compares), so libcontainer refuses them up front.
CPU_SHARES_MIN = 2
CPU_SHARES_MAX = 262_144
CPU_SHARES_DEFAULT = 1024
CPU_WEIGHT_MIN = 1
CPU_WEIGHT_MAX = 10_000
CPU_WEIGHT_DEFAULT = 100

# OCI blockIO.weight (v1 CFQ blkio.weight range); v2 io.weight is 1..10000, io.bfq.weight 1..1000.
BLKIO_WEIGHT_MIN = 10
BLKIO_WEIGHT_MAX = 1000
IO_WEIGHT_MIN = 1
IO_WEIGHT_MAX = 10_000

# Docker's --cpus: NanoCPUs with this period.
DOCKER_CPU_PERIOD_US = 100_000


# ---------------------------------------------------------------- memory


def memory_pages(value: int) -> int:
    """Pages the page counter stores for a byte value (memparse, then bytes / PAGE_SIZE, capped)."""
    return min(value // PAGE_SIZE, PAGE_COUNTER_MAX)


def memory_readback_v1(value: int) -> int:
    """What v1 `memory.*limit_in_bytes` reads after writing `value` (-1 = unlimited)."""
    if value == -1:
        return V1_MEMORY_UNLIMITED
    return memory_pages(value) * PAGE_SIZE


def memory_readback_v2(value: int) -> str:
    """What v2 `memory.max`/`memory.low`/`memory.swap.max` reads after writing `value`."""
    if value == -1:
        return "max"
    pages = memory_pages(value)
    return "max" if pages == PAGE_COUNTER_MAX else str(pages * PAGE_SIZE)


def memory_v2_value(value: int) -> str:
    """The string written to a v2 memory file for an OCI byte value (-1 = "max")."""
    return "max" if value == -1 else str(value)


def swap_v2_value(memory_swap: int | None, memory: int | None) -> int | None:
    """OCI memory.swap (memory+swap total) -> v2 memory.swap.max (swap only), as runc does.

    None means "do not write". -1 means unlimited. Raises ValueError when the pair is
    inconsistent (the validator reports these as ConfigError first).
    """
    if memory == -1 and memory_swap is None:
        return -1  # "unlimited memory" means unlimited swap too (cgroup v1 compatibility)
    if memory_swap is None or memory_swap == -1:
        return memory_swap
    if memory is None or memory == -1:
        raise ValueError("a swap limit needs a memory limit")
    if memory_swap < memory:
        raise ValueError("memory+swap must be >= memory")
    return memory_swap - memory


def memsw_write_order(current_limit: int, memory: int | None, swap: int | None) -> list[str]:
    """The order of the v1 writes so each step keeps memsw >= memory (the kernel's check).

    Raising the limits writes memsw first; lowering them writes memory first.
    """
    if memory is not None and swap is not None:
        if swap == -1 or current_limit < swap:
            return ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
        return ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    order = []
    if memory is not None:
        order.append("memory.limit_in_bytes")
    if swap is not None:
        order.append("memory.memsw.limit_in_bytes")
    return order


# ---------------------------------------------------------------- cpu


def shares_to_weight(shares: int) -> int:
    """runc's ConvertCPUSharesToCgroupV2Value (the quadratic-in-log2 curve, runc >= 1.3).

    Monotone through (2 -> 1), (1024 -> 100), (262144 -> 10000); 0 means unset.
    """
    if shares == 0:
        return 0
    if shares <= CPU_SHARES_MIN:
        return CPU_WEIGHT_MIN
    if shares >= CPU_SHARES_MAX:
        return CPU_WEIGHT_MAX
    log2 = math.log2(shares)
    exponent = (log2 * log2 + 125 * log2) / 612.0 - 7.0 / 34.0
    return int(math.ceil(10**exponent))


def blkio_weight_to_io_weight(weight: int) -> int:
    """runc's ConvertBlkIOToIOWeightValue: OCI blkio weight 10..1000 -> v2 io.weight 1..10000."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def cpu_max_v2(quota: int | None, period: int | None) -> str | None:
    """The string for v2 `cpu.max` ("$QUOTA $PERIOD"); None when neither is set.

    A missing period takes the default 100000 us, as runc does, so the read-back is defined.
    """
    if quota is None and period is None:
        return None
    q = "max" if quota is None or quota < 0 else str(quota)
    p = period if period is not None else CFS_PERIOD_DEFAULT_US
    return f"{q} {p}"


def cfs_quota_readback_v1(quota: int) -> int:
    """v1 cpu.cfs_quota_us: every negative quota reads back -1."""
    return -1 if quota < 0 else quota


def nano_cpus_to_quota(nano_cpus: int, period: int = DOCKER_CPU_PERIOD_US) -> int:
    """docker --cpus (NanoCPUs) -> cfs quota at `period` (moby: NanoCPUs * period / 1e9)."""
    return nano_cpus * period // 1_000_000_000


# ---------------------------------------------------------------- pids


def pids_value(limit: int) -> str:
    """OCI pids.limit (>0 a limit, -1 unlimited) -> the string written to pids.max."""
    return "max" if limit < 0 else str(limit)


# ---------------------------------------------------------------- cpuset lists


def parse_cpu_list(text: str) -> set[int]:
    """Parse a cpuset list ("0-2,4"); ValueError on anything the strict grammar refuses.

    The grammar is docker's (ParseUintList): comma-separated N or N-M with N <= M, decimal,
    no whitespace. The kernel's bitmap_parselist also takes stride groups ("0-7:2/4"), spaces
    and stray commas, and " " (which empties the set); Skiff does not.
    """
    result: set[int] = set()
    if text == "":
        return result
    for item in text.split(","):
        lo_s, sep, hi_s = item.partition("-")
        if not _is_decimal(lo_s) or (sep and not _is_decimal(hi_s)):
            raise ValueError(f"malformed item {item!r}")
        lo = int(lo_s)
        hi = int(hi_s) if sep else lo
        if hi < lo:
            raise ValueError(f"range {item!r} ends before it starts")
        if hi - lo > 1 << 16:
            raise ValueError(f"range {item!r} is too large")
        result.update(range(lo, hi + 1))
    return result


def _is_decimal(s: str) -> bool:
    return s.isascii() and s.isdigit()


def format_cpu_list(cpus: set[int] | frozenset[int]) -> str:
    """The kernel's canonical list form ("0-2,4"), as cpuset.cpus reads back."""
    out: list[str] = []
    ordered = sorted(cpus)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


# ---------------------------------------------------------------- kernel parser models


def kernel_memparse(text: str) -> int | None:
    """Model of the kernel's memparse(): base-0 integer with optional K/M/G/T/P/E suffix.

    Returns None where the cgroup write would fail with EINVAL (trailing junk, a sign).
    Used by the property tests to predict what the kernel accepts for raw strings.
    """
    s = text.strip()
    if not s or s[0] in "+-":
        return None
    num_end = 0
    base = 10
    if s[:2].lower() == "0x":
        base, num_end = 16, 2
        digits = "0123456789abcdefABCDEF"
    elif s[0] == "0":
        base = 8
        digits = "01234567"
    else:
        digits = "0123456789"
    start = num_end
    while num_end < len(s) and s[num_end] in digits:
        num_end += 1
    if base == 16 and num_end == start:
        return None
    value = int(s[start:num_end] or "0", base)
    rest = s[num_end:]
    shifts = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
    if rest and rest[0].lower() in shifts:
        value <<= shifts[rest[0].lower()]
        rest = rest[1:]
    if rest:
        return None
    return value % (1 << 64)
