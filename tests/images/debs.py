"""A ~110 MB multi-layer image made of Debian packages (for bench/pull.py), built reproducibly.

Layers: the busybox rootfs, then one layer per package (`apt-get download` + `dpkg -x`), each a
deterministic tar (tests.images.builder). Cached under the busybox cache dir by the exact
package versions, so every run pushes the same digests.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import busybox
from .builder import Image, Layer, tar_directory, write_docker_save, write_oci_layout

PACKAGES = ["libicu72", "vim-runtime", "libperl5.36", "libpython3.11-stdlib"]
NAME = "bench/debs:latest"


def _versions() -> list[str]:
    out = []
    for p in PACKAGES:
        v = subprocess.run(["apt-cache", "policy", p], capture_output=True, text=True,
                           check=True).stdout
        cand = next((ln.split(":", 1)[1].strip() for ln in v.splitlines()
                     if ln.strip().startswith("Candidate:")), "")
        out.append(f"{p}={cand}")
    return out


def build(cache: Path = busybox.DEFAULT_CACHE) -> Path:
    """Directory with oci/ (ref name bench/debs:latest) and docker-save.tar."""
    base = busybox.build(cache)
    versions = _versions()
    key = hashlib.sha256((base.name + "\n" + "\n".join(versions)).encode()).hexdigest()[:16]
    out = cache / f"debs-{key}"
    if (out / ".complete").exists():
        return out
    tmp = Path(tempfile.mkdtemp(prefix=".debs-", dir=cache))
    try:
        debs = tmp / "debs"
        debs.mkdir()
        subprocess.run(["apt-get", "download", "-q", *versions], cwd=debs, check=True,
                       capture_output=True)
        layers = [Layer((base / "rootfs.tar").read_bytes())]
        for deb in sorted(debs.glob("*.deb")):
            root = tmp / "x" / deb.stem
            root.mkdir(parents=True)
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
            os.chmod(root, 0o755)
            layers.append(Layer(tar_directory(root)))
            shutil.rmtree(root)
        img = Image(layers=layers, cmd=["sh"])
        write_oci_layout({NAME: img}, tmp / "oci")
        write_docker_save({NAME: img}, tmp / "docker-save.tar")
        shutil.rmtree(tmp / "debs")
        shutil.rmtree(tmp / "x", ignore_errors=True)
        (tmp / ".complete").write_text("\n".join(versions))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
