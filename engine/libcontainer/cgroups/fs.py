"""Small cgroupfs helpers shared by the v1 and v2 managers: mounts, reads, writes, removal.

The cgroup root is a parameter everywhere so that unit tests can point a manager at a fake
tree under a temporary directory.

Paths are plain strings here (os.path): importing pathlib (-> re, fnmatch, urllib.parse,
ipaddress) costs ~5 ms on every `skiff-runc run`. Every function also takes a Path.
"""

from __future__ import annotations

import errno
import os
import time

from ..errors import SystemError_

TYPE_CHECKING = False  # not `from typing import ...`: typing costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    StrPath = str | os.PathLike[str]

ROOT = "/sys/fs/cgroup"


def __getattr__(name: str) -> Path:
    """CGROUP_ROOT, the same as ROOT as a Path, built on first use (pathlib is not imported
    on the start path)."""
    if name == "CGROUP_ROOT":
        from pathlib import Path

        return Path(ROOT)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class CgroupError(SystemError_):
    """A cgroupfs operation failed; names the file, the value and the kernel's errno."""

    def __init__(self, message: str, *, path: StrPath | None = None, value: str | None = None,
                 err: int | None = None) -> None:
        self.path, self.value, self.errno_ = path, value, err
        super().__init__(message)
        self.errno = err  # so callers can test e.errno like any OSError

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


def mountinfo(text: str | None = None) -> list[tuple[str, str, str]]:
    """(mount point, fs type, super options) for every cgroup/cgroup2 mount."""
    if text is None:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            text = f.read()
    out = []
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields = pre.split()
        fstype, _source, opts = (post.split() + ["", "", ""])[:3]
        if fstype in ("cgroup", "cgroup2") and len(fields) >= 5:
            out.append((_unescape(fields[4]), fstype, opts))
    return out


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace(
        "\\134", "\\"
    )


def write(path: StrPath, value: str) -> None:
    """Write one value to a cgroup file as a single write(2), as the kernel expects."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | _creat_in_fake(path))
    except OSError as e:
        raise CgroupError(
            f"cannot open {path}: {os.strerror(e.errno or 0)}", path=path, value=value,
            err=e.errno,
        ) from None
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise CgroupError(
            f"cannot write {value!r} to {path}: {os.strerror(e.errno or 0)}",
            path=path, value=value, err=e.errno,
        ) from None
    finally:
        os.close(fd)


def _creat_in_fake(path: StrPath) -> int:
    """Real cgroupfs files always exist; fake trees (unit tests) get them created on write."""
    return os.O_CREAT if FAKE_ROOTS and any(_under(path, r) for r in FAKE_ROOTS) else 0


def _under(path: StrPath, root: StrPath) -> bool:
    """Is `path` `root` or below it (lexically, like Path.relative_to)?"""
    p, r = os.fspath(path), os.fspath(root).rstrip("/")
    return p == r or p.startswith(r + "/") or (r == "" and p.startswith("/"))


# Roots registered by unit tests as fake cgroupfs trees (files are created on write and
# rmdir removes directories together with their files, as cgroupfs does).
FAKE_ROOTS: list[StrPath] = []


def mkdir(path: StrPath) -> None:
    """mkdir one cgroup level (the kernel populates its interface files; unit tests patch this
    to emulate that in a fake tree)."""
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


def read(path: StrPath) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def read_int(path: StrPath) -> int:
    return int(read(path))


def read_keyed(path: StrPath) -> dict[str, int]:
    """A flat keyed file ("key value" per line): cpu.stat, memory.events, memory.stat."""
    out: dict[str, int] = {}
    try:
        text = read(path)
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def rmdir_tree(path: StrPath, timeout: float = 2.0) -> None:
    """Remove a cgroup directory and its child cgroups, bottom-up.

    rmdir of a cgroup whose last task just exited can briefly fail with EBUSY (the task is a
    zombie still charged to the cgroup), so EBUSY is retried until `timeout`.
    """
    if not os.path.exists(path):
        return
    with os.scandir(path) as it:
        children = sorted((e.path for e in it if e.is_dir()), reverse=True)
    for child in children:
        rmdir_tree(child, timeout)
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            _rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise CgroupError(
                    f"cannot remove cgroup {path}: {os.strerror(e.errno or 0)}"
                    + (" (processes are still in it)" if e.errno == errno.EBUSY else ""),
                    path=path, err=e.errno,
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def _rmdir(path: StrPath) -> None:
    if FAKE_ROOTS and any(_under(path, r) for r in FAKE_ROOTS):
        with os.scandir(path) as it:
            files = [e.path for e in it if e.is_file()]
        for f in files:
            os.unlink(f)
    os.rmdir(path)


def poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until predicate() is true (freezer transitions are asynchronous)."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not predicate():
        if time.monotonic() > deadline:
            raise CgroupError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
