"""overlay: each layer keeps only its own changes; a container's root is an overlayfs mount.

Layout (as moby's overlay2): <home>/<id>/diff (the layer's changes, whiteouts in overlay form),
<home>/<id>/link (a short name), <home>/<id>/lower (the parent chain as l/<short> names),
<home>/<id>/work and /merged for mounted layers, <home>/l/<short> -> ../<id>/diff. The short
names keep the mount data under a page even with many layers.
"""

from __future__ import annotations

import os
import secrets
import string
import tempfile
from pathlib import Path
from typing import BinaryIO

from engine.errors import SystemError_, Unavailable
from engine.graph.archive import tar_overlay_diff

from . import _mount
from .base import GraphDriver

_ALPHABET = string.ascii_uppercase + string.digits
MAX_LOWERS = 120
PAGE_LIMIT = 4000  # overlay mount data must fit in a page


def supported(home: Path) -> str | None:
    """None when overlayfs works under `home`, else the reason it does not."""
    if os.geteuid() != 0:
        return "overlay needs root"
    try:
        with open("/proc/filesystems") as f:
            if "overlay" not in f.read():
                return "the kernel has no overlay filesystem"
    except OSError as e:
        return str(e)
    home.mkdir(parents=True, exist_ok=True)
    t = Path(tempfile.mkdtemp(prefix=".check-", dir=home))
    try:
        for d in ("lower", "upper", "work", "merged"):
            (t / d).mkdir()
        os.mknod(t / "upper" / "wh", 0o600 | 0o020000, os.makedev(0, 0))
        _mount.mount("overlay", str(t / "merged"), "overlay", 0,
                     f"lowerdir={t}/lower,upperdir={t}/upper,workdir={t}/work")
        _mount.umount(str(t / "merged"))
        return None
    except OSError as e:
        return f"overlay mount failed under {home}: {e}"
    finally:
        import shutil

        shutil.rmtree(t, ignore_errors=True)


class OverlayDriver(GraphDriver):
    name = "overlay"
    whiteouts = "overlay"
    independent_layers = True  # a layer's diff dir never reads its parent: apply in parallel

    def __init__(self, home: Path) -> None:
        super().__init__(home)
        why = supported(self.home)
        if why:
            raise Unavailable(f"overlay graphdriver unavailable: {why}")
        (self.home / "l").mkdir(exist_ok=True)

    def create(self, id: str, parent: str | None = None) -> None:
        d = self._new_dir(id)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{id[:12]}-", dir=self.home))
        try:
            (tmp / "diff").mkdir(mode=0o755)
            (tmp / "work").mkdir(mode=0o700)
            (tmp / "merged").mkdir(mode=0o700)
            lowers: list[str] = []
            if parent is not None:
                pd = self._check(parent)
                lowers = ["l/" + (pd / "link").read_text()]
                if (pd / "lower").exists():
                    lowers += (pd / "lower").read_text().split(":")
                if len(lowers) > MAX_LOWERS:
                    raise SystemError_(f"overlay: more than {MAX_LOWERS} layers")
                (tmp / "lower").write_text(":".join(lowers))
            short = "".join(secrets.choice(_ALPHABET) for _ in range(26))
            (tmp / "link").write_text(short)
            tmp.rename(d)
            os.symlink(f"../{id}/diff", self.home / "l" / short)
        except BaseException:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def layer_dir(self, id: str) -> Path:
        return self._check(id) / "diff"

    def diff(self, id: str, parent: str | None, out: BinaryIO) -> None:
        tar_overlay_diff(self.layer_dir(id), out)

    def _lowers(self, id: str) -> list[str]:
        lf = self.home / id / "lower"
        return lf.read_text().split(":") if lf.exists() else []

    def parent_dirs(self, id: str, parent: str | None) -> list[Path]:
        return [(self.home / low).resolve() for low in self._lowers(id)]

    def get(self, id: str) -> Path:
        d = self._check(id)
        with self._lock:
            n = self._mounts.get(id, 0)
            lowers = self._lowers(id)
            if not lowers:
                self._mounts[id] = n + 1
                return d / "diff"
            merged = d / "merged"
            if n == 0 and not _mount.is_mountpoint(str(merged)):
                lowerdir = ":".join(str(self.home / low) for low in lowers)
                data = f"lowerdir={lowerdir},upperdir={d}/diff,workdir={d}/work"
                if len(data) < PAGE_LIMIT:
                    _mount.mount("overlay", str(merged), "overlay", 0, data)
                else:  # deep chain: relative l/<short> names from the driver home
                    data = f"lowerdir={':'.join(lowers)},upperdir={id}/diff,workdir={id}/work"
                    _mount.mount_in(str(self.home), "overlay", str(merged), "overlay", 0, data)
            self._mounts[id] = n + 1
            return merged

    def put(self, id: str) -> None:
        with self._lock:
            n = self._mounts.get(id, 0) - 1
            if n > 0:
                self._mounts[id] = n
                return
            self._mounts.pop(id, None)
            merged = self.home / id / "merged"
            if merged.exists() and _mount.is_mountpoint(str(merged)):
                _mount.umount(str(merged), _mount.MNT_DETACH)

    def is_mounted(self, id: str) -> bool:
        return _mount.is_mountpoint(str(self.home / id / "merged"))

    def _force_unmount(self, id: str) -> None:
        self._mounts.pop(id, None)
        merged = self.home / id / "merged"
        if merged.exists() and _mount.is_mountpoint(str(merged)):
            _mount.umount(str(merged), _mount.MNT_DETACH)

    def cleanup(self) -> None:
        for id in self.ids():
            self._force_unmount(id)

    def remove(self, id: str) -> None:
        d = self.home / id
        link = d / "link"
        if link.exists():
            try:
                os.unlink(self.home / "l" / link.read_text())
            except FileNotFoundError:
                pass
        super().remove(id)

    def status(self) -> list[list[str]]:
        return super().status() + [["Supports d_type", "true"], ["Native Overlay Diff", "true"]]
