"""Hand-made layer tars for graph and graphdriver tests (including hostile ones)."""

from __future__ import annotations

import io
import tarfile


def mk(entries: list[tuple]) -> bytes:
    """A tar from (kind, name, arg, ...) tuples.

    ("f", name, data[, mode[, (uid, gid)]]), ("d", name[, mode]), ("l", name, target),
    ("h", name, target), ("c"|"b", name, (major, minor)), ("p", name)
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            kind, name = e[0], e[1]
            arg = e[2] if len(e) > 2 else None
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if kind == "f":
                data = arg if isinstance(arg, bytes) else (arg or "x").encode()
                info.size = len(data)
                info.mode = e[3] if len(e) > 3 else 0o644
                if len(e) > 4:
                    info.uid, info.gid = e[4]
                tar.addfile(info, io.BytesIO(data))
                continue
            if kind == "d":
                info.type = tarfile.DIRTYPE
                info.mode = arg or 0o755
            elif kind == "l":
                info.type = tarfile.SYMTYPE
                info.linkname = arg
            elif kind == "h":
                info.type = tarfile.LNKTYPE
                info.linkname = arg
            elif kind in ("c", "b"):
                info.type = tarfile.CHRTYPE if kind == "c" else tarfile.BLKTYPE
                info.devmajor, info.devminor = arg
            elif kind == "p":
                info.type = tarfile.FIFOTYPE
            if len(e) > 3 and kind != "f":
                info.uid, info.gid = e[3]
            tar.addfile(info)
    return buf.getvalue()
