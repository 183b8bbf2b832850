"""docker's unit formats, shared by the client, the daemon and the tests.

libcontainer speaks OCI numbers only; what a user types (`--memory 512m`, `--cpus 1.5`) is
docker's and is parsed here, the way docker's CLI (go-units, opts.NanoCPUs) parses it.
"""

from __future__ import annotations

import re
from fractions import Fraction

INT64_MAX = 2**63 - 1
# moby daemon: linuxMinMemory, the smallest memory limit/reservation docker accepts.
DOCKER_MIN_MEMORY = 6 * 1024 * 1024
DOCKER_MIN_CPU_SHARES = 2
DOCKER_MAX_CPU_SHARES = 262144
DOCKER_CPU_PERIOD_US = 100_000

_BINARY = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_GO_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _parse_size(text: str, units: dict[str, int]) -> int:
    """go-units parseSize: a non-negative float, an optional space, a suffix
    (b, k, kb, kib, ... case-insensitive)."""
    cut = max(text.rfind(c) for c in "0123456789. ")
    if cut == -1:
        raise ValueError(f"invalid size: '{text}'")
    if text[cut] == " ":
        num, sfx = text[:cut], text[cut + 1 :]
    else:
        num, sfx = text[: cut + 1], text[cut + 1 :]
    if not _GO_FLOAT.fullmatch(num):
        raise ValueError(f'strconv.ParseFloat: parsing "{num}": invalid syntax')
    size = float(num)
    if size < 0:
        raise ValueError(f"invalid size: '{text}'")
    if sfx:
        low = sfx.lower()
        if len(low) > 3:
            raise ValueError(f"invalid suffix: '{low}'")
        if low[0] == "b":
            if len(low) > 1:
                raise ValueError(f"invalid suffix: '{low}'")
        elif low[0] in units and (
            len(low) == 1 or (len(low) == 2 and low[1] == "b") or low[1:] == "ib"
        ):
            size *= units[low[0]]
        else:
            raise ValueError(f"invalid suffix: '{low}'")
    if size > INT64_MAX:
        raise ValueError(f"invalid size: '{text}' (larger than int64)")
    return int(size)


def ram_in_bytes(text: str) -> int:
    """docker `--memory`, `--memory-reservation`, `--shm-size`: binary units ("6m" = 6 MiB)."""
    return _parse_size(text, _BINARY)


def from_human_size(text: str) -> int:
    """go-units FromHumanSize: decimal units ("1k" = 1000)."""
    return _parse_size(text, _DECIMAL)


def memory_swap_bytes(text: str) -> int:
    """docker `--memory-swap`: "-1" is unlimited, otherwise RAMInBytes."""
    return -1 if text == "-1" else ram_in_bytes(text)


def nano_cpus(text: str) -> int:
    """docker `--cpus`: a rational number of CPUs -> NanoCPUs (opts.NanoCPUs.Set)."""
    try:
        cpus = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"failed to parse {text} as a rational number") from None
    nano = cpus * 10**9
    if nano.denominator != 1:
        raise ValueError("value is too precise")
    return int(nano)


def nano_cpus_to_cfs(nano: int, period: int = DOCKER_CPU_PERIOD_US) -> tuple[int, int]:
    """NanoCPUs -> (quota, period) in microseconds, as moby's daemon computes them."""
    return nano * period // 10**9, period


def clamp_cpu_shares(shares: int) -> tuple[int, str | None]:
    """dockerd clamps --cpu-shares into the kernel's range with a warning (it does not fail)."""
    if 0 < shares < DOCKER_MIN_CPU_SHARES:
        return DOCKER_MIN_CPU_SHARES, (
            f"Changing requested CPUShares of {shares} to minimum allowed of "
            f"{DOCKER_MIN_CPU_SHARES}"
        )
    if shares > DOCKER_MAX_CPU_SHARES:
        return DOCKER_MAX_CPU_SHARES, (
            f"Changing requested CPUShares of {shares} to maximum allowed of "
            f"{DOCKER_MAX_CPU_SHARES}"
        )
    return shares, None


def pids_limit_to_oci(limit: int | None) -> int | None:
    """docker PidsLimit: <= 0 means unlimited, sent to the runtime as -1 (moby)."""
    if limit is None:
        return None
    return -1 if limit <= 0 else limit


def human_size(size: float, precision: int = 4) -> str:
    """go-units HumanSizeWithPrecision (decimal units: "1.5MB"), as `docker images` prints."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.{precision}g}{units[i]}"


def bytes_size(size: float) -> str:
    """go-units BytesSize (binary units: "1.5MiB"), as `docker stats` prints."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024.0
        i += 1
    return f"{size:.4g}{units[i]}"


def _go_atoi(s: str) -> int:
    """strconv.Atoi: optional sign, decimal digits only."""
    if not re.fullmatch(r"[+-]?[0-9]+", s):
        raise ValueError(s)
    return int(s)


def parse_uint_list(text: str) -> set[int]:
    """docker's --cpuset-cpus/--cpuset-mems grammar (pkg/parsers ParseUintList):
    comma-separated N or N-M (N <= M); "" is the empty set."""
    if text == "":
        return set()
    out: set[int] = set()
    for item in text.split(","):
        try:
            if "-" not in item:
                out.add(_go_atoi(item))
                continue
            lo_s, hi_s = item.split("-", 1)
            lo, hi = _go_atoi(lo_s), _go_atoi(hi_s)
        except ValueError:
            raise ValueError(f"invalid format: {text}") from None
        if hi < lo:
            raise ValueError(f"invalid format: {text}")
        if hi - lo > 1 << 16:
            raise ValueError(f"invalid format: {text} (range too large)")
        out.update(range(lo, hi + 1))
    return out
