"""`docker diff` and `?size=1`: what a container changed in its read-write layer.

overlay: the upper dir holds exactly the changes; an entry there is Modified (0) when some
lower dir has it, else Added (1); a 0/0 character device is a whiteout (Deleted, 2) and an
opaque directory hides everything its lowers had. vfs: the layer is a full copy, so it is
compared with the parent's full copy. Mount points that the runtime creates in the root
filesystem (/etc/hosts and friends, volume targets) are not user changes and are left out,
as docker's init layer leaves them out.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

MODIFIED, ADDED, DELETED = 0, 1, 2
OPAQUE_XATTR = "trusted.overlay.opaque"
RUNTIME_MOUNTPOINTS = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev", "/proc",
                       "/sys", "/dev/shm", "/dev/pts", "/dev/mqueue", "/.dockerenv")


def is_overlay_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _walk(root: Path) -> Iterable[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything under root, parents before children.

    Why os.fwalk: a running container can swap a directory of its upper dir for a symlink to
    the host's / between a stat and a listdir; fwalk holds directory fds and enters only the
    directory it stat'ed, so the host's files are never listed or sized."""
    for dirpath, dirs, files, dfd in os.fwalk(root):
        dirs.sort()
        rel = os.path.relpath(dirpath, root)
        prefix = "" if rel == "." else rel + "/"
        for n in sorted(dirs + files):
            try:
                st = os.stat(n, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield prefix + n, st


def _in_lowers(lowers: list[Path], rel: str,
               whiteout: Callable[[os.stat_result], bool]) -> bool:
    """Does the image (the lower dirs, top first) have `rel`?"""
    parts = rel.split("/")
    for low in lowers:
        try:
            st = os.lstat(low / rel)
        except (FileNotFoundError, NotADirectoryError):
            # an opaque parent in this lower hides the layers below it
            if any(_is_opaque(low.joinpath(*parts[:i])) for i in range(1, len(parts))):
                return False
            continue
        return not whiteout(st)
    return False


def overlay_changes(upper: Path, lowers: list[Path],
                    whiteout: Callable[[os.stat_result], bool] = is_overlay_whiteout
                    ) -> list[tuple[str, int]]:
    """[(/path, kind)] of an overlay upper dir against its lower dirs (top first)."""
    out: list[tuple[str, int]] = []
    added_dirs: list[str] = []
    for rel, st in _walk(upper):
        path = "/" + rel
        if whiteout(st):
            out.append((path, DELETED))
            continue
        if any(rel.startswith(a + "/") for a in added_dirs):
            out.append((path, ADDED))
            continue
        if _in_lowers(lowers, rel, whiteout):
            out.append((path, MODIFIED))
            if stat.S_ISDIR(st.st_mode) and _is_opaque(upper / rel):
                mine = set(os.listdir(upper / rel))
                gone: set[str] = set()
                for low in lowers:
                    try:
                        gone |= {n for n in os.listdir(low / rel) if n not in mine}
                    except OSError:
                        pass
                    if _is_opaque(low / rel):
                        break
                out += [(f"{path}/{n}", DELETED) for n in sorted(gone)]
        else:
            out.append((path, ADDED))
            if stat.S_ISDIR(st.st_mode):
                added_dirs.append(rel)
    return sorted(out)


def _differs(a: os.stat_result, b: os.stat_result, pa: Path, pb: Path) -> bool:
    if (stat.S_IFMT(a.st_mode), stat.S_IMODE(a.st_mode), a.st_uid, a.st_gid) != (
            stat.S_IFMT(b.st_mode), stat.S_IMODE(b.st_mode), b.st_uid, b.st_gid):
        return True
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(pa) != os.readlink(pb)
    if stat.S_ISDIR(a.st_mode):
        return int(a.st_mtime) != int(b.st_mtime)
    if stat.S_ISREG(a.st_mode):
        return a.st_size != b.st_size or a.st_mtime_ns != b.st_mtime_ns
    return a.st_rdev != b.st_rdev


def dir_changes(parent: Path | None, layer: Path) -> list[tuple[str, int]]:
    """[(/path, kind)] between two full trees (vfs)."""
    out: list[tuple[str, int]] = []
    seen: set[str] = set()
    for rel, st in _walk(layer):
        seen.add(rel)
        if parent is None:
            out.append(("/" + rel, ADDED))
            continue
        try:
            pst = os.lstat(parent / rel)
        except (FileNotFoundError, NotADirectoryError):
            out.append(("/" + rel, ADDED))
            continue
        if _differs(pst, st, parent / rel, layer / rel):
            out.append(("/" + rel, MODIFIED))
    if parent is not None:
        deleted: list[str] = []
        for rel, _ in _walk(parent):
            if rel in seen or any(rel.startswith(d + "/") for d in deleted):
                continue
            deleted.append(rel)
            out.append(("/" + rel, DELETED))
    return sorted(out)


def drop_mountpoints(changes: list[tuple[str, int]], mountpoints: Iterable[str]
                     ) -> list[tuple[str, int]]:
    """Leave out mount points the runtime created (Added) and parent directories that only
    changed because of them."""
    mps = {os.path.normpath(p) for p in mountpoints}
    dropped = {p for p, k in changes if k == ADDED and p in mps}
    if not dropped:
        return changes
    keep = [(p, k) for p, k in changes if p not in dropped and
            not any(p.startswith(d + "/") for d in dropped)]
    out = []
    for p, k in keep:
        if k == MODIFIED and any(d.startswith(p + "/") for d in dropped) and \
                not any(q.startswith(p + "/") for q, _ in keep):
            continue
        out.append((p, k))
    return out


def tree_size(root: Path, skip_whiteouts: bool = True) -> int:
    """Bytes of regular files under root, hard links counted once."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for _, st in _walk(root):
        if stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1:
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_size
    return total


# ---- over a ContainerManager ------------------------------------------------------------------

def _mountpoints(c: Any) -> list[str]:
    return [*RUNTIME_MOUNTPOINTS, *(m.destination for m in c.mounts)]


def container_changes(m: Any, ref: str) -> list[dict[str, Any]]:
    """GET /containers/{id}/changes: [{"Path", "Kind"}], sorted by path."""
    c = m.get(ref)
    driver, layer, parents = m.graph.rw_layer_paths(c.id)
    if driver == "overlay":
        ch = overlay_changes(layer, parents)
    else:
        ch = dir_changes(parents[0] if parents else None, layer)
    return [{"Path": p, "Kind": k} for p, k in drop_mountpoints(ch, _mountpoints(c))]


def container_sizes(m: Any, c: Any) -> tuple[int, int]:
    """(SizeRw, SizeRootFs): bytes the container wrote, and that plus its image's size."""
    try:
        driver, layer, parents = m.graph.rw_layer_paths(c.id)
        if driver == "overlay":
            rw = tree_size(layer)
        else:
            changed = {p for p, k in dir_changes(parents[0] if parents else None, layer)
                       if k != DELETED}
            rw = sum(st.st_size for rel, st in _walk(layer)
                     if stat.S_ISREG(st.st_mode) and "/" + rel in changed)
        image = m.graph.get(c.image_id).size
    except Exception:  # noqa: BLE001 - a size is informational; a listing must not fail
        return 0, 0
    return rw, image + rw
