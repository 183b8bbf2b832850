"""A wheelhouse on the host for the VM's venv: the guest installs with --no-index.

Why: the guest's pip cannot reach PyPI the way the host's does (the host's TLS trust and
mirrors are the host's own), and an offline install is faster and reproducible anyway. The
wheelhouse is keyed by pyproject.toml (dependencies) and synced into the VM at /srv/wheels.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(os.environ.get("SKIFF_WHEELS_CACHE", "/var/tmp/skt6-wheels"))
CURRENT = ROOT / "current"
BUILD_DEPS = ("setuptools>=68", "wheel")  # [build-system] requires, for the editable install


def key(pyproject: Path) -> str:
    return hashlib.sha256(pyproject.read_bytes() + "|".join(BUILD_DEPS).encode()).hexdigest()


def ensure(repo: Path, log=print) -> tuple[Path, bool]:
    """Build (or reuse) the wheelhouse for repo's [test] extra; returns (dir, built_now)."""
    k = key(repo / "pyproject.toml")
    d = ROOT / k[:16]
    if (d / ".complete").exists():
        _point_current(d)
        return d, False
    tmp = ROOT / f".{k[:16]}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log(f"wheelhouse: pip wheel {repo}[test] -> {d}")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                        "--wheel-dir", str(tmp), f"{repo}[test]", *BUILD_DEPS],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"pip wheel failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    for w in tmp.glob("skiff-*.whl"):  # the engine itself is installed from the synced source
        w.unlink()
    (tmp / ".complete").write_text(k)
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)
    _point_current(d)
    for old in ROOT.iterdir():
        if old != d and old != CURRENT and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)
    return d, True


def _point_current(d: Path) -> None:
    """ROOT/current -> d. The VM syncs from this fixed path: Vagrant records a machine's
    synced folders at `up`, so a kept VM's `vagrant rsync` must find new wheels at the old path."""
    tmp = ROOT / ".current.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(d.name)
    tmp.replace(CURRENT)
