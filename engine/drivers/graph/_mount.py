"""mount(2)/umount2(2) through ctypes: the graphdriver must not shell out per container start."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

MNT_DETACH = 2


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str | None = None) -> None:
    rc = _libc.mount(source.encode(), target.encode(), fstype.encode(), flags,
                     data.encode() if data is not None else None)
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {fstype} on {target}: {os.strerror(e)}")


def umount(target: str, flags: int = 0) -> None:
    if _libc.umount2(target.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"umount {target}: {os.strerror(e)}")


def is_mountpoint(path: str) -> bool:
    """True when `path` is listed as a mount point in /proc/self/mountinfo."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and _unescape(fields[4]) == target:
                return True
    return False


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace(
        "\\134", "\\")


def mount_in(cwd: str, source: str, target: str, fstype: str, flags: int = 0,
             data: str | None = None) -> None:
    """mount(2) from a forked child that chdir()s to `cwd` first.

    Overlay's mount data must fit in one page; relative lowerdir paths (resolved against the
    caller's cwd) keep it short for deep layer chains without changing the daemon's own cwd.
    The child only calls chdir and mount, then _exit: safe in a threaded process.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            os.close(r)
            os.chdir(cwd)
            mount(source, target, fstype, flags, data)
        except OSError as e:
            os.write(w, str(e.errno or 1).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    try:
        msg = os.read(r, 64)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    if msg or status != 0:
        err = int(msg or b"5")
        raise OSError(err, f"mount {fstype} on {target}: {os.strerror(err)}")
