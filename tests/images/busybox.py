"""The busybox test image, built from Debian's busybox-static package (no registry).

Output directory (cached by the busybox binary's digest):
  rootfs/            the root filesystem (busybox + one symlink per applet, passwd, group)
  rootfs.tar         a deterministic tar of it (for `skiff import` / `docker import`)
  bundle/            an OCI runtime bundle: config.json (skiff-runc's default spec) + rootfs/
  oci/               an OCI image layout, ref name "busybox:latest"
  docker-save.tar    a `docker save` tarball, tag "busybox:latest"
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .builder import Image, Layer, tar_directory, write_docker_save, write_oci_layout

BUSYBOX = Path("/bin/busybox")
DEFAULT_CACHE = Path(os.environ.get("SKIFF_CACHE", "/var/tmp/skiff-cache")) / "images"

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """root:x:0:
daemon:x:1:
nogroup:x:65534:
"""


def busybox_binary() -> Path:
    if not BUSYBOX.exists():
        raise RuntimeError("busybox-static is not installed: run scripts/bootstrap")
    return BUSYBOX


def make_rootfs(dest: Path) -> Path:
    """Busybox rootfs: the binary at /bin/busybox and a symlink for each applet."""
    bb = busybox_binary()
    dest.mkdir(parents=True)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev", "root",
              "var", "run", "home"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    os.chmod(dest / "root", 0o700)
    shutil.copy2(bb, dest / "bin" / "busybox")
    os.chmod(dest / "bin" / "busybox", 0o755)
    applets = subprocess.run([str(bb), "--list-full"], capture_output=True, text=True, check=True)
    for rel in applets.stdout.split():
        link = dest / rel
        if link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("/bin/busybox", link)
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    return dest


def build(cache: Path = DEFAULT_CACHE) -> Path:
    """Build (or reuse) the busybox image; returns its directory."""
    digest = hashlib.sha256(busybox_binary().read_bytes()).hexdigest()[:16]
    out = cache / f"busybox-{digest}"
    if (out / ".complete").exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".busybox-", dir=cache))
    try:
        rootfs = make_rootfs(tmp / "rootfs")
        layer = Layer(tar_directory(rootfs))
        (tmp / "rootfs.tar").write_bytes(layer.tar)
        img = Image(layers=[layer])
        write_oci_layout({"busybox:latest": img}, tmp / "oci")
        write_docker_save({"busybox:latest": img}, tmp / "docker-save.tar")
        bundle = tmp / "bundle"
        bundle.mkdir()
        shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
        (bundle / "config.json").write_text(json.dumps(bundle_spec(), indent=2))
        (tmp / ".complete").write_text(digest)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def bundle_spec() -> dict:
    from engine.libcontainer.defaults import default_spec

    spec = default_spec()
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["sh"]
    return spec
