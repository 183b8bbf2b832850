"""The container's filesystem view, built inside its new mount namespace by its init.

Order (as runc): make every mount private (nothing propagates back to the host), bind the rootfs
onto itself, mount `mounts` under it (destinations resolved inside the rootfs, symlinks
included), create /dev's default nodes and symlinks, pivot_root, then mask and make read-only
the configured paths and, last, the root itself.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from . import syscalls as sc
from .spec import Mount, Spec

DEFAULT_DEVICES = [  # path, major, minor (char devices, mode 0666)
    ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
    ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
]
DEV_SYMLINKS = [("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr")]


def secure_join(root: str, path: str) -> str:
    """`path` resolved inside `root`: symlinks (also absolute ones) can't escape it."""
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if resolved:
                resolved.pop()
            continue
        cur = os.path.join(root, *resolved, p)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            resolved.append(p)
            resolved.extend(x for x in parts if x not in ("", "."))
            # the rest does not exist yet: '..' in it is collapsed lexically
            out: list[str] = []
            for x in resolved:
                if x == "..":
                    if out:
                        out.pop()
                else:
                    out.append(x)
            return os.path.join(root, *out)
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                raise OSError(40, f"too many symlinks resolving {path} in {root}")
            target = os.readlink(cur)
            if target.startswith("/"):
                resolved = []
            parts = [x for x in target.split("/") if x and x != "."] + parts
            continue
        resolved.append(p)
    return os.path.join(root, *resolved)


def _mkdir_p(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def _ensure_target(dest: str, is_dir: bool) -> None:
    if is_dir:
        _mkdir_p(dest)
    elif not os.path.lexists(dest):
        _mkdir_p(os.path.dirname(dest))
        os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _mount_cgroup(m: Mount, dest: str, cgroupns: bool, in_userns: bool = False) -> None:
    """/sys/fs/cgroup: v2 -> cgroup2; v1 (also hybrid) -> a tmpfs with one mount per hierarchy."""
    flags = (m.flags | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC) & ~sc.MS_RDONLY
    ro = m.flags & sc.MS_RDONLY
    hier = _host_cgroup_mounts()
    if not any(fs == "cgroup" for _, fs, _ in hier):  # pure v2
        if cgroupns:
            sc.mount("cgroup2", dest, "cgroup2", flags | ro)
        else:  # only the container's own cgroup, as runc
            mine = _own_cgroups().get("", "/")
            sc.mount("/sys/fs/cgroup" + mine.rstrip("/"), dest, None, sc.MS_BIND | sc.MS_REC)
            if ro:
                sc.mount(None, dest, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | flags)
        return
    sc.mount("tmpfs", dest, "tmpfs", flags, "mode=755")
    own = _own_cgroups()
    v1_mount = cgroupns and not in_userns  # cgroup v1 can't be mounted in a user namespace
    for mnt_point, fs, opts in hier:
        name = os.path.basename(mnt_point)
        sub = os.path.join(dest, name)
        _mkdir_p(sub)
        if fs == "cgroup2":
            if cgroupns:
                sc.mount("cgroup2", sub, "cgroup2", flags | ro)
            continue
        ctrls = [o for o in opts.split(",") if o not in ("rw", "ro", "nosuid", "nodev",
                                                          "noexec", "relatime", "noatime")]
        if v1_mount:
            sc.mount("cgroup", sub, "cgroup", flags | ro, ",".join(ctrls))
        else:
            key = ",".join(c for c in ctrls if not c.startswith("name=")) or (
                next((c for c in ctrls if c.startswith("name=")), ""))
            rel = own.get(key, "/")
            sc.mount(mnt_point + rel, sub, None, sc.MS_BIND | sc.MS_REC)
            if ro:
                sc.mount(None, sub, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | flags)
        for c in ctrls:  # cpu,cpuacct -> symlinks cpu and cpuacct
            if "," in name and c in name.split(",") and not os.path.lexists(
                    os.path.join(dest, c)):
                os.symlink(name, os.path.join(dest, c))
    if ro:
        sc.mount(None, dest, None, sc.MS_REMOUNT | sc.MS_RDONLY | flags)


def _host_cgroup_mounts() -> list[tuple[str, str, str]]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fs, _src, sopts = (right.split() + ["", "", ""])[:3]
            if fs in ("cgroup", "cgroup2"):
                mp = left.split()[4]
                if mp.startswith("/sys/fs/cgroup"):
                    out.append((mp, fs, sopts))
    return out


HOST_CGROUPS: dict[str, str] | None = None  # set by stage 1 before it enters a cgroup ns


def _own_cgroups() -> dict[str, str]:
    if HOST_CGROUPS is not None:
        return HOST_CGROUPS
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            out[ctrls] = path
    return out


def mount_one(root: str, m: Mount, cgroupns: bool, in_userns: bool = False) -> None:
    dest = secure_join(root, m.destination)
    if m.is_bind:
        _ensure_target(dest, os.path.isdir(m.source))
        sc.mount(m.source, dest, None, m.flags & (sc.MS_BIND | sc.MS_REC))
        extra = m.flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
        if extra:
            sc.mount(None, dest, None, sc.MS_BIND | sc.MS_REMOUNT | extra)
    elif m.type == "cgroup":
        _ensure_target(dest, True)
        _mount_cgroup(m, dest, cgroupns, in_userns)
    else:
        _ensure_target(dest, True)
        try:
            sc.mount(m.source or m.type, dest, m.type, m.flags, m.data or None)
        except OSError as e:
            # mqueue/sysfs can't be mounted without their namespace: bind the host's (as runc)
            if e.errno == 1 and m.type in ("sysfs", "mqueue"):
                sc.mount(f"/{'sys' if m.type == 'sysfs' else 'dev/mqueue'}", dest, None,
                         sc.MS_BIND | sc.MS_REC)
                if m.flags & ~sc.MS_REC:
                    sc.mount(None, dest, None, sc.MS_BIND | sc.MS_REMOUNT | m.flags)
            else:
                raise
    for p in m.propagation:
        sc.mount(None, dest, None, p)


def create_devices(root: str, spec: Spec, in_userns: bool) -> None:
    """Default device nodes (+ linux.devices) in the container's /dev tmpfs."""
    devs: list[tuple[str, str, int, int, int, int, int]] = [
        (p, "c", ma, mi, 0o666, 0, 0) for p, ma, mi in DEFAULT_DEVICES]
    devs += [(d.path, d.type, d.major, d.minor, d.file_mode, d.uid, d.gid)
             for d in spec.linux.devices]
    old = os.umask(0)
    try:
        for path, typ, ma, mi, mode, uid, gid in devs:
            dest = secure_join(root, path)
            if os.path.lexists(dest):
                if path in dict.fromkeys(x[0] for x in DEFAULT_DEVICES):
                    continue
                os.unlink(dest)
            _mkdir_p(os.path.dirname(dest))
            if in_userns:  # mknod is not allowed: bind the host's node
                os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
                sc.mount(path, dest, None, sc.MS_BIND)
                continue
            kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK,
                    "p": stat.S_IFIFO}[typ]
            os.mknod(dest, kind | (mode & 0o7777), os.makedev(ma, mi))
            if uid or gid:
                os.chown(dest, uid, gid)
    finally:
        os.umask(old)
    for target, link in DEV_SYMLINKS + [("pts/ptmx", "/dev/ptmx")]:
        dest = secure_join(root, link)
        if os.path.lexists(dest) and link == "/dev/ptmx":
            os.unlink(dest)
        if not os.path.lexists(dest):
            os.symlink(target, dest)


def pivot_root(root: str) -> None:
    """pivot_root(".", ".") and detach the old root: no put_old directory needed (as runc)."""
    oldroot = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.chdir(root)
        sc.pivot_root(".", ".")
        os.fchdir(oldroot)
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        sc.umount2(".", sc.MNT_DETACH)
    finally:
        os.close(oldroot)
    os.chdir("/")


def mask_path(path: str) -> None:
    try:
        if os.path.isdir(path):
            sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY)
        else:
            sc.mount("/dev/null", path, None, sc.MS_BIND)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno not in (2, 20):  # ENOENT, ENOTDIR
            raise


def readonly_path(path: str) -> None:
    try:
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
    except OSError as e:
        if e.errno == 2:
            return
        raise
    flags = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | _mount_flags(path)
    sc.mount(path, path, None, flags)


def _mount_flags(path: str) -> int:
    """The locked per-mount flags of `path`'s mount: a bind remount must keep them."""
    st = os.statvfs(path)
    f = 0
    # ST_* values equal the MS_* flags for these
    for flag in (sc.MS_NOSUID, sc.MS_NODEV, sc.MS_NOEXEC, sc.MS_NOATIME, sc.MS_NODIRATIME,
                 sc.MS_RELATIME):
        if st.f_flag & flag:
            f |= flag
    return f


def setup(spec: Spec, console_slave: str | None = None,
          before_pivot: Callable[[], None] | None = None) -> None:
    """Everything before pivot_root, then pivot_root. Runs in the container's init;
    `before_pivot` (the createContainer hooks) runs with every mount in place."""
    L = spec.linux
    root = os.path.realpath(spec.root_path)
    sc.mount(None, "/", None, sc.MS_REC | (L.rootfs_propagation or sc.MS_PRIVATE))
    sc.mount(root, root, None, sc.MS_BIND | sc.MS_REC)
    in_userns = L.namespaces.get("user", 0) is None
    cgroupns = "cgroup" in L.namespaces
    dev_tmpfs = False
    for m in spec.mounts:
        mount_one(root, m, cgroupns, in_userns)
        if os.path.normpath(m.destination) == "/dev" and not m.is_bind:
            dev_tmpfs = True
    if dev_tmpfs:
        create_devices(root, spec, in_userns)
    elif spec.linux.devices:
        create_devices(root, spec, in_userns)
    if console_slave:
        dest = secure_join(root, "/dev/console")
        _ensure_target(dest, False)
        sc.mount(console_slave, dest, None, sc.MS_BIND)
    if L.rootfs_propagation & (sc.MS_SHARED):
        sc.mount(None, root, None, L.rootfs_propagation)
    if before_pivot is not None:
        before_pivot()
    pivot_root(root)


def finalize(spec: Spec) -> None:
    """After pivot_root: masked and read-only paths, then the read-only root."""
    for p in spec.linux.masked_paths:
        mask_path(p)
    for p in spec.linux.readonly_paths:
        readonly_path(p)
    if spec.root_readonly:
        sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | _mount_flags("/"))
