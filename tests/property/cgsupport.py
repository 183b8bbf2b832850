"""Helpers shared by the cgroup system and property tests: scratch cgroups under the `skt2`
prefix, child processes held at a start gate, and cleanup that also runs on failure."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from engine.libcontainer import cgroups
from engine.libcontainer.cgroups import Manager, Resources

PREFIX = "skt2"


def profile_name() -> str:
    return os.environ.get("SKIFF_HYPOTHESIS_PROFILE", "ci")


def enforcement_examples() -> int:
    """Enforcement examples start processes and take ~0.3 s each: sampled, not swept."""
    return {"ci": 3, "dev": 2, "vm": 2}.get(profile_name(), 50)


# Every cgroup path this process handed out: leftovers() checks only these, so concurrent
# runs (another pytest using the same prefix) do not count.
ISSUED: list[str] = []


def unique(name: str) -> str:
    path = f"/{PREFIX}/{name}-{uuid.uuid4().hex[:8]}"
    ISSUED.append(path)
    return path


def prefix_dirs(version: str | None = None, root: Path | None = None) -> list[Path]:
    """The `skt2` directory in every hierarchy (whether it exists or not)."""
    version = version or cgroups.detect()
    if version == "v2":
        base = root or cgroups.v2.v2_root()
        return [base / PREFIX]
    mounts = cgroups.v1.v1_mounts(root)
    seen: list[Path] = []
    for m in mounts.values():
        if m / PREFIX not in seen:
            seen.append(m / PREFIX)
    return seen


def remove_prefix(version: str | None = None, root: Path | None = None) -> None:
    """Remove the `skt2` parents if they are empty (children are removed by their tests)."""
    for d in prefix_dirs(version, root):
        # Only the prefix itself: children belong to their tests (maybe a concurrent run).
        with contextlib.suppress(OSError):
            os.rmdir(d)


def leftovers(version: str | None = None) -> list[Path]:
    """Cgroups this process created (via unique()) that still exist."""
    out: list[Path] = []
    for d in prefix_dirs(version):
        for path in ISSUED:
            p = d / path.rsplit("/", 1)[-1]
            if p.exists():
                out.append(p)
    return out


class Child:
    """A Python child that waits on stdin before running `code`, so it can be moved into a
    cgroup first. Killed (by pid) on close."""

    def __init__(self, code: str) -> None:
        prog = "import sys\nsys.stdin.read(1)\n" + code
        self.proc = subprocess.Popen(
            [sys.executable, "-c", prog],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("g")
        self.proc.stdin.flush()
        self.proc.stdin.close()
        self.proc.stdin = None  # so communicate() does not touch it

    def wait(self, timeout: float = 30) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                with contextlib.suppress(Exception):
                    f.close()


@contextlib.contextmanager
def scratch(name: str, resources: Resources | None = None, *, create: bool = True,
            version: str | None = None, root: Path | None = None) -> Iterator[Manager]:
    """A Manager under skt2 that is destroyed (its processes killed first) on exit."""
    m = cgroups.new_manager(unique(name), resources, version=version, root=root)
    try:
        if create:
            m.create()
        yield m
    finally:
        if m.exists():
            with contextlib.suppress(Exception):
                m.kill_all()
            m.destroy()


@contextlib.contextmanager
def child_in(m: Manager, code: str) -> Iterator[Child]:
    c = Child(code)
    try:
        m.apply(c.pid)
        yield c
    finally:
        c.close()
