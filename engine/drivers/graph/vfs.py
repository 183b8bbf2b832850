"""vfs: every layer is a full copy of its parent plus its own changes. Slow, works anywhere."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import BinaryIO

from engine.errors import SystemError_
from engine.graph.archive import tar_changes

from .base import GraphDriver


class VfsDriver(GraphDriver):
    name = "vfs"
    whiteouts = "naive"

    def __init__(self, home: Path) -> None:
        super().__init__(home)

    def create(self, id: str, parent: str | None = None) -> None:
        d = self._new_dir(id)
        if parent is None:
            d.mkdir(mode=0o755)
            return
        src = self._check(parent)
        tmp = self.home / f".tmp-{id}"
        # cp -a keeps owners, modes, hard links, xattrs and sparse files; reflinks where the
        # filesystem has them.
        r = subprocess.run(["cp", "-a", "--reflink=auto", str(src), str(tmp)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(["rm", "-rf", str(tmp)])
            raise SystemError_(f"vfs: copying layer {parent}: {r.stderr.strip()}")
        tmp.rename(d)

    def layer_dir(self, id: str) -> Path:
        return self._check(id)

    def diff(self, id: str, parent: str | None, out: BinaryIO) -> None:
        tar_changes(self._check(parent) if parent else None, self._check(id), out)

    def get(self, id: str) -> Path:
        d = self._check(id)
        with self._lock:
            self._mounts[id] = self._mounts.get(id, 0) + 1
        return d

    def put(self, id: str) -> None:
        with self._lock:
            n = self._mounts.get(id, 0) - 1
            if n <= 0:
                self._mounts.pop(id, None)
            else:
                self._mounts[id] = n

    def is_mounted(self, id: str) -> bool:
        return self._mounts.get(id, 0) > 0
