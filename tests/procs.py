"""Stopping what a test or benchmark started: a process by its pid, mounts under its own dir."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def stop(p: subprocess.Popen | None, timeout: float = 30) -> None:
    """SIGTERM by pid, then SIGKILL after `timeout`; never a process we did not start."""
    if p is None or p.poll() is not None:
        return
    os.kill(p.pid, signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()


def unmount_under(base: Path | str) -> None:
    """Lazily unmount every mount at or below `base`, deepest first (what a daemon left)."""
    prefix = str(base)
    with open("/proc/self/mountinfo") as f:
        mounts = [ln.split()[4] for ln in f]
    inside = [m for m in mounts if m == prefix or m.startswith(prefix.rstrip("/") + "/")]
    for m in sorted(inside, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)
