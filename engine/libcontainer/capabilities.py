"""Capability names, bitmasks, and applying the five OCI sets to the container's init.

Order matters (as in runc): drop the bounding set while still privileged, keep capabilities
across the uid change (PR_SET_KEEPCAPS), switch user, then capset() the effective/permitted/
inheritable sets and raise the ambient ones last (ambient needs permitted+inheritable).
"""

from __future__ import annotations

CAP_NAMES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
    "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON",
    "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]
CAP_BY_NAME = {n: i for i, n in enumerate(CAP_NAMES)}
SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def last_cap() -> int:
    """The highest capability number this kernel knows (caps above it cannot be set)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAP_NAMES) - 1


def cap_number(name: str) -> int:
    """CAP_SYS_ADMIN / SYS_ADMIN / sys_admin -> 21; KeyError for an unknown name."""
    n = name.upper()
    if not n.startswith("CAP_"):
        n = "CAP_" + n
    return CAP_BY_NAME[n]


def to_mask(names: list[str] | None) -> int:
    mask = 0
    for n in names or ():
        mask |= 1 << cap_number(n)
    return mask


def from_mask(mask: int) -> list[str]:
    return [CAP_NAMES[i] for i in range(len(CAP_NAMES)) if mask >> i & 1]


def apply_bounding(bounding: int) -> None:
    """Drop every capability not in `bounding` from the bounding set (needs CAP_SETPCAP)."""
    from . import syscalls as sc

    for i in range(last_cap() + 1):
        if not bounding >> i & 1:
            try:
                sc.prctl(sc.PR_CAPBSET_DROP, i)
            except OSError as e:
                if e.errno != 22:  # EINVAL: unknown to this kernel
                    raise


def apply_sets(effective: int, permitted: int, inheritable: int, ambient: int) -> None:
    from . import syscalls as sc

    top = (1 << (last_cap() + 1)) - 1
    sc.capset(effective & top, permitted & top, inheritable & top)
    for i in range(last_cap() + 1):
        if ambient >> i & 1:
            sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, i)
