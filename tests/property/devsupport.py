"""Helpers for the cgroup v2 device filter tests on the real kernel: scratch cgroup2
directories under the `skt13` prefix, a probe child that opens and mknods device nodes from
inside the cgroup, and the check whether this kernel runs cgroup device programs at all.

A BPF_CGROUP_DEVICE program works on any cgroup2 directory, with or without controllers, so on
a hybrid host (v1 controllers + /sys/fs/cgroup/unified) the filter is the real thing too: the
test process stays in the root of the v1 devices hierarchy (allow all) and only the program
decides.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from engine.libcontainer import cgroups
from engine.libcontainer.cgroups import devices_bpf

PREFIX = "skt13"


def cgroup2_root() -> Path | None:
    for mnt, fstype, _ in cgroups.fs.mountinfo():
        if fstype == "cgroup2" and mnt == str(cgroups.fs.CGROUP_ROOT):
            return Path(mnt)
    for mnt, fstype, _ in cgroups.fs.mountinfo():
        if fstype == "cgroup2":
            return Path(mnt)
    return None


def unavailable() -> str | None:
    """Why device programs cannot be tested here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root"
    root = cgroup2_root()
    if root is None:
        return "no cgroup2 mount on this host"
    try:
        fd = devices_bpf.load(devices_bpf.assemble([(0xB4, 0, 0, 0, 1), (0x95, 0, 0, 0, 0)]))
    except OSError as e:
        return f"this kernel does not load BPF_PROG_TYPE_CGROUP_DEVICE programs: {e}"
    os.close(fd)
    return None


@contextlib.contextmanager
def scratch_dir(name: str) -> Iterator[Path]:
    """A bare cgroup2 directory <root>/skt13/<name>-<rand>, removed (processes killed) on exit."""
    root = cgroup2_root()
    assert root is not None
    parent = root / PREFIX
    parent.mkdir(exist_ok=True)
    d = parent / f"{name}-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    try:
        yield d
    finally:
        remove(d)


def remove(d: Path) -> None:
    if not d.exists():
        return
    with contextlib.suppress(OSError):
        (d / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + 5
    while True:
        try:
            cgroups.fs.rmdir_tree(d)
            return
        except cgroups.CgroupError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def remove_prefix() -> None:
    root = cgroup2_root()
    if root is not None:
        with contextlib.suppress(OSError):
            (root / PREFIX).rmdir()


def wait_released(prog_id: int, timeout: float = 10.0) -> bool:
    """The kernel frees a detached program (and a removed cgroup's) asynchronously."""
    deadline = time.monotonic() + timeout
    while devices_bpf.prog_exists(prog_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# The probe: waits for a byte on stdin (so it can be moved into the cgroup first), then for
# each (kind, path, type, major, minor, flags) tries open() or mknod() and prints "ok" or the
# errno name. Only EPERM is the device filter's answer; ENXIO etc. mean it let the call through.
_PROBE = r"""
import errno, json, os, sys
sys.stdin.read(1)
out = []
for kind, path, typ, major, minor, flags in json.loads(sys.argv[1]):
    try:
        if kind == "open":
            os.close(os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC))
        else:
            mode = 0o600 | (0o20000 if typ == "c" else 0o60000)
            os.mknod(path, mode, os.makedev(major, minor))
            os.unlink(path)
        out.append("ok")
    except OSError as e:
        out.append(errno.errorcode.get(e.errno, str(e.errno)))
print(json.dumps(out))
"""

ACCESS_FLAGS = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}


def make_nodes(tmp: Path, devices: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], str]:
    """Device nodes for `devices` in tmp (made by us, outside the cgroup). A nodev mount
    (some hosts' /tmp) refuses every device open, so then they go below /var/tmp."""
    if os.statvfs(tmp).f_flag & os.ST_NODEV:
        tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-nodes-", dir="/var/tmp"))
        assert not os.statvfs(tmp).f_flag & os.ST_NODEV, "no mount without nodev for the nodes"
        atexit.register(shutil.rmtree, tmp, True)
    paths = {}
    for typ, major, minor in devices:
        p = tmp / f"{typ}{major}_{minor}"
        if not p.exists():
            os.mknod(p, 0o600 | (0o20000 if typ == "c" else 0o60000), os.makedev(major, minor))
        paths[(typ, major, minor)] = str(p)
    return paths


def probe(cgroup_dir: Path, calls: list[tuple[str, str, str, int, int, int]],
          timeout: float = 30) -> list[str]:
    """Run the probe inside `cgroup_dir` (cgroup.procs of that directory)."""
    proc = subprocess.Popen([sys.executable, "-c", _PROBE, json.dumps(calls)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        (cgroup_dir / "cgroup.procs").write_text(str(proc.pid))
        out, err = proc.communicate("g", timeout=timeout)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    return list(json.loads(out))


def denied(result: str) -> bool:
    return result == errno.errorcode[errno.EPERM]
